"""The REST API over a real server, with real controller and engine processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from conftest import wait_api

from jupyter_hub_ctl.cluster import list_hubs


async def test_version_and_launchers(api):
    resp = await api("GET", "version")
    assert resp.code == 200
    data = json.loads(resp.body)
    assert data["controller"] and data["server"]
    resp = await api("GET", "launchers")
    launchers = {x["name"]: x for x in json.loads(resp.body)["launchers"]}
    assert {"local", "mpi", "ssh", "slurm"} <= set(launchers)
    assert launchers["local"]["schema"]["type"] == "object"


async def test_launchers_describe_the_form(api):
    """Labels for people, advanced options marked, examples, the engine limits of this server."""
    data = json.loads((await api("GET", "launchers")).body)
    assert data["engines"] == {"default": 2, "minimum": 0, "maximum": 8}
    local = data["launchers"][[x["name"] for x in data["launchers"]].index("local")]["schema"]["properties"]
    assert local["engine_cmd"]["title"] == "Engine command" and local["engine_cmd"]["advanced"] is True
    assert local["work_dir"]["title"] == "Working directory" and local["work_dir"]["advanced"] is False
    assert local["environment"]["examples"] == [{"OMP_NUM_THREADS": "1"}]
    ssh = data["launchers"][[x["name"] for x in data["launchers"]].index("ssh")]["schema"]["properties"]
    assert ssh["engines"]["additionalProperties"] == {"type": "integer"}
    slurm = data["launchers"][[x["name"] for x in data["launchers"]].index("slurm")]["schema"]["properties"]
    assert {k for k, v in slurm.items() if not v["advanced"]} >= {"queue", "account", "walltime"}


async def test_zero_engines_starts_the_controller_alone_then_scales(api, jp_fetch):
    """n=0 is allowed, as in the CLI and %hub start: a running hub without engines, scaled later."""
    resp = await api("POST", "hubs", body={"name": "bare", "n": 0})
    assert resp.code == 202, resp.body
    hub = await wait_api(jp_fetch, ("hubctl", "api", "hubs", "bare"), lambda h: h["state"] == "running",
                         what="hub running")
    assert hub["engines"] == 0 and hub["n"] == 0
    assert (await api("PATCH", "hubs", "bare", body={"n": 1})).code == 202
    await wait_api(jp_fetch, ("hubctl", "api", "hubs", "bare"), lambda h: h["engines"] == 1, what="one engine")
    assert (await api("DELETE", "hubs", "bare")).code == 204


async def test_full_lifecycle(api, jp_fetch):
    resp = await api("POST", "hubs", body={"name": "life", "n": 2})
    assert resp.code == 202, resp.body
    assert json.loads(resp.body)["state"] == "starting"
    hub = await wait_api(jp_fetch, ("hubctl", "api", "hubs", "life"),
                         lambda h: h["state"] == "running" and h["engines"] == 2, what="hub running")
    assert hub["n"] == 2 and hub["launcher"] == "local"
    listed = json.loads((await api("GET", "hubs")).body)["hubs"]
    assert [h["id"] for h in listed] == ["life"]
    engines = json.loads((await api("GET", "hubs", "life", "engines")).body)["engines"]
    assert len(engines) == 2 and all(e["pid"] and e["last_heartbeat"] for e in engines)
    # scale up
    resp = await api("PATCH", "hubs", "life", body={"n": 3})
    assert resp.code == 202, resp.body
    await wait_api(jp_fetch, ("hubctl", "api", "hubs", "life", "engines"), lambda d: len(d["engines"]) == 3,
                   what="three engines")
    queues = json.loads((await api("GET", "hubs", "life", "queues")).body)
    assert len(queues["engines"]) == 3 and "totals" in queues
    # engines come in pages, in id order, with the total and a summary of all of them
    whole = json.loads((await api("GET", "hubs", "life", "engines")).body)
    page = json.loads((await api("GET", "hubs", "life", "engines", params={"offset": "1", "limit": "1"})).body)
    assert (page["total"], page["offset"], page["limit"]) == (3, 1, 1)
    assert page["engines"] == whole["engines"][1:2] and sorted(e["id"] for e in whole["engines"]) == \
        [e["id"] for e in whole["engines"]]
    assert page["summary"]["total"] == 3 and page["summary"]["states"] == {"running": 3}
    assert page["summary"]["hosts"] == 1
    for bad in ({"limit": "0"}, {"limit": "1001"}, {"offset": "-1"}, {"limit": "x"}):
        assert (await api("GET", "hubs", "life", "engines", params=bad)).code == 400
    conn = json.loads((await api("GET", "hubs", "life", "connection")).body)
    assert "Client(hub_id='life')" in conn["snippet"]
    # the snippet works: run some work through the hub, then see it in the tasks listing
    code = conn["snippet"] + "\nprint(sum(rc.load_balanced_view().map_sync(lambda x: x, range(5))))\nrc.close()"
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True,
                                  timeout=60)
    assert out.stdout.strip() == "10", out.stderr
    tasks = json.loads((await api("GET", "hubs", "life", "tasks", params={"limit": "2"})).body)
    assert tasks["total"] >= 5 and len(tasks["tasks"]) == 2
    # stop
    resp = await api("DELETE", "hubs", "life")
    assert resp.code == 204
    await wait_api(jp_fetch, ("hubctl", "api", "hubs"), lambda d: not d["hubs"], what="hub gone")
    assert list_hubs() == []


async def test_hub_started_by_the_cli_shows_up(api, jp_fetch):
    import os

    cli = [sys.executable, "-m", "jupyter_hub_ctl.cli", "start", "-n", "1", "--id", "fromcli", "--json"]
    out = await asyncio.to_thread(subprocess.run, cli, capture_output=True, text=True, timeout=120, env=os.environ)
    assert out.returncode == 0, out.stderr
    hub = await wait_api(jp_fetch, ("hubctl", "api", "hubs", "fromcli"), lambda h: h["engines"] == 1,
                         what="CLI hub visible")
    assert hub["state"] == "running"
    assert (await api("DELETE", "hubs", "fromcli")).code == 204
    await wait_api(jp_fetch, ("hubctl", "api", "hubs"), lambda d: not d["hubs"], what="hub gone")


@pytest.mark.parametrize("body,code", [
    ({"n": -1}, 400),
    ({"n": 9}, 400),
    ({"n": "2"}, 400),
    ({"n": True}, 400),
    ({"name": "../evil"}, 400),
    ({"name": "a/b"}, 400),
    ({"profile": "../../etc"}, 400),
    ({"launcher": "nope"}, 400),
    ({"launcher": "local", "options": {"not_an_option": 1}}, 400),
    ({"launcher": "local", "options": "x"}, 400),
    ({"launcher": "local", "options": {"environment": {"OMP_NUM_THREADS": 1}}}, 400),
    ({"launcher": "ssh", "options": {"engines": {"node1": "4"}}}, 400),
    ({"surprise": 1}, 400),
])
async def test_bad_create_bodies_are_refused_without_starting_anything(api, body, code):
    resp = await api("POST", "hubs", body=body)
    assert resp.code == code, resp.body
    data = json.loads(resp.body)
    assert data["message"] and "Traceback" not in resp.body.decode()
    assert list_hubs() == []


async def test_bad_json_and_oversized_bodies(api):
    resp = await api("POST", "hubs", raw="{nope")
    assert resp.code == 400
    resp = await api("POST", "hubs", raw=json.dumps({"name": "x" * 70_000}))
    assert resp.code == 413
    assert list_hubs() == []


async def test_unknown_and_invalid_hub_ids(api):
    assert (await api("GET", "hubs", "nosuchhub")).code == 404
    assert (await api("GET", "hubs", "no%2F..%2Fsuch")).code == 400
    assert (await api("DELETE", "hubs", "nosuchhub")).code == 404
    assert (await api("PATCH", "hubs", "nosuchhub", body={"n": 2})).code == 404
    assert (await api("GET", "hubs", "nosuchhub", "engines")).code == 404


class TestControllerSettingsFromServerConfig:
    @pytest.fixture
    def jp_server_config(self, jp_server_config):
        cfg = dict(jp_server_config)
        cfg["TaskScheduler"] = {"scheme_name": "lru"}
        cfg["EngineConnector"] = {"registration_timeout": 45.0}
        return cfg

    async def test_new_hubs_get_the_servers_controller_settings(self, api, jp_fetch):
        assert (await api("POST", "hubs", body={"name": "cfg", "n": 1})).code == 202
        await wait_api(jp_fetch, ("hubctl", "api", "hubs", "cfg"), lambda h: h["engines"] == 1, what="running")
        conn = json.loads((await api("GET", "hubs", "cfg", "connection")).body)
        with open(conn["connection_file"]) as f:
            assert json.load(f)["task_scheme"] == "lru"
        assert (await api("DELETE", "hubs", "cfg")).code == 204
        await wait_api(jp_fetch, ("hubctl", "api", "hubs"), lambda d: not d["hubs"], what="hub gone")


async def test_a_created_hub_is_readable_at_once(api):
    resp = await api("POST", "hubs", body={"name": "quick", "n": 1})
    assert resp.code == 202
    got = await api("GET", "hubs", "quick")
    assert got.code == 200 and json.loads(got.body)["state"] in ("starting", "running")
    assert (await api("DELETE", "hubs", "quick")).code == 204
