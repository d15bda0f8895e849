"""One AZR self-play iteration: propose, validate, estimate learnability, solve, score, TRR++.

Order (azr-reference §11, with the project decisions):
  1. build the six prompt sets from the buffers as they are at the start of the step;
  2. sample every proposal in one sampler call;
  3. validate the proposals in the executor             | while the device samples the solver batch;
  4. sample n learnability rollouts per valid proposal  | while the executor scores the solver batch;
  5. score the learnability rollouts, compute both roles' rewards, grow the buffers;
  6. TRR++ advantages per (task type x role) group -> the sequences of one update.
Host work runs on one background thread, overlapping the device's sampling.

The policy is anything with the sampler's `generate(prompts, params)`; tests drive the loop with
a scripted policy through the same interface.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from azr_jax.config import TrainConfig
from azr_jax.learner.batch import TrainSequence
from azr_jax.sampling import SamplingParams
from azr_jax.selfplay.advantages import trr_advantages
from azr_jax.selfplay.buffers import SelfPlayBuffers, sample_references, sample_solver_tasks
from azr_jax.selfplay.parsing import extract_answer, extract_thought, format_ok, generation_text
from azr_jax.selfplay.prompts import (Prompt, make_template, propose_induction_prompt,
                                      propose_io_prompt, resample_within_budget, select_within_budget, solve_prompt)
from azr_jax.selfplay.rewards import (admit_to_buffer, learnability, proposer_reward, solve_rate, solver_reward)
from azr_jax.selfplay.scoring import (ProposalCheck, answer_accuracies, answer_parsed, check_induction_proposals,
                                      check_io_proposals)
from azr_jax.selfplay.tasks import GROUPS, InductionTask, Role, TaskType, Triplet

log = logging.getLogger(__name__)


class Policy(Protocol):
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> Sequence[Any]: ...


@dataclass(frozen=True)
class Job:
    """A prompt to sample: its text, token ids and what it was built from."""

    prompt: Prompt
    ids: list[int]
    source: Any  # proposer: the references shown (tuple of Triplet); solver: the task record


@dataclass
class Response:
    ids: list[int]
    logprobs: np.ndarray
    generation: str  # what the prompt opened + the response text
    answer: str | None  # see parsing.extract_answer


@dataclass(frozen=True)
class IterationResult:
    sequences: list[TrainSequence]  # the update batch, group by group in GROUPS order
    metrics: dict[str, float]
    generated_tokens: int
    # One record per trained episode, in the order of `sequences`: task, role, response (what the
    # prompt opened + the generated text), response_tokens, reward, advantage, and the outcome
    # (proposals: valid + failure; solutions: accuracy). For reading what the model does.
    episodes: list[dict[str, Any]]


class _Timer:
    """Seconds per phase, each phase also logged: an iteration can take minutes."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.seconds[phase] = self.seconds.get(phase, 0.0) + elapsed
            log.info("step %d: %s took %.1f s", self.step, phase, elapsed)

    def timed(self, phase: str, fn, *args):
        with self(phase):
            return fn(*args)


class SelfPlay:
    """Runs iterations for one policy, tokenizer, executor and set of buffers."""

    def __init__(self, cfg: TrainConfig, tokenizer: Any, policy: Policy, executor: Any, buffers: SelfPlayBuffers):
        self.cfg, self.tokenizer, self.policy, self.executor, self.buffers = cfg, tokenizer, policy, executor, buffers
        self.template = make_template(cfg.model.prompt_template, tokenizer)
        self.task_types = [TaskType(t) for t in cfg.azr.task_types]
        self.intrinsic = [spec.resolve() for spec in cfg.azr.reward.intrinsic]

    # -- prompts ----------------------------------------------------------------------------

    def _encode(self, prompt: Prompt) -> list[int]:
        return list(self.tokenizer.encode(prompt.text, add_special_tokens=False))

    def job(self, prompt: Prompt, source: Any) -> Job:
        """A prompt ready for `sample`, remembering what it was built from."""
        return Job(prompt, self._encode(prompt), source)

    def proposer_jobs(self, task: TaskType, rng: np.random.Generator) -> list[Job]:
        """`azr.batch_size` proposer prompts of `task`, references drawn from the current buffers."""
        az = self.cfg.azr
        jobs = []
        for _ in range(az.batch_size):
            shown: list[tuple[Triplet, ...]] = []

            def draw() -> Prompt:
                if task is TaskType.INDUCTION:
                    refs = (self.buffers.sample_induction_program(rng),)
                    text = propose_induction_prompt(refs[0], num_inputs=az.induction_inputs)
                else:
                    refs = tuple(sample_references(self.buffers[task], rng, k=az.num_references,
                                                   weighting=az.reference_sampling))
                    text = propose_io_prompt(task, refs, banned_imports=az.banned_imports)
                shown.append(refs)
                return self.template.wrap(text)

            prompt = resample_within_budget(draw, self.tokenizer, content_max_length=self.cfg.rollout.max_prompt_tokens)
            jobs.append(self.job(prompt, shown[-1]))
        return jobs

    def _solver_jobs(self, task: TaskType, rng: np.random.Generator, step: int) -> list[Job]:
        az = self.cfg.azr
        tasks = sample_solver_tasks(self.buffers[task], rng, batch_size=az.batch_size, strategy=az.solver_sampling,
                                    current_step=step, past_epoch_window=az.past_epoch_window)
        prompts = [self.template.wrap(solve_prompt(task, t)) for t in tasks]
        keep = select_within_budget(prompts, self.tokenizer, rng, batch_size=az.batch_size,
                                    content_max_length=self.cfg.rollout.max_prompt_tokens)
        return [self.job(prompts[i], tasks[i]) for i in keep]

    # -- sampling ---------------------------------------------------------------------------

    def sample(self, jobs: Sequence[Job], *, n: int, seed: int) -> list[Response]:
        """n responses per job, job-major, parsed for their answers."""
        if not jobs:
            return []
        r = self.cfg.rollout
        params = SamplingParams(max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p,
                                top_k=r.top_k, n=n, seed=seed)
        log.info("sampling %d prompts x %d (longest prompt %d tokens)", len(jobs), n, max(len(j.ids) for j in jobs))
        samples = self.policy.generate([j.ids for j in jobs], params)
        require_tag = self.cfg.azr.reward.require_answer_tag
        responses = []
        for s in samples:
            generation = generation_text(jobs[s.prompt_index].prompt.opening, s.text)
            responses.append(Response(list(s.tokens), np.asarray(s.logprobs, np.float32), generation,
                                       extract_answer(generation, require_tag=require_tag)))
        return responses

    def _seed(self, step: int, call: int) -> int:
        return int(np.random.SeedSequence([self.cfg.seed, step, call]).generate_state(1)[0])

    # -- scoring ----------------------------------------------------------------------------

    def check_proposals(self, task: TaskType, jobs: list[Job], responses: list[Response]) -> list[ProposalCheck]:
        """Parse and validate (in the executor) one task type's proposals."""
        answers = [r.answer for r in responses]
        thoughts = [extract_thought(r.generation) for r in responses]
        if task is TaskType.INDUCTION:
            return check_induction_proposals(self.executor, [j.source[0] for j in jobs], answers,
                                             num_inputs=self.cfg.azr.induction_inputs, thoughts=thoughts)
        return check_io_proposals(self.executor, answers, thoughts=thoughts,
                                  reject_multiple_functions=self.cfg.azr.reject_multiple_functions)

    def _accuracies(self, task: TaskType, records: Sequence[Triplet | InductionTask],
                    responses: Sequence[Response]) -> list[float]:
        return answer_accuracies(self.executor, task, records, [r.answer for r in responses],
                                 induction_rule=self.cfg.azr.reward.induction_accuracy)

    def _formatted(self, response: Response) -> bool:
        return format_ok(response.generation) or not self.cfg.azr.reward.format_reward

    # -- the iteration ----------------------------------------------------------------------

    def iteration(self, step: int) -> IterationResult:
        cfg, timer = self.cfg, _Timer(step)
        start = time.perf_counter()
        rng = np.random.default_rng([cfg.seed, step])
        with timer("prompts"):
            propose = {t: self.proposer_jobs(t, rng) for t in self.task_types}
            solve = {t: self._solver_jobs(t, rng, step) for t in self.task_types}

        with ThreadPoolExecutor(max_workers=1) as host:
            with timer("sample_proposals"):
                flat = [j for t in self.task_types for j in propose[t]]
                responses = _split(self.sample(flat, n=1, seed=self._seed(step, 0)), propose)
            validation = host.submit(timer.timed, "validate_proposals", lambda: {
                t: self.check_proposals(t, propose[t], responses[t]) for t in self.task_types})
            with timer("sample_solutions"):
                flat = [j for t in self.task_types for j in solve[t]]
                solutions = _split(self.sample(flat, n=1, seed=self._seed(step, 1)), solve)
            scoring = host.submit(timer.timed, "score_solutions", lambda: {
                t: self._accuracies(t, [j.source for j in solve[t]], solutions[t]) for t in self.task_types})
            checks = validation.result()

            # Learnability: n sampled solver rollouts of every valid proposal whose solver prompt fits.
            learn_jobs: dict[TaskType, list[tuple[int, Job]]] = {}
            for t in self.task_types:
                learn_jobs[t] = []
                for i, check in enumerate(checks[t]):
                    if check.valid:
                        job = self.job(self.template.wrap(solve_prompt(t, check.record)), check.record)
                        # len(job.ids) is the same count as prompts.count_tokens
                        if len(job.ids) <= cfg.rollout.max_learnability_prompt_tokens:
                            learn_jobs[t].append((i, job))
            n = cfg.azr.learnability_samples
            with timer("sample_learnability"):
                flat = [job for t in self.task_types for _, job in learn_jobs[t]]
                rollouts = self.sample(flat, n=n, seed=self._seed(step, 2))
            with timer("score_learnability"):
                solve_rates: dict[TaskType, dict[int, float]] = {}
                offset = 0
                for t in self.task_types:
                    count = len(learn_jobs[t]) * n
                    mine = rollouts[offset:offset + count]
                    offset += count
                    records = [job.source for _, job in learn_jobs[t] for _ in range(n)]
                    acc = self._accuracies(t, records, mine) if mine else []
                    solve_rates[t] = {i: solve_rate(acc[k * n:(k + 1) * n], n_samples=n)
                                      for k, (i, _) in enumerate(learn_jobs[t])}
            accuracies = scoring.result()

        # (job, response, reward, outcome) per episode; the outcome says what decided the reward.
        episodes: dict[tuple[TaskType, Role], list[tuple[Job, Response, float, dict[str, Any]]]] = {}
        metrics: dict[str, float] = {}
        admitted: dict[TaskType, list] = {}
        for t in self.task_types:
            rewards, admitted[t] = self._proposer_rewards(t, propose[t], responses[t], checks[t], solve_rates[t],
                                                          metrics)
            episodes[(t, Role.PROPOSE)] = list(zip(propose[t], responses[t], rewards,
                                                   [{"valid": c.valid, "failure": c.failure} for c in checks[t]]))
            sol_rewards = [solver_reward(format_ok=self._formatted(r) and answer_parsed(t, r.answer), accuracy=a)
                           for r, a in zip(solutions[t], accuracies[t])]
            episodes[(t, Role.SOLVE)] = list(zip(solve[t], solutions[t], sol_rewards,
                                                 [{"accuracy": float(a)} for a in accuracies[t]]))
            metrics.update({f"{t.value}/solve/accuracy": _mean(accuracies[t]),
                            f"{t.value}/solve/format_rate": _mean([format_ok(r.generation) for r in solutions[t]]),
                            f"{t.value}/solve/reward_mean": _mean(sol_rewards)})
        for t in self.task_types:  # grow after all rewards: this step's rewards saw the same buffers
            metrics[f"{t.value}/propose/admitted"] = float(self.buffers.add(t, admitted[t], step))
            metrics[f"buffer/{t.value}_size"] = float(len(self.buffers[t]))
            metrics[f"buffer/{t.value}_distinct_programs"] = float(self.buffers[t].distinct_programs())

        sequences, records = self._advantages(episodes, metrics)
        generated = sum(len(r.ids) for group in (responses, solutions) for rs in group.values() for r in rs)
        generated += sum(len(r.ids) for r in rollouts)
        metrics.update({f"time/{k}_s": v for k, v in timer.seconds.items()})
        metrics["time/selfplay_s"] = time.perf_counter() - start
        metrics["rollout/generated_tokens"] = float(generated)
        return IterationResult(sequences, metrics, generated, records)

    def _proposer_rewards(self, task: TaskType, jobs: list[Job], responses: list[Response],
                          checks: list[ProposalCheck], rates: dict[int, float], metrics: dict[str, float]):
        rc, az = self.cfg.azr.reward, self.cfg.azr
        rewards, admitted, failures = [], [], Counter()
        for i, (job, response, check) in enumerate(zip(jobs, responses, checks)):
            formatted = self._formatted(response)
            kept = i in rates  # its learnability prompt fitted the budget
            p = rates.get(i, 0.0)
            r_learn = learnability(p, conversion=rc.learnability) if check.valid and kept else 0.0
            terms = ()
            if check.valid and formatted and r_learn > 0 and self.intrinsic:
                terms = tuple(term(check.record, job.source, self.buffers[task]) for term in self.intrinsic)
            # A valid proposal whose solver prompt is too long keeps r_learn = 0: -0.5, not admitted.
            rewards.append(proposer_reward(valid=check.valid, format_ok=formatted, r_learn=r_learn,
                                           intrinsic_terms=terms, combine=rc.intrinsic_combine))
            if admit_to_buffer(valid=check.valid, p=p, rollouts_kept=kept, program_filter=az.valid_program_filter):
                admitted.append(check.record)
            if not check.valid:
                failures[check.failure] += 1
        valid = [c.valid for c in checks]
        name = task.value
        metrics.update({f"{name}/propose/valid_rate": _mean(valid),
                        f"{name}/propose/format_rate": _mean([format_ok(r.generation) for r in responses]),
                        f"{name}/propose/reward_mean": _mean(rewards),
                        f"{name}/propose/solve_rate_mean": _mean(list(rates.values())) if rates else float("nan")})
        metrics.update({f"{name}/propose/invalid/{kind}": float(count) for kind, count in failures.items()})
        return rewards, admitted

    def _advantages(self, episodes, metrics: dict[str, float]) -> tuple[list[TrainSequence], list[dict]]:
        trained = [g for g in GROUPS if g in episodes and (g[1] is Role.SOLVE or self.cfg.azr.train_propose)]
        flat = [(g, *episode) for g in trained for episode in episodes[g]]
        advantages, stats = trr_advantages([r for _, _, _, r, _ in flat],
                                           [len(resp.ids) for _, _, resp, _, _ in flat],
                                           [g for g, *_ in flat], weighting=self.cfg.azr.advantage_weighting,
                                           eps=self.cfg.azr.advantage_eps)
        for (task, role), s in stats.items():
            prefix = f"{task.value}/{role.value}"
            metrics[f"{prefix}/response_tokens_mean"] = s.num_tokens / max(s.num_sequences, 1)
            metrics[f"{prefix}/reward_std"] = s.std
        sequences = [TrainSequence(job.ids, resp.ids, resp.logprobs, float(a))
                     for (_, job, resp, _, _), a in zip(flat, advantages)]
        records = [{"task": task.value, "role": role.value, "response": resp.generation,
                    "response_tokens": len(resp.ids), "reward": float(r), "advantage": float(a), **outcome}
                   for ((task, role), _, resp, r, outcome), a in zip(flat, advantages)]
        return sequences, records


def _split(samples: list[Response], jobs: dict[TaskType, list[Job]]) -> dict[TaskType, list[Response]]:
    """Undo the task-major flattening of one sampler call."""
    out, offset = {}, 0
    for t, js in jobs.items():
        out[t] = samples[offset:offset + len(js)]
        offset += len(js)
    return out


def _mean(values) -> float:
    values = [float(v) for v in values]
    return float(np.mean(values)) if values else float("nan")
