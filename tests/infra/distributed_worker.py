"""One process of the host_map test: Usage: distributed_worker.py PORT PROCESS_ID OUT_DIR."""
import json
import sys

import jax

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_cpu_collectives_implementation", "gloo")


def main(port: str, process_id: str, out_dir: str) -> None:
    from azr_jax.distributed import allgather_json, host_map

    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=int(process_id))
    seen = []

    def square(part):
        seen.extend(part)
        return [{"x": x, "sq": x * x, "who": jax.process_index()} for x in part]

    results = host_map(square, list(range(7)))
    gathered = allgather_json({"process": jax.process_index(), "text": "é" * (jax.process_index() + 1)})
    with open(f"{out_dir}/result{process_id}.json", "w") as f:
        json.dump({"results": results, "seen": seen, "gathered": gathered}, f)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
