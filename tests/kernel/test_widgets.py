"""Widgets after real hub events: engines register and die, tasks complete and fail, the hub stops.

Widgets get recording comms (see conftest ``comms``): what a frontend would receive is asserted
along with the views' own state.  Live updates are sent from the kernel's one updater thread,
so they keep coming while the main thread blocks.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time

import cloudpickle
import pytest
from support.procs import wait_for

from jupyter_hub_ctl.cluster import background
from jupyter_hub_ctl.kernel.updater import updater
from jupyter_hub_ctl.kernel.widgets import EngineProgress, HubStatus, TaskProgress, wait_for_engines

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # engines cannot import this test module


def fail(x):
    print("about to fail on", x)
    raise ValueError(f"bad input {x}")


def square(x):
    return x * x


def slow(x):
    import time

    time.sleep(0.25)
    return x


def updater_thread() -> int:
    return updater().thread.ident


def test_status_widget_follows_registration_tasks_and_engine_death(start_hub, comms):
    conn = start_hub(1)
    view = HubStatus(conn.client, hub_id=conn.id, update_interval=0.3)
    view.refresh()
    widget = view.widget
    assert [e["id"] for e in view.engines] == [0] and view.hub_state == "running"
    assert view.start() and view.live
    started = time.monotonic()

    assert background.request_scale(conn.id, 2)
    wait_for(lambda: [e["id"] for e in view.engines] == [0, 1], 60, "the second engine in the table")
    wait_for(lambda: 'data-engine-id="1"' in comms.state(view._w_engines.model_id).get("value", ""), 10,
             "engine 1 in the frontend's table")

    lb = conn.client.load_balanced_view()
    good = lb.map(square, range(6))
    bad = lb.apply(fail, 3)
    assert good.get(30) == [0, 1, 4, 9, 16, 25]
    with pytest.raises(Exception):
        bad.get(30)
    wait_for(lambda: view.totals.get("completed", 0) >= 7 and view.errors_seen >= 1, 30, "the results")
    assert any(r["status"] == "error" and "ValueError: bad input 3" in r["summary"] for r in view.recent)
    ok = [r for r in view.recent if r["status"] == "ok"]
    assert ok and all(r["summary"] == "" for r in ok)  # no "ok ok": the state says it once
    assert len({r["short_id"] for r in view.recent}) == len(view.recent)  # the tasks of one map are told apart
    wait_for(lambda: "ValueError: bad input 3" in comms.state(view._w_recent.model_id).get("value", ""), 10,
             "the error in the frontend's result list")

    victim = next(e for e in conn.client.engines_info() if e["id"] == 0)
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: any(e["id"] == 0 and e["state"] == "gone" for e in view.engines), 30, "engine 0 listed as gone")
    assert view.totals["engines"] == 1
    wait_for(lambda: 'data-state="gone"' in comms.state(view._w_engines.model_id).get("value", ""), 10,
             "'gone' in the frontend's table")

    # throttled, and the live updates came from the updater thread
    elapsed = time.monotonic() - started
    assert view.renders <= elapsed * view.max_updates_per_second + 5
    assert updater_thread() in comms.threads()
    model_id = widget.model_id
    view.close()
    assert not view.live and comms.closed(model_id) and not updater().scheduled(view)


def test_views_update_while_the_main_thread_blocks(start_hub, comms):
    """A cell blocked in time.sleep: the status clock and the progress bar move anyway."""
    conn = start_hub(2)
    status = conn.status()
    status.update_interval = 0.5
    status.widget
    ar = conn.client.load_balanced_view().map(slow, range(24))
    bar = conn.progress(ar)
    bar.widget
    blocked_from = time.monotonic()
    time.sleep(5)  # the main thread blocks; no event loop runs
    blocked_to = time.monotonic()

    def during(model_id, key="value"):
        return [(t, v) for t, v in comms.values(model_id, key, since=blocked_from) if t <= blocked_to]

    clocks = {re.search(r"updated (\d\d:\d\d:\d\d)", v).group(1) for _, v in during(status._w_head.model_id)
              if "updated" in v}
    assert len(clocks) >= 4, clocks  # at least once a second
    counts = [v for _, v in during(bar._bar.container.children[1].model_id)]
    assert len(counts) >= 4 and counts == sorted(counts) and counts[-1] > counts[0], counts
    sent_by = {m["thread"] for m in comms.messages if blocked_from <= m["time"] <= blocked_to}
    assert sent_by == {updater_thread()}
    # one updater thread serves every view
    assert sum(1 for t in threading.enumerate() if t.name == "hubctl-updater") == 1
    assert ar.get(30) == list(range(24))
    wait_for(lambda: not bar.live, 10, "the bar to finish")
    assert bar.done == 24 and bar.outcome == "ok"
    assert comms.state(bar._bar.container.children[1].model_id)["bar_style"] == "success"


def spin(seconds):
    """Keep one core busy for ``seconds``."""
    import time

    end = time.time() + seconds
    while time.time() < end:
        pass
    return seconds


def test_status_widget_shows_engine_metrics_live(start_hub, comms):
    """Our engines' CPU, memory and running task reach the status table while a task runs, and are
    dropped (not kept stale) once the hub is gone."""
    conn = start_hub(2)
    view = HubStatus(conn.client, hub_id=conn.id, update_interval=0.3)
    view.widget
    assert view.start()

    def rows():
        return {e["id"]: e for e in view.engines}

    wait_for(lambda: view.metrics and all((r["rss"] or 0) > 0 for r in rows().values()), 30,
             "both engines' memory in the view")
    for row in rows().values():
        assert 10 * 2**20 < row["rss"] < 2**31 and row["cpu"] >= 0 and row["task"] is None
    ar = conn.client[0].apply_async(spin, 6)
    # how high the CPU figure goes depends on the machine's other load (tests/client/test_metrics.py
    # checks that it rises); here: the spinning engine's figures reach the view
    busy = wait_for(lambda: (r := rows()[0])["task"] == "spin" and r["cpu"] > 5 and r, 30,
                    "engine 0 running spin in the view")
    assert busy["task_id"] == ar.msg_ids[0] and rows()[1]["task"] is None
    html = wait_for(lambda: re.search(r'data-metric="task" title="[^"]+">spin<',
                                      h := comms.state(view._w_engines.model_id).get("value", "")) and h,
                    10, "spin in the frontend's table")
    assert re.search(r'data-metric="memory">\d+\.\d MB<', html), html
    assert ar.get(30) == 6
    wait_for(lambda: rows()[0]["task"] is None, 30, "engine 0 idle again in the view")
    assert "memory" in view.text() and "spin" not in [r["task"] for r in view.engines]
    conn.stop()
    wait_for(lambda: view.ended, 30, "the view to see the hub stop")
    assert all(r["rss"] is None and r["cpu"] is None and r["task"] is None for r in view.engines)


def test_status_widget_stops_updating_when_the_hub_stops(start_hub, comms):
    from jupyter_hub_ctl.cluster import find_hub

    mine, theirs = start_hub(1), start_hub(1)
    # stopped from this kernel (%hub stop): its views end at once
    view = mine.status()
    view.update_interval = 0.3
    view.widget
    wait_for(lambda: view.polls >= 2, 10, "live polls")
    mine.stop()
    assert not view.live and view.hub_state == "stopped" and view.ended == f"hub {mine.id} stopped"
    head = comms.state(view._w_head.model_id)["value"]
    assert "not updating" in head and 'data-state="stopped"' in head
    assert all(e["state"] == "stopped" and e["heartbeat_age"] is None for e in view.engines)  # nothing idle
    assert "hubctl-ended" in comms.state(view.widget.model_id)["_dom_classes"]  # greyed out
    # stopped by another tool (the CLI, the lab panel): the view notices on its next poll
    other = HubStatus(theirs.client, hub_id=theirs.id, update_interval=0.3)
    other.refresh()
    other.widget
    other.start()
    wait_for(lambda: other.polls >= 2, 10, "live polls")
    find_hub(theirs.id).stop_sync()
    wait_for(lambda: not other.live, 30, "the view to stop updating")
    assert (other.hub_state, other.ended) == ("stopped", f"hub {theirs.id} stopped")
    assert "not updating" in comms.state(other._w_head.model_id)["value"]
    assert not updater().scheduled(other)
    polls = other.polls
    other.poke()  # nothing listens any more
    time.sleep(0.5)  # give a (wrong) poll the time to happen
    assert other.polls == polls
    assert "stopped" in other.text() and "idle" not in other.text()
    theirs.stop()


def test_closed_widgets_stop_updating(start_hub, comms):
    conn = start_hub(1)
    closed_by_view = HubStatus(conn.client, hub_id=conn.id, update_interval=0.2)
    closed_by_widget = HubStatus(conn.client, hub_id=conn.id, update_interval=0.2)
    for view in (closed_by_view, closed_by_widget):
        view.refresh()
        view.widget
        view.start()
    wait_for(lambda: closed_by_view.polls >= 2 and closed_by_widget.polls >= 2, 10, "live polls")
    closed_by_view.close()
    closed_by_widget.widget.close()  # e.g. the notebook closed it
    wait_for(lambda: not closed_by_widget.live, 10, "the widget-closed view to stop")
    assert not closed_by_view.live and closed_by_widget.ended == "the widget was closed"
    assert not updater().scheduled(closed_by_view) and not updater().scheduled(closed_by_widget)
    bundle = closed_by_view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" not in bundle and "hub" in bundle["text/plain"]


def test_callback_errors_are_shown_in_the_widget(start_hub, comms):
    """A button whose action fails says why inside the widget (not only in a log)."""
    conn = start_hub(1)
    ar = conn.client.load_balanced_view().map(slow, range(40))
    bar = conn.progress(ar)
    bar.widget
    wait_for(lambda: bar.done >= 1, 30, "a first task done")
    os.kill(conn.client.engines_info()[0]["pid"], signal.SIGKILL)
    wait_for(lambda: not conn.client.ids, 30, "the engine's death to be noticed")
    assert not ar.done()  # the rest wait for an engine
    bar._w_abort.click()  # abort asks the engines, and there are none
    assert bar.error == "abort failed: NoEnginesRegistered: no engines registered with this hub"
    assert "abort failed: NoEnginesRegistered" in comms.state(bar._w_errors.model_id)["value"]
    assert "abort failed" in bar.html() and bar.live  # the bar keeps going

    status = HubStatus(None, hub_id=conn.id)
    status.widget
    status._w_refresh.click()  # polls at once: a view without a client ends, saying so
    assert status.ended == "disconnected from the hub" and "not updating" in status.text()


def test_task_progress_counts_done_and_failed(start_hub, comms, tmp_path):
    conn = start_hub(2)
    gate = tmp_path / "gate"

    def gated(x, gate=str(gate)):
        import os
        import time

        deadline = time.time() + 30
        while x >= 2 and not os.path.exists(gate) and time.time() < deadline:
            time.sleep(0.01)
        if x == 3:
            raise ValueError("three")
        return x

    ar = conn.client.load_balanced_view().map(gated, range(4))
    bar = conn.progress(ar)
    widget = bar.widget
    counter = bar._bar.container.children[1]
    wait_for(lambda: bar.done == 2, 30, "the two ungated tasks")
    wait_for(lambda: comms.state(counter.model_id).get("value") == 2, 10, "2 in the frontend's bar")
    meter = comms.state(bar._bar.container.children[2].model_id)["value"]
    assert "2/4" in meter and "tasks/s" in meter and "&lt;" in meter  # done/total, ETA and rate from tqdm
    assert bar.live and bar.total == 4
    gate.write_text("go")
    wait_for(lambda: not bar.live, 30, "the bar to finish")
    assert (bar.done, bar.failed) == (4, 1) and "ValueError" in bar.outcome
    assert comms.state(counter.model_id)["bar_style"] == "danger"
    assert "1 failed" in comms.state(bar._w_failed.model_id)["value"]
    assert "hubctl-badge-failed" in comms.state(bar._w_failed.model_id)["value"]  # red
    assert widget is bar.widget and "1 failed" in bar.text()


def test_engine_progress_counts_registrations(start_hub, comms):
    conn = start_hub(1)
    bar = EngineProgress(3, client=conn.client)
    bar.refresh()
    bar.widget
    bar.start()
    assert bar.registered == 1
    background.request_scale(conn.id, 3)
    wait_for(lambda: not bar.live, 60, "three engines")
    assert bar.registered == 3 and bar.outcome == "ok"
    assert comms.state(bar._bar.container.children[1].model_id)["value"] == 3


def test_waits_show_progress_as_text_outside_notebooks(start_hub, capsys):
    conn = start_hub(1)
    background.request_scale(conn.id, 2)
    assert wait_for_engines(conn.client, 2, timeout=60, widget=False) == [0, 1]
    assert "2/2" in capsys.readouterr().err
    # enough engines already: the ids at once, as documented, whether interactive or not
    assert conn.client.wait_for_engines(2, -1, interactive=True, widget=False) == [0, 1]
    assert conn.client.wait_for_engines(1, interactive=False) == [0, 1]
    assert conn.client.wait_for_engines(2, interactive=True, widget=False, block=False).result(10) == [0, 1]
    with pytest.raises(TimeoutError, match="only 2 of 5"):
        wait_for_engines(conn.client, 5, timeout=0.5, widget=False)
    assert "only 2 of 5 after 0.5s" in capsys.readouterr().err
    ar = conn.client.load_balanced_view().map(fail, [1, 2])
    assert ar.wait_interactive(widget=False) is None
    err = capsys.readouterr().err
    assert "2/2" in err and "2 failed" in err


def test_views_render_as_text_and_html_without_ipywidgets(start_hub, monkeypatch):
    from jupyter_hub_ctl.kernel import live, progress

    monkeypatch.setattr(live, "ipywidgets_or_none", lambda: None)
    monkeypatch.setattr(progress, "ipywidgets_or_none", lambda: None)
    conn = start_hub(2)
    status = conn.status(live=False)
    assert status.widget is None
    bundle = status._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    assert f"hub {conn.id}: running · 2 engines" in bundle["text/plain"]
    assert "<table" in bundle["text/html"] and "<style>" in status._repr_html_()
    assert repr(status) == bundle["text/plain"]
    browser = conn.results(live=False)
    assert browser.widget is None and "task records: 0 of 0" in repr(browser)
    ar = conn.client[:].apply(square, 3)
    ar.get(30)
    bar = conn.progress(ar)
    bar.refresh()
    assert "2/2" in repr(bar) and "100%" in repr(bar)
    assert 'value="2" max="2"' in bar.html()


def test_views_can_change_on_any_thread(start_hub, comms):
    """No owner thread any more: a refresh from another thread (a callback's) just works."""
    conn = start_hub(1)
    view = conn.status(live=False)
    view.widget
    errors = []

    def elsewhere():
        try:
            view.refresh()
        except Exception as e:
            errors.append(e)

    before = view.polls
    t = threading.Thread(target=elsewhere)
    t.start()
    t.join()
    assert not errors and view.polls == before + 1


def test_task_progress_widget_is_built_for_an_async_result(start_hub, comms):
    conn = start_hub(1)
    ar = conn.client[0].apply(square, 4)
    assert ar.get(30) == 16
    bar = TaskProgress(ar, description="squares")
    bar.refresh()
    assert bar.outcome == "ok" and "squares" in bar.text()


def test_status_widget_works_against_ipcontroller(tmp_path, comms):
    """ipcontroller answers neither engines_request, health_request nor metrics: the status table
    still lists its engines with their counts (from the queue status), with no error shown."""
    pytest.importorskip("ipyparallel", minversion="9", reason="needs ipyparallel's controller")
    from support.procs import Controller, Engines

    from jupyter_hub_ctl import Client

    c = Controller(tmp_path, [], module="ipyparallel.controller", ping=250)
    c.start()
    engines = Engines(c, str(tmp_path))
    rc = view = None
    try:
        engines.start(2)
        rc = Client(c.client_file)
        rc.wait_for_engines(2, timeout=60)
        rc[:].apply_sync(square, 3)
        view = HubStatus(rc, update_interval=0.3)
        view.widget
        assert view.start()
        wait_for(lambda: sorted(e["id"] for e in view.engines) == [0, 1] and view.polls >= 2, 30,
                 "both engines listed")
        assert not view.problem and not view.error
        assert sum(e["completed"] for e in view.engines) == 2
        assert all(e["rss"] is None and e["host"] == "" for e in view.engines)
    finally:
        if view is not None:
            view.close()
        if rc is not None:
            rc.close()
        engines.stop()
        c.stop()
