"""Rollout throughput on an AZR-shaped workload: continuous batching vs lockstep vs transformers.

CPU (the default):

    python scripts/bench_rollout.py ../shared/data/cruxeval.jsonl [--requests 128] [--slots 32]

The workload is what a self-play step samples, with the embedded default's prompt template
(SmolLM2-135M-Instruct, chat_noprefill, float32): CRUXEval programs as solver tasks (deduction
and abduction) and as the references of proposer prompts (deduction, abduction, induction), one
proposer prompt per two solver prompts, greedy, each response ending at its natural end of
sequence or at --max-new-tokens. Measured in one run; our engine's runs twice each, the second
timed (compilation excluded), transformers' once after a short warm-up (eager, nothing to
compile). --baselines picks the runs besides ours (default all):

  - continuous: our engine (sampling/stream.py), every request submitted at once to --slots slots;
  - uniform: the same requests each generating exactly the natural mean length (no stops): the
    efficiency of an engine is its natural-length tok/s over its uniform-length tok/s;
  - lockstep: the same engine scheduled as the previous one was: waves of --slots requests, each
    decoded over all rows until its longest row ends (no refills, no compaction);
  - transformers `generate` (left-padded batches of --slots) and `generate_batch` (continuous
    batching, --slots requests per batch), greedy, same prompts and cap.

The last line reads `efficiency=<e> vs_generate_batch=<x>`.

GPU (`--gpu`): random Qwen2.5-0.5B-shaped weights in bfloat16, --slots 256, --requests random
prompts of --prompt-tokens tokens, each with its own max_new_tokens drawn long-tailed up to
--max-new-tokens (EOS off, so each request has a known natural length), for each decode attention
of --decode-attention (ragged, blocked). Prints generated tok/s and the fraction of the
HBM-bandwidth roofline: each decode step must read every weight once and every running row's live
KV cache; the roofline time is those bytes over the peak bandwidth (the prefills' time counts
against it too).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QWEN25_05B = {  # Qwen/Qwen2.5-0.5B config.json, the fields the model reads
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896,
    "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 32768,
    "tie_word_embeddings": True, "use_sliding_window": False, "hidden_act": "silu",
}
HBM_BANDWIDTH = {"H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12}  # peak bytes/s by device name


def azr_workload(cruxeval: str, tokenizer, requests: int) -> tuple[list[list[int]], list[str]]:
    """`requests` prompts of a self-play step: for every three, two solver prompts and one
    proposer prompt, built by the run's own task types and template."""
    from azr_jax.config import load_train_config
    from azr_jax.eval.tasks import load_tasks
    from azr_jax.selfplay.buffers import SelfPlayBuffers
    from azr_jax.selfplay.prompts import encode, make_template
    from azr_jax.selfplay.task_types import ABDUCTION, DEDUCTION, INDUCTION

    cfg = load_train_config(["default"])  # the embedded default: its template and proposer options
    template = make_template(cfg.model.prompt_template, tokenizer)
    triplets = [t.triplet() for t in load_tasks("cruxeval-o", cruxeval)]
    buffers = SelfPlayBuffers.initial(max_programs=cfg.azr.max_programs)
    buffers.reset({"io": triplets})
    rng = np.random.default_rng(0)
    prompts, kinds = [], []
    proposers, solvers = [DEDUCTION, ABDUCTION, INDUCTION], [DEDUCTION, ABDUCTION]
    for i in range(requests):
        if i % 3 == 2:
            task = proposers[(i // 3) % 3]
            text, _ = task.propose_prompt(buffers, rng, cfg.azr)
            kinds.append(f"{task.name} propose")
        else:
            task = solvers[i % 2]
            text = task.solve_prompt(triplets[(i * 7) % len(triplets)])
            kinds.append(f"{task.name} solve")
        prompts.append(encode(tokenizer, template.wrap(text).text))
    return prompts, kinds


def run_stream(sampler, prompts: list[list[int]], limits: list[int], *, waves: bool = False) -> tuple[list[int], float]:
    """Greedy samples of every prompt (its own max_new_tokens); (lengths, seconds). `waves`:
    lockstep scheduling (a wave of `max_batch` requests at a time, all rows, no compaction)."""
    from azr_jax.sampling import SamplingParams

    lengths = {}
    start = time.perf_counter()
    with sampler.stream() as stream:
        if waves:
            stream.compacting = False
        step = sampler.max_batch if waves else len(prompts)
        for first in range(0, len(prompts), step):
            for i in range(first, min(first + step, len(prompts))):
                stream.submit(prompts[i], SamplingParams(limits[i], temperature=0.0), request_id=i)
            for completion in stream:
                lengths[completion.request.id] = completion.samples[0].length
    return [lengths[i] for i in range(len(prompts))], time.perf_counter() - start


def timed(label: str, fn, tokens_of) -> tuple[float, object]:
    """Runs fn twice (the first compiles), prints and returns the second run's tok/s."""
    fn()
    result, seconds = fn()
    tokens = tokens_of(result)
    rate = tokens / seconds
    print(f"{label:<34} {tokens:>8} tokens {seconds:>8.1f} s {rate:>9.1f} tok/s", flush=True)
    return rate, result


def cpu(args) -> None:
    import torch

    from azr_jax.model import DEFAULT_MODEL, load_hf, load_tokenizer, resolve_model_path
    from azr_jax.sampling import Sampler

    torch.set_num_threads(args.threads)
    path = resolve_model_path(DEFAULT_MODEL)
    model, tokenizer = load_hf(path), load_tokenizer(path)
    prompts, kinds = azr_workload(args.cruxeval, tokenizer, args.requests)
    cap = [args.max_new_tokens] * len(prompts)
    print(f"SmolLM2-135M-Instruct float32, {len(prompts)} requests ({kinds.count('deduction solve')} deduction "
          f"and {kinds.count('abduction solve')} abduction solver prompts, {sum('propose' in k for k in kinds)} "
          f"proposer prompts), prompts {min(map(len, prompts))}-{max(map(len, prompts))} tokens (mean "
          f"{np.mean([len(p) for p in prompts]):.0f}), greedy, cap {args.max_new_tokens}, {args.slots} slots, "
          f"{args.threads} threads", flush=True)

    ours = Sampler(model, tokenizer, max_batch=args.slots)
    no_eos = Sampler(model, tokenizer, max_batch=args.slots, eos_token_ids=())
    natural, lengths = timed("ours, continuous (natural lengths)", lambda: run_stream(ours, prompts, cap), sum)
    mean = max(1, round(float(np.mean(lengths))))
    print(f"  lengths: mean {np.mean(lengths):.0f}, median {np.median(lengths):.0f}, p90 "
          f"{np.percentile(lengths, 90):.0f}, at the cap {np.mean(np.asarray(lengths) == args.max_new_tokens):.0%}")
    efficiency = versus = float("nan")
    if "uniform" in args.baselines:
        uniform, _ = timed(f"ours, uniform ({mean} tokens each)",
                           lambda: run_stream(no_eos, prompts, [mean] * len(prompts)), sum)
        efficiency = natural / uniform
        print(f"efficiency (natural / uniform tok/s): ours {efficiency:.2f}", flush=True)
    if "lockstep" in args.baselines:
        lock, _ = timed("lockstep (waves), natural lengths", lambda: run_stream(ours, prompts, cap, waves=True), sum)
        lock_uniform, _ = timed("lockstep (waves), uniform",
                                lambda: run_stream(no_eos, prompts, [mean] * len(prompts), waves=True), sum)
        print(f"efficiency (natural / uniform tok/s): lockstep {lock / lock_uniform:.2f}; ours / lockstep "
              f"{natural / lock:.2f}x", flush=True)
    rates = transformers_runs(path, tokenizer, prompts, args)
    if "generate" in rates:
        print(f"ours / transformers generate {natural / rates['generate']:.2f}x")
    if "generate_batch" in rates:
        versus = natural / rates["generate_batch"]
        print(f"ours / transformers generate_batch {versus:.2f}x")
    print(f"efficiency={efficiency:.2f} vs_generate_batch={versus:.2f}")


def transformers_runs(path, tokenizer, prompts, args) -> dict[str, float]:
    if not {"generate", "generate_batch"} & set(args.baselines):
        return {}
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos

    def lengths_of(rows: torch.Tensor) -> list[int]:
        out = []
        for row in rows.tolist():
            out.append(row.index(eos) + 1 if eos in row else len(row))
        return out

    def generate():
        lengths, start = [], time.perf_counter()
        for first in range(0, len(prompts), args.slots):
            batch = prompts[first:first + args.slots]
            width = max(map(len, batch))
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=args.max_new_tokens,
                                     eos_token_id=eos, pad_token_id=pad)
            lengths += lengths_of(out[:, width:])
        return lengths, time.perf_counter() - start

    def generate_batch():
        config = GenerationConfig(max_new_tokens=args.max_new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=pad)
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate_batch(inputs=prompts, generation_config=config, warmup=False,
                                       continuous_batching_config=ContinuousBatchingConfig(
                                           max_requests_per_batch=args.slots))
        return [len(o.generated_tokens) for o in out.values()], time.perf_counter() - start

    # Eager torch compiles nothing: a short warm-up, then one timed run each.
    runs = {"generate": ("transformers generate (padded)", generate),
            "generate_batch": ("transformers generate_batch", generate_batch)}
    with torch.no_grad():
        model.generate(input_ids=torch.tensor([prompts[0]]), max_new_tokens=4, do_sample=False, pad_token_id=pad)
    rates = {}
    for name in [n for n in runs if n in args.baselines]:
        label, fn = runs[name]
        tokens, seconds = fn()
        rates[name] = sum(tokens) / seconds
        print(f"{label:<34} {sum(tokens):>8} tokens {seconds:>8.1f} s {rates[name]:>9.1f} tok/s", flush=True)
    return rates


def gpu(args) -> None:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from azr_jax.model.config import ModelConfig
    from azr_jax.model.kv_cache import KVCache
    from azr_jax.model.transformer import Transformer
    from azr_jax.sampling import Sampler

    config = ModelConfig.from_hf_dict(QWEN25_05B, source="Qwen2.5-0.5B shape")
    model = Transformer(config, param_dtype=jnp.bfloat16, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    device = jax.devices()[0]
    rng = np.random.RandomState(0)
    prompts = rng.randint(0, config.vocab_size, (args.requests, args.prompt_tokens)).tolist()
    # Long-tailed natural lengths: median an eighth of the cap, about a tenth of the requests at the cap.
    limits = np.clip(np.exp(rng.normal(np.log(args.max_new_tokens / 8), 1.1, args.requests)), 16,
                     args.max_new_tokens).astype(int).tolist()
    weight_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    kv_token = KVCache.bytes_per_token(config, jnp.bfloat16)
    # Every step reads the weights; the step that makes a row's token t reads its live cache.
    kv_bytes = sum((args.prompt_tokens + t) * kv_token for n in limits for t in range(n))
    bandwidth = args.hbm_tbps * 1e12 if args.hbm_tbps else next(
        (bw for name, bw in HBM_BANDWIDTH.items() if name in device.device_kind), None)
    print(f"device {device.device_kind}: random Qwen2.5-0.5B shape, bfloat16, {args.slots} slots, {args.requests} "
          f"requests of {args.prompt_tokens} prompt tokens, lengths mean {np.mean(limits):.0f}, median "
          f"{np.median(limits):.0f}, max {max(limits)} (EOS off)", flush=True)
    summary = []
    for kind in args.decode_attention.split(","):
        sampler = Sampler(model, None, max_batch=args.slots, eos_token_ids=(), decode_attention=kind,
                          key_block=args.key_block)
        steps_before = [0]

        def run():
            steps_before[0] = int(sampler.state.steps) if sampler.state is not None else 0
            return run_stream(sampler, prompts, limits)

        try:
            rate, lengths = timed(f"{kind} decode attention", run, sum)
        except Exception as e:  # noqa: BLE001 -- one attention failing must not hide the other's figures
            print(f"{kind} decode attention failed: {type(e).__name__}: {e}", flush=True)
            summary.append(f"{kind}: failed")
            continue
        steps = int(sampler.state.steps) - steps_before[0]
        seconds = sum(lengths) / rate
        total = steps * weight_bytes + kv_bytes
        fraction = total / bandwidth / seconds if bandwidth else float("nan")
        print(f"  {steps} decode steps, {seconds / steps * 1e3:.2f} ms per step with the prefills; {weight_bytes / 1e9:.2f} "
              f"GB weights + {kv_bytes / steps / 1e9:.2f} GB live KV per step on average; roofline "
              f"{total / bandwidth if bandwidth else float('nan'):.2f} s of {seconds:.2f} s = {fraction:.1%} of the "
              f"HBM-bandwidth roofline ({(bandwidth or 0) / 1e12:.2f} TB/s)", flush=True)
        summary.append(f"{kind}: tokens_per_s={rate:.0f} roofline_fraction={fraction:.3f}")
        sampler.release()
    print(" | ".join(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cruxeval", nargs="?", help="CRUXEval jsonl (the CPU workload's programs)")
    parser.add_argument("--requests", type=int, default=None, help="default: 128 (CPU), 1024 (GPU)")
    parser.add_argument("--slots", type=int, default=None, help="default: 32 (CPU), 256 (GPU)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: 384 (CPU), 4096 (GPU)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads")
    parser.add_argument("--baselines", default="uniform,lockstep,generate,generate_batch",
                        help="CPU: the runs besides ours, comma-separated (default: all)")
    parser.add_argument("--gpu", action="store_true", help="the GPU roofline run")
    parser.add_argument("--prompt-tokens", type=int, default=1024, help="GPU: prompt length")
    parser.add_argument("--decode-attention", default="ragged,blocked",
                        help="GPU: the Sampler decode attentions to measure, comma-separated")
    parser.add_argument("--key-block", type=int, default=None, help="GPU: decode attention key block")
    parser.add_argument("--hbm-tbps", type=float, default=None, help="GPU: peak HBM bandwidth (default: by device)")
    args = parser.parse_args()
    args.baselines = set(args.baselines.split(","))
    defaults = (1024, 256, 4096) if args.gpu else (128, 32, 384)
    args.requests = args.requests or defaults[0]
    args.slots = args.slots or defaults[1]
    args.max_new_tokens = args.max_new_tokens or defaults[2]
    if args.gpu:
        gpu(args)
    elif not args.cruxeval:
        parser.error("the CPU benchmark needs the CRUXEval jsonl file")
    else:
        cpu(args)


if __name__ == "__main__":
    main()
