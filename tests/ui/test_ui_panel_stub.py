"""The panel's form, errors, events, settings and commands, against ``stub_hubctl``.

One stub lab serves the whole module; each test works on hubs of its own.
"""

from __future__ import annotations

import pytest

from .lab import wait_for
from .ui_helpers import PANEL, open_lab, open_panel, tid, wait_kernel_idle

PLUGIN = "jupyter-hub-ctl-labextension:plugin"
SLOW_POLL = {"pollInterval": 300}  # five minutes: what appears sooner came by an event


@pytest.fixture(scope="module")
def stub(module_lab_factory):
    return module_lab_factory(stub=True, settings={PLUGIN: SLOW_POLL})


@pytest.fixture
def settings(stub):
    """Set the panel's settings for the next page load; put the slow poll back afterwards."""
    yield lambda values: stub.write_settings(PLUGIN, {**SLOW_POLL, **values})
    stub.write_settings(PLUGIN, SLOW_POLL)


def hub_row(page, hub_id):
    return page.locator(f'.jp-HubCtl-hubRow[data-hub-id="{hub_id}"]')


def created_hub_id(page) -> str:
    detail = page.locator(tid("hubctl-detail"))
    detail.wait_for()
    return detail.get_attribute("data-hub-id")


def test_form_fields_follow_the_launcher_schema(page, stub, screenshot):
    open_lab(page, stub)
    open_panel(page)
    page.click(tid("hubctl-new"))
    assert page.locator(tid("hubctl-option-log_level")).is_visible()
    assert page.locator(tid("hubctl-option-engine_timeout")).input_value() == "30"

    page.select_option(tid("hubctl-form-launcher"), "ssh")
    assert page.locator(tid("hubctl-option-log_level")).count() == 0
    hosts = page.locator(tid("hubctl-option-hosts"))
    assert hosts.is_visible()

    page.fill(tid("hubctl-form-name"), "form-test")
    page.click(tid("hubctl-create"))  # hosts is required and empty
    assert "required" in page.locator(".jp-HubCtl-field.jp-mod-error").inner_text()
    screenshot(page.locator(PANEL), "required")
    assert page.hubctl_log.hubctl_requests("POST") == []

    hosts.fill("node1, node2")
    page.fill(tid("hubctl-form-n"), "1")
    page.click(tid("hubctl-create"))
    hub_id = created_hub_id(page)
    assert hub_row(page, hub_id).locator(".jp-HubCtl-hubLauncher").inner_text() == "ssh"
    assert stub.get(f"hubctl/api/hubs/{hub_id}/stub-options").body == {"options": {"hosts": ["node1", "node2"]}}
    assert page.locator(tid("hubctl-form")).count() == 0


def test_server_refusal_is_reported_in_the_panel(page, stub, screenshot):
    open_lab(page, stub)
    open_panel(page)
    page.click(tid("hubctl-new"))
    page.fill(tid("hubctl-form-n"), "99")
    page.click(tid("hubctl-create"))
    error = page.locator(tid("hubctl-action-error"))
    error.wait_for()
    assert "n must be an integer from 1 to 16" in error.inner_text()
    assert page.locator(".jp-Dialog").count() == 0
    assert page.locator(tid("hubctl-form")).is_visible()  # nothing typed is lost
    screenshot(page.locator(PANEL), "refused")
    error.locator("button").click()
    assert page.locator(tid("hubctl-action-error")).count() == 0


def test_hubs_started_elsewhere_appear_and_go_by_events(page, stub):
    open_lab(page, stub)
    open_panel(page)
    hub = stub.request("POST", "hubctl/api/hubs", {"name": "from-elsewhere", "n": 1}).body
    row = hub_row(page, hub["id"])
    row.wait_for(timeout=5_000)
    row.click()
    page.locator(".jp-HubCtl-engineRow").first.wait_for(timeout=5_000)
    assert stub.request("DELETE", f"hubctl/api/hubs/{hub['id']}").status == 204
    row.wait_for(state="detached", timeout=5_000)
    assert page.locator(tid("hubctl-detail")).count() == 0


def test_magic_snippet_style(page, stub, settings):
    settings({"snippetStyle": "magic"})
    hub = stub.request("POST", "hubctl/api/hubs", {"name": "magic", "n": 1}).body
    wait_for(lambda: stub.get(f"hubctl/api/hubs/{hub['id']}").body["state"] == "running", 10, "a running hub")
    stub.write_notebook("magic.ipynb")
    open_lab(page, stub, "lab/tree/magic.ipynb")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    open_panel(page)
    hub_row(page, hub["id"]).click()
    page.click(tid("hubctl-insert-snippet"))
    page.wait_for_function(
        "([sel, text]) => document.querySelector(sel)?.textContent.includes(text)",
        arg=[".jp-Notebook .jp-Cell .cm-content", f"%hub connect {hub['id']}"],
    )
    text = page.locator(".jp-Notebook .jp-Cell .cm-content").first.inner_text()
    wait_kernel_idle(page)  # the notebook finished loading, and did not overwrite the cell
    assert page.locator(".jp-Notebook .jp-Cell .cm-content").first.inner_text() == text
    assert "%load_ext jupyter_hub_ctl" in text
    assert stub.request("DELETE", f"hubctl/api/hubs/{hub['id']}").status == 204


def palette_items(page, query: str):
    page.keyboard.press("Control+Shift+C")
    palette = page.locator(".lm-CommandPalette:visible")
    palette.locator(".lm-CommandPalette-input").fill(query)
    return palette.locator(".lm-CommandPalette-item:visible")


def test_command_palette_entries(page, stub):
    hub = stub.request("POST", "hubctl/api/hubs", {"name": "palette", "n": 1}).body
    wait_for(lambda: stub.get(f"hubctl/api/hubs/{hub['id']}").body["state"] == "running", 10, "a running hub")
    stub.write_notebook("palette.ipynb")
    open_lab(page, stub, "lab/tree/palette.ipynb")
    wait_kernel_idle(page)
    open_panel(page)
    hub_row(page, hub["id"]).click()

    items = palette_items(page, "Parallel Hub")
    labels = items.locator(".lm-CommandPalette-itemLabel").all_inner_texts()
    for label in ("Show Parallel Hubs", "Create Parallel Hub…", "Refresh Parallel Hubs",
                  "Insert Parallel Hub Connect Snippet"):
        assert label in labels
    items.filter(has_text="Insert Parallel Hub Connect Snippet").click()
    page.wait_for_function(
        "([sel, text]) => document.querySelector(sel)?.textContent.includes(text)",
        arg=[".jp-Notebook .jp-Cell .cm-content", "connected to', hub_id"],
    )

    palette_items(page, "Create Parallel Hub").filter(has_text="Create Parallel Hub…").click()
    page.locator(tid("hubctl-form")).wait_for()
    assert page.locator(PANEL).is_visible()
    assert stub.request("DELETE", f"hubctl/api/hubs/{hub['id']}").status == 204
