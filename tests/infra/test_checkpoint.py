import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

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
    r = store.restore(params_like=params, opt_state_like=opt_state)
    p, o, s = r.params, r.opt_state, r.state
    assert r.step == 3 and s == {"step": 3, "buffers": [[1, "a"]]}
    np.testing.assert_array_equal(p["w"], _tree(3.0)["w"])
    assert p["b"]["x"].dtype == jnp.bfloat16
    assert jax.tree.structure(o) == jax.tree.structure(opt_state)
    r2 = store.restore(params_like=params, opt_state_like=None, step=2)
    np.testing.assert_array_equal(r2.params["w"], _tree(2.0)["w"])
    assert r2.opt_state is None and r2.state["step"] == 2
    store.close()


def test_restore_into_sharding(tmp_path):
    mesh = jax.make_mesh((2, 4), ("a", "b"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    sharding = NamedSharding(mesh, P("a", "b"))
    params = {"w": jax.device_put(jnp.arange(64.0).reshape(8, 8), sharding)}
    store = CheckpointStore(tmp_path, keep=1)
    store.save(1, params=params, opt_state={"n": jnp.zeros(())}, state={})
    store.wait()
    p = store.restore(params_like=params, opt_state_like={"n": jnp.zeros(())}).params
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
    with pytest.raises(CheckpointError, match=r"holds a different params than this run: params\['extra'\] is absent"):
        store.restore(params_like={"w": jnp.zeros((2, 2)), "extra": jnp.zeros(3)}, opt_state_like=opt_state)
    with pytest.raises(CheckpointError, match=r"params\['w'\] is \[\[2, 2\], 'float32'\] there and \[\[3, 2\], 'float32'\]"):
        store.restore_latest(params_like={"w": jnp.zeros((3, 2))}, opt_state_like=opt_state)
    assert store.all_steps() == [1]   # a different model is no damage: nothing is moved aside
    with pytest.raises(CheckpointError, match="no checkpoint for step 7"):
        store.restore(params_like={"w": jnp.zeros((2, 2))}, opt_state_like=opt_state, step=7)


def test_sigkill_during_save_keeps_last_good_checkpoint(tmp_path):
    """A writer killed while a checkpoint is being written (its temporary folder exists) leaves
    the previous checkpoint restorable and, once the store is opened again, no half step."""
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
    deadline = time.monotonic() + 60
    while not any("tmp" in name for name in os.listdir(tmp_path)):   # a write is under way
        assert time.monotonic() < deadline and proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert any("tmp" in name for name in os.listdir(tmp_path))
    store = CheckpointStore(tmp_path, keep=3)
    restored = store.restore_latest(params_like={"w": jnp.zeros((64, 1024, 64))}, opt_state_like={"n": jnp.zeros(())})
    assert restored.step >= 1 and restored.state == {"step": restored.step}
    w = restored.params["w"]
    assert float(w[0, 0, 0]) == float(restored.step) and float(w[-1, -1, -1]) == float(restored.step)
    # Only committed step folders remain visible (temporary ones were cleaned up on open).
    assert all(name.isdigit() for name in os.listdir(tmp_path))
    store.close()


# -- damaged checkpoints --------------------------------------------------------------------------

def _params(step):
    return {"w": jnp.arange(1000, dtype=jnp.float32).reshape(10, 100) + step, "b": jnp.ones(7, jnp.bfloat16) * step}


_OPT = {"m": jnp.linspace(0, 1, 1000).reshape(10, 100), "count": jnp.array(3)}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A store with checkpoints 1 and 2 (both intact), written once for every damage case."""
    root = tmp_path_factory.mktemp("pristine") / "checkpoints"
    store = CheckpointStore(root, keep=3)
    for step in (1, 2):
        store.save(step, params=_params(step), opt_state=_OPT, state={"step": step, "buffers": {"n": step}})
    store.close()
    return root


def _files(root):
    return sorted(str(p.relative_to(root / "2")) for p in (root / "2").rglob("*") if p.is_file())


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garble":
        middle = bytearray(data)
        for i in range(len(data) // 3, len(data) // 3 + max(1, len(data) // 10)):
            middle[i] ^= 0x5A
        path.write_bytes(bytes(middle))
    else:
        path.unlink()


def _restore_damaged(pristine, tmp_path, file, how):
    root = tmp_path / "checkpoints"
    shutil.copytree(pristine, root)
    _damage(root / "2" / file, how)
    store = CheckpointStore(root, keep=3)
    try:
        return store.restore_latest(params_like=_params(0), opt_state_like=_OPT), root
    finally:
        store.close()


def _assert_exact(restored):
    step = restored.step
    np.testing.assert_array_equal(restored.params["w"], _params(step)["w"])
    np.testing.assert_array_equal(restored.params["b"], _params(step)["b"])
    np.testing.assert_array_equal(restored.opt_state["m"], _OPT["m"])
    assert int(restored.opt_state["count"]) == 3 and restored.state == {"step": step, "buffers": {"n": step}}


@pytest.mark.parametrize("how", ["truncate", "garble", "delete"])
def test_each_damaged_file_gives_exact_data_or_the_previous_checkpoint(pristine, tmp_path_factory, how, caplog):
    """Every file of the newest checkpoint, damaged three ways: the restore is either exact
    (orbax did not need that file) or falls back to step 1 with a warning and step 2 moved
    aside, never wrong numbers. The files that hold data must be among the fallbacks."""
    fell_back = []
    for file in _files(pristine):
        caplog.clear()
        tmp_path = tmp_path_factory.mktemp("damaged")
        with caplog.at_level(logging.WARNING, logger="azr_jax.checkpoint"):
            restored, root = _restore_damaged(pristine, tmp_path, file, how)
        _assert_exact(restored)
        if restored.step == 1:
            fell_back.append(file)
            assert sorted(os.listdir(root.with_name("checkpoints.damaged"))) == ["2"]   # moved, not deleted
            assert sorted(os.listdir(root)) == ["1"]
            [warning] = [r.getMessage() for r in caplog.records]
            assert warning.startswith("checkpoint 2 is damaged (") and "moved to" in warning
        else:
            assert restored.step == 2 and not root.with_name("checkpoints.damaged").exists()
    assert "state/metadata" in fell_back
    assert any(f.startswith("params/d/") or f.startswith("params/ocdbt") for f in fell_back)
    assert any(f.startswith("opt_state/") for f in fell_back)
    if how == "garble":   # a garbled data chunk decodes to wrong numbers: only the checksum catches it
        assert any("ocdbt.process_0/d/" in f for f in fell_back)


def test_no_intact_checkpoint_is_a_clear_error(pristine, tmp_path):
    root = tmp_path / "checkpoints"
    shutil.copytree(pristine, root)
    for step in ("1", "2"):
        _damage(root / step / "state" / "metadata", "garble")
    store = CheckpointStore(root, keep=3)
    with pytest.raises(CheckpointError, match=r"no intact checkpoint in .*found 2, all damaged \(step 2: its JSON "
                                              r"record is unreadable .*; step 1: its JSON record is unreadable"):
        store.restore_latest(params_like=_params(0), opt_state_like=_OPT)
    store.close()
    assert sorted(os.listdir(root.with_name("checkpoints.damaged"))) == ["1", "2"]


def test_a_checkpoint_written_before_checksums_still_restores(pristine, tmp_path):
    root = tmp_path / "checkpoints"
    shutil.copytree(pristine, root)
    record = json.loads((root / "2" / "state" / "metadata").read_text())
    del record["_integrity"]
    (root / "2" / "state" / "metadata").write_text(json.dumps(record))
    store = CheckpointStore(root, keep=3)
    _assert_exact(store.restore_latest(params_like=_params(0), opt_state_like=_OPT))
    store.close()


def test_read_only_store_changes_nothing(pristine, tmp_path):
    root = tmp_path / "checkpoints"
    shutil.copytree(pristine, root)
    (root / "3.orbax-checkpoint-tmp-123").mkdir()   # a save of a running trainer, under way
    _damage(root / "2" / "state" / "metadata", "garble")
    store = CheckpointStore(root, read_only=True)
    restored = store.restore_latest(params_like=_params(0), opt_state_like=None)
    store.close()
    assert restored.step == 1 and restored.opt_state is None
    assert sorted(os.listdir(root)) == ["1", "2", "3.orbax-checkpoint-tmp-123"]
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        CheckpointStore(tmp_path / "absent", read_only=True)
