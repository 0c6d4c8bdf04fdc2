"""The task stream: real controller (each task store), real engines, our Client."""

from __future__ import annotations

import os
import threading
import time

import pytest
from support.procs import wait_for

from jupyter_hub_ctl.client.errors import RemoteError

FINAL = ("ok", "error", "aborted")
STORES = {"sqlitedb": ["--sqlitedb"], "dictdb": ["--dictdb"], "nodb": ["--nodb"]}


def gated(path):
    """Wait (bounded) for the file ``path``, then return it."""
    import os
    import time

    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return path


def nap(t):
    import time

    time.sleep(t)
    return t


for _f in (gated, nap):
    _f.__module__ = "__main__"  # shipped by value (the engines cannot import this test module)


class Follower:
    """Calls task_stream(since=<the last now>) in a loop, as a dashboard would."""

    def __init__(self, rc):
        self.rc = rc
        self.since = rc.task_stream(limit=1)["now"]
        self.first_since = self.since
        self.seen: dict = {}  # msg_id -> every report of it, in order

    def poll(self) -> int:
        reply = self.rc.task_stream(since=self.since, limit=100000)
        assert not reply["truncated"]
        assert reply["now"] > self.since
        self.since = reply["now"]
        for task in reply["tasks"]:
            self.seen.setdefault(task["msg_id"], []).append(task)
        return len(reply["tasks"])

    def last(self, msg_id):
        return self.seen.get(msg_id, [None])[-1]


@pytest.mark.parametrize("store", list(STORES))
def test_successive_calls_report_every_change_once(fresh_hub, store):
    h = fresh_hub(2, ["--Hub.metrics_interval=0.1", *STORES[store]])
    rc = h.client
    follow = Follower(rc)
    submitted: list = []
    errors: list = []

    def submit():
        try:
            lv = rc.load_balanced_view()
            for i in range(5):
                ar = lv.map(nap, [0.001] * 20 + [0.3], label=f"batch{i}")
                submitted.extend(ar.msg_ids)
                dv = rc[rc.ids[i % 2]]
                direct = dv.apply_async(nap, 0.01)
                submitted.extend(direct.msg_ids)
                ar.get(60)
                direct.get(60)
        except Exception as e:  # reported by the main thread
            errors.append(e)

    worker = threading.Thread(target=submit)
    worker.start()
    deadline = time.monotonic() + 120
    while worker.is_alive():
        follow.poll()
        assert time.monotonic() < deadline, "tasks not done in time"
        time.sleep(0.02)
    worker.join()
    assert not errors, errors

    def all_final():
        follow.poll()
        return all((follow.last(m) or {}).get("state") in FINAL for m in submitted)

    wait_for(all_final, 30, "the stream to report every task finished", interval=0.05)
    assert set(follow.seen) == set(submitted)  # nothing else, nothing missing
    for msg_id, reports in follow.seen.items():
        assert reports[-1]["state"] == "ok", reports
        assert len(reports) <= 4, reports  # pending, queued, running, ok at most
        for before, after in zip(reports, reports[1:]):
            assert before != after, f"{msg_id} reported twice unchanged"
            assert FINAL.count(before["state"]) == 0, f"{msg_id} changed after it finished"
    assert follow.poll() == 0  # quiet hub: nothing new
    if store != "nodb":  # the stream agrees with the records
        recorded = rc.db_query({"changed": {"$gt": follow.first_since}}, keys=["changed"])
        assert {r["msg_id"] for r in recorded} == set(submitted)


def test_names_labels_engines_times_and_states(live_hub, tmp_path):
    rc = live_hub.client
    follow = Follower(rc)
    a, b = rc.ids
    gate = str(tmp_path / "gate")
    lv = rc.load_balanced_view()

    def square(x):
        return x * x

    lv_a = rc.load_balanced_view(targets=[a])
    running = lv_a.apply_async(gated, gate)  # holds engine a (LB, one task per engine)
    waiting = lv_a.apply_async(nap, 0)  # no engine for it yet: pending in the hub
    (run_id,), (wait_id,) = running.msg_ids, waiting.msg_ids
    got = {}

    def states(want):
        follow.poll()
        got.update({m: (follow.last(m) or {}).get("state") for m in want})
        return all(got[m] == state for m, state in want.items())

    def wait_states(want):
        try:
            wait_for(lambda: states(want), 20, f"states {want}", interval=0.1)
        except AssertionError:
            raise AssertionError(f"states: {got}; stream: {follow.seen}") from None

    wait_states({run_id: "running", wait_id: "pending"})
    queued = rc[a].apply_async(nap, 0)  # sent straight to engine a, busy: queued there
    (queue_id,) = queued.msg_ids
    wait_states({run_id: "running", wait_id: "pending", queue_id: "queued"})
    run = follow.last(run_id)
    assert run["engine_id"] == a and run["name"] == "gated" and run["started"] is not None
    assert follow.last(wait_id)["engine_id"] is None
    assert follow.last(queue_id)["engine_id"] == a and follow.last(queue_id)["started"] is None
    open(gate, "w").close()
    for ar in (running, waiting, queued):
        ar.get(30)

    mapped = lv.map(square, range(4), label="squares")
    with lv.temp_flags(label="flagged"):
        flagged = lv.apply_async(square, 3)
    executed = rc[b].execute("x = 41\nx + 1", block=False)
    failed = rc[b].apply_async(lambda: 1 / 0)
    for ar in (mapped, flagged, executed):
        ar.get(30)
    with pytest.raises(RemoteError):
        failed.get(30)
    everything = [*mapped.msg_ids, *flagged.msg_ids, *executed.msg_ids, *failed.msg_ids, run_id, wait_id, queue_id]
    wait_for(lambda: follow.poll() >= 0 and all((follow.last(m) or {}).get("state") in FINAL for m in everything),
             20, "every task finished in the stream", interval=0.05)
    for m in mapped.msg_ids:
        t = follow.last(m)
        assert (t["name"], t["label"], t["state"]) == ("square", "squares", "ok")
        assert t["submitted"] <= t["started"] <= t["completed"]
        assert t["engine_id"] in (a, b)
    assert [(t["name"], t["label"]) for t in map(follow.last, flagged.msg_ids)] == [("square", "flagged")]
    ex = follow.last(executed.msg_ids[0])
    assert (ex["name"], ex["engine_id"], ex["state"]) == ("x = 41", b, "ok")
    err = follow.last(failed.msg_ids[0])
    assert (err["name"], err["state"]) == ("<lambda>", "error")
    assert follow.last(wait_id)["engine_id"] == a and follow.last(run_id)["state"] == "ok"


def test_a_limited_reply_continues_where_it_stopped(live_hub):
    rc = live_hub.client
    since = rc.task_stream(limit=1)["now"]
    ar = rc.load_balanced_view().map(abs, range(-30, 0))
    ar.get(30)
    done = set(ar.msg_ids)

    def settled():
        reply = rc.task_stream(since=since, limit=1000)
        finished = {t["msg_id"] for t in reply["tasks"] if t["state"] == "ok"}
        return reply if finished == done else None

    full = wait_for(settled, 20, "all 30 tasks finished in the stream")
    assert not full["truncated"] and len(full["tasks"]) == 30
    # 10 at a time from the same point: the oldest 10 changes first, then on from where each stopped,
    # together exactly the changes of the full reply (nothing missed, nothing repeated)
    pieces, at = [], since
    for _ in range(10):
        part = rc.task_stream(since=at, limit=10)
        pieces += part["tasks"]
        at = part["now"]
        if not part["truncated"]:
            break
    assert pieces[:len(full["tasks"])] == full["tasks"]
    assert rc.task_stream(since=since, limit=len(full["tasks"]))["truncated"] is False


@pytest.mark.parametrize("content", [{"since": "yesterday"}, {"since": True},
                                     {"limit": 0}, {"limit": 10**9}, {"limit": 2.5}, {"limit": None}])
def test_malformed_stream_requests_get_an_error(live_hub, content):
    rc = live_hub.client
    reply = rc._query("task_stream_request", content).result(10)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] in ("TypeError", "ValueError")
    assert rc.task_stream(limit=1)["now"] > 0  # still answering


def test_stream_of_a_restored_sqlite_hub(fresh_hub):
    h = fresh_hub(1, ["--sqlitedb", "--reuse"])
    rc = h.client
    since = rc.task_stream(limit=1)["now"]
    ar = rc.load_balanced_view().map(abs, range(-5, 0), label="before")
    ar.get(30)
    wait_for(lambda: len([t for t in rc.task_stream(since=since)["tasks"] if t["state"] == "ok"]) == 5, 20,
             "the five tasks finished in the stream")
    rc.close()
    h.controller.stop()
    h.controller.args.append("--restore")
    h.controller.start()
    h.client = rc = type(rc)(h.controller.client_file)
    reply = rc.task_stream(since=since)
    assert sorted(t["msg_id"] for t in reply["tasks"]) == sorted(ar.msg_ids)
    assert {(t["label"], t["state"]) for t in reply["tasks"]} == {("before", "ok")}
    assert reply["now"] > max(t["completed"] for t in reply["tasks"])
    assert os.path.exists(os.path.join(h.controller.profile_dir, "tasks.db"))
