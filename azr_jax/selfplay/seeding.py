"""The seeding phase: a run without seed files first fills its buffers with its own programs.

As the reference's seeding runs do (docs/reference.md §10): starting from the zero triplet, rounds of
`azr.seeding.batch_size` abduction then deduction proposer prompts, references drawn from the
seeds so far; the WHOLE generation is parsed (thinking included), the program cleaned up
(`parsing.clean_seed_program`) and validated in the sandbox; valid, new (program, input) pairs
join the seeds. No learnability, no format check, no update. Then induction: rounds of
proposals for the seed programs in turn (each prompt one program) until as many distinct
induction seeds exist. Both phases stop at `azr.seed_size` seeds or after
`azr.seeding.max_rounds` rounds, whichever comes first.

Differs: duplicates are recognised by (program, input) or (program, inputs), not by the whole
JSON record (whose `thought` makes nearly every record distinct).

The seeds so far are written after every round to `<out_dir>/seeds/` in the reference's jsonl
format (usable as `azr.seed_file` / `azr.induction_seed_file` of later runs), with `seeding.json`
recording the rounds done, so an interrupted phase resumes where it stopped and draws exactly
what the uninterrupted one would have.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from azr_jax.errors import CheckpointError
from azr_jax.model.atomic_dir import write_atomic
from azr_jax.selfplay.prompts import resample_within_budget
from azr_jax.selfplay.records import (IDENTITY_INDUCTION_TASK, ZERO_TRIPLET, InductionTask, Triplet,
                                      read_induction_tasks, read_triplets, write_jsonl)
from azr_jax.selfplay.task_types import ABDUCTION, DEDUCTION, INDUCTION, Role

log = logging.getLogger(__name__)

IO_FILE, INDUCTION_FILE, STATE_FILE = "seed_io.jsonl", "code_f_seed_io.jsonl", "seeding.json"
_PHASES = ("io", "induction")
PHASE_NAMES = {"io": "deduction/abduction", "induction": "induction"}


@dataclass
class SeedingState:
    """What the phase has found so far, and how many rounds of each phase it has run."""

    io: list[Triplet] = field(default_factory=lambda: [ZERO_TRIPLET])
    induction: list[InductionTask] = field(default_factory=lambda: [IDENTITY_INDUCTION_TASK])
    rounds: dict[str, int] = field(default_factory=lambda: {phase: 0 for phase in _PHASES})
    history: list[dict[str, Any]] = field(default_factory=list)  # per round: phase, proposals, valid, new

    def save(self, folder: Path) -> None:
        """Seeds first, then the record that counts them: a crash between leaves the old record,
        whose round is then simply run again."""
        write_jsonl(folder / IO_FILE, self.io)
        write_jsonl(folder / INDUCTION_FILE, self.induction)
        write_atomic(folder / STATE_FILE, [json.dumps({"rounds": self.rounds, "io": len(self.io),
                                                       "induction": len(self.induction),
                                                       "history": self.history}, indent=1)])

    @classmethod
    def load(cls, folder: Path) -> SeedingState | None:
        """The saved state, or None when the folder holds none."""
        if not (folder / STATE_FILE).is_file():
            return None
        try:
            record = json.loads((folder / STATE_FILE).read_text())
            io = read_triplets(folder / IO_FILE)[:record["io"]]
            induction = read_induction_tasks(folder / INDUCTION_FILE)[:record["induction"]]
            rounds = {phase: int(record["rounds"][phase]) for phase in _PHASES}
        except (ValueError, KeyError, TypeError, OSError) as e:
            raise CheckpointError(f"{folder}: the seeding phase's saved state is unreadable ({e}); remove the "
                                  f"folder to seed again") from None
        if len(io) != record["io"] or len(induction) != record["induction"]:
            raise CheckpointError(f"{folder}: {STATE_FILE} counts more seeds than the seed files hold")
        return cls(io=io, induction=induction, rounds=rounds, history=list(record.get("history", [])))


def needs_seeding(azr) -> bool:
    """Whether a run with these `azr` options has a seeding phase (some seed file is missing)."""
    return azr.seeding.enabled and (azr.seed_file is None or azr.induction_seed_file is None)


class Seeder:
    """Runs the seeding phase with a SelfPlay's policy, template, executor and sampling settings."""

    def __init__(self, selfplay, *, folder: Path | None, write: bool = True,
                 on_seed: Callable[[str, int], None] | None = None) -> None:
        self.selfplay, self.folder, self.write = selfplay, folder, write
        self.on_seed = on_seed or (lambda phase, count: None)  # progress: (phase, seeds now)
        az = selfplay.azr
        self.target, self.batch, self.max_rounds = az.seed_size, az.seeding.batch_size, az.seeding.max_rounds

    def run(self, *, io_seeds: list[Triplet] | None = None,
            induction_seeds: list[InductionTask] | None = None) -> SeedingState:
        """Grow the seed lists not given (from seed files) to `azr.seed_size`, resuming a saved phase."""
        state = (SeedingState.load(self.folder) if self.folder is not None else None) or SeedingState()
        given = {"io": io_seeds, "induction": induction_seeds}
        if io_seeds is not None:
            state.io = list(io_seeds)
        if induction_seeds is not None:
            state.induction = list(induction_seeds)
        for phase in _PHASES:
            if given[phase] is not None:
                continue
            seeds = state.io if phase == "io" else state.induction
            self.on_seed(phase, len(seeds))
            while len(seeds) < self.target and state.rounds[phase] < self.max_rounds:
                self._round(phase, state)
                self.on_seed(phase, len(seeds))
            if len(seeds) < self.target:
                log.warning("seeding stopped after %d rounds with %d of %d %s seeds; training starts from these "
                            "(raise azr.seeding.max_rounds, or give seed files)", state.rounds[phase], len(seeds),
                            self.target, PHASE_NAMES[phase])
        return state

    def _round(self, phase: str, state: SeedingState) -> None:
        sp, k = self.selfplay, state.rounds[phase]
        rng = np.random.default_rng([sp.seed, 0x5EED, _PHASES.index(phase), k])
        sampling_seed = int(rng.integers(2**31))
        if phase == "io":
            jobs = [job for t in (ABDUCTION, DEDUCTION) for job in self._io_jobs(t, state.io, rng)]
            generations = [r.generation for r in sp.sample(jobs, Role.PROPOSE, n=1, seed=sampling_seed)]
            # Both types parse and validate a program and an input the same way.
            checks = DEDUCTION.check_proposals(sp.executor, [()] * len(jobs), generations, [""] * len(jobs), sp.azr,
                                               seeding=True)
            seeds, key = state.io, _io_key
        else:
            # The seed programs in turn, one per prompt; those whose prompt is over budget are skipped.
            start = k * self.batch
            programs, jobs = [], []
            for i in range(self.batch):
                program = state.io[(start + i) % len(state.io)]
                job = self._induction_job(program)
                if len(job.ids) <= sp.rollout.max_prompt_tokens:
                    programs.append(program)
                    jobs.append(job)
            generations = [r.generation for r in sp.sample(jobs, Role.PROPOSE, n=1, seed=sampling_seed)]
            checks = INDUCTION.check_proposals(sp.executor, [(p,) for p in programs], generations,
                                               [""] * len(programs), sp.azr)
            seeds, key = state.induction, _induction_key
        known = {key(s) for s in seeds}
        new = 0
        for check in checks:
            if check.valid and key(check.record) not in known and len(seeds) < self.target:
                known.add(key(check.record))
                seeds.append(check.record)
                new += 1
        state.rounds[phase] = k + 1
        valid = sum(c.valid for c in checks)
        state.history.append({"phase": phase, "round": k + 1, "proposals": len(checks), "valid": valid, "new": new})
        log.info("seeding %s round %d: %d of %d proposals valid, %d new; %d of %d seeds", phase, k + 1, valid,
                 len(checks), new, len(seeds), self.target)
        if self.folder is not None and self.write:
            state.save(self.folder)

    def _io_jobs(self, task, seeds: list[Triplet], rng: np.random.Generator):
        sp, az = self.selfplay, self.selfplay.azr

        def draw():
            k = min(az.num_references, len(seeds))
            refs = [seeds[int(i)] for i in rng.choice(len(seeds), size=k, replace=False)]
            return sp.template.wrap(task.propose_text(refs, az, seeding=True))

        prompts = [resample_within_budget(draw, sp.tokenizer, content_max_length=sp.rollout.max_prompt_tokens)
                   for _ in range(self.batch)]
        return [sp.job(prompt, None) for prompt in prompts]

    def _induction_job(self, program: Triplet):
        sp = self.selfplay
        prompt = sp.template.wrap(INDUCTION.propose_text(program, sp.azr))
        return sp.job(prompt, program)


def _io_key(t: Triplet) -> tuple[str, str]:
    return t.snippet, t.input


def _induction_key(t: InductionTask) -> tuple[str, tuple[str, ...]]:
    return t.snippet, t.inputs
