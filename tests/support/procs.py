"""Real controller and engine processes for tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

from jupyter_client.session import Session


class WaitTimeout(TimeoutError, AssertionError):
    """A condition did not come true before its deadline (a test failure either way it is caught)."""


def _poll(cond, deadline: float, timeout: float, what: str):
    """``cond()``, but WaitTimeout naming ``what`` if it is falsy past ``deadline``."""
    value = cond()
    if not value and time.monotonic() > deadline:
        raise WaitTimeout(f"timed out after {timeout}s waiting for {what}")
    return value


def wait_for(cond, timeout: float, what: str, interval: float = 0.02):
    """Poll ``cond`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not (value := _poll(cond, deadline, timeout, what)):
        time.sleep(interval)
    return value


async def until(cond, timeout: float, what: str, interval: float = 0.02):
    """``wait_for`` for coroutines: the event loop keeps running while we poll."""
    deadline = time.monotonic() + timeout
    while not (value := _poll(cond, deadline, timeout, what)):
        await asyncio.sleep(interval)
    return value


def free_port() -> int:
    """A TCP port of 127.0.0.1 free at the moment of asking."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def end_process(proc: subprocess.Popen, grace: float, after_kill: "float | None" = None):
    """SIGTERM to ``proc`` if it still runs, ``grace`` seconds to exit, then SIGKILL (and up to
    ``after_kill`` seconds, None: as long as it takes, for it to go); its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(after_kill)
    return proc.returncode


class Controller:
    """One controller process in its own profile dir."""

    def __init__(self, root, args=(), cluster_id="t", ping=200, log_level=10, module="jupyter_hub_ctl.controller",
                 wrapper=()):
        self.ping = ping
        self.log_level = log_level
        self.profile_dir = str(root / "profile")
        self.cluster_id = cluster_id
        self.log_path = str(root / "controller.log")
        self.args = list(args)
        self.module = module  # ipyparallel.controller for the reference
        self.wrapper = list(wrapper)  # e.g. ["ip", "netns", "exec", name]
        sec = os.path.join(self.profile_dir, "security")
        self.client_file = os.path.join(sec, f"ipcontroller-{cluster_id}-client.json")
        self.engine_file = os.path.join(sec, f"ipcontroller-{cluster_id}-engine.json")
        self.proc = None

    def start(self):
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        cmd = [*self.wrapper, sys.executable, "-m", self.module, f"--profile-dir={self.profile_dir}",
               f"--cluster-id={self.cluster_id}", f"--log-level={self.log_level}", *self.args]
        if self.ping:
            cmd.append(f"--ping={self.ping}")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(lambda: self.proc.poll() is not None or (os.path.exists(self.client_file)
                                                           and os.path.exists(self.engine_file)),
                 20, "connection files")
        if self.proc.poll() is not None:
            raise RuntimeError(f"controller exited {self.proc.returncode}:\n{self.log_tail()}")
        with open(self.client_file) as f:
            self.client_info = json.load(f)
        with open(self.engine_file) as f:
            self.engine_info = json.load(f)
        return self

    def url(self, channel, side="client"):
        info = self.client_info if side == "client" else self.engine_info
        port = info[channel]
        if isinstance(port, list):
            port = port[0]
        return f"{info['interface']}:{port}"

    def session(self, **kw):
        return Session(key=self.client_info["key"].encode(), signature_scheme=self.client_info["signature_scheme"], **kw)

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode("utf8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        end_process(self.proc, 10, 5)
        self._log.close()
        return self.proc.returncode


class Engines:
    """Our engines as subprocesses, stopped by pid."""

    def __init__(self, controller, root):
        self.controller = controller
        self.root = root
        self.procs = []

    def start(self, n=1, *args, env=None):
        started = []
        for _ in range(n):
            i = len(self.procs)
            log = open(os.path.join(self.root, f"engine{i}.log"), "ab")
            cmd = [sys.executable, "-m", "jupyter_hub_ctl.engine", f"--file={self.controller.engine_file}", *args]
            p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=dict(os.environ, **(env or {})))
            p.log = log
            p.log_path = log.name
            self.procs.append(p)
            started.append(p)
        return started

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 10
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            p.log.close()


#: ``SQLiteDB.max_page_count`` small enough that a few hundred task records fill the task database,
#: so that writing them fails as on a full disk
FULL_DISK_PAGES = 30


def drive_until_degraded(client, timeout: float = 120, batch: int = 50) -> dict:
    """Run batches of small load-balanced tasks through ``client``'s hub until the hub reports itself
    degraded (its task store full, see ``FULL_DISK_PAGES``); return that health reply."""
    view = client.load_balanced_view()

    def step():
        assert view.map(abs, range(-batch, 0)).get(60) == list(range(batch, 0, -1))  # scheduling goes on
        health = client.health()
        return health if health["state"] == "degraded" else None

    return wait_for(step, timeout, "the hub to report itself degraded", interval=0)


def accepts_connections(address: str) -> bool:
    """Does something listen at ``address`` (``tcp://host:port``)?  (A TCP connect succeeds.)"""
    host, port = address.rsplit("/", 1)[-1].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def rss_kb(pid: int) -> int:
    """Resident memory of process ``pid`` in kB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def slow_engine_cmd(delay: float) -> list:
    """An engine command that waits ``delay`` seconds before it becomes a real engine: a launcher
    configured with it starts slowly (its engines run, but register only after the delay)."""
    code = ("import runpy, sys, time; time.sleep(%r); sys.argv[0] = 'jupyter_hub_ctl.engine'; "
            "runpy.run_module('jupyter_hub_ctl.engine', run_name='__main__', alter_sys=True)" % float(delay))
    return [sys.executable, "-c", code]


def hub_processes(root) -> set:
    """Pids of live processes that belong to the hubs of a test whose runtime dir is under ``root``:
    descendants of this process, and anything running jupyter_hub_ctl with that runtime dir."""
    import psutil

    me = psutil.Process()
    found = {p.pid for p in me.children(recursive=True)}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if "jupyter_hub_ctl" in " ".join(proc.info["cmdline"] or ()) and \
                    str(root) in proc.environ().get("JUPYTER_RUNTIME_DIR", ""):
                found.add(proc.pid)
        except psutil.Error:
            continue
    return set(live(found))


def live(pids) -> list:
    """Those of ``pids`` that name a running process (not a zombie)."""
    import psutil

    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.Error:
            continue
    return out


def recorded_engine_pids(hub_id: str) -> list:
    """Pids of the engine processes the hub's state file records (none without a readable file)."""
    from jupyter_hub_ctl.cluster import state

    try:
        record = state.read_state(hub_id) or {}
    except ValueError:
        return []
    return [e["pid"] for e in record.get("engines") or () if e.get("pid")]
