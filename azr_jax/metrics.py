"""Run metrics: one JSON object per iteration in `metrics.jsonl`, mirrored to TensorBoard/W&B,
and optionally sample episodes (responses with their rewards) in `samples.jsonl`.

Only process 0 writes. On resume, lines from iterations after the restored checkpoint (the
iteration that was in flight when the run died) are dropped so the files match the state.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from azr_jax.errors import ConfigError
from azr_jax.model.atomic_dir import write_atomic


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf; keep the fact visible
    return v


class JsonLines:
    """An append-only file of JSON records that each carry a "step". A fresh run in a reused
    folder starts it empty; a resumed run keeps only the records up to `resume_step`."""

    def __init__(self, path: Path, *, resume_step: int | None):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and path.exists():
            kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            write_atomic(path, (line + "\n" for line in kept))
        elif resume_step is None and path.exists():
            path.unlink()
        self._file = path.open("a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class MetricsLogger:
    def __init__(self, out_dir: str | Path, *, tensorboard: bool = True, wandb_project: str | None = None,
                 resume_step: int | None = None, config: Mapping[str, Any] | None = None,
                 enabled: bool = True, samples: bool = False):
        from azr_jax.run_folder import RunFolder  # the layout; run_folder imports the config, which is heavy

        run = RunFolder(out_dir)
        self.enabled = enabled
        self.path = run.metrics_file
        self._tb = self._wandb = self._samples = None
        if not enabled:
            return
        self._metrics = JsonLines(self.path, resume_step=resume_step)
        if samples:
            self._samples = JsonLines(run.samples_file, resume_step=resume_step)
        if tensorboard:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(str(run.tensorboard), purge_step=resume_step + 1 if resume_step else None)
        if wandb_project:
            try:
                import wandb
            except ImportError:
                raise ConfigError("wandb_project is set but wandb is not installed: pip install 'azr-jax[wandb]'") from None
            self._wandb = wandb.init(project=wandb_project, dir=str(out_dir), config=dict(config or {}),
                                     resume="allow", id=_wandb_run_id(run.wandb_id_file))

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        self._metrics.write({"step": step, **{k: _jsonable(v) for k, v in metrics.items()}})
        if self._tb is not None:
            for k, v in metrics.items():
                # NaN marks "nothing measured this step" (e.g. no valid proposal): a gap, not a point.
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(dict(metrics), step=step)

    def log_samples(self, step: int, records: Iterable[Mapping[str, Any]]) -> None:
        """One line per record (an episode), tagged with the step; a no-op without `samples`."""
        if not self.enabled or self._samples is None:
            return
        for record in records:
            self._samples.write({"step": step, **{k: _jsonable(v) for k, v in record.items()}})

    def close(self) -> None:
        if not self.enabled:
            return
        self._metrics.close()
        if self._samples is not None:
            self._samples.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _wandb_run_id(id_file: Path) -> str:
    """A stable W&B run id per run folder, so a resumed run continues the same W&B run."""
    if not id_file.exists():
        import uuid
        id_file.write_text(uuid.uuid4().hex[:16])
    return id_file.read_text().strip()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file, in order."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
