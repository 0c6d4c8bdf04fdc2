"""Engine metrics and the task stream over REST and events, with a real server, hub and engines."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

from conftest import wait_api

from jupyter_hub_ctl.server.app import EVENT_ID


async def test_engine_metrics_and_task_stream_over_rest_and_events(api, jp_fetch, jp_ws_fetch):
    ws = await jp_ws_fetch("api", "events", "subscribe")
    try:
        assert (await api("POST", "hubs", body={"name": "live", "n": 2})).code == 202
        path = ("hubctl", "api", "hubs", "live")
        got = await wait_api(jp_fetch, (*path, "engines"),
                             lambda d: len(d["engines"]) == 2 and all(e["metrics"] for e in d["engines"]),
                             what="two engines with metrics")
        for e in got["engines"]:
            m = e["metrics"]
            assert set(m) == {"time", "cpu", "rss", "threads", "task", "task_name"}
            assert m["rss"] > 2**20 and m["threads"] >= 3 and m["cpu"] >= 0 and abs(m["time"] - time.time()) < 30
        got = await wait_api(jp_fetch, (*path, "engines"), lambda d: d["hosts"], what="host figures")
        host = got["hosts"][socket.gethostname()]
        assert host["cpus"] == os.cpu_count() and 0 < host["mem_used"] < host["mem_total"]

        # the engines events carry the metrics (bounded: one sample per engine)
        deadline = time.monotonic() + 30
        while True:
            raw = await asyncio.wait_for(ws.read_message(), max(0.1, deadline - time.monotonic()))
            event = json.loads(raw)
            data = event.get("data") or event
            if event.get("schema_id") == EVENT_ID and data.get("action") == "engines" and data["hub_id"] == "live" \
                    and len(data["engines"]) == 2 and all(e["metrics"] for e in data["engines"]) and data["hosts"]:
                break
            assert time.monotonic() < deadline, "no engines event with metrics"

        # the task stream: what the tasks of a client did, then nothing more
        since = json.loads((await api("GET", "hubs", "live", "tasks", "stream", params={"limit": "1"})).body)["now"]
        conn = json.loads((await api("GET", "hubs", "live", "connection")).body)
        code = conn["snippet"] + "\nprint(rc.load_balanced_view().map_sync(abs, range(-5, 0), label='rest'))\nrc.close()"
        out = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True,
                                      timeout=60)
        assert out.stdout.strip() == "[5, 4, 3, 2, 1]", out.stderr

        def finished(d):
            done = [t for t in d["tasks"] if t["state"] == "ok"]
            return len(done) == 5 and all((t["name"], t["label"]) == ("abs", "rest") for t in done)

        stream = await wait_api(jp_fetch, (*path, "tasks", "stream"), finished, what="five finished tasks",
                                params={"since": repr(since)})
        assert set(stream) == {"now", "tasks", "truncated"} and not stream["truncated"]
        assert all(t["engine_id"] in (0, 1) and t["started"] <= t["completed"] for t in stream["tasks"])
        later = json.loads((await api("GET", "hubs", "live", "tasks", "stream",
                                      params={"since": repr(stream["now"])})).body)
        assert later["tasks"] == [] and later["now"] > stream["now"]

        for params in ({"since": "yesterday"}, {"since": "nan"}, {"limit": "0"}, {"limit": "many"},
                       {"limit": "1000000"}):
            resp = await api("GET", "hubs", "live", "tasks", "stream", params=params)
            assert resp.code == 400, (params, resp.code)
        assert (await api("GET", "hubs", "nohub", "tasks", "stream")).code == 404
        assert (await api("DELETE", "hubs", "live")).code == 204
        await wait_api(jp_fetch, ("hubctl", "api", "hubs"), lambda d: not d["hubs"], what="hub gone")
    finally:
        ws.close()
