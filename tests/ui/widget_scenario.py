"""The notebook widgets' scenario, the same in JupyterLab and in Notebook 7: they stay live while a
cell blocks (status clock, completed counts, engine metrics, progress bar), their buttons work while
a cell runs, a failing action says why inside the widget, and every text element reads well
(contrast >= 4.5) in the light and the dark theme.  Screenshots of each widget in both themes go to
tests/ui/artifacts/."""

from __future__ import annotations

import re
import time

from .conftest import PlaywrightError
from .contrast import contrasts
from .lab import wait_for
from .test_ui_hub_lifecycle import cells

NOTEBOOK = "widgets.ipynb"
TASKS = 60
STATUS, PROGRESS, BROWSER = ".hubctl.hubctl-status", ".hubctl.hubctl-task-progress", ".hubctl.hubctl-browser"
#: A byte count as the status widget writes it (render.nbytes).
MEMORY = re.compile(r"^([\d.]+) (B|kB|MB|GB|TB)$")
UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


def sources(hub_id: str) -> list:
    return [
        "%load_ext jupyter_hub_ctl\n"
        "get_ipython().magics_manager.registry['HubMagics'].controller_args = ['--ping=250']\n"
        f"%hub start -n 2 --id {hub_id}",
        "status = hub.status()\nstatus.update_interval = 0.5\nstatus",
        "def slow(x):\n    import time\n    time.sleep(0.4)\n    if x == 7:\n        raise ValueError(f'no {x}')\n"
        "    return x\n"
        f"ar = hub.load_balanced_view().map(slow, range({TASKS}))\nbar = hub.progress(ar)\nbar",
        "import time\ntime.sleep(15)",
        "import numpy as np\nhub[0].push({'big': np.zeros(2_500_000)}, block=True)",
        "browser = hub.results()\nbrowser.update_interval = 0.5\nbrowser",
        "time.sleep(15)",
    ]


def start_cell(page, index: int):
    """Run a cell and return once it runs (or ran); it may block for a while.

    Right after a notebook's kernel first reports idle, the page may drop the first run request
    (the cell stays ``[ ]``): the run is then asked for again."""
    cell = cells(page).nth(index)
    started = cell.locator(".jp-InputPrompt", has_text=re.compile(r"\[(\*|\d+)\]"))
    for _ in range(3):
        cell.locator(".jp-InputPrompt").click()
        page.keyboard.press("Escape")
        page.keyboard.press("Shift+Enter")
        try:
            started.wait_for(timeout=5_000)
            return cell
        except PlaywrightError:
            continue
    raise AssertionError(f"cell {index} did not start")


def run(page, index: int, timeout: float) -> str:
    """Run a cell to its end; its output text."""
    cell = start_cell(page, index)
    cell.locator(".jp-InputPrompt", has_text=re.compile(r"\[\d+\]")).wait_for(timeout=timeout)
    return cell.locator(".jp-OutputArea").inner_text()


def running(cell) -> bool:
    return "[*]" in cell.locator(".jp-InputPrompt").inner_text()


def grid_cell(page, row: int, column: int):
    """Row ``row`` (0-based, data rows) and column ``column`` (0 = its checkbox) of the results grid."""
    return page.locator(f"{BROWSER} .hubctl-grid > *").nth(10 * (row + 1) + column)


def summary(page) -> str:
    return page.locator(f"{BROWSER} .hubctl-head").first.inner_text()


def engine_metrics(page) -> dict:
    """{engine id: {"cpu", "memory", "task"}} as the status widget's engine table shows them."""
    return page.evaluate("""sel => Object.fromEntries(
        Array.from(document.querySelectorAll(sel + ' tr[data-engine-id]')).map(tr => [tr.dataset.engineId,
            Object.fromEntries(Array.from(tr.querySelectorAll('td[data-metric]'))
                .map(td => [td.dataset.metric, td.innerText.trim()]))]))""", STATUS)


def memory_bytes(text: str) -> float:
    found = MEMORY.match(text)
    assert found, f"not a memory figure: {text!r}"
    return float(found.group(1)) * UNITS[found.group(2)]


def check_contrast(page, theme: str):
    found = contrasts(page, ".hubctl")
    texts = {f["text"] for f in found}
    for expected in ("engines", "latest results", "refresh", "resubmit", "task", "submitted"):
        assert any(expected in t for t in texts), f"{expected!r} not among the checked texts"
    low = [f for f in found if f["ratio"] < 4.5]
    assert not low, f"{theme}: text below 4.5:1: {low}"
    return sorted(f["text"] for f in found)


def shoot_widgets(page, screenshot, theme: str):
    for name, selector in (("status", STATUS), ("progress", PROGRESS), ("results", BROWSER)):
        screenshot(page.locator(selector).first, f"{theme}-{name}")
    screenshot(page, f"{theme}-notebook")


def switch_to_dark(page):
    """Settings > Theme > JupyterLab Dark (the same menus in JupyterLab and Notebook 7)."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Theme$")).hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^JupyterLab Dark$")).click()
    page.wait_for_function("document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
    page.wait_for_timeout(1000)  # the theme's stylesheet applies after the attribute flips


def read_while_blocked(page, sleeper, after_read=lambda n: None) -> list:
    """Read the widgets every 1.5 s while ``sleeper`` runs (up to 8 times): (time, progress done,
    status clock, status completed, engine metrics); ``after_read(n)`` after the n-th read."""
    reads = []
    while running(sleeper) and len(reads) < 8:
        progress = page.locator(f"{PROGRESS} .hubctl-progress").inner_text()
        done = re.search(rf"(\d+)/{TASKS}", progress.replace("\u2007", " "))
        clock = page.locator(f"{STATUS} [data-figure='clock']").inner_text()
        completed = int(page.locator(f"{STATUS} [data-figure='completed'] b").inner_text())
        reads.append((time.monotonic(), int(done.group(1)) if done else None, clock, completed, engine_metrics(page)))
        after_read(len(reads))
        page.wait_for_timeout(1500)
    assert running(sleeper), "the sleeping cell ended before the widgets were read 8 times"
    return reads


def check_live_metrics(reads: list):
    """Both engines' CPU and memory (RSS > 0) show from some read on (an engine's first report may
    come after the first read on a loaded machine) and stay; some read shows a task they run."""
    reported = [i for i, read in enumerate(reads) if all(r["memory"] not in ("", "-") for r in read[4].values())]
    assert reported, reads
    for read in reads[reported[0]:]:
        metrics = read[4]
        assert sorted(metrics) == ["0", "1"], read
        for row in metrics.values():
            assert re.fullmatch(r"\d+%", row["cpu"]), read
            assert memory_bytes(row["memory"]) > 1e6, read  # a Python process: megabytes at least
    assert any(row["task"] not in ("", "-") for read in reads for row in read[4].values()), reads


def widgets_stay_live_and_readable(page, server, screenshot, open_notebook, foreign_error=lambda msg, stack: False):
    """The whole scenario on a server (``LabServer``) whose page ``open_notebook(page, server, name)``
    shows a notebook with its kernel idle; ``foreign_error(message, stack)`` says which page errors
    are the application's own, known and not ours (none by default)."""
    server.write_notebook(NOTEBOOK, sources("uiw"))
    open_notebook(page, server, NOTEBOOK)
    output = run(page, 0, timeout=120_000)
    assert "running with 2 engines" in output, output
    run(page, 1, timeout=60_000)
    page.locator(f"{STATUS} [data-figure='clock']").wait_for()
    run(page, 2, timeout=60_000)
    page.locator(PROGRESS).wait_for()

    # a cell blocks in time.sleep(15): the widgets keep moving
    sleeper = start_cell(page, 3)
    # a picture of the status while the engines work: their CPU, memory and task
    reads = read_while_blocked(page, sleeper,
                               lambda n: n == 2 and screenshot(page.locator(STATUS).first, "light-status-busy"))
    assert len(reads) >= 5
    counts = [r[1] for r in reads]
    assert None not in counts and counts == sorted(counts) and counts[-1] > counts[0], reads
    assert len({r[2] for r in reads}) >= 4, reads  # the status clock moves
    assert reads[-1][3] > reads[0][3], reads  # so does its completed count
    check_live_metrics(reads)
    sleeper.locator(".jp-InputPrompt", has_text=re.compile(r"\[\d+\]")).wait_for(timeout=60_000)
    page.locator(f"{PROGRESS} [data-figure='failed']").wait_for(timeout=60_000)
    assert "1 failed" in page.locator(f"{PROGRESS} [data-figure='failed']").inner_text()

    run(page, 4, timeout=120_000)
    run(page, 5, timeout=60_000)
    page.locator(f"{BROWSER} .hubctl-grid").wait_for()
    wait_for(lambda: f"of {TASKS + 1}" in summary(page), 30, "every task in the grid")

    # a failing action says why inside the widget: the hub refuses to resubmit the large push
    assert grid_cell(page, 0, 2).inner_text().strip() in ("push", "apply")
    grid_cell(page, 0, 1).click()  # the newest row: the push
    page.locator(f"{BROWSER} .hubctl-detail").wait_for()
    page.locator(f"{BROWSER} button", has_text="resubmit").click()
    error = page.locator(f"{BROWSER} .hubctl-error-box")
    error.wait_for(timeout=30_000)
    assert "resubmit failed" in error.inner_text() and "cannot be resubmitted" in error.inner_text()

    # resubmit while a cell blocks: the task runs again
    page.locator(f"{BROWSER} select").first.select_option("failed")
    wait_for(lambda: "1 of " in summary(page), 30, "the failed task alone in the grid")
    grid_cell(page, 0, 0).locator("input").check()
    sleeper = start_cell(page, 6)
    page.locator(f"{BROWSER} button", has_text="resubmit (1)").click()
    page.locator(f"{BROWSER} .hubctl-note", has_text="resubmitted 1 task").wait_for(timeout=10_000)
    wait_for(lambda: "2 of " in summary(page), 30, "the resubmitted task, failed again, in the grid")
    assert running(sleeper), "the resubmit should have run while the cell slept"
    grid_cell(page, 0, 1).click()
    detail = wait_for(lambda: (text := page.locator(f"{BROWSER} .hubctl-detail").inner_text()) and "failed" in text
                      and text, 30, "the failed task's details")
    assert "ValueError: no 7" in detail and "map_chunk" not in detail and "jupyter_hub_ctl" not in detail

    # the status widget has seen the second failure too: nothing the two theme checks read changes any more
    # (a failed result among the latest results adds its error text)
    page.locator(f"{STATUS} [data-figure='errors']", has_text="2 failed").wait_for(timeout=30_000)

    # readable in both themes; a picture of each widget in each
    checked = check_contrast(page, "light")
    shoot_widgets(page, screenshot, "light")
    switch_to_dark(page)
    dark = check_contrast(page, "dark")
    assert len(dark) == len(checked), (sorted(set(dark) - set(checked)), sorted(set(checked) - set(dark)))
    shoot_widgets(page, screenshot, "dark")
    log = page.hubctl_log
    errors = [m for m, stack in zip(log.page_errors, log.page_error_stacks) if not foreign_error(m, stack)]
    assert errors == [], list(zip(log.page_errors, log.page_error_stacks))
