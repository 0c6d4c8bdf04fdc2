"""The panel shows a degraded hub: a real hub (started with the CLI, in the lab's dirs) whose task
database fills up like a full disk, or whose tasks no engine can take, gets a "degraded" badge and
its reasons on its card and in its detail, and shows neither while it is healthy."""

from __future__ import annotations

import json

import pytest
from support.procs import FULL_DISK_PAGES, drive_until_degraded

from .lab import SERVER_EXTENSION_MISSING, wait_for
from .ui_helpers import PANEL, hubctl, open_lab, open_panel, tid

HUB = "sick"


def lab_with_hub(lab_factory, hub_id: str, *settings: str):
    """A lab, and a one-engine hub in its dirs started with ``--set`` ``settings``; stopped at the end."""
    lab = lab_factory()
    if not lab.has_server_extension():
        pytest.fail(SERVER_EXTENSION_MISSING)
    sets = [arg for setting in settings for arg in ("--set", setting)]
    started = hubctl(lab, "start", "-n", "1", "--id", hub_id, "--controller-args=--ping=250", *sets, "--json")
    assert started.returncode == 0, started.stderr
    lab.hub = json.loads(started.stdout)
    yield lab
    hubctl(lab, "stop", "--all", timeout=60)
    # stopped by another tool: the server lists it as stopped (until dismissed)
    wait_for(lambda: all(h["state"] == "stopped" for h in (lab.get("hubctl/api/hubs").body or {}).get("hubs", [])),
             60, "the hub to stop", interval=0.5)


@pytest.fixture
def degraded_lab(lab_factory):
    """A hub whose task store is tiny."""
    yield from lab_with_hub(lab_factory, HUB, f"SQLiteDB.max_page_count={FULL_DISK_PAGES}")


def test_a_degraded_hub_shows_a_badge_and_its_reasons(page, degraded_lab, screenshot):
    from jupyter_hub_ctl import Client

    lab = degraded_lab
    open_lab(page, lab)
    assert open_panel(page) == "ready"
    panel = page.locator(PANEL)
    row = page.locator(f'.jp-HubCtl-hubRow[data-hub-id="{HUB}"]')
    row.and_(page.locator('[data-state="running"]')).wait_for(timeout=60_000)
    row.click()
    detail = page.locator(tid("hubctl-detail"))
    detail.wait_for()
    wait_for(lambda: (lab.get(f"hubctl/api/hubs/{HUB}").body.get("health") or {}).get("state") == "ok", 60,
             "the server to know the hub is healthy", interval=0.5)
    assert panel.locator(tid("hubctl-health")).count() == 0  # nothing while healthy
    assert panel.locator(tid("hubctl-health-reasons")).count() == 0
    screenshot(panel, "1-healthy")

    client = Client(lab.hub["connection_file"], timeout=10)
    try:
        drive_until_degraded(client)
    finally:
        client.close()

    badge = row.locator(tid("hubctl-health"))
    badge.wait_for(timeout=60_000)
    assert badge.inner_text().strip() == "degraded" and badge.get_attribute("data-health") == "degraded"
    reasons = row.locator(tid("hubctl-health-reasons"))
    assert "disk is full" in reasons.inner_text()
    assert "disk is full" in badge.get_attribute("title")
    assert "disk is full" in detail.locator(tid("hubctl-health-reasons")).inner_text()
    assert detail.locator(tid("hubctl-health")).is_visible()
    assert row.get_attribute("data-state") == "running"  # degraded, not failed
    screenshot(panel, "2-degraded")
    assert page.hubctl_log.page_errors == []


STALLED = "stalled"
DARK = {"theme": "JupyterLab Dark"}


@pytest.fixture
def stalled_lab(lab_factory):
    """A hub that reports tasks stuck for 1 s."""
    yield from lab_with_hub(lab_factory, STALLED, "TaskScheduler.stall_timeout=1")


def test_stuck_tasks_show_their_reason_in_both_themes(page, stalled_lab, screenshot):
    """The hub's only engine dies while tasks wait: the card says why nothing runs (light and dark
    theme), and the badge goes once an engine is added through the API."""
    import os
    import signal

    from jupyter_hub_ctl import Client

    lab = stalled_lab
    client = Client(lab.hub["connection_file"], timeout=10)
    try:
        [engine] = client.engines_info()
        os.kill(engine["pid"], signal.SIGKILL)
        wait_for(lambda: client.ids == [], 30, "the dead engine unregistered", interval=0.1)
        tasks = client.load_balanced_view().map_async(abs, [-1, -2, -3], chunksize=1)
        wait_for(lambda: (lab.get(f"hubctl/api/hubs/{STALLED}").body.get("health") or {}).get("state") == "degraded",
                 60, "the server to know the hub is stuck", interval=0.5)

        for theme, settings in (("light", None), ("dark", DARK)):
            if settings:
                lab.write_settings("@jupyterlab/apputils-extension:themes", settings)
            open_lab(page, lab)
            assert open_panel(page) == "ready"
            panel = page.locator(PANEL)
            row = page.locator(f'.jp-HubCtl-hubRow[data-hub-id="{STALLED}"]')
            row.click()
            badge = row.locator(tid("hubctl-health"))
            badge.wait_for(timeout=60_000)
            reasons = row.locator(tid("hubctl-health-reasons")).inner_text()
            assert "3 load-balanced tasks have waited more than 1 s" in reasons
            assert "no engine is registered" in reasons
            screenshot(panel, f"stuck-{theme}")

        assert lab.request("PATCH", f"hubctl/api/hubs/{STALLED}", {"n": 1}).status == 202
        assert tasks.get(60) == [1, 2, 3]
        badge.wait_for(state="detached", timeout=60_000)
        assert page.hubctl_log.page_errors == []
    finally:
        client.close()
