"""Ended hubs stay listed until dismissed: a hub stopped by another tool, or here with ?keep=true,
shows as stopped with how it ended; DELETE dismisses it. Real server, hubs and CLI processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from conftest import wait_api

from jupyter_hub_ctl.cluster import list_hubs


async def start(api, jp_fetch, name: str) -> None:
    assert (await api("POST", "hubs", body={"name": name, "n": 1})).code == 202
    await wait_api(jp_fetch, ("hubctl", "api", "hubs", name), lambda h: h["engines"] == 1, what=f"{name} running")


async def test_a_hub_stopped_by_another_tool_stays_listed_until_dismissed(api, jp_fetch):
    await start(api, jp_fetch, "elsewhere")
    cli = [sys.executable, "-m", "jupyter_hub_ctl.cli", "stop", "elsewhere"]
    out = await asyncio.to_thread(subprocess.run, cli, capture_output=True, text=True, timeout=120, env=os.environ)
    assert out.returncode == 0, out.stderr
    assert list_hubs() == []  # its state file is gone...
    hub = await wait_api(jp_fetch, ("hubctl", "api", "hubs", "elsewhere"), lambda h: h["state"] == "stopped",
                         what="the hub listed as stopped")  # ...the server still lists it
    assert hub["engines"] == 0 and hub["ended"]["time"]
    listed = json.loads((await api("GET", "hubs")).body)["hubs"]
    assert [h["id"] for h in listed] == ["elsewhere"]
    assert (await api("PATCH", "hubs", "elsewhere", body={"n": 2})).code == 404  # nothing to scale
    assert (await api("DELETE", "hubs", "elsewhere")).code == 204  # dismissed
    assert (await api("GET", "hubs", "elsewhere")).code == 404
    assert json.loads((await api("GET", "hubs")).body)["hubs"] == []


async def test_stop_with_keep_lists_the_hub_as_stopped_and_a_new_hub_can_take_its_name(api, jp_fetch):
    await start(api, jp_fetch, "kept")
    assert (await api("DELETE", "hubs", "kept", params={"keep": "true"})).code == 204
    hub = json.loads((await api("GET", "hubs", "kept")).body)
    assert hub["state"] == "stopped" and hub["ended"]["reason"] is None
    assert list_hubs() == []
    # a new hub under the ended one's name runs, and DELETE stops it (it is not taken for a dismissal)
    await start(api, jp_fetch, "kept")
    assert len(list_hubs()) == 1
    assert (await api("DELETE", "hubs", "kept")).code == 204
    assert list_hubs() == []
    assert (await api("GET", "hubs", "kept")).code == 404  # without keep: gone at once
