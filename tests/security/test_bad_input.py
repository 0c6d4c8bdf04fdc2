"""Signed but bad input (from a peer holding the key): answered with an error, never fatal, never stored."""

from __future__ import annotations

import json
import os

from support.procs import wait_for
from support.wire import random_uuid, raw_peer

DEEP = b"[" * 100_000 + b"]" * 100_000


def _signed(session, msg_type, content=b"{}", metadata=b"{}", idents=()):
    """A correctly signed message whose frames are given as raw bytes (any JSON, valid or not)."""
    header = session.msg_header(msg_type)
    parts = [session.pack(header), b"{}", metadata, content]
    return header, [*idents, b"<IDS|MSG>", session.sign(parts), *parts]


def _answer(session, sock):
    assert sock.poll(10_000), "no answer"
    return session.deserialize(session.feed_identities(sock.recv_multipart())[1])


def test_deeply_nested_json_is_answered_by_hub_and_engine_and_kills_nothing(hub_factory, zctx):
    h = hub_factory(n_engines=1)
    rc = h.client()
    rc.wait_for_engines(1, timeout=30)
    (eid, uuid), = rc.engines.items()
    engine = h.engines.procs[0]
    c = h.controller
    session = c.session()
    cases = [
        ("registration", "connection_request", {"content": DEEP}, ()),
        ("task", "apply_request", {"metadata": b'{"x": ' + DEEP + b"}"}, ()),
        ("mux", "execute_request", {"content": b'{"code": ' + DEEP + b"}"}, (uuid.encode(),)),  # reaches the engine
        ("control", "clear_request", {"content": DEEP}, (uuid.encode(),)),  # the engine's control thread
        ("broadcast", "apply_request", {"metadata": DEEP}, ()),
    ]
    for channel, msg_type, frames, idents in cases:
        peer = raw_peer(zctx, c.url(channel))
        header, msg = _signed(session, msg_type, idents=idents, **frames)
        peer.send_multipart(msg)
        reply = _answer(session, peer)
        assert reply["parent_header"]["msg_id"] == header["msg_id"], channel
        assert reply["content"]["status"] == "error", (channel, reply["content"])
        assert "too-deep" in reply["content"]["evalue"] or "nested" in reply["content"]["evalue"], reply["content"]
        peer.close(0)
    assert engine.poll() is None, "the engine died"
    assert rc[eid].apply_sync(os.getpid) == engine.pid
    assert rc.ids == [eid]
    assert h.log_errors() == []


def test_nan_is_refused_and_db_query_of_full_records_keeps_working(hub_factory, zctx):
    h = hub_factory("--sqlitedb", n_engines=1)
    rc = h.client()
    rc.wait_for_engines(1, timeout=30)
    done = rc.load_balanced_view().apply_async(os.getpid)
    done.get(30)
    session = h.controller.session()
    peer = raw_peer(zctx, h.controller.url("task"))
    for metadata in (b'{"timeout": NaN}', b'{"label": Infinity}', b'{"x": [-Infinity]}'):
        header, msg = _signed(session, "apply_request", metadata=metadata)
        peer.send_multipart(msg)
        reply = _answer(session, peer)
        assert reply["content"]["status"] == "error" and "is not a JSON number" in reply["content"]["evalue"]
    records = wait_for(lambda: rc.db_query({"msg_id": {"$ne": None}}), 10, "records")  # every key
    assert done.msg_ids[0] in [r["msg_id"] for r in records]
    assert rc.health()["drops"]["task-client"]["bad-json"] == 3


def test_an_absurd_registration_id_is_refused_and_never_persisted(hub_factory, zctx):
    h = hub_factory("--restore")
    c = h.controller
    session = c.session()
    for bad in (10**100, -1, 2**31, "3", True, 1.5):
        uuid = random_uuid()
        peer = raw_peer(zctx, c.url("registration"), identity=uuid.encode())
        session.send(peer, "registration_request", {"uuid": uuid, "id": bad})
        reply = _answer(session, peer)
        assert reply["content"]["status"] == "error", bad
        assert "engine id must be an int" in reply["content"]["evalue"]
        peer.close(0)
    h.engines.start(1)
    rc = h.client()
    rc.wait_for_engines(1, timeout=30)
    assert rc.ids == [0]
    with open(os.path.join(c.profile_dir, "log", f"engines{c.cluster_id}.json")) as f:
        state = json.load(f)  # what --restore would read
    assert state["next_id"] == 1 and list(state["engines"]) == ["0"]
