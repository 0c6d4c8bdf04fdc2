"""Live events over /api/events/subscribe, and hubs surviving a server restart."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request

from support.procs import end_process, free_port, hub_processes, slow_engine_cmd

from jupyter_hub_ctl.cluster import list_hubs
from jupyter_hub_ctl.server.app import EVENT_ID


async def test_events_announce_state_engines_and_removal(jp_ws_fetch, api, jp_fetch):
    ws = await jp_ws_fetch("api", "events", "subscribe")
    try:
        resp = await api("POST", "hubs", body={"name": "evt", "n": 2})
        assert resp.code == 202
        seen = []
        deadline = time.monotonic() + 90

        async def until(cond, what):
            while time.monotonic() < deadline:
                raw = await asyncio.wait_for(ws.read_message(), deadline - time.monotonic())
                event = json.loads(raw)
                if event.get("schema_id") != EVENT_ID:
                    continue
                data = event.get("data") or event
                seen.append(data)
                if cond(data):
                    return data
            raise TimeoutError(f"no event for {what}; seen {[(d['action'], d.get('hub', {}).get('state')) for d in seen]}")

        await until(lambda d: d["action"] == "state" and d["hub"]["state"] == "starting", "starting")
        await until(lambda d: d["action"] == "engines" and len(d["engines"]) == 2, "two engines")
        assert (await api("DELETE", "hubs", "evt")).code == 204
        await until(lambda d: d["action"] == "removed" and d["hub_id"] == "evt", "removal")
    finally:
        ws.close()


class Server:
    """A real `jupyter server` process with the extension enabled."""

    def __init__(self, tmp_path, port, *args):
        self.port = port
        self.token = "restart-test-token"
        self.log = open(tmp_path / f"server-{port}.log", "ab")
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTER_DATA_DIR=str(tmp_path / "data"))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", f"--port={port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
             "--ServerApp.jpserver_extensions={'jupyter_hub_ctl': True}", "--HubCtlExtension.poll_interval=0.5", *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path))

    def call(self, method, path, body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/hubctl/api/{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, None
        except OSError:
            return None, None

    def wait(self, path, cond, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited")
            code, data = self.call("GET", path)
            if code == 200 and cond(data):
                return data
            time.sleep(0.2)
        raise TimeoutError(f"waiting for {path}")

    def stop(self):
        end_process(self.proc, 20, 5)
        self.log.close()


def test_a_running_hub_survives_a_server_restart(tmp_path):
    first = Server(tmp_path, free_port())
    try:
        first.wait("version", lambda d: True)
        code, _ = first.call("POST", "hubs", {"name": "keep", "n": 1})
        assert code == 202
        first.wait("hubs/keep", lambda h: h["state"] == "running" and h["engines"] == 1)
    finally:
        first.stop()
    (record,) = [h for h in list_hubs() if h["id"] == "keep"]
    assert record["alive"]  # the hub outlived the server
    second = Server(tmp_path, free_port())
    try:
        hub = second.wait("hubs/keep", lambda h: h["state"] == "running" and h["engines"] == 1)
        assert hub["id"] == "keep"
        code, _ = second.call("DELETE", "hubs/keep")
        assert code == 204
        second.wait("hubs", lambda d: not d["hubs"])
    finally:
        second.stop()


def test_stop_hubs_on_exit_stops_them_all_whatever_they_do(tmp_path):
    """With stop_hubs_on_exit, a server that stops takes its hubs along, running or still starting."""
    before = hub_processes(tmp_path)
    server = Server(tmp_path, free_port(), "--HubCtlExtension.stop_hubs_on_exit=True")
    try:
        server.wait("version", lambda d: True)
        assert server.call("POST", "hubs", {"name": "up", "n": 1})[0] == 202
        slow = {"name": "starting", "n": 1, "options": {"engine_cmd": slow_engine_cmd(60)}}
        assert server.call("POST", "hubs", slow)[0] == 202
        server.wait("hubs/up", lambda h: h["state"] == "running" and h["engines"] == 1)
        assert server.call("GET", "hubs/starting")[1]["state"] == "starting"
    finally:
        server.stop()
    assert server.proc.returncode is not None and list_hubs() == []
    assert hub_processes(tmp_path) - before == set()
