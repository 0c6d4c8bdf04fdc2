"""Keeps the server's view of every hub current and announces changes as events.

State files are read, and hubs queried (engines, queue counts, health), off the event loop
(``asyncio.to_thread``); request handlers only read the cache this keeps.  A hub's engine
(un)registrations wake the monitor at once through its client's notification callback.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable, Dict, Optional

from .models import engine_model, engines_page, first_page_counts, health_model, hub_model, queues_model

log = logging.getLogger("jupyter_hub_ctl.server")


class HubMonitor:
    def __init__(self, emit: Callable[[dict], None], interval: float = 2.0):
        self.emit = emit
        self.interval = interval
        self.records: Dict[str, dict] = {}
        self.models: Dict[str, dict] = {}
        self.engines: Dict[str, list] = {}
        self.queues: Dict[str, dict] = {}
        self.health: Dict[str, Optional[dict]] = {}  # hub id -> health_model (None: the hub did not say)
        self.clients: Dict[str, object] = {}
        self._unsubscribe: Dict[str, Callable[[], None]] = {}
        self._health_failures: Dict[str, str] = {}
        self._announced_health: Dict[str, Optional[dict]] = {}  # the health the last health event told
        self._client_failures: Dict[str, str] = {}
        self._task: Optional[asyncio.Task] = None
        self._wake: Optional[asyncio.Event] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self.ready: Optional[asyncio.Event] = None

    # ------------------------------------------------------------------ lifetime
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.ready = asyncio.Event()
        self._task = self._loop.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for hub_id in list(self._unsubscribe):
            self._unsubscribe.pop(hub_id)()
        clients, self.clients = self.clients, {}
        for c in clients.values():
            await asyncio.to_thread(c.close)

    def wake(self) -> None:
        """Refresh soon (after a request changed something, or an engine event)."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as e:  # the monitor must outlive any one bad refresh
                log.error("hubctl: refreshing hubs failed: %r", e)
            self.ready.set()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except asyncio.TimeoutError:
                pass

    # ------------------------------------------------------------------ refresh
    async def refresh(self) -> None:
        from ..cluster import list_hubs

        records = await asyncio.to_thread(list_hubs)
        seen = set()
        for record in records:
            hub_id = record.get("id")
            if not hub_id:
                continue
            seen.add(hub_id)
            self.records[hub_id] = record
            if record.get("alive") and record.get("state") == "running":
                await self._poll_hub(hub_id, record)
            else:
                self._drop_client(hub_id)
                self.engines.pop(hub_id, None)
                self.queues.pop(hub_id, None)
                self.health.pop(hub_id, None)
            model = self._model(hub_id, record)
            old = self.models.get(hub_id)
            if self._changed(old, model):
                self.models[hub_id] = model
                if old is None or self._changed(dict(old, health=None), dict(model, health=None)):
                    self.emit({"action": "state", "hub_id": hub_id, "hub": model})
            self._announce_health(hub_id)
        for hub_id in list(self.models):
            if hub_id not in seen:
                self.models.pop(hub_id)
                self.records.pop(hub_id, None)
                self.engines.pop(hub_id, None)
                self.queues.pop(hub_id, None)
                self.health.pop(hub_id, None)
                self._announced_health.pop(hub_id, None)
                self._drop_client(hub_id)
                self.emit({"action": "removed", "hub_id": hub_id})

    @staticmethod
    def _changed(old: Optional[dict], new: dict) -> bool:
        if old is None:
            return True
        return any(old.get(k) != new.get(k) for k in new if k != "updated")

    def _model(self, hub_id: str, record: dict) -> dict:
        return hub_model(record, len(self.engines.get(hub_id, ())), self.health.get(hub_id))

    async def _poll_hub(self, hub_id: str, record: dict) -> None:
        client = self.clients.get(hub_id)
        if client is None:
            client = await asyncio.to_thread(self._connect, hub_id, record)
            if client is None:
                return
        try:
            engines, status = await asyncio.to_thread(lambda: (client.engines_info(), client.queue_status()))
        except Exception as e:
            log.warning("hubctl: hub %s did not answer: %s", hub_id, e)
            self._drop_client(hub_id)
            return
        self.health[hub_id] = await asyncio.to_thread(self._health, hub_id, client)
        engines = [engine_model(e) for e in engines]
        queues = queues_model(status)
        if [(e["id"], e["uuid"]) for e in engines] != [(e["id"], e["uuid"]) for e in self.engines.get(hub_id, [])]:
            self.engines[hub_id] = engines
            model = self._model(hub_id, record)
            self.models[hub_id] = model
            # a page, not thousands of engines per event; the summary covers them all
            self.emit({"action": "engines", "hub_id": hub_id, "hub": model, **engines_page(engines)})
        else:
            self.engines[hub_id] = engines
        if queues != self.queues.get(hub_id):
            self.queues[hub_id] = queues
            self.emit({"action": "queues", "hub_id": hub_id, "queues": first_page_counts(queues, engines)})

    def _health(self, hub_id: str, client) -> Optional[dict]:
        """The hub's health (worker thread); None if it cannot say (logged once per reason)."""
        try:
            health = health_model(client.health())
        except Exception as e:  # e.g. a controller without health queries: the hub is not dropped for that
            reason = f"{type(e).__name__}: {e}"
            if self._health_failures.get(hub_id) != reason:
                log.warning("hubctl: hub %s did not report its health: %s", hub_id, reason)
            self._health_failures[hub_id] = reason
            return None
        self._health_failures.pop(hub_id, None)
        return health

    def _announce_health(self, hub_id: str) -> None:
        """A ``health`` event when what the hub says of its health (state or reasons) changed."""
        model = self.models.get(hub_id) or {}
        health = model.get("health")
        if not self._health_changed(self._announced_health.get(hub_id), health):
            return
        self._announced_health[hub_id] = health
        if health is not None:
            self.emit({"action": "health", "hub_id": hub_id, "hub": model, "health": health})

    @staticmethod
    def _health_changed(old: Optional[dict], new: Optional[dict]) -> bool:
        """A change of state or reasons (None, unknown, counts as a state of its own)."""
        if old is None or new is None:
            return (old is None) != (new is None)
        return (old["state"], old["reasons"]) != (new["state"], new["reasons"])

    def _connect(self, hub_id: str, record: dict):
        from ..client.client import Client

        path = ((record.get("connection_files") or {}).get("client") or {}).get("path")
        if not path:
            return None
        try:
            client = Client(path, timeout=5)
        except Exception as e:
            reason = str(e)
            if self._client_failures.get(hub_id) != reason:
                log.warning("hubctl: cannot connect to hub %s: %s", hub_id, reason)
            self._client_failures[hub_id] = reason
            return None
        self._client_failures.pop(hub_id, None)
        self._unsubscribe[hub_id] = client.on_registration(lambda event: self.wake())
        self.clients[hub_id] = client
        return client

    def _drop_client(self, hub_id: str) -> None:
        client = self.clients.pop(hub_id, None)
        unsubscribe = self._unsubscribe.pop(hub_id, None)
        if unsubscribe is not None:  # a client still closing must not wake the monitor for a dropped hub
            unsubscribe()
        if client is not None:  # closing joins the client's IO thread: not on the event loop
            threading.Thread(target=client.close, name="hubctl-client-close", daemon=True).start()

    # ------------------------------------------------------------------ reading
    def busy(self) -> bool:
        """Whether any running hub has work queued or running (for idle culling)."""
        for q in self.queues.values():
            t = q.get("totals", {})
            if t.get("queue", 0) or t.get("tasks", 0) or q.get("unassigned", 0):
                return True
        return False
