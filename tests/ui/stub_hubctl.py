"""A stand-in for the hubctl server extension's REST API and events, for panel tests.

It speaks the contract the panel is written against (``/hubctl/api/...`` and the hub events
on jupyter_server's event bus) with fake hubs whose "engines" come and go on timers, so the
panel's create / scale / stop / events / snippet paths run in a real browser without any
controller process. Loaded by a test lab as the server extension module ``stub_hubctl``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timezone

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

SCHEMA_ID = "https://events.jupyter-hub-ctl.dev/hubctl/hub/v1"
SCHEMA = {
    "$id": SCHEMA_ID,
    "version": "1",
    "title": "hubctl hub changes (test stub)",
    "personal-data": False,
    "description": "State, engine and queue changes of hubs.",
    "type": "object",
    "required": ["action", "hub_id"],
    "properties": {
        "action": {"enum": ["state", "engines", "queues", "removed"]},
        "hub_id": {"type": "string"},
        "hub": {"type": "object"},
        "engines": {"type": "array"},
        "queues": {"type": "object"},
    },
}
LAUNCHERS = [
    {
        "name": "local",
        "description": "Engines as processes on this machine (stub).",
        "schema": {
            "type": "object",
            "properties": {
                "log_level": {"type": "string", "enum": ["INFO", "DEBUG"], "default": "INFO"},
                "engine_timeout": {"type": "integer", "minimum": 1, "default": 30,
                                   "title": "Engine timeout (s)"},
            },
        },
    },
    {
        "name": "ssh",
        "description": "Engines on other hosts over SSH (stub).",
        "schema": {
            "type": "object",
            "required": ["hosts"],
            "properties": {"hosts": {"type": "array", "items": {"type": "string"}}},
        },
    },
]
MAX_ENGINES = 16
STEP = 0.2  # seconds between two simulated changes


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


class StubHubs:
    """Fake hubs: state changes and engine (un)registrations, each reported as an event."""

    def __init__(self, serverapp):
        self.serverapp = serverapp
        self.hubs: dict[str, dict] = {}
        self.engines: dict[str, list[dict]] = {}
        self.options: dict[str, dict] = {}
        self.next_engine: dict[str, int] = {}
        self.tasks: set[asyncio.Task] = set()

    def emit(self, action, hub_id, **data):
        self.serverapp.event_logger.emit(
            schema_id=SCHEMA_ID, data={"action": action, "hub_id": hub_id, **data}
        )

    def queues(self, hub_id):
        engines = self.engines.get(hub_id, [])
        counts = {str(e["id"]): {"queue": 0, "tasks": 0, "completed": e["completed"]} for e in engines}
        done = sum(e["completed"] for e in engines)
        return {"engines": counts, "unassigned": 0, "totals": {"queue": 0, "tasks": 0, "completed": done}}

    def engine_list(self, hub_id):
        for engine in self.engines.get(hub_id, []):
            engine["last_heartbeat"] = now()
        return self.engines.get(hub_id, [])

    def set_state(self, hub_id, state, **changes):
        hub = self.hubs[hub_id]
        hub.update(state=state, updated=now(), **changes)
        self.emit("state", hub_id, hub=hub)

    def spawn(self, coro):
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def create(self, name, launcher, n, options):
        hub_id = "stub-" + uuid.uuid4().hex[:8]
        stamp = now()
        self.hubs[hub_id] = {
            "id": hub_id, "name": name or hub_id, "state": "starting", "error": None,
            "engines": 0, "n": n, "launcher": launcher, "profile": "default",
            "created": stamp, "updated": stamp,
        }
        self.engines[hub_id] = []
        self.options[hub_id] = options
        self.next_engine[hub_id] = 0
        self.spawn(self._start(hub_id))
        return self.hubs[hub_id]

    async def _start(self, hub_id):
        await asyncio.sleep(STEP)
        self.set_state(hub_id, "running")
        await self._converge(hub_id)

    async def _converge(self, hub_id):
        """Register or unregister engines one at a time until there are ``n``."""
        while hub_id in self.hubs and self.hubs[hub_id]["state"] == "running":
            hub, engines = self.hubs[hub_id], self.engines[hub_id]
            if len(engines) == hub["n"]:
                return
            await asyncio.sleep(STEP)
            if len(engines) < hub["n"]:
                engine_id = self.next_engine[hub_id]
                self.next_engine[hub_id] += 1
                engines.append({
                    "id": engine_id, "uuid": uuid.uuid4().hex, "host": "localhost",
                    "pid": 40000 + engine_id, "state": "registered", "queue": 0, "tasks": 0,
                    "completed": engine_id, "last_heartbeat": now(),
                })
            else:
                engines.pop()
            self.emit("engines", hub_id, engines=engines)
            self.emit("queues", hub_id, queues=self.queues(hub_id))
            self.set_state(hub_id, "running", engines=len(engines))

    def scale(self, hub_id, n):
        self.hubs[hub_id]["n"] = n
        self.hubs[hub_id]["updated"] = now()
        self.spawn(self._converge(hub_id))
        return self.hubs[hub_id]

    def stop(self, hub_id):
        self.set_state(hub_id, "stopping")
        self.spawn(self._stop(hub_id))

    async def _stop(self, hub_id):
        await asyncio.sleep(STEP)
        self.engines[hub_id] = []
        self.emit("engines", hub_id, engines=[])
        self.set_state(hub_id, "stopped", engines=0)
        await asyncio.sleep(STEP)
        self.hubs.pop(hub_id, None)
        self.emit("removed", hub_id)


class StubHandler(APIHandler):
    @property
    def stub(self) -> StubHubs:
        return self.settings["hubctl_stub"]

    def hub_or_404(self, hub_id):
        if hub_id not in self.stub.hubs:
            raise web.HTTPError(404, f"no hub {hub_id!r}")
        return self.stub.hubs[hub_id]

    def body(self):
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "body is not JSON") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "body is not an object")
        return data

    @staticmethod
    def count(value):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ENGINES:
            raise web.HTTPError(400, f"n must be an integer from 1 to {MAX_ENGINES}")
        return value


class HubsHandler(StubHandler):
    @web.authenticated
    def get(self):
        self.finish({"hubs": list(self.stub.hubs.values())})

    @web.authenticated
    def post(self):
        data = self.body()
        launcher = data.get("launcher", "local")
        if launcher not in {entry["name"] for entry in LAUNCHERS}:
            raise web.HTTPError(400, f"unknown launcher {launcher!r}")
        n = self.count(data.get("n", 2))
        hub = self.stub.create(data.get("name"), launcher, n, data.get("options") or {})
        self.set_status(202)
        self.finish(hub)


class HubHandler(StubHandler):
    @web.authenticated
    def get(self, hub_id):
        self.finish(self.hub_or_404(hub_id))

    @web.authenticated
    def patch(self, hub_id):
        self.hub_or_404(hub_id)
        n = self.count(self.body().get("n"))
        self.set_status(202)
        self.finish(self.stub.scale(hub_id, n))

    @web.authenticated
    def delete(self, hub_id):
        self.hub_or_404(hub_id)
        self.stub.stop(hub_id)
        self.set_status(204)
        self.finish()


class EnginesHandler(StubHandler):
    @web.authenticated
    def get(self, hub_id):
        self.hub_or_404(hub_id)
        self.finish({"engines": self.stub.engine_list(hub_id)})


class QueuesHandler(StubHandler):
    @web.authenticated
    def get(self, hub_id):
        self.hub_or_404(hub_id)
        self.finish(self.stub.queues(hub_id))


class ConnectionHandler(StubHandler):
    @web.authenticated
    def get(self, hub_id):
        hub = self.hub_or_404(hub_id)
        snippet = f"hub_id = {hub_id!r}\nprint('connected to', hub_id, 'with', {hub['engines']}, 'engines')"
        self.finish({"snippet": snippet, "connection_file": f"/tmp/{hub_id}-client.json"})


class LaunchersHandler(StubHandler):
    @web.authenticated
    def get(self):
        self.finish({"launchers": LAUNCHERS})


class OptionsHandler(StubHandler):
    """Not part of the contract: lets a test see the options a hub was created with."""

    @web.authenticated
    def get(self, hub_id):
        self.hub_or_404(hub_id)
        self.finish({"options": self.stub.options[hub_id]})


class VersionHandler(StubHandler):
    @web.authenticated
    def get(self):
        self.finish({"server": "stub", "controller": "stub", "panel": "stub"})


def _jupyter_server_extension_points():
    return [{"module": "stub_hubctl"}]


def _load_jupyter_server_extension(serverapp):
    serverapp.event_logger.register_event_schema(SCHEMA)
    web_app = serverapp.web_app
    web_app.settings["hubctl_stub"] = StubHubs(serverapp)
    base = url_path_join(web_app.settings["base_url"], "hubctl", "api")
    hub = r"/hubs/(?P<hub_id>[\w-]+)"
    routes = [
        ("/hubs", HubsHandler),
        (hub, HubHandler),
        (hub + "/engines", EnginesHandler),
        (hub + "/queues", QueuesHandler),
        (hub + "/connection", ConnectionHandler),
        (hub + "/stub-options", OptionsHandler),
        ("/launchers", LaunchersHandler),
        ("/version", VersionHandler),
    ]
    web_app.add_handlers(".*$", [(base + path, handler) for path, handler in routes])
