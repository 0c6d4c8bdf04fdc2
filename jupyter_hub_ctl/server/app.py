"""The Jupyter server extension: launches, finds, scales and stops hubs.

Hubs are never hosted in the server process: each is owned by a background daemon
(``jupyter_hub_ctl.cluster.background``), so hubs started here, from the CLI or from a
notebook all show up, and survive a server restart unless ``stop_hubs_on_exit`` is set.
"""

from __future__ import annotations

import asyncio
import json
import pathlib

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Dict, Float, Integer, List, Unicode
from traitlets.config import Config

from ..cluster.launchers.local import controller_config_args
from ..controller.db.dictdb import DictDB
from ..controller.db.sqlitedb import SQLiteDB
from ..controller.factory import HubFactory
from ..controller.heartmonitor import HeartMonitor
from ..controller.hub import EngineConnector, Hub
from ..controller.scheduler.broadcast import BroadcastScheduler
from ..controller.scheduler.task import TaskScheduler
from .handlers import handlers
from .monitor import HubMonitor

EVENT_SCHEMA = pathlib.Path(__file__).parent / "events" / "hub.yaml"
#: the schema's version, which also ends its id (labextension/src/types.ts has the same id)
EVENT_VERSION = "2"
EVENT_ID = f"https://events.jupyter-hub-ctl.dev/hubctl/hub/v{EVENT_VERSION}"

# controller classes whose settings in the server's config are handed to every new hub
CONTROLLER_CLASSES = (HubFactory, Hub, EngineConnector, HeartMonitor, TaskScheduler, BroadcastScheduler, SQLiteDB,
                      DictDB)


class HubCtlExtension(ExtensionApp):
    """Manage jupyter_hub_ctl hubs from a Jupyter server."""

    name = "jupyter_hub_ctl"
    description = "Launch and manage jupyter_hub_ctl hubs (controller + engines)."
    classes = list(CONTROLLER_CLASSES)

    default_launcher = Unicode("local", config=True, help="Launcher of new hubs' engines (see GET /hubctl/api/launchers).")
    default_n = Integer(2, config=True, help="Engines for a new hub when the request does not say.")
    max_engines = Integer(64, config=True, help="Most engines a request may ask for (start or scale).")
    profile = Unicode("default", config=True, help="Profile of new hubs (a name under the IPython dir).")
    db = Unicode("sqlitedb", config=True, help="Task-record store of new hubs: sqlitedb, dictdb or nodb.")
    controller_args = List(Unicode(), config=True, help="Extra controller arguments for new hubs.")
    engine_args = List(Unicode(), config=True, help="Extra engine arguments for new hubs.")
    restart_engines = Bool(True, config=True, help="Replace engines of new hubs when they die.")
    stop_hubs_on_exit = Bool(False, config=True,
                             help="Stop the hubs this server started when it stops (default: they keep running).")
    poll_interval = Float(2.0, config=True, help="Seconds between refreshes of hubs' state and queue counts "
                          "(engine registrations are noticed at once).")
    query_timeout = Float(3.0, config=True, help="Seconds a hub has to answer the server's regular queries "
                          "(engines, queues, health); a hub that does not is shown degraded. Hubs are asked "
                          "concurrently.")
    cluster_config = Dict(config=True, help="Extra Cluster trait values for new hubs, e.g. {'engine_timeout': 120}.")

    def initialize_settings(self):
        self.serverapp.event_logger.register_event_schema(EVENT_SCHEMA)
        self.monitor = HubMonitor(self._emit, self.poll_interval, self.query_timeout)
        self.started_here: set = set()

    def initialize_handlers(self):
        self.handlers.extend(handlers())

    async def _start_jupyter_server_extension(self, serverapp):
        self._ensure_monitor()

    def _ensure_monitor(self) -> None:
        if self.monitor.ready is None:  # also started by the first request, for hosts that skip start hooks
            self.monitor.start()

    async def ready(self) -> None:
        """Wait for the first refresh (only the first request after start ever waits)."""
        self._ensure_monitor()
        if not self.monitor.ready.is_set():
            await self.monitor.ready.wait()

    async def stop_extension(self):
        if self.stop_hubs_on_exit:
            await asyncio.gather(*(asyncio.to_thread(self.stop_hub, hub_id) for hub_id in self.started_here))
        await self.monitor.stop()

    def current_activity(self):
        """Hubs with queued or running tasks count as activity (idle culling leaves them alone)."""
        return self.monitor.busy() if hasattr(self, "monitor") else False

    # ------------------------------------------------------------------ events
    def _emit(self, data: dict) -> None:
        try:
            self.serverapp.event_logger.emit(schema_id=EVENT_ID, data=data)
        except Exception as e:
            self.log.warning("hubctl: emitting an event failed: %s", e)

    # ------------------------------------------------------------------ hubs
    def _controller_args(self) -> list:
        """Settings of the controller classes from the server's config, as controller arguments."""
        return list(self.controller_args) + controller_config_args(self.config,
                                                                   [cls.__name__ for cls in CONTROLLER_CLASSES])

    def hub_config(self, name, n, profile, launcher, options) -> Config:
        c = Config()
        cl = c.Cluster
        if name:
            cl.cluster_id = name
        cl.n = n
        cl.profile = profile
        cl.engine_launcher = launcher
        cl.launcher_options = options
        cl.db = self.db
        cl.restart_engines = self.restart_engines
        cl.stop_on_exit = True
        cl.controller_args = self._controller_args()
        if self.engine_args:
            cl.engine_args = list(self.engine_args)
        for k, v in self.cluster_config.items():
            cl[k] = v
        return c

    def start_hub(self, config: Config) -> dict:
        from ..cluster import background

        started = background.start(config, owner_role="server")
        self.started_here.add(started["id"])
        return started

    def stop_hub(self, hub_id: str) -> bool:
        """Stop a hub and return once its processes are gone; False if it has no state file."""
        from ..cluster import background

        return background.stop(hub_id)

    def panel_version(self):
        """Version of the installed JupyterLab panel (from the Jupyter data path), or None."""
        from jupyter_core.paths import jupyter_path

        candidates = [pathlib.Path(p) / "package.json" for p in
                      jupyter_path("labextensions", "jupyter-hub-ctl-labextension")]
        candidates.append(pathlib.Path(__file__).parent.parent / "labextension" / "package.json")
        for path in candidates:
            try:
                with open(path) as f:
                    return json.load(f).get("version")
            except (OSError, ValueError):
                continue
        return None

