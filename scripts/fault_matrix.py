"""Reliability figures for checkpoints: damage every file of the newest checkpoint three ways
(truncate to half, garble a tenth of it, delete it) and resume, as `--resume` does.

For each fault it prints whether the restore was exact (orbax did not need that file), fell back
to the previous checkpoint (the damaged one moved aside), or -- the failure this guards against --
returned wrong numbers or raised. Last line: the totals.

    python scripts/fault_matrix.py
"""
from __future__ import annotations

import logging
import re
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import jax.numpy as jnp
    import numpy as np

    from azr_jax.checkpoint import CheckpointStore

    logging.getLogger("azr_jax.checkpoint").setLevel(logging.ERROR)   # the table says it all

    def params(step):
        return {"w": jnp.arange(4096, dtype=jnp.float32).reshape(64, 64) + step,
                "b": jnp.ones(64, jnp.bfloat16) * step}

    opt = {"m": jnp.linspace(0, 1, 4096).reshape(64, 64), "count": jnp.array(3)}
    with tempfile.TemporaryDirectory() as tmp:
        pristine = Path(tmp) / "pristine"
        store = CheckpointStore(pristine, keep=3)
        for step in (1, 2):
            store.save(step, params=params(step), opt_state=opt, state={"step": step})
        store.close()
        files = sorted(str(p.relative_to(pristine / "2")) for p in (pristine / "2").rglob("*") if p.is_file())
        totals: Counter = Counter()
        print(f"{'file of checkpoint 2':<48} {'truncate':<10} {'garble':<10} {'delete':<10}")
        for file in files:
            row = []
            for how in ("truncate", "garble", "delete"):
                root = Path(tmp) / "case"
                shutil.rmtree(root.parent / "case.damaged", ignore_errors=True)
                shutil.rmtree(root, ignore_errors=True)
                shutil.copytree(pristine, root)
                _damage(root / "2" / file, how)
                store = CheckpointStore(root, keep=3)
                try:
                    r = store.restore_latest(params_like=params(0), opt_state_like=opt)
                    exact = (np.array_equal(r.params["w"], params(r.step)["w"])
                             and np.array_equal(r.params["b"], params(r.step)["b"])
                             and np.array_equal(r.opt_state["m"], opt["m"]) and r.state == {"step": r.step})
                    outcome = "WRONG" if not exact else ("exact" if r.step == 2 else "fallback")
                except Exception as e:  # noqa: BLE001 -- counted, not hidden
                    outcome = f"RAISED {type(e).__name__}"
                finally:
                    store.close()
                totals[outcome] += 1
                row.append(outcome)
            print(f"{re.sub('[0-9a-f]{32}', '<hash>', file):<48} " + " ".join(f"{o:<10}" for o in row))
        print(f"faults={sum(totals.values())} exact={totals['exact']} fallback={totals['fallback']} "
              f"wrong={totals['WRONG']} raised={sum(v for k, v in totals.items() if k.startswith('RAISED'))}")


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garble":
        garbled = bytearray(data)
        for i in range(len(data) // 3, len(data) // 3 + max(1, len(data) // 10)):
            garbled[i] ^= 0x5A
        path.write_bytes(bytes(garbled))
    else:
        path.unlink()


if __name__ == "__main__":
    main()
