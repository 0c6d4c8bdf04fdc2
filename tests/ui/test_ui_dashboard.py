"""The hubs panel and the hub dashboard in a real JupyterLab, in the light and the dark theme: the
create form checks as the user types, a failed start stays listed with its reason until dismissed,
the dashboard opened from the panel follows 500 tasks on 3 engines (bars in 3 lanes, throughput
moving), and the notebook form of the dashboard updates while a cell sleeps. Every text element of
the panel and the dashboard reads at a contrast of at least 4.5; screenshots of each view in both
themes go to tests/ui/artifacts/."""

from __future__ import annotations

import threading
import time

import pytest

from .contrast import contrasts
from .lab import SERVER_EXTENSION_MISSING, wait_for
from .test_ui_hub_lifecycle import cells
from .widget_scenario import run, running, start_cell
from .ui_helpers import PANEL, open_lab, open_panel, tid, wait_kernel_idle

THEME_SETTINGS = {
    "light": {},
    "dark": {"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}},
}
DASHBOARD = ".jp-HubCtl-dashboard"
TASKS = 500


@pytest.fixture(scope="module", params=["light", "dark"])
def themed_lab(request, module_lab_factory):
    lab = module_lab_factory(settings=THEME_SETTINGS[request.param])
    if not lab.has_server_extension():
        pytest.fail(SERVER_EXTENSION_MISSING)
    lab.theme = request.param
    yield lab
    lab.stop_hubs()


def open_themed(page, lab, path: str = "lab"):
    open_lab(page, lab, path)
    light = "true" if lab.theme == "light" else "false"
    page.wait_for_function(f"document.body.dataset.jpThemeLight === '{light}'", timeout=30_000)


def assert_readable(page, selector: str, expected: tuple):
    """Every text element under ``selector`` at a contrast of at least 4.5:1 (and the expected texts among them)."""
    found = contrasts(page, selector)
    texts = " | ".join(f["text"] for f in found)
    for text in expected:
        assert text in texts, f"{text!r} not among the checked texts: {texts}"
    low = [f for f in found if f["ratio"] < 4.5]
    assert not low, f"text below 4.5:1: {low}"


def dataset(page, selector: str) -> dict:
    return page.evaluate("sel => ({...document.querySelector(sel).dataset})", selector)


def test_create_form_checks_fields_as_the_user_types(page, themed_lab, screenshot):
    lab, theme = themed_lab, themed_lab.theme
    open_themed(page, lab)
    assert open_panel(page) == "ready"
    page.click(tid("hubctl-new"))
    form = page.locator(tid("hubctl-form"))
    page.locator(tid("hubctl-form-launcher")).wait_for()  # the launchers (and their options) arrived
    # before anything is typed: the default count and the limits, no errors, advanced options folded
    help_text = form.inner_text()
    assert "0 to 64; 2 when left empty" in help_text, help_text
    assert page.get_attribute(tid("hubctl-form-n"), "placeholder") == "2 (default)"
    assert form.locator(tid("hubctl-field-error")).count() == 0
    assert not page.locator(tid("hubctl-option-engine_cmd")).is_visible()
    assert "<profile>/log/" in form.locator("code").all_inner_texts()  # help markup rendered, not raw
    assert "``" not in help_text
    # typing: each problem shows next to its field at once, without a submit
    page.fill(tid("hubctl-form-name"), "my hub!")
    page.fill(tid("hubctl-form-n"), "99")
    errors = form.locator(tid("hubctl-field-error"))
    wait_for(lambda: errors.count() == 2, 10, "two inline errors")
    assert "starting with a letter or digit" in errors.nth(0).inner_text()
    assert errors.nth(1).inner_text() == "a whole number from 0 to 64"
    page.click(".jp-HubCtl-advanced > summary")
    page.fill(tid("hubctl-option-environment"), '{"OMP_NUM_THREADS": 1}')
    wait_for(lambda: errors.count() == 3, 10, "the option's inline error")
    assert "every value a string" in errors.nth(2).inner_text()
    screenshot(page.locator(PANEL), f"{theme}-form-errors")
    assert_readable(page, PANEL, ("Engines", "a whole number from 0 to 64", "Advanced options"))
    # corrected: the errors go as the user types
    page.fill(tid("hubctl-form-name"), "my-hub")
    page.fill(tid("hubctl-form-n"), "0")
    page.fill(tid("hubctl-option-environment"), '{"OMP_NUM_THREADS": "1"}')
    wait_for(lambda: errors.count() == 0, 10, "the errors to go")
    screenshot(page.locator(PANEL), f"{theme}-form")
    page.click(tid("hubctl-cancel"))
    assert lab.get("hubctl/api/hubs").body["hubs"] == []


def test_a_failed_start_stays_listed_with_its_reason_until_dismissed(page, themed_lab, screenshot):
    lab, theme = themed_lab, themed_lab.theme
    open_themed(page, lab)
    open_panel(page)
    page.click(tid("hubctl-new"))
    page.fill(tid("hubctl-form-name"), f"broken-{theme}")
    page.fill(tid("hubctl-form-n"), "1")
    page.click(".jp-HubCtl-advanced > summary")
    page.fill(tid("hubctl-option-engine_cmd"), "/bin/false")
    page.click(tid("hubctl-create"))
    row = page.locator(f'.jp-HubCtl-hubRow[data-hub-id="broken-{theme}"]')
    row.and_(page.locator('[data-state="failed"]')).wait_for(timeout=120_000)
    assert "exited with code 1 before registering" in row.locator(tid("hubctl-hub-reason")).inner_text()
    end = page.locator(tid("hubctl-end-info"))
    assert "engines exited with 1" in end.locator(tid("hubctl-exit-codes")).inner_text()
    assert "/bin/false" in end.locator(tid("hubctl-log-tail")).inner_text()
    screenshot(page.locator(PANEL), f"{theme}-failed-start")
    assert_readable(page, PANEL, ("failed", "exited with code", "Dismiss"))
    # still there after a reload: the server keeps it, not this page
    open_themed(page, lab)
    open_panel(page)
    row.wait_for()
    row.click()
    page.click(tid("hubctl-dismiss"))
    row.wait_for(state="detached", timeout=30_000)
    assert lab.get(f"hubctl/api/hubs/broken-{theme}").status == 404


def run_tasks(connection_file: str, n: int, done: dict):
    """Run ``n`` short tasks (every 50th fails) through a client of this process; ``done`` gets the result."""
    from jupyter_hub_ctl import Client

    def work(x):
        import time
        time.sleep(0.02 + 0.04 * (x % 3))
        if x % 50 == 7:
            raise ValueError(f"no {x}")
        return x

    with Client(connection_file) as rc:
        ar = rc.load_balanced_view().map_async(work, range(n))
        try:
            ar.get(timeout=300)
        except Exception as e:  # the failures of work() are expected
            done["error"] = type(e).__name__
        done["finished"] = time.monotonic()


def test_dashboard_from_the_panel_follows_500_tasks_on_3_engines(page, themed_lab, screenshot):
    lab, theme = themed_lab, themed_lab.theme
    hub_id = f"dash-{theme}"
    assert lab.request("POST", "hubctl/api/hubs", {"name": hub_id, "n": 3}).status == 202
    wait_for(lambda: lab.get(f"hubctl/api/hubs/{hub_id}").body.get("engines") == 3, 120, "three engines")
    open_themed(page, lab)
    open_panel(page)
    page.click(f'.jp-HubCtl-hubRow[data-hub-id="{hub_id}"]')
    page.click(tid("hubctl-open-dashboard"))
    dashboard = page.locator(f'{DASHBOARD}[data-hub-id="{hub_id}"]')
    dashboard.and_(page.locator('[data-status="live"]')).wait_for(timeout=30_000)
    assert page.locator(f"#hubctl-dashboard-{hub_id}").is_visible()  # a main-area tab

    connection = lab.get(f"hubctl/api/hubs/{hub_id}/connection").body["connection_file"]
    done: dict = {}
    worker = threading.Thread(target=run_tasks, args=(connection, TASKS, done), daemon=True)
    worker.start()
    stream, throughput = '[data-testid="hubctl-task-stream"]', '[data-testid="hubctl-throughput"]'
    reads = []
    while "finished" not in done and len(reads) < 60:
        reads.append((dataset(page, stream), dataset(page, throughput)))
        page.wait_for_timeout(500)
    worker.join(120)
    assert "finished" in done and done.get("error") == "CompositeError", done  # the failures of work()
    during = [(int(s.get("lanesWithBars", 0)), int(t.get("completed", 0))) for s, t in reads]
    assert len(during) >= 4, during
    completed = [c for _, c in during]
    assert completed == sorted(completed) and len(set(completed)) >= 3, during  # it moved while tasks ran
    assert any(lanes == 3 for lanes, _ in during), during
    assert int(reads[-1][0]["lanes"]) == 3

    # every task counted once, the failures marked
    row = page.locator('.jp-HubCtl-progressRow[data-key="work"]')
    wait_for(lambda: row.get_attribute("data-done") == str(TASKS - TASKS // 50), 30, "the progress of work()")
    assert row.get_attribute("data-failed") == str(TASKS // 50) and row.get_attribute("data-total") == str(TASKS)
    wait_for(lambda: int(dataset(page, stream).get("failedBars", 0)) == TASKS // 50, 30, "the failed bars")
    wait_for(lambda: int(dataset(page, throughput).get("completed", 0)) == TASKS - TASKS // 50, 30,
             "throughput to count every task")
    assert page.locator(f'{DASHBOARD} .jp-HubCtl-dashTable tbody tr').count() == 3

    # hover a bar: its details; click: pinned under the chart
    box = page.locator(stream).bounding_box()
    tooltip = page.locator(tid("hubctl-task-tooltip"))
    for x in range(int(box["width"]) - 8, 40, -3):
        page.mouse.move(box["x"] + x, box["y"] + 20)
        if tooltip.is_visible():
            break
    assert tooltip.is_visible() and "work" in tooltip.inner_text()
    assert dataset(page, stream).get("paused") == "true"  # the bar under the pointer holds still
    screenshot(page.locator(DASHBOARD), f"{theme}-task-stream-hover")  # the tooltip reaches past the chart
    tip, area = tooltip.bounding_box(), page.locator(DASHBOARD).bounding_box()
    assert area["y"] <= tip["y"] and tip["y"] + tip["height"] <= area["y"] + area["height"]  # not cut off
    page.mouse.down()
    page.mouse.up()
    pinned = page.locator(tid("hubctl-task-pinned"))
    pinned.wait_for()
    assert pinned.get_attribute("data-msg-id")
    assert "msg_id" in pinned.inner_text() and "engine" in pinned.inner_text()

    # sortable engines: by CPU, then back by id
    page.click(f'{DASHBOARD} [data-sort="cpu"]')
    page.click(f'{DASHBOARD} [data-sort="id"]')
    ids = page.locator(f"{DASHBOARD} .jp-HubCtl-dashTable tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.engineId)")
    assert ids == ["0", "1", "2"]

    assert_readable(page, f"{PANEL}, {DASHBOARD}",
                    ("Task stream", "Throughput", "Queue depth", "Engines", "Progress", "work", "msg_id"))
    screenshot(page, f"{theme}-dashboard")
    for name, part in (("throughput", throughput), ("queue-depth", '[data-testid="hubctl-queue-depth"]'),
                       ("engines", tid("hubctl-dash-engines")), ("progress", tid("hubctl-progress")),
                       ("panel", PANEL)):
        screenshot(page.locator(part), f"{theme}-{name}")
    assert page.hubctl_log.page_errors == []
    assert lab.request("DELETE", f"hubctl/api/hubs/{hub_id}").status == 204


def test_notebook_dashboard_updates_while_a_cell_sleeps(page, themed_lab, screenshot):
    lab, theme = themed_lab, themed_lab.theme
    name = f"dashboard-{theme}.ipynb"
    lab.write_notebook(name, [
        f"%load_ext jupyter_hub_ctl\n%hub start -n 2 --id nb-{theme}",
        "hub.dashboard()",
        "def work(x):\n    import time\n    time.sleep(0.1)\n    return x\n"
        "ar = hub.load_balanced_view().map_async(work, range(200))\nimport time\ntime.sleep(15)",
        "%hub stop",
    ])
    open_themed(page, lab, f"lab/tree/{name}")
    cells(page).first.wait_for()
    wait_kernel_idle(page)
    assert "running with 2 engines" in run(page, 0, timeout=120_000)
    run(page, 1, timeout=60_000)
    output = cells(page).nth(1).locator(DASHBOARD)
    output.and_(page.locator('[data-status="live"]')).wait_for(timeout=30_000)
    throughput = f".jp-NotebookPanel:not(.lm-mod-hidden) {DASHBOARD} [data-testid='hubctl-throughput']"
    sleeper = start_cell(page, 2)
    reads = []
    while running(sleeper) and len(reads) < 8:
        reads.append(int(dataset(page, throughput).get("completed", 0)))
        page.wait_for_timeout(1500)
    assert running(sleeper), "the sleeping cell ended before the dashboard was read 8 times"
    assert reads == sorted(reads) and reads[-1] > reads[0] and len(set(reads)) >= 4, reads
    screenshot(output, f"{theme}-notebook-dashboard")
    assert_readable(page, f".jp-NotebookPanel:not(.lm-mod-hidden) {DASHBOARD}", ("Task stream", "work"))
    wait_for(lambda: not running(sleeper), 60, "the sleeping cell to end")
    assert "stopped" in run(page, 3, timeout=60_000)
