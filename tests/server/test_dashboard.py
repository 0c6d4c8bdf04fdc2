"""The dashboard's REST (one reply per refresh) and the clients a stop would cut off, over a real
server, hub, engines and client processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

from conftest import wait_api

CLIENT = """
import sys, time
from jupyter_hub_ctl import Client
rc = Client(hub_id=sys.argv[1])
rc.wait_for_engines(1, timeout=60)
print("connected", flush=True)
sys.stdin.readline()
rc.close()
"""


async def start_hub(api, jp_fetch, name: str, n: int) -> dict:
    assert (await api("POST", "hubs", body={"name": name, "n": n})).code == 202
    return await wait_api(jp_fetch, ("hubctl", "api", "hubs", name),
                          lambda h: h["state"] == "running" and h["engines"] == n, what=f"{name} running")


async def get_json(api, *path, **params):
    resp = await api("GET", *path, params=params)
    assert resp.code == 200, resp.body
    return json.loads(resp.body)


async def test_dashboard_reply_carries_engines_queues_and_the_task_stream(api, jp_fetch):
    await start_hub(api, jp_fetch, "dash", 2)
    first = await get_json(api, "hubs", "dash", "dashboard")
    assert first["hub"]["id"] == "dash" and len(first["engines"]) == 2
    assert set(first["queues"]) == {"engines", "unassigned", "totals"}
    assert first["stream_error"] is None, first["stream_error"]
    since = first["stream"]["now"]
    code = ("from jupyter_hub_ctl import Client\nrc = Client(hub_id='dash')\nrc.wait_for_engines(2, timeout=60)\n"
            "def square(x):\n    return x * x\n"
            "print(sum(rc.load_balanced_view().map_sync(square, range(20))))\nrc.close()")
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True,
                                  timeout=120)
    assert out.stdout.strip() == str(sum(x * x for x in range(20))), out.stderr
    # the tasks that changed since the first reply, each once, in their latest state
    later = await get_json(api, "hubs", "dash", "dashboard", since=str(since))
    tasks = later["stream"]["tasks"]
    assert len(tasks) == 20 and len({t["msg_id"] for t in tasks}) == 20
    assert all(t["state"] == "ok" and t["name"] == "square" for t in tasks)
    assert {t["engine_id"] for t in tasks} <= {e["id"] for e in later["engines"]}
    assert all(t["submitted"] <= t["started"] <= t["completed"] for t in tasks)
    assert later["stream"]["now"] > since
    # nothing changed since then; a small limit truncates
    again = await get_json(api, "hubs", "dash", "dashboard", since=str(later["stream"]["now"]))
    assert again["stream"]["tasks"] == []
    small = await get_json(api, "hubs", "dash", "dashboard", since=str(since), limit="5")
    assert len(small["stream"]["tasks"]) == 5 and small["stream"]["truncated"] is True
    # our engines report metrics; the dashboard gets them with the engines
    metrics = await wait_api(jp_fetch, ("hubctl", "api", "hubs", "dash", "dashboard"),
                             lambda d: all(e["metrics"] for e in d["engines"]), what="engine metrics")
    sample = metrics["engines"][0]["metrics"]
    assert sample["rss"] > 0 and sample["cpu"] >= 0 and set(sample) == {"time", "cpu", "rss", "threads", "task",
                                                                         "task_name"}
    assert set(metrics["hosts"]) == {metrics["engines"][0]["host"]}
    assert (await api("DELETE", "hubs", "dash")).code == 204


async def test_dashboard_refuses_bad_windows_and_unknown_hubs(api, jp_fetch):
    assert (await api("GET", "hubs", "nosuch", "dashboard")).code == 404
    await start_hub(api, jp_fetch, "win", 1)
    for params in ({"since": "soon"}, {"since": "nan"}, {"limit": "0"}, {"limit": "1000000"}, {"limit": "x"}):
        resp = await api("GET", "hubs", "win", "dashboard", params=params)
        assert resp.code == 400, (params, resp.body)
    assert (await api("DELETE", "hubs", "win")).code == 204


async def test_clients_lists_the_processes_connected_to_a_hub(api, jp_fetch):
    await start_hub(api, jp_fetch, "cli", 1)
    assert (await get_json(api, "hubs", "cli", "clients")) == {"count": 0, "clients": []}
    proc = await asyncio.to_thread(subprocess.Popen, [sys.executable, "-c", CLIENT, "cli"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.strip() == "connected"
        clients = await get_json(api, "hubs", "cli", "clients")
        assert clients["count"] == 1 and clients["clients"][0]["pid"] == proc.pid
        assert clients["clients"][0]["kernel"] is None  # a script, not a kernel of this server
    finally:
        proc.stdin.write("\n")
        proc.stdin.close()
        await asyncio.to_thread(proc.wait, 30)
    deadline = time.monotonic() + 10
    while (await get_json(api, "hubs", "cli", "clients"))["count"] and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert (await get_json(api, "hubs", "cli", "clients"))["count"] == 0
    assert (await api("DELETE", "hubs", "cli")).code == 204
