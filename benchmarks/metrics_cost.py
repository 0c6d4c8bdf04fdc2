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
Then the CPU one report costs (engine side and hub side, timed in this process), and what the
reports of each variant cost in CPU, as a share of a core and in tasks/s of the measured stack.

Run ``python benchmarks/metrics_cost.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

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


def per_report(n: int) -> dict:
    """CPU microseconds one report costs, measured in this process (load on the machine hardly
    matters): the engine's sampling thread (psutil sample, host figures every 5th, signing) and
    the hub (checking and parsing the signed message, keeping the sample)."""
    import psutil

    from jupyter_hub_ctl.controller.metrics import EngineMetrics
    from jupyter_hub_ctl.engine.metrics import HOST_EVERY, REPORT_TYPE, MetricsReporter, host_figures
    from jupyter_hub_ctl.wire.session import WireSession

    class Engine:  # what the reporter reads of its engine
        task = ("0badc0de-" + "c" * 23 + "_4242_17", "simulate", time.time())

    class Connector:  # what the hub knows of the engine
        id, host, pid = 0, "node", 4242

    key = b"0123456789abcdef0123456789abcdef"
    engine_session, hub_session = WireSession(key=key), WireSession(key=key)
    proc = psutil.Process()
    proc.cpu_percent(None)
    reporter = MetricsReporter(Engine(), 1.0)
    frames = []
    t0 = time.process_time()
    for i in range(n):
        content = reporter.sample(proc)
        if i % HOST_EVERY == 0:
            content["host_info"] = host_figures(psutil)
        frames.append(engine_session.serialize(REPORT_TYPE, content))
    engine_us = 1e6 * (time.process_time() - t0) / n
    kept = EngineMetrics(300)
    t0 = time.process_time()
    for f in frames:
        idents, parts = hub_session.split(f)
        kept.add(Connector, hub_session.parse(parts, idents=idents).content, time.time())
    hub_us = 1e6 * (time.process_time() - t0) / n
    log(f"  one report: engine {engine_us:.0f} us CPU (sampling thread), hub {hub_us:.0f} us CPU")
    return {"engine_us": engine_us, "hub_us": hub_us}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", type=int, default=20000, help="no-op tasks per throughput run")
    p.add_argument("--rounds", type=int, default=6, help="rounds; each runs every variant, order alternating")
    p.add_argument("--interval", type=float, default=1.0, help="metrics interval of the 'on' variant (s)")
    p.add_argument("--stress-interval", type=float, default=0.1,
                   help="a third variant reporting this often (0: none)")
    p.add_argument("--reports", type=int, default=2000, help="reports timed for the per-report CPU cost")
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
    cost = per_report(opts.reports)
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
    for name, interval in variants(opts).items():
        if interval > 0 and name in med:
            share = opts.engines / interval * (cost["engine_us"] + cost["hub_us"]) / 1e6
            print(f"{name}: {opts.engines} engines x {1 / interval:g} reports/s x "
                  f"{cost['engine_us'] + cost['hub_us']:.0f} us = {100 * share:.3f} % of one core; "
                  f"the same CPU would run {share / (stack[name] / 1000):.1f} no-op tasks/s of the "
                  f"{med[name]:.0f}/s measured ({100 * share / (stack[name] / 1000) / med[name]:.3f} %)")
    for f in failures:
        print(f"FAILED: {f}")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"environment": env, "options": vars(opts), "results": results, "per_report": cost,
                       "failures": failures,
                       "interrupted": interrupted}, f, indent=1, default=str)
    return 130 if interrupted else (1 if failures else 0)


if __name__ == "__main__":
    sys.exit(main())
