"""REST handlers under ``<base_url>/hubctl/api/``.

Every method is authenticated and authorized on the ``hubctl`` resource; starting,
scaling and stopping hubs need the ``execute`` action.  Handlers read the monitor's
cache; disk, subprocess and ZeroMQ work runs in threads.
"""

from __future__ import annotations

import asyncio
import json
import math
import time

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from ..cluster.state import connection_file
from ..controller.queries import MAX_STREAM_LIMIT
from ..wire.session import MessageError, unpack
from .models import (ENGINE_PAGE, ENGINE_PAGE_MAX, MIN_ENGINES, NO_QUEUES, BadRequest, check_n, check_name,
                     check_options, check_profile, engines_page, first_line, hub_model, iso, launcher_schema)

MAX_BODY = 64 * 1024

#: task changes one task-stream or dashboard reply carries unless ``?limit=`` says otherwise
DEFAULT_STREAM_LIMIT = 5000


class HubCtlHandler(ExtensionHandlerMixin, APIHandler):
    auth_resource = "hubctl"

    @property
    def ext(self):
        return self.extensionapp

    @property
    def monitor(self):
        return self.extensionapp.monitor

    def fail(self, status: int, message: str):
        raise web.HTTPError(status, message, reason=message[:100])

    def body(self) -> dict:
        raw = self.request.body or b""
        if len(raw) > MAX_BODY:
            self.fail(413, f"request body larger than {MAX_BODY} bytes")
        if not raw.strip():
            return {}
        try:  # the wire's JSON rules: nesting at most MAX_JSON_DEPTH deep, no NaN or Infinity
            data = unpack(raw)
        except MessageError as e:
            self.fail(400, f"request body is not valid JSON ({e.reason}: {e.detail[:80]})")
        if not isinstance(data, dict):
            self.fail(400, "request body must be a JSON object")
        return data

    def check_id(self, hub_id: str) -> None:
        try:
            check_name(hub_id)
        except BadRequest as e:
            self.fail(400, str(e))

    def hub_record(self, hub_id: str) -> dict:
        """The state record of a hub the monitor lists (after ``ext.ready()``); 404 otherwise."""
        self.check_id(hub_id)
        record = self.monitor.records.get(hub_id)
        if record is None or hub_id not in self.monitor.models:
            self.fail(404, f"no hub {hub_id!r}")
        return record

    def hub_client(self, hub_id: str):
        """The server's client of a listed hub; 409 when it has none (the hub does not run or answer)."""
        self.hub_record(hub_id)
        client = self.monitor.clients.get(hub_id)
        if client is None:
            self.fail(409, f"hub {hub_id!r} is not reachable")
        return client

    def stream_window(self) -> tuple:
        """``?since=`` (epoch seconds, finite; absent: the latest changes) and ``?limit=`` of a task-stream request."""
        try:
            since = self.get_argument("since", "")
            since = float(since) if since else None
            limit = int(self.get_argument("limit", str(DEFAULT_STREAM_LIMIT)))
        except ValueError:
            self.fail(400, "since must be a number (epoch seconds) and limit an integer")
        if (since is not None and not math.isfinite(since)) or not 1 <= limit <= MAX_STREAM_LIMIT:
            self.fail(400, f"since must be finite and limit 1-{MAX_STREAM_LIMIT}")
        return since, limit

    async def ask(self, client, query: str, *args):
        """``client.<query>(*args)`` on a worker thread, its reply awaited no longer than the monitor's queries:
        dashboards ask every second, and a hung hub must not hold a thread for the client's default timeout."""
        def bounded():
            with client.query_time_limit(self.monitor.query_timeout):
                return getattr(client, query)(*args)

        return await asyncio.to_thread(bounded)

    def write_json(self, data, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))


class HubsHandler(HubCtlHandler):
    @web.authenticated
    @authorized
    async def get(self):
        await self.ext.ready()
        self.write_json({"hubs": sorted(self.monitor.models.values(), key=lambda m: m.get("created") or "")})

    @web.authenticated
    @authorized("execute")
    async def post(self):
        from ..cluster import HubExists, launcher_class, launcher_names

        await self.ext.ready()
        body = self.body()
        unknown = set(body) - {"name", "launcher", "n", "options", "profile"}
        if unknown:
            self.fail(400, f"unknown field(s): {', '.join(sorted(unknown))}")
        try:
            name = check_name(body["name"], "name") if body.get("name") is not None else None
            n = check_n(body.get("n", self.ext.default_n), self.ext.max_engines)
            profile = check_profile(body.get("profile", self.ext.profile))
            launcher = body.get("launcher", self.ext.default_launcher)
            if launcher not in launcher_names():
                raise BadRequest(f"unknown launcher {launcher!r}; available: {', '.join(launcher_names())}")
            options = check_options(body.get("options"), launcher_class(launcher))
        except BadRequest as e:
            self.fail(400, str(e))
        if name is not None and name in self.monitor.models and \
                self.monitor.models[name]["state"] in ("starting", "running", "stopping"):
            self.fail(409, f"a hub named {name!r} is already {self.monitor.models[name]['state']}")
        config = self.ext.hub_config(name=name, n=n, profile=profile, launcher=launcher, options=options)
        try:
            started = await asyncio.to_thread(self.ext.start_hub, config)
        except HubExists as e:
            self.fail(409, str(e).split(" (")[0])
        except Exception as e:
            self.log.error("hubctl: starting a hub failed: %s", e)
            self.fail(400, f"cannot start the hub: {first_line(e)[:200]}")
        model = self.monitor.started(started["record"] or {"id": started["id"], "state": "starting"})
        self.write_json(model, 202)


class HubHandler(HubCtlHandler):
    @web.authenticated
    @authorized
    async def get(self, hub_id):
        await self.ext.ready()
        self.hub_record(hub_id)
        self.write_json(self.monitor.models[hub_id])

    @web.authenticated
    @authorized("execute")
    async def patch(self, hub_id):
        """Scale: 202 once the hub's owner has the request (a starting hub scales once it runs);
        409 while the hub stops or after it ended."""
        from ..cluster import HubNotFound, HubNotRunning, background

        await self.ext.ready()
        body = self.body()
        self.check_id(hub_id)
        if set(body) - {"n"} or "n" not in body:
            self.fail(400, "PATCH takes {\"n\": <number of engines>}")
        try:
            n = check_n(body["n"], self.ext.max_engines)
        except BadRequest as e:
            self.fail(400, str(e))
        try:
            record = await asyncio.to_thread(background.request_scale, hub_id, n)
        except HubNotFound:
            self.fail(404, f"no hub {hub_id!r}")
        except HubNotRunning as e:
            self.fail(409, str(e))
        self.monitor.wake()
        self.write_json(dict(self.monitor.models.get(hub_id) or hub_model(record), n=n), 202)

    @web.authenticated
    @authorized("execute")
    async def delete(self, hub_id):
        """Stop, whatever the hub is doing (a start is cancelled): 204 once its processes are gone.
        ``?keep=true``: the hub stays listed as stopped until dismissed. An ended hub kept listed
        is dismissed (forgotten)."""
        await self.ext.ready()
        self.check_id(hub_id)
        if self.monitor.dismiss(hub_id):
            self.set_status(204)
            self.finish()
            return
        keep = self.get_argument("keep", "false").lower() in ("1", "true", "yes")
        self.monitor.stopping(hub_id)
        existed = await asyncio.to_thread(self.ext.stop_hub, hub_id)
        self.monitor.removed(hub_id, keep=keep)
        if not existed:
            self.fail(404, f"no hub {hub_id!r}")
        self.set_status(204)
        self.finish()


class EnginesHandler(HubCtlHandler):
    """A page of a hub's engines, ``?offset=&limit=`` (default 0 and 200, at most 1000), in id order,
    with ``total`` and a ``summary`` of all of them (states, hosts, queue totals)."""

    @web.authenticated
    @authorized
    async def get(self, hub_id):
        await self.ext.ready()
        self.hub_record(hub_id)
        try:
            limit = int(self.get_argument("limit", str(ENGINE_PAGE)))
            offset = int(self.get_argument("offset", "0"))
        except ValueError:
            self.fail(400, "limit and offset must be integers")
        if not (1 <= limit <= ENGINE_PAGE_MAX and offset >= 0):
            self.fail(400, f"limit must be 1-{ENGINE_PAGE_MAX} and offset non-negative")
        self.write_json(dict(engines_page(self.monitor.engines.get(hub_id, []), offset, limit),
                             hosts=self.monitor.hosts.get(hub_id, {}), time=iso(time.time())))


class QueuesHandler(HubCtlHandler):
    @web.authenticated
    @authorized
    async def get(self, hub_id):
        await self.ext.ready()
        self.hub_record(hub_id)
        self.write_json(self.monitor.queues.get(hub_id) or NO_QUEUES)


class TasksHandler(HubCtlHandler):
    """Recent task records of a hub: ``?limit=&offset=&state=pending|completed|failed&engine=&label=``."""

    KEYS = ["msg_id", "submitted", "started", "completed", "engine_uuid", "queue", "label", "client_uuid"]

    @web.authenticated
    @authorized
    async def get(self, hub_id):
        await self.ext.ready()
        client = self.hub_client(hub_id)
        try:
            limit = int(self.get_argument("limit", "50"))
            offset = int(self.get_argument("offset", "0"))
        except ValueError:
            self.fail(400, "limit and offset must be integers")
        if not (1 <= limit <= 1000 and offset >= 0):
            self.fail(400, "limit must be 1-1000 and offset non-negative")
        query: dict = {}
        state = self.get_argument("state", "")
        if state == "pending":
            query["completed"] = None
        elif state in ("completed", "failed"):
            query["completed"] = {"$ne": None}
        elif state:
            self.fail(400, "state must be pending, completed or failed")
        label = self.get_argument("label", "")
        if label:
            query["label"] = label
        engine = self.get_argument("engine", "")
        if engine:
            uuids = {str(e["id"]): e["uuid"] for e in self.monitor.engines.get(hub_id, [])}
            if engine not in uuids:
                self.fail(400, f"no engine {engine!r} in this hub")
            query["engine_uuid"] = uuids[engine]
        keys = self.KEYS + (["result_content"] if state == "failed" else [])
        try:
            records = await asyncio.to_thread(client.db_query, query or {"msg_id": {"$ne": None}}, keys)
        except Exception as e:
            self.fail(409, f"hub {hub_id!r} could not answer: {first_line(e)[:200]}")
        if state == "failed":
            records = [r for r in records if (r.get("result_content") or {}).get("status") not in (None, "ok")]
        records.sort(key=lambda r: str(r.get("submitted") or ""), reverse=True)
        page = records[offset:offset + limit]
        for r in page:
            rc = r.pop("result_content", None)
            if rc is not None:
                r["error"] = f"{rc.get('ename')}: {rc.get('evalue')}"[:300]
        self.write_json({"tasks": page, "total": len(records), "offset": offset, "limit": limit})


class TaskStreamHandler(HubCtlHandler):
    """Tasks submitted, sent to an engine, seen running or finished since ``?since=`` (the ``now``
    of the previous answer; absent: the latest changes), at most ``?limit=`` (default 5000)."""

    @web.authenticated
    @authorized
    async def get(self, hub_id):
        await self.ext.ready()
        client = self.hub_client(hub_id)
        since, limit = self.stream_window()
        try:
            stream = await self.ask(client, "task_stream", since, limit)
        except Exception as e:
            self.fail(409, f"hub {hub_id!r} could not answer: {first_line(e)[:200]}")
        self.write_json(stream)


class ConnectionHandler(HubCtlHandler):
    @web.authenticated
    @authorized
    async def get(self, hub_id):
        await self.ext.ready()
        record = self.hub_record(hub_id)
        path = connection_file(record)
        self.write_json({
            "snippet": f"from jupyter_hub_ctl import Client\nrc = Client(hub_id={hub_id!r})\nrc.wait_for_engines(1)",
            "magic": f"%load_ext jupyter_hub_ctl\n%hub connect {hub_id}",
            "connection_file": path,
        })


class LaunchersHandler(HubCtlHandler):
    @web.authenticated
    @authorized
    async def get(self):
        from ..cluster import describe_launchers, launcher_class

        out = []
        for name, description in sorted(describe_launchers().items()):
            try:
                schema = launcher_schema(launcher_class(name))
            except Exception:
                continue
            out.append({"name": name, "description": description, "schema": schema})
        self.write_json({"launchers": out, "default": self.ext.default_launcher,
                         "engines": {"default": self.ext.default_n, "minimum": MIN_ENGINES,
                                     "maximum": self.ext.max_engines}})


class VersionHandler(HubCtlHandler):
    @web.authenticated
    @authorized
    async def get(self):
        import jupyter_server

        from .._version import __version__

        self.write_json({"server": jupyter_server.__version__, "controller": __version__,
                         "panel": self.ext.panel_version()})


def handlers() -> list:
    from .dashboard import ClientsHandler, DashboardHandler

    hub = r"(?P<hub_id>[^/]+)"
    return [
        (r"/hubctl/api/hubs/?", HubsHandler),
        (rf"/hubctl/api/hubs/{hub}/?", HubHandler),
        (rf"/hubctl/api/hubs/{hub}/engines/?", EnginesHandler),
        (rf"/hubctl/api/hubs/{hub}/queues/?", QueuesHandler),
        (rf"/hubctl/api/hubs/{hub}/tasks/?", TasksHandler),
        (rf"/hubctl/api/hubs/{hub}/tasks/stream/?", TaskStreamHandler),
        (rf"/hubctl/api/hubs/{hub}/connection/?", ConnectionHandler),
        (rf"/hubctl/api/hubs/{hub}/dashboard/?", DashboardHandler),
        (rf"/hubctl/api/hubs/{hub}/clients/?", ClientsHandler),
        (r"/hubctl/api/launchers/?", LaunchersHandler),
        (r"/hubctl/api/version/?", VersionHandler),
    ]
