"""Input from peers without the key is bounded: one huge frame costs nothing, a flood of garbage
costs a counter and a log line per interval."""

from __future__ import annotations

import os
import time

import pytest
from support.procs import rss_kb, wait_for
from support.wire import long_frame_header, raw_peer, zmtp_null_dealer

from jupyter_hub_ctl.client.errors import RemoteError

GB = 10**9


def test_a_1gb_frame_is_refused_from_its_header_and_controller_memory_stays_flat(hub_factory):
    h = hub_factory(n_engines=1)
    rc = h.client()
    rc.wait_for_engines(1, timeout=30)
    pid = h.controller.proc.pid
    before = rss_kb(pid)
    peak = before
    s = zmtp_null_dealer(h.controller.client_info["task"])
    s.sendall(long_frame_header(GB))
    chunk = b"\0" * (1 << 20)
    sent = 0
    deadline = time.monotonic() + 60
    try:
        while sent < GB and time.monotonic() < deadline:
            s.sendall(chunk)
            sent += len(chunk)
            if sent % (64 << 20) == 0:
                peak = max(peak, rss_kb(pid))
    except OSError:  # the controller closed the connection: the frame was refused
        pass
    finally:
        s.close()
    peak = max(peak, rss_kb(pid))
    assert sent < 256 << 20, f"{sent >> 20} MB of a 1 GB frame were accepted before the refusal"
    assert peak - before < 64 * 1024, f"controller RSS grew by {(peak - before) // 1024} MB"
    assert rc.load_balanced_view().apply_sync(os.getpid)  # still serving


def test_a_flood_of_unauthenticated_messages_is_counted_and_logged_in_summary(hub_factory, zctx):
    h = hub_factory()
    rc = h.client()
    n = 100_000
    garbage = raw_peer(zctx, h.controller.url("registration"))
    forged = raw_peer(zctx, h.controller.url("task"))
    start = time.monotonic()
    for i in range(n):
        garbage.send(b"junk %d" % i)
        forged.send_multipart([b"<IDS|MSG>", b"0" * 64, b"{}", b"{}", b"{}", b"{}"])
    drops = wait_for(lambda: (lambda d: d if d.get("registration", {}).get("no-delimiter") == n
                              and d.get("task-client", {}).get("bad-signature") == n else None)(
        rc.health()["drops"]), 120, f"{n} drops counted on each socket")
    elapsed = time.monotonic() - start
    lines = [line for line in h.log().splitlines() if "dropped" in line and "bad message" in line]
    # one line at the first drop, then at most one per 10 s interval
    assert 1 <= len(lines) <= 2 + elapsed / 10, lines
    assert drops["registration"] == {"no-delimiter": n}
    assert rc.health()["state"] == "ok"
    garbage.close(0)
    forged.close(0)


def test_oversized_messages_on_every_socket_are_refused(hub_factory, zctx):
    h = hub_factory("--HubFactory.maxmsgsize=100000", n_engines=1)
    rc = h.client()
    rc.wait_for_engines(1, timeout=30)
    session = h.controller.session()
    for channel in ("registration", "task", "mux", "control", "broadcast"):
        peer = raw_peer(zctx, h.controller.url(channel))
        session.send(peer, "connection_request", {"pad": "x" * 200_000})
        assert not peer.poll(300), f"an oversized message on {channel} was answered"
        peer.close(0)
    pong = raw_peer(zctx, h.controller.url("hb_pong", side="engine"))
    pong.send(b"x" * 10_000)  # pongs are capped at 4 kB whatever maxmsgsize is
    pong.close(0)
    assert rc.load_balanced_view().apply_sync(os.getpid)
    assert "hb_pong" not in rc.health()["drops"]  # refused by libzmq before anything was read


def test_our_client_and_engine_respect_the_bound_or_say_why(hub_factory):
    """Arrays larger than the bound travel in pieces; a single part that is too large is refused by
    the sender with the reason (the hub would drop it unseen and the request would never finish)."""
    import numpy as np

    h = hub_factory("--HubFactory.maxmsgsize=20000000", n_engines=1)
    rc = h.client()
    rc.wait_for_engines(1, timeout=30)
    view = rc[rc.ids[0]]
    data = np.arange(6_250_000, dtype=np.float64)  # 50 MB, out of band: sent in 4 MiB pieces
    view.push({"arr": data}, block=True)
    assert (view.pull("arr", block=True) == data).all()
    with pytest.raises(ValueError, match="larger than the hub accepts"):
        view.push({"blob": b"x" * 30_000_000}, block=True)  # in the pickle stream: one part
    with pytest.raises(RemoteError, match="larger than the hub accepts"):
        view.apply_sync(lambda: b"x" * 30_000_000)
    assert view.apply_sync(lambda: float(arr.sum())) == float(data.sum())  # noqa: F821 (the pushed name)
