import os
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from azr_jax.checkpoint import CheckpointStore
from azr_jax.errors import CheckpointError


def _tree(scale: float):
    return {"w": jnp.arange(16.0).reshape(4, 4) * scale, "b": {"x": jnp.ones(4, jnp.bfloat16) * scale}}


def test_save_restore_keep_last_k(tmp_path):
    params = _tree(1.0)
    opt = optax.adamw(1e-3)
    opt_state = opt.init(params)
    store = CheckpointStore(tmp_path, keep=2)
    for step in (1, 2, 3):
        store.save(step, params=_tree(float(step)), opt_state=opt_state, state={"step": step, "buffers": [[1, "a"]]})
    store.wait()
    assert store.all_steps() == [2, 3]
    p, o, s = store.restore(params_like=params, opt_state_like=opt_state)
    assert s == {"step": 3, "buffers": [[1, "a"]]}
    np.testing.assert_array_equal(p["w"], _tree(3.0)["w"])
    assert p["b"]["x"].dtype == jnp.bfloat16
    assert jax.tree.structure(o) == jax.tree.structure(opt_state)
    p2, s2 = store.restore_params(params, step=2)
    np.testing.assert_array_equal(p2["w"], _tree(2.0)["w"])
    store.close()


def test_restore_into_sharding(tmp_path):
    mesh = jax.make_mesh((2, 4), ("a", "b"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    sharding = NamedSharding(mesh, P("a", "b"))
    params = {"w": jax.device_put(jnp.arange(64.0).reshape(8, 8), sharding)}
    store = CheckpointStore(tmp_path, keep=1)
    store.save(1, params=params, opt_state={"n": jnp.zeros(())}, state={})
    store.wait()
    p, _, _ = store.restore(params_like=params, opt_state_like={"n": jnp.zeros(())})
    assert p["w"].sharding == sharding
    np.testing.assert_array_equal(p["w"], params["w"])
    store.close()


def test_missing_and_mismatched(tmp_path):
    store = CheckpointStore(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        store.restore(params_like={}, opt_state_like={})
    opt_state = {"n": jnp.zeros(())}
    store.save(1, params={"w": jnp.zeros((2, 2))}, opt_state=opt_state, state={})
    store.wait()
    with pytest.raises(CheckpointError, match="does not match"):
        store.restore(params_like={"w": jnp.zeros((2, 2)), "extra": jnp.zeros(3)}, opt_state_like=opt_state)
    with pytest.raises(CheckpointError, match="no checkpoint for step 7"):
        store.restore(params_like={"w": jnp.zeros((2, 2))}, opt_state_like=opt_state, step=7)


def test_sigkill_during_save_keeps_last_good_checkpoint(tmp_path):
    """A writer killed mid-save leaves the previous checkpoint restorable and no half step."""
    script = textwrap.dedent(f"""
        import sys, jax.numpy as jnp
        from azr_jax.checkpoint import CheckpointStore
        store = CheckpointStore({str(tmp_path)!r}, keep=3)
        store.save(1, params={{"w": jnp.full((64, 1024, 64), 1.0)}}, opt_state={{"n": jnp.zeros(())}}, state={{"step": 1}})
        store.wait()
        print("saved", flush=True)
        step = 2
        while True:  # keep saving big checkpoints until killed
            store.save(step, params={{"w": jnp.full((64, 1024, 64), float(step))}}, opt_state={{"n": jnp.zeros(())}}, state={{"step": step}})
            step += 1
    """)
    env = dict(os.environ, PYTHONPATH=os.getcwd(), JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"saved"
    import time
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    store = CheckpointStore(tmp_path, keep=3)
    latest = store.latest_step()
    assert latest is not None and latest >= 1
    p, _, s = store.restore(params_like={"w": jnp.zeros((64, 1024, 64))}, opt_state_like={"n": jnp.zeros(())})
    assert s == {"step": latest}
    assert float(p["w"][0, 0, 0]) == float(latest) and float(p["w"][-1, -1, -1]) == float(latest)
    # Only committed step folders remain visible (temporary ones were cleaned up on open).
    assert all(name.isdigit() for name in os.listdir(tmp_path))
