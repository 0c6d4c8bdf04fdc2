"""Hostile input over real sockets: the controller drops or answers it, counts it,
and keeps serving a well-behaved client at the same time."""

from __future__ import annotations

import json

import pytest
import zmq

from support.peers import Peer
from support.procs import wait_for


def health(peer):
    reply = peer.request("health_request")
    assert reply["content"]["status"] == "ok"
    return reply["content"]


def still_serving(peer):
    reply = peer.request("connection_request")
    assert reply["content"]["status"] == "ok"
    assert reply["msg_type"] == "connection_reply"


@pytest.fixture
def peers(controller, zctx):
    good = Peer(zctx, controller.url("registration"), controller.session())
    bad_sock = zctx.socket(zmq.DEALER)
    bad_sock.setsockopt(zmq.LINGER, 0)
    bad_sock.connect(controller.url("registration"))
    yield controller, good, bad_sock
    good.close()
    bad_sock.close(0)


def _signed(session, header, parent, metadata, content):
    parts = [session.pack(header), session.pack(parent), session.pack(metadata), content]
    return [b"<IDS|MSG>", session.sign(parts), *parts]


def test_garbage_frames_are_dropped_and_counted(peers):
    controller, good, bad = peers
    bad.send_multipart([b"\x00\xff" * 10])
    bad.send_multipart([b"one", b"two", b"three"])
    still_serving(good)
    errors = wait_for(lambda: health(good)["errors"].get("no-delimiter", 0) >= 2 and health(good)["errors"],
                      5, "no-delimiter counted")
    assert errors["no-delimiter"] >= 2
    assert controller.proc.poll() is None


def test_bad_signature_unsigned_and_replay_are_dropped(peers):
    controller, good, bad = peers
    s = controller.session()
    msg = s.msg("connection_request", {})
    frames = _signed(s, msg["header"], {}, {}, s.pack({}))
    tampered = list(frames)
    tampered[1] = b"0" * 64
    bad.send_multipart(tampered)
    unsigned = list(frames)
    unsigned[1] = b""
    bad.send_multipart(unsigned)
    # the genuine message is answered once; its replay is dropped
    bad.send_multipart(frames)
    assert bad.poll(5000), "genuine request got no reply"
    reply = bad.recv_multipart()
    assert b"connection_reply" in reply[2]
    bad.send_multipart(frames)
    still_serving(good)
    errs = wait_for(lambda: (lambda e: e if e.get("replay") and e.get("bad-signature") and e.get("unsigned") else None)(
        health(good)["errors"]), 5, "drops counted")
    assert errs["replay"] == 1 and errs["bad-signature"] == 1 and errs["unsigned"] == 1
    assert not bad.poll(300), "a dropped message was answered"


def test_invalid_json_under_valid_signature_gets_an_error_reply(peers):
    controller, good, bad = peers
    s = controller.session()
    h = s.msg_header("queue_request")
    bad.send_multipart(_signed(s, h, {}, {}, b"{not json"))
    assert bad.poll(5000)
    reply = s.deserialize(s.feed_identities(bad.recv_multipart())[1])
    assert reply["content"]["status"] == "error"
    assert "malformed" in reply["content"]["evalue"]
    # content that is JSON but not an object
    bad.send_multipart(_signed(s, s.msg_header("queue_request"), {}, {}, b"[1, 2]"))
    assert bad.poll(5000)
    reply = s.deserialize(s.feed_identities(bad.recv_multipart())[1])
    assert reply["content"]["status"] == "error"
    still_serving(good)


def test_unknown_msg_type_gets_hub_error_with_parent(peers):
    controller, good, bad = peers
    reply = good.request("make_coffee_request", {"sugar": 2})
    assert reply["msg_type"] == "hub_error"
    assert reply["content"]["ename"] == "KeyError"
    assert "make_coffee_request" in reply["content"]["evalue"]
    assert health(good)["errors"]["unknown-msg-type"] == 1


@pytest.mark.parametrize("content", [
    {"targets": {"a": 1}},
    {"targets": [99]},
    {"targets": "no-such-uuid"},
    {"targets": [True]},
])
def test_bad_queue_request_values_get_error_replies(peers, content):
    controller, good, bad = peers
    reply = good.request("queue_request", content)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] in ("TypeError", "IndexError")
    still_serving(good)


@pytest.mark.parametrize("msg_type,content", [
    ("result_request", {"msg_ids": "abc"}),
    ("result_request", {"msg_ids": ["no-such-id"]}),
    ("db_request", {"query": [1, 2]}),
    ("db_request", {"query": {}, "keys": ["not_a_column"]}),
    ("db_request", {"query": {"msg_id": {"$bogus": 1}}}),
    ("purge_request", {"msg_ids": 5}),
    ("purge_request", {"msg_ids": [], "engine_ids": [1234]}),
    ("resubmit_request", {"msg_ids": ["no-such-id"]}),
    ("resubmit_request", {"msg_ids": [{"x": 1}]}),
    ("registration_request", {"uuid": 12}),
])
def test_bad_query_content_always_gets_a_reply(peers, msg_type, content):
    controller, good, bad = peers
    reply = good.request(msg_type, content)
    assert reply["content"]["status"] == "error", reply["content"]
    assert reply["content"]["ename"]
    assert "Traceback" not in reply["content"]["evalue"]
    still_serving(good)


def test_oversized_frame_on_registration_socket_is_refused(controller_factory, zctx):
    controller = controller_factory("--HubFactory.maxmsgsize=100000")
    good = Peer(zctx, controller.url("registration"), controller.session())
    big = Peer(zctx, controller.url("registration"), controller.session())
    big.send("connection_request", {"pad": "x" * 200_000})
    still_serving(good)
    assert not big.sock.poll(500), "oversized request was answered"
    assert controller.proc.poll() is None
    good.close()
    big.close()


def test_duplicate_msg_id_on_task_socket_is_refused(peers, zctx):
    controller, good, bad = peers
    task = Peer(zctx, controller.url("task"), controller.session())
    s = task.session
    msg = s.msg("apply_request", {}, metadata={"targets": [], "retries": 0})
    header = dict(msg["header"])
    task.send("apply_request", {}, header=header, metadata={"after": [], "follow": []})
    # same msg_id again (different signature because the date differs)
    header2 = dict(header, date=header["date"].replace(microsecond=(header["date"].microsecond + 1) % 1000000)
                   if hasattr(header["date"], "replace") else header["date"] + "x")
    task.send("apply_request", {}, header=header2, metadata={"after": [], "follow": []})
    reply = task.recv()
    assert reply["content"]["status"] == "error"
    assert "duplicate" in reply["content"]["evalue"]
    assert health(good)["errors"]["duplicate-msg-id"] == 1
    still_serving(good)
    task.close()


def test_bad_task_metadata_fails_that_task_only(peers, zctx):
    controller, good, bad = peers
    task = Peer(zctx, controller.url("task"), controller.session())
    task.send("apply_request", {}, metadata={"after": 12, "retries": "many"})
    reply = task.recv()
    assert reply["content"]["ename"] == "InvalidDependency"
    task.send("apply_request", {}, metadata={"after": ["never-submitted"]})
    reply = task.recv()
    assert reply["content"]["ename"] == "InvalidDependency"
    assert reply["msg_type"] == "apply_reply"
    # a refused execute_request is answered as what it asked for
    task.send("execute_request", {"code": "1"}, metadata={"after": ["never-submitted"]})
    reply = task.recv()
    assert reply["content"]["ename"] == "InvalidDependency"
    assert reply["msg_type"] == "execute_reply"
    still_serving(good)
    task.close()


def test_spoofed_reply_on_engine_side_is_dropped(peers, zctx):
    controller, good, bad = peers
    s = controller.session()
    fake = zctx.socket(zmq.ROUTER)
    fake.setsockopt(zmq.LINGER, 0)
    fake.setsockopt(zmq.IDENTITY, b"not-an-engine")
    fake.connect(controller.url("task", side="engine"))
    # the controller's task ROUTER has identity task_out; wait until the link is up
    reply = s.msg("apply_reply", {"status": "ok"}, parent={"msg_id": "nobody-asked"})
    def send_and_count():
        s.send(fake, reply["msg_type"], content=reply["content"], parent=reply["parent_header"],
               ident=[b"task_out", b"client-x"])
        return health(good)["errors"].get("unexpected-reply", 0) >= 1
    wait_for(send_and_count, 10, "spoofed reply counted", interval=0.1)
    still_serving(good)
    fake.close(0)


def test_notification_and_connection_files_survive_hostility(peers):
    controller, good, bad = peers
    for _ in range(200):
        bad.send_multipart([b"<IDS|MSG>", b"", b"{}", b"{}", b"{}", b"{}"])
    still_serving(good)
    with open(controller.client_file) as f:
        assert json.load(f)["registration"] == controller.client_info["registration"]
    assert controller.proc.poll() is None
