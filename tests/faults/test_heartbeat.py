"""Heartbeat trouble: an engine that goes silent is dropped once, quietly; one that was only paused
or cut off from the network comes back under the same id within the grace window."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
from support.netns import ip as _ip, namespace, setup_steps
from support.procs import wait_for

PING_MS = 100
MISSES = 3


def _beats_after(rc, eid: int, t0: float, periods: int):
    """True once engine ``eid``'s last heartbeat is ``periods`` heartbeat periods past ``t0``."""
    for e in rc.engines_info():
        if e["id"] == eid and e["last_heartbeat"] and e["last_heartbeat"] >= t0 + periods * PING_MS / 1000:
            return True
    return False


def _hb_args(grace: float):
    return (f"--HeartMonitor.max_heartmonitor_misses={MISSES}", f"--Hub.reconnect_grace={grace}")


def _victim(h):
    """A client of hub ``h`` with two engines: (client, victim process, its id, the other id)."""
    rc = h.client()
    rc.wait_for_engines(2, timeout=30)
    by_pid = {e["pid"]: e["id"] for e in rc.engines_info()}
    victim = h.engines.procs[0]
    vid = by_pid[victim.pid]
    (other,) = [eid for eid in by_pid.values() if eid != vid]
    return rc, victim, vid, other


def test_paused_engine_is_dropped_once_and_comes_back_with_its_id(hub_factory):
    h = hub_factory(*_hb_args(60), ping=PING_MS, n_engines=2)
    rc, victim, vid, other = _victim(h)
    events = []
    rc.on_registration(events.append)
    victim.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: vid not in rc.ids, 15, f"engine {vid} dropped after missed heartbeats")
        dropped_at = time.time()
        # the other engine keeps working while the victim stays silent for many more periods
        assert rc[other].apply_sync(os.getpid) != victim.pid
        wait_for(lambda: _beats_after(rc, other, dropped_at, 10), 15, "ten more heartbeat periods")
        assert [(e["event"], e["id"]) for e in events] == [("unregister", vid)]
    finally:
        victim.send_signal(signal.SIGCONT)
    wait_for(lambda: vid in rc.ids, 15, f"engine {vid} back under the same id")
    assert [(e["event"], e["id"]) for e in events] == [("unregister", vid), ("register", vid)]
    assert rc[vid].apply_sync(os.getpid) == victim.pid
    assert {e["id"]: e["pid"] for e in rc.engines_info()}[vid] == victim.pid
    assert h.log_errors() == []
    assert "answers heartbeats again" in h.log()


def test_engine_silent_past_the_grace_window_is_not_taken_back(hub_factory):
    h = hub_factory(*_hb_args(0.3), ping=PING_MS, n_engines=2)
    rc, victim, vid, other = _victim(h)
    victim.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: vid not in rc.ids, 15, f"engine {vid} dropped")
        dropped_at = time.time()
        wait_for(lambda: _beats_after(rc, other, dropped_at, 6), 15, "the grace window to pass")
    finally:
        victim.send_signal(signal.SIGCONT)
    h.wait_log("after its 0.3s grace window", 1, timeout=15)
    assert vid not in rc.ids and len(rc.ids) == 1
    assert h.log_errors() == []


# ---------------------------------------------------------------- a real network partition
@pytest.fixture
def netns():
    """Namespace B joined to this one by a veth pair: here 10.233.<x>.1/30, B 10.233.<x>.2/30."""
    with namespace("hubctl-p") as ns:
        tag = ns[len("hubctl-p"):]
        veth_here, veth_there = f"hp{tag}a", f"hp{tag}b"
        subnet = f"10.233.{random.randrange(256)}"
        try:
            setup_steps(("link", "add", veth_here, "type", "veth", "peer", "name", veth_there),
                        ("link", "set", veth_there, "netns", ns),
                        ("addr", "add", f"{subnet}.1/30", "dev", veth_here),
                        ("-n", ns, "addr", "add", f"{subnet}.2/30", "dev", veth_there),
                        ("link", "set", veth_here, "up"),
                        ("-n", ns, "link", "set", veth_there, "up"),
                        ("-n", ns, "link", "set", "lo", "up"))
            yield {"ns": ns, "link": veth_here, "ip": f"{subnet}.1"}
        finally:
            _ip("link", "del", veth_here)


def test_partitioned_engine_comes_back_with_its_id(hub_factory, netns, tmp_path):
    h = hub_factory(*_hb_args(60), f"--ip={netns['ip']}", ping=PING_MS, n_engines=1)
    rc = h.client()
    rc.wait_for_engines(1, timeout=30)
    log = open(tmp_path / "far-engine.log", "ab")
    far = subprocess.Popen(["ip", "netns", "exec", netns["ns"], sys.executable, "-m", "jupyter_hub_ctl.engine",
                            f"--file={h.controller.engine_file}"],
                           stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        rc.wait_for_engines(2, timeout=30)
        by_pid = {e["pid"]: e["id"] for e in rc.engines_info()}
        (near,) = [by_pid[p.pid] for p in h.engines.procs]
        (fid,) = [eid for eid in by_pid.values() if eid != near]
        far_pid = rc[fid].apply_sync(os.getpid)
        events = []
        rc.on_registration(events.append)
        assert _ip("link", "set", netns["link"], "down").returncode == 0
        try:
            wait_for(lambda: fid not in rc.ids, 15, f"partitioned engine {fid} dropped")
            cut_at = time.time()
            wait_for(lambda: _beats_after(rc, near, cut_at, 10), 15, "ten heartbeat periods of partition")
        finally:
            assert _ip("link", "set", netns["link"], "up").returncode == 0
        wait_for(lambda: fid in rc.ids, 30, f"engine {fid} back after the partition")
        assert [(e["event"], e["id"]) for e in events] == [("unregister", fid), ("register", fid)]
        assert rc[fid].apply_sync(os.getpid) == far_pid
        assert h.log_errors() == []
    finally:
        far.terminate()
        try:
            far.wait(10)
        except subprocess.TimeoutExpired:
            far.kill()
            far.wait(5)
        log.close()
