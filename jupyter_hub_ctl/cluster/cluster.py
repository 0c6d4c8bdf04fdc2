"""``Cluster``: a hub (controller + engine sets) as one managed object.

Async-first: every operation is a coroutine (``await cluster.start()``) with a blocking
twin (``cluster.start_sync()``); both run on the cluster's private loop thread, which also
supervises the running hub.  ``start`` returns only when the requested engines have
registered, or raises a ``StartError`` naming the reason and leaves no process behind.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import secrets
import string
import threading
import time
from typing import Optional

from traitlets import Bool, Dict, Enum, Float, Integer, List, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from ..wire.connection import connection_file_paths, curve_key_path, ensure_profile_dir, ipython_dir, \
    profile_dir_for, read_connection_file
from . import lifecycle, processes, state
from ._loop import LoopThread
from .errors import ClusterError, ConnectionFileTimeout, ControllerExited, HubNotRunning, StartCancelled, StartError
from .launchers.base import launcher_class
from .launchers.local import LocalControllerLauncher, controller_config_args
from .engines import EngineOpsMixin
from .supervision import LIVE, SupervisionMixin

_ID_ALPHABET = string.ascii_lowercase + string.digits


def random_hub_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


async def open_client(info: dict, **kwargs):
    """A new ``Client`` made in a worker thread; if the caller is cancelled meanwhile, it is closed when made."""
    from ..client.client import Client

    loop = asyncio.get_running_loop()
    made = loop.run_in_executor(None, lambda: Client(info, **kwargs))
    try:
        return await asyncio.shield(made)
    except asyncio.CancelledError:
        def close(fut):
            if not fut.cancelled() and fut.exception() is None:
                loop.run_in_executor(None, fut.result().close)
        made.add_done_callback(close)
        raise


def _file_id(path: str):
    try:
        st = os.stat(path)
        return (st.st_ino, st.st_mtime_ns)
    except OSError:
        return None


class Cluster(EngineOpsMixin, SupervisionMixin, LoggingConfigurable):
    """A hub: one controller and its engines, started, supervised, scaled and stopped together.

    ``with Cluster(n=4) as client:`` starts a hub, waits for 4 engines and yields a connected
    ``jupyter_hub_ctl.Client``; leaving the block stops everything (``async with`` too).
    """

    cluster_id = Unicode(help="Hub id: names the state file and the connection files (default: random).",
                         config=True)
    profile = Unicode("default", config=True, help="Profile name (directory profile_<name> in the IPython dir).")
    profile_dir = Unicode(config=True, help="Profile directory (default: <IPYTHONDIR>/profile_<profile>).")
    n = Integer(None, allow_none=True, min=lifecycle.MIN_ENGINES, config=True,
                help="Engines to start with the hub (default: CPU count; 0: the controller alone).")
    engine_launcher = Unicode("local", config=True,
                              help="Engine launcher: a name from the jupyter_hub_ctl.launchers entry points "
                                   "(local, mpi, ssh, slurm, pbs, sge, lsf) or an import string.")
    launcher_options = Dict(config=True, help="Trait values for the engine launcher, e.g. {'mpi_args': [...]}.")
    controller_ip = Unicode("", config=True, help="Address the controller binds (--ip); engines on other hosts "
                                                  "need one they can reach. Default: the controller's (127.0.0.1).")
    controller_location = Unicode("", config=True, help="Host name/IP peers use for a wildcard controller_ip.")
    controller_args = List(Unicode(), config=True, help="Extra controller arguments (e.g. ['--ping=1000']).")
    engine_args = List(Unicode(), config=True, help="Extra engine arguments (added to the launcher's).")
    engine_cmd = List(Unicode(), config=True, help="Engine command replacing the launcher's default (advanced).")
    db = Enum(["sqlitedb", "dictdb", "nodb"], "sqlitedb", config=True, help="Controller task-record store.")
    db_table_per_hub = Bool(True, config=True,
                            help="With sqlitedb, keep each hub's task records in its own table (hub_<id>) of "
                                 "<profile>/tasks.db, so one hub's history never shows another's tasks.")
    controller_restarts = Integer(3, config=True,
                                  help="How many times a controller that crashes is started again, with --restore "
                                       "(same ports and key; running engines keep their ids; SQLite task records "
                                       "carry over), before the hub is marked failed. 0: never.")
    restart_engines = Bool(False, config=True, help="Replace engines that die (within restart_limit, with backoff).")
    restart_limit = Integer(5, config=True, help="Restarts allowed per engine slot.")
    restart_backoff = Float(1.0, config=True, help="Seconds before restarting a dead engine; doubles for each "
                                                   "consecutive quick death of a slot.")
    restart_backoff_max = Float(30.0, config=True, help="Upper bound of the restart delay in seconds.")
    restart_reset_seconds = Float(60.0, config=True, help="An engine that ran this long resets its slot's backoff.")
    stop_on_exit = Bool(True, config=True, help="Stop the hub when this Python process exits. With False it "
                                                "keeps running (unsupervised) and find_hub() finds it again.")
    connection_timeout = Float(30.0, config=True, help="Seconds to wait for the controller's connection files.")
    engine_timeout = Float(60.0, config=True, help="Seconds to wait for started engines to register.")
    stop_timeout = Float(5.0, config=True, help="Seconds between SIGTERM and SIGKILL when stopping processes.")
    supervise_interval = Float(0.2, config=True, help="Seconds between two checks of the hub's processes.")

    @default("cluster_id")
    def _default_id(self):
        return random_hub_id()

    @validate("cluster_id")
    def _check_id(self, proposal):
        return state.validate_hub_id(proposal["value"])

    @default("profile_dir")
    def _default_profile_dir(self):
        return profile_dir_for(self.profile or "default", ipython_dir())

    @validate("profile_dir")
    def _absolute_profile_dir(self, proposal):
        return os.path.abspath(os.path.expanduser(proposal["value"])) if proposal["value"] else proposal["value"]

    @default("n")
    def _default_n(self):
        return os.cpu_count() or 1

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._token = secrets.token_hex(6)
        self._loop_thread: Optional[LoopThread] = None
        self._launcher = None
        self._controller = None
        self._controller_ident = None
        self._controller_log = ""
        self._client = None
        self._client_info: Optional[dict] = None
        self._engine_info: Optional[dict] = None
        self._engine_file = ""
        self._conn_ids: dict = {}
        self._sets: list = []
        self._pending_restarts: dict = {}
        self._controller_restarts_used = 0
        self._events: list = []
        self._next_slot = 0
        self._started = False
        self._stopping = False
        self._stopped = False
        self._attached = False
        self._adopt = False  # the state file was claimed for us (jupyter hubctl start)
        self._supervisor = None
        self._watcher = None  # reads stop and scale requests from the state file (owner only)
        self._start_task = None
        self._stop_task = None
        self._stop_wanted = False  # a stop was asked for: it cancels whatever else runs
        self._ops: set = set()  # engine operations in progress (a stop cancels them)
        self._ops_lock: Optional[asyncio.Lock] = None
        self._cm_client = None
        self._ended = threading.Event()  # set once the hub's processes are gone
        self.dry_run_scripts: list = []

    # ================================================================ plumbing
    @property
    def _loop(self) -> LoopThread:
        if self._loop_thread is None or not self._loop_thread.alive:
            self._loop_thread = LoopThread(f"hubctl-cluster-{self.cluster_id}")
        return self._loop_thread

    def _sync(self, coro, timeout=None):
        return self._loop.run(coro, timeout)

    async def _async(self, coro):
        return await self._loop.arun(coro)

    def _make_launcher(self):
        if self._launcher is None:
            cls = launcher_class(self.engine_launcher)
            kw = dict(self.launcher_options)
            if self.engine_cmd:
                kw["engine_cmd"] = list(self.engine_cmd)
            launcher = cls(parent=self, profile_dir=self.profile_dir, cluster_id=self.cluster_id, **kw)
            if self.engine_args:
                launcher.engine_args = [*launcher.engine_args, *self.engine_args]
            self._launcher = launcher
        return self._launcher

    @property
    def launcher(self):
        """The engine launcher instance."""
        return self._make_launcher()

    def _commit(self, **fields) -> None:
        """Write this object's part of the hub's state file (its fields, its engine sets, new events)."""
        mine = [es.to_dict() for es in self._sets]
        events, self._events = self._events, []

        def change(record):
            record.update(fields)
            others = [e for e in record.get("engines") or () if e.get("owner") != self._token]
            record["engines"] = others + mine
            record.setdefault("events", []).extend(events)

        if state.update_state(self.cluster_id, change) is None and events:
            self._events = events + self._events

    def _live_count(self) -> int:
        return sum(es.count for es in self._sets if es.status in LIVE) + len(self._pending_restarts)

    @property
    def engine_sets(self) -> list:
        """Engine sets (processes or jobs) this object launched, as dicts."""
        return [es.to_dict() for es in self._sets]

    # ================================================================ start
    async def start(self) -> "Cluster":
        """Start the controller and ``n`` engines; return when they are registered (StartError otherwise)."""
        return await self._async(self._start())

    def start_sync(self) -> "Cluster":
        return self._sync(self._start())

    async def _start(self) -> "Cluster":
        if self._started or self._attached:
            raise ClusterError(f"hub {self.cluster_id} was already started")
        launcher = self._make_launcher()
        self.profile_dir = ensure_profile_dir(self.profile_dir)
        if getattr(launcher, "dry_run", False):
            return await self._dry_run()
        owner = {**state.process_identity(os.getpid()), "role": "daemon" if self._adopt else "process"}
        fields = dict(owner=owner, launcher=self.engine_launcher, launcher_options=launcher.options(), db=self.db,
                      n=self.n, stop_on_exit=self.stop_on_exit, restart_engines=self.restart_engines,
                      controller_ip=self.controller_ip, controller_location=self.controller_location,
                      controller_args=list(self.controller_args), profile_dir=self.profile_dir)
        if self._adopt and state.read_state(self.cluster_id) is not None:
            state.update_state(self.cluster_id, lambda r: r.update(fields, state="starting", error=None))
        else:
            state.claim(state.new_record(self.cluster_id, **fields))
        self._started = True
        self._start_task = asyncio.current_task()
        self._watcher = asyncio.ensure_future(self._watch_requests())
        try:
            await self._launch_hub()
        except BaseException as e:
            if self._stop_wanted:
                self.log.info("hub %s: stop requested while starting; stopping what was launched", self.cluster_id)
                await self._shutdown_processes("stopped")
                raise StartCancelled(f"hub {self.cluster_id}: stopped while starting (a stop was requested)") from None
            error = e.full_message() if isinstance(e, StartError) else (
                "start interrupted" if isinstance(e, (KeyboardInterrupt, asyncio.CancelledError)) else repr(e))
            self.log.error("hub %s failed to start: %s", self.cluster_id, error)
            await self._shutdown_processes("failed", error)
            raise
        self._commit(state="running", error=None)
        self._supervisor = asyncio.ensure_future(self._supervise())
        if self.stop_on_exit:
            atexit.register(self._atexit)
        self.log.info("hub %s running with %d engines", self.cluster_id, len(self._client.ids))
        return self

    async def _launch_hub(self) -> None:
        if self._stop_requested():
            self._stop_wanted = True  # asked to stop before anything was launched
            raise StartCancelled(f"hub {self.cluster_id}: stopped before it started")
        await self._start_controller()
        await self._connect()
        if self.n:
            await self._add_engines(self.n, starting=True)

    async def _dry_run(self) -> "Cluster":
        launcher = self._launcher
        engine_file = connection_file_paths(self.profile_dir, self.cluster_id)[1]
        await launcher.launch(list(range(self.n)), {}, engine_file)
        self.dry_run_scripts = [getattr(launcher, "last_script", "")]
        return self

    async def _start_controller(self, restore: bool = False) -> None:
        cpath, epath = connection_file_paths(self.profile_dir, self.cluster_id)
        before = {p: _file_id(p) for p in (cpath, epath)}
        ctl = LocalControllerLauncher(parent=self)
        # controller classes' settings in this Cluster's config first: explicit controller_args win
        args = controller_config_args(self.config) + list(self.controller_args)
        if restore:  # after a crash: same ports and key, engines and records taken back
            args.append("--restore")
        if self.db == "sqlitedb" and self.db_table_per_hub and not any("SQLiteDB.table" in a for a in args):
            args.insert(0, f"--SQLiteDB.table=hub_{self.cluster_id}")
        proc, log, cmd = ctl.start(self.profile_dir, self.cluster_id, db=self.db, ip=self.controller_ip,
                                   location=self.controller_location, extra_args=args)
        self._controller, self._controller_log = proc, log
        self._controller_ident = state.process_identity(proc.pid)
        self._commit(controller={**self._controller_ident, "log": log, "cmd": cmd})
        deadline = time.monotonic() + self.connection_timeout
        while True:
            code = proc.poll()
            if code is not None:
                raise ControllerExited(
                    f"hub {self.cluster_id}: the controller {processes.describe_exit(code)['reason']} before "
                    f"writing its connection files (log: {log})", processes.log_tail(log))
            fresh = all(_file_id(p) is not None and _file_id(p) != before[p] for p in (cpath, epath))
            if fresh:
                try:
                    self._client_info = read_connection_file(cpath)
                    self._engine_info = read_connection_file(epath)
                    break
                except (OSError, ValueError):
                    pass  # being replaced right now: look again
            if time.monotonic() > deadline:
                raise ConnectionFileTimeout(
                    f"hub {self.cluster_id}: the controller (pid {proc.pid}) wrote no connection files to "
                    f"{os.path.dirname(cpath)} within {self.connection_timeout:g}s (log: {log})",
                    processes.log_tail(log))
            await asyncio.sleep(0.05)
        self._engine_file = epath
        self._conn_ids = {k: os.stat(p).st_ino for k, p in (("client", cpath), ("engine", epath))}
        self._commit(connection_files={k: {"path": p, "ino": self._conn_ids[k]}
                                       for k, p in (("client", cpath), ("engine", epath))})

    async def _connect(self) -> None:
        try:
            self._client = await open_client(self._client_info, timeout=10)
        except Exception as e:
            if self._controller.poll() is not None:
                raise ControllerExited(
                    f"hub {self.cluster_id}: the controller {processes.describe_exit(self._controller.returncode)['reason']}",
                    processes.log_tail(self._controller_log)) from None
            raise StartError(f"hub {self.cluster_id}: the controller does not answer: {e!r}",
                             processes.log_tail(self._controller_log)) from None

    # ================================================================ clients
    def client_connection_info(self) -> dict:
        """The client connection dict of the running hub."""
        if self._client_info is not None and not self._attached:
            return dict(self._client_info)
        return self._client_info_of(self._live_record())

    def _live_record(self) -> dict:
        """The hub's annotated state record; HubNotRunning if its processes are gone."""
        record = state.get_hub(self.cluster_id)
        reason = state.not_running(record)
        if reason is not None:
            raise HubNotRunning(reason)
        return record

    def _client_info_of(self, record: dict) -> dict:
        """The client connection dict named by a running hub's record."""
        path = state.connection_file(record) or connection_file_paths(record["profile_dir"], self.cluster_id)[0]
        try:
            return read_connection_file(path)
        except (OSError, ValueError) as e:
            raise HubNotRunning(f"hub {self.cluster_id}: cannot read its connection file {path}: {e}") from None

    @property
    def client_connection_file(self) -> str:
        return connection_file_paths(self.profile_dir, self.cluster_id)[0]

    async def connect_client(self, **kwargs):
        """A new ``jupyter_hub_ctl.Client`` connected to this hub (the caller closes it)."""
        return await open_client(self.client_connection_info(), **kwargs)

    def connect_client_sync(self, **kwargs):
        from ..client.client import Client

        return Client(self.client_connection_info(), **kwargs)

    # ================================================================ stop
    async def stop(self) -> None:
        """Stop the engines and the controller, remove the connection and state files."""
        return await self._async(self._stop())

    def stop_sync(self) -> None:
        return self._sync(self._stop())

    async def _stop(self) -> None:
        """Stop the hub; wins over whatever else runs: a start is cancelled, engine operations too."""
        if self._attached:
            return await self._stop_attached()
        if not self._started or self._stopped:
            return
        first, self._stop_wanted = not self._stop_wanted, True
        start = self._start_task
        if start is not None and not start.done() and start is not asyncio.current_task():
            if first and not self._stopping:
                start.cancel()  # its clean-up stops what it launched
            await asyncio.wait([start])
            return
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop_running())
        await asyncio.shield(self._stop_task)

    async def _stop_running(self) -> None:
        if self._stopping:  # ending already (the controller exited): wait for that
            while not self._ended.is_set():
                await asyncio.sleep(0.05)
            return
        self._commit(state="stopping")
        await self._shutdown_processes("stopped")

    async def _cancel_others(self) -> None:
        """Cancel supervision, request watching and engine operations (except the caller) and wait for them."""
        current = asyncio.current_task()
        tasks = [t for t in (self._supervisor, self._watcher, *self._ops)
                 if t is not None and t is not current and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _shutdown_processes(self, final: str, error: Optional[str] = None) -> None:
        """End every process of the hub this object knows; record ``final`` state; stopped hubs lose their file."""
        self._stopping = True
        await self._cancel_others()
        if self._client is not None:
            client, self._client = self._client, None
            client.close()  # no executor here: stopping also runs at interpreter exit
        await self._stop_sets(self._sets)
        foreign = [e for e in self._foreign_engines() if e.get("pid")]
        if foreign:
            await state.terminate_proven_async(foreign, self.stop_timeout)
        if self._controller is not None:
            await processes.terminate(self._controller, self.stop_timeout)
        self._remove_connection_files()
        self._stopped = True
        atexit.unregister(self._atexit)
        if final == "stopped":
            state.remove_state(self.cluster_id)
        else:
            self._commit(state=final, error=error)
        self._ended.set()

    def _remove_connection_files(self) -> None:
        for kind, path in zip(("client", "engine"), connection_file_paths(self.profile_dir, self.cluster_id)):
            try:
                if kind in self._conn_ids and os.stat(path).st_ino == self._conn_ids[kind]:
                    os.unlink(path)
            except OSError:
                pass
        try:  # the controller's saved CurveZMQ key pair (kept for its restarts with --restore)
            os.unlink(curve_key_path(self.profile_dir, self.cluster_id))
        except OSError:
            pass

    async def _stop_attached(self) -> None:
        """Stop engines this object added, then the hub through its owner (``lifecycle.stop``)."""
        if self._client is not None:
            client, self._client = self._client, None
            client.close()
        await self._stop_sets([s for s in self._sets if s.status in LIVE])
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: lifecycle.stop(self.cluster_id, wait=2 * self.stop_timeout + 10, kill_timeout=self.stop_timeout))
        self._stopped = True

    def _atexit(self) -> None:
        if self._stopped or not self._started or self._attached:
            return
        try:
            self._sync(self._stop(), timeout=3 * self.stop_timeout + 10)
        except Exception as e:
            self.log.error("hub %s: stopping at exit failed: %r", self.cluster_id, e)

    # ================================================================ context managers
    def __enter__(self):
        self.start_sync()
        self._cm_client = self.connect_client_sync()
        return self._cm_client

    def __exit__(self, *exc):
        client, self._cm_client = self._cm_client, None
        if client is not None:
            client.close()
        self.stop_sync()

    async def __aenter__(self):
        await self.start()
        self._cm_client = await self.connect_client()
        return self._cm_client

    async def __aexit__(self, *exc):
        client, self._cm_client = self._cm_client, None
        if client is not None:
            client.close()
        await self.stop()

    def __repr__(self) -> str:
        status = "attached" if self._attached else "running" if self._started and not self._stopped else \
            "stopped" if self._stopped else "new"
        return f"<Cluster {self.cluster_id} {status} profile={self.profile_dir!r} n={self.n} launcher={self.engine_launcher}>"


def find_hub(hub_id: str) -> Cluster:
    """A ``Cluster`` attached to the existing hub ``hub_id`` (HubNotFound if it has no state file)."""
    record = state.get_hub(hub_id)
    cluster = Cluster(cluster_id=hub_id, profile_dir=record.get("profile_dir") or "", n=record.get("n") or 0,
                      engine_launcher=record.get("launcher") or "local", launcher_options=record.get("launcher_options") or {},
                      db=record.get("db") or "sqlitedb", restart_engines=bool(record.get("restart_engines")),
                      controller_ip=record.get("controller_ip") or "", stop_on_exit=bool(record.get("stop_on_exit")))
    cluster._attached = True
    cluster.record = record
    return cluster
