"""A hub whose task database is full (SQLite page limit, as a full disk), or whose load-balanced
tasks no engine can take, is reported degraded by ``Client.health()`` and ``jupyter hubctl status``;
controller settings given with ``--set`` reach the controller."""

from __future__ import annotations

import os
import signal

from support.procs import FULL_DISK_PAGES, drive_until_degraded

from jupyter_hub_ctl import Client
from jupyter_hub_ctl.cluster import Cluster

from .conftest import FAST, wait_for


def test_status_shows_a_degraded_hub_with_its_reasons(hubenv):
    h = hubenv
    info = h.cli_json("start", "-n", 1, "--id", "sick", f"--controller-args={FAST}",
                      "--set", f"SQLiteDB.max_page_count={FULL_DISK_PAGES}")
    assert f"--SQLiteDB.max_page_count={FULL_DISK_PAGES}" in h.state("sick")["controller"]["cmd"]

    healthy = h.cli_json("status", "sick")
    assert healthy["health"]["state"] == "ok" and healthy["health"]["reasons"] == []
    assert "health: ok" in h.cli("status", "sick").stdout

    client = Client(info["connection_file"], timeout=10)
    try:
        drive_until_degraded(client)
    finally:
        client.close()

    status = h.cli_json("status", "sick")
    health = status["health"]
    assert health["state"] == "degraded" and health["degraded_since"]
    assert any("disk is full" in reason for reason in health["reasons"]), health
    assert health["db"]["backend"] == "sqlitedb" and health["db"]["ok"] is False

    text = h.cli("status", "sick")
    assert text.returncode == 0, text.stderr  # degraded, not failed: it still runs tasks
    assert "hub sick: running, degraded" in text.stdout and "health: DEGRADED since" in text.stdout
    assert any(line.strip().startswith("- ") and "disk is full" in line for line in text.stdout.splitlines())

    assert h.cli("stop", "sick").returncode == 0


def _stuck(client) -> dict:
    health = client.health()
    return health if any("load-balanced scheduling is stuck" in r for r in health["reasons"]) else None


def test_tasks_stuck_without_an_engine_make_the_hub_degraded_until_one_arrives(hubenv):
    """All engines gone: load-balanced tasks wait with no engine that can take them; the hub says so
    (Client.health, `jupyter hubctl status`) and is ok again by itself once an engine registers."""
    cluster = Cluster(n=1, cluster_id="stall", controller_args=[FAST, "--TaskScheduler.stall_timeout=1"])
    cluster.start_sync()
    try:
        with cluster.connect_client_sync() as client:
            [engine] = [e["pid"] for e in cluster.engine_sets]
            os.kill(engine, signal.SIGKILL)
            wait_for(lambda: client.ids == [], 30, "the dead engine unregistered")
            tasks = client.load_balanced_view().map_async(abs, [-1, -2, -3], chunksize=1)
            assert client.health()["state"] == "ok"  # waiting, not yet for long
            health = wait_for(lambda: _stuck(client), 30, "the hub to report the stuck tasks")
            assert health["state"] == "degraded" and health["degraded_since"]
            [reason] = health["reasons"]
            assert reason.startswith("load-balanced scheduling is stuck: 3 load-balanced tasks have waited more than 1 s")
            assert reason.endswith("no engine that can run them: no engine is registered")
            status = hubenv.cli_json("status", "stall")["health"]
            assert status["state"] == "degraded" and status["reasons"] == [reason]

            cluster.add_engines_sync(1)
            assert tasks.get(30) == [1, 2, 3]
            wait_for(lambda: client.health()["state"] == "ok", 10, "the hub ok again")
            assert client.health()["reasons"] == []
    finally:
        cluster.stop_sync()


def test_tasks_every_engine_refuses_make_the_hub_degraded(hubenv):
    """A task with retries that failed on the only engine may not run there again: it waits, and the
    hub says that every registered engine is excluded, until a new engine takes it."""
    cluster = Cluster(n=1, cluster_id="excl", controller_args=[FAST, "--TaskScheduler.stall_timeout=1"])
    cluster.start_sync()

    def fail_where_first_run(marker):
        import os

        if not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("first run fails")
        return "second engine"
    try:
        with cluster.connect_client_sync() as client:
            view = client.load_balanced_view(retries=1)
            failing = view.apply_async(fail_where_first_run, str(hubenv.root / "ran-once"))
            health = wait_for(lambda: _stuck(client), 30, "the hub to report the stuck task")
            [reason] = health["reasons"]
            assert "1 load-balanced task has waited more than 1 s" in reason
            assert reason.endswith("every registered engine is excluded by the tasks' targets, dependencies or "
                                   "earlier failures")

            cluster.add_engines_sync(1)  # a fresh engine: the retry runs there, and succeeds
            assert failing.get(30) == "second engine"
            wait_for(lambda: client.health()["state"] == "ok", 10, "the hub ok again")
    finally:
        cluster.stop_sync()
