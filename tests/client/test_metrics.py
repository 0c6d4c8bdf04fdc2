"""Engine metrics through the hub: real controller, real engines, our Client."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import time

import pytest
from support.peers import Peer
from support.procs import wait_for

from jupyter_hub_ctl.client.errors import RemoteError

FAST = ["--Hub.metrics_interval=0.2"]  # as live_hub


def spin(seconds):
    """Keep one core busy for ``seconds``."""
    import time

    end = time.time() + seconds
    n = 0
    while time.time() < end:
        n += 1
    return n


spin.__module__ = "__main__"  # shipped by value (the engines cannot import this test module)


def samples(rc, eid, n, timeout=20):
    """Wait until engine ``eid`` has ``n`` samples in the hub; return them (oldest first)."""
    def enough():
        hist = rc.engine_metrics(eid, history=n)["engines"][eid]["history"]
        return hist if len(hist) >= n else None

    return wait_for(enough, timeout, f"{n} metrics samples of engine {eid}", interval=0.1)


def test_samples_are_plausible_and_name_the_engines_process(live_hub):
    rc = live_hub.client
    pids = {e["id"]: e["pid"] for e in rc.engines_info()}
    for eid in rc.ids:
        hist = samples(rc, eid, 3)
        reply = rc.engine_metrics(eid)
        assert reply["interval"] == 0.2
        latest = reply["engines"][eid]["latest"]
        assert latest == hist[-1] and reply["engines"][eid]["history"] == []
        assert set(latest) == {"time", "cpu", "rss", "threads", "task", "task_name", "host", "pid"}
        assert latest["pid"] == pids[eid]
        assert latest["host"] == socket.gethostname()
        assert 10 * 2**20 < latest["rss"] < 2**31  # a Python process with zmq: tens of MB
        assert latest["threads"] >= 3  # main, heart, metrics (and zmq's)
        assert latest["cpu"] >= 0 and latest["task"] is None and latest["task_name"] is None
        times = [s["time"] for s in hist]
        assert times == sorted(times) and abs(times[-1] - time.time()) < 10
    host = reply["hosts"][socket.gethostname()]
    assert host["cpus"] == os.cpu_count()
    assert 0 < host["mem_used"] < host["mem_total"]
    assert host["load1"] >= 0


def test_history_is_a_bounded_ring_oldest_first(live_hub):
    rc = live_hub.client
    eid = rc.ids[0]
    first = samples(rc, eid, 8)
    # the ring holds 8 (Hub.metrics_history): asking for more gives 8; it moves on
    wait_for(lambda: rc.engine_metrics(eid, history=100)["engines"][eid]["history"][0]["time"] > first[0]["time"],
             20, "the ring to move on")
    hist = rc.engine_metrics(eid, history=100)["engines"][eid]["history"]
    assert len(hist) == 8
    assert [s["time"] for s in hist] == sorted(s["time"] for s in hist)
    two = rc.engine_metrics([eid], history=2)["engines"][eid]
    assert len(two["history"]) == 2 and two["history"][-1] == two["latest"]


def test_cpu_rises_while_a_task_spins_and_the_task_shows(live_hub):
    rc = live_hub.client
    eid = rc.ids[0]
    idle = samples(rc, eid, 5)
    ar = rc[eid].apply_async(spin, 4.0)
    msg_id = ar.msg_ids[0]
    seen = []

    def running():
        latest = rc.engine_metrics(eid)["engines"][eid]["latest"]
        if latest["task"] == msg_id:
            seen.append(latest)
        return len(seen) >= 3

    wait_for(running, 20, "three samples naming the spinning task", interval=0.1)
    ar.get(30)
    assert {s["task_name"] for s in seen} == {"spin"}
    idle_cpu = statistics.median(s["cpu"] for s in idle)
    busy_cpu = max(s["cpu"] for s in seen)
    # a spinning Python thread uses a core when it has one; on a loaded machine it gets its share
    assert busy_cpu >= 15 and busy_cpu > idle_cpu + 10, (idle_cpu, [s["cpu"] for s in seen])
    wait_for(lambda: rc.engine_metrics(eid)["engines"][eid]["latest"]["task"] is None, 10,
             "the engine to report itself idle again", interval=0.1)


def test_a_killed_engines_metrics_are_gone(fresh_hub):
    h = fresh_hub(2, FAST)
    rc = h.client
    victim, other = rc.ids
    samples(rc, victim, 2)
    pid = rc.engine_metrics(victim)["engines"][victim]["latest"]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: victim not in rc.ids, 30, "the hub to drop the killed engine")
    reply = rc.engine_metrics()
    assert set(reply["engines"]) == {other}
    assert reply["engines"][other]["latest"] is not None
    with pytest.raises(RemoteError, match="No Such Engine"):
        rc.engine_metrics(victim)


def test_interval_zero_means_no_reports_unless_an_engine_overrides(fresh_hub):
    h = fresh_hub(1, ["--Hub.metrics_interval=0"])
    rc = h.client
    quiet = rc.ids[0]
    h.add_engines(1, "--metrics-interval=0.1")
    rc.wait_for_engines(2, timeout=30)
    loud = [e for e in rc.ids if e != quiet][0]
    samples(rc, loud, 5)  # half a second of reports from the engine that overrides
    reply = rc.engine_metrics(history=10)
    assert reply["interval"] == 0
    assert reply["engines"][quiet] == {"latest": None, "history": []}


def test_malformed_reports_and_requests(live_hub):
    rc = live_hub.client
    c = live_hub.controller
    eid = rc.ids[0]
    uuid = rc.engines[eid]
    samples(rc, eid, 1)
    import zmq

    ctx = zmq.Context()
    stranger = Peer(ctx, c.url("registration"), c.session())
    as_engine = Peer(ctx, c.url("registration"), c.session(session=uuid))
    try:
        stranger.send("engine_metrics_report", {"cpu": 1.0, "rss": 1, "threads": 1})
        for bad in ({"cpu": "lots", "rss": 1, "threads": 1}, {"cpu": 1.0, "rss": -5, "threads": 1},
                    {"cpu": 1.0, "rss": 1, "threads": 1, "task": ["x"]},
                    {"cpu": 1.0, "rss": 1, "threads": 1, "task": "x", "task_started": 1e300}):
            as_engine.send("engine_metrics_report", bad)

        def counted():
            errors = rc.health()["errors"]
            return errors.get("bad-metrics", 0) >= 4 and errors.get("metrics-unknown-engine", 0) >= 1

        wait_for(counted, 10, "the bad reports to be counted")
        # reports are never answered, not even bad ones
        assert not stranger.sock.poll(200) and not as_engine.sock.poll(200)
        latest = rc.engine_metrics(eid)["engines"][eid]["latest"]
        assert isinstance(latest["cpu"], float) and latest["rss"] > 0
        for content in ({"history": "all"}, {"history": -1}, {"targets": [9999]}, {"targets": "x"}):
            reply = stranger.request("engine_metrics_request", content)
            assert reply["msg_type"] == "engine_metrics_reply"
            assert reply["content"]["status"] == "error"
    finally:
        stranger.close()
        as_engine.close()
        ctx.destroy(0)
