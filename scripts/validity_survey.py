"""How often our validity rules refuse programs that real models proposed and the reference accepted.

The reference's seed files (azr_jax/data/azr-seeds/, produced by its seeding runs of Qwen2.5
3B-14B, Qwen3-4B, Llama-3.1-8B) hold proposals the reference judged valid. Each deduction/abduction
seed is validated here with the run's executor and the failures are counted by kind, in
particular `unrepresentable` (the output is not plain data whose repr evaluates back: instances
of the program's own classes, range, inf, ...) and `input_uses_program` (the input needs names
the program defines).

    python scripts/validity_survey.py [--files 'azr_jax/data/azr-seeds/*_seed_io.jsonl']
"""
from __future__ import annotations

import argparse
import glob
from collections import Counter

from azr_jax.executor import Executor
from azr_jax.selfplay.records import read_triplets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", default="azr_jax/data/azr-seeds/*_seed_io.jsonl")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    files = sorted(f for f in glob.glob(args.files) if "code_f" not in f)
    total: Counter = Counter()
    examples: dict[str, str] = {}
    with Executor(workers=args.workers, timeout_s=10) as ex:
        for path in files:
            seeds = read_triplets(path)
            results = ex.validate([t.snippet for t in seeds], [t.input for t in seeds],
                                  imports=[list(t.imports) for t in seeds])
            kinds = Counter("valid" if r.ok else r.failure.kind.value for r in results)
            for t, r in zip(seeds, results):
                if not r.ok:
                    examples.setdefault(r.failure.kind.value, f"{r.failure.message[:100]}  | output {t.output[:60]}")
            total.update(kinds)
            print(f"{path}: {len(seeds)} seeds, " + ", ".join(f"{k} {v}" for k, v in kinds.most_common()))
    n = sum(total.values())
    print(f"\nall {n} seeds: " + ", ".join(f"{k} {v} ({100 * v / n:.1f}%)" for k, v in total.most_common()))
    for kind, example in sorted(examples.items()):
        print(f"  e.g. {kind}: {example}")


if __name__ == "__main__":
    main()
