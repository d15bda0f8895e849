"""Policy-gradient update: padded rows (one sequence per row, the old layout) vs packed rows, with
zero-advantage sequences skipped, and with shared prompts, on the update batches of AZR iterations.

    python scripts/bench_update.py [--sizes 12,64,384] [--layers N] [--samples RUN/samples.jsonl] [key=value ...]

The batch of an iteration has its sequences in six equal (task type x role) groups. Prompt
lengths come from the run's real prompts (CRUXEval programs in the six task prompts, the
model's prompt template and tokenizer); response lengths and zero-advantage rates from a run's
samples.jsonl (--samples), else from the deciles measured on two 10-step runs of the embedded
default (proposers mostly hit the 256-token cap, solvers long-tailed; 89% of advantages exactly 0).
The layout and optimizer options are the run config's (configs/default.yaml unless key=value
overrides say otherwise); --layers keeps the model's widths with fewer layers, so the larger
batches finish in minutes on a CPU.

Padded: rows right-padded to the bucket of the batch's longest sequence, optim.micro_batch_size
rows per micro-batch. Packed: learner.batch.pack with optim.micro_batch_tokens per device, each
sequence its own segment. Skip: the same without the zero-advantage sequences; it is exact only
at optim.entropy_coef 0 (the trainer skips only then) and timed here with the configured loss
either way, to show what it saves. Shared: skip, with the azr.solver_samples answers to one
solver task computing their prompt once (the trainer's layout). Times are medians of --repeats updates after
one untimed call (compilation); compiled programs counts the distinct micro-batch shapes.
The last line is `padding_fraction=<x> speedup_vs_padded=<y> shared_prompts_speedup_vs_skip=<z>`
(packed vs padded, shared vs skip) at the last size, for the layouts timed (--layouts).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Deciles (0, 10, ..., 100%) of response tokens in two 10-step runs of the embedded default.
RESPONSE_DECILES = {"propose": [17, 64, 110, 191, 256, 256, 256, 256, 256, 256, 256],
                    "solve": [10, 30, 56, 68, 100, 120, 147, 180, 236, 256, 256]}
ZERO_ADVANTAGE_RATE = 0.89
LAYOUTS = ("padded", "packed", "skip", "shared")
GROUPS = [(task, role) for task in ("abduction", "deduction", "induction") for role in ("propose", "solve")]


def prompt_lengths(tokenizer, template, cruxeval: Path, n: int = 48) -> dict[tuple[str, str], list[int]]:
    """Token counts of the run's six task prompts over the first `n` CRUXEval programs."""
    from azr_jax.selfplay import prompts as P
    from azr_jax.selfplay.records import InductionTask, Triplet

    rows = [json.loads(line) for line in cruxeval.read_text().splitlines()[:n]]
    triplets = [Triplet(r["code"], r["input"], r["output"]) for r in rows]
    texts = {
        ("abduction", "propose"): [P.propose_io_prompt(P.ABDUCTION_WORDING, [t]) for t in triplets],
        ("deduction", "propose"): [P.propose_io_prompt(P.DEDUCTION_WORDING, [t]) for t in triplets],
        ("induction", "propose"): [P.propose_induction_prompt(t) for t in triplets],
        ("abduction", "solve"): [P.solve_abduction_prompt(t) for t in triplets],
        ("deduction", "solve"): [P.solve_deduction_prompt(t) for t in triplets],
        ("induction", "solve"): [P.solve_induction_prompt(InductionTask(
            t.snippet, (t.input,) * 10, (t.output,) * 10, "Find the function from the pairs.")) for t in triplets],
    }
    return {g: [P.count_tokens(tokenizer, template.wrap(x).text) for x in xs] for g, xs in texts.items()}


def response_model(samples: Path | None):
    """(draw response length for a role, zero-advantage rate per group)."""
    if samples is None:
        deciles = {role: np.asarray(d, float) for role, d in RESPONSE_DECILES.items()}
        draw = lambda role, rng: int(np.interp(rng.random(), np.linspace(0, 1, 11), deciles[role]))  # noqa: E731
        return draw, {g: ZERO_ADVANTAGE_RATE for g in GROUPS}
    rows = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]
    lengths = {role: [r["response_tokens"] for r in rows if r["role"] == role] for role in ("propose", "solve")}
    zeros = {g: float(np.mean([r["advantage"] == 0 for r in rows if (r["task"], r["role"]) == g] or [0.0]))
             for g in GROUPS}
    return (lambda role, rng: int(rng.choice(lengths[role]))), zeros


def rollouts(n: int, prompts, draw, zero_rate, vocab: int, seed: int, answers_per_task: int):
    """An update batch of n sequences, group after group (n/6 each, the first n % 6 one more);
    each solver prompt answered `answers_per_task` times in a row (azr.solver_samples), each
    proposal from its own prompt."""
    from azr_jax.learner.batch import TrainSequence

    rng = np.random.default_rng(seed)
    out = []
    for k, g in enumerate(GROUPS):
        zero = rng.random() < zero_rate[g]  # all rewards of a group equal: every advantage exactly 0
        repeats = answers_per_task if g[1] == "solve" else 1
        for j in range(n // len(GROUPS) + (k < n % len(GROUPS))):
            if j % repeats == 0:
                prompt = rng.integers(0, vocab, int(rng.choice(prompts[g]))).tolist()
            r = max(1, draw(g[1], rng))
            adv = 0.0 if zero else float(rng.normal())
            out.append(TrainSequence(prompt, rng.integers(0, vocab, r).tolist(), rng.normal(-1.0, 0.5, r).tolist(), adv))
    return out


def padded(sequences, *, rows_per_micro_batch: int, pad_id: int, aggregation: str, group_size: int):
    """The old layout, as an UpdateBatch: one sequence per row, right-padded to the bucket of the
    longest sequence; per row a loss window of the bucket of the longest response."""
    from azr_jax.learner.batch import LOSS_COLUMNS, MicroBatch, UpdateBatch, length_bucket, loss_weights

    weights = loss_weights(sequences, group_size=group_size, aggregation=aggregation)
    length = length_bucket(max(len(s) for s in sequences))
    window = min(length_bucket(max(len(s.response) for s in sequences)), length)
    micro_batches = []
    for start in range(0, len(sequences), rows_per_micro_batch):
        chunk = list(enumerate(sequences))[start:start + rows_per_micro_batch]
        rows, k = len(chunk), len(chunk) * window  # the row windows laid end to end: one shard
        a = dict(tokens=np.full((rows, length), pad_id, np.int32), segment_ids=np.zeros((rows, length), np.int32),
                 branch_ids=np.zeros((rows, length), np.int32), positions=np.zeros((rows, length), np.int32),
                 **{name: np.zeros((1, k), dtype) for name, dtype in LOSS_COLUMNS})
        for row, (i, s) in enumerate(chunk):
            p, n, r = len(s.prompt), len(s), len(s.response)
            a["tokens"][row, :n] = list(s.prompt) + list(s.response)
            a["segment_ids"][row, :n] = 1
            a["positions"][row, :n] = np.arange(n)
            span = slice(row * window, row * window + r)
            a["loss_index"][0, span] = row * length + np.arange(p - 1, n - 1)
            a["targets"][0, span] = s.response
            a["temperatures"][0, span] = s.temperature
            a["loss_mask"][0, span] = True
            a["old_logprobs"][0, span] = s.logprobs
            a["advantages"][0, span] = s.advantage
            a["weights"][0, span] = weights[i]
        micro_batches.append(MicroBatch(**a, max_segment=length))
    return UpdateBatch(tuple(micro_batches), len(sequences), sum(len(s.response) for s in sequences), 0)


def time_update(model, cfg, batch, repeats: int) -> tuple[float, float, int]:
    """(compile + first call s, median update s, compiled programs) of a fresh TrainStep."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from azr_jax.learner.loss import ClipConfig
    from azr_jax.learner.optimizer import make_optimizer
    from azr_jax.learner.step import LossConfig, TrainStep

    o = cfg.optim
    step = TrainStep(model, make_optimizer(o, 1), LossConfig(
        clip=ClipConfig(o.clip_low, o.clip_high, o.dual_clip), entropy_coef=o.entropy_coef,
        aggregation=o.loss_aggregation, logprob_chunk=o.logprob_chunk,
        old_logprobs=o.old_logprobs))
    params = jax.tree.map(jnp.copy, nnx.split(model, nnx.Param)[1])
    opt_state = step.init_optimizer(params)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        params, opt_state, _ = step(params, opt_state, batch)
        jax.block_until_ready(params)
        times.append(time.perf_counter() - start)
    return times[0], float(np.median(times[1:])), len(step.compiled_shapes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="run config overrides, e.g. optim.micro_batch_tokens=4096")
    parser.add_argument("--config", default=None, help="a run config file (default: configs/default.yaml)")
    parser.add_argument("--sizes", default="12,64,384", help="sequences per update batch")
    parser.add_argument("--layers", type=int, default=None, help="decoder layers (default: the model's)")
    parser.add_argument("--samples", type=Path, default=None, help="a run's samples.jsonl for response lengths")
    parser.add_argument("--cruxeval", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared/data/cruxeval.jsonl")
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help="layouts to time, the first the speedups' base")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-gb", type=float, default=None,
                        help="also print the longest packed row whose update fits in this much memory per device, "
                             "with and without remat (compiled memory analysis)")
    args = parser.parse_args()

    import jax
    from flax import nnx

    from azr_jax.config import load_train_config
    from azr_jax.learner.batch import pack
    from azr_jax.model import ModelConfig, Transformer, load_hf, resolve_model_path
    from azr_jax.model.tokenizer import load_tokenizer
    from azr_jax.resources import DEFAULT_CONFIG
    from azr_jax.model.transformer import DTYPES
    from azr_jax.selfplay.prompts import make_template

    cfg = load_train_config([args.config or DEFAULT_CONFIG], args.overrides)
    o = cfg.optim
    path = resolve_model_path(cfg.model.path)
    tokenizer = load_tokenizer(path)
    dtype = DTYPES[cfg.model.param_dtype]
    if args.layers is None:
        model = load_hf(path, dtype=dtype, compute_dtype=DTYPES[cfg.model.compute_dtype], remat=cfg.model.remat)
    else:
        config = dataclasses.replace(ModelConfig.from_hf_dict(json.loads((path / "config.json").read_text())),
                                     num_layers=args.layers)
        model = Transformer(config, param_dtype=dtype, dtype=DTYPES[cfg.model.compute_dtype], remat=cfg.model.remat,
                            rngs=nnx.Rngs(0))
    pad_id = tokenizer.pad_token_id or 0
    prompts = prompt_lengths(tokenizer, make_template(cfg.model.prompt_template, tokenizer), args.cruxeval)
    draw, zero_rate = response_model(args.samples)
    print(f"model {path.name} ({model.config.num_layers} layers, {cfg.model.param_dtype}) on {jax.devices()[0]} | "
          f"micro_batch_size {o.micro_batch_size} (padded rows per micro-batch) | micro_batch_tokens "
          f"{o.micro_batch_tokens} | entropy_coef {o.entropy_coef}")
    print("prompt tokens (mean per group): "
          + ", ".join(f"{t[:3]}/{r}: {np.mean(v):.0f}" for (t, r), v in prompts.items()))
    header = f"{'seqs':>5} {'layout':<8} {'micro':>5} {'positions':>9} {'padding':>7} {'tok/s':>8} {'update s':>9} " \
             f"{'compile s':>9} {'programs':>8} {'speedup':>7}"
    print(header)
    from azr_jax.learner.optimizer import make_optimizer
    from azr_jax.learner.step import LossConfig, TrainStep

    attention_length = TrainStep(model, make_optimizer(o, 1), LossConfig()).attention_length
    chosen = args.layouts.split(",")
    unknown = set(chosen) - set(LAYOUTS)
    if unknown:
        parser.error(f"unknown layouts {sorted(unknown)} (choose from {', '.join(LAYOUTS)})")
    last = {}  # layout -> (padding fraction, update s) at the last size
    for n in (int(x) for x in args.sizes.split(",")):
        seqs = rollouts(n, prompts, draw, zero_rate, model.config.vocab_size, args.seed, cfg.azr.solver_samples)
        real = sum(len(s) for s in seqs)
        layout = dict(group_size=o.micro_batch_size, tokens_per_device=o.micro_batch_tokens, pad_id=pad_id,
                      aggregation=o.loss_aggregation, attention_length=attention_length)
        layouts = {
            "padded": lambda: padded(seqs, rows_per_micro_batch=o.micro_batch_size, pad_id=pad_id,
                                     aggregation=o.loss_aggregation, group_size=o.micro_batch_size),
            "packed": lambda: pack(seqs, share_prompts=False, **layout),
            "skip": lambda: pack(seqs, skip_zero_advantage=True, share_prompts=False, **layout),
            "shared": lambda: pack(seqs, skip_zero_advantage=True, **layout),
        }
        base = None
        for name in chosen:
            batch = layouts[name]()
            compile_s, update_s, programs = time_update(model, cfg, batch, args.repeats)
            base = base or update_s
            print(f"{n:>5} {name:<8} {len(batch.micro_batches):>5} {batch.computed_positions:>9} "
                  f"{batch.padding_fraction:>7.1%} {real / update_s:>8.0f} {update_s:>9.2f} {compile_s:>9.2f} "
                  f"{programs:>8} {base / update_s:>6.2f}x", flush=True)
            last[name] = (batch.padding_fraction, update_s, len(batch.micro_batches))
    if args.memory_gb is not None:
        print_longest_rows(model, cfg, args.memory_gb)
    figures = []
    if {"padded", "packed"} <= last.keys():
        figures.append(f"padding_fraction={last['packed'][0]:.3f} speedup_vs_padded={last['padded'][1] / last['packed'][1]:.2f}")
    if {"skip", "shared"} <= last.keys():
        # with nothing to compute (every group's advantages 0) there is nothing to compare
        figures.append(f"shared_prompts_speedup_vs_skip={last['skip'][1] / last['shared'][1]:.2f}" if last["skip"][2]
                       else "shared_prompts_speedup_vs_skip=n/a")
    print(" ".join(figures))


def print_longest_rows(model, cfg, memory_gb: float) -> None:
    from flax import nnx

    from azr_jax.device_memory import GiB
    from azr_jax.learner.memory import longest_row
    from azr_jax.learner.optimizer import make_optimizer
    from azr_jax.learner.step import LossConfig, TrainStep

    for remat in (True, False):
        model.remat = remat
        step = TrainStep(model, make_optimizer(cfg.optim, 1), LossConfig(logprob_chunk=cfg.optim.logprob_chunk))
        params = nnx.split(model, nnx.Param)[1]
        n = longest_row(step, params, step.init_optimizer(params), int(memory_gb * GiB))
        print(f"longest packed row within {memory_gb:g} GiB per device, remat {'on' if remat else 'off'}: {n} tokens")


if __name__ == "__main__":
    main()
