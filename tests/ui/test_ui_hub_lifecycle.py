"""Create, watch, scale, connect to and stop a hub from the panel, at / and under a prefix.

``test_hub_lifecycle`` drives the real server extension, a real controller and real engines.
"""

from __future__ import annotations

import re
import time

import pytest

from .lab import SERVER_EXTENSION_MISSING
from .ui_helpers import PANEL, open_lab, open_panel, tid

PLUGIN = "jupyter-hub-ctl-labextension:plugin"
BASE_URLS = pytest.mark.parametrize("base_url", ["/", "/prefix/"], ids=["root", "prefix"])
NOTEBOOK = "hubs.ipynb"


@pytest.fixture
def real_lab(lab_factory, base_url):
    lab = lab_factory(base_url=base_url)
    if not lab.has_server_extension():
        pytest.fail(SERVER_EXTENSION_MISSING)
    yield lab
    lab.stop_hubs()  # what a failed test left running stops before the lab goes


@BASE_URLS
def test_hub_lifecycle(page, real_lab, screenshot):
    run_lifecycle(page, real_lab, screenshot, timeout=120_000, real=True)



def engine_rows(page):
    return page.locator(".jp-HubCtl-engineRow")


def cells(page):
    return page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell")


def cell_text(cell) -> str:
    return cell.locator(".cm-content").inner_text()


def wait_count(page, selector: str, count: int, timeout: float):
    page.wait_for_function(
        "([sel, n]) => document.querySelectorAll(sel).length === n",
        arg=[selector, count],
        timeout=timeout,
    )


def run_cell(page, cell, timeout: float) -> str:
    """Run a cell from command mode; return its output text once it has an execution count."""
    cell.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Enter")
    cell.locator(".jp-InputPrompt", has_text=re.compile(r"\[\d+\]")).wait_for(timeout=timeout)
    return cell.locator(".jp-OutputArea").inner_text()


def run_lifecycle(page, lab, screenshot, timeout: float, real: bool):
    lab.write_notebook(NOTEBOOK)
    open_lab(page, lab, f"lab/tree/{NOTEBOOK}")
    cells(page).first.wait_for()
    assert open_panel(page) == "ready"
    panel = page.locator(PANEL)

    # create a hub with two engines
    page.click(tid("hubctl-new"))
    page.fill(tid("hubctl-form-name"), "ui-test")
    launcher = page.locator(tid("hubctl-form-launcher"))
    if launcher.count() and launcher.locator('option[value="local"]').count():
        launcher.select_option("local")
    page.fill(tid("hubctl-form-n"), "2")
    screenshot(panel, "1-form")
    page.click(tid("hubctl-create"))
    detail = page.locator(tid("hubctl-detail"))
    detail.wait_for()
    hub_id = detail.get_attribute("data-hub-id")
    row = page.locator(f'.jp-HubCtl-hubRow[data-hub-id="{hub_id}"]')
    assert "ui-test" in row.inner_text()

    wait_count(page, ".jp-HubCtl-engineRow", 2, timeout)
    row.and_(page.locator('[data-state="running"]')).wait_for(timeout=timeout)
    assert row.locator(".jp-HubCtl-hubEngines").inner_text() == "2 engines"
    assert page.locator(tid("hubctl-queue-totals")).is_visible()
    screenshot(panel, "2-running")

    # scale to three: the row says "scaling 2 → 3" until the third engine is there, and the
    # input keeps the new count all along
    page.fill(tid("hubctl-scale-n"), "3")
    page.click(tid("hubctl-scale"))
    counts = row.locator(".jp-HubCtl-hubEngines")
    seen = set()
    deadline = time.monotonic() + timeout / 1000
    while time.monotonic() < deadline:
        seen.add(counts.inner_text())
        assert page.input_value(tid("hubctl-scale-n")) == "3"
        if "3 engines" in seen:
            break
        page.wait_for_timeout(50)
    assert seen <= {"2 engines", "scaling 2 → 3", "3 engines"} and "3 engines" in seen, seen
    wait_count(page, ".jp-HubCtl-engineRow", 3, timeout)
    assert len({engine_rows(page).nth(i).get_attribute("data-engine-id") for i in range(3)}) == 3
    screenshot(panel, "3-scaled")

    # insert the connect snippet into the (empty) first cell and run it
    snippet = lab.get(f"hubctl/api/hubs/{hub_id}/connection").body["snippet"]
    first_line = snippet.strip().splitlines()[0].strip()
    page.click(tid("hubctl-insert-snippet"))
    page.wait_for_function(
        "([sel, text]) => document.querySelector(sel)?.textContent.includes(text)",
        arg=[".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content", first_line],
    )
    assert cells(page).count() == 1
    output = run_cell(page, cells(page).first, timeout=timeout)
    assert "Traceback" not in output, output
    if not real:
        assert f"connected to {hub_id} with 3 engines" in output
    else:
        client = re.search(r"^(\w+)\s*=.*Client\(", snippet, re.MULTILINE)
        if client:
            check_engines_from_notebook(page, client.group(1), 3, timeout)
    screenshot(page, "4-snippet-ran")

    # drag the hub row onto the first cell: a new code cell with the snippet appears
    before = cells(page).count()
    drag(page, row, cells(page).first)
    page.wait_for_function(
        "([sel, n]) => document.querySelectorAll(sel).length === n",
        arg=[".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell", before + 1],
    )
    page.wait_for_function(
        "([sel, text]) => document.querySelector(sel)?.textContent.includes(text)",
        arg=[".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content", first_line],
    )
    assert first_line in cell_text(cells(page).first)
    screenshot(page, "5-dropped")

    # stop it: the notebook's kernel is connected, so the panel asks first and names it
    row.click()
    page.click(tid("hubctl-stop"))
    question = page.locator(tid("hubctl-stop-question"))
    question.wait_for(timeout=30_000)
    assert NOTEBOOK in question.inner_text(), question.inner_text()
    screenshot(page.locator(".jp-Dialog-content"), "6-stop-question")
    page.click(".jp-Dialog-button.jp-mod-warn")
    page.wait_for_function(
        """sel => { const row = document.querySelector(sel);
                    return !row || row.dataset.state === 'stopped'; }""",
        arg=f'.jp-HubCtl-hubRow[data-hub-id="{hub_id}"]',
        timeout=timeout,
    )
    screenshot(panel, "7-stopped")
    remaining = {hub["id"]: hub for hub in lab.get("hubctl/api/hubs").body["hubs"]}
    assert hub_id not in remaining or remaining[hub_id]["state"] == "stopped"
    assert page.locator(tid("hubctl-action-error")).count() == 0
    assert page.hubctl_log.page_errors == []
    # The browser logs every 4xx/5xx answer as a console error; the panel handles those
    # in place, and the steps above check what it shows. Anything else is a fault.
    assert [e for e in page.hubctl_log.console_errors if "Failed to load resource" not in e[0]] == []


def check_engines_from_notebook(page, name: str, n: int, timeout: float):
    """In the empty cell that running the snippet left below it, ask the client for engines."""
    # pinned by index: running the cell adds another one below it
    last = cells(page).nth(cells(page).count() - 1)
    assert cell_text(last).strip() == ""
    last.locator(".jp-InputPrompt").click()
    page.keyboard.press("Enter")
    page.keyboard.type(
        f"import time; [time.sleep(0.1) for _ in range(300) if len({name}.ids) < {n}]; "
        f"print('engines:', len({name}.ids))"
    )
    output = run_cell(page, last, timeout=timeout)
    assert f"engines: {n}" in output, output


def drag(page, source, target):
    """Press on ``source``, move in steps onto ``target`` and release there."""
    start = source.bounding_box()
    end = target.bounding_box()
    page.mouse.move(start["x"] + 20, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(start["x"] + 40, start["y"] + start["height"] / 2, steps=5)
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + end["height"] / 2, steps=20)
    page.mouse.up()
