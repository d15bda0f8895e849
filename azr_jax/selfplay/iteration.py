"""One AZR self-play iteration: propose, validate, estimate learnability, solve, score, TRR++.

Order (docs/reference.md §11, with the project decisions):
  1. build the proposer and solver prompts of every task type from the buffers as they are at
     the start of the step;
  2. sample everything in one continuous-batching stream (sampling/stream.py): the proposals and
     the solver tasks join it at once; each proposal is validated in the executor as soon as it
     is complete, and the n learnability rollouts of a valid one join the running stream at
     once; solutions and rollouts are scored as they complete. The host work runs between
     decode chunks, while the device decodes the next one;
  3. compute both roles' rewards, grow the buffers;
  4. TRR++ advantages per (task type x role) group -> the sequences of one update.
Every request's randomness is keyed by (step, its kind, its index), so what is sampled does not
depend on when the stream scheduled it. What differs between task types is asked of the task type
(selfplay/task_types); this module never branches on one.

The policy is anything with the sampler's `stream()` and `generate(prompts, params)`; tests drive
the loop with a scripted policy through the same interface.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from azr_jax.learner.batch import TrainSequence
from azr_jax.sampling import SamplingParams
from azr_jax.selfplay.advantages import trr_advantages
from azr_jax.selfplay.buffers import SelfPlayBuffers, sample_solver_tasks
from azr_jax.selfplay.options import AzrOptions, RolloutOptions
from azr_jax.selfplay.parsing import extract_answer, extract_thought, format_ok, generation_text
from azr_jax.selfplay.prompts import Prompt, encode, make_template, resample_within_budget, select_within_budget
from azr_jax.selfplay.rewards import admit_to_buffer, learnability, proposer_reward, solve_rate, solver_reward
from azr_jax.selfplay.task_types import ProposalCheck, Role, TaskType, groups

log = logging.getLogger(__name__)


class Policy(Protocol):
    def stream(self) -> Any: ...  # a sampling.Stream
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> Sequence[Any]: ...


# The three kinds of request of a step; each draws its randomness from its own seed.
PROPOSAL, SOLUTION, ROLLOUT = 0, 1, 2


@dataclass(frozen=True)
class Job:
    """A prompt to sample: its text, token ids and what it was built from."""

    prompt: Prompt
    ids: list[int]
    source: Any  # proposer: the records shown (a tuple); solver: the task record


@dataclass
class Response:
    ids: list[int]
    logprobs: np.ndarray
    generation: str  # what the prompt opened + the response text
    answer: str | None  # see parsing.extract_answer


@dataclass(frozen=True)
class Episode:
    """One trained sequence: who played it, what was sampled, its reward and what decided it."""

    task: TaskType
    role: Role
    job: Job
    response: Response
    reward: float
    outcome: dict[str, Any]  # proposals: valid + failure; solutions: accuracy


@dataclass(frozen=True)
class IterationResult:
    sequences: list[TrainSequence]  # the update batch, group by group in `groups` order
    metrics: dict[str, float]
    generated_tokens: int
    # One record per trained episode, in the order of `sequences`: task, role, response (what the
    # prompt opened + the generated text), response_tokens, reward, advantage, and the outcome.
    episodes: list[dict[str, Any]]


def metric(task: TaskType, role: Role, name: str) -> str:
    """The name of a per-group metric, e.g. ``deduction/propose/valid_rate``."""
    return f"{task.name}/{role.value}/{name}"


def buffer_metric(task: TaskType, name: str) -> str:
    """The name of a buffer metric, e.g. ``buffer/deduction_size``."""
    return f"buffer/{task.name}_{name}"


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

    def __init__(self, azr: AzrOptions, rollout: RolloutOptions, tokenizer: Any, policy: Policy, executor: Any,
                 buffers: SelfPlayBuffers, *, template: str = "r1", seed: int = 1):
        self.azr, self.rollout, self.seed = azr, rollout, seed
        self.tokenizer, self.policy, self.executor, self.buffers = tokenizer, policy, executor, buffers
        self.template = make_template(template, tokenizer)
        self.task_types = azr.resolved_task_types()
        self.intrinsic = [spec.resolve() for spec in azr.reward.intrinsic]

    # -- prompts ----------------------------------------------------------------------------

    def job(self, prompt: Prompt, source: Any) -> Job:
        """A prompt ready for `sample`, remembering what it was built from."""
        return Job(prompt, encode(self.tokenizer, prompt.text), source)

    def proposer_jobs(self, task: TaskType, rng: np.random.Generator) -> list[Job]:
        """`azr.proposer_batch_size` (default `azr.batch_size`) proposer prompts of `task`, references
        drawn from the current buffers (re-drawn while over the prompt budget)."""
        jobs = []
        for _ in range(self.azr.proposals_per_type):
            shown: list[tuple] = []

            def draw() -> Prompt:
                text, refs = task.propose_prompt(self.buffers, rng, self.azr)
                shown.append(refs)
                return self.template.wrap(text)

            prompt = resample_within_budget(draw, self.tokenizer, content_max_length=self.rollout.max_prompt_tokens)
            jobs.append(self.job(prompt, shown[-1]))
        return jobs

    def solver_jobs(self, task: TaskType, rng: np.random.Generator, step: int) -> list[Job]:
        """`azr.batch_size` solver prompts of `task` from its buffer (over-long ones replaced)."""
        az = self.azr
        tasks = sample_solver_tasks(self.buffers[task], rng, batch_size=az.batch_size, strategy=az.solver_sampling,
                                    current_step=step, past_epoch_window=az.past_epoch_window)
        prompts = [self.template.wrap(task.solve_prompt(t)) for t in tasks]
        keep = select_within_budget(prompts, self.tokenizer, rng, batch_size=az.batch_size,
                                    content_max_length=self.rollout.max_prompt_tokens)
        return [self.job(prompts[i], tasks[i]) for i in keep]

    # -- sampling ---------------------------------------------------------------------------

    def temperature(self, role: Role) -> float:
        """What `role`'s responses are sampled at (the solver's covers its learnability rollouts)."""
        r = self.rollout
        return r.solver_temperature if role is Role.SOLVE and r.solver_temperature is not None else r.temperature

    def _params(self, role: Role, *, n: int, seed: int) -> SamplingParams:
        r = self.rollout
        return SamplingParams(max_new_tokens=r.max_new_tokens, temperature=self.temperature(role), top_p=r.top_p,
                              top_k=r.top_k, n=n, seed=seed)

    def _response(self, job: Job, sample: Any) -> Response:
        generation = generation_text(job.prompt.opening, sample.text)
        return Response(list(sample.tokens), np.asarray(sample.logprobs, np.float32), generation,
                        extract_answer(generation, require_tag=self.azr.reward.require_answer_tag))

    def sample(self, jobs: Sequence[Job], role: Role, *, n: int, seed: int) -> list[Response]:
        """n responses per job in `role`, job-major, parsed for their answers."""
        if not jobs:
            return []
        log.info("sampling %d prompts x %d (longest prompt %d tokens)", len(jobs), n, max(len(j.ids) for j in jobs))
        samples = self.policy.generate([j.ids for j in jobs], self._params(role, n=n, seed=seed))
        return [self._response(jobs[s.prompt_index], s) for s in samples]

    def _sampling_seed(self, step: int, call: int) -> int:
        return int(np.random.SeedSequence([self.seed, step, call]).generate_state(1)[0])

    # -- scoring ----------------------------------------------------------------------------

    def check_proposals(self, task: TaskType, jobs: list[Job], responses: list[Response]) -> list[ProposalCheck]:
        """Parse and validate (in the executor) one task type's proposals."""
        return task.check_proposals(self.executor, [j.source for j in jobs], [r.answer for r in responses],
                                    [extract_thought(r.generation) for r in responses], self.azr)

    def accuracies(self, task: TaskType, jobs: Sequence[Job], responses: Sequence[Response]) -> list[float]:
        """Accuracy of each response as the solution of its job's task record."""
        return task.accuracies(self.executor, [j.source for j in jobs], [r.answer for r in responses], self.azr)

    def _formatted(self, response: Response) -> bool:
        return format_ok(response.generation) or not self.azr.reward.format_reward

    def _rollout(self, step: int, propose: dict[TaskType, list[Job]], solve: dict[TaskType, list[Job]],
                 timer: _Timer) -> "_Rollout":
        """Every sample of the step in one stream (see the module docstring), scored as it completes."""
        out = _Rollout(self.task_types, propose, solve, self.azr.solver_samples)
        seeds = [self._sampling_seed(step, kind) for kind in (PROPOSAL, SOLUTION, ROLLOUT)]
        n = self.azr.learnability_samples
        proposals = [(t, i) for t in self.task_types for i in range(len(propose[t]))]
        solutions = [(t, i) for t in self.task_types for i in range(len(solve[t]))]
        log.info("step %d: sampling %d proposals, %d solver tasks x %d, and %d rollouts per valid proposal", step,
                 len(proposals), len(solutions), self.azr.solver_samples, n)
        with self.policy.stream() as stream:
            for k, (t, i) in enumerate(proposals):
                stream.submit(propose[t][i].ids, self._params(Role.PROPOSE, n=1, seed=seeds[PROPOSAL]),
                              request_id=k, tag=(PROPOSAL, t, i, k))
            for k, (t, i) in enumerate(solutions):
                stream.submit(solve[t][i].ids, self._params(Role.SOLVE, n=self.azr.solver_samples,
                                                               seed=seeds[SOLUTION]), request_id=k,
                              tag=(SOLUTION, t, i, k))
            while not stream.done:
                completed: dict[tuple[int, TaskType], list] = defaultdict(list)
                for completion in stream.step():
                    kind, t, i, k = completion.request.tag
                    completed[(kind, t)].append((i, k, completion.samples))
                for (kind, t), items in sorted(completed.items(), key=lambda kv: kv[0][0]):
                    if kind == PROPOSAL:
                        with timer("validate_proposals"):
                            valid = out.check_proposals(self, t, items)
                        for i, k, job in valid:   # their learnability rollouts join the stream now
                            stream.submit(job.ids, self._params(Role.SOLVE, n=n, seed=seeds[ROLLOUT]),
                                          request_id=k, tag=(ROLLOUT, t, i, k))
                    elif kind == SOLUTION:
                        with timer("score_solutions"):
                            out.score_solutions(self, t, items)
                    else:
                        with timer("score_learnability"):
                            out.score_rollouts(self, t, items)
        return out

    # -- the iteration ----------------------------------------------------------------------

    def iteration(self, step: int) -> IterationResult:
        timer, start = _Timer(step), time.perf_counter()
        rng = np.random.default_rng([self.seed, step])
        with timer("prompts"):
            propose = {t: self.proposer_jobs(t, rng) for t in self.task_types}
            solve = {t: self.solver_jobs(t, rng, step) for t in self.task_types}

        with timer("rollout"):
            rollout = self._rollout(step, propose, solve, timer)
        proposals, checks, rates = rollout.proposals, rollout.checks, rollout.rates
        solutions, accuracies = rollout.solutions, rollout.accuracies

        metrics: dict[str, float] = {}
        episodes: list[Episode] = []
        admitted = {}
        for t in self.task_types:
            proposer, admitted[t] = self._proposer_episodes(t, propose[t], proposals[t], checks[t], rates[t], metrics)
            answered = [job for job in solve[t] for _ in range(self.azr.solver_samples)]
            episodes += proposer + self._solver_episodes(t, answered, solutions[t], accuracies[t], metrics)
        for t in self.task_types:  # grow after all rewards: this step's rewards saw the same buffers
            metrics[metric(t, Role.PROPOSE, "admitted")] = float(self.buffers.add(t, admitted[t], step))
            metrics[buffer_metric(t, "size")] = float(len(self.buffers[t]))
            metrics[buffer_metric(t, "distinct_programs")] = float(self.buffers[t].distinct_programs())

        sequences, records = self._advantages(episodes, metrics)
        generated = sum(len(r.ids) for by_task in (proposals, solutions) for rs in by_task.values() for r in rs)
        generated += sum(len(r.ids) for rs in rollout.rollouts.values() for r in rs)
        metrics.update({f"time/{k}_s": v for k, v in timer.seconds.items()})
        metrics["time/selfplay_s"] = time.perf_counter() - start
        metrics["rollout/generated_tokens"] = float(generated)
        return IterationResult(sequences, metrics, generated, records)

    def _proposer_episodes(self, task: TaskType, jobs: list[Job], responses: list[Response],
                           checks: list[ProposalCheck], rates: dict[int, float], metrics: dict[str, float]
                           ) -> tuple[list[Episode], list]:
        """The proposer episodes of one type and the records they admit to its buffer."""
        rc = self.azr.reward
        episodes, admitted, failures = [], [], Counter()
        for i, (job, response, check) in enumerate(zip(jobs, responses, checks)):
            formatted = self._formatted(response)
            kept = i in rates  # its learnability prompt fitted the budget
            p = rates.get(i, 0.0)
            r_learn = learnability(p, conversion=rc.learnability) if check.valid and kept else 0.0
            terms = ()
            if check.valid and formatted and r_learn > 0 and self.intrinsic:
                terms = tuple(term(check.record, job.source, self.buffers[task]) for term in self.intrinsic)
            # A valid proposal whose solver prompt is too long keeps r_learn = 0: -0.5, not admitted.
            reward = proposer_reward(valid=check.valid, format_ok=formatted, r_learn=r_learn,
                                     intrinsic_terms=terms, combine=rc.intrinsic_combine)
            episodes.append(Episode(task, Role.PROPOSE, job, response, reward,
                                    {"valid": check.valid, "failure": check.failure}))
            if admit_to_buffer(valid=check.valid, p=p, rollouts_kept=kept, program_filter=self.azr.valid_program_filter):
                admitted.append(check.record)
            if not check.valid:
                failures[check.failure] += 1
        m = lambda name: metric(task, Role.PROPOSE, name)  # noqa: E731
        metrics.update({m("valid_rate"): _mean([c.valid for c in checks]),
                        m("format_rate"): _mean([format_ok(r.generation) for r in responses]),
                        m("reward_mean"): _mean([e.reward for e in episodes]),
                        m("solve_rate_mean"): _mean(list(rates.values())) if rates else float("nan")})
        metrics.update({m(f"invalid/{kind}"): float(count) for kind, count in failures.items()})
        return episodes, admitted

    def _solver_episodes(self, task: TaskType, jobs: list[Job], responses: list[Response], accuracies: list[float],
                         metrics: dict[str, float]) -> list[Episode]:
        episodes = [Episode(task, Role.SOLVE, job, r, solver_reward(
                        format_ok=self._formatted(r) and task.answer_parsed(r.answer), accuracy=a),
                        {"accuracy": float(a)})
                    for job, r, a in zip(jobs, responses, accuracies)]
        m = lambda name: metric(task, Role.SOLVE, name)  # noqa: E731
        metrics.update({m("accuracy"): _mean(accuracies),
                        m("format_rate"): _mean([format_ok(r.generation) for r in responses]),
                        m("reward_mean"): _mean([e.reward for e in episodes])})
        return episodes

    def _advantages(self, episodes: list[Episode], metrics: dict[str, float]
                    ) -> tuple[list[TrainSequence], list[dict[str, Any]]]:
        """TRR++ over the trained groups, in update order; the sequences and their episode records."""
        by_group = {g: [e for e in episodes if (e.task, e.role) == g] for g in groups(self.task_types)}
        trained = [e for (t, role), es in by_group.items() if role is Role.SOLVE or self.azr.train_propose for e in es]
        advantages, stats = trr_advantages([e.reward for e in trained], [len(e.response.ids) for e in trained],
                                           [(e.task, e.role) for e in trained],
                                           weighting=self.azr.advantage_weighting, eps=self.azr.advantage_eps)
        for (task, role), s in stats.items():
            metrics[metric(task, role, "response_tokens_mean")] = s.num_tokens / max(s.num_sequences, 1)
            metrics[metric(task, role, "reward_std")] = s.std
        sequences = [TrainSequence(e.job.ids, e.response.ids, e.response.logprobs, float(a), self.temperature(e.role))
                     for e, a in zip(trained, advantages)]
        records = [{"task": e.task.name, "role": e.role.value, "response": e.response.generation,
                    "prompt_tokens": len(e.job.ids), "response_tokens": len(e.response.ids), "reward": float(e.reward), "advantage": float(a),
                    **e.outcome} for e, a in zip(trained, advantages)]
        return sequences, records


@dataclass
class _Rollout:
    """What one step's stream produced, per task type, in job order."""

    task_types: list[TaskType]
    propose: dict[TaskType, list[Job]]
    solve: dict[TaskType, list[Job]]
    answers_per_task: int  # azr.solver_samples: solutions and accuracies hold that many per solver job, job-major
    proposals: dict[TaskType, list[Response]] = field(default_factory=dict)
    checks: dict[TaskType, list[ProposalCheck]] = field(default_factory=dict)
    rates: dict[TaskType, dict[int, float]] = field(default_factory=dict)  # proposal index -> solve rate
    rollouts: dict[TaskType, list[Response]] = field(default_factory=dict)
    solutions: dict[TaskType, list[Response]] = field(default_factory=dict)
    accuracies: dict[TaskType, list[float]] = field(default_factory=dict)
    learn_jobs: dict[tuple[TaskType, int], Job] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for t in self.task_types:
            self.proposals[t] = [None] * len(self.propose[t])
            self.checks[t] = [None] * len(self.propose[t])
            self.solutions[t] = [None] * (len(self.solve[t]) * self.answers_per_task)
            self.accuracies[t] = [None] * (len(self.solve[t]) * self.answers_per_task)
            self.rates[t], self.rollouts[t] = {}, []

    def check_proposals(self, sp: "SelfPlay", t: TaskType, items: list) -> list[tuple[int, int, Job]]:
        """Validate completed proposals; the learnability jobs (index, request id, job) of the valid
        ones whose solver prompt fits the learnability budget."""
        jobs = [self.propose[t][i] for i, _, _ in items]
        responses = [sp._response(job, samples[0]) for job, (_, _, samples) in zip(jobs, items)]
        learn = []
        for (i, k, _), response, check in zip(items, responses, sp.check_proposals(t, jobs, responses)):
            self.proposals[t][i], self.checks[t][i] = response, check
            if check.valid:
                job = sp.job(sp.template.wrap(t.solve_prompt(check.record)), check.record)
                if len(job.ids) <= sp.rollout.max_learnability_prompt_tokens:
                    self.learn_jobs[(t, i)] = job
                    learn.append((i, k, job))
        return learn

    @staticmethod
    def _scored(sp: "SelfPlay", t: TaskType, items: list, job_of) -> tuple[list[Response], list[float]]:
        """Every sample of the completed requests `items` ((index, request id, samples)), parsed and
        scored as an answer to `job_of(index)`, request-major."""
        jobs = [job_of(i) for i, _, samples in items for _ in samples]
        responses = [sp._response(job, s) for job, s in zip(jobs, (s for _, _, ss in items for s in ss))]
        return responses, sp.accuracies(t, jobs, responses)

    def score_solutions(self, sp: "SelfPlay", t: TaskType, items: list) -> None:
        responses, accuracies = self._scored(sp, t, items, lambda i: self.solve[t][i])
        m = self.answers_per_task
        slots = [i * m + j for i, _, samples in items for j in range(len(samples))]
        for slot, response, accuracy in zip(slots, responses, accuracies):
            self.solutions[t][slot], self.accuracies[t][slot] = response, accuracy

    def score_rollouts(self, sp: "SelfPlay", t: TaskType, items: list) -> None:
        """Learnability: the solve rate of each proposal's n rollouts."""
        n = sp.azr.learnability_samples
        responses, accuracies = self._scored(sp, t, items, lambda i: self.learn_jobs[(t, i)])
        for m, (i, _, _) in enumerate(items):
            self.rates[t][i] = solve_rate(accuracies[m * n:(m + 1) * n], n_samples=n)
        self.rollouts[t] += responses


def _mean(values) -> float:
    values = [float(v) for v in values]
    return float(np.mean(values)) if values else float("nan")
