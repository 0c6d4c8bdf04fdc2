"""Our client and engines over real processes: views, results, outputs, errors."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time

import pytest
from support.procs import wait_for

from jupyter_hub_ctl.client.errors import CompositeError, RemoteError, TaskAborted
from jupyter_hub_ctl.client.serialize import SerializationError
from jupyter_hub_ctl.client.views import Dependency


def test_ids_and_wait_for_engines_reason(rc):
    assert len(rc.ids) == 2
    with pytest.raises(TimeoutError, match="only 2 of 5 engines"):
        rc.wait_for_engines(5, timeout=0.3)


def test_direct_apply_runs_on_each_target(rc):
    pids = rc[:].apply_sync(os.getpid)
    assert len(set(pids)) == 2 and os.getpid() not in pids
    first = rc.ids[0]
    assert rc[first].apply_sync(lambda x, y=1: x + y, 41) == 42
    assert rc[[first]].apply_sync(lambda: "one") == ["one"]


def test_block_flag_and_async_result_future(rc):
    dv = rc[:]
    ar = dv.apply(lambda: 5)
    assert isinstance(ar, concurrent.futures.Future)
    assert ar.get(10) == [5, 5]
    assert ar.ready() and ar.successful() and ar.progress == 2
    with dv.temp_flags(block=True):
        assert dv.apply(lambda: 6) == [6, 6]
    assert dv.block is False


def test_map_splits_over_engines(rc):
    dv = rc[:]
    assert dv.map_sync(lambda x: x * x, range(11)) == [x * x for x in range(11)]
    assert dv.map_sync(lambda a, b: a + b, [1, 2, 3], [10, 20, 30]) == [11, 22, 33]


def test_execute_output_result_and_namespace(rc):
    dv = rc[:]
    ar = dv.execute("import sys\nprint('out'); print('err', file=sys.stderr)\nzz = 21\nzz * 2", silent=False)
    replies = ar.get(20)
    assert ar.stdout == ["out\n", "out\n"]
    assert ar.stderr == ["err\n", "err\n"]
    assert all(r.execute_result["data"]["text/plain"] == "42" for r in replies)
    assert dv.pull("zz", block=True) == [21, 21]
    assert dv["zz"] == [21, 21]


def test_execute_magics_and_display(rc):
    dv = rc[rc.ids[0]]
    ar = dv.execute("%time x = 1\nfrom IPython.display import display\ndisplay({'a': 1}, raw=False)")
    ar.get(20)
    kinds = [o["msg_type"] for o in ar.output_messages]
    assert "display_data" in kinds
    assert [o["data"] for o in ar.outputs] == [{"text/plain": "{'a': 1}"}]  # display_data contents, as in ipyparallel
    assert "Wall time" in ar.stdout


def test_execute_error_has_remote_traceback(rc):
    ar = rc[rc.ids[0]].execute("def f():\n    raise ValueError('bad value')\nf()")
    with pytest.raises(RemoteError) as info:
        ar.get(20)
    err = info.value
    assert err.ename == "ValueError" and err.evalue == "bad value"
    assert err.engine_id == rc.ids[0]
    assert "bad value" in err.traceback  # the remote traceback, as text


def test_apply_error_names_engine_and_traceback(rc):
    def boom(x):
        return {}[x]

    with pytest.raises(RemoteError) as info:
        rc[rc.ids[1]].apply_sync(boom, "missing")
    assert info.value.ename == "KeyError"
    assert info.value.engine_info["engine_id"] == rc.ids[1]
    assert "boom" in info.value.traceback
    with pytest.raises(CompositeError) as info:
        rc[:].apply_sync(boom, "k")
    assert len(info.value.errors) == 2


def test_push_pull_scatter_gather_dict_access(rc):
    dv = rc[:]
    dv.push({"a": 1, "b": [1, 2]}, block=True)
    assert dv.pull(["a", "b"], block=True) == [[1, [1, 2]], [1, [1, 2]]]
    dv["c"] = "see"
    assert dv["c"] == ["see", "see"]
    dv.scatter("part", list(range(9)), block=True)
    assert dv.gather("part", block=True) == list(range(9))
    with pytest.raises(CompositeError, match="not defined"):
        dv.pull("never_set", block=True)


def test_interactive_functions_see_engine_namespace(rc):
    dv = rc[:]
    dv.push({"engine_value": 10}, block=True)
    assert dv.apply_sync(lambda: engine_value + 1) == [11, 11]  # noqa: F821


def test_serialization_error_names_argument(rc):
    import threading

    lock = threading.Lock()
    with pytest.raises(SerializationError, match="argument 1"):
        rc[:].apply_async(lambda a, b: None, 1, lock)


def test_numpy_round_trip_without_copies(rc):
    np = pytest.importorskip("numpy")
    arr = np.arange(100 * 1024 * 1024 // 8, dtype="float64")  # 100 MB
    out = rc[rc.ids[0]].apply_sync(lambda a: a, arr)
    assert out.shape == arr.shape and out[-1] == arr[-1]
    # the received array is backed by the received message buffer, not a copy
    assert not out.flags.owndata
    assert out.base is not None


def test_load_balanced_apply_map_and_labels(rc):
    lv = rc.load_balanced_view()
    assert lv.apply_sync(lambda: 3) == 3
    ar = lv.map(lambda x: x + 1, range(20), chunksize=3)
    assert ar.get(20) == list(range(1, 21))
    assert len(ar.msg_ids) == 7
    with lv.temp_flags(label="labelled"):
        ar = lv.apply_async(lambda: 1)
    ar.get(10)
    recs = rc.db_query({"label": "labelled"}, keys=["msg_id", "label"])
    assert ar.msg_ids[0] in [r["msg_id"] for r in recs]


def test_map_unordered_iterates_in_completion_order(rc):
    lv = rc.load_balanced_view()

    def nap(t):
        import time

        time.sleep(t)
        return t

    ar = lv.map(nap, [0.6, 0.0, 0.0], ordered=False)
    got = list(ar)
    assert sorted(got) == [0.0, 0.0, 0.6]
    assert got[-1] == 0.6


def test_imap_bounds_outstanding_tasks(rc):
    lv = rc.load_balanced_view()
    seen = []
    for x in lv.imap(lambda x: x * 3, range(50), max_outstanding=4):
        seen.append(x)
        assert len(rc._futures) <= 4 + 2
    assert seen == [x * 3 for x in range(50)]


def test_load_balanced_targets_and_dependencies(rc):
    lv = rc.load_balanced_view()
    target = rc.ids[1]
    with lv.temp_flags(targets=[target]):
        ar = lv.apply_async(lambda: 1)
    ar.get(10)
    assert ar.engine_id == target

    def slow():
        import time

        time.sleep(0.3)
        return "a"

    a = lv.apply_async(slow)
    with lv.temp_flags(after=a):
        b = lv.apply_async(lambda: "b")
    assert b.get(10) == "b"
    assert b.metadata["started"] >= a.metadata["completed"]
    with lv.temp_flags(follow=a):
        c = lv.apply_async(lambda: "c")
    assert c.get(10) == "c" and c.engine_id == a.engine_id


def test_dependency_failure_rules_and_timeout(rc):
    lv = rc.load_balanced_view()
    bad = lv.apply_async(lambda: 1 / 0)
    with pytest.raises(RemoteError):
        bad.get(10)
    with lv.temp_flags(after=bad):
        impossible = lv.apply_async(lambda: "never")
    with pytest.raises(RemoteError, match="ImpossibleDependency"):
        impossible.get(10)
    with lv.temp_flags(after=Dependency(bad, success=False, failure=True)):
        ok = lv.apply_async(lambda: "after failure")
    assert ok.get(10) == "after failure"

    def slow():
        import time

        time.sleep(2)

    running = [lv.apply_async(slow) for _ in range(2)]
    with lv.temp_flags(after=running, timeout=0.3):
        waits = lv.apply_async(lambda: None)
    with pytest.raises(RemoteError, match="TaskTimeout"):
        waits.get(10)
    for r in running:
        r.get(10)


def test_retries_move_a_failing_task_to_another_engine(rc):
    dv = rc[:]
    first = rc.ids[0]
    dv.push({"fail_here": False}, block=True)
    rc[first].push({"fail_here": True}, block=True)

    def flaky():
        if fail_here:  # noqa: F821
            raise RuntimeError("this engine is cursed")
        return "ok"

    lv = rc.load_balanced_view()
    with lv.temp_flags(retries=1, targets=rc.ids):
        results = [lv.apply_async(flaky) for _ in range(4)]
    assert [r.get(20) for r in results] == ["ok"] * 4
    assert all(r.engine_id != first for r in results)


def test_asyncresult_metadata_and_outputs(rc):
    lv = rc.load_balanced_view()

    def talk():
        print("hello from a task")
        return 1

    ar = lv.apply_async(talk)
    assert ar.get(10) == 1
    md = ar.metadata
    assert md["engine_id"] in rc.ids
    assert md["started"] is not None and md["completed"] is not None
    assert ar.stdout == "hello from a task\n"
    assert ar.elapsed >= 0


def test_abort_queued_task(rc):
    target = rc.ids[0]
    dv = rc[target]

    def nap():
        import time

        time.sleep(1.0)
        return "slept"

    first = dv.apply_async(nap)
    second = dv.apply_async(lambda: "never runs")
    second.abort()
    assert first.get(10) == "slept"
    with pytest.raises(TaskAborted):
        second.get(10)


def test_sigint_interrupts_running_code(rc):
    import signal

    target = rc.ids[1]

    def long():
        import time

        print("running", flush=True)  # tells the test the task has started
        time.sleep(30)

    ar = rc[target].apply_async(long)
    t0 = time.monotonic()
    wait_for(lambda: "running" in ar.stdout, 10, "the task to start on the engine")
    rc.send_signal(signal.SIGINT, targets=target)
    with pytest.raises(RemoteError, match="KeyboardInterrupt"):
        ar.get(10)
    assert time.monotonic() - t0 < 10
    assert rc[target].apply_sync(lambda: "alive") == "alive"


def test_awaitable_from_running_event_loop(rc):
    async def main():
        lv = rc.load_balanced_view()
        value = await lv.apply_async(lambda: 7)
        values = await rc[:].apply_async(lambda: 8)
        # a blocking call inside a running loop must not deadlock (notebook style)
        blocking = lv.apply_sync(lambda: 9)
        return value, values, blocking

    assert asyncio.run(main()) == (7, [8, 8], 9)


def test_wait_interactive_text(rc, capsys, monkeypatch):
    monkeypatch.delenv("HUBCTL_NO_PROGRESS", raising=False)
    ar = rc.load_balanced_view().map(lambda x: x, range(5))
    assert ar.wait_interactive(interval=0.05, timeout=20, widget=False) is None  # nothing for a notebook to echo
    assert ar.done()
    err = capsys.readouterr().err
    assert "100%" in err and "5/5" in err and "tasks/s" in err


def test_broadcast_view(rc):
    bv = rc.broadcast_view()
    assert bv.apply_sync(lambda: 2) == [2, 2]
    cv = rc.broadcast_view(is_coalescing=True)
    assert cv.apply_sync(lambda: 3) == [3, 3]
    ar = bv.execute("bcast = 1")
    ar.get(10)
    assert rc[:].pull("bcast", block=True) == [1, 1]
