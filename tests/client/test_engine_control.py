"""The engine's control channel: clear, abort and signals on one engine, in sequence, from our
client, from ipyparallel's client and as raw wire messages; every request is answered."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
import zmq
from jupyter_client.session import Session
from support.peers import Peer
from support.procs import wait_for

from jupyter_hub_ctl.client.errors import EngineError, RemoteError, TaskAborted

#: a control reply comes in well under this (the engine answers from its own thread)
QUICK = 2.0


def _sleeper(marker_text="running"):
    def sleeper():
        import time

        print(marker_text, flush=True)  # tells the test the task has started
        time.sleep(60)

    return sleeper


def _timed(fn, *args, **kwargs):
    t0 = time.monotonic()
    value = fn(*args, **kwargs)
    return value, time.monotonic() - t0


def _start_blocker(view):
    ar = view.apply_async(_sleeper())
    wait_for(lambda: "running" in ar.stdout, 10, "the blocking task to start on the engine")
    return ar


def test_clear_execute_abort_signal_on_the_same_engine(fresh_hub):
    hub = fresh_hub(n=1)
    rc = hub.client
    eid = rc.ids[0]
    dv = rc[eid]
    dv.execute("a = 5\na").get(10)  # the engine's IPython shell is in use from here on
    assert dv.apply_sync(lambda: a) == 5  # noqa: F821 - the engine's global

    replies, took = _timed(rc.clear, targets=[eid], block=True)  # blocking: None, or the engine's error raised
    assert replies is None
    assert took < QUICK
    assert dv.execute("1 + 1", silent=False).get(10).execute_result["data"]["text/plain"] == "2"
    assert dv.execute("Out[max(Out)] * 3", silent=False).get(10).execute_result["data"]["text/plain"] == "6"
    with pytest.raises(RemoteError, match="NameError"):
        dv.execute("a").get(10)
    assert dv.apply_sync(lambda: "a" in globals()) is False

    # abort by msg_id: that queued task does not run, the others do
    blocker = _start_blocker(dv)
    skipped, kept = dv.apply_async(lambda: "ran"), dv.apply_async(lambda: "ran too")
    replies, took = _timed(rc.abort, skipped.msg_ids, targets=[eid], block=True)
    assert replies is None and took < QUICK
    # SIGINT interrupts the running task; the engine goes on with its queue
    replies, took = _timed(rc.send_signal, signal.SIGINT, targets=[eid], block=True)
    assert replies is None and took < QUICK
    with pytest.raises(RemoteError, match="KeyboardInterrupt"):
        blocker.get(10)
    with pytest.raises(TaskAborted):
        skipped.get(10)
    assert kept.get(10) == "ran too"

    # abort without ids: everything queued on the engine is skipped, later work runs
    blocker = _start_blocker(dv)
    queued = [dv.apply_async(lambda: "queued") for _ in range(3)]
    # non-blocking: a Future of the replies
    assert [r["content"] for r in rc.abort(targets=[eid]).result(10)] == [{"status": "ok"}]
    rc.send_signal(signal.SIGINT, targets=[eid], block=True)
    with pytest.raises(RemoteError, match="KeyboardInterrupt"):
        blocker.get(10)
    for ar in queued:
        with pytest.raises(TaskAborted):
            ar.get(10)
    assert dv.apply_sync(lambda: "after") == "after"
    assert dv.execute("b = 2\nb * 21", silent=False).get(10).execute_result["data"]["text/plain"] == "42"
    dv.execute("_oh = 'user code replaced the output history'\ndel Out").get(10)
    assert [r["content"] for r in rc.clear(targets=[eid]).result(10)] == [{"status": "ok"}]
    # user variables gone; IPython's own names back, its output history empty
    assert dv.apply_sync(lambda: sorted(k for k in ("a", "b", "In", "Out", "_oh") if k in globals())) == \
        ["In", "Out", "_oh"]
    assert dv.apply_sync(lambda: (len(Out), Out is _oh)) == (0, True)  # noqa: F821 - the engine's globals

    # shutdown: answered, the process ends cleanly and the hub lets the engine go at once
    _, took = _timed(rc.shutdown, targets=[eid], block=True)
    assert took < QUICK
    assert hub.engines.procs[0].wait(10) == 0
    wait_for(lambda: rc.ids == [], 5, "the hub to unregister the engine that shut down")


def test_aborted_balanced_task_is_not_retried(fresh_hub):
    rc = fresh_hub(n=1).client
    eid = rc.ids[0]
    blocker = _start_blocker(rc[eid])
    task = rc.load_balanced_view(retries=3).apply_async(lambda: "ran")
    rc.abort(task.msg_ids, targets=[eid])
    rc.send_signal(signal.SIGINT, targets=[eid])
    with pytest.raises(RemoteError, match="KeyboardInterrupt"):
        blocker.get(10)
    with pytest.raises(TaskAborted):
        task.get(10)


# ---------------------------------------------------------------- raw control messages


class _Control:
    """A raw DEALER on the hub's control channel, addressing one engine."""

    def __init__(self, controller, engine_uuid: str):
        self.ctx = zmq.Context()
        self.peer = Peer(self.ctx, controller.url("control"), controller.session())
        self.ident = engine_uuid.encode()

    def request(self, msg_type, content=None, timeout=QUICK):
        sent = self.peer.send(msg_type, content or {}, ident=[self.ident])
        reply = self.peer.recv(timeout)
        assert reply["parent_header"].get("msg_id") == sent["header"]["msg_id"]
        return reply

    def send_raw(self, frames):
        self.peer.sock.send_multipart([self.ident, *frames])

    def close(self):
        self.peer.close()
        self.ctx.term()


def _error(reply, ename):
    content = reply["content"]
    assert content["status"] == "error", content
    assert content["ename"] == ename, content
    assert content["evalue"] and isinstance(content["traceback"], list) and content["traceback"]
    assert reply["metadata"]["status"] == "error"
    return content


def test_every_control_request_is_answered_and_the_channel_survives(fresh_hub):
    hub = fresh_hub(n=1)
    rc = hub.client
    eid = rc.ids[0]
    ctl = _Control(hub.controller, rc._engines[eid])
    try:
        assert ctl.request("kernel_info_request")["content"]["status"] == "ok"
        _error(ctl.request("abort_request", {"msg_ids": 5}), "TypeError")
        _error(ctl.request("signal_request", {"sig": "SIGNOPE"}), "ValueError")
        _error(ctl.request("signal_request", {"sig": [2]}), "TypeError")
        unknown = _error(ctl.request("frobnicate_request", {"x": 1}), "ValueError")
        assert "frobnicate_request" in unknown["evalue"]
        assert ctl.request("frobnicate_request")["header"]["msg_type"] == "frobnicate_reply"

        # signed, but its content is not a dict: answered, with its header as the parent
        session = hub.controller.session()
        msg = session.msg("clear_request", content={})
        parts = [session.pack(msg["header"]), session.pack({}), session.pack({}), b"[1, 2]"]
        ctl.send_raw([b"<IDS|MSG>", session.sign(parts), *parts])
        idents, frames = session.feed_identities(ctl.peer.sock.recv_multipart() if ctl.peer.sock.poll(QUICK * 1000)
                                                 else pytest.fail("no reply to a malformed control request"))
        reply = session.deserialize(frames)
        assert reply["parent_header"]["msg_id"] == msg["header"]["msg_id"]
        assert "malformed" in _error(reply, "ValueError")["evalue"]

        # not signed with the key: dropped unanswered (not from a key holder)
        stranger = Session(key=b"not-the-key", signature_scheme=session.signature_scheme)
        smsg = stranger.msg("clear_request", content={})
        sparts = [stranger.pack(smsg["header"]), stranger.pack({}), stranger.pack({}), stranger.pack({})]
        ctl.send_raw([b"<IDS|MSG>", stranger.sign(sparts), *sparts])
        ctl.send_raw([b"not a message"])

        # a handler that raises: answered with its error, traceback logged, the engine goes on
        def break_clear():
            import gc

            from jupyter_hub_ctl.engine.control import ControlChannel

            def boom(content):
                raise RuntimeError("clear handler exploded")

            channels = [o for o in gc.get_objects() if type(o) is ControlChannel]
            for ch in channels:
                ch.handlers["clear_request"] = boom
            return len(channels)

        assert rc[eid].apply_sync(break_clear) == 1
        content = _error(ctl.request("clear_request"), "RuntimeError")
        assert content["evalue"] == "clear handler exploded"
        log_path = hub.engines.procs[0].log_path
        wait_for(lambda: "clear handler exploded" in open(log_path).read(), 5, "the traceback in the engine's log")
        assert "control: clear_request failed" in open(log_path).read()
        assert "Traceback" in open(log_path).read()

        # the first reply on the DEALER is the answer to the next request: nothing else came back
        assert ctl.request("abort_request", {"msg_ids": []})["content"] == {"status": "ok"}
        assert rc[eid].apply_sync(lambda: "alive") == "alive"
        assert rc[eid].execute("2 ** 10", silent=False).get(10).execute_result["data"]["text/plain"] == "1024"
    finally:
        ctl.close()


# ---------------------------------------------------------------- ipyparallel's client


def test_ipyparallel_client_controls_our_engine(fresh_hub):
    ipp = pytest.importorskip("ipyparallel")
    hub = fresh_hub(n=1)
    rc = ipp.Client(hub.controller.client_file)
    try:
        rc.wait_for_engines(1, timeout=10)
        eid = rc.ids[0]
        dv = rc[eid]
        dv.execute("a = 5", block=True)
        _, took = _timed(rc.clear, targets=[eid], block=True)
        assert took < QUICK
        with pytest.raises(ipp.RemoteError) as info:
            dv.execute("a", block=True)
        assert info.value.ename == "NameError"
        dv.execute("c = 1 + 1", block=True)
        assert dv.execute("c", silent=False, block=True).execute_result["data"]["text/plain"] == "2"

        blocker = dv.execute("import time\nprint('running', flush=True)\ntime.sleep(60)", block=False)
        wait_for(lambda: "running" in (blocker.stdout or ""), 10, "the blocking execute to start")
        skipped = dv.execute("d = 1", block=False)
        kept = dv.execute("e = 2", block=False)
        _, took = _timed(rc.abort, skipped, targets=[eid], block=True)
        assert took < QUICK
        _, took = _timed(rc.send_signal, signal.SIGINT, targets=[eid], block=True)
        assert took < QUICK
        with pytest.raises(ipp.RemoteError) as info:
            blocker.get(10)
        assert info.value.ename == "KeyboardInterrupt"
        with pytest.raises(ipp.error.TaskAborted):
            skipped.get(10)
        kept.get(10)
        assert dv.execute("e", silent=False, block=True).execute_result["data"]["text/plain"] == "2"

        rc.send_signal("SIGINT", targets=[eid], block=True)  # by name, on an idle engine: ignored
        with pytest.raises(ipp.RemoteError) as info:
            rc.send_signal("SIGNOPE", targets=[eid], block=True)
        assert info.value.ename == "ValueError"
        assert dv.execute("e * 21", silent=False, block=True).execute_result["data"]["text/plain"] == "42"
    finally:
        rc.close()


# ---------------------------------------------------------------- engine death


def test_engine_watchdog_reports_a_killed_engine_at_once(fresh_hub):
    # without the watchdog, the hub would fail the balanced task only after ~11 heartbeat periods
    # plus TaskScheduler.stranded_delay (5 s)
    hub = fresh_hub(n=1)
    rc = hub.client
    (proc,) = hub.add_engines(1, "--watchdog")
    rc.wait_for_engines(2, timeout=30)
    victim = next(eid for eid in rc.ids if rc[eid].apply_sync(os.getpid) == proc.pid)
    watchdog = wait_for(lambda: [p for p in psutil.Process(proc.pid).children()
                                 if "jupyter_hub_ctl.engine.watchdog" in " ".join(p.cmdline())], 10, "the watchdog")
    direct = _start_blocker(rc[victim])
    balanced = rc.load_balanced_view(targets=[victim]).apply_async(lambda: "never")

    killed = time.monotonic()
    proc.kill()
    with pytest.raises(EngineError):
        direct.get(10)
    with pytest.raises(RemoteError, match="EngineError"):
        balanced.get(10)
    took = time.monotonic() - killed
    assert took < 2.5, f"the killed engine's tasks ended {took:.1f}s after the kill"
    assert victim not in rc.ids
    psutil.wait_procs(watchdog, timeout=10)
    assert not any(p.is_running() for p in watchdog), "the watchdog outlived its report"
