"""REST for the hub dashboard and the panel's stop question.

``GET hubs/{id}/dashboard?since=T&limit=N``: everything one dashboard refresh shows, in one
reply: the hub model and its engines (with their latest metrics) from the monitor's cache, and
from the hub itself (two queries, at once) its queue counts and the tasks that changed since
``T`` (the ``stream.now`` of the previous reply; absent: the latest changes), so the counts
and the tasks of one reply agree.

``GET hubs/{id}/clients``: the processes connected to the hub as clients (``clients.py``).
"""

from __future__ import annotations

import asyncio
import os
import time

from jupyter_server.auth.decorator import authorized
from tornado import web

from .clients import connected, kernel_of, notification_endpoint
from .handlers import HubCtlHandler
from .models import NO_QUEUES, first_line, iso, queues_model


class DashboardHandler(HubCtlHandler):
    @web.authenticated
    @authorized
    async def get(self, hub_id):
        await self.ext.ready()
        self.hub_record(hub_id)
        since, limit = self.stream_window()
        stream, error = None, None
        queues = self.monitor.queues.get(hub_id) or NO_QUEUES
        client = self.monitor.clients.get(hub_id)
        if client is None:
            error = "the hub is not running" if self.monitor.models[hub_id]["state"] != "running" \
                else "the server is not connected to the hub yet"
        else:
            status, stream = await asyncio.gather(self.ask(client, "queue_status"),
                                                  self.ask(client, "task_stream", since, limit),
                                                  return_exceptions=True)
            if not isinstance(status, BaseException):
                queues = queues_model(status)
            if isinstance(stream, BaseException):  # e.g. ipcontroller, which has no task stream
                error = f"{type(stream).__name__}: {first_line(stream)[:200]}"
                stream = None
        self.write_json({
            "time": iso(time.time()),
            "hub": self.monitor.models[hub_id],
            "engines": self.monitor.engines.get(hub_id, []),
            "hosts": self.monitor.hosts.get(hub_id, {}),
            "queues": queues,
            "stream": stream,
            "stream_error": error,
        })


class ClientsHandler(HubCtlHandler):
    @web.authenticated
    @authorized
    async def get(self, hub_id):
        await self.ext.ready()
        record = self.hub_record(hub_id)
        endpoint = notification_endpoint(record)
        if endpoint is None:
            self.write_json({"count": None, "clients": []})
            return
        kernels = await self._kernel_pids()
        owner = record.get("owner") or {}
        # this server's monitor, and the daemon that runs the hub, are not clients anyone would lose
        exclude = {os.getpid()} | ({owner.get("pid")} if owner.get("role") == "daemon" else set())
        try:
            found = await asyncio.to_thread(connected, endpoint, exclude)
        except Exception as e:  # e.g. a platform where connections cannot be listed
            self.log.warning("hubctl: cannot list the clients of hub %s: %s", hub_id, e)
            self.write_json({"count": None, "clients": []})
            return
        sessions = await self._sessions()
        for client in found:
            kernel_id = await asyncio.to_thread(kernel_of, client["pid"], kernels)
            client["kernel"] = None if kernel_id is None else {
                "id": kernel_id, "name": sessions.get(kernel_id, {}).get("name", ""),
                "path": sessions.get(kernel_id, {}).get("path")}
        self.write_json({"count": len(found), "clients": found})

    async def _kernel_pids(self) -> dict:
        """pid -> kernel id of this server's local kernels."""
        manager = self.kernel_manager
        pids = {}
        for kernel_id in manager.list_kernel_ids():
            provisioner = getattr(manager.get_kernel(kernel_id), "provisioner", None)
            pid = getattr(provisioner, "pid", None)
            if isinstance(pid, int):
                pids[pid] = kernel_id
        return pids

    async def _sessions(self) -> dict:
        """kernel id -> {"name", "path"} of this server's sessions (notebooks, consoles)."""
        out = {}
        for session in await self.session_manager.list_sessions():
            kernel = session.get("kernel") or {}
            if kernel.get("id"):
                out[kernel["id"]] = {"name": kernel.get("name", ""), "path": session.get("path")}
        return out
