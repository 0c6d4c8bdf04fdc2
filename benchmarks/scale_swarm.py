"""Scale benchmark: jupyter_hub_ctl's controller vs ipcontroller with thousands of swarm engines.

For each N (``--sizes``) and each controller, in the same invocation: a fresh controller
(``--dictdb``, default heartbeat period 3 s unless ``--ping``), then an engine swarm of N
(``swarm.py``: wire-level ipyparallel engines in a few processes), and:

1. registration: seconds from the swarm's start until the controller has announced all N
   (``registration_notification`` counted on the notification socket), or what it reached by
   ``--reg-deadline``; engines whose registration reply did not come within ipengine's 5 s gave up;
2. idle: the controller's CPU (all its processes) over ``--idle`` seconds with N hearts beating;
3. memory: the controller's RSS (and PSS) growth from before the swarm, per registered engine;
4. per client (jupyter_hub_ctl's and ipyparallel's, each against both controllers): a fresh
   ``Client`` + ``wait_for_engines(N)``; ``queue_status()`` (median of 5); ``--tasks`` load-balanced
   no-op tasks (tasks/s, controller CPU per task); ``apply`` on all N through a broadcast view
   (median of ``--bcast-repeat``);
5. departures: 10 % of the swarm sends ``unregistration_request`` at once (ipengine's nanny), then
   another 10 % vanishes (every socket closed, as a killed process); the time until the controller
   announced every departure, and the number of engines it announced gone that were not (must be 0).

Every process started is stopped by pid (controllers with all descendants, swarm workers), also on
Ctrl-C.  Run ``python benchmarks/scale_swarm.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from controller_vs_ipcontroller import (  # noqa: E402  (process management shared with that benchmark)
    ClusterBase, add_controller_options, call_with_timeout, describe, environment, imported_from, log, print_table,
    run_stopping_all, use_checkout,
)
from swarm import HUB_FDS_PER_ENGINE, MAX_PER_PROCESS, Notifications, Swarm, fds_for  # noqa: E402

use_checkout()
from jupyter_hub_ctl.controller import limits  # noqa: E402
from stack_vs_ipyparallel import close_client, get_all, make_client, wait_for_engines  # noqa: E402


KINDS = ("ref", "ours")
LABELS = {"ref": "ipcontroller", "ours": "jupyter_hub_ctl"}
CLIENTS = ("ours", "ref")
CLIENT_LABELS = {"ours": "our Client", "ref": "ipp Client"}


def noop():
    """The task: does nothing, returns None."""


noop.__module__ = "__main__"


class SwarmCluster(ClusterBase):
    dir_prefix = "hubctl-scale"

    def _start(self) -> None:
        self.start_controller(["--dictdb"])

    def _close_client(self) -> None:
        pass


def cpu_window(c: SwarmCluster, seconds: float) -> dict:
    """The controller's CPU (% of one core) and the machine's other load over ``seconds``."""
    m0, c0 = psutil.cpu_times(), c.controller.cpu_seconds()
    t0 = time.monotonic()
    time.sleep(seconds)  # the measurement window itself
    wall = time.monotonic() - t0
    m1, c1 = psutil.cpu_times(), c.controller.cpu_seconds()
    busy = (sum(m1) - m1.idle) - (sum(m0) - m0.idle)
    return {"hub_cpu_pct": 100 * (c1 - c0) / wall, "machine_cores": busy / wall}


def phase_registration(c: SwarmCluster, n: int, opts, out: dict) -> Swarm:
    notes = c.notes = Notifications(c.client_file)
    quiet_deadline = time.monotonic() + 15  # the reference starts its processes after writing its files
    while time.monotonic() < quiet_deadline:
        cpu = c.controller.cpu_seconds()
        time.sleep(0.5)
        if c.controller.cpu_seconds() - cpu < 0.01:
            break
    mem0 = c.controller.memory()
    out["rss0_mb"], out["pss0_mb"] = mem0["rss_mb"], mem0["pss_mb"]
    swarm = c.swarm = Swarm(c.engine_file, n, log_dir=c.dir)
    t0 = time.monotonic()
    swarm.start()
    deadline = t0 + opts.reg_deadline
    while notes.live() < n and time.monotonic() < deadline:
        c.check_alive()
        s = swarm.stats()["states"]
        if s.get("registering", 0) == 0 and s.get("new", 0) == 0 and notes.live() >= s.get("registered", 0):
            break  # every engine has its answer (or gave up) and the controller announced every registered one
        time.sleep(0.5)
    st = swarm.stats()
    out["registered"] = reached = notes.live()
    with notes.lock:
        times = sorted(notes.registered.values())
    out["reg_s"] = times[-1] - t0 if reached >= n else None
    out["reg_last_s"] = times[-1] - t0 if times else None
    out["reg_timed_out"] = st["counts"]["timed_out"]
    out["reg_refused"] = st["counts"]["refused"]
    log(f"  registered {reached}/{n}" + (f" in {out['reg_s']:.1f} s" if out["reg_s"] else
                                        f" by the {opts.reg_deadline:.0f} s deadline")
        + f"; {out['reg_timed_out']} gave up after 5 s, {out['reg_refused']} refused")
    return swarm


def phase_idle(c: SwarmCluster, n: int, opts, out: dict) -> None:
    time.sleep(opts.settle)  # the registration burst's after-effects (startup pings, logs) pass
    w = cpu_window(c, opts.idle)
    out["idle_cpu_pct"], out["idle_machine_cores"] = w["hub_cpu_pct"], w["machine_cores"]
    mem = c.controller.memory()
    reg = max(1, out["registered"])
    out["rss_mb"], out["pss_mb"] = mem["rss_mb"], mem["pss_mb"]
    if reg >= 100:  # below, the growth is noise next to the controller's own
        out["rss_kb_per_engine"] = 1024 * (mem["rss_mb"] - out["rss0_mb"]) / reg
        out["pss_kb_per_engine"] = 1024 * (mem["pss_mb"] - out["pss0_mb"]) / reg
    out["hub_fds"] = sum(p.num_fds() for p in c.controller.tree())
    log(f"  idle: controller {out['idle_cpu_pct']:.1f}% of a core over {opts.idle:.0f} s (machine busy "
        f"{w['machine_cores']:.2f} cores); RSS {mem['rss_mb']:.0f} MB, PSS {mem['pss_mb']:.0f} MB "
        f"(from {out['rss0_mb']:.0f} / {out['pss0_mb']:.0f} MB); {out['hub_fds']} fds")


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def phase_client(c: SwarmCluster, ck: str, opts, out: dict) -> None:
    """Connection, queue_status, load-balanced throughput and broadcast with one kind of Client."""
    n = out["registered"]
    res = out.setdefault("clients", {}).setdefault(ck, {})
    gc.collect()
    t = time.perf_counter()
    client = call_with_timeout(lambda: make_client(ck, c.client_file, c.profile_dir, 60), 90, "Client()")
    try:
        wait_for_engines(ck, client, n, 60)
        res["connect_wait_s"] = time.perf_counter() - t
        res["queue_status_ms"] = 1000 * median_time(client.queue_status, 5)
        lview = client.load_balanced_view()
        get_all([lview.apply_async(noop) for _ in range(min(200, opts.tasks))], 120, "warm-up")
        gc.collect()
        cpu0 = c.controller.cpu_seconds()
        t = time.perf_counter()
        get_all([lview.apply_async(noop) for _ in range(opts.tasks)], 60 + opts.tasks / 50, "LB tasks")
        wall = time.perf_counter() - t
        res["lb_tasks_per_s"] = opts.tasks / wall
        res["lb_hub_ms_per_task"] = 1000 * (c.controller.cpu_seconds() - cpu0) / opts.tasks
        bview = client.broadcast_view()
        bview.apply_sync(noop)  # first use: the view's setup is not part of the round trip
        res["bcast_s"] = median_time(lambda: bview.apply_sync(noop), opts.bcast_repeat)
    finally:
        call_with_timeout(lambda: close_client(ck, client), 30, "Client.close")
    log(f"  {CLIENT_LABELS[ck]}: connect+wait {res['connect_wait_s']:.2f} s, queue_status "
        f"{res['queue_status_ms']:.1f} ms, LB {res['lb_tasks_per_s']:.0f} tasks/s "
        f"(controller {res['lb_hub_ms_per_task']:.3f} ms/task), broadcast to {n} {res['bcast_s']:.2f} s")


def phase_departures(c: SwarmCluster, swarm: Swarm, opts, out: dict) -> None:
    notes = c.notes
    period = opts.ping / 1000.0
    k = max(1, out["registered"] // 10)
    if out["registered"] < 10:
        return
    killed: set = set()
    for how in ("unregister", "vanish"):
        with notes.lock:
            before = set(notes.unregistered)
        t0 = time.monotonic()
        ids = set(swarm.kill(k, how))
        killed |= ids
        deadline = t0 + (5 + 15 * period if how == "vanish" else 30)
        while time.monotonic() < deadline:
            with notes.lock:
                gone = set(notes.unregistered) - before
            if ids <= gone:
                break
            time.sleep(0.2)
        with notes.lock:
            seen = {i: notes.unregistered[i] for i in set(notes.unregistered) - before}
        out[f"{how}_announced"] = len(ids & set(seen))
        out[f"{how}_s"] = max(seen[i] for i in ids) - t0 if ids <= set(seen) else None
        log(f"  {how}: {k} engines at once; controller announced {out[f'{how}_announced']} of them"
            + (f" within {out[f'{how}_s']:.1f} s" if out[f"{how}_s"] is not None else " by the deadline"))
    time.sleep(2 * period)  # time for a false death to show
    with notes.lock:
        out["false_deaths"] = len(set(notes.unregistered) - killed)
    log(f"  engines announced gone that were not: {out['false_deaths']}")


def run_one(kind: str, n: int, opts) -> dict:
    log(f"N={n} [{LABELS[kind]}]")
    out: dict = {"n": n}
    c = SwarmCluster(kind, opts, f"n{n}")
    try:
        with c:
            swarm = phase_registration(c, n, opts, out)
            if out["registered"]:
                phase_idle(c, n, opts, out)
                for ck in opts.client_list:
                    try:
                        phase_client(c, ck, opts, out)
                    except Exception as e:
                        out.setdefault("failures", []).append(f"{CLIENT_LABELS[ck]}: {type(e).__name__}: {e}")
                        log(f"  FAILED {CLIENT_LABELS[ck]}: {type(e).__name__}: {e}")
                if not opts.skip_departures:
                    phase_departures(c, swarm, opts, out)
            c.check_alive()
            c.swarm.stop()
            c.notes.close()
    except Exception as e:
        out.setdefault("failures", []).append(f"{type(e).__name__}: {e}")
        log(f"  FAILED: {type(e).__name__}: {e}\n  ---- controller log tail ----\n{c.log_tail()}")
    finally:
        for attr in ("swarm", "notes"):
            if hasattr(c, attr):
                try:
                    (getattr(c, attr).stop if attr == "swarm" else getattr(c, attr).close)()
                except Exception:
                    pass
    return out


# --------------------------------------------------------------------------- report
def _get(results, kind, n, key, ck=None):
    vals = []
    for r in results.get(kind, {}).get(n, []):
        v = r.get("clients", {}).get(ck, {}).get(key) if ck else r.get(key)
        if v is not None:
            vals.append(v)
    return statistics.median(vals) if vals else None


def table(results: dict, n: int, opts) -> list:
    rows = []

    def row(label, key, fmt, target="(context)", check=None, ck=None):
        ref, ours = _get(results, "ref", n, key, ck), _get(results, "ours", n, key, ck)
        ratio = ours / ref if ref and ours is not None else None
        verdict = "-" if check is None else ("n/a" if ours is None else ("PASS" if check(ours) else "MISS"))
        rows.append((label, ref, ours, fmt, ratio, target, verdict))

    row("engines registered", "registered", "{:.0f}", f"= {n}", lambda v: v >= n)
    row("seconds until all registered", "reg_s", "{:.1f}", "<= 60 s", lambda v: v <= 60)
    row("  gave up waiting 5 s for the registration reply", "reg_timed_out", "{:.0f}")
    row("idle controller CPU, % of one core", "idle_cpu_pct", "{:.1f}", "<= 10 %", lambda v: v <= 10)
    row("controller RSS per engine (KB)", "rss_kb_per_engine", "{:.1f}", "<= 20 KB", lambda v: v <= 20)
    row("  PSS per engine (KB)", "pss_kb_per_engine", "{:.1f}")
    row("  controller fds", "hub_fds", "{:.0f}")
    for ck in opts.client_list:
        cl = CLIENT_LABELS[ck]
        row(f"{cl}: connect + wait_for_engines (s)", "connect_wait_s", "{:.2f}", ck=ck)
        row(f"{cl}: queue_status (ms)", "queue_status_ms", "{:.1f}", ck=ck)
        row(f"{cl}: LB no-op tasks/s", "lb_tasks_per_s", "{:.0f}", ck=ck)
        base = _get(results, "ours", opts.lb_base, "lb_tasks_per_s", ck)
        if base and n != opts.lb_base:
            ours = _get(results, "ours", n, "lb_tasks_per_s", ck)
            ref_base = _get(results, "ref", opts.lb_base, "lb_tasks_per_s", ck)
            ref = _get(results, "ref", n, "lb_tasks_per_s", ck)
            rows.append((f"{cl}:   LB tasks/s vs N={opts.lb_base}", ref / ref_base if ref and ref_base else None,
                         ours / base if ours else None, "{:.2f}", None, ">= 0.90",
                         "n/a" if not ours else ("PASS" if ours / base >= 0.9 else "MISS")))
        row(f"{cl}:   controller CPU per LB task (ms)", "lb_hub_ms_per_task", "{:.3f}", ck=ck)
        row(f"{cl}: broadcast apply to all (s)", "bcast_s", "{:.3f}", "<= 2 s", lambda v: v <= 2, ck=ck)
    row("10% unregister: announced within (s)", "unregister_s", "{:.1f}")
    row("10% vanish: announced within (s)", "vanish_s", "{:.1f}")
    row("healthy engines announced gone", "false_deaths", "{:.0f}", "= 0", lambda v: v == 0)
    return rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes", default="2,1000,5000,10000", help="comma list of swarm sizes N")
    p.add_argument("--only", choices=KINDS, help="one controller only")
    p.add_argument("--clients", default="ours,ref", help="Clients to measure with: ours, ref (ipyparallel's)")
    p.add_argument("--repeat", type=int, default=1, help="rounds (medians reported), alternating the order")
    p.add_argument("--tasks", type=int, default=2000, help="load-balanced no-op tasks per client")
    p.add_argument("--lb-base", type=int, default=2, help="the N whose LB rate the others are compared with")
    p.add_argument("--bcast-repeat", type=int, default=3, help="broadcast round trips (median)")
    p.add_argument("--reg-deadline", type=float, default=120.0, help="seconds the registration may take")
    p.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measurement")
    p.add_argument("--settle", type=float, default=5.0, help="seconds between registration and the idle window")
    p.add_argument("--skip-departures", action="store_true", help="skip the 10 %% unregister/vanish phase")
    add_controller_options(p)
    p.add_argument("--json", metavar="OUT", help="also write every figure to this JSON file")
    opts = p.parse_args(argv)
    opts.sizes_list = [int(s) for s in opts.sizes.split(",") if s.strip()]
    opts.client_list = [s.strip() for s in opts.clients.split(",") if s.strip()]
    return opts


def main(argv=None) -> int:
    opts = parse_args(argv)
    # inherited by the controllers: the hard limit too, where this process may raise it
    want = max(opts.sizes_list) * HUB_FDS_PER_ENGINE + limits.RESERVE
    raised = limits.raise_hard_limit(max(want, fds_for(MAX_PER_PROCESS)))
    nofile = limits.raise_fd_limit()  # the soft limit, now the hard one
    kinds = [opts.only] if opts.only else list(KINDS)
    env = environment()
    log(f"{describe(env)} from {imported_from()}")
    log(f"RLIMIT_NOFILE {nofile}: room for about {(nofile - limits.RESERVE) // HUB_FDS_PER_ENGINE} engines in "
        f"one controller process ({HUB_FDS_PER_ENGINE} connections each)")
    if not raised and nofile < want:
        log(f"  {max(opts.sizes_list)} engines need {want}; {limits.RAISE_HINT.format(n=want)}")
    results: dict = {}

    def measure():
        for r in range(opts.repeat):
            for n in opts.sizes_list:
                for kind in (kinds if r % 2 == 0 else kinds[::-1]):
                    results.setdefault(kind, {}).setdefault(n, []).append(run_one(kind, n, opts))

    interrupted = run_stopping_all(measure)
    for n in opts.sizes_list:
        print(f"\nN = {n} swarm engines, heartbeat {opts.ping} ms, medians of {opts.repeat} round(s), "
              f"{env['cpus']} CPUs")
        print_table(table(results, n, opts), [], LABELS)
    failures = [(k, n, f) for k, by_n in results.items() for n, runs in by_n.items() for r in runs
                for f in r.get("failures", [])]
    for k, n, f in failures:
        print(f"FAILED [{LABELS[k]}] N={n}: {f}")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"environment": env, "options": vars(opts), "results": results}, f, indent=1, default=str)
        log(f"wrote {opts.json}")
    return 130 if interrupted else (1 if failures else 0)


if __name__ == "__main__":
    sys.exit(main())
