"""The panel shows a degraded hub: a real hub (started with the CLI, in the lab's dirs) whose task
database fills up like a full disk gets a "degraded" badge and its reasons on its card and in its
detail, and shows neither while it is healthy."""

from __future__ import annotations

import json

import pytest
from support.procs import FULL_DISK_PAGES, drive_until_degraded

from .lab import SERVER_EXTENSION_MISSING, wait_for
from .ui_helpers import PANEL, hubctl, open_lab, open_panel, tid

HUB = "sick"


@pytest.fixture
def degraded_lab(lab_factory):
    """A lab, and a hub in its dirs whose task store is tiny; the hub is stopped at the end."""
    lab = lab_factory()
    if not lab.has_server_extension():
        pytest.fail(SERVER_EXTENSION_MISSING)
    started = hubctl(lab, "start", "-n", "1", "--id", HUB, "--controller-args=--ping=250",
                     "--set", f"SQLiteDB.max_page_count={FULL_DISK_PAGES}", "--json")
    assert started.returncode == 0, started.stderr
    lab.hub = json.loads(started.stdout)
    yield lab
    hubctl(lab, "stop", "--all", timeout=60)
    wait_for(lambda: not (lab.get("hubctl/api/hubs").body or {}).get("hubs"), 60, "the hub to stop", interval=0.5)


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
