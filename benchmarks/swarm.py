"""An engine swarm: N wire-level IPython-parallel engines in a few processes, for scale tests.

``Swarm(engine_file, n)`` starts ``swarm_worker.py`` processes (at most ``per_process`` engines
each) that register ``n`` engines with the controller named by ``engine_file`` (ours or
ipcontroller), beat their hearts, connect every engine channel and answer requests at once (see
``swarm_worker.py`` for exactly what each engine does on the wire).  The coordinator talks to the
workers over a ROUTER on loopback::

    with Swarm(engine_file, 1000) as swarm:
        swarm.wait(lambda s: s["states"].get("registered", 0) == 1000, 60, "registration replies")
        ids = swarm.kill(100, how="vanish")        # 100 engines gone at once, without a word
        swarm.stats()["requests_by_id"]            # requests each engine answered

What one engine costs in file descriptors (RLIMIT_NOFILE), as ipyparallel 9's ``ipengine`` does it:

* on the controller side, 8 TCP connections: registration, mux, task, broadcast, control, iopub,
  heartbeat ping and heartbeat pong (each an accepted socket, one fd);
* on the engine side, the same 8 connections plus one eventfd per ZeroMQ socket (6 sockets:
  registration, shell, control, iopub, heart SUB, heart DEALER): 14 fds.  A real ipengine has more
  (its nanny's control connection and pipes, a kernel's stdin socket, the heart's monitor).

The swarm first raises its own hard RLIMIT_NOFILE (which the workers inherit) to what 2,000
engines per worker need, where the process may (root with CAP_SYS_RESOURCE); each worker raises
its soft limit to the hard one and sets its context's ZMQ_MAX_SOCKETS (libzmq's default is 1023
sockets per context) to 6 per engine; ``per_process`` defaults to what the hard limit allows.  Every worker process is stopped by pid when the swarm stops.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Optional

import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the checkout holding this file, for jupyter_hub_ctl.wire

from jupyter_hub_ctl.controller.limits import raise_hard_limit  # noqa: E402
from jupyter_hub_ctl.wire.session import MessageError, WireSession  # noqa: E402

WORKER = os.path.join(HERE, "swarm_worker.py")
HUB_FDS_PER_ENGINE = 8  # TCP connections per engine at the controller
SWARM_FDS_PER_ENGINE = 14  # 8 connections + 6 socket mailboxes in the swarm
MAX_PER_PROCESS = 2000  # engines one worker emulates at most (one event loop for all of them)
WORKER_RESERVE_FDS = 300  # Python's own files in a worker


def fds_for(engines: int, per_engine: int = SWARM_FDS_PER_ENGINE, reserve: int = WORKER_RESERVE_FDS) -> int:
    return engines * per_engine + reserve


def raise_worker_limit() -> bool:
    """Raise this process's hard RLIMIT_NOFILE (inherited by the workers started later) so that a
    worker can hold ``MAX_PER_PROCESS`` engines; False where that is not allowed (no
    CAP_SYS_RESOURCE): the workers then take fewer engines each, and there are more of them."""
    return raise_hard_limit(fds_for(MAX_PER_PROCESS))


def default_per_process() -> int:
    """Engines per worker that its hard fd limit allows, with room for Python's own files."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return MAX_PER_PROCESS
    return max(50, min(MAX_PER_PROCESS, (hard - WORKER_RESERVE_FDS) // SWARM_FDS_PER_ENGINE))


class SwarmError(RuntimeError):
    """A worker died or did not answer; the message says which and why."""


class Swarm:
    """N emulated engines in ``ceil(N / per_process)`` worker processes; a context manager."""

    def __init__(self, engine_file: str, n: int, per_process: Optional[int] = None, execute: bool = False,
                 reg_timeout: float = 5.0, log_dir: Optional[str] = None, env: Optional[dict] = None):
        self.engine_file = engine_file
        self.n = n
        raise_worker_limit()
        self.per_process = per_process or default_per_process()
        self.execute = execute
        self.reg_timeout = reg_timeout
        self.log_dir = log_dir
        self.env = env
        self.procs: list = []
        self.workers: list = []  # routing ids, in process order
        self.ctx: Optional[zmq.Context] = None
        self.started_at: Optional[float] = None

    # ------------------------------------------------------------------ start / stop
    def __enter__(self) -> "Swarm":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        """Start the workers; return once each has said hello (its engines are then registering)."""
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        port = self.router.bind_to_random_port("tcp://127.0.0.1")
        k = max(1, math.ceil(self.n / self.per_process))
        shares = [self.n // k + (1 if i < self.n % k else 0) for i in range(k)]
        self.started_at = time.monotonic()
        for i, share in enumerate(shares):
            argv = [sys.executable, WORKER, f"--info={self.engine_file}", f"--n={share}", f"--index={i}",
                    f"--control-url=tcp://127.0.0.1:{port}", f"--reg-timeout={self.reg_timeout}"]
            if self.execute:
                argv.append("--execute")
            out = subprocess.DEVNULL
            if self.log_dir:
                out = open(os.path.join(self.log_dir, f"swarm-{i}.log"), "ab")
            self.procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                               env=self.env, start_new_session=True))
            if out is not subprocess.DEVNULL:
                out.close()
        hellos = {}
        deadline = time.monotonic() + timeout
        while len(hellos) < k:
            self._check_procs()
            if time.monotonic() > deadline:
                raise SwarmError(f"{len(hellos)} of {k} swarm workers started within {timeout:.0f} s")
            if self.router.poll(100):
                ident, body = self.router.recv_multipart()
                hellos[ident] = json.loads(body)
        self.workers = [f"w{i}".encode() for i in range(k)]
        self.fd_limits = [hellos[w]["fd_limit"] for w in self.workers]

    def _check_procs(self) -> None:
        for i, p in enumerate(self.procs):
            if p.poll() is not None:
                raise SwarmError(f"swarm worker {i} (pid {p.pid}) exited with status {p.returncode}")

    def stop(self, timeout: float = 10.0) -> None:
        """Close every engine (vanishing), end the workers, SIGKILL any that do not end in time."""
        if self.ctx is None:
            return
        for w, p in zip(self.workers, self.procs):
            if p.poll() is None:
                self.router.send_multipart([w, json.dumps({"op": "stop"}).encode()])
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(10)
        self.procs = []
        self.router.close(0)
        self.ctx.term()
        self.ctx = None

    @property
    def pids(self) -> list:
        return [p.pid for p in self.procs]

    # ------------------------------------------------------------------ commands
    def _ask(self, op: str, timeout: float = 30.0, each: Optional[list] = None) -> list:
        """Send ``op`` (with per-worker arguments ``each``) to every worker; their replies in order."""
        for i, w in enumerate(self.workers):
            cmd = {"op": op, **(each[i] if each else {})}
            self.router.send_multipart([w, json.dumps(cmd).encode()])
        replies: dict = {}
        deadline = time.monotonic() + timeout
        while len(replies) < len(self.workers):
            self._check_procs()
            if time.monotonic() > deadline:
                missing = [w.decode() for w in self.workers if w not in replies]
                raise SwarmError(f"swarm workers {missing} did not answer {op!r} within {timeout:.0f} s")
            if self.router.poll(100):
                ident, body = self.router.recv_multipart()
                replies[ident] = json.loads(body)
        return [replies[w] for w in self.workers]

    def stats(self) -> dict:
        """Engine states, counters and per-engine request counts, summed over the workers."""
        out: dict = {"states": {}, "counts": {}, "requests_by_id": {}, "ids": [], "first_reply": None,
                     "last_reply": None}
        for r in self._ask("stats"):
            for key in ("states", "counts"):
                for k, v in r[key].items():
                    out[key][k] = out[key].get(k, 0) + v
            out["requests_by_id"].update(r["requests_by_id"])
            out["ids"].extend(r["ids"])
            # worker clocks are the machine's monotonic clock, comparable with ours
            for key, pick in (("first_reply", min), ("last_reply", max)):
                if r[key] is not None:
                    out[key] = r[key] if out[key] is None else pick(out[key], r[key])
        return out

    def wait(self, cond: Callable[[dict], bool], timeout: float, what: str, interval: float = 0.2) -> dict:
        """Poll ``stats()`` until ``cond(stats)``; SwarmError naming ``what`` at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats()
            if cond(s):
                return s
            if time.monotonic() > deadline:
                raise SwarmError(f"swarm: {what} not reached within {timeout:.0f} s (states {s['states']})")
            time.sleep(interval)

    def kill(self, count: int, how: str = "vanish") -> list:
        """Take ``count`` registered engines away at once, spread over the workers; their ids.

        ``how``: ``vanish`` (every socket closed, no message: a killed process) or ``unregister``
        (``unregistration_request`` first, as ipengine's nanny sends when its engine exits).
        """
        if how not in ("vanish", "unregister"):
            raise ValueError(f"how must be 'vanish' or 'unregister', not {how!r}")
        k = len(self.workers)
        each = [{"count": count // k + (1 if i < count % k else 0), "how": how} for i in range(k)]
        return [eid for r in self._ask("kill", each=each) for eid in r["ids"]]

    def reset(self) -> None:
        """Zero the request counters."""
        self._ask("reset")


class Notifications:
    """Records the controller's (un)registration notifications with their arrival times."""

    def __init__(self, client_file: str):
        with open(client_file) as f:
            info = json.load(f)
        self.session = WireSession(info.get("key", "").encode(), info.get("signature_scheme", "hmac-sha256"))
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.setsockopt(zmq.RCVHWM, 0)
        self.sub.connect(f"{info['interface']}:{info['notification']}")
        self.registered: dict = {}  # id -> time of its (latest) registration notification
        self.unregistered: dict = {}  # id -> time
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="notifications")
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.sub.poll(100):
                continue
            while True:
                try:
                    frames = self.sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                now = time.monotonic()
                try:
                    msg = self.session.parse(frames)
                except MessageError:
                    continue
                eid = msg.content.get("id")
                with self.lock:
                    if msg.msg_type == "registration_notification":
                        self.registered[eid] = now
                        self.unregistered.pop(eid, None)
                    elif msg.msg_type == "unregistration_notification":
                        self.unregistered[eid] = now

    def live(self) -> int:
        with self.lock:
            return len(self.registered) - len(self.unregistered)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self.thread.join(2)
        self.sub.close(0)
        self.ctx.term()
