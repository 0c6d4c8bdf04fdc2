"""Hub lifecycle through the REST API with real hubs: no lost requests, nothing left running.

DELETE wins at any moment (starting, scaling, stopping, crashed) and answers 204 only once the
hub's processes are gone; PATCH answers 202 while the hub starts or runs and 409 once it stops.
The listing never waits for a dead or hung hub.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest
from conftest import wait_api
from support.procs import hub_processes, live, recorded_engine_pids, slow_engine_cmd

from jupyter_hub_ctl.cluster import background, list_hubs, state

ROUNDS = 50
WAVE = 5  # rounds run at once
SLOW = 60.0  # seconds the slow launcher's engines take before they register


@pytest.fixture
def jp_server_config(jp_server_config):
    cfg = dict(jp_server_config)
    cfg["HubCtlExtension"] = dict(cfg["HubCtlExtension"], query_timeout=1.0)
    return cfg


async def listed(api) -> dict:
    resp = await api("GET", "hubs")
    assert resp.code == 200
    return {h["id"]: h for h in json.loads(resp.body)["hubs"]}


async def until(cond, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = await cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def engines_launched(hub_id: str, count: int) -> list:
    """Wait until the hub's owner has launched ``count`` engine processes (recorded in its state file)."""
    async def launched():
        pids = recorded_engine_pids(hub_id)
        return pids if len(pids) >= count else None
    return await until(launched, 60, f"{count} engine(s) of {hub_id} launched")


async def delete(api, hub_id: str, pids=()) -> None:
    resp = await api("DELETE", "hubs", hub_id)
    assert resp.code == 204, resp.body
    assert hub_id not in await listed(api)
    assert not os.path.exists(state.state_path(hub_id))
    assert not live(pids), f"{hub_id}: processes {live(pids)} outlived its DELETE"


async def post_then_delete(api, hub_id: str) -> None:
    resp = await api("POST", "hubs", body={"name": hub_id, "n": 1})
    assert resp.code == 202, resp.body
    assert (await listed(api))[hub_id]["state"] == "starting"  # listed at once
    await delete(api, hub_id)


async def patch_then_delete(api, jp_fetch, hub_id: str, during_scale: bool) -> None:
    assert (await api("POST", "hubs", body={"name": hub_id, "n": 1})).code == 202
    await wait_api(jp_fetch, ("hubctl", "api", "hubs", hub_id), lambda h: h["state"] == "running", what=hub_id)
    resp = await api("PATCH", "hubs", hub_id, body={"n": 3})
    assert resp.code == 202, resp.body
    pids = await engines_launched(hub_id, 3) if during_scale else recorded_engine_pids(hub_id)
    await delete(api, hub_id, pids)


async def delete_while_starting(api, hub_id: str) -> None:
    body = {"name": hub_id, "n": 2, "options": {"engine_cmd": slow_engine_cmd(SLOW)}}
    assert (await api("POST", "hubs", body=body)).code == 202
    pids = await engines_launched(hub_id, 2)
    assert (await listed(api))[hub_id]["state"] == "starting"
    await delete(api, hub_id, pids)


@pytest.mark.timeout(600)
async def test_delete_always_wins_and_leaves_no_process(api, jp_fetch, tmp_path):
    """50 rounds (5 at a time) of: POST then DELETE at once; PATCH then DELETE at once, or while the
    new engines start; DELETE while a slow launcher's engines start."""
    before = hub_processes(tmp_path)

    async def one(i: int) -> None:
        hub_id = f"r{i}"
        kind = i % 4
        if kind == 0:
            await post_then_delete(api, hub_id)
        elif kind in (1, 2):
            await patch_then_delete(api, jp_fetch, hub_id, during_scale=kind == 2)
        else:
            await delete_while_starting(api, hub_id)

    async def all_rounds():
        for wave in range(0, ROUNDS, WAVE):
            await asyncio.gather(*(one(i) for i in range(wave, min(wave + WAVE, ROUNDS))))

    await asyncio.wait_for(all_rounds(), 540)
    assert await listed(api) == {} and list_hubs() == []
    left = hub_processes(tmp_path) - before
    assert not left, f"processes outlived the test: {sorted(left)}"


async def test_patch_while_stopping_or_after_a_crash_is_refused(api, jp_fetch, tmp_path):
    assert (await api("POST", "hubs", body={"name": "st", "n": 1})).code == 202
    await wait_api(jp_fetch, ("hubctl", "api", "hubs", "st"), lambda h: h["state"] == "running", what="running")
    # another tool (the CLI, a notebook) asks for a stop: from then on the hub only stops
    assert background.request_stop("st")
    resp = await api("PATCH", "hubs", "st", body={"n": 2})
    assert resp.code == 409 and "stopping" in resp.reason
    # stopped elsewhere: listed as stopped until dismissed
    await wait_api(jp_fetch, ("hubctl", "api", "hubs", "st"), lambda h: h["state"] == "stopped", what="the hub stopped")
    assert (await api("PATCH", "hubs", "st", body={"n": 2})).code == 404
    assert (await api("DELETE", "hubs", "st")).code == 204
    await wait_api(jp_fetch, ("hubctl", "api", "hubs"), lambda d: not d["hubs"], what="the hub gone")

    assert (await api("POST", "hubs", body={"name": "crash", "n": 1})).code == 202
    await wait_api(jp_fetch, ("hubctl", "api", "hubs", "crash"), lambda h: h["state"] == "running", what="running")
    record = state.read_state("crash")
    idents = [record["owner"], record["controller"], *record["engines"]]
    for ident in idents:
        state.signal_proven(ident, signal.SIGKILL)
    await wait_api(jp_fetch, ("hubctl", "api", "hubs", "crash"), lambda h: h["state"] == "failed", what="failed")
    resp = await api("PATCH", "hubs", "crash", body={"n": 2})
    assert resp.code == 409 and "not running" in resp.reason
    await delete(api, "crash")
    assert (await api("DELETE", "hubs", "crash")).code == 404
    assert not hub_processes(tmp_path) & {i["pid"] for i in idents}


async def test_a_killed_hub_is_shown_failed_within_seconds(api, jp_fetch):
    assert (await api("POST", "hubs", body={"name": "k", "n": 1})).code == 202
    await wait_api(jp_fetch, ("hubctl", "api", "hubs", "k"), lambda h: h["state"] == "running" and h["engines"] == 1,
                   what="running")
    record = state.read_state("k")
    for ident in (record["owner"], record["controller"], *record["engines"]):
        state.signal_proven(ident, signal.SIGKILL)
    killed = time.monotonic()
    hub = await wait_api(jp_fetch, ("hubctl", "api", "hubs", "k"), lambda h: h["state"] != "running", timeout=30,
                         what="the killed hub shown not running")
    assert time.monotonic() - killed < 5.0, "the server took more than 5 s to notice"
    assert hub["state"] == "failed" and "gone" in hub["error"] and hub["engines"] == 0
    await delete(api, "k")


async def test_a_hung_hub_delays_no_other(api, jp_fetch):
    """A hub whose controller is stopped (SIGSTOP) is shown degraded; meanwhile a hub started by another
    tool is listed within a refresh and shown running with its engines, and a POSTed one at once."""
    assert (await api("POST", "hubs", body={"name": "hung", "n": 1})).code == 202
    await wait_api(jp_fetch, ("hubctl", "api", "hubs", "hung"), lambda h: h["engines"] == 1, what="running")
    controller = state.read_state("hung")["controller"]
    assert state.signal_proven(controller, signal.SIGSTOP)
    try:
        await wait_api(jp_fetch, ("hubctl", "api", "hubs", "hung"),
                       lambda h: (h["health"] or {}).get("state") == "degraded", timeout=15, what="hung: degraded")
        hung = (await listed(api))["hung"]
        assert hung["state"] == "running" and "does not answer" in hung["health"]["reasons"][0]

        from traitlets.config import Config

        config = Config()
        config.Cluster.cluster_id, config.Cluster.n = "other", 1
        started = await asyncio.to_thread(background.start, config, "cli")
        began = time.monotonic()
        await wait_api(jp_fetch, ("hubctl", "api", "hubs"), lambda d: any(h["id"] == "other" for h in d["hubs"]),
                       timeout=10, what="the other hub listed")
        assert time.monotonic() - began < 2.0, "listing a new hub waited for the hung one"
        other = await wait_api(jp_fetch, ("hubctl", "api", "hubs", "other"), lambda h: h["engines"] == 1,
                               timeout=60, what="the other hub running with its engine")
        assert other["health"]["state"] == "ok"

        resp = await api("POST", "hubs", body={"name": "third", "n": 1})
        assert resp.code == 202 and (await listed(api))["third"]["state"] == "starting"
        await wait_api(jp_fetch, ("hubctl", "api", "hubs", "third"), lambda h: h["engines"] == 1, what="third")
    finally:
        state.signal_proven(controller, signal.SIGCONT)
    await wait_api(jp_fetch, ("hubctl", "api", "hubs", "hung"),
                   lambda h: (h["health"] or {}).get("state") == "ok", timeout=15, what="hung: answering again")
    for hub_id in ("hung", "other", "third"):
        await delete(api, hub_id)
    started["process"].wait(10)
