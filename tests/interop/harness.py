"""Process harness for the interop suite: a controller, its engines and clients.

Everything here talks to real processes: the controller selected by
``HUBCTL_INTEROP_CONTROLLER`` (``ours`` or ``ipyparallel``) and stock
``ipyparallel.engine`` processes, driven from stock ``ipyparallel.Client``
objects.  Every wait is bounded by a deadline; nothing sleeps in place of a
condition.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parents[2]

CONTROLLER_KIND = os.environ.get("HUBCTL_INTEROP_CONTROLLER", "ours").strip().lower() or "ours"
if CONTROLLER_KIND not in ("ours", "ipyparallel"):
    raise RuntimeError(f"HUBCTL_INTEROP_CONTROLLER must be 'ours' or 'ipyparallel', not {CONTROLLER_KIND!r}")
IS_REFERENCE = CONTROLLER_KIND == "ipyparallel"

#: Multiplies every deadline in the suite (slow CI machines can raise it).
TIMEOUT_SCALE = float(os.environ.get("HUBCTL_INTEROP_TIMEOUT_SCALE", "1") or 1)

#: Heartbeat period handed to every controller, in milliseconds.
PING_MS = 250

ENGINE_MODULE = "ipyparallel.engine"


def scaled(seconds: float) -> float:
    """A deadline in seconds, scaled by ``HUBCTL_INTEROP_TIMEOUT_SCALE``."""
    return seconds * TIMEOUT_SCALE


def controller_command() -> list[str]:
    """The command that starts the selected controller (without per-hub arguments)."""
    module = "ipyparallel.controller" if IS_REFERENCE else "jupyter_hub_ctl.controller"
    return [sys.executable, "-m", module]


def _pythonpath(*entries: Path) -> str:
    paths = [str(p) for p in entries]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(paths)


def engine_env_additions() -> dict[str, str]:
    """Environment engines need beyond the test process' own.

    ipyparallel ships a function defined in a module by reference to that
    module (the engine imports it to rebuild the function's globals), so the
    engines must be able to import this suite's modules under the same name
    pytest gave them: ``interop.<module>`` (``tests/`` on the path) or
    ``tests.interop.<module>`` (the repository root on the path).
    """
    return {"PYTHONPATH": _pythonpath(REPO_ROOT / "tests", REPO_ROOT)}


def controller_env_additions() -> dict[str, str]:
    """Environment a controller needs beyond the test process' own.

    Our package may not be installed in the interpreter running the tests, so
    the repository root goes on ``PYTHONPATH`` for ``-m jupyter_hub_ctl.controller``.
    """
    if IS_REFERENCE:
        return {}
    return {"PYTHONPATH": _pythonpath(REPO_ROOT)}


# ---------------------------------------------------------------------------
# waiting
# ---------------------------------------------------------------------------


class WaitTimeout(AssertionError):
    """A polled condition did not become true before its deadline."""


def wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    """Poll ``condition()`` until it returns a truthy value; return that value.

    Raises :class:`WaitTimeout` naming ``what`` (and the last exception the
    condition raised, if any) when ``timeout`` seconds pass first.
    """
    timeout = scaled(timeout)
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = condition()
        except Exception as e:  # the condition may be probing something not ready yet
            last_error = e
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)


def call_with_deadline(fn, *args, timeout: float, what: str, **kwargs):
    """Run ``fn(*args, **kwargs)`` in a helper thread and return its result.

    Client calls such as ``hub_history()`` wait forever for the hub's reply; this
    turns a missing reply into a :class:`WaitTimeout` instead of a hung suite.
    Exceptions raised by ``fn`` propagate unchanged.
    """
    timeout = scaled(timeout)
    future: concurrent.futures.Future = concurrent.futures.Future()

    def run():
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:  # handed to the caller
            future.set_exception(e)

    threading.Thread(target=run, name=f"deadline:{what}", daemon=True).start()
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        raise WaitTimeout(f"no answer after {timeout:.1f}s for {what}") from None


def hub_request(client, msg_type: str, content: dict | None = None, timeout: float = 10):
    """Send one raw request on the client's hub-query socket; return the reply message.

    Uses the stock client's own sending machinery, so the message is signed and
    framed exactly as the client would; only the waiting is bounded.
    """
    future = client._send(client._query_stream, msg_type, content=content or {})
    if not future.wait(scaled(timeout)):
        raise WaitTimeout(f"no reply to {msg_type} within {scaled(timeout):.1f}s")
    return future.result()


def wait_for_iopub(client, timeout: float = 10) -> None:
    """Return once ``client`` receives engine output over IOPub.

    IOPub is PUB/SUB: output published before a new client's subscription has
    reached the relay is lost.  Probe with empty executions until one's output
    (the engine's busy/idle status) arrives.
    """

    def output_arrives():
        ar = client[:].execute("", silent=True, block=False)
        ar.get(timeout=scaled(timeout))
        return ar.wait_for_output(0.5)

    wait_for(output_arrives, timeout, "the client's IOPub subscription to deliver output", interval=0)


def wait_for_hub_records(client, msg_ids, timeout: float = 10) -> list[dict]:
    """Wait until the hub's DB holds a completed record for every msg_id.

    A client gets its results straight from the relays/scheduler; the hub
    records the same traffic asynchronously, so a query issued right after
    ``ar.get()`` may not see the task yet.
    """
    msg_ids = list(msg_ids)
    query = {"msg_id": {"$in": msg_ids}, "completed": {"$ne": None}}

    def recorded():
        records = client.db_query(query)
        return records if len(records) == len(msg_ids) else None

    return wait_for(recorded, timeout, f"the hub to record {len(msg_ids)} completed task(s)")


def port_accepts_connections(port: int, host: str = "127.0.0.1") -> bool:
    """True when something listens on ``host:port`` (a TCP connect succeeds)."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------


def alive(processes) -> list:
    """Those of ``processes`` (psutil.Process) still running."""
    out = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def kill_leftovers(processes) -> None:
    """SIGKILL those of ``processes`` still running (after a failure) and reap them."""
    leftovers = alive(processes)
    for p in leftovers:
        p.send_signal(signal.SIGKILL)
    psutil.wait_procs(leftovers, timeout=10)


def cluster_config(controller_env=None):
    """traitlets config for an ``ipyparallel.Cluster`` that launches the selected controller."""
    from traitlets.config import Config

    config = Config()
    config.LocalControllerLauncher.controller_cmd = controller_command()
    config.LocalControllerLauncher.environment = dict(controller_env_additions(), **(controller_env or {}))
    config.LocalEngineSetLauncher.environment = engine_env_additions()
    return config


def _gone(proc: psutil.Process) -> bool:
    try:
        return (not proc.is_running()) or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class ManagedProcess:
    """A subprocess with its own log file, stopped by pid with a deadline.

    Descendants (the reference controller's relay processes, an engine's
    nanny) are remembered whenever :meth:`remember_descendants` runs, so they
    can be checked and cleaned up even after the main process is gone.
    """

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path, cwd: Path):
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self._log_file = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.argv,
            env=env,
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self._descendants: dict[int, psutil.Process] = {}
        self.engine_id: int | None = None

    def __repr__(self):
        return f"<{self.name} pid={self.pid} rc={self.popen.poll()}>"

    @property
    def returncode(self):
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def remember_descendants(self) -> list[psutil.Process]:
        """Record the current children (recursively) and the members of this
        process' own process group (which also catches orphans whose parent
        died before it could reap them); return everything recorded so far."""
        try:
            for child in psutil.Process(self.pid).children(recursive=True):
                self._descendants.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass
        for proc in psutil.process_iter():
            try:
                if proc.pid != self.pid and os.getpgid(proc.pid) == self.pid:
                    self._descendants.setdefault(proc.pid, proc)
            except (OSError, psutil.Error):
                pass
        return list(self._descendants.values())

    def live_descendants(self) -> list[psutil.Process]:
        return [p for p in self._descendants.values() if not _gone(p)]

    def send_signal(self, sig: int) -> None:
        self.remember_descendants()
        if self.alive():
            self.popen.send_signal(sig)

    def wait(self, timeout: float):
        """Wait (bounded) for the main process to exit; return its exit code."""
        try:
            return self.popen.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            raise WaitTimeout(f"{self} still running after {scaled(timeout):.1f}s") from None

    def kill(self) -> None:
        """SIGKILL the main process and reap it."""
        self.send_signal(signal.SIGKILL)
        self.popen.wait(scaled(10))

    def stop(self, sig: int | None = signal.SIGTERM, grace: float = 10) -> int | None:
        """Signal, wait up to ``grace`` seconds, then SIGKILL; same for descendants.

        ``sig=None`` only waits (the signal was sent already).  Returns the main
        process' exit code.  Raises if anything this process started is still
        alive after SIGKILL.
        """
        if sig is None:
            self.remember_descendants()
        else:
            self.send_signal(sig)
        try:
            self.popen.wait(scaled(grace))
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(scaled(10))
        self.remember_descendants()  # group members left behind by the main process
        stragglers = [p for p in self._descendants.values() if not _gone(p)]
        if stragglers:
            _, stragglers = psutil.wait_procs(stragglers, timeout=scaled(grace))
            stragglers = [p for p in stragglers if not _gone(p)]
        for p in stragglers:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        if stragglers:
            psutil.wait_procs(stragglers, timeout=scaled(5))
        self._log_file.close()
        survivors = [p for p in self._descendants.values() if not _gone(p)]
        assert self.popen.poll() is not None, f"{self} survived SIGKILL"
        assert not survivors, f"descendants of {self} survived SIGKILL: {survivors}"
        return self.popen.returncode

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as e:
            return f"<cannot read {self.log_path}: {e}>"
        return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------
# one hub = controller + engines + clients in a private profile dir
# ---------------------------------------------------------------------------

#: Every Hub ever created in this test process, for log tails on failure.
ALL_HUBS: list[Hub] = []


class Hub:
    """A controller subprocess in its own profile dir, with engines and clients.

    ``extra_args`` go to the controller command line after the standard
    ``--profile-dir --cluster-id --ping --log-level`` arguments.
    """

    def __init__(
        self, base_dir: Path, extra_args=(), cluster_id: str | None = None, profile_dir: Path | None = None
    ):
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.ipython_dir = self.base_dir / "ipython"
        self.ipython_dir.mkdir(exist_ok=True)
        self.profile_dir = Path(profile_dir) if profile_dir else self.base_dir / "profile_interop"
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = self.base_dir / "logs"
        self.log_dir.mkdir(exist_ok=True)
        self.cluster_id = cluster_id or f"interop-{uuid.uuid4().hex[:8]}"
        self.extra_args = list(extra_args)
        self.controller: ManagedProcess | None = None
        self.past_controllers: list[ManagedProcess] = []
        self.engines: list[ManagedProcess] = []
        self.clients: list = []
        self._admin = None
        self._engine_counter = 0
        self._controller_counter = 0
        self.closed = False
        ALL_HUBS.append(self)

    # -- paths ---------------------------------------------------------------

    @property
    def security_dir(self) -> Path:
        return self.profile_dir / "security"

    @property
    def client_file(self) -> Path:
        return self.security_dir / f"ipcontroller-{self.cluster_id}-client.json"

    @property
    def engine_file(self) -> Path:
        return self.security_dir / f"ipcontroller-{self.cluster_id}-engine.json"

    def connection_info(self, which: str) -> dict:
        path = self.client_file if which == "client" else self.engine_file
        return json.loads(path.read_text())

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("IPP_CONNECTION_INFO", None)
        env.update(
            IPYTHONDIR=str(self.ipython_dir),
            IPP_PROFILE_DIR=str(self.profile_dir),
            IPP_CLUSTER_ID=self.cluster_id,
            PYTHONUNBUFFERED="1",
        )
        return env

    # -- controller ----------------------------------------------------------

    def controller_argv(self) -> list[str]:
        return controller_command() + [
            f"--profile-dir={self.profile_dir}",
            f"--cluster-id={self.cluster_id}",
            f"--ping={PING_MS}",
            "--log-level=10",
            *self.extra_args,
        ]

    def start_controller(self, timeout: float = 30) -> ManagedProcess:
        """Launch the controller and wait until both connection files parse
        and its registration port accepts TCP connections."""
        assert self.controller is None or not self.controller.alive(), "controller already running"
        if self.controller is not None:
            self.past_controllers.append(self.controller)
        self._controller_counter += 1
        env = self.base_env()
        env.update(controller_env_additions())
        self.controller = ManagedProcess(
            f"controller#{self._controller_counter}",
            self.controller_argv(),
            env,
            self.log_dir / f"controller-{self._controller_counter}.log",
            cwd=self.base_dir,
        )
        self.wait_ready(timeout)
        # A connection_request answered proves the hub's loop is running (the
        # reference writes its files before it installs its SIGTERM handler).
        probe = self.connect()
        probe.close(linger=0)
        self.clients.remove(probe)
        self.controller.remember_descendants()
        return self.controller

    def wait_ready(self, timeout: float = 30) -> None:
        def ready():
            if not self.controller.alive():
                raise RuntimeError(
                    f"controller exited with {self.controller.returncode} before it was ready:\n"
                    + self.controller.log_tail(40)
                )
            try:
                client_info = self.connection_info("client")
                self.connection_info("engine")
            except (OSError, ValueError):
                return False
            return port_accepts_connections(int(client_info["registration"]))

        deadline = time.monotonic() + scaled(timeout)
        while True:
            if ready():
                return
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"controller not ready after {scaled(timeout):.1f}s "
                    f"(files {self.client_file.name}, {self.engine_file.name}):\n"
                    + self.controller.log_tail(40)
                )
            time.sleep(0.05)

    def stop_controller(self, sig: int = signal.SIGTERM, grace: float = 15) -> int | None:
        """Stop the controller (signal, then SIGKILL after ``grace``); return its exit code."""
        assert self.controller is not None
        return self.controller.stop(sig, grace)

    # -- clients -------------------------------------------------------------

    def connect(self, n_engines: int | None = None, timeout: float = 30, **kwargs):
        """A new ``ipyparallel.Client`` on this hub, closed when the hub closes.

        With ``n_engines`` it also waits until that many engines are registered.
        """
        import ipyparallel as ipp

        client = ipp.Client(str(self.client_file), timeout=scaled(10), **kwargs)
        self.clients.append(client)
        if n_engines:
            client.wait_for_engines(n_engines, timeout=scaled(timeout))
            wait_for_iopub(client, timeout)
        return client

    @property
    def admin(self):
        """A client private to the harness (engine bookkeeping)."""
        if self._admin is None or self._admin._closed:
            self._admin = self.connect()
        return self._admin

    # -- engines -------------------------------------------------------------

    def engine_argv(self, extra_args=()) -> list[str]:
        return [
            sys.executable,
            "-m",
            ENGINE_MODULE,
            f"--file={self.engine_file}",
            f"--profile-dir={self.profile_dir}",
            f"--cluster-id={self.cluster_id}",
            "--log-level=10",
            *extra_args,
        ]

    def launch_engines(self, n: int, extra_args=()) -> list[ManagedProcess]:
        """Start ``n`` engine processes without waiting for registration."""
        procs = []
        env = self.base_env()
        env.update(engine_env_additions())
        for _ in range(n):
            self._engine_counter += 1
            proc = ManagedProcess(
                f"engine#{self._engine_counter}",
                self.engine_argv(extra_args),
                env,
                self.log_dir / f"engine-{self._engine_counter}.log",
                cwd=self.base_dir,
            )
            self.engines.append(proc)
            procs.append(proc)
        return procs

    def start_engines(self, n: int, extra_args=(), timeout: float = 60) -> list[ManagedProcess]:
        """Start ``n`` engines and wait until each is registered; their
        ``engine_id`` attributes are filled in."""
        before = set(self.admin.ids)
        procs = self.launch_engines(n, extra_args)

        def registered():
            dead = [p for p in procs if not p.alive()]
            if dead:
                raise RuntimeError(f"engine exited during startup: {dead[0]}\n" + dead[0].log_tail(30))
            return len(set(self.admin.ids) - before) >= n

        wait_for(registered, timeout, f"{n} new engine(s) to register")
        self.map_engine_processes()
        for proc in procs:
            proc.remember_descendants()
        return procs

    def map_engine_processes(self, timeout: float = 30) -> dict[int, ManagedProcess]:
        """Ask every registered engine for its pid and label our processes with engine ids."""
        admin = self.admin
        ids = list(admin.ids)
        if not ids:
            return {}
        ar = admin.direct_view(ids).apply_async(os.getpid)
        pids = ar.get(timeout=scaled(timeout))
        by_pid = {p.pid: p for p in self.engines}
        mapping = {}
        for eid, pid in zip(ids, pids, strict=True):
            proc = by_pid.get(pid)
            if proc is not None:
                proc.engine_id = eid
                mapping[eid] = proc
        return mapping

    def engine_process(self, engine_id: int) -> ManagedProcess:
        for proc in self.engines:
            if proc.engine_id == engine_id:
                return proc
        mapping = self.map_engine_processes()
        return mapping[engine_id]

    def kill_engine(self, engine_id: int, sig: int = signal.SIGKILL) -> ManagedProcess:
        """Send ``sig`` (default SIGKILL) to the engine registered as ``engine_id``."""
        proc = self.engine_process(engine_id)
        proc.send_signal(sig)
        return proc

    # -- lifecycle -----------------------------------------------------------

    def start(self, n_engines: int = 0, timeout: float = 60) -> Hub:
        self.start_controller()
        if n_engines:
            self.start_engines(n_engines, timeout=timeout)
        return self

    def start_or_close(self, n_engines: int = 0) -> Hub:
        """``start``; if that fails, print the log tails and close the hub before re-raising.

        For the hubs of fixtures wider than one test, whose failure to start the per-test log
        report (conftest's ``_log_tails_on_failure``) does not see.
        """
        try:
            return self.start(n_engines)
        except BaseException:
            print(self.log_report())
            self.close()
            raise

    def close(self) -> None:
        """Close clients, stop engines and the controller; raise if any process survived."""
        if self.closed:
            return
        self.closed = True
        problems = []
        for client in self.clients:
            try:
                client.close(linger=0)
            except Exception as e:  # noqa: BLE001 - report, keep tearing down
                problems.append(f"closing client: {e!r}")
        for proc in self.engines:
            proc.send_signal(signal.SIGTERM)  # all at once; each is then waited for
        for proc in self.engines:
            try:
                proc.stop(None, grace=10)
            except AssertionError as e:
                problems.append(str(e))
        for proc in [*self.past_controllers, self.controller]:
            if proc is None:
                continue
            try:
                proc.stop(signal.SIGTERM, grace=15)
            except AssertionError as e:
                problems.append(str(e))
        assert not problems, "teardown problems: " + "; ".join(problems)

    def log_report(self, lines: int = 60) -> str:
        parts = [f"===== hub {self.cluster_id} ({CONTROLLER_KIND}) in {self.base_dir} ====="]
        for proc in [*self.past_controllers, self.controller]:
            if proc is not None:
                parts.append(f"----- {proc.name} log tail ({proc.log_path}) -----")
                parts.append(proc.log_tail(lines))
        for proc in self.engines:
            parts.append(f"----- {proc.name} (engine id {proc.engine_id}) log tail -----")
            parts.append(proc.log_tail(lines // 3))
        return "\n".join(parts)
