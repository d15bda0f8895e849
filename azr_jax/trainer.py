"""The training run: config -> mesh -> policy -> self-play loop -> updates, checkpoints, metrics.

A run lives in `out_dir`, laid out and read back by run_folder.py. Everything random derives
from (config seed, step), so a resumed run repeats exactly what the uninterrupted run would do.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from azr_jax.checkpoint import CheckpointStore
from azr_jax.config import TrainConfig
from azr_jax.device_memory import GiB, device_memory_bytes, size
from azr_jax.errors import ConfigError
from azr_jax.graceful_stop import GracefulStop
from azr_jax.learner.batch import pack, split_mini_batches
from azr_jax.learner.loss import ClipConfig
from azr_jax.learner.memory import check_update_fits, worst_micro_batch
from azr_jax.learner.optimizer import learning_rate, make_optimizer
from azr_jax.learner.step import LossConfig, TrainStep
from azr_jax.metrics import MetricsLogger
from azr_jax.model import make_mesh, resolve_model_path
from azr_jax.model.lora import adapters_off, has_lora, split_trainable
from azr_jax.policy import build_policy
from azr_jax.run_folder import RunFolder
from azr_jax.run_lock import RunLock
from azr_jax.sampling.buckets import cache_bucket
from azr_jax.selfplay.buffers import SelfPlayBuffers
from azr_jax.selfplay.iteration import SelfPlay
from azr_jax.selfplay.seeding import PHASE_NAMES, Seeder, needs_seeding
from azr_jax.selfplay.task_types import ABDUCTION, INDUCTION
from azr_jax.typed_config import to_dict

log = logging.getLogger(__name__)

# Keys that may change when a run is resumed: how long, where (a run folder may be moved) and how it
# is observed, not what it learns.
RESUMABLE_CHANGES = ("steps", "out_dir", "checkpoint_every", "keep_checkpoints", "tensorboard", "wandb_project",
                     "progress", "log_samples", "eval.", "executor.workers", "azr.seeding.max_rounds")


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resume_compatible(saved: TrainConfig, current: TrainConfig) -> None:
    """Refuse to resume with a config that changes what the run learns (ConfigError naming keys)."""
    a, b = _flatten(to_dict(saved)), _flatten(to_dict(current))
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)
                     and not any(k == r or (r.endswith(".") and k.startswith(r)) for r in RESUMABLE_CHANGES))
    if changed:
        details = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in changed)
        raise ConfigError(f"cannot resume: the config differs from the run's in keys that change training "
                          f"({details}); start a new out_dir or restore those values")


class Trainer:
    """Owns every component of a run; `run()` trains from the start or the latest checkpoint.

    A context manager: leaving it (normally, on an error or on Ctrl-C) finishes a pending
    checkpoint write, stops orbax's threads and releases the run folder's lock."""

    def __init__(self, cfg: TrainConfig, *, resume: bool = False):
        self.cfg = cfg
        self.run_folder = RunFolder(cfg.out_dir)
        self.out_dir = self.run_folder.path
        self.primary = jax.process_index() == 0
        self._exit = contextlib.ExitStack()
        fresh_folder = not self.out_dir.exists()
        try:
            self._setup(resume)
        except BaseException:
            self._exit.close()
            if fresh_folder and self.run_folder.holds_only_lock():
                self.run_folder.remove()   # refused before anything was written: leave no folder behind
            raise

    def _setup(self, resume: bool) -> None:
        cfg, run = self.cfg, self.run_folder
        if self.primary:   # one writer per run folder, from before anything in it is read
            self._exit.enter_context(RunLock(self.out_dir))
        if resume:
            if not run.is_run():
                raise ConfigError(f"--resume: no run to resume in {self.out_dir} (config.yaml missing)")
            check_resume_compatible(run.read_config(), cfg)
        else:
            run.require_fresh()
        # Everything that can be refused is checked before anything is written or loaded.
        self.mesh = make_mesh(cfg.mesh)
        model_path = resolve_model_path(cfg.model.path)
        self.buffers = initial_buffers(cfg)
        if cfg.eval.every_n_steps:
            from azr_jax.eval import load_tasks
            for benchmark in cfg.eval.benchmarks:
                load_tasks(benchmark, cfg.eval.data_path(benchmark), cfg.eval.limit)
        log.info("loading %s on mesh %s", model_path, dict(self.mesh.shape))
        policy = build_policy(cfg.model, self.mesh)
        self.model, self.tokenizer = policy.model, policy.tokenizer
        self.sampler = policy.sampler(max_batch=cfg.rollout.max_batch)
        r = cfg.rollout   # the decode slots of prompts within the budget must fit (longer ones are checked as they come)
        self.sampler.check_fits(cache_bucket(min(r.max_prompt_tokens + r.max_new_tokens, self.sampler.max_length)),
                                hint="lower rollout.max_batch, rollout.max_prompt_tokens or rollout.max_new_tokens")
        o = cfg.optim
        self.updates_per_step = o.ppo_epochs * o.mini_batches
        self.learning_rate = learning_rate(o, cfg.steps * self.updates_per_step)
        # The trained state: every parameter, or only the adapters of a LoRA model (model.lora).
        _, self.params, _ = split_trainable(self.model)
        # The KL penalty's reference is the starting model, kept frozen (taken before any restore);
        # for LoRA the adapters switched off, with no copy of the base weights.
        reference = None
        if o.kl_coef:
            reference = adapters_off(self.params) if has_lora(self.model) else jax.tree.map(jnp.copy, self.params)
        self.train_step = TrainStep(self.model, make_optimizer(o, cfg.steps * self.updates_per_step), LossConfig(
            clip=ClipConfig(o.clip_low, o.clip_high, o.dual_clip), entropy_coef=o.entropy_coef,
            aggregation=o.loss_aggregation, logprob_chunk=o.logprob_chunk,
            # Several updates per rollout read the learner's log-probs, recomputed into the batch.
            old_logprobs="sampler" if self.updates_per_step > 1 else o.old_logprobs,
            kl_coef=o.kl_coef, kl_estimator=o.kl_estimator), self.mesh, reference=reference)
        self.opt_state = self.train_step.init_optimizer(self.params)
        if o.check_memory:
            self._check_update_memory()
        if self.primary:  # only now: a refused run leaves no folder behind
            run.write_config(cfg)
            run.copy_base_model(model_path, weights=has_lora(self.model))
        self.store = CheckpointStore(run.checkpoints, keep=cfg.keep_checkpoints)
        self._exit.callback(self.store.close)
        self.step = 0
        if resume:
            self._restore()
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def _check_update_memory(self) -> None:
        """Refuse a config whose largest possible micro-batch cannot fit (learner/memory.py)."""
        r, o = self.cfg.rollout, self.cfg.optim
        shape = worst_micro_batch(max_sequence=r.max_prompt_tokens + r.max_new_tokens,
                                  tokens_per_device=o.micro_batch_tokens, row_devices=self.train_step.row_devices)
        limit = device_memory_bytes() if o.memory_gb is None else int(o.memory_gb * GiB)
        need = check_update_fits(self.train_step, self.params, self.opt_state, shape, memory_bytes=limit, hint=(
            "lower optim.micro_batch_tokens, rollout.max_prompt_tokens or rollout.max_new_tokens, set "
            "model.remat=true, or use more devices"))
        log.info("update memory: %s per device at most (micro-batches up to %d x %d tokens) of %s", size(need.peak),
                 shape.rows, shape.length, "unknown" if limit is None else size(limit))

    def close(self) -> None:
        self._exit.close()

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _restore(self) -> None:
        restored = self.store.restore_latest(params_like=self.params, opt_state_like=self.opt_state)
        if restored is None:
            log.info("no checkpoint yet in %s: starting from step 0", self.store.directory)
            return
        self.params, self.opt_state = restored.params, restored.opt_state
        nnx.update(self.model, self.params)
        self.step = int(restored.state["step"])
        self.buffers.load_state_dict(restored.state["buffers"], resume_step=self.step)
        log.info("resumed from step %d", self.step)

    def save(self) -> None:
        self.store.save(self.step, params=self.params, opt_state=self.opt_state,
                        state={"step": self.step, "buffers": self.buffers.state_dict(), "config": to_dict(self.cfg)})

    def run(self) -> bool:
        """Train up to `steps` iterations; False when a stop signal ended the run early, after the
        iteration it arrived in and that iteration's checkpoint (graceful_stop.py)."""
        cfg = self.cfg
        metrics = MetricsLogger(self.out_dir, tensorboard=cfg.tensorboard, wandb_project=cfg.wandb_project,
                                resume_step=self.step if self.step else None, config=to_dict(cfg),
                                enabled=self.primary, samples=cfg.log_samples > 0)
        with make_executor(cfg) as ex:
            selfplay = make_selfplay(cfg, self.tokenizer, self.sampler, ex, self.buffers)
            if self.step == 0 and needs_seeding(cfg.azr):
                self._seed(selfplay)
            progress = _progress(cfg, self.step) if self.primary else None
            try:
                with GracefulStop() as stop:
                    while self.step < cfg.steps:
                        self.step += 1
                        row, episodes = self._iteration(selfplay)
                        if cfg.eval.every_n_steps and self.step % cfg.eval.every_n_steps == 0:
                            row.update(self._evaluate(ex))
                        metrics.log(self.step, row)
                        metrics.log_samples(self.step, _first_per_group(episodes, cfg.log_samples))
                        if progress is not None:
                            progress.update(1)
                            progress.set_postfix(_summary(row), refresh=False)
                        if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                            self.save()
                        if stop.requested():
                            log.warning("%s: stopped after step %d of %d", stop.signal_name, self.step, cfg.steps)
                            break
                    if not self.store.all_steps() or self.store.latest_step() != self.step:
                        self.save()
            finally:
                if progress is not None:
                    progress.close()
                metrics.close()
        return self.step >= cfg.steps

    def _seed(self, selfplay: SelfPlay) -> None:
        """The seeding phase (selfplay/seeding.py); its result becomes the buffers at step 0."""
        a = self.cfg.azr
        progress = _SeedingProgress(a.seed_size) if self.primary and self.cfg.progress else None
        try:
            state = Seeder(selfplay, folder=self.run_folder.seeds, write=self.primary,
                           on_seed=progress.update if progress else None).run(
                io_seeds=None if a.seed_file is None else list(self.buffers[ABDUCTION].records),
                induction_seeds=None if a.induction_seed_file is None else list(self.buffers[INDUCTION].records))
        finally:
            if progress is not None:
                progress.close()
        self.buffers.reset({"io": state.io, "induction": state.induction})
        log.info("seeding done: %d deduction/abduction and %d induction seeds (%s)", len(state.io),
                 len(state.induction), self.run_folder.seeds)

    def _iteration(self, selfplay: SelfPlay) -> tuple[dict[str, float], list[dict[str, Any]]]:
        result = selfplay.iteration(self.step)
        # The update gets the device memory it was sized for (learner/memory.py): the decode slots'
        # KV cache is freed now and allocated again by the next rollout.
        self.sampler.release()
        start = time.perf_counter()
        o = self.cfg.optim
        batches = [pack(part, group_size=o.micro_batch_size, tokens_per_device=o.micro_batch_tokens,
                        pad_id=self.pad_id, aggregation=o.loss_aggregation, row_devices=self.train_step.row_devices,
                        # exact only when a zero-advantage sequence adds nothing at all (learner/batch.py)
                        skip_zero_advantage=o.entropy_coef == 0 and o.kl_coef == 0,
                        attention_length=self.train_step.attention_length)
                   for part in split_mini_batches(result.sequences, o.mini_batches, group_size=o.micro_batch_size)]
        if self.updates_per_step > 1:   # old log-probs of the policy that sampled, before it moves
            batches = [self.train_step.with_learner_logprobs(self.params, b) for b in batches]
        updates = []
        for _ in range(o.ppo_epochs):
            for batch in batches:
                self.params, self.opt_state, learner = self.train_step(self.params, self.opt_state, batch)
                updates.append(learner)
        nnx.update(self.model, self.params)  # the sampler reads these same arrays next iteration
        log.info("step %d: %d update(s) on %d sequences (%d skipped) in %d micro-batches of %s, %.0f%% padding, "
                 "took %.1f s", self.step, len(updates), sum(b.num_sequences for b in batches),
                 sum(b.skipped for b in batches), sum(len(b.micro_batches) for b in batches),
                 ", ".join(sorted({"x".join(map(str, mb.tokens.shape)) for b in batches for mb in b.micro_batches})),
                 100 * float(np.mean([b.padding_fraction for b in batches])), time.perf_counter() - start)
        learner = {key: float(np.mean([u[key] for u in updates])) for key in updates[0]}   # means over the updates
        row = {**result.metrics, **learner, "time/update_s": time.perf_counter() - start,
               "optim/updates": float(len(updates)),
               "optim/lr": float(self.learning_rate((self.step - 1) * self.updates_per_step))}
        row["time/iteration_s"] = row["time/selfplay_s"] + row["time/update_s"]
        return row, result.episodes

    def _evaluate(self, executor) -> dict[str, float]:
        from azr_jax.eval import Checkers, run_benchmarks

        start = time.perf_counter()
        log.info("step %d: evaluating on %s", self.step, ", ".join(self.cfg.eval.benchmarks))
        with Checkers(lambda packages: make_executor(self.cfg, packages=packages), programs=executor) as checkers:
            metrics = run_benchmarks(self.cfg.eval, self.sampler, self.tokenizer, self.cfg.model.prompt_template,
                                     checkers, seed=self.step,
                                     require_answer_tag=self.cfg.azr.reward.require_answer_tag)
        metrics["time/eval_s"] = time.perf_counter() - start
        log.info("step %d: %s", self.step, ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if "pass@" in k))
        return metrics


def initial_buffers(cfg: TrainConfig) -> SelfPlayBuffers:
    """The buffers a run starts from: the seed files of `azr.*`, else the zero triplet."""
    a = cfg.azr
    return SelfPlayBuffers.initial(seed_file=a.seed_file, induction_seed_file=a.induction_seed_file,
                                   seed_size=a.seed_size, min_seeds=1, max_programs=a.max_programs)


def make_selfplay(cfg: TrainConfig, tokenizer, policy, executor, buffers: SelfPlayBuffers) -> SelfPlay:
    """The run's self-play loop over these parts, with its `azr` and `rollout` options."""
    return SelfPlay(cfg.azr, cfg.rollout, tokenizer, policy, executor, buffers, template=cfg.model.prompt_template,
                    seed=cfg.seed)


def make_executor(cfg: TrainConfig, packages: tuple[str, ...] = ()):
    """The run's sandboxed executor (a context manager); its template process starts on creation.
    `packages`: installed packages its jobs may use (math_verify for grading math benchmarks)."""
    from azr_jax.executor import Executor  # not at import: importing the trainer starts no process

    e = cfg.executor
    return Executor(workers=e.workers or os.cpu_count() or 1, timeout_s=e.timeout_s, memory_mb=e.memory_mb,
                    max_output_chars=e.max_output_chars, banned_imports=cfg.azr.banned_imports,
                    require_private_root=e.require_private_root, packages=packages)


def _first_per_group(episodes: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The first k episodes of each (task, role) group."""
    seen: dict[tuple[str, str], int] = {}
    kept = []
    for e in episodes:
        group = (e["task"], e["role"])
        seen[group] = seen.get(group, 0) + 1
        if seen[group] <= k:
            kept.append(e)
    return kept


def _summary(row: dict[str, float]) -> dict[str, str]:
    keys = {"valid": "/propose/valid_rate", "acc": "/solve/accuracy"}
    out = {}
    for short, suffix in keys.items():
        vals = [v for k, v in row.items() if k.endswith(suffix) and v == v]
        if vals:
            out[short] = f"{sum(vals) / len(vals):.2f}"
    out["s/it"] = f"{row['time/iteration_s']:.0f}"
    return out


class _SeedingProgress:
    """One bar per seeding phase, counting seeds up to the target."""

    def __init__(self, target: int) -> None:
        self.target, self.phase, self.bar = target, None, None

    def update(self, phase: str, count: int) -> None:
        from tqdm import tqdm
        if phase != self.phase:
            self.close()
            self.phase, self.bar = phase, tqdm(total=self.target, desc=f"seeding {PHASE_NAMES[phase]}", unit="seed",
                                               dynamic_ncols=True)
        self.bar.n = min(count, self.target)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _progress(cfg: TrainConfig, start: int):
    if not cfg.progress:
        return None
    from tqdm import tqdm
    return tqdm(total=cfg.steps, initial=start, desc="azr", unit="it", dynamic_ncols=True)
