"""The results browser on a real hub: a sortable, paged, filterable grid of the task records, row
details with our own frames cut from tracebacks, resubmit of several rows (also refused, with the
hub's reason shown in the widget) and export of the selection to pandas."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta, timezone

import cloudpickle
import numpy as np
import pytest
from support.procs import wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # engines cannot import this test module


def square(x):
    return x * x


def boom(x):
    print("about to fail on", x)
    raise ValueError(f"bad input {x}")


@pytest.fixture
def filled(start_hub):
    """A hub with 30 squares, 3 failures and one large push in its records."""
    conn = start_hub(2)
    lb = conn.client.load_balanced_view()
    with lb.temp_flags(label="squares"):
        assert lb.map(square, range(30)).get(30) == [x * x for x in range(30)]
    with lb.temp_flags(label="boom"):
        bad = lb.map(boom, [3, 6, 9])
        with pytest.raises(Exception):
            bad.get(30)
    direct = conn.client[0]
    with direct.temp_flags(label="big"):
        big = direct.push({"big": np.zeros(2_500_000)})  # 20 MB: sent in pieces the hub does not record whole
        big.get(60)
    conn.bad_ids, conn.big_id = list(bad.msg_ids), big.msg_ids[0]
    return conn


def cell_texts(browser, column: str) -> list:
    from jupyter_hub_ctl.kernel.browser import COLUMNS

    index = [k for k, _ in COLUMNS].index(column) + 1
    return [row[index].description for row in browser._w_rows if not row[index].disabled]


def test_grid_sorts_pages_and_filters(filled, comms):
    browser = filled.results()
    model_id = browser.widget.model_id
    assert browser.total == browser.total_all == 34 and browser.pages == 3
    assert len(browser.records) == 15 and len(cell_texts(browser, "msg_id")) == 15
    ids = cell_texts(browser, "msg_id")
    assert len(set(ids)) == len(ids)  # each task of one map has its own id in the grid
    submitted = [r["submitted"] for r in browser.records]
    assert submitted == sorted(submitted, reverse=True)  # newest first by default
    assert "page 1 of 3 · 34 tasks" in comms.state(browser._w_page.model_id)["value"]

    # a click on a heading sorts; a second click reverses
    engine_head = browser._w_heads[2]
    engine_head.click()
    assert browser.sort_key == "engine" and browser.descending
    engines = [r["engine"] for r in browser.records]
    assert engines == sorted(engines, reverse=True)
    engine_head.click()
    assert not browser.descending and [r["engine"] for r in browser.records][0] == 0
    assert comms.state(engine_head.model_id)["description"] == "engine ▲"
    browser.sort_by("duration", descending=True)
    durations = [r["duration"] for r in browser.records]
    assert durations == sorted(durations, reverse=True)

    # paging
    first = {r["msg_id"] for r in browser.records}
    browser._w_next.click()
    assert browser.page == 1 and not first & {r["msg_id"] for r in browser.records}
    browser._w_last.click()
    assert browser.page == 2 and len(browser.records) == 4 and len(cell_texts(browser, "msg_id")) == 4
    assert comms.state(browser._w_next.model_id)["disabled"] is True
    browser.go_to(99)
    assert browser.page == 2  # clamped

    # filters: state, engine ("all" and each engine), label, time range
    assert list(browser._w_engine.options) == [("all", "all"), ("0", 0), ("1", 1)]
    assert comms.state(browser._w_engine.model_id)["index"] == 0  # "all" shows, not a blank
    browser._w_state.value = "failed"
    assert browser.page == 0 and sorted(r["msg_id"] for r in browser.records) == sorted(filled.bad_ids)
    assert all(t.startswith("ValueError: bad input") for t in cell_texts(browser, "result"))
    browser.filter(state="all", engine=0)
    assert browser.records and {r["engine"] for r in browser.records} == {0}
    browser._w_engine.value = "all"
    assert browser.engine_filter is None
    browser._w_label.value = "squ"  # plain text matches anywhere in the label
    assert browser.total == 30 and {r["label"] for r in browser.records} == {"squares"}
    browser.filter(label="b*")
    assert browser.total == 4 and {r["label"] for r in browser.records} == {"boom", "big"}
    browser._w_time.value = "last 5 min"
    assert browser.total == 4
    browser.filter(label="", time="any time", before=datetime.now(timezone.utc) - timedelta(hours=1))
    assert browser.total == 0 and "no matching records" in browser.text()
    browser.filter(before=None)
    assert browser.total == 34

    # results are previewed, not "ok ok"
    browser.filter(label="squares")
    previews = cell_texts(browser, "result")
    assert previews and all(p.startswith("[") and p.endswith("]") for p in previews), previews
    browser.close()
    assert comms.closed(model_id)


def test_row_details_trim_our_frames(filled, comms):
    browser = filled.results(live=False)
    browser.widget
    browser.filter(state="failed")
    browser._w_rows[0][1].click()  # a click anywhere on the row
    detail = browser.detail
    assert detail["msg_id"] == browser.records[0]["msg_id"] and detail["state"] == "failed"
    assert "about to fail on" in detail["stdout"]
    error = detail["error"]
    assert error.startswith("Traceback") and "ValueError: bad input" in error and ", in boom" in error
    assert "jupyter_hub_ctl" not in error and "map_chunk" not in error and "ops.py" not in error
    shown = comms.state(browser._w_detail.model_id)["value"]
    assert "about to fail on" in shown and "map_chunk" not in shown and "hubctl-traceback" in shown
    assert "hubctl-current" in comms.state(browser._w_rows[0][1].model_id)["_dom_classes"]
    browser._w_rows[0][3].click()  # the same row again: details closed
    assert browser.selected is None and browser.detail == {}

    browser.filter(state="done", label="squares")
    browser.select(browser.records[0]["msg_id"])
    assert browser.detail["result"].startswith("[") and browser.detail["error"] == ""


def test_resubmit_checked_rows_and_show_refusals(filled, comms):
    browser = filled.results()
    browser.update_interval = 0.3
    browser.widget
    browser.filter(state="failed")
    for row in browser._w_rows[:3]:
        row[0].value = True  # tick the row (as a frontend would)
    assert sorted(browser.checked) == sorted(filled.bad_ids)
    assert comms.state(browser._w_resubmit.model_id)["description"] == "resubmit (3)"
    browser._w_resubmit.click()
    assert browser.message.startswith("resubmitted 3 tasks: ") and browser.checked == []
    wait_for(lambda: browser.total == 6, 30, "the three resubmitted tasks, failed again")
    assert browser.total_all == 37
    assert "resubmitted 3 tasks" in comms.state(browser._w_message.model_id)["value"]

    # the hub refuses to resubmit a push it did not record whole: the reason is shown in the widget
    browser.filter(state="all", label="big")
    browser._w_rows[0][0].value = True
    browser._w_resubmit.click()
    assert browser.error.startswith("resubmit failed: RemoteError") and "cannot be resubmitted" in browser.error
    assert "cannot be resubmitted" in comms.state(browser._w_message.model_id)["value"]
    browser.close()


def test_export_the_selection_to_pandas(filled, ip, comms):
    browser = filled.results(live=False)
    browser.widget
    browser.filter(label="squares")
    browser.check(browser.records[0]["msg_id"])
    browser.check(browser.records[1]["msg_id"])
    browser._w_export.click()
    frame = ip.user_ns["results_df"]
    assert list(frame["msg_id"]) == [r["msg_id"] for r in browser.records[:2]]
    assert set(frame.columns) >= {"msg_id", "name", "engine", "state", "submitted", "completed", "duration",
                                  "error", "preview"}
    assert set(frame["state"]) == {"done"} and frame["submitted"].notna().all()
    assert "exported 2 rows to `results_df`" in browser.message
    browser._w_uncheck.click()
    assert len(browser.to_dataframe()) == 30  # nothing checked: every matching row



def test_a_render_sends_one_message_per_changed_widget(filled, comms):
    """The grid is built from few models (its cells share their layout and style) and one render sends
    each widget's changed traits together: a sort that changes most cells of the page costs one update
    per changed widget, not one per trait (bursts of per-trait messages overflow the kernel's IOPub
    queue, which then drops messages: a lost comm_open is "model not found" in the frontend)."""
    from collections import Counter

    browser = filled.results(live=False)
    browser.widget
    opened = [m for m in comms.messages if m["msg_type"] == "comm_open"]
    shown = len(comms.messages)  # what showing the browser sends: its models, then its first render
    before = len(comms.messages)
    with browser._lock:
        browser.sort_key, browser.descending = "msg_id", False
        browser._recompute()  # one render (the browser is not live)
    updates = [m for m in comms.messages[before:] if m["msg_type"] == "comm_msg"]
    per_model = Counter(m["comm_id"] for m in updates)
    print(f"grid: {len(opened)} models opened, {shown} messages to show it; a sort sent {len(updates)} updates "
          f"to {len(per_model)} models")
    assert len(per_model) > 15, "the sort should have changed a cell of every row"
    assert max(per_model.values()) == 1, per_model.most_common(3)
    assert any(len(m["data"]["state"]) > 1 for m in updates), "no widget had several traits changed"
    assert len(opened) <= 250 and shown <= 500, (len(opened), shown)
    browser.close()



def test_live_renders_keep_to_the_kernels_message_budget(filled, comms):
    """While tasks stream in, a live render waits while the kernel's views have sent
    ``max_messages_per_second`` comm messages in the last second (its changes coalesce into the
    next render); the grid still ends up showing every task."""
    budget = 40
    browser = filled.results(update_interval=0.1, max_updates_per_second=20, max_messages_per_second=budget)
    browser.widget
    before, start = len(comms.messages), time.monotonic()
    lb = filled.client.load_balanced_view()
    for i in range(40):  # a task every 50 ms: each poll finds new rows, which push the page's rows down
        lb.apply_async(square, i)
        time.sleep(0.05)
    wait_for(lambda: "of 74" in comms.state(browser._w_summary.model_id)["value"], 30, "every task in the grid")
    elapsed = time.monotonic() - start
    sent = sum(1 for m in comms.messages[before:] if m["msg_type"] == "comm_msg")
    print(f"{sent} updates in {elapsed:.1f}s, {browser.renders} renders (budget {budget}/s)")
    # each render starts within the budget; the last one may overshoot it by at most a page of widgets
    assert sent <= budget * (elapsed + 1) + 200, (sent, elapsed)
    browser.close()
