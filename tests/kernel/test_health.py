"""A degraded hub in the kernel: ``%hub start --set SQLiteDB.max_page_count=...`` makes a real hub whose
task database fills up like a full disk; ``%hub status`` (the HubStatus widget) and ``%hub engines``
then show a degraded banner with the reason, and nothing of the kind while the hub is healthy."""

from __future__ import annotations

import asyncio

import pytest
from IPython.utils.capture import capture_output
from support.procs import FULL_DISK_PAGES, drive_until_degraded, until


@pytest.mark.asyncio
async def test_status_widget_and_engines_show_a_degraded_banner_with_the_reasons(ip, comms):
    with capture_output():
        ip.run_line_magic("hub", f"start -n 1 --id sick --set SQLiteDB.max_page_count={FULL_DISK_PAGES}")
    hub = ip.user_ns["hub"]
    status = ip.run_line_magic("hub", "status")
    try:
        status.update_interval = 0.3
        status.widget
        banner = status._w_banner
        assert status.health == {"state": "ok", "reasons": [], "degraded_since": None} and not status.degraded
        assert "DEGRADED" not in status.text() and "hubctl-degraded" not in status.html()
        assert comms.state(banner.model_id).get("value") == ""
        assert comms.state(banner.layout.model_id).get("display") == "none"  # no banner while healthy
        assert "DEGRADED" not in ip.run_line_magic("hub", "engines").text()

        await asyncio.to_thread(drive_until_degraded, hub.client)

        await until(lambda: status.degraded, 30, "the status widget to learn the hub is degraded")
        assert any("disk is full" in r for r in status.health["reasons"]) and status.health["degraded_since"]
        assert status.hub_state == "running"  # degraded, still running
        text = status.text()
        assert "DEGRADED since" in text and "disk is full" in text
        await until(lambda: "disk is full" in comms.state(banner.model_id).get("value", ""), 10,
                    "the reason in the frontend's banner")
        assert "Hub degraded since" in comms.state(banner.model_id)["value"]
        assert comms.state(banner.layout.model_id).get("display") is None  # shown
        engines = ip.run_line_magic("hub", "engines")
        assert "DEGRADED since" in engines.text() and "disk is full" in engines.html()
    finally:
        status.close()
    with capture_output():
        ip.run_line_magic("hub", "stop")
