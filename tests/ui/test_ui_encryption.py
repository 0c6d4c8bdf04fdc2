"""The panel says whether a hub encrypts its connections: an "encrypted" badge for a hub started
with CurveZMQ, "plaintext" for one on loopback without it, in the light and the dark theme."""

from __future__ import annotations

import pytest

from .lab import SERVER_EXTENSION_MISSING, wait_for
from .ui_helpers import PANEL, hubctl, open_lab, open_panel, tid

THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}
HUBS = {"sealed": "--enable-curve --ping=250", "open": "--ping=250"}


@pytest.mark.parametrize("theme", list(THEMES))
def test_the_detail_says_whether_a_hub_encrypts(page, lab_factory, screenshot, theme):
    lab = lab_factory(settings={"@jupyterlab/apputils-extension:themes": {"theme": THEMES[theme]}})
    if not lab.has_server_extension():
        pytest.fail(SERVER_EXTENSION_MISSING)
    try:
        for hub, args in HUBS.items():
            started = hubctl(lab, "start", "-n", "1", "--id", hub, f"--controller-args={args}", "--json")
            assert started.returncode == 0, started.stderr
        for hub, encrypted in (("sealed", True), ("open", False)):
            wait_for(lambda: (lab.get(f"hubctl/api/hubs/{hub}").body.get("health") or {}).get("encrypted") is encrypted, 60,
                     f"the server to know whether {hub} encrypts", interval=0.5)
        open_lab(page, lab)
        assert open_panel(page) == "ready"
        panel = page.locator(PANEL)
        for hub, text in (("sealed", "encrypted"), ("open", "plaintext")):
            row = page.locator(f'.jp-HubCtl-hubRow[data-hub-id="{hub}"]')
            row.and_(page.locator('[data-state="running"]')).wait_for(timeout=60_000)
            row.click()
            badge = page.locator(f'{tid("hubctl-detail")}[data-hub-id="{hub}"] {tid("hubctl-encryption")}')
            badge.wait_for(timeout=30_000)
            assert badge.inner_text().strip() == text
            assert ("CurveZMQ" in badge.get_attribute("title")) is (text == "encrypted")
            screenshot(panel, f"{hub}-{theme}")
        assert page.hubctl_log.page_errors == []
    finally:
        lab.stop_hubs()
