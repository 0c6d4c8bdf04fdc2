"""Widgets after real hub events: engines register and die, tasks complete and fail, the hub stops.

Widgets get recording comms (see conftest ``comms``): what a frontend would receive is asserted
along with the views' own state, and every message must come from the thread running the
event loop (the kernel's main thread), never from a client IO or worker thread.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time

import cloudpickle
import pytest
from support.procs import until

from jupyter_hub_ctl.cluster import background
from jupyter_hub_ctl.kernel.widgets import EngineProgress, HubStatus, wait_for_engines

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # engines cannot import this test module


def fail(x):
    print("about to fail on", x)
    raise ValueError(f"bad input {x}")


def square(x):
    return x * x


@pytest.mark.asyncio
async def test_status_widget_follows_registration_tasks_and_engine_death(start_hub, comms):
    conn = start_hub(1)
    main = threading.get_ident()
    view = HubStatus(conn.client, hub_id=conn.id, update_interval=0.3)
    view.refresh()
    widget = view.widget
    assert [e["id"] for e in view.engines] == [0] and view.hub_state == "running"
    assert view.start() and view.live
    started = time.monotonic()

    # an engine registers
    assert background.request_scale(conn.id, 2)
    await until(lambda: [e["id"] for e in view.engines] == [0, 1], 60, "the second engine in the table")
    await until(lambda: "<td style='padding:1px 8px;text-align:left;border-bottom:1px solid #ddd'>1</td>"
                in comms.state(view._w_engines.model_id).get("value", ""), 10, "engine 1 in the frontend's table")

    # tasks complete and fail
    lb = conn.client.load_balanced_view()
    good = lb.map(square, range(6))
    bad = lb.apply(fail, 3)
    assert good.get(30) == [0, 1, 4, 9, 16, 25]
    with pytest.raises(Exception):
        bad.get(30)
    await until(lambda: view.totals.get("completed", 0) >= 7 and view.errors_seen >= 1, 30, "the results")
    assert any(r["status"] == "error" and "ValueError: bad input 3" in r["summary"] for r in view.recent)
    assert any(r["status"] == "ok" for r in view.recent)
    await until(lambda: "ValueError: bad input 3" in comms.state(view._w_recent.model_id).get("value", ""), 10,
                "the error in the frontend's result list")

    # an engine dies
    victim = next(e for e in conn.client.engines_info() if e["id"] == 0)
    os.kill(victim["pid"], signal.SIGKILL)
    await until(lambda: any(e["id"] == 0 and e["state"] == "gone" for e in view.engines), 30,
                "engine 0 listed as gone")
    assert view.totals["engines"] == 1
    await until(lambda: "gone" in comms.state(view._w_engines.model_id).get("value", ""), 10,
                "'gone' in the frontend's table")

    # throttled: never more renders than the rate allows, and all of them from this thread
    elapsed = time.monotonic() - started
    assert view.renders <= elapsed * view.max_updates_per_second + 3
    assert comms.threads() == {main}
    model_id = widget.model_id
    view.close()
    assert not view.live and comms.closed(model_id)


@pytest.mark.asyncio
async def test_status_widget_stops_updating_when_the_hub_stops(start_hub, comms):
    from jupyter_hub_ctl.cluster import find_hub

    mine, theirs = start_hub(1), start_hub(1)
    # stopped from this kernel (%hub stop): its views end at once
    view = mine.status()
    view.update_interval = 0.3
    view.widget
    await until(lambda: view.polls >= 2, 10, "live polls")
    mine.stop()
    assert not view.live and view.hub_state == "stopped" and view.ended == f"hub {mine.id} stopped"
    assert "not updating" in comms.state(view._w_header.model_id)["value"]
    # stopped by another tool (the CLI, the lab panel): the view notices on its next poll
    other = HubStatus(theirs.client, hub_id=theirs.id, update_interval=0.3)
    other.refresh()
    other.widget
    other.start()
    await until(lambda: other.polls >= 2, 10, "live polls")
    await asyncio.to_thread(find_hub(theirs.id).stop_sync)
    await until(lambda: not other.live, 30, "the view to stop updating")
    assert (other.hub_state, other.ended) == ("stopped", f"hub {theirs.id} stopped")
    assert "not updating" in comms.state(other._w_header.model_id)["value"]
    polls = other.polls
    other.poke()  # nothing listens any more
    assert other._task is None and other.polls == polls
    assert "stopped" in other.text()
    theirs.stop()


@pytest.mark.asyncio
async def test_closed_widgets_stop_updating(start_hub, comms):
    conn = start_hub(1)
    closed_by_view = HubStatus(conn.client, hub_id=conn.id, update_interval=0.2)
    closed_by_widget = HubStatus(conn.client, hub_id=conn.id, update_interval=0.2)
    for view in (closed_by_view, closed_by_widget):
        view.refresh()
        view.widget
        view.start()
    await until(lambda: closed_by_view.polls >= 2 and closed_by_widget.polls >= 2, 10, "live polls")
    closed_by_view.close()
    closed_by_widget.widget.close()  # e.g. the notebook closed it
    await until(lambda: not closed_by_widget.live, 10, "the widget-closed view to stop")
    assert not closed_by_view.live and closed_by_widget.ended == "the widget was closed"
    assert closed_by_view._task is None and closed_by_widget._task is None
    bundle = closed_by_view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" not in bundle and "hub" in bundle["text/plain"]


@pytest.mark.asyncio
async def test_task_progress_bar_follows_an_async_result(start_hub, comms, tmp_path):
    conn = start_hub(2)
    gate = tmp_path / "gate"

    def gated(x, gate=str(gate)):
        import os
        import time

        deadline = time.time() + 30
        while x >= 2 and not os.path.exists(gate) and time.time() < deadline:
            time.sleep(0.01)
        return x

    ar = conn.client.load_balanced_view().map(gated, range(4))
    bar = conn.progress(ar)
    widget = bar.widget
    await until(lambda: bar.done == 2, 30, "the two ungated tasks")
    await until(lambda: comms.state(bar._w_bar.model_id).get("value") == 2, 10, "2 in the frontend's bar")
    assert bar.live and bar.total == 4
    gate.write_text("go")
    await until(lambda: not bar.live, 30, "the bar to finish")
    assert bar.done == 4 and bar.outcome == "ok"
    assert comms.state(bar._w_bar.model_id)["bar_style"] == "success"
    assert "4/4 tasks — done" in comms.state(bar._w_label.model_id)["value"]
    assert widget is bar.widget

    failing = conn.progress(conn.client.load_balanced_view().map(fail, [1, 2]), description="failing")
    failing.widget
    await until(lambda: not failing.live, 30, "the failing bar to finish")
    assert "ValueError" in failing.outcome or "CompositeError" in failing.outcome
    assert comms.state(failing._w_bar.model_id)["bar_style"] == "danger"


@pytest.mark.asyncio
async def test_engine_progress_counts_registrations(start_hub, comms):
    conn = start_hub(1)
    bar = EngineProgress(3, client=conn.client)
    bar.refresh()
    bar.widget
    bar.start()
    assert bar.registered == 1
    background.request_scale(conn.id, 3)
    await until(lambda: not bar.live, 60, "three engines")
    assert bar.registered == 3 and bar.outcome == "ok"
    assert comms.state(bar._w_bar.model_id)["value"] == 3


def test_wait_for_engines_blocks_with_progress(start_hub, capsys):
    conn = start_hub(1)
    background.request_scale(conn.id, 2)
    assert wait_for_engines(conn.client, 2, timeout=60, widget=False) == [0, 1]
    out = capsys.readouterr().out
    assert "2/2 engines registered" in out
    with pytest.raises(TimeoutError, match="only 2 of 5"):
        wait_for_engines(conn.client, 5, timeout=0.5, widget=False)


@pytest.mark.asyncio
async def test_results_browser_filters_shows_details_and_resubmits_failures(start_hub, comms):
    conn = start_hub(2)
    client = conn.client
    lb = client.load_balanced_view()
    with lb.temp_flags(label="squares"):
        assert lb.map(square, range(3)).get(30) == [0, 1, 4]
    with lb.temp_flags(label="boom"):
        bad = lb.apply(fail, 7)
    with pytest.raises(Exception):
        bad.get(30)
    [bad_id] = bad.msg_ids
    browser = conn.results(live=True)
    browser.update_interval = 0.3
    widget = browser.widget
    assert {r["state"] for r in browser.records} == {"completed", "failed"}
    assert len(browser.records) == 4

    browser.filter(state="failed")
    await until(lambda: [r["msg_id"] for r in browser.records] == [bad_id], 10, "only the failure listed")
    assert browser.records[0]["label"] == "boom" and "ValueError: bad input 7" in browser.records[0]["summary"]

    browser.filter(state="all", label="squ")  # plain text matches anywhere in the label
    await until(lambda: len(browser.records) == 3 and {r["label"] for r in browser.records} == {"squares"}, 10,
                "only the squares")
    engine = browser.records[0]["engine"]
    browser.filter(label="", engine=engine)
    await until(lambda: browser.records and {r["engine"] for r in browser.records} == {engine}, 10,
                f"only engine {engine}'s tasks")

    # the frontend's controls drive the same filters
    browser._w_state.value = "failed"
    browser._w_engine.value = None
    await until(lambda: [r["msg_id"] for r in browser.records] == [bad_id], 10, "the failure via the dropdown")
    assert browser.state_filter == "failed" and browser.engine_filter is None

    await until(lambda: [v for _, v in browser._w_list.options] == [bad_id], 10, "the failure shown in the list")
    browser._w_list.value = bad_id  # a click on the record
    assert browser.selected == bad_id and browser.detail["state"] == "failed"
    assert "about to fail on 7" in browser.detail["stdout"]
    assert "ValueError: bad input 7" in browser.detail["error"] and "Traceback" in browser.detail["error"]
    assert comms.state(browser._w_resubmit.model_id)["disabled"] is False
    assert "about to fail on 7" in comms.state(browser._w_detail.model_id)["value"]

    browser._w_resubmit.click()
    assert browser.message.startswith(f"resubmitted {bad_id} as ")
    new_id = browser.message.rsplit(" ", 1)[-1]
    await until(lambda: {r["msg_id"] for r in browser.records} == {bad_id, new_id}, 30,
                "the resubmitted task, failed again")
    new = next(r for r in browser.records if r["msg_id"] == new_id)
    assert new["label"] == "boom" and new["state"] == "failed"

    ok = next(r for r in conn.results(live=False).filter(state="completed").records)
    detail = browser.select(ok["msg_id"])
    assert detail["state"] == "completed" and detail["result"] in ("[0]", "[1]", "[4]")  # a map task: one chunk
    browser.flush()
    assert comms.state(browser._w_resubmit.model_id)["disabled"] is True
    assert comms.threads() == {threading.get_ident()}
    model_id = widget.model_id
    browser.close()
    assert comms.closed(model_id)


def test_views_render_as_text_and_html_without_ipywidgets(start_hub, monkeypatch):
    from jupyter_hub_ctl.kernel import live

    monkeypatch.setattr(live, "ipywidgets_or_none", lambda: None)
    conn = start_hub(2)
    status = conn.status(live=False)
    assert status.widget is None
    bundle = status._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    assert f"hub {conn.id}: running · 2 engines" in bundle["text/plain"]
    assert "<table" in bundle["text/html"] and bundle["text/html"] == status._repr_html_()
    assert repr(status) == bundle["text/plain"]
    browser = conn.results(live=False)
    assert browser.widget is None and "task records: 0 shown" in repr(browser)
    ar = conn.client[:].apply(square, 3)
    ar.get(30)
    bar = conn.progress(ar)
    bar.refresh()
    assert repr(bar).startswith("[##############################] 2/2")


def test_views_only_change_on_their_own_thread(start_hub):
    conn = start_hub(1)
    view = conn.status(live=False)
    errors = []

    def elsewhere():
        try:
            view.refresh()
        except RuntimeError as e:
            errors.append(str(e))

    t = threading.Thread(target=elsewhere)
    t.start()
    t.join()
    assert errors and "only change on the thread that created it" in errors[0]
