"""Hubs as this kernel sees them: ``HubConnection`` (the ``hub`` object of ``%hub start``) and the
registry of connections the magics share.

Hubs started from a kernel are owned by a background daemon (``cluster.background``), so they
outlive kernel restarts and show up in ``jupyter hubctl list`` and the lab panel; ``%hub
connect ID`` finds them again.  A hub started with ``stop_on_exit`` is stopped when the kernel
process exits.
"""

from __future__ import annotations

import atexit
import os
import time
from typing import Optional

from .render import Table, age


class HubStartFailed(Exception):
    """A hub started from the kernel did not come up; the message says why."""

    def _render_traceback_(self) -> list:  # IPython shows the reason, not this package's stack
        return [f"HubStartFailed: {self}"]


class HubConnection:
    """This kernel's connection to one hub: the client, and the hub's widgets and lifetime.

    ``hub.client`` is a ``jupyter_hub_ctl.Client``; ``hub[:]`` / ``hub[0]`` are its direct views.
    """

    def __init__(self, hub_id: str, client, started_here: bool = False, stop_on_exit: bool = False,
                 daemon=None):
        self.id = hub_id
        self.client = client
        self.started_here = started_here
        self.stop_on_exit = stop_on_exit
        self._daemon = daemon  # the Popen of a daemon this kernel spawned (reaped on stop)
        self._views: list = []
        self.stopped = False

    # ------------------------------------------------------------------ the hub
    @property
    def record(self) -> Optional[dict]:
        """The hub's annotated state record (None once it has none)."""
        from ..cluster import get_hub
        from ..cluster.errors import HubNotFound

        try:
            return get_hub(self.id)
        except HubNotFound:
            return None

    @property
    def state(self) -> str:
        record = self.record
        return "stopped" if record is None else record.get("status") or "unknown"

    @property
    def ids(self) -> list:
        return self.client.ids

    def __getitem__(self, key):
        return self.client[key]

    def load_balanced_view(self, targets=None, **flags):
        return self.client.load_balanced_view(targets, **flags)

    # ------------------------------------------------------------------ widgets
    def _keep(self, view):
        self._views = [v for v in self._views if not v._closed and not v.ended]
        self._views.append(view)
        return view

    def status(self, live: bool = True, **traits):
        """A ``HubStatus`` widget of this hub (polled once now, then live from the kernel's updater thread)."""
        from .widgets import HubStatus

        view = HubStatus(self.client, hub_id=self.id, **traits)
        view.refresh()
        if live:
            view.start()
        return self._keep(view)

    def results(self, live: bool = True, **traits):
        """A ``ResultsBrowser`` over this hub's task records."""
        from .widgets import ResultsBrowser

        view = ResultsBrowser(self.client, hub_id=self.id, **traits)
        view.refresh()
        if live:
            view.start()
        return self._keep(view)

    def progress(self, ar, description: Optional[str] = None):
        """A ``TaskProgress`` bar following an AsyncResult (done/total, rate, ETA, failures; live)."""
        from .widgets import TaskProgress

        view = TaskProgress(ar, description=description or getattr(ar, "fname", "") or "tasks")
        view.refresh()
        view.start()
        return self._keep(view)

    def dashboard(self):
        """The hub's live dashboard (task stream, throughput, engines, progress) as a notebook output.

        JupyterLab 4 and Notebook 7 draw it from the Jupyter server, live while cells run;
        other frontends show a snapshot.
        """
        from .dashboard import Dashboard

        return Dashboard(self.id, self.client)

    def wait_for_engines(self, n: int, timeout: Optional[float] = None) -> list:
        from .widgets import wait_for_engines

        return wait_for_engines(self.client, n, timeout)

    def engines(self) -> Table:
        return engines_table(self)

    # ------------------------------------------------------------------ lifetime
    def _end_views(self, reason: str, state: str) -> None:
        for view in self._views:
            view.end(reason, state)
        self._views = []

    def close(self) -> None:
        """Disconnect this kernel (the hub keeps running)."""
        self._end_views(f"disconnected from hub {self.id}", "disconnected")
        if self.client is not None:
            self.client.close()

    def stop(self) -> None:
        """Stop the hub (engines and controller) and disconnect."""
        from ..cluster import find_hub
        from ..cluster.errors import HubNotFound

        self._end_views(f"hub {self.id} stopped", "stopped")
        self.close()
        try:
            find_hub(self.id).stop_sync()
        except HubNotFound:
            pass
        if self._daemon is not None:
            try:
                self._daemon.wait(10)
            except Exception:
                pass
        self.stopped = True

    def __repr__(self) -> str:
        if self.stopped:
            return f"<HubConnection {self.id}: stopped>"
        return f"<HubConnection {self.id}: {self.state}, {len(self.client.ids)} engines>"


class KernelHubs:
    """The hubs this kernel is connected to; ``current`` is the one ``%px`` uses."""

    def __init__(self):
        self.connections: dict = {}
        self.current: Optional[HubConnection] = None
        self._atexit = False

    def add(self, conn: HubConnection) -> HubConnection:
        old = self.connections.get(conn.id)
        if old is not None and old is not conn:
            old.close()
        self.connections[conn.id] = conn
        self.current = conn
        if conn.stop_on_exit and not self._atexit:
            atexit.register(self.at_exit)
            self._atexit = True
        return conn

    def forget(self, hub_id: str) -> None:
        conn = self.connections.pop(hub_id, None)
        if conn is not None and self.current is conn:
            self.current = next(reversed(self.connections.values()), None) if self.connections else None

    def unregister_at_exit(self) -> None:
        """Forget the exit hook (the extension is being unloaded)."""
        if self._atexit:
            atexit.unregister(self.at_exit)
            self._atexit = False

    def at_exit(self) -> None:
        """Stop the hubs started with stop_on_exit; disconnect from the rest."""
        from ..cluster import background

        for conn in list(self.connections.values()):
            if conn.stop_on_exit and not conn.stopped:
                try:
                    background.request_stop(conn.id)  # its daemon stops it; the kernel need not wait
                except Exception:
                    pass
            try:
                conn.close()
            except Exception:
                pass


# ---------------------------------------------------------------------- starting
def connect(hub_id: str, timeout: float = 10.0) -> HubConnection:
    """A connection to the running hub ``hub_id`` (HubNotFound / HubNotRunning otherwise)."""
    from ..client.client import Client
    from ..cluster import find_hub

    info = find_hub(hub_id).client_connection_info()
    return HubConnection(hub_id, Client(info, timeout=timeout))


def _try_client(path: str):
    from ..client.client import Client

    try:
        return Client(path, timeout=5)
    except Exception:
        return None


def start(config, progress, timeout: float, stop_on_exit: bool = False) -> HubConnection:
    """Start a hub owned by a background daemon and wait until its engines are registered.

    ``progress`` (an ``EngineProgress``) is updated from this thread while waiting.  On
    failure, timeout or KeyboardInterrupt, the hub is stopped and HubStartFailed (or the
    KeyboardInterrupt) is raised.
    """
    from ..cluster import background, state
    from ..cluster.processes import log_tail

    started = background.start(config, owner_role="kernel")
    hub_id, daemon, log = started["id"], started["process"], started["log"]
    n = int(started["record"].get("n") or 0)
    client = None
    deadline = time.monotonic() + timeout
    progress.update(phase=f"hub {hub_id}: starting the controller")
    try:
        while True:
            record = state.read_state(hub_id)
            current = record.get("state") if record else None
            if client is None and current in ("starting", "running"):
                path = state.connection_file(record)
                if path and os.path.exists(path):
                    client = _try_client(path)
                    if client is not None:
                        progress.attach(client)
                        progress.update(phase=f"hub {hub_id}: waiting for engines")
            if client is not None:
                progress.update(registered=len(client.ids))
            if current == "running" and client is not None and len(client.ids) >= n:
                break
            if current == "failed" or record is None:
                error = (record or {}).get("error") or "the hub stopped while starting"
                raise HubStartFailed(f"hub {hub_id} failed to start: {error}")
            if daemon.poll() is not None and current != "running":
                raise HubStartFailed(f"hub {hub_id} failed to start: its daemon exited with code "
                                     f"{daemon.returncode}\n{log_tail(log, 15)}")
            if time.monotonic() > deadline:
                raise HubStartFailed(f"hub {hub_id} was not ready within {timeout:g}s (daemon log: {log}); "
                                     "it is being stopped")
            time.sleep(0.05)
    except BaseException as e:
        if client is not None:
            client.close()
        reason = "interrupted" if isinstance(e, KeyboardInterrupt) else str(e).splitlines()[0]
        progress.finish(reason)
        _stop_quietly(hub_id, daemon)
        raise
    progress.registered = len(client.ids)
    progress.finish("ok")
    return HubConnection(hub_id, client, started_here=True, stop_on_exit=stop_on_exit, daemon=daemon)


def _stop_quietly(hub_id: str, daemon) -> None:
    from ..cluster import find_hub, state

    record = state.read_state(hub_id)
    if record is not None and record.get("state") not in ("failed", "stopped"):
        try:
            find_hub(hub_id).stop_sync()
        except Exception:
            pass
    try:
        daemon.wait(30)
    except Exception:
        pass


def dry_run(config) -> dict:
    """What starting ``config`` would run, without running it: a job script or engine commands."""
    import shlex

    from ..cluster import Cluster
    from ..wire.connection import connection_file_paths

    cluster = Cluster(config=config)
    launcher = cluster.launcher
    n = cluster.n
    engine_file = connection_file_paths(cluster.profile_dir, cluster.cluster_id)[1]
    if hasattr(launcher, "render"):
        return {"kind": "script", "text": launcher.render(n, engine_file), "launcher": cluster.engine_launcher, "n": n}
    if hasattr(launcher, "hosts"):
        cmds = [launcher.command(launcher.host_for(slot)) for slot in range(n)]
    elif hasattr(launcher, "mpi_cmd"):
        cmds = [launcher.command(n)]
    else:
        cmds = [launcher.engine_command() for _ in range(n)]
    return {"kind": "commands", "text": "\n".join(shlex.join(c) for c in cmds), "commands": cmds,
            "launcher": cluster.engine_launcher, "n": n}


# ---------------------------------------------------------------------- tables
def hubs_table(current: Optional[str] = None) -> Table:
    from ..cluster import list_hubs

    hubs = list_hubs()
    rows = []
    for h in hubs:
        engines = sum(e.get("count", 1) for e in h.get("engines") or () if e.get("status") in ("starting", "running"))
        rows.append(["*" if h["id"] == current else "", h["id"], h.get("status", "?"), engines,
                     h.get("launcher", "-"), (h.get("owner") or {}).get("role", "-"), (h.get("created") or "")[:19]])
    return Table("hubs (* = connected in this kernel)", ["", "id", "status", "engines", "launcher", "owner", "created"],
                 rows, empty="no hubs", data=hubs)


def engines_table(conn: HubConnection) -> Table:
    from .render import health_summary

    now = time.time()
    info = conn.client.engines_info()
    try:
        health = health_summary(conn.client.health())
    except Exception:  # a hub that cannot say: the table without a banner
        health = {}
    rows = [[e["id"], e.get("host", ""), e.get("pid", ""), e.get("queue", 0), e.get("tasks", 0),
             e.get("completed", 0), age(None if e.get("last_heartbeat") is None else now - e["last_heartbeat"])]
            for e in info]
    return Table(f"engines of hub {conn.id}", ["id", "host", "pid", "queue", "tasks", "completed", "heartbeat"],
                 rows, empty="no engines registered", data=info, health=health)
