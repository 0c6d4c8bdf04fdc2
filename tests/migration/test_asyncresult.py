"""AsyncResult, errors, abort and signals as ipyparallel documents them, on both clients."""

from __future__ import annotations

import signal
import time
from concurrent.futures import FIRST_COMPLETED
from datetime import datetime

import pytest

DOCUMENTED_KEYS = {"msg_id", "submitted", "started", "completed", "received", "engine_uuid", "engine_id", "follow",
                   "after", "status", "execute_input", "execute_result", "error", "stdout", "stderr", "outputs",
                   "data", "label", "is_broadcast", "is_coalescing"}


def talk(x):
    print("value", x)
    return x


def test_result_access_and_metadata(rc):
    dv = rc[:]
    ar = dv.apply_async(talk, 3)
    assert ar.get(30) == [3, 3]
    assert ar.ready() and ar.successful() and ar.r == [3, 3]
    assert ar[0] == 3 and ar[0:1] == [3] and len(ar) == 2 and ar.progress == 2
    assert ar["engine_id"] == rc.ids and ar.engine_id == rc.ids
    assert ar.get_dict() == {eid: 3 for eid in rc.ids}
    assert ar.stdout == ["value 3\n", "value 3\n"]
    assert len(ar.msg_ids) == 2
    for md in ar.metadata:
        assert DOCUMENTED_KEYS <= set(md)
        assert all(isinstance(md[k], datetime) for k in ("submitted", "started", "completed", "received"))
        assert md.submitted <= md.started <= md.completed and md["status"] == "ok"
    assert ar.timedelta(ar.submitted, ar.received) >= ar.serial_time / 2 >= 0
    assert ar.wall_time == pytest.approx(ar.timedelta(ar.submitted, ar.received), abs=1e-5)
    assert ar.elapsed >= 0
    ar.wait_for_send(10)
    assert ar.sent
    single = rc.load_balanced_view().apply_async(talk, 4)
    assert single.get(30) == 4 and isinstance(single.metadata, dict) and single["engine_id"] in rc.ids
    assert single.metadata["stdout"] == "value 4\n"


def test_errors_of_one_or_several_engines(rc, ipp):
    with pytest.raises(ipp.RemoteError) as info:
        rc[rc.ids[0]].apply_sync(lambda: 1 / 0)
    assert info.value.ename == "ZeroDivisionError" and info.value.engine_info["engine_id"] == rc.ids[0]
    with pytest.raises(ipp.RemoteError) as info:  # several engines: a CompositeError, which is a RemoteError
        rc[:].apply_sync(lambda: 1 / 0)
    err = info.value
    assert isinstance(err, ipp.CompositeError) and isinstance(err, ipp.error.CompositeError)
    assert [e[0] for e in err.elist] == ["ZeroDivisionError", "ZeroDivisionError"]
    assert [e[3]["engine_id"] for e in err.elist] == rc.ids
    lines = err.render_traceback()
    assert any("ZeroDivisionError" in line for line in lines)
    with pytest.raises(ipp.RemoteError) as one:
        err.raise_exception()
    assert one.value.ename == "ZeroDivisionError"
    assert issubclass(ipp.error.TaskAborted, ipp.error.KernelError)
    assert ipp.error.TimeoutError is TimeoutError
    ar = rc[:].apply_async(lambda: 1 / 0)
    assert [type(e).__name__ for e in ar.get(30, return_exceptions=True)] == ["RemoteError", "RemoteError"]


def test_get_timeout_wait_and_first_exception(rc, ipp):
    lv = rc.load_balanced_view()
    slow = lv.apply_async(time.sleep, 0.6)
    with pytest.raises(TimeoutError):
        slow.get(0.05)
    assert slow.wait(0.05) is False and slow.wait(30) is True
    last_pid = rc[rc.ids[-1]].apply_sync(_pid)
    failing = rc[:].apply_async(_fail_fast_on, last_pid)
    t0 = time.monotonic()
    with pytest.raises(ipp.RemoteError, match="ValueError"):
        failing.get(30, return_when=ipp.FIRST_EXCEPTION)
    assert time.monotonic() - t0 < 2.5  # before the other engine's 3 s task is done
    done, pending = rc[:].apply_async(_nap_unless, last_pid).wait(30, return_when=FIRST_COMPLETED)
    assert len(done) >= 1
    failing.wait(30)


def _pid():
    import os

    return os.getpid()


def _fail_fast_on(pid):
    import os
    import time

    if os.getpid() == pid:
        raise ValueError("fails fast")
    time.sleep(3)


def _nap_unless(pid):
    import os
    import time

    if os.getpid() != pid:
        time.sleep(2)
    return True


def test_wait_outstanding_history_and_hub_results(rc, ipp):
    lv = rc.load_balanced_view()
    ars = [lv.apply_async(pow, 3, i) for i in range(4)]
    assert rc.wait(ars, timeout=30) is True and rc.wait(timeout=30) is True
    assert not rc.outstanding
    assert all(m in rc.history for ar in ars for m in ar.msg_ids)
    ar = rc.get_result(ars[2].msg_ids[0])
    assert isinstance(ar, ipp.AsyncResult) and ar.get(30) == 9
    again = rc.resubmit(ars[1].msg_ids)
    assert isinstance(again, ipp.AsyncResult) and again.get(30) == [3]
    status = rc.result_status(ars[0].msg_ids)
    assert status["completed"] == ars[0].msg_ids and status["pending"] == []
    assert set(ars[3].msg_ids) <= set(rc.hub_history())
    rc.purge_everything()
    assert not rc.history


def test_abort_keeps_a_queued_task_from_running(rc, ipp):
    target = rc.ids[0]
    dv = rc[target]
    first = dv.apply_async(time.sleep, 1.0)
    queued = dv.apply_async(lambda: "ran")
    rc.abort(jobs=queued, targets=target, block=True)
    first.get(30)
    with pytest.raises(ipp.error.TaskAborted):
        queued.get(30)
    assert dv.apply_sync(lambda: "still fine") == "still fine"


def _announce_and_sleep(t):
    import time

    print("started", flush=True)
    time.sleep(t)


def test_send_signal_interrupts_a_running_task(rc, ipp):
    target = rc.ids[-1]
    dv = rc[target]
    ar = dv.apply_async(_announce_and_sleep, 30)
    deadline = time.monotonic() + 30
    while "started" not in (ar.stdout or "") and time.monotonic() < deadline:  # the task runs on the engine
        time.sleep(0.02)
    t0 = time.monotonic()
    rc.send_signal(signal.SIGINT, targets=target, block=True)
    with pytest.raises(ipp.RemoteError, match="KeyboardInterrupt"):
        ar.get(20)
    assert time.monotonic() - t0 < 10
    assert dv.apply_sync(lambda: "alive") == "alive"
