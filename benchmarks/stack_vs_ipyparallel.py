"""Full-stack benchmark: jupyter_hub_ctl (controller, engines, Client) vs ipyparallel's.

"ours": ``python -m jupyter_hub_ctl.controller`` + ``python -m jupyter_hub_ctl.engine`` × 2 +
``jupyter_hub_ctl.Client``.  "ref": ``python -m ipyparallel.controller`` +
``python -m ipyparallel.engine`` × 2 + ``ipyparallel.Client``.  Both run in the same
invocation, alternating, and the figures are printed side by side with ours/ref and the
project's targets.

Phases, each on a freshly started stack (controller ``--dictdb --ping=3000``):

1. load-balanced no-op ``apply_async`` throughput (submit ``--tasks``, then wait for all);
2. ``apply_sync`` round-trip latency on one engine through a DirectView (median, p99);
3. load-balanced ``map`` of ``--map-items`` items, ``chunksize=1`` (items/s);
4. push and pull of a ``--push-mb`` MB numpy array to/from one engine (MB/s);
5. client RSS while running ``--memory-tasks`` no-op tasks in batches whose AsyncResults are
   dropped, measured in a separate client process per stack;
6. registration of 128 engines (ours within 30 s, the reference within 60 s for context).

Every round also runs the phase-1 workload through ``concurrent.futures.ProcessPoolExecutor``
with 2 workers (no hub at all: what a local pool costs per task), and a second table gives the
cost-per-task targets from the same rounds: ours/ipyparallel and ours/pool no-op throughput, and
the hub's CPU per load-balanced task (the controller process and its children, all threads).

With ``--curve``, every round also runs phases 1-4 on stacks whose controller encrypts with
CurveZMQ (ours ``--enable-curve``, the reference ``--IPController.enable_curve=True``; clients
and engines follow the connection files), and a second table gives each stack's figures with
encryption and their ratio to the same stack without it (the cost of encryption).

Process management (start by pid in its own session, SIGTERM then SIGKILL of the whole tree,
also on Ctrl-C/SIGTERM/exception) is ``Managed`` from ``controller_vs_ipcontroller.py``, and a
stack starts and stops its controller and engines as that benchmark's clusters do (``ClusterBase``).

Run ``python benchmarks/stack_vs_ipyparallel.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import multiprocessing
import json
import os
import signal
import statistics
import sys
import time

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from controller_vs_ipcontroller import (  # noqa: E402  (process management shared with that benchmark)
    ClusterBase,
    Failure,
    Managed,
    _signal_all,
    _wait_gone,
    call_with_timeout,
    log,
    log_environment,
    print_table,
    run_stopping_all,
    use_checkout,
)

use_checkout()  # this process and every process it starts (controllers, engines, the memory client)

KINDS = ("ref", "ours")
POOL_WORKERS = 2
POOL_LABEL = f"ProcessPoolExecutor({POOL_WORKERS})"
#: the cost-per-task targets: ours/ipyparallel and ours/pool no-op throughput, the hub's CPU per task
TARGET_VS_REF, TARGET_VS_POOL, TARGET_HUB_MS = 10.0, 0.5, 0.1
LABELS = {"ref": "ipyparallel", "ours": "jupyter_hub_ctl", "pool": POOL_LABEL}
CURVE_ARGS = {"ref": ["--IPController.enable_curve=True"], "ours": ["--enable-curve"]}
ENGINE_CMD = {
    "ref": [sys.executable, "-m", "ipyparallel.engine"],
    "ours": [sys.executable, "-m", "jupyter_hub_ctl.engine"],
}


def noop():
    """The task: does nothing, returns None."""


def ident(x):
    return x


for _f in (noop, ident):
    _f.__module__ = "__main__"  # shipped by value, also when this file is imported rather than run


def make_client(kind: str, client_file: str, profile_dir: str, timeout: float):
    if kind == "ours":
        from jupyter_hub_ctl import Client

        return Client(client_file, timeout=timeout)
    from ipyparallel import Client

    return Client(client_file, profile_dir=profile_dir, timeout=timeout)


def wait_for_engines(kind: str, client, n: int, timeout: float) -> None:
    try:
        if kind == "ours":
            client.wait_for_engines(n, timeout)
        else:
            client.wait_for_engines(n, timeout=timeout, interactive=False)
    except TimeoutError:
        raise Failure(f"{len(client.ids)} of {n} engines registered within {timeout:.0f} s") from None


def close_client(kind: str, client) -> None:
    if kind == "ours":
        client.close()
    else:
        client.close(linger=0)


def get_all(ars: list, timeout: float, what: str) -> list:
    """``ar.get()`` for every AsyncResult, all within one deadline."""
    deadline = time.monotonic() + timeout
    out = []
    for ar in ars:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Failure(f"{what}: not done within {timeout:.0f} s")
        try:
            out.append(ar.get(timeout=left))
        except TimeoutError:
            raise Failure(f"{what}: not done within {timeout:.0f} s") from None
    return out


# --------------------------------------------------------------------------- one stack
class Stack(ClusterBase):
    """A controller, ``n`` engines and (optionally) a connected Client of one kind."""

    dir_prefix = "hubctl-stack"

    def __init__(self, kind: str, opts, tag: str, engines: int, connect: bool = True,
                 controller_args=("--dictdb",), curve: bool = False):
        super().__init__(kind, opts, tag)
        self.n_engines, self.connect, self.curve = engines, connect, curve
        self.controller_args = [*controller_args, *(getattr(opts, "controller_arg", []) if kind == "ours" else [])]

    def _start(self) -> None:
        opts = self.opts
        self.start_controller([*self.controller_args, *(CURVE_ARGS[self.kind] if self.curve else [])])
        if self.connect:
            self.client = call_with_timeout(
                lambda: make_client(self.kind, self.client_file, self.profile_dir, opts.start_timeout),
                opts.start_timeout + 5, "Client() connection")
        self.start_engines(self.n_engines)
        if self.connect and self.n_engines:
            wait_for_engines(self.kind, self.client, self.n_engines, opts.start_timeout)
            for m in self.engines:
                m.tree()  # note the nannies (ipengine) now

    def start_engines(self, n: int) -> list:
        args = ["--log-level=WARN"] + ([f"--profile-dir={self.profile_dir}"] if self.kind == "ref" else [])
        return [self.start_engine(ENGINE_CMD[self.kind], *args) for _ in range(n)]

    def stop_engines(self) -> dict:
        """Stop every engine (and nanny) by pid, all at once; check they are gone."""
        for m in self.engines:
            m.tree()
        pids = {pid for m in self.engines for pid in m.known}
        _signal_all([m.proc for m in self.engines if m.running()], signal.SIGTERM)
        _wait_gone([p for m in self.engines for p in m.known.values()], 10.0)
        survivors = []
        for m in self.engines:
            survivors += m.stop(grace=5.0)  # SIGTERM leftovers, then SIGKILL
        self.engines = []
        still = [pid for pid in pids if _alive(pid)]
        return {"processes": len(pids), "survivors": survivors, "alive_after": still}

    def _stop_engines(self) -> list:
        return self.stop_engines()["survivors"]

    def _close_client(self) -> None:
        close_client(self.kind, self.client)

    def snapshot(self) -> dict:
        t = psutil.cpu_times()
        me = psutil.Process()
        mine = me.cpu_times()
        own = mine.user + mine.system + self.controller.cpu_seconds() + sum(m.cpu_seconds() for m in self.engines)
        return {"time": time.monotonic(), "machine": sum(t) - t.idle - getattr(t, "iowait", 0.0), "own": own}

    @staticmethod
    def other_cores(a: dict, b: dict) -> float:
        wall = max(b["time"] - a["time"], 1e-9)
        return max(0.0, ((b["machine"] - a["machine"]) - (b["own"] - a["own"])) / wall)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --------------------------------------------------------------------------- phases 1-4
def lb_throughput(s: Stack, opts, label: str) -> dict:
    """Warm up, then time ``opts.tasks`` load-balanced no-op ``apply_async`` (submit all, wait for all)."""
    lview = s.client.load_balanced_view()
    get_all([lview.apply_async(noop) for _ in range(opts.warmup)], 60 + opts.warmup / 50, "warm-up")
    gc.collect()  # the other stack's Client from the phase before is freed now, not during a measurement
    a = s.snapshot()
    cpu0 = s.controller.cpu_seconds()
    t0 = time.perf_counter()
    ars = [lview.apply_async(noop) for _ in range(opts.tasks)]
    t_sub = time.perf_counter() - t0
    get_all(ars, opts.task_timeout + opts.tasks / 50, f"{opts.tasks} LB tasks")
    dt = time.perf_counter() - t0
    b = s.snapshot()
    del ars
    s.check_alive()
    out = {"lb_tasks_per_s": opts.tasks / dt, "lb_submit_per_s": opts.tasks / t_sub,
           "background_cores": Stack.other_cores(a, b),
           "controller_cpu_ms_per_task": 1000 * (s.controller.cpu_seconds() - cpu0) / opts.tasks,
           "stack_cpu_ms_per_task": 1000 * (b["own"] - a["own"]) / opts.tasks}
    log(f"  {label}: LB {out['lb_tasks_per_s']:.0f} tasks/s (submit {out['lb_submit_per_s']:.0f}/s), "
        f"controller {out['controller_cpu_ms_per_task']:.3f} ms CPU/task, "
        f"other load {out['background_cores']:.2f} cores")
    return out


def pool_throughput(opts) -> dict:
    """The same no-op tasks through ``concurrent.futures.ProcessPoolExecutor(2)`` (submit all, wait for all)."""
    ctx = multiprocessing.get_context("fork")  # the workers find ``noop`` in this process's __main__
    with concurrent.futures.ProcessPoolExecutor(POOL_WORKERS, mp_context=ctx) as ex:
        for f in [ex.submit(noop) for _ in range(opts.warmup)]:
            f.result(timeout=60)
        gc.collect()
        a = _machine_snapshot(ex)
        t0 = time.perf_counter()
        futures = [ex.submit(noop) for _ in range(opts.tasks)]
        deadline = time.monotonic() + opts.task_timeout + opts.tasks / 50
        for f in futures:
            f.result(timeout=max(0.1, deadline - time.monotonic()))
        dt = time.perf_counter() - t0
        b = _machine_snapshot(ex)
    out = {"lb_tasks_per_s": opts.tasks / dt, "background_cores": Stack.other_cores(a, b)}
    log(f"  {POOL_LABEL}: {out['lb_tasks_per_s']:.0f} tasks/s, other load {out['background_cores']:.2f} cores")
    return out


def _machine_snapshot(ex) -> dict:
    """Like ``Stack.snapshot``, with the pool's worker processes as this stack's own."""
    t = psutil.cpu_times()
    own = sum(psutil.Process().cpu_times()[:2])
    for pid in list(getattr(ex, "_processes", {}) or {}):
        try:
            own += sum(psutil.Process(pid).cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return {"time": time.monotonic(), "machine": sum(t) - t.idle - getattr(t, "iowait", 0.0), "own": own}


def phase_main(s: Stack, opts) -> dict:
    rc = s.client
    lview = rc.load_balanced_view()
    # 1. LB throughput
    out = lb_throughput(s, opts, LABELS[s.kind])

    # 2. apply_sync latency on one engine
    dv = rc[rc.ids[0]]
    for _ in range(20):
        call_with_timeout(lambda: dv.apply_sync(noop), 30, "apply_sync warm-up")
    lat = []
    deadline = time.monotonic() + opts.task_timeout + opts.latency_calls / 20
    for _ in range(opts.latency_calls):
        t = time.perf_counter()
        dv.apply_sync(noop)
        lat.append(time.perf_counter() - t)
        if time.monotonic() > deadline:
            raise Failure("apply_sync latency loop past its deadline")
    lat.sort()
    out["latency_median_ms"] = 1000 * statistics.median(lat)
    out["latency_p99_ms"] = 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))]
    log(f"  {LABELS[s.kind]}: apply_sync median {out['latency_median_ms']:.2f} ms, p99 {out['latency_p99_ms']:.2f} ms")

    # 3. LB map, chunksize=1
    seq = list(range(opts.map_items))
    a = s.snapshot()
    t0 = time.perf_counter()
    amr = lview.map(ident, seq, chunksize=1, block=False)
    res = get_all([amr], opts.task_timeout + opts.map_items / 50, f"map of {opts.map_items}")[0]
    dt = time.perf_counter() - t0
    b = s.snapshot()
    if list(res) != seq:
        raise Failure("map returned wrong results")
    del amr, res
    out["map_items_per_s"] = opts.map_items / dt
    out["map_background_cores"] = Stack.other_cores(a, b)
    log(f"  {LABELS[s.kind]}: map {out['map_items_per_s']:.0f} items/s")

    # 4. push / pull of a numpy array to/from one engine
    import numpy as np

    arr = np.random.default_rng(0).random(opts.push_mb * 2**20 // 8)
    mb = arr.nbytes / 2**20
    pushes, pulls = [], []
    for _ in range(opts.push_repeat):
        t = time.perf_counter()
        call_with_timeout(lambda: dv.push({"a": arr}, block=True), opts.task_timeout, "push")
        pushes.append(time.perf_counter() - t)
        t = time.perf_counter()
        back = call_with_timeout(lambda: dv.pull("a", block=True), opts.task_timeout, "pull")
        pulls.append(time.perf_counter() - t)
        if back.shape != arr.shape or back[12345] != arr[12345] or back[-1] != arr[-1]:
            raise Failure("pulled array differs from the pushed one")
        del back
        call_with_timeout(lambda: dv.execute("del a", block=True), opts.task_timeout, "execute del")
    out["push_mb_per_s"] = mb / statistics.median(pushes)
    out["pull_mb_per_s"] = mb / statistics.median(pulls)
    # the first transfer of a fresh stack: no memory a previous transfer freed to reuse
    out["push_first_mb_per_s"], out["pull_first_mb_per_s"] = mb / pushes[0], mb / pulls[0]
    log(f"  {LABELS[s.kind]}: push {out['push_mb_per_s']:.0f} MB/s, pull {out['pull_mb_per_s']:.0f} MB/s "
        f"(first: {out['push_first_mb_per_s']:.0f} / {out['pull_first_mb_per_s']:.0f})")
    return out


# --------------------------------------------------------------------------- phase 5
def memory_child(argv: list) -> int:
    """Runs in its own process: connect, run tasks in batches, print RSS samples as JSON lines."""
    p = argparse.ArgumentParser()
    p.add_argument("kind")
    p.add_argument("client_file")
    p.add_argument("profile_dir")
    p.add_argument("tasks", type=int)
    p.add_argument("batch", type=int)
    a = p.parse_args(argv)
    me = psutil.Process()
    rc = make_client(a.kind, a.client_file, a.profile_dir, 30)
    wait_for_engines(a.kind, rc, 1, 60)
    lview = rc.load_balanced_view()
    get_all([lview.apply_async(noop) for _ in range(200)], 60, "warm-up")
    print(json.dumps({"done": 0, "rss_mb": me.memory_info().rss / 2**20}), flush=True)
    done = 0
    while done < a.tasks:
        n = min(a.batch, a.tasks - done)
        ars = [lview.apply_async(noop) for _ in range(n)]
        get_all(ars, 120 + n / 20, f"batch at {done}")
        del ars  # the AsyncResults are released; nothing else is kept
        done += n
        print(json.dumps({"done": done, "rss_mb": me.memory_info().rss / 2**20,
                          "gc_objects": len(gc.get_objects())}), flush=True)
    close_client(a.kind, rc)
    return 0


def phase_memory(kind: str, opts) -> dict:
    with Stack(kind, opts, "memory", opts.engines, connect=False) as s:
        child = Managed("memory client", [sys.executable, os.path.abspath(__file__), "--memory-child", kind,
                                          s.client_file, s.profile_dir, str(opts.memory_tasks),
                                          str(opts.memory_batch)],
                        s.env, s.dir, os.path.join(s.dir, "memory-client.log"))
        deadline = time.monotonic() + 120 + opts.memory_tasks / 50
        try:
            while child.running():
                s.check_alive()
                if time.monotonic() > deadline:
                    raise Failure("memory client not done by its deadline")
                time.sleep(0.2)
            samples = []
            with open(child.log_path) as f:
                for line in f:
                    if line.startswith("{"):
                        samples.append(json.loads(line))
            if child.popen.returncode != 0:
                raise Failure(f"memory client exited with {child.popen.returncode}: {child.log_tail(8)}")
        finally:
            child.stop()
    by = {d["done"]: d["rss_mb"] for d in samples}
    log(f"  {LABELS[kind]}: client RSS " + ", ".join(f"{k // 1000}k {v:.0f}" for k, v in by.items()) + " MB")
    return {"samples": samples}


def rss_at(samples: list, n: int):
    for d in samples:
        if d["done"] >= n:
            return d["rss_mb"]
    return None


# --------------------------------------------------------------------------- phase 6
def phase_register(kind: str, opts) -> dict:
    n = opts.many_engines
    limit = opts.register_within[kind]
    with Stack(kind, opts, "register", 0) as s:
        rc = s.client
        a = s.snapshot()
        t0 = time.monotonic()
        s.start_engines(n)
        launched = time.monotonic() - t0
        curve, count, t_all = [], 0, None
        while True:
            s.check_alive()
            now = time.monotonic() - t0
            count = len(rc.ids)
            if not curve or curve[-1][1] != count:
                curve.append((round(now, 2), count))
            if count >= n:
                t_all = now
                break
            if now > limit:
                break
            for m in s.engines:  # note the nannies while they live
                m.tree()
            time.sleep(0.2)
        b = s.snapshot()
        count_at_limit = max((c for t, c in curve if t <= limit), default=0)
        info = s.stop_engines()
        log(f"  {LABELS[kind]}: {count_at_limit} of {n} engines registered within {limit:.0f} s"
            + (f" (all after {t_all:.1f} s)" if t_all else "")
            + f"; launching took {launched:.1f} s; stopped {info['processes']} processes, "
            f"{len(info['alive_after'])} left alive")
        if info["alive_after"]:
            raise Failure(f"processes still alive after stopping the engines: {info['alive_after']}")
        return {"registered": count_at_limit, "engines": n, "limit_s": limit, "all_after_s": t_all,
                "launch_s": launched, "curve": curve, "processes_stopped": info["processes"],
                "background_cores": Stack.other_cores(a, b)}


# --------------------------------------------------------------------------- summary
def med(results, phase, kind, key):
    vals = [r[key] for r in results.get(phase, {}).get(kind, []) if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarize(results: dict, opts) -> list:
    rows = []

    def ratio_row(label, key, fmt, op, bound, target_text, phase="main", extra_bound=None):
        ref, ours = med(results, phase, "ref", key), med(results, phase, "ours", key)
        ratio = ours / ref if ref and ours is not None else None
        verdict = "-" if ratio is None else ("PASS" if op(ratio, bound) else "MISS")
        rows.append((label, ref, ours, fmt, ratio, target_text, verdict))
        if extra_bound is not None:
            b, text = extra_bound
            rows.append(("  same, vs stretch target", None, None, fmt, ratio, text,
                         "-" if ratio is None else ("PASS" if op(ratio, b) else "MISS")))

    ge, le = (lambda r, b: r >= b), (lambda r, b: r <= b)
    ratio_row("LB no-op apply_async tasks/s", "lb_tasks_per_s", "{:.0f}", ge, 5.0, "ours/ref >= 5",
              extra_bound=(10.0, "ours/ref >= 10"))
    ratio_row("  submission alone, tasks/s (context)", "lb_submit_per_s", "{:.0f}", ge, 0, "(context)")
    rows[-1] = rows[-1][:6] + ("-",)
    ratio_row("apply_sync latency median (ms)", "latency_median_ms", "{:.2f}", le, 1 / 3, "ours/ref <= 0.33")
    ratio_row("apply_sync latency p99 (ms)", "latency_p99_ms", "{:.2f}", le, 1 / 3, "ours/ref <= 0.33")
    ratio_row(f"LB map {opts.map_items} items chunksize=1, items/s", "map_items_per_s", "{:.0f}", ge, 5.0,
              "ours/ref >= 5")
    ratio_row(f"push {opts.push_mb} MB numpy array (MB/s)", "push_mb_per_s", "{:.0f}", ge, 2.0, "ours/ref >= 2")
    ratio_row(f"pull {opts.push_mb} MB numpy array (MB/s)", "pull_mb_per_s", "{:.0f}", ge, 2.0, "ours/ref >= 2")
    for key, what in (("push_first_mb_per_s", "push"), ("pull_first_mb_per_s", "pull")):
        ratio_row(f"  {what}, first of a fresh stack (MB/s)", key, "{:.0f}", ge, 0, "(context)")
        rows[-1] = rows[-1][:6] + ("-",)

    mem = results.get("memory", {})
    if mem:
        pts = sorted({0, opts.memory_tasks // 5, 3 * opts.memory_tasks // 5, opts.memory_tasks})
        vals = {k: {n: rss_at(mem[k][0]["samples"], n) if mem.get(k) else None for n in pts} for k in KINDS}
        for n in pts:
            rows.append((f"client RSS after {n} tasks (MB)", vals["ref"][n], vals["ours"][n], "{:.0f}", None,
                         "(context)", "-"))
        hi, mid = pts[-1], pts[-2]
        growth = {k: (vals[k][hi] - vals[k][mid]) if vals[k][hi] is not None and vals[k][mid] is not None else None
                  for k in KINDS}
        g = growth["ours"]
        rows.append((f"  growth {mid // 1000}k -> {hi // 1000}k tasks (MB)", growth["ref"], g, "{:.1f}", None,
                     "ours <= 5 MB", "-" if g is None else ("PASS" if g <= 5 else "MISS")))
    reg = results.get("register", {})
    if reg:
        r = {k: (reg[k][0]["registered"] if reg.get(k) else None) for k in KINDS}
        rows.append((f"engines registered of {opts.many_engines} (ref in 60 s, ours in 30 s)", r["ref"], r["ours"],
                     "{:.0f}", None, f"ours = {opts.many_engines}",
                     "-" if r["ours"] is None else ("PASS" if r["ours"] >= opts.many_engines else "MISS")))
        t = {k: (reg[k][0]["all_after_s"] if reg.get(k) else None) for k in KINDS}
        rows.append(("  all registered after (s)", t["ref"], t["ours"], "{:.1f}", None, "(context)", "-"))
    return rows


def summarize_cost(results: dict) -> list:
    """The issue's cost-per-task targets, from the same rounds: the ratios and the hub's CPU per task."""
    ours, ref = med(results, "main", "ours", "lb_tasks_per_s"), med(results, "main", "ref", "lb_tasks_per_s")
    pool = med(results, "pool", "pool", "lb_tasks_per_s")
    hub = {k: med(results, "main", k, "controller_cpu_ms_per_task") for k in KINDS}

    def verdict(ok):
        return "-" if ok is None else ("PASS" if ok else "MISS")

    r_ref = ours / ref if ours and ref else None
    r_pool = ours / pool if ours and pool else None
    h = hub["ours"]
    return [
        ("LB no-op tasks/s (ref column: ipyparallel)", ref, ours, "{:.0f}", r_ref, f"ours/ref >= {TARGET_VS_REF:g}",
         verdict(None if r_ref is None else r_ref >= TARGET_VS_REF)),
        (f"LB no-op tasks/s (ref column: {POOL_LABEL})", pool, ours, "{:.0f}", r_pool,
         f"ours/ref >= {TARGET_VS_POOL:g}", verdict(None if r_pool is None else r_pool >= TARGET_VS_POOL)),
        ("hub CPU per LB task, ms (ref column: ipcontroller)", hub["ref"], h, "{:.3f}",
         h / hub["ref"] if h is not None and hub["ref"] else None, f"ours <= {TARGET_HUB_MS:g} ms",
         verdict(None if h is None else h <= TARGET_HUB_MS)),
    ]


CURVE_ROWS = (("LB no-op apply_async tasks/s", "lb_tasks_per_s", "{:.0f}"),
              ("apply_sync latency median (ms)", "latency_median_ms", "{:.2f}"),
              ("LB map, items/s", "map_items_per_s", "{:.0f}"),
              ("push numpy array (MB/s)", "push_mb_per_s", "{:.0f}"),
              ("pull numpy array (MB/s)", "pull_mb_per_s", "{:.0f}"))


def summarize_curve(results: dict) -> list:
    """Figures with CurveZMQ on, and each stack's ratio to itself without it."""
    rows = []
    for label, key, fmt in CURVE_ROWS:
        on = {k: med(results, "curve", k, key) for k in KINDS}
        off = {k: med(results, "main", k, key) for k in KINDS}
        cost = {k: on[k] / off[k] if on[k] is not None and off[k] else None for k in KINDS}
        ratio = on["ours"] / on["ref"] if on["ours"] is not None and on["ref"] else None
        rows.append((f"{label}, curve on", on["ref"], on["ours"], fmt, ratio, "(context)", "-"))
        rows.append(("  curve on / curve off", cost["ref"], cost["ours"], "{:.2f}", None, "(cost)", "-"))
    return rows


# --------------------------------------------------------------------------- main
def run(phase: str, kind: str, tag: str, fn, results: dict, failures: list) -> None:
    log(f"{phase} [{LABELS[kind]}] {tag}")
    try:
        results.setdefault(phase, {}).setdefault(kind, []).append(fn())
    except Exception as e:  # noqa: BLE001  (reported, the next measurement goes on)
        log(f"  FAILED: {type(e).__name__}: {e}")
        failures.append({"phase": phase, "kind": kind, "tag": tag, "error": f"{type(e).__name__}: {e}",
                         "log_dir": "(see above)"})


def add_stack_options(p) -> None:
    """The options a ``Stack`` and ``lb_throughput`` read (also used by the other benchmarks of stacks)."""
    p.add_argument("--engines", type=int, default=2)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--ping", type=int, default=3000)
    p.add_argument("--log-level", default="30")
    p.add_argument("--start-timeout", type=float, default=60.0)
    p.add_argument("--task-timeout", type=float, default=120.0)
    p.add_argument("--json", metavar="OUT", help="also write every figure here")
    p.add_argument("--controller-arg", action="append", default=[], metavar="ARG",
                   help="one more argument for our controller (repeatable), e.g. "
                   "--controller-arg=--TaskScheduler.prefetch=0")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", type=int, default=5000, help="no-op tasks in the LB throughput run")
    p.add_argument("--repeat", type=int, default=3, help="rounds of phases 1-4, order alternating")
    p.add_argument("--only", choices=KINDS, help="one stack only")
    p.add_argument("--skip-128", action="store_true", help="skip the engine registration phase")
    p.add_argument("--skip-memory", action="store_true", help="skip the client memory phase")
    p.add_argument("--skip-pool", action="store_true",
                   help=f"skip the {POOL_LABEL} no-op throughput run of each round")
    add_stack_options(p)
    p.add_argument("--curve", action="store_true", help="also run phases 1-4 with CurveZMQ encryption")
    p.add_argument("--latency-calls", type=int, default=500)
    p.add_argument("--map-items", type=int, default=10000)
    p.add_argument("--push-mb", type=int, default=100)
    p.add_argument("--push-repeat", type=int, default=3)
    p.add_argument("--memory-tasks", type=int, default=100000)
    p.add_argument("--memory-batch", type=int, default=5000)
    p.add_argument("--many-engines", type=int, default=128)
    opts = p.parse_args(argv)
    opts.register_within = {"ours": 30.0, "ref": 60.0}
    return opts


def main(argv=None) -> int:
    opts = parse_args(argv)
    kinds = [opts.only] if opts.only else list(KINDS)
    env = log_environment()
    results: dict = {}
    failures: list = []

    def main_phase(kind, tag, curve=False):
        with Stack(kind, opts, tag, opts.engines, curve=curve) as s:
            return phase_main(s, opts)

    def measure():
        for r in range(opts.repeat):
            if not opts.skip_pool and r % 2 == 1:
                run("pool", "pool", f"round{r + 1}", lambda: pool_throughput(opts), results, failures)
            for kind in (kinds if r % 2 == 0 else kinds[::-1]):
                run("main", kind, f"round{r + 1}", lambda: main_phase(kind, f"round{r + 1}"), results, failures)
                if opts.curve:
                    run("curve", kind, f"round{r + 1}", lambda: main_phase(kind, f"curve{r + 1}", True),
                        results, failures)
            if not opts.skip_pool and r % 2 == 0:
                run("pool", "pool", f"round{r + 1}", lambda: pool_throughput(opts), results, failures)
        if not opts.skip_memory:
            for kind in kinds[::-1]:
                run("memory", kind, "memory", lambda: phase_memory(kind, opts), results, failures)
        if not opts.skip_128:
            for kind in kinds[::-1]:
                run("register", kind, "register", lambda: phase_register(kind, opts), results, failures)

    interrupted = run_stopping_all(measure)
    rows = summarize(results, opts)
    loads = [r["background_cores"] for runs in results.get("main", {}).values() for r in runs]
    print(f"\nMedians over {opts.repeat} round(s); {opts.tasks} LB tasks, {opts.engines} engines, {env['cpus']} CPUs.")
    if loads:
        print(f"CPU used by other processes on the machine during the LB throughput runs: "
              f"median {statistics.median(loads):.2f} cores, max {max(loads):.2f} cores.")
    print_table(rows, failures, LABELS)
    cost = summarize_cost(results)
    print(f"\nCost per task, same rounds (ref column as named; {opts.tasks} no-op tasks, submit all, wait for all):")
    print_table(cost, [], {"ref": "reference", "ours": "jupyter_hub_ctl"})
    if opts.curve:
        print("\nWith CurveZMQ encryption (same rounds):")
        print_table(summarize_curve(results), [], LABELS)
    if opts.json:
        doc = {"environment": env, "options": vars(opts), "results": results, "failures": failures,
               "interrupted": interrupted,
               "summary": [dict(zip(("measurement", "ref", "ours", "format", "ratio", "target", "result"), row))
                           for row in rows + cost]}
        with open(opts.json, "w") as f:
            json.dump(doc, f, indent=1, default=str)
        log(f"wrote {opts.json}")
    return 130 if interrupted else (1 if failures else 0)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-child":
        sys.exit(memory_child(sys.argv[2:]))
    sys.exit(main())
