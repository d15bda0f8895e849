"""One process of the two-process test: 4 CPU devices each, joined into one 8-device mesh.

Usage: multiprocess_worker.py PORT PROCESS_ID MODEL_DIR OUT_DIR
Loads MODEL_DIR sharded over a (data=2, fsdp=2, tensor=2) mesh spanning both processes, runs the
forward on a fixed batch, and exports the model; process 0 writes logits.npy and OUT_DIR/export.
"""
import sys

import jax

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_cpu_collectives_implementation", "gloo")


def main(port: str, process_id: str, model_dir: str, out_dir: str) -> None:
    import numpy as np
    from flax import nnx
    from jax.experimental import multihost_utils

    from azr_jax.model import MeshConfig, activation_sharding, load_hf, make_mesh, save_hf

    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=int(process_id))
    assert jax.device_count() == 8 and jax.local_device_count() == 4
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    model = load_hf(model_dir, mesh=mesh)
    tokens = np.random.RandomState(0).randint(0, model.config.vocab_size, (8, 16)).astype(np.int32)
    sharding = activation_sharding(mesh, "tokens", tokens.shape)
    global_tokens = jax.make_array_from_callback(tokens.shape, sharding, lambda index: tokens[index])
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda state, tokens: nnx.merge(graphdef, state)(tokens))
    with jax.set_mesh(mesh):
        logits = multihost_utils.process_allgather(forward(state, global_tokens), tiled=True)
    save_hf(model, f"{out_dir}/export")
    if jax.process_index() == 0:
        np.save(f"{out_dir}/logits.npy", logits)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
