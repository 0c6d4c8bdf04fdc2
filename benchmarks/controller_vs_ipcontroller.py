"""Side-by-side benchmark: jupyter_hub_ctl's controller vs ipyparallel's ipcontroller.

Both controllers run the same workload in the same invocation, alternating:
ipyparallel's own ``Client`` drives real ``ipengine`` processes (two by default)
through a controller started as ``python -m ipyparallel.controller`` ("ref") or
``python -m jupyter_hub_ctl.controller`` ("ours").  Figures are reported side by
side with the ratio ours/ref and checked against the project's targets.

Phases (each in a freshly started controller + engines, warmed up first):

* ``lb-dictdb``  load-balanced no-op tasks, default ``--dictdb``: controller CPU
  per task (user+sys of the controller and all its child processes) and
  end-to-end tasks/s.
* ``lb-sqlitedb`` the same with ``--sqlitedb``.
* ``db-query``   ``--dictdb --DictDB.record_limit=20000`` filled with completed
  task records, then ``Client.db_query`` for msg_ids only and for full records.
* ``rss``        ``--sqlitedb``, controller RSS (all processes) while running
  ``--rss-tasks`` tasks, sampled every ``--rss-step`` tasks.

Every process started here is stopped by pid (SIGTERM, a grace period, then
SIGKILL), together with every descendant, also on Ctrl-C or an error.

Run ``python benchmarks/controller_vs_ipcontroller.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import gc
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import ClassVar

import psutil

KINDS = ("ref", "ours")
LABELS = {"ref": "ipcontroller", "ours": "jupyter_hub_ctl"}
CONTROLLER_CMD = {
    "ref": [sys.executable, "-m", "ipyparallel.controller"],
    "ours": [sys.executable, "-m", "jupyter_hub_ctl.controller"],
}
ENGINE_CMD = [sys.executable, "-m", "ipyparallel.engine"]
POLL = 0.05  # seconds between polls of a condition
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout holding this file


def noop():
    """The task: does nothing, returns None."""


noop.__module__ = "__main__"  # shipped by value, also when this file is imported rather than run


class Failure(Exception):
    """A measurement could not be completed; the message says why."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- processes
def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _signal_all(procs, sig) -> None:
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def _wait_gone(procs, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if not _gone(p)]
    while alive and time.monotonic() < deadline:
        psutil.wait_procs(alive, timeout=POLL)  # reaps our direct children
        alive = [p for p in alive if not _gone(p)]
    return alive


class Managed:
    """A process started by this script, with its log file, stopped with all its descendants."""

    registry: ClassVar[list] = []

    def __init__(self, name: str, argv: list, env: dict, cwd: str, log_path: str):
        self.name, self.log_path = name, log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.proc = psutil.Process(self.popen.pid)
        self.known: dict = {self.proc.pid: self.proc}  # every descendant ever seen
        Managed.registry.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def tree(self) -> list:
        """The process and its live descendants (remembered for the final stop)."""
        if not self.running():
            return []
        procs = [self.proc]
        try:
            procs += self.proc.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for p in procs:
            self.known.setdefault(p.pid, p)
        return procs

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def memory(self) -> dict:
        """Summed RSS and PSS (shared pages split between sharers) of the process tree, in MB."""
        rss = pss = 0
        procs = self.tree()
        for p in procs:
            try:
                info = p.memory_full_info()
                rss += info.rss
                pss += getattr(info, "pss", info.rss)
            except psutil.NoSuchProcess:
                pass
        return {"rss_mb": rss / 2**20, "pss_mb": pss / 2**20, "processes": len(procs)}

    def log_tail(self, lines: int = 25) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()[-20000:]
        except OSError as e:
            return f"(log unreadable: {e})"
        return "\n".join(data.decode("utf8", "replace").splitlines()[-lines:])

    def stop(self, grace: float = 5.0) -> list:
        """SIGTERM the process, then its leftover descendants, then SIGKILL; return survivors."""
        self.tree()
        descendants = [p for pid, p in self.known.items() if pid != self.proc.pid]
        if self.running():
            _signal_all([self.proc], signal.SIGTERM)
        alive = _wait_gone([self.proc] + descendants, grace)
        if alive:
            _signal_all(alive, signal.SIGTERM)
            alive = _wait_gone(alive, 1.0)
        if alive:
            _signal_all(alive, signal.SIGKILL)
            alive = _wait_gone(alive, grace)
        try:
            self.popen.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        if self in Managed.registry:
            Managed.registry.remove(self)
        return [p.pid for p in alive]

    @classmethod
    def stop_all(cls) -> list:
        survivors = []
        for m in list(reversed(cls.registry)):
            survivors += m.stop()
        return survivors


def ready_json(path: str) -> bool:
    """Whether ``path`` holds complete JSON (a connection file written and not being replaced)."""
    try:
        with open(path) as f:
            json.load(f)
        return True
    except (OSError, ValueError):
        return False


def call_with_timeout(fn: Callable, timeout: float, what: str):
    """Run ``fn()`` in a daemon thread; raise Failure if it does not return in time."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # handed back to the caller
            box["error"] = e

    t = threading.Thread(target=target, daemon=True, name=what)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise Failure(f"{what}: no answer within {timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


# --------------------------------------------------------------------------- one cluster
class ClusterBase:
    """A controller in a fresh profile folder, its engines and a client; a context manager.

    The start-up and shutdown both benchmarks share: a subclass's ``_start`` calls
    ``start_controller`` and ``start_engine`` and connects ``self.client``.  Leaving (or a
    failed start) stops every process by pid, keeps the folder with the logs if anything failed
    and removes it otherwise.
    """

    dir_prefix = "hubctl-bench"

    def __init__(self, kind: str, opts, tag: str):
        self.kind, self.opts, self.tag = kind, opts, tag
        self.failed = False
        self.controller: Managed | None = None
        self.engines: list = []
        self.client = None

    # ----- start
    def __enter__(self):
        try:
            self._start()
        except BaseException:
            self.failed = True
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        raise NotImplementedError

    def start_controller(self, extra_args: list) -> None:
        """Start the controller in a fresh profile and wait until its connection files are written."""
        opts = self.opts
        self.dir = tempfile.mkdtemp(prefix=f"{self.dir_prefix}-{self.kind}-{self.tag}-")
        self.profile_dir = os.path.join(self.dir, "profile")
        os.makedirs(os.path.join(self.profile_dir, "security"))
        os.makedirs(os.path.join(self.profile_dir, "log"))
        self.cluster_id = cluster_id = f"bench-{uuid.uuid4().hex[:8]}"
        self.env = dict(os.environ, IPP_PROFILE_DIR=self.profile_dir, IPP_CLUSTER_ID=cluster_id,
                        PYTHONUNBUFFERED="1")
        argv = CONTROLLER_CMD[self.kind] + [
            f"--profile-dir={self.profile_dir}", f"--cluster-id={cluster_id}",
            f"--ping={opts.ping}", f"--log-level={opts.log_level}",
        ] + extra_args
        self.controller = Managed(f"{self.kind} controller", argv, self.env, self.dir,
                                  os.path.join(self.dir, "controller.log"))
        security = os.path.join(self.profile_dir, "security")
        self.client_file = os.path.join(security, f"ipcontroller-{cluster_id}-client.json")
        self.engine_file = os.path.join(security, f"ipcontroller-{cluster_id}-engine.json")
        deadline = time.monotonic() + opts.start_timeout
        while not (ready_json(self.client_file) and ready_json(self.engine_file)):
            if not self.controller.running():
                raise Failure(f"controller exited with status {self.controller.popen.returncode} before "
                              "writing its connection files")
            if time.monotonic() > deadline:
                raise Failure(f"connection files not written within {opts.start_timeout:.0f} s")
            time.sleep(POLL)
        self.controller.tree()  # note the reference's scheduler processes now, in case it dies later

    def start_engine(self, cmd: list, *args: str) -> Managed:
        """Start one more engine: ``cmd --file=<engine file> *args``, logging to engine-<i>.log."""
        i = len(self.engines)
        m = Managed(f"engine {i}", cmd + [f"--file={self.engine_file}", *args],
                    dict(os.environ, PYTHONUNBUFFERED="1"), self.dir, os.path.join(self.dir, f"engine-{i}.log"))
        self.engines.append(m)
        return m

    # ----- stop
    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.failed = True
        if self.failed and self.controller is not None:
            self.failure_tail = self.controller.log_tail()
        if self.client is not None:
            try:
                call_with_timeout(self._close_client, 10, "Client.close")
            except Exception as e:
                log(f"  client close failed: {e}")
            self.client = None
        survivors = self._stop_engines()
        if self.controller is not None:
            survivors += self.controller.stop()
        if survivors:
            raise RuntimeError(f"processes still alive after SIGKILL: {survivors}")
        if self.failed:
            log(f"  logs kept in {self.dir}")
        elif hasattr(self, "dir"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def _close_client(self) -> None:
        self.client.close(linger=0)

    def _stop_engines(self) -> list:
        """Stop every engine; return the pids that survived SIGKILL."""
        survivors = []
        for m in self.engines:
            survivors += m.stop()
        return survivors

    def check_alive(self) -> None:
        if not self.controller.running():
            raise Failure(f"controller exited with status {self.controller.popen.returncode}")

    def log_tail(self) -> str:
        """The controller's log tail, as it was when the failure happened if one did."""
        if hasattr(self, "failure_tail"):
            return self.failure_tail
        return self.controller.log_tail() if self.controller else ""


class Cluster(ClusterBase):
    """One controller (ref or ours) with engines and a connected ``ipyparallel.Client``."""

    def __init__(self, kind: str, controller_args: list, opts, tag: str):
        super().__init__(kind, opts, tag)
        self.controller_args = controller_args

    def _start(self) -> None:
        opts = self.opts
        self.start_controller(self.controller_args)
        for _ in range(opts.engines):
            self.start_engine(ENGINE_CMD, f"--profile-dir={self.profile_dir}", "--log-level=WARN")
        from ipyparallel import Client

        self.client = call_with_timeout(
            lambda: Client(self.client_file, profile_dir=self.profile_dir, timeout=opts.start_timeout),
            opts.start_timeout + 5, "Client() connection")
        try:
            self.client.wait_for_engines(opts.engines, timeout=opts.start_timeout, interactive=False)
        except TimeoutError:
            raise Failure(f"{len(self.client.ids)} of {opts.engines} engines registered "
                          f"within {opts.start_timeout:.0f} s") from None
        for m in self.engines:
            m.tree()  # note the nannies
        self.lview = self.client.load_balanced_view()

    # ----- measurements
    def cpu(self) -> float:
        return self.controller.cpu_seconds()

    def load_snapshot(self) -> dict:
        """CPU seconds so far: the whole machine (busy), the controller, the engines, this process."""
        t = psutil.cpu_times()
        me = psutil.Process().cpu_times()
        return {"time": time.monotonic(), "machine": sum(t) - t.idle - getattr(t, "iowait", 0.0),
                "controller": self.cpu(), "engines": sum(m.cpu_seconds() for m in self.engines),
                "client": me.user + me.system}

    @staticmethod
    def cpu_split(a: dict, b: dict) -> dict:
        """Cores used between two snapshots by each party, and by processes outside this benchmark."""
        wall = max(b["time"] - a["time"], 1e-9)
        used = {k: (b[k] - a[k]) / wall for k in ("machine", "controller", "engines", "client")}
        used["other"] = max(0.0, used.pop("machine") - used["controller"] - used["engines"] - used["client"])
        return used

    def wait_quiet(self, window: float = 0.5, max_cpu: float = 0.01, timeout: float = 30.0) -> dict:
        """Poll the controller's CPU time until it used < ``max_cpu`` s over ``window`` s."""
        samples: deque = deque()
        start = time.monotonic()
        while True:
            self.check_alive()
            now = time.monotonic()
            samples.append((now, self.cpu()))
            while len(samples) > 1 and now - samples[1][0] >= window:
                samples.popleft()
            t0, c0 = samples[0]
            if now - t0 >= window and samples[-1][1] - c0 < max_cpu:
                return {"cpu": samples[-1][1], "quiet": True, "idle_cpu_pct": 100 * (samples[-1][1] - c0) / (now - t0)}
            if now - start > timeout:
                return {"cpu": samples[-1][1], "quiet": False,
                        "idle_cpu_pct": 100 * (samples[-1][1] - c0) / max(now - t0, 1e-9)}
            time.sleep(POLL)

    def run_tasks(self, n: int) -> float:
        """Submit ``n`` load-balanced no-op tasks, then wait for all; return the elapsed seconds."""
        opts = self.opts
        t0 = time.perf_counter()
        ars = [self.lview.apply_async(noop) for _ in range(n)]
        ids = set()
        for ar in ars:
            ids.update(ar.msg_ids)
        deadline = time.monotonic() + opts.task_timeout + n / 100.0
        last_left, last_progress = len(ids), time.monotonic()
        while not self.client.wait(ars, timeout=1.0):
            self.check_alive()
            now = time.monotonic()
            left = len(ids & self.client.outstanding)
            if left < last_left:
                last_left, last_progress = left, now
            if now - last_progress > opts.stall_timeout:
                raise Failure(f"stalled: {left} of {n} tasks outstanding, no progress for {opts.stall_timeout:.0f} s")
            if now > deadline:
                raise Failure(f"{left} of {n} tasks outstanding at the deadline")
        elapsed = time.perf_counter() - t0
        failed = [ar for ar in ars if not ar.successful()]
        if failed:
            try:
                failed[0].get(0)
            except Exception as e:
                raise Failure(f"{len(failed)} of {n} tasks failed; first: {type(e).__name__}: {e}") from None
        return elapsed

    def warm_up(self) -> dict:
        if self.opts.warmup:
            self.run_tasks(self.opts.warmup)
        return self.wait_quiet()


# --------------------------------------------------------------------------- phases
def phase_lb(c: Cluster, opts) -> dict:
    """Controller CPU per task and end-to-end throughput for ``opts.tasks`` no-op tasks."""
    before = c.warm_up()
    # an earlier phase's Client (ipyparallel's holds reference cycles) is freed by the cycle
    # collector: let that happen now, not in the middle of this measurement
    gc.collect()
    load0 = c.load_snapshot()
    elapsed = c.run_tasks(opts.tasks)
    load1 = c.load_snapshot()
    after = c.wait_quiet()
    cpu = after["cpu"] - before["cpu"]
    out = {"tasks": opts.tasks, "seconds": elapsed, "tasks_per_s": opts.tasks / elapsed,
           "cpu_s": cpu, "cpu_ms_per_task": 1000 * cpu / opts.tasks, "idle_cpu_pct": before["idle_cpu_pct"],
           "processes": len(c.controller.tree())}
    cores = c.cpu_split(load0, load1)
    out["background_cores"] = cores["other"]
    out["client_cpu_ms_per_task"] = 1000 * cores["client"] * elapsed / opts.tasks
    out["engines_cpu_ms_per_task"] = 1000 * cores["engines"] * elapsed / opts.tasks
    if not after["quiet"]:
        out["note"] = "controller did not go quiet within 30 s after the tasks"
    log(f"  {opts.tasks} tasks in {elapsed:.2f} s = {out['tasks_per_s']:.0f}/s; controller CPU "
        f"{out['cpu_ms_per_task']:.3f} ms/task ({out['processes']} processes, idle {out['idle_cpu_pct']:.1f}%); "
        f"client {out['client_cpu_ms_per_task']:.3f} ms/task, engines {out['engines_cpu_ms_per_task']:.3f} ms/task; "
        f"other load on the machine {out['background_cores']:.2f} cores")
    return out


def phase_db_query(c: Cluster, opts) -> dict:
    """Fill the DB with completed records, then time ``db_query`` (msg_ids only and full records)."""
    c.warm_up()
    fill = max(opts.db_records - opts.warmup, 0)
    while fill > 0:
        chunk = min(fill, 5000)
        c.run_tasks(chunk)
        fill -= chunk
    c.wait_quiet()
    query = {"msg_id": {"$ne": None}}
    timeout = opts.task_timeout

    def timed(keys):
        t0 = time.perf_counter()
        recs = c.client.db_query(query, keys=keys)
        return time.perf_counter() - t0, recs

    def reply_only(keys):
        """Request/reply time without Client.db_query's own unpacking of the records."""
        t0 = time.perf_counter()
        reply = c.client._send_recv(c.client._query_stream, "db_request", content={"query": query, "keys": keys})
        if reply["content"]["status"] != "ok":
            raise Failure(f"db_request failed: {reply['content']}")
        return time.perf_counter() - t0

    def timed_with_cpu(keys, what):
        cpu0 = c.cpu()
        s, recs = call_with_timeout(lambda: timed(keys), timeout, what)
        return s, c.cpu() - cpu0, recs

    _, recs = call_with_timeout(lambda: timed(["msg_id"]), timeout, "db_query(keys=['msg_id'])")
    count = len(recs)
    if count < opts.db_records:
        raise Failure(f"db_query found {count} records, expected at least {opts.db_records}")
    ids_s, full_s, ids_cpu, full_cpu, full_reply_s = [], [], [], [], []
    raw_reply = hasattr(c.client, "_send_recv") and hasattr(c.client, "_query_stream")
    for _ in range(opts.db_repeat):
        s, cpu, recs = timed_with_cpu(["msg_id"], "db_query(keys=['msg_id'])")
        if len(recs) != count:
            raise Failure(f"db_query(keys=['msg_id']) returned {len(recs)} records, then {count}")
        ids_s.append(s)
        ids_cpu.append(cpu)
        s, cpu, recs = timed_with_cpu(None, "db_query(full records)")
        if len(recs) != count or recs and "completed" not in recs[0]:
            raise Failure(f"db_query(full) returned {len(recs)} records (expected {count}) "
                          f"with keys {sorted(recs[0]) if recs else []}")
        full_s.append(s)
        full_cpu.append(cpu)
        if raw_reply:
            full_reply_s.append(call_with_timeout(lambda: reply_only(None), timeout, "db_request(full records)"))
    out = {"records": count, "ids_ms": 1000 * statistics.median(ids_s), "full_ms": 1000 * statistics.median(full_s),
           "ids_ms_all": [1000 * s for s in ids_s], "full_ms_all": [1000 * s for s in full_s],
           "ids_controller_cpu_ms": 1000 * statistics.median(ids_cpu),
           "full_controller_cpu_ms": 1000 * statistics.median(full_cpu)}
    if full_reply_s:
        out["full_reply_ms"] = 1000 * statistics.median(full_reply_s)
    log(f"  db_query over {count} records (median of {opts.db_repeat}): msg_ids {out['ids_ms']:.1f} ms "
        f"(controller CPU {out['ids_controller_cpu_ms']:.0f} ms), full {out['full_ms']:.1f} ms "
        f"(controller CPU {out['full_controller_cpu_ms']:.0f} ms, reply received after "
        f"{out.get('full_reply_ms', float('nan')):.1f} ms)")
    return out


def phase_rss(c: Cluster, opts) -> dict:
    """Controller RSS (all its processes) while running ``opts.rss_tasks`` tasks with --sqlitedb."""
    c.warm_up()
    samples = [dict(c.controller.memory(), tasks=0)]
    log(f"  after warm-up: RSS {samples[0]['rss_mb']:.1f} MB, PSS {samples[0]['pss_mb']:.1f} MB "
        f"({samples[0]['processes']} processes)")
    done = 0
    while done < opts.rss_tasks:
        step = min(opts.rss_step, opts.rss_tasks - done)
        elapsed = 0.0
        left = step
        while left > 0:
            chunk = min(left, 5000)
            elapsed += c.run_tasks(chunk)
            left -= chunk
        done += step
        c.wait_quiet()
        samples.append(dict(c.controller.memory(), tasks=done, tasks_per_s=step / elapsed))
        log(f"  after {done} tasks: RSS {samples[-1]['rss_mb']:.1f} MB, PSS {samples[-1]['pss_mb']:.1f} MB "
            f"({step / elapsed:.0f} tasks/s)")
        c.client.results.clear()
        c.client.metadata.clear()
    return {"samples": samples, "final_mb": samples[-1]["rss_mb"], "final_pss_mb": samples[-1]["pss_mb"],
            "tasks": done}


PHASES = {
    "lb-dictdb": (phase_lb, ["--dictdb"]),
    "lb-sqlitedb": (phase_lb, ["--sqlitedb"]),
    "db-query": (phase_db_query, ["--dictdb", "--DictDB.record_limit=20000"]),
    "rss": (phase_rss, ["--sqlitedb"]),
}


def run_phase(name: str, kind: str, opts, tag: str, results: dict, failures: list) -> None:
    fn, args = PHASES[name]
    log(f"{name} [{LABELS[kind]}] {tag}")
    cluster = Cluster(kind, args, opts, f"{name}-{tag}")
    try:
        with cluster:
            value = fn(cluster, opts)
        results.setdefault(name, {}).setdefault(kind, []).append(value)
    except Exception as e:  # report, keep the controller log, go on with the next measurement
        tail = cluster.log_tail() or f"(empty at --log-level={opts.log_level}; rerun with --log-level=DEBUG)"
        failures.append({"phase": name, "kind": kind, "tag": tag, "error": f"{type(e).__name__}: {e}",
                         "log_tail": tail, "log_dir": getattr(cluster, "dir", None)})
        log(f"  FAILED {name} [{LABELS[kind]}]: {type(e).__name__}: {e}")
        print("  ---- controller log tail ----\n" + "\n".join("  | " + ln for ln in tail.splitlines())
              + "\n  -----------------------------", flush=True)


# --------------------------------------------------------------------------- report
def _median(results, phase, kind, key) -> float | None:
    vals = [r[key] for r in results.get(phase, {}).get(kind, []) if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarize(results: dict, opts) -> list:
    """Rows of (label, ref, ours, number format, ratio ours/ref, target, verdict), medians over rounds."""
    rows = []

    def pair(phase, key):
        return _median(results, phase, "ref", key), _median(results, phase, "ours", key)

    def ratio_row(label, phase, key, fmt, op, bound, target_text):
        ref, ours = pair(phase, key)
        ratio = ours / ref if ref and ours is not None else None
        verdict = "n/a" if ratio is None else ("PASS" if op(ratio, bound) else "MISS")
        rows.append((label, ref, ours, fmt, ratio, target_text, verdict))

    def context_row(label, phase, key, fmt):
        ref, ours = pair(phase, key)
        rows.append((label, ref, ours, fmt, ours / ref if ref and ours is not None else None, "(context)", "-"))

    le, ge = (lambda a, b: a <= b), (lambda a, b: a >= b)
    n = opts.db_records
    ratio_row("controller CPU per LB task, dictdb (ms)", "lb-dictdb", "cpu_ms_per_task", "{:.3f}", le, 0.25,
              "ours/ref <= 0.25")
    ratio_row("LB no-op tasks/s, dictdb", "lb-dictdb", "tasks_per_s", "{:.0f}", ge, 1.3, "ours/ref >= 1.30")
    context_row("  client (this process) CPU per task (ms)", "lb-dictdb", "client_cpu_ms_per_task", "{:.3f}")
    context_row("  engines' CPU per task (ms)", "lb-dictdb", "engines_cpu_ms_per_task", "{:.3f}")
    ratio_row(f"db_query msg_ids, {n} records (ms)", "db-query", "ids_ms", "{:.1f}", le, 0.10, "ours/ref <= 0.10")
    ratio_row(f"db_query full records, {n} (ms)", "db-query", "full_ms", "{:.1f}", le, 0.20, "ours/ref <= 0.20")
    context_row("  controller CPU in db_query msg_ids (ms)", "db-query", "ids_controller_cpu_ms", "{:.0f}")
    context_row("  controller CPU in db_query full (ms)", "db-query", "full_controller_cpu_ms", "{:.0f}")
    context_row("  full reply received, before Client unpacking (ms)", "db-query", "full_reply_ms", "{:.1f}")
    context_row("controller CPU per LB task, sqlitedb (ms)", "lb-sqlitedb", "cpu_ms_per_task", "{:.3f}")
    context_row("LB no-op tasks/s, sqlitedb", "lb-sqlitedb", "tasks_per_s", "{:.0f}")
    fractions = {}
    for kind in KINDS:
        d, s = _median(results, "lb-dictdb", kind, "tasks_per_s"), _median(results, "lb-sqlitedb", kind, "tasks_per_s")
        fractions[kind] = s / d if d and s is not None else None
    ours = fractions["ours"]
    rows.append(("tasks/s sqlitedb / dictdb", fractions["ref"], ours, "{:.2f}", None, "ours >= 0.80",
                 "n/a" if ours is None else ("PASS" if ours >= 0.80 else "MISS")))
    ref_rss, ours_rss = pair("rss", "final_mb")
    rows.append((f"controller RSS after {opts.rss_tasks} tasks, sqlitedb (MB)", ref_rss, ours_rss, "{:.1f}",
                 ours_rss / ref_rss if ref_rss and ours_rss is not None else None, "ours < 150 MB",
                 "n/a" if ours_rss is None else ("PASS" if ours_rss < 150 else "MISS")))
    context_row("  same, PSS (shared pages split) (MB)", "rss", "final_pss_mb", "{:.1f}")
    return rows


def print_table(rows: list, failures: list, labels: dict = LABELS) -> None:
    def cell(v, fmt):
        return "-" if v is None else fmt.format(v)

    header = ("measurement", labels["ref"], labels["ours"], "ours/ref", "target", "result")
    body = [(label, cell(ref, fmt), cell(ours, fmt), cell(ratio, "{:.2f}"), target, verdict)
            for label, ref, ours, fmt, ratio, target, verdict in rows]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print("\n" + line)
    for i, r in enumerate([header] + body):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            print(line)
    print(line)
    if failures:
        print(f"\n{len(failures)} measurement(s) failed:")
        for f in failures:
            print(f"  {f['phase']} [{labels[f['kind']]}] {f['tag']}: {f['error']}  (logs: {f['log_dir']})")


def use_checkout() -> None:
    """Measure the checkout holding this file, not whatever copy of jupyter_hub_ctl is installed.

    Puts REPO first on ``sys.path`` (call it before jupyter_hub_ctl is imported) and on
    ``PYTHONPATH``, which every process started afterwards inherits.
    """
    if sys.path[:1] != [REPO]:
        sys.path.insert(0, REPO)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if REPO not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([REPO, *paths])


def imported_from() -> str:
    """The folder this process imports jupyter_hub_ctl from (REPO after ``use_checkout()``)."""
    import jupyter_hub_ctl

    return os.path.dirname(os.path.dirname(jupyter_hub_ctl.__file__))


def environment() -> dict:
    import ipyparallel

    import jupyter_hub_ctl

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=here, capture_output=True, check=False,
                             text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "ipyparallel": ipyparallel.__version__, "jupyter_hub_ctl": getattr(jupyter_hub_ctl, "__version__", "?"),
            "git": rev}


def describe(env: dict) -> str:
    """One line for the log: when, on what machine, which Python, ipyparallel and jupyter_hub_ctl."""
    return (f"{env['date']} {env['machine']}, {env['cpus']} CPUs, Python {env['python']}, "
            f"ipyparallel {env['ipyparallel']}, jupyter_hub_ctl {env['jupyter_hub_ctl']} ({env['git']})")


def log_environment() -> dict:
    """``environment()``, logged in one line with where jupyter_hub_ctl was imported from."""
    env = environment()
    log(f"{describe(env)} from {imported_from()}")
    return env


# --------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", type=int, default=5000, help="no-op tasks per throughput/CPU measurement")
    p.add_argument("--repeat", type=int, default=3, help="rounds; each round runs every phase on both controllers")
    p.add_argument("--rss-tasks", type=int, default=50000, help="tasks run in the RSS phase")
    p.add_argument("--rss-step", type=int, default=10000, help="tasks between RSS samples")
    p.add_argument("--skip-rss", action="store_true", help="skip the RSS phase")
    p.add_argument("--rss-ref", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the RSS phase on the reference controller, for context")
    p.add_argument("--only", choices=KINDS, help="run one controller only (no ratios)")
    p.add_argument("--phases", default="lb-dictdb,lb-sqlitedb,db-query",
                   help="comma list of repeated phases: lb-dictdb, lb-sqlitedb, db-query")
    p.add_argument("--db-records", type=int, default=10000, help="task records in the DB for db_query timing")
    p.add_argument("--db-repeat", type=int, default=5, help="db_query repetitions (median reported)")
    p.add_argument("--warmup", type=int, default=300, help="warm-up tasks after each controller start")
    p.add_argument("--engines", type=int, default=2, help="engines per controller")
    p.add_argument("--ping", type=int, default=3000, help="controller heartbeat period (ms)")
    p.add_argument("--log-level", default="WARN", help="controller log level")
    p.add_argument("--start-timeout", type=float, default=60.0, help="seconds for controller files / engines")
    p.add_argument("--task-timeout", type=float, default=120.0, help="base seconds per batch of tasks (+ 10 ms/task)")
    p.add_argument("--stall-timeout", type=float, default=30.0, help="fail a batch with no progress for this long")
    p.add_argument("--json", metavar="OUT", help="also write all figures to this JSON file")
    opts = p.parse_args(argv)
    opts.phase_list = [s.strip() for s in opts.phases.split(",") if s.strip()]
    unknown = set(opts.phase_list) - {"lb-dictdb", "lb-sqlitedb", "db-query"}
    if unknown:
        p.error(f"unknown phases: {sorted(unknown)}")
    return opts


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_stopping_all(measure: Callable[[], None]) -> bool:
    """Run ``measure()``, then stop every process started here, also when Ctrl-C or SIGTERM ends
    it early (or the interpreter exits); return whether it was interrupted."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    atexit.register(Managed.stop_all)
    try:
        measure()
    except KeyboardInterrupt:
        log("interrupted; stopping every process started here")
        return True
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        survivors = Managed.stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if survivors:
            log(f"WARNING: processes survived SIGKILL: {survivors}")
    return False


def main(argv=None) -> int:
    opts = parse_args(argv)
    use_checkout()  # our controller is started as `python -m jupyter_hub_ctl.controller`: this checkout's
    kinds = [opts.only] if opts.only else list(KINDS)
    env = log_environment()
    results: dict = {}
    failures: list = []

    def measure():
        for r in range(opts.repeat):
            order = kinds if r % 2 == 0 else kinds[::-1]
            for phase in opts.phase_list:
                for kind in order:
                    run_phase(phase, kind, opts, f"round{r + 1}", results, failures)
        if not opts.skip_rss:
            for kind in kinds[::-1]:
                if kind == "ref" and not opts.rss_ref:
                    continue
                run_phase("rss", kind, opts, "rss", results, failures)

    interrupted = run_stopping_all(measure)
    rows = summarize(results, opts)
    loads = [r["background_cores"] for phase in ("lb-dictdb", "lb-sqlitedb")
             for runs in results.get(phase, {}).values() for r in runs]
    print(f"\nMedians over {opts.repeat} round(s); {opts.tasks} tasks per throughput run, "
          f"{opts.engines} engines, {env['cpus']} CPUs.")
    if loads:
        print(f"CPU used by other processes on the machine during the throughput runs: "
              f"median {statistics.median(loads):.2f} cores, max {max(loads):.2f} cores.")
    print_table(rows, failures)
    if opts.json:
        doc = {"environment": env, "options": {k: v for k, v in vars(opts).items()},
               "results": results, "failures": failures, "interrupted": interrupted,
               "summary": [dict(zip(("measurement", "ref", "ours", "format", "ratio", "target", "result"), row))
                           for row in rows]}
        with open(opts.json, "w") as f:
            json.dump(doc, f, indent=1)
        log(f"wrote {opts.json}")
    return 130 if interrupted else (1 if failures else 0)


if __name__ == "__main__":
    sys.exit(main())
