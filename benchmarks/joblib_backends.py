"""joblib on the cluster: our backend vs ipyparallel's and vs joblib's own ``loky``, many short tasks.

The same ``joblib.Parallel(n_jobs=-1)(delayed(work)(i) for i in range(N))`` runs three ways in one
invocation, alternating between rounds: with ``lview.register_joblib_backend()`` on our stack
(our controller, engines and Client), on ipyparallel's stack (ipyparallel's controller, engines
and Client, ipyparallel's backend), and with joblib's ``loky`` backend (local worker processes,
as many as engines; warmed up, so its start-up is not counted).  joblib batches tasks itself
(``AutoBatchingMixin``) on every backend unless ``--batch-size 1`` makes every task its own call.  The stacks are started with the machinery of
``stack_vs_ipyparallel.py`` (fresh profile, processes stopped by pid).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from controller_vs_ipcontroller import describe, environment, imported_from, log, print_table  # noqa: E402
from stack_vs_ipyparallel import KINDS, LABELS, Stack, run, run_stopping_all  # noqa: E402


def work(i):
    """A short task: a few tens of µs of arithmetic."""
    total = 0
    for k in range(50):
        total += (i * k) % 7
    return total


work.__module__ = "__main__"  # shipped by value, also when this file is imported rather than run


def timed_parallel(n_tasks: int, backend: str, n_jobs: int, batch_size="auto") -> dict:
    import joblib

    expected = [work(i) for i in range(n_tasks)]
    with joblib.parallel_backend(backend, n_jobs=n_jobs):
        t0 = time.perf_counter()
        out = joblib.Parallel(batch_size=batch_size)(joblib.delayed(work)(i) for i in range(n_tasks))
        dt = time.perf_counter() - t0
    if out != expected:
        raise RuntimeError(f"{backend}: wrong results")
    return {"tasks_per_s": n_tasks / dt, "seconds": dt}


def phase_cluster(s: Stack, opts) -> dict:
    name = f"bench-{s.kind}"
    if s.kind == "ref":  # joblib's batches hold __main__ functions: ipyparallel must send them by value
        s.client[:].use_cloudpickle().get(opts.start_timeout)
    s.client.load_balanced_view().register_joblib_backend(name)
    timed_parallel(max(100, opts.tasks // 20), name, -1, opts.batch_size)  # warm-up: imports, function caches
    return timed_parallel(opts.tasks, name, -1, opts.batch_size)


def phase_loky(opts) -> dict:
    timed_parallel(max(100, opts.tasks // 20), "loky", opts.engines, opts.batch_size)  # starts the workers
    return timed_parallel(opts.tasks, "loky", opts.engines, opts.batch_size)


def summarize(results: dict) -> list:
    def med(phase, kind):
        vals = [r["tasks_per_s"] for r in results.get(phase, {}).get(kind, [])]
        return statistics.median(vals) if vals else None

    ref, ours, loky = med("cluster", "ref"), med("cluster", "ours"), med("loky", "ours")
    rows = []

    def row(label, a, b, target, verdict):
        ratio = b / a if a and b is not None else None
        rows.append((label, a, b, "{:.0f}", ratio, target, verdict(ratio) if ratio is not None else "-"))

    row("joblib tasks/s: ipyparallel backend vs ours", ref, ours, "ours/ref >= 2", lambda r: "PASS" if r >= 2 else "MISS")
    row("joblib tasks/s: loky (ref column) vs ours", loky, ours, "(context)", lambda r: "-")
    return rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", type=int, default=20000, help="tasks per joblib.Parallel call")
    p.add_argument("--repeat", type=int, default=3, help="rounds, order alternating")
    p.add_argument("--batch-size", type=lambda v: v if v == "auto" else int(v), default="auto",
                   help="joblib's batch_size: 'auto' (joblib groups tasks into batches) or 1 (one task per call)")
    p.add_argument("--engines", type=int, default=2, help="engines per stack (and loky workers)")
    p.add_argument("--json", metavar="OUT", help="also write every figure here")
    p.add_argument("--ping", type=int, default=3000)
    p.add_argument("--log-level", default="30")
    p.add_argument("--start-timeout", type=float, default=60.0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    opts = parse_args(argv)
    env = environment()
    log(f"{describe(env)} from {imported_from()}")
    results: dict = {}
    failures: list = []

    def cluster(kind, tag):
        with Stack(kind, opts, tag, opts.engines) as s:
            return phase_cluster(s, opts)

    def measure():
        for r in range(opts.repeat):
            tag = f"round{r + 1}"
            for kind in (KINDS if r % 2 == 0 else KINDS[::-1]):
                run("cluster", kind, tag, lambda: cluster(kind, tag), results, failures)
            run("loky", "ours", tag, lambda: phase_loky(opts), results, failures)

    interrupted = run_stopping_all(measure)
    rows = summarize(results)
    per_task_us = {k: [1e6 / r["tasks_per_s"] for r in v] for k, v in results.get("cluster", {}).items()}
    print(f"\nMedians over {opts.repeat} round(s); {opts.tasks} tasks, batch_size={opts.batch_size}, "
          f"{opts.engines} engines / loky workers, {env['cpus']} CPUs.")
    print("per round, µs per task: " + "; ".join(f"{LABELS[k]} {', '.join(f'{x:.0f}' for x in v)}"
                                                 for k, v in per_task_us.items()))
    print_table(rows, failures, LABELS)
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"environment": env, "options": vars(opts), "results": results, "failures": failures,
                       "interrupted": interrupted}, f, indent=1, default=str)
        log(f"wrote {opts.json}")
    return 130 if interrupted else (1 if failures else 0)


if __name__ == "__main__":
    sys.exit(main())
