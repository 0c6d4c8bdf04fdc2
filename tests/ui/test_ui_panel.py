"""The hubs panel in a real JupyterLab, whatever the server provides."""

from __future__ import annotations

import pytest

from .lab import LABEXTENSION, labextension_list
from .ui_helpers import PANEL, open_lab, open_panel, panel_status, tid

EXTENSION_ASSETS = f"/lab/extensions/{LABEXTENSION}/static/"


@pytest.fixture(scope="module")
def shared_lab(module_lab_factory):
    return module_lab_factory()


def test_labextension_is_installed_enabled_and_ok():
    listing = labextension_list()
    lines = [line for line in listing.splitlines() if LABEXTENSION in line]
    assert lines, f"{LABEXTENSION} not in `jupyter labextension list`:\n{listing}"
    assert "enabled" in lines[0] and "OK" in lines[0], lines[0]
    assert "disabled" not in lines[0], lines[0]


def test_panel_opens_from_left_sidebar(page, shared_lab, screenshot):
    lab = shared_lab
    open_lab(page, lab)
    status = open_panel(page)
    screenshot(page.locator(PANEL), "panel")
    if lab.has_server_extension():
        assert status == "ready"
        hubs = lab.get("hubctl/api/hubs").body["hubs"]
        if hubs:
            assert page.locator(".jp-HubCtl-hubRow").count() == len(hubs)
        else:
            empty = page.locator(tid("hubctl-empty"))
            assert "No hubs yet" in empty.inner_text()
    else:
        assert status == "disabled"
        message = page.locator(tid("hubctl-not-enabled")).inner_text()
        assert "server extension is not enabled" in message
        assert page.locator(tid("hubctl-retry")).is_visible()
        assert page.locator(tid("hubctl-new")).is_disabled()


def test_extension_js_loads_without_console_errors(page, shared_lab):
    lab = shared_lab
    open_lab(page, lab)
    open_panel(page)
    log = page.hubctl_log
    assets = {url: status for url, status in log.responses.items() if EXTENSION_ASSETS in url}
    assert any("remoteEntry." in url for url in assets), f"extension entry not loaded: {assets}"
    assert all(status == 200 for status in assets.values()), assets
    assert log.page_errors == []
    expected_404 = not lab.has_server_extension()
    unexpected = [
        (text, url) for text, url in log.console_errors
        # the browser's own note of the 404 that tells the panel "extension not enabled"
        if not (expected_404 and "/hubctl/api/" in url and "404" in text)
    ]
    assert unexpected == []


def test_panel_follows_base_url_prefix(page, lab_factory, screenshot):
    lab = lab_factory(base_url="/prefix/")
    open_lab(page, lab)
    status = open_panel(page)
    screenshot(page.locator(PANEL), "panel")
    calls = page.hubctl_log.hubctl_requests()
    assert calls, "the panel made no REST call"
    prefix = f"http://127.0.0.1:{lab.port}/prefix/hubctl/api/"
    assert all(url.startswith(prefix) for url in calls), calls
    assert status == ("ready" if lab.has_server_extension() else "disabled")


def test_unreachable_server_shows_retry_then_recovers(page, lab_factory, screenshot):
    lab = lab_factory()
    open_lab(page, lab)
    first = open_panel(page)
    # JupyterLab's own "Server Connection Error" dialog covers the panel while the server is
    # away: dismiss it whenever it is in the way (ours reports in place, checked below).
    lab_dialog = page.locator(".jp-Dialog", has_text="Server Connection Error")
    page.add_locator_handler(lab_dialog, lambda d: d.locator(".jp-Dialog-button").last.click())
    lab.stop()
    page.click(tid("hubctl-refresh"))
    page.wait_for_selector(tid("hubctl-unreachable"))
    assert panel_status(page) == "unreachable"
    assert "Cannot reach the Jupyter server" in page.locator(tid("hubctl-unreachable")).inner_text()
    retry = page.locator(f'{tid("hubctl-unreachable")} {tid("hubctl-retry")}')
    assert retry.is_visible()
    screenshot(page.locator(PANEL), "unreachable")
    # Our panel reports in place: no dialog of ours (JupyterLab may show its own).
    for dialog in page.locator(".jp-Dialog").all():
        assert "hub" not in dialog.inner_text().lower()

    lab.start()  # the same port, token and directories
    retry.click()
    page.wait_for_function(
        "([sel, want]) => document.querySelector(sel)?.dataset.status === want",
        arg=[PANEL, first],
    )
    assert page.locator(tid("hubctl-unreachable")).count() == 0
