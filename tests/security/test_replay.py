"""Captured signed messages sent again, to any socket, later: they have no effect."""

from __future__ import annotations

import json
import os
import signal
from datetime import datetime, timedelta, timezone

from support.procs import wait_for
from support.wire import random_uuid, raw_peer


def _capture(rc, channel: bytes, call):
    """Run ``call()`` and return the frames ``rc`` sent on ``channel`` meanwhile (as bytes)."""
    sent = []
    send = rc._send

    def recording(ch, frames, *rest):
        if ch == channel:
            sent.append([bytes(f) for f in frames])
        send(ch, frames, *rest)

    rc._send = recording
    try:
        result = call()
    finally:
        rc._send = send
    return result, sent


def _drops(rc, socket: str) -> dict:
    return rc.health()["drops"].get(socket, {})


def test_a_captured_apply_request_runs_once_wherever_it_is_sent_again(hub_factory, zctx, tmp_path):
    h = hub_factory(n_engines=2)
    rc = h.client()
    rc.wait_for_engines(2, timeout=30)
    a, b = rc.ids
    ran = tmp_path / "ran"

    def mark(path):
        import os

        with open(path, "a") as f:
            f.write(f"{os.getpid()}\n")
        return os.getpid()

    pid_a, sent = _capture(rc, b"m", lambda: rc[a].apply_sync(mark, str(ran)))
    ((target, *frames),) = sent
    assert target == rc.engines[a].encode()
    c = h.controller
    mux, task = raw_peer(zctx, c.url("mux")), raw_peer(zctx, c.url("task"))
    mux.send_multipart([rc.engines[b].encode(), *frames])  # to the other engine
    mux.send_multipart([target, *frames])  # to the same one
    task.send_multipart(frames)  # load-balanced
    wait_for(lambda: _drops(rc, "mux-client").get("replay") == 2 and _drops(rc, "task-client").get("replay") == 1,
             10, "the three replays refused")
    assert not mux.poll(300) and not task.poll(0), "a replay was answered"
    assert ran.read_text().split() == [str(pid_a)]
    assert rc[b].apply_sync(os.getpid) != pid_a  # both engines still serve


def test_messages_dated_outside_the_window_are_refused_with_an_error(hub_factory, zctx):
    h = hub_factory(n_engines=1)
    rc = h.client()
    rc.wait_for_engines(1, timeout=30)
    c = h.controller
    session = c.session()
    for channel, msg_type in (("registration", "connection_request"), ("task", "apply_request")):
        peer = raw_peer(zctx, c.url(channel))
        for date, reason in ((datetime(2001, 9, 9, tzinfo=timezone.utc), "expired"),
                             (datetime.now(timezone.utc) + timedelta(days=1), "future")):
            header = session.msg_header(msg_type)
            header["date"] = date
            session.send(peer, msg_type, {}, header=header)
            assert peer.poll(5000), f"{msg_type} dated {date} got no answer"
            reply = session.deserialize(session.feed_identities(peer.recv_multipart())[1])
            assert reply["parent_header"]["msg_id"] == header["msg_id"]
            assert reply["content"]["status"] == "error" and reason in reply["content"]["evalue"]
        peer.close(0)
    assert _drops(rc, "registration") == {"expired": 1, "future": 1}
    assert _drops(rc, "task-client") == {"expired": 1, "future": 1}
    assert rc.load_balanced_view().apply_sync(os.getpid)  # nothing else disturbed


def test_a_replayed_registration_registers_nothing(hub_factory, zctx):
    h = hub_factory()
    c = h.controller
    session = c.session()
    uuid = random_uuid()
    peer = raw_peer(zctx, c.url("registration"), identity=uuid.encode())
    msg = session.msg("registration_request", {"uuid": uuid})
    frames = session.serialize(msg)
    peer.send_multipart(frames)
    assert peer.poll(5000)
    assert session.deserialize(session.feed_identities(peer.recv_multipart())[1])["content"]["status"] == "ok"
    again = raw_peer(zctx, c.url("registration"))  # (any connection: the signature is what is checked)
    again.send_multipart(frames)
    rc = h.client()
    wait_for(lambda: _drops(rc, "registration").get("replay") == 1, 10, "the replay refused")
    assert not again.poll(200)
    assert h.log().count(f"uuid {uuid}") == 1


def test_a_message_forgotten_by_a_full_memory_is_still_refused(hub_factory, zctx):
    """With room for 50 signatures, 100 newer requests push the first out; sent again it is refused as
    expired (the floor rose past its date), never answered as a new request."""
    h = hub_factory("--HubFactory.replay_memory=50")
    c = h.controller
    session = c.session()
    peer = raw_peer(zctx, c.url("registration"))
    first = session.serialize(session.msg("connection_request", {}))
    for frames in [first] + [session.serialize(session.msg("connection_request", {})) for _ in range(100)]:
        peer.send_multipart(frames)
        assert peer.poll(5000)
        reply = session.deserialize(session.feed_identities(peer.recv_multipart())[1])
        assert reply["msg_type"] == "connection_reply"
    peer.send_multipart(first)
    assert peer.poll(5000)
    reply = session.deserialize(session.feed_identities(peer.recv_multipart())[1])
    assert reply["content"]["status"] == "error" and "expired" in reply["content"]["evalue"]
    rc = h.client()
    replay = rc.health()["replay"]
    assert replay["size"] == 50 and replay["forgotten"] >= 51


def test_a_message_captured_before_a_restart_is_refused_after_it(hub_factory, zctx):
    h = hub_factory("--sqlitedb", "--restore")
    c = h.controller
    session = c.session()
    msg = session.msg("connection_request", {})
    captured = session.serialize(msg)
    dated = int(msg["header"]["date"].timestamp() * 1_000_000)
    peer = raw_peer(zctx, c.url("registration"))
    peer.send_multipart(captured)
    assert peer.poll(5000)
    peer.recv_multipart()
    mark = os.path.join(c.profile_dir, "log", f"replay{c.cluster_id}.json")
    def saved_floor():
        try:
            with open(mark) as f:
                return json.load(f)["floor"]
        except (OSError, ValueError):
            return 0

    wait_for(lambda: saved_floor() >= dated, 10, "the replay mark saved past the captured message")
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait(10)
    c.start()  # --restore: same ports and key
    fresh = raw_peer(zctx, c.url("registration"))
    session.send(fresh, "connection_request", {})
    assert fresh.poll(20_000), "the restarted controller does not answer"
    assert session.deserialize(session.feed_identities(fresh.recv_multipart())[1])["msg_type"] == "connection_reply"
    peer.send_multipart(captured)
    assert peer.poll(5000)
    reply = session.deserialize(session.feed_identities(peer.recv_multipart())[1])
    assert reply["content"]["status"] == "error" and "expired" in reply["content"]["evalue"]
