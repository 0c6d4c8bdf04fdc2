"""A peer without the key connects with an engine's uuid or a client's session id (both are
readable by anyone on the client-side IOPub port): it can neither drop, starve nor misroute them."""

from __future__ import annotations

import os
import time

import zmq
from support.procs import wait_for
from support.wire import random_uuid, raw_peer


def _engine(h):
    rc = h.client()
    rc.wait_for_engines(1, timeout=30)
    ((eid, uuid),) = rc.engines.items()
    return rc, eid, uuid


def test_sixty_seconds_of_forged_pongs_neither_drop_nor_replace_an_engine(hub_factory, zctx):
    h = hub_factory("--HeartMonitor.max_heartmonitor_misses=3", ping=100, n_engines=1)
    rc, eid, uuid = _engine(h)
    pid = rc[eid].apply_sync(os.getpid)
    c = h.controller
    pings = raw_peer(zctx, c.url("hb_ping", side="engine"), zmq.SUB)
    pings.setsockopt(zmq.SUBSCRIBE, b"")
    # one thief with the engine's uuid as routing id, one with a uuid the hub never accepted
    thieves = [raw_peer(zctx, c.url("hb_pong", side="engine"), identity=ident)
               for ident in (uuid.encode(), random_uuid().encode())]
    deadline = time.monotonic() + 60
    forged = 0
    next_check = time.monotonic() + 5
    while time.monotonic() < deadline:
        if pings.poll(100):
            ping = pings.recv()
            for t in thieves:
                t.send(ping)
            forged += 1
        if time.monotonic() >= next_check:
            assert rc.ids == [eid], f"engine {eid} lost after {forged} forged pongs"
            next_check += 5
    for t in thieves:
        t.close(0)
    assert forged > 300
    assert rc.ids == [eid]
    assert rc[eid].apply_sync(os.getpid) == pid
    assert [e["pid"] for e in rc.engines_info()] == [pid]
    # the random-id thief's pongs are counted; the one with the engine's uuid is not even read
    # (libzmq refuses a second connection with a routing id in use)
    assert rc.health()["drops"]["hb_pong"]["unknown-heart"] >= forged
    assert "unregistered" not in h.log()


def test_a_thief_on_the_engine_side_task_and_mux_ports_gets_nothing(hub_factory, zctx):
    h = hub_factory(n_engines=1)
    rc, eid, uuid = _engine(h)
    pid = rc[eid].apply_sync(os.getpid)
    c = h.controller
    thieves = [raw_peer(zctx, c.url(ch, side="engine"), zmq.ROUTER, identity=uuid.encode())
               for ch in ("task", "mux", "broadcast")]
    lview = rc.load_balanced_view()
    for _ in range(20):  # the thieves' connections are up long before the last of these
        assert lview.apply_sync(os.getpid) == pid
        assert rc[eid].apply_sync(os.getpid) == pid
    assert rc.broadcast_view().apply_sync(os.getpid) == [pid]
    assert not any(t.poll(200) for t in thieves), "a thief received an engine's work"
    assert rc.queue_status()[eid]["completed"] >= 41
    assert rc.health()["state"] == "ok"


def test_a_thief_with_a_clients_session_id_cannot_take_its_results(hub_factory, zctx):
    h = hub_factory(n_engines=1)
    victim, eid, uuid = _engine(h)
    pid = victim[eid].apply_sync(os.getpid)
    c = h.controller
    ident = victim.session.session.encode()  # our client's routing id on every channel
    thieves = [raw_peer(zctx, c.url(ch), identity=ident) for ch in ("task", "mux", "registration", "control")]
    lview = victim.load_balanced_view()
    for _ in range(20):
        assert lview.apply_sync(os.getpid) == pid
        assert victim[eid].apply_sync(os.getpid) == pid
    assert victim.queue_status()[eid]["completed"] >= 40
    assert not any(t.poll(200) for t in thieves), "a thief received the victim's replies"
    for t in thieves:
        t.close(0)
    assert lview.apply_sync(os.getpid) == pid  # the victim's channels are still its own
    assert victim[eid].apply_sync(os.getpid) == pid


def test_the_mux_relay_routes_only_to_registered_engines(hub_factory, zctx):
    h = hub_factory(n_engines=1)
    rc, eid, uuid = _engine(h)
    c = h.controller
    squatter = raw_peer(zctx, c.url("mux", side="engine"), zmq.ROUTER, identity=b"not-an-engine")
    session = c.session()
    sender = raw_peer(zctx, c.url("mux"))
    session.send(sender, "execute_request", {"code": "1"}, ident=[b"not-an-engine"])
    assert sender.poll(5000), "a request to an unknown engine got no answer"
    reply = session.deserialize(session.feed_identities(sender.recv_multipart())[1])
    assert reply["content"]["ename"] == "EngineError"
    assert "not-an-engine" in reply["content"]["evalue"]
    assert not squatter.poll(200), "the relay routed to an identity no engine registered"
    wait_for(lambda: rc.health()["drops"].get("mux-client", {}).get("no-such-engine") == 1, 5,
             "the refusal counted")


def test_a_request_waits_for_a_registered_engine_whose_connection_comes_up_late(hub_factory, zctx):
    """An engine taken back from its heartbeat reconnects its shell a moment later: a direct request
    sent meanwhile is delivered once it does (not dropped), and refused with a reason if it never does."""
    h = hub_factory()
    c = h.controller
    session = c.session()
    rc = h.client()
    engines = []
    for _ in range(2):
        uuid = random_uuid()
        reg = raw_peer(zctx, c.url("registration"), identity=uuid.encode())
        session.send(reg, "registration_request", {"uuid": uuid})
        assert reg.poll(5000)
        reg.close(0)
        heart = raw_peer(zctx, c.url("hb_pong", side="engine"), identity=uuid.encode())
        engines.append((uuid, heart))
    pings = raw_peer(zctx, c.url("hb_ping", side="engine"), zmq.SUB)
    pings.setsockopt(zmq.SUBSCRIBE, b"")

    def beating():
        while pings.poll(0):
            ping = pings.recv()
            for _, heart in engines:
                heart.send(ping)
        return len(rc.engines) == 2

    wait_for(beating, 15, "both fake engines registered", interval=0.05)
    (late, _), (never, _) = engines
    sender = raw_peer(zctx, c.url("mux"))
    sent = session.send(sender, "execute_request", {"code": "1"}, ident=[late.encode()])
    refused = session.send(sender, "execute_request", {"code": "2"}, ident=[never.encode()])
    # the controller has the request while the engine's shell is not connected (the point of the test)
    wait_for(lambda: beating() is not None and rc.db_query({"msg_id": sent["header"]["msg_id"]}, keys=["msg_id"]),
             10, "the request received by the controller", interval=0.05)
    shell = raw_peer(zctx, c.url("mux", side="engine"), zmq.ROUTER, identity=late.encode())
    wait_for(lambda: beating() is not None and shell.poll(50), 10, "the held request delivered", interval=0)
    got = session.deserialize(session.feed_identities(shell.recv_multipart())[1])
    assert got["header"]["msg_id"] == sent["header"]["msg_id"]
    wait_for(lambda: beating() is not None and sender.poll(50), 20, "the other one refused", interval=0)
    reply = session.deserialize(session.feed_identities(sender.recv_multipart())[1])
    assert reply["parent_header"]["msg_id"] == refused["header"]["msg_id"]
    assert "not connected" in reply["content"]["evalue"]
