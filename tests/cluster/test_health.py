"""A hub whose task database is full (SQLite page limit, as a full disk) is reported degraded by
``jupyter hubctl status``; controller settings given with ``--set`` reach the controller."""

from __future__ import annotations

from support.procs import FULL_DISK_PAGES, drive_until_degraded

from jupyter_hub_ctl import Client

from .conftest import FAST


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
