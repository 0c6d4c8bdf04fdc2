"""The ``Cluster`` API in-process: context managers, scaling, attaching, supervision, failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from jupyter_hub_ctl import Client
from traitlets.config import Config

from jupyter_hub_ctl.cluster import (
    Cluster, ConnectionFileTimeout, ControllerExited, EngineStartFailed, HubExists, HubNotFound, find_hub, list_hubs,
)
from jupyter_hub_ctl.cluster.state import state_path

from .conftest import FAST, assert_sigint_interrupts, running_sleeper, wait_for


def _pids(cluster):
    return [es["pid"] for es in cluster.engine_sets if es["status"] in ("starting", "running")]


def test_context_manager_yields_a_client_and_stops_everything(hubenv):
    cluster = Cluster(n=2, controller_args=[FAST], cluster_id="cm")
    with cluster as client:
        assert client.ids == [0, 1]
        assert sorted(client[:].apply_sync(os.getpid)) == sorted(_pids(cluster))
        [hub] = list_hubs()
        assert hub["id"] == "cm" and hub["status"] == "running" and hub["db"] == "sqlitedb"
        ctl_pid = hub["controller"]["pid"]
    assert not os.path.exists(state_path("cm"))
    assert not psutil.pid_exists(ctl_pid) or psutil.Process(ctl_pid).status() == psutil.STATUS_ZOMBIE
    assert hubenv.processes() == []


@pytest.mark.asyncio
async def test_async_context_manager(hubenv):
    async with Cluster(n=1, controller_args=[FAST]) as client:
        assert client.ids == [0]
        assert client[0].apply_sync(lambda: 7) == 7
    assert list_hubs() == []
    assert hubenv.processes() == []


def test_scale_add_relaunch_and_signal(hubenv):
    cluster = Cluster(n=1, controller_args=[FAST], cluster_id="sc")
    cluster.start_sync()
    try:
        assert len(cluster.scale_sync(3)) == 3
        assert len(_pids(cluster)) == 3
        newest = max(cluster.engine_sets, key=lambda e: e["slot"])["pid"]
        cluster.scale_sync(2)
        assert len(_pids(cluster)) == 2 and newest not in _pids(cluster)
        wait_for(lambda: not psutil.pid_exists(newest), 10, "the scaled-down engine to exit")
        assert json.load(open(state_path("sc")))["n"] == 2

        before = set(_pids(cluster))
        cluster.relaunch_engines_sync()
        after = set(_pids(cluster))
        assert len(after) == 2 and not (before & after)

        cluster.add_engines_sync(1)
        assert len(_pids(cluster)) == 3

        with cluster.connect_client_sync() as client:
            wait_for(lambda: len(client.ids) == 3, 30, "dead engines to drop out")
            assert_sigint_interrupts(cluster, running_sleeper(client.load_balanced_view()))
    finally:
        cluster.stop_sync()
    assert hubenv.processes() == []


def test_find_hub_attaches_and_a_second_object_cannot_reuse_the_id(hubenv):
    owner = Cluster(n=1, controller_args=[FAST], cluster_id="att")
    owner.start_sync()
    try:
        with pytest.raises(HubExists, match="already running"):
            Cluster(n=1, cluster_id="att").start_sync()
        attached = find_hub("att")
        assert attached.client_connection_info() == owner.client_connection_info()
        with Client(hub_id="att") as client:  # the Client's own hook into find_hub
            assert client.ids == [0]
        attached.add_engines_sync(1)  # engines owned by the attached object, recorded in the same state file
        record = json.load(open(state_path("att")))
        assert len({e["owner"] for e in record["engines"]}) == 2
        foreign = [e["pid"] for e in record["engines"] if e["owner"] != owner._token]
        attached.stop_sync()  # asks the owner (supervising in this process) to stop the whole hub
        assert owner._ended.wait(30)
        assert not os.path.exists(state_path("att"))
        wait_for(lambda: not any(psutil.pid_exists(p) for p in foreign), 10, "the attached object's engine to end")
    finally:
        owner.stop_sync()
    with pytest.raises(HubNotFound):
        find_hub("att")
    assert hubenv.processes() == []


def test_engine_crash_on_start_raises_with_exit_code_and_log(hubenv):
    cluster = Cluster(n=2, controller_args=[FAST], cluster_id="crash",
                      engine_cmd=[sys.executable, "-c", "import sys; print('no luck'); sys.exit(7)"])
    with pytest.raises(EngineStartFailed) as info:
        cluster.start_sync()
    err = info.value
    assert err.details["exit"]["code"] == 7
    assert "exited with code 7 before registering" in str(err) and "no luck" in err.log_tail
    [hub] = list_hubs()
    assert hub["status"] == "failed" and "exited with code 7" in hub["error"]
    assert hubenv.processes() == []


def test_crashed_controller_is_started_again_and_keeps_engines_and_records(hubenv):
    cluster = Cluster(n=2, controller_args=[FAST], cluster_id="crestart")
    cluster.start_sync()
    try:
        rc = cluster._client
        before = rc.load_balanced_view().map_async(abs, range(-20, 0), chunksize=1)
        assert before.get(30) == list(range(20, 0, -1))
        ids = {e["id"]: e["pid"] for e in rc.engines_info()}
        wait_for(lambda: rc.health()["db"]["pending"] == 0, 10, "records committed")
        old_pid = cluster._controller.pid
        os.kill(old_pid, signal.SIGKILL)

        def restarted():
            [hub] = list_hubs()
            return hub["controller"]["pid"] != old_pid and hub["status"] == "running" and hub
        hub = wait_for(restarted, 30, "the supervisor to start the controller again")
        assert any("starting it again with --restore (1 of 3)" in e["message"] for e in hub["events"])
        # the same engine processes, under the same ids; the same client object carries on
        wait_for(lambda: {e["id"]: e["pid"] for e in rc.engines_info()} == ids, 15, f"engines {ids} taken back")
        assert sorted(rc[:].apply_sync(os.getpid)) == sorted(ids.values())
        assert len(rc.db_query({"msg_id": {"$in": before.msg_ids}}, keys=["completed"])) == 20
        with Client(hub_id="crestart") as fresh:  # and a new client finds it by hub id
            assert fresh.ids == sorted(ids)
    finally:
        cluster.stop_sync()
    assert hubenv.processes() == []


def test_controller_death_is_noticed_and_engines_are_stopped(hubenv):
    cluster = Cluster(n=1, controller_args=[FAST], cluster_id="cdie", controller_restarts=0)
    cluster.start_sync()
    engine = _pids(cluster)[0]
    os.kill(cluster._controller.pid, signal.SIGKILL)
    assert cluster._ended.wait(30)
    [hub] = list_hubs()
    assert hub["status"] == "failed" and "killed by SIGKILL" in hub["error"]
    wait_for(lambda: not psutil.pid_exists(engine), 10, "the orphaned engine to be stopped")
    assert hubenv.processes() == []


def test_controller_failure_raises_controller_exited(hubenv):
    cluster = Cluster(n=1, controller_args=["--no-such-option=1"], cluster_id="badctl")
    with pytest.raises(ControllerExited, match="controller exited with code 2") as info:
        cluster.start_sync()
    assert "no-such-option" in info.value.log_tail
    assert hubenv.processes() == []


def test_controller_without_connection_files_times_out_and_is_stopped(hubenv):
    silent = [sys.executable, "-c", "import time; time.sleep(120)"]
    cluster = Cluster(n=1, cluster_id="silent", connection_timeout=2,
                      config=Config({"LocalControllerLauncher": {"controller_cmd": silent}}))
    t0 = time.monotonic()
    with pytest.raises(ConnectionFileTimeout, match="wrote no connection files .* within 2s"):
        cluster.start_sync()
    assert time.monotonic() - t0 < 15
    assert hubenv.processes() == []


SCRIPT = """
import sys
from jupyter_hub_ctl.cluster import Cluster
c = Cluster(n=1, controller_args=["--ping=250"], cluster_id=sys.argv[1], stop_on_exit=sys.argv[2] == "1")
c.start_sync()
print("started", flush=True)
"""


@pytest.mark.parametrize("stop_on_exit", [True, False])
def test_stop_on_exit(hubenv, tmp_path, stop_on_exit):
    script = tmp_path / "owner.py"
    script.write_text(textwrap.dedent(SCRIPT))
    res = subprocess.run([sys.executable, str(script), "soe", "1" if stop_on_exit else "0"], env=hubenv.env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "started" in res.stdout, res.stderr
    if stop_on_exit:
        assert list_hubs() == []
        assert hubenv.processes() == []
    else:
        [hub] = list_hubs()
        assert hub["alive"] and hub["status"] == "running"
        with Client(hub_id="soe") as client:
            assert client.ids == [0]
        find_hub("soe").stop_sync()  # its owner is gone: the pids in the state file are stopped directly
        assert list_hubs() == []
        wait_for(lambda: hubenv.processes() == [], 10, "the hub's processes to end")


def test_engine_asked_to_shut_down_is_not_restarted(hubenv):
    cluster = Cluster(n=2, controller_args=[FAST], cluster_id="quit", restart_engines=True, restart_backoff=0.1)
    cluster.start_sync()
    try:
        client = cluster.connect_client_sync()
        try:
            client.shutdown(targets=[0])
        finally:
            client.close()
        wait_for(lambda: any(e["status"] == "exited" for e in cluster.engine_sets), 20, "the engine to exit")
        events = lambda: [e["message"] for e in json.load(open(state_path("quit")))["events"]]  # noqa: E731
        wait_for(lambda: any("exited normally" in m for m in events()), 10, "the exit to be recorded")
        assert not any("restarted" in m and "not restarted" not in m for m in events())
        assert sum(e["status"] == "running" for e in cluster.engine_sets) == 1
    finally:
        cluster.stop_sync()
    assert hubenv.processes() == []
