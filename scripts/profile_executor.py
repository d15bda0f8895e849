"""Where a sandboxed check's CPU time goes: the fresh process, confining it, and the work in it.

    python scripts/profile_executor.py ../shared/data/cruxeval.jsonl [--limit 400]

Runs in a process set up as the executor's template is (the same imports, gc frozen; no
namespaces), one CRUXEval validation job at a time, and reports CPU ms per job (this process and
its children) for: the job's work in this warm process (no fork); fork + exit of an idle child;
fork + confine (setsid, descriptors, limits, arming the audit hook); fork + the job's work without
confinement; and the whole child as the template runs it (confine, job, result). The last line
reads `warm=<ms> fork=<ms> confine=<ms> work_in_fork=<ms> child=<ms>`: the difference between
`warm` and `work_in_fork - fork` is the cost of copy-on-write page faults of a fresh fork.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from azr_jax.executor import harness, sandbox, template

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cruxeval", help="path to cruxeval.jsonl")
    parser.add_argument("--limit", type=int, default=400, help="jobs per measurement")
    args = parser.parse_args()
    with open(args.cruxeval, encoding="utf-8") as file:
        rows = [json.loads(line) for line in file if line.strip()][:args.limit]
    jobs = [{"kind": "validate", "code": r["code"], "imports": [], "namespace": [], "input": r["input"],
             "max_output_chars": 1000} for r in rows]
    sandbox.install_audit_hook()   # inert here, as in the template
    gc.freeze()
    base = template._make_base_dir()
    devnull = os.open(os.devnull, os.O_RDONLY)
    limits = sandbox.Limits(cpu_seconds=11, memory_bytes=1 << 30, file_bytes=16 << 20, processes=1, open_files=64)
    parent = os.getpid()

    def cpu_ms(run_one) -> float:
        before = os.times()
        for k, job in enumerate(jobs):
            run_one(k, job)
        after = os.times()
        used = sum(getattr(after, f) - getattr(before, f) for f in ("user", "system", "children_user", "children_system"))
        return used / len(jobs) * 1e3

    def forked(body):
        def run_one(k: int, job: dict) -> None:
            directory = os.path.join(base, str(k))
            os.mkdir(directory, 0o700)
            result, output = os.memfd_create("result"), os.memfd_create("output")
            lifeline_read, lifeline_write = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    body(job, directory, {0: devnull, 1: output, 2: output, sandbox.RESULT_FD: result,
                                          sandbox.LIFELINE_FD: lifeline_read})
                finally:
                    os._exit(0)
            os.close(lifeline_read)
            os.waitpid(pid, 0)
            for fd in (result, output, lifeline_write):
                os.close(fd)
            os.rmdir(directory)
        return run_one

    def confine(job, directory, fds):
        sandbox.confine(limits, directory, parent, fds)

    def whole(job, directory, fds):
        sandbox.confine(limits, directory, parent, fds)
        harness.write_result(harness.run(job))

    start = time.perf_counter()
    figures = {
        "warm": cpu_ms(lambda k, job: harness.run(job)),
        "fork": cpu_ms(forked(lambda job, directory, fds: None)),
        "confine": cpu_ms(forked(confine)),
        "work_in_fork": cpu_ms(forked(lambda job, directory, fds: harness.run(job))),
        "child": cpu_ms(forked(whole)),
    }
    os.rmdir(base)
    print(f"{len(jobs)} CRUXEval validation jobs per figure, {time.perf_counter() - start:.0f} s in all; CPU ms per job:")
    labels = {"warm": "the job in this warm process (no fork)", "fork": "fork + exit of an idle child",
              "confine": "fork + confine", "work_in_fork": "fork + the job, unconfined",
              "child": "fork + confine + job + result (the template's child)"}
    for name, value in figures.items():
        print(f"  {labels[name]:<55} {value:6.2f}")
    print(" ".join(f"{name}={value:.2f}" for name, value in figures.items()))


if __name__ == "__main__":
    main()
