"""What engine metrics cost: load-balanced throughput with metrics on vs off, in one run.

Each round starts two fresh stacks of jupyter_hub_ctl (controller ``--dictdb``, ``--engines``
engines, ``jupyter_hub_ctl.Client``), one with ``--Hub.metrics_interval=0`` (off) and one with
``--Hub.metrics_interval=<--interval>`` (on), in alternating order, and times ``--tasks``
no-op ``apply_async`` on each (the LB phase of ``stack_vs_ipyparallel.py``, same code).  With
``--stress-interval`` a third variant reports every that many seconds.  After each run the
hub is asked for the engines' metrics, to show that they were (or were not) reported.

Reported: median tasks/s per variant, on/off ratio (target: metrics cost at most 3 %, i.e.
ratio >= 0.97), the controller's CPU per task and that of the whole stack (controller, engines
and this client process), which other load on the machine disturbs less than throughput.

Run ``python benchmarks/metrics_cost.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from controller_vs_ipcontroller import log, log_environment, run_stopping_all  # noqa: E402
from stack_vs_ipyparallel import Stack, add_stack_options, lb_throughput  # noqa: E402  (also puts this checkout first)


def variants(opts) -> dict:
    out = {"off": 0.0, "on": opts.interval}
    if opts.stress_interval:
        out["stress"] = opts.stress_interval
    return out


def one_run(opts, name: str, interval: float, tag: str) -> dict:
    args = ["--dictdb", f"--Hub.metrics_interval={interval:g}"]
    with Stack("ours", opts, f"{name}-{tag}", opts.engines, controller_args=args) as s:
        out = lb_throughput(s, opts, f"metrics {name} ({interval:g} s)")
        reply = s.client.engine_metrics()
        reporting = sum(1 for e in reply["engines"].values() if e["latest"] is not None)
        if (reporting == len(reply["engines"])) != (interval > 0):
            raise RuntimeError(f"{reporting} of {len(reply['engines'])} engines reported with interval {interval}")
        out["engines_reporting"] = reporting
        return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", type=int, default=20000, help="no-op tasks per throughput run")
    p.add_argument("--rounds", type=int, default=6, help="rounds; each runs every variant, order alternating")
    p.add_argument("--interval", type=float, default=1.0, help="metrics interval of the 'on' variant (s)")
    p.add_argument("--stress-interval", type=float, default=0.1,
                   help="a third variant reporting this often (0: none)")
    add_stack_options(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    opts = parse_args(argv)
    env = log_environment()
    names = list(variants(opts))
    results: dict = {name: [] for name in names}
    failures: list = []

    def measure():
        for r in range(opts.rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                try:
                    results[name].append(one_run(opts, name, variants(opts)[name], f"round{r + 1}"))
                except Exception as e:  # noqa: BLE001  (reported; the next run goes on)
                    log(f"  FAILED: {type(e).__name__}: {e}")
                    failures.append(f"{name} round {r + 1}: {type(e).__name__}: {e}")

    interrupted = run_stopping_all(measure)
    med = {n: statistics.median(x["lb_tasks_per_s"] for x in runs) for n, runs in results.items() if runs}
    cpu = {n: statistics.median(x["controller_cpu_ms_per_task"] for x in runs) for n, runs in results.items() if runs}
    stack = {n: statistics.median(x["stack_cpu_ms_per_task"] for x in runs) for n, runs in results.items() if runs}
    print(f"\n{opts.rounds} rounds, {opts.tasks} LB no-op tasks per run, {opts.engines} engines, {env['cpus']} CPUs")
    print(f"{'variant':<10} {'interval':>9} {'tasks/s (median)':>17} {'each run':>40} {'ctrl ms/task':>13} "
          f"{'all ms/task':>12} {'vs off':>8}")
    for n in names:
        if n not in med:
            continue
        runs = ", ".join(f"{x['lb_tasks_per_s']:.0f}" for x in results[n])
        ratio = med[n] / med["off"] if "off" in med else float("nan")
        print(f"{n:<10} {variants(opts)[n]:>8g}s {med[n]:>17.0f} {runs:>40} {cpu[n]:>13.3f} {stack[n]:>12.3f} "
              f"{ratio:>8.3f}")
    if "on" in med and "off" in med:
        ratio = med["on"] / med["off"]
        print(f"metrics at {opts.interval:g} s cost {100 * (1 - ratio):+.1f} % of LB throughput "
              f"(target: <= 3 %): {'PASS' if ratio >= 0.97 else 'MISS'}")
    for f in failures:
        print(f"FAILED: {f}")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"environment": env, "options": vars(opts), "results": results, "failures": failures,
                       "interrupted": interrupted}, f, indent=1, default=str)
    return 130 if interrupted else (1 if failures else 0)


if __name__ == "__main__":
    sys.exit(main())
