"""Keeps the server's view of every hub current and announces changes as events.

State files are read, and hubs queried (engines, queue counts, health), off the event loop;
request handlers only read the cache this keeps.  A hub's engine (un)registrations wake the
monitor at once through its client's notification callback.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Optional

from ..cluster.state import connection_file
from .models import (engine_model, engines_event, first_page_counts, health_model, hosts_model, hub_model, iso,
                     queues_model)

log = logging.getLogger("jupyter_hub_ctl.server")

#: most ended hubs kept listed until dismissed (past it, the ones that ended first go)
MAX_ENDED = 50


class HubMonitor:
    """The server's cache of every hub: state files read each ``interval``, running hubs queried.

    Listing never waits for a hub: each running hub is queried in its own task (one at a
    time per hub) on a private thread pool, every query bounded by ``query_timeout``, so a
    dead or hung hub delays no other and is shown as not answering.  A hub whose processes
    are gone is shown failed at the next listing; changes made through this server (a
    started or stopped hub) show at once.

    A hub whose state file goes away (stopped by another tool, or here with ``keep``) stays
    listed as ended, with what its last record said, until it is dismissed; so does a failed
    hub, whose state file stays.
    """

    def __init__(self, emit: Callable[[dict], None], interval: float = 2.0, query_timeout: float = 3.0,
                 workers: int = 8):
        self.emit = emit
        self.interval = interval
        self.query_timeout = query_timeout
        self.workers = workers
        self.records: Dict[str, dict] = {}
        self.models: Dict[str, dict] = {}
        self.engines: Dict[str, list] = {}
        self.hosts: Dict[str, dict] = {}  # hub id -> figures per host its engines report from
        self.queues: Dict[str, dict] = {}
        self.health: Dict[str, Optional[dict]] = {}  # hub id -> health_model (None: the hub did not say)
        self.clients: Dict[str, object] = {}
        self._unsubscribe: Dict[str, Callable[[], None]] = {}
        self._health_failures: Dict[str, str] = {}
        self._announced_health: Dict[str, Optional[dict]] = {}  # the health the last health event told
        self._silent_since: Dict[str, float] = {}  # hub id -> when it last stopped answering
        self._polls: Dict[str, asyncio.Task] = {}  # hub id -> its query in progress
        self._changed_here: Dict[str, float] = {}  # hub id -> monotonic time this server started/stopped it
        self.ended: Dict[str, float] = {}  # hub id -> when its state file was seen gone (listed until dismissed)
        self._pool: Optional[ThreadPoolExecutor] = None
        self._task: Optional[asyncio.Task] = None
        self._wake: Optional[asyncio.Event] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self.ready: Optional[asyncio.Event] = None

    # ------------------------------------------------------------------ lifetime
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.ready = asyncio.Event()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="hubctl-query")
        self._task = self._loop.create_task(self._run())

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._polls.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        for hub_id in list(self._unsubscribe):
            self._unsubscribe.pop(hub_id)()
        clients, self.clients = self.clients, {}
        for c in clients.values():
            await asyncio.to_thread(c.close)
        if self._pool is not None:
            self._pool.shutdown(wait=False)

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

    # ------------------------------------------------------------------ changes made here
    def started(self, record: dict) -> dict:
        """A hub this server just started: listed at once, in state ``starting``."""
        record = dict(record, alive=True)
        model = hub_model(record)
        model["state"] = "starting"
        hub_id = model["id"]
        self._changed_here[hub_id] = time.monotonic()
        self.ended.pop(hub_id, None)  # a new hub under the name of an ended one
        self.records[hub_id] = record
        self.models[hub_id] = model
        self.emit({"action": "state", "hub_id": hub_id, "hub": model})
        self.wake()
        return model

    def stopping(self, hub_id: str) -> None:
        """A stop was requested here: shown (and announced) as ``stopping`` while it runs."""
        model = self.models.get(hub_id)
        if model is not None and model["state"] != "stopping":
            self._changed_here[hub_id] = time.monotonic()
            self.models[hub_id] = model = dict(model, state="stopping", engines=0, health=None)
            self.emit({"action": "state", "hub_id": hub_id, "hub": model})

    def removed(self, hub_id: str, keep: bool = False) -> None:
        """A hub this server stopped: gone from the listing at once, or (``keep``) listed as ended."""
        self._changed_here[hub_id] = time.monotonic()
        if hub_id in self.models:
            self._end(hub_id) if keep else self._forget(hub_id)

    def dismiss(self, hub_id: str) -> bool:
        """Forget an ended hub kept listed; False if ``hub_id`` is not one."""
        if self.ended.pop(hub_id, None) is None:
            return False
        self._forget(hub_id)
        return True

    # ------------------------------------------------------------------ refresh
    async def refresh(self) -> None:
        """Read every state file, update the models, and start a query of each running hub."""
        from .. import cluster

        began = time.monotonic()
        records = await asyncio.to_thread(cluster.list_hubs)
        seen = set()
        for record in records:
            hub_id = record.get("id")
            if not hub_id:
                continue
            seen.add(hub_id)
            if self._changed_here.get(hub_id, 0.0) > began:
                continue  # started or stopped here after this listing was read
            self.ended.pop(hub_id, None)  # listed again: a new hub under an ended one's name
            self.records[hub_id] = record
            if record.get("alive") and record.get("state") == "running":
                self._query_soon(hub_id)
            else:
                self._drop_live(hub_id)
            self._publish(hub_id)
        for hub_id in list(self.models):
            if hub_id not in seen and hub_id not in self.ended and self._changed_here.get(hub_id, 0.0) <= began:
                self._end(hub_id)
        for hub_id, when in list(self._changed_here.items()):
            if when <= began:
                del self._changed_here[hub_id]

    def _publish(self, hub_id: str) -> None:
        """Recompute the hub's model; announce a changed state, then a changed health."""
        record = self.records.get(hub_id)
        if record is None:
            return
        model = self._model(hub_id, record)
        old = self.models.get(hub_id)
        if self._changed(old, model):
            self.models[hub_id] = model
            if old is None or self._changed(dict(old, health=None), dict(model, health=None)):
                self.emit({"action": "state", "hub_id": hub_id, "hub": model})
        self._announce_health(hub_id)

    def _end(self, hub_id: str) -> None:
        """The hub's state file is gone: listed as ended (as its last record said) until dismissed."""
        record = self.records.get(hub_id) or {"id": hub_id}
        state = "failed" if record.get("state") == "failed" else "stopped"
        self._drop_live(hub_id)
        self.records[hub_id] = dict(record, state=state, status=state, alive=False, updated=iso(time.time()))
        self.ended[hub_id] = time.time()
        self._publish(hub_id)
        for old in sorted(self.ended, key=self.ended.get)[:-MAX_ENDED]:
            self.dismiss(old)

    def _forget(self, hub_id: str) -> None:
        self.models.pop(hub_id, None)
        self.records.pop(hub_id, None)
        self.ended.pop(hub_id, None)
        self._announced_health.pop(hub_id, None)
        self._drop_live(hub_id)
        self.emit({"action": "removed", "hub_id": hub_id})

    def _drop_live(self, hub_id: str) -> None:
        """Forget what a hub's queries told (it no longer runs)."""
        self._drop_client(hub_id)
        self.engines.pop(hub_id, None)
        self.hosts.pop(hub_id, None)
        self.queues.pop(hub_id, None)
        self.health.pop(hub_id, None)
        self._silent_since.pop(hub_id, None)

    @staticmethod
    def _changed(old: Optional[dict], new: dict) -> bool:
        if old is None:
            return True
        return any(old.get(k) != new.get(k) for k in new if k != "updated")

    def _model(self, hub_id: str, record: dict) -> dict:
        return hub_model(record, len(self.engines.get(hub_id, ())), self.health.get(hub_id))

    def _query_soon(self, hub_id: str) -> None:
        running = self._polls.get(hub_id)
        if running is None or running.done():
            self._polls[hub_id] = self._loop.create_task(self._poll_hub(hub_id))

    def _running(self, hub_id: str) -> bool:
        record = self.records.get(hub_id)
        return bool(record and record.get("alive") and record.get("state") == "running")

    async def _poll_hub(self, hub_id: str) -> None:
        try:
            engines, status, health = await self._loop.run_in_executor(
                self._pool, self._query, hub_id, self.records.get(hub_id))
        except Exception as e:
            self._silent(hub_id, e)
            return
        if not self._running(hub_id):  # it stopped (or went) while it was asked
            self._drop_live(hub_id)
            return
        self._silent_since.pop(hub_id, None)
        self.health[hub_id] = health
        self.hosts[hub_id] = hosts_model(engines)
        engines = [engine_model(e) for e in engines]
        queues = queues_model(status)
        before = self.engines.get(hub_id, [])
        changed = [(e["id"], e["uuid"]) for e in engines] != [(e["id"], e["uuid"]) for e in before]
        reported = [e["metrics"] for e in engines] != [e["metrics"] for e in before]  # new metrics
        self.engines[hub_id] = engines
        self._publish(hub_id)
        if changed or reported:
            # a page, not thousands of engines per event; the summary covers them all
            self.emit(engines_event(hub_id, self.models[hub_id], engines, self.hosts[hub_id]))
        if queues != self.queues.get(hub_id):
            self.queues[hub_id] = queues
            self.emit({"action": "queues", "hub_id": hub_id, "queues": first_page_counts(queues, engines)})

    def _query(self, hub_id: str, record: dict) -> tuple:
        """Engines, queue counts and health of a hub (worker thread; each reply bounded by ``query_timeout``)."""
        client = self.clients.get(hub_id) or self._connect(hub_id, record)
        with client.query_time_limit(self.query_timeout):
            return client.engines_info(), client.queue_status(), self._health(hub_id, client)

    def _silent(self, hub_id: str, error: Exception) -> None:
        """The hub did not answer: shown degraded with the reason until it answers again."""
        self._drop_client(hub_id)
        if not self._running(hub_id):
            return
        if hub_id not in self._silent_since:
            log.warning("hubctl: hub %s does not answer: %s", hub_id, error)
        since = self._silent_since.setdefault(hub_id, time.time())
        reason = f"the hub does not answer (no reply within {self.query_timeout:g} s)"
        self.health[hub_id] = health_model({"state": "degraded", "reasons": [reason], "degraded_since": since})
        self._publish(hub_id)

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

        path = connection_file(record)
        if not path:
            raise ConnectionError("its state file names no connection file")
        client = Client(path, timeout=self.query_timeout)
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
