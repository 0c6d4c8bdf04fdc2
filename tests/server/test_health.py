"""A hub's health in the REST model and as events: a real hub whose task database fills up (SQLite
page limit, as a full disk) is shown degraded, with the reason, and announced once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest
from conftest import wait_api
from support.procs import FULL_DISK_PAGES, drive_until_degraded

from jupyter_hub_ctl.server.app import EVENT_ID


class EventReader:
    """The hub events of one /api/events/subscribe websocket, read with deadlines."""

    def __init__(self, ws):
        self.ws = ws
        self.seen: list = []

    async def until(self, cond, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no event for {what}; seen {[(d['action'], d['hub_id']) for d in self.seen]}")
            try:
                raw = await asyncio.wait_for(self.ws.read_message(), left)
            except asyncio.TimeoutError:
                continue
            if raw is None:
                raise ConnectionError("the event websocket closed")
            event = json.loads(raw)
            if event.get("schema_id") != EVENT_ID:
                continue
            self.seen.append(event)
            if cond(event):
                return event


class TestHealth:
    @pytest.fixture
    def jp_server_config(self, jp_server_config):
        cfg = dict(jp_server_config)
        cfg["SQLiteDB"] = {"max_page_count": FULL_DISK_PAGES}  # reaches every hub this server starts
        return cfg

    async def test_a_degraded_hub_shows_in_the_model_and_is_announced(self, api, jp_fetch, jp_ws_fetch):
        from jupyter_hub_ctl import Client

        ws = await jp_ws_fetch("api", "events", "subscribe")
        events = EventReader(ws)
        try:
            created = await api("POST", "hubs", body={"name": "sick", "n": 1})
            assert created.code == 202 and json.loads(created.body)["health"] is None  # not known before it runs
            hub = await wait_api(jp_fetch, ("hubctl", "api", "hubs", "sick"),
                                 lambda h: h["engines"] == 1 and h["health"] is not None, what="hub running")
            assert hub["health"] == {"state": "ok", "reasons": [], "degraded_since": None}

            conn = json.loads((await api("GET", "hubs", "sick", "connection")).body)
            client = await asyncio.to_thread(Client, conn["connection_file"], timeout=10)
            try:
                await asyncio.to_thread(drive_until_degraded, client)
            finally:
                await asyncio.to_thread(client.close)

            hub = await wait_api(jp_fetch, ("hubctl", "api", "hubs", "sick"),
                                 lambda h: (h["health"] or {}).get("state") == "degraded", what="health degraded")
            health = hub["health"]
            assert set(health) == {"state", "reasons", "degraded_since"}
            assert any("disk is full" in r for r in health["reasons"]), health
            assert health["degraded_since"] and hub["state"] == "running"  # degraded, still running
            listed = json.loads((await api("GET", "hubs")).body)["hubs"]
            assert [h["health"]["state"] for h in listed if h["id"] == "sick"] == ["degraded"]

            event = await events.until(lambda e: e["action"] == "health" and e["health"]["state"] == "degraded",
                                       30, "the hub turning degraded")
            assert event["hub_id"] == "sick" and event["health"] == health and event["hub"]["health"] == health

            assert (await api("DELETE", "hubs", "sick")).code == 204
            await events.until(lambda e: e["action"] == "removed" and e["hub_id"] == "sick", 60, "the hub's removal")
            # health events tell changes only: one "degraded" however often the hub was polled meanwhile
            assert sum(1 for e in events.seen if e["action"] == "health"
                       and e["health"]["state"] == "degraded") == 1
        finally:
            ws.close()



def test_event_schema_id_and_version_agree_everywhere():
    """The schema file, the id the server emits under and the id the lab panel listens for."""
    import pathlib

    import yaml

    from jupyter_hub_ctl.server.app import EVENT_SCHEMA, EVENT_VERSION

    schema = yaml.safe_load(EVENT_SCHEMA.read_text())
    assert schema["$id"] == EVENT_ID and str(schema["version"]) == EVENT_VERSION
    assert EVENT_ID.endswith(f"/v{EVENT_VERSION}")
    assert "health" in schema["properties"]["action"]["enum"]
    types_ts = pathlib.Path(__file__).parents[2] / "labextension" / "src" / "types.ts"
    assert f"'{EVENT_ID}'" in types_ts.read_text()


class TestStalled:
    @pytest.fixture
    def jp_server_config(self, jp_server_config):
        cfg = dict(jp_server_config)
        cfg["TaskScheduler"] = {"stall_timeout": 1.0}  # reaches every hub this server starts
        cfg["HeartMonitor"] = {"period": 250}  # a dead engine is noticed in a few seconds
        cfg["HubCtlExtension"] = dict(cfg["HubCtlExtension"], restart_engines=False)
        return cfg

    async def test_tasks_no_engine_can_take_show_in_the_model_until_an_engine_arrives(self, api, jp_fetch):
        import os
        import signal

        from jupyter_hub_ctl import Client

        assert (await api("POST", "hubs", body={"name": "stall", "n": 1})).code == 202
        hub = await wait_api(jp_fetch, ("hubctl", "api", "hubs", "stall"),
                             lambda h: h["engines"] == 1 and h["health"] is not None, what="hub running")
        conn = json.loads((await api("GET", "hubs", "stall", "connection")).body)
        client = await asyncio.to_thread(Client, conn["connection_file"], timeout=10)
        try:
            [engine] = await asyncio.to_thread(client.engines_info)
            os.kill(engine["pid"], signal.SIGKILL)
            await wait_api(jp_fetch, ("hubctl", "api", "hubs", "stall"), lambda h: h["engines"] == 0,
                           what="the dead engine gone")
            tasks = client.load_balanced_view().map_async(abs, [-1, -2, -3], chunksize=1)
            hub = await wait_api(jp_fetch, ("hubctl", "api", "hubs", "stall"),
                                 lambda h: (h["health"] or {}).get("state") == "degraded", what="health degraded")
            [reason] = hub["health"]["reasons"]
            assert "3 load-balanced tasks have waited more than 1 s" in reason and "no engine is registered" in reason
            assert hub["state"] == "running"

            assert (await api("PATCH", "hubs", "stall", body={"n": 1})).code == 202
            assert await asyncio.to_thread(tasks.get, 60) == [1, 2, 3]
            hub = await wait_api(jp_fetch, ("hubctl", "api", "hubs", "stall"),
                                 lambda h: (h["health"] or {}).get("state") == "ok", what="health ok again")
            assert hub["health"]["reasons"] == [] and hub["engines"] == 1
        finally:
            await asyncio.to_thread(client.close)
        assert (await api("DELETE", "hubs", "stall")).code == 204


async def test_monitor_announces_each_health_change_once(monkeypatch):
    """Degraded, degraded again (no event), recovered: one health event per change, no extra state events.

    (A real hub cannot be made healthy again from outside yet, so the hub's replies are given here.)"""
    import jupyter_hub_ctl.cluster as cluster
    from jupyter_hub_ctl.server.monitor import HubMonitor

    class Hub:
        health = {"state": "ok", "reasons": [], "degraded_since": None}

        def engines_info(self):
            return []

        def queue_status(self):
            return {"unassigned": 0}

        def close(self):
            pass

        @contextlib.contextmanager
        def query_time_limit(self, seconds):
            yield self

    stub = Hub()
    stub.health = lambda: Hub.health  # what the controller answers to health_request, changed below
    record = {"id": "h", "alive": True, "state": "running", "n": 1}
    monkeypatch.setattr(cluster, "list_hubs", lambda: [dict(record)])
    events: list = []
    monitor = HubMonitor(events.append)
    monitor.clients["h"] = stub

    def health_events():
        return [(e["health"]["state"], tuple(e["health"]["reasons"])) for e in events if e["action"] == "health"]

    async def refresh():  # a listing, then the hub's answers (asked in a task of their own)
        await monitor.refresh()
        await asyncio.gather(*monitor._polls.values())

    monitor.start()
    try:
        await monitor.ready.wait()
        await asyncio.gather(*monitor._polls.values())
        assert [e["action"] for e in events] == ["state", "health", "queues"] and health_events() == [("ok", ())]
        Hub.health = {"state": "degraded", "reasons": ["task database: writing task records failed: disk full"],
                      "degraded_since": "2026-01-01T00:00:00+00:00"}
        await refresh()
        await refresh()
        assert monitor.models["h"]["health"]["state"] == "degraded"
        Hub.health = {"state": "ok", "reasons": [], "degraded_since": None}
        await refresh()
    finally:
        await monitor.stop()
    assert health_events() == [("ok", ()), ("degraded", ("task database: writing task records failed: disk full",)),
                               ("ok", ())]
    assert [e["action"] for e in events].count("state") == 1
    assert monitor.models["h"]["health"] == {"state": "ok", "reasons": [], "degraded_since": None}
