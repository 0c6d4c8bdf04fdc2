"""The panel with a hub of hundreds of engines: a summary, one page of rows, and "Show more".

A hub is started through the REST API with one real engine, then an engine swarm
(benchmarks/swarm.py) adds 250 wire-level engines to it.  The lab loads this checkout's
build of the lab extension (linked into its data dir, which JupyterLab reads first).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

import jupyter_hub_ctl
from support.procs import WaitTimeout, wait_for

from .lab import SERVER_EXTENSION_MISSING, LabServer
from .widget_scenario import switch_to_dark
from .ui_helpers import open_lab, open_panel, tid

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from swarm import Swarm  # noqa: E402

SWARM = 250
PAGE = 200  # the server's page of engines
JOINING = 5  # engines that join once all are shown

#: Counts the panel's engine rows from now on and keeps the fewest seen (window.hubctlFewestRows).
FEWEST_ROWS = """() => {
  const count = () => document.querySelectorAll('.jp-HubCtl-engineRow').length;
  window.hubctlFewestRows = count();
  new MutationObserver(() => { window.hubctlFewestRows = Math.min(window.hubctlFewestRows, count()); })
    .observe(document.querySelector('.jp-HubCtl-engines tbody'), { childList: true });
}"""
BUILD = Path(jupyter_hub_ctl.__file__).parent / "labextension"


@pytest.fixture
def scale_lab(tmp_path):
    if not (BUILD / "package.json").exists():
        pytest.skip(f"no lab extension build in {BUILD} (run `jlpm build:prod` in labextension/)")
    lab = LabServer(root=tmp_path / "lab")
    target = lab.home / "data" / "labextensions" / "jupyter-hub-ctl-labextension"
    target.parent.mkdir(parents=True)
    os.symlink(BUILD, target)
    lab.start()
    try:
        if not lab.has_server_extension():
            pytest.fail(SERVER_EXTENSION_MISSING)
        yield lab
    finally:
        lab.stop_hubs()
        lab.stop()
        lab.remove_runtime()


def test_a_hub_of_hundreds_of_engines_shows_a_summary_and_one_page(page, scale_lab, screenshot):
    lab = scale_lab
    reply = lab.request("POST", "hubctl/api/hubs", {"name": "big", "n": 1})
    assert reply.status == 202, reply.body
    open_lab(page, lab)
    assert open_panel(page) == "ready"
    page.locator('.jp-HubCtl-hubRow[data-hub-id="big"]').click()
    page.locator(".jp-HubCtl-engineRow").first.wait_for(timeout=120_000)
    client_file = lab.get("hubctl/api/hubs/big/connection").body["connection_file"]
    engine_file = client_file.replace("-client.json", "-engine.json")
    total = SWARM + 1
    with Swarm(engine_file, SWARM, log_dir=str(lab.root)):
        summary = page.locator(tid("hubctl-engine-summary"))
        page.wait_for_function(
            "([sel, text]) => document.querySelector(sel)?.textContent.startsWith(text)",
            arg=[tid("hubctl-engine-summary"), f"{total} engines"],
            timeout=120_000,
        )
        # the swarm's engines, like ipyparallel's, do not say their host: only the real one counts
        assert summary.inner_text() == f"{total} engines on 1 host: {total} running"
        rows = page.locator(".jp-HubCtl-engineRow")
        assert rows.count() == PAGE  # one page in the DOM, not every engine
        more = page.locator(tid("hubctl-more-engines"))
        assert more.inner_text() == f"Show more ({PAGE} of {total})"
        page_body = lab.get("hubctl/api/hubs/big/engines").body
        assert page_body["total"] == total and len(page_body["engines"]) == PAGE
        assert page_body["summary"]["states"] == {"running": total}
        screenshot(page, "light-summary")
        more.scroll_into_view_if_needed()
        screenshot(page, "light-more")
        clicked = time.monotonic()
        more.click()
        page.wait_for_function("n => document.querySelectorAll('.jp-HubCtl-engineRow').length === n", arg=total)
        assert not more.is_visible()
        assert summary.is_visible()
        ids = [int(rows.nth(i).get_attribute("data-engine-id")) for i in range(total)]
        assert ids == sorted(ids) and len(set(ids)) == total
        # a refresh reads the first page again, then the page "Show more" added
        def reads(part):
            return len([url for _, url in page.hubctl_log.requests if f"/hubs/big/engines?offset={part}&" in url])

        firsts, seconds = reads(0), reads(PAGE)
        # read for "Show more", then again only at the later pages' re-read period (5 s): never in a loop
        assert 1 <= seconds <= 2 + int((time.monotonic() - clicked) / 5), seconds
        for _ in range(3):  # a click while the panel's own poll refreshes may be taken over by it
            page.click(tid("hubctl-refresh"))
            try:
                wait_for(lambda: reads(0) > firsts, 10, "the refresh to read the first page again")
                break
            except WaitTimeout:
                continue
        wait_for(lambda: reads(PAGE) > seconds, 30, "the second page to be read again after the first")
        page.wait_for_function("n => document.querySelectorAll('.jp-HubCtl-engineRow').length === n", arg=total)
        # more engines join: their event replaces the first page and keeps the rows after it (the
        # table never falls back to one page), and the next read shows the newcomers too ("Show
        # more" asked for a page more than there were)
        page.evaluate(FEWEST_ROWS)
        with Swarm(engine_file, JOINING, log_dir=str(lab.root)):
            total += JOINING
            page.wait_for_function("n => document.querySelectorAll('.jp-HubCtl-engineRow').length === n",
                                   arg=total, timeout=60_000)
            assert page.evaluate("window.hubctlFewestRows") >= total - JOINING
            assert summary.inner_text().startswith(f"{total} engines")
            assert not more.is_visible()
            switch_to_dark(page)
            summary.scroll_into_view_if_needed()
            screenshot(page, "dark-summary")
            rows.nth(total - 1).scroll_into_view_if_needed()
            screenshot(page, "dark-all")
