"""CurveZMQ: an encrypting hub serves peers that know its public key, nobody else, and nothing it
carries can be read on the wire."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys

import pytest
import zmq
from support.netns import namespace, setup_steps
from support.procs import Controller, Engines, wait_for
from support.wire import RecordingProxy, raw_peer

from jupyter_hub_ctl import Client


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _no_answer_without_the_key(zctx, c, server_key):
    """A plain peer, and a CURVE peer with another server key: neither gets an answer."""
    session = c.session()
    plain = raw_peer(zctx, c.url("registration"))
    wrong = zctx.socket(zmq.DEALER)
    wrong.setsockopt(zmq.LINGER, 0)
    public, secret = zmq.curve_keypair()
    wrong.curve_serverkey, wrong.curve_publickey, wrong.curve_secretkey = zmq.curve_keypair()[0], public, secret
    wrong.connect(c.url("registration"))
    for peer in (plain, wrong):
        session.send(peer, "connection_request", {})
    assert not plain.poll(1000) and not wrong.poll(0), "a peer without the server key was answered"
    right = zctx.socket(zmq.DEALER)
    right.setsockopt(zmq.LINGER, 0)
    right.curve_serverkey, right.curve_publickey, right.curve_secretkey = server_key, public, secret
    right.connect(c.url("registration"))
    session.send(right, "connection_request", {})
    assert right.poll(5000), "a peer with the server key was not answered"
    for s in (plain, wrong, right):
        s.close(0)


def test_an_encrypting_hub_serves_our_client_and_engines_and_nobody_without_its_key(hub_factory, zctx):
    h = hub_factory("--enable-curve", n_engines=2)
    c = h.controller
    key = c.client_info["curve_serverkey"]
    assert key and key == c.engine_info["curve_serverkey"] and len(key) == 40
    rc = h.client()
    rc.wait_for_engines(2, timeout=30)
    assert rc.health()["encrypted"] is True
    pids = rc[:].apply_sync(os.getpid)
    assert sorted(rc.load_balanced_view().map_sync(lambda x: x * x, range(20))) == [x * x for x in range(20)]
    assert sorted(rc.broadcast_view().apply_sync(os.getpid)) == sorted(pids)
    rc[:].push({"blob": b"x" * (20 << 20)}, block=True)  # a push in pieces, encrypted too
    assert rc[:].apply_sync(lambda: len(blob)) == [20 << 20] * 2  # noqa: F821 (the pushed name)
    _no_answer_without_the_key(zctx, c, key.encode())
    assert "encrypted (CurveZMQ)" in h.log()
    keys = os.path.join(c.profile_dir, "security", f"ipcontroller-{c.cluster_id}-curve.json")
    assert oct(os.stat(keys).st_mode & 0o777) == "0o600"
    h.stop()
    assert not os.path.exists(keys)  # removed with the connection files


@pytest.mark.parametrize("curve", [False, True], ids=["plaintext", "curve"])
def test_what_travels_is_readable_on_the_wire_only_without_curve(hub_factory, curve):
    h = hub_factory(*(["--enable-curve"] if curve else []), n_engines=1)
    c = h.controller
    proxies = {ch: RecordingProxy(c.client_info[ch]) for ch in ("task", "mux", "iopub")}
    info = dict(c.client_info, **{ch: p.port for ch, p in proxies.items()})
    rc = Client(info)
    h.clients.append(rc)
    try:
        rc.wait_for_engines(1, timeout=30)
        secret = "a-very-particular-argument-%d" % random.randrange(10**9)

        def echo(text):
            print(text[::-1])
            return text.upper()

        assert rc.load_balanced_view().apply_sync(echo, secret) == secret.upper()
        ar = rc[rc.ids[0]].apply_async(echo, secret)
        assert ar.get(10) == secret.upper()
        wait_for(lambda: ar.stdout, 10, "the output over IOPub")
        needles = [secret.encode(), secret.upper().encode(), secret[::-1].encode()]
        seen = {n: any(p.seen(n) for p in proxies.values()) for n in needles}
        if curve:
            assert not any(seen.values()), f"readable on the wire: {seen}"
        else:  # the proxies do see the traffic: the same check would catch plaintext
            assert all(seen.values()), seen
    finally:
        for p in proxies.values():
            p.close()


def test_an_encrypting_hub_keeps_its_key_pair_across_a_restart(hub_factory):
    h = hub_factory("--enable-curve", "--sqlitedb", "--restore", n_engines=1)
    c = h.controller
    rc = h.client()
    rc.wait_for_engines(1, timeout=30)
    (eid, uuid), = rc.engines.items()
    key = c.client_info["curve_serverkey"]
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait(10)
    c.start()
    with open(c.client_file) as f:
        assert json.load(f)["curve_serverkey"] == key
    h.wait_log("controller ready", 2)
    wait_for(lambda: {e["id"]: e["uuid"] for e in rc.engines_info()} == {eid: uuid}, 20, "the engine back")
    assert rc[eid].apply_sync(os.getpid) == h.engines.procs[0].pid


# ---------------------------------------------------------------- beyond loopback: on by default
@pytest.fixture
def far_address():
    """A network namespace with a non-loopback address of its own: (namespace, address)."""
    with namespace("hubctl-c") as ns:
        address = f"10.234.{random.randrange(256)}.1"
        setup_steps(("-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"),
                    ("-n", ns, "addr", "add", f"{address}/24", "dev", "v0"),
                    ("-n", ns, "link", "set", "v0", "up"), ("-n", ns, "link", "set", "v1", "up"),
                    ("-n", ns, "link", "set", "lo", "up"))
        yield ns, address


@pytest.mark.parametrize("flag", [None, "--no-curve"])
def test_curve_is_on_by_default_beyond_loopback_and_off_only_when_asked(tmp_path, far_address, flag):
    ns, address = far_address
    c = Controller(tmp_path, [f"--ip={address}", *([flag] if flag else [])], log_level=20,
                   wrapper=["ip", "netns", "exec", ns]).start()
    engine = None
    try:
        if flag:
            assert c.client_info["curve_serverkey"] is None
            wait_for(lambda: "CurveZMQ encryption is off although" in c.log_tail(), 10, "the warning")
            return
        assert c.client_info["curve_serverkey"] and c.engine_info["curve_serverkey"]
        assert "encrypted (CurveZMQ)" in c.log_tail()
        engine = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "jupyter_hub_ctl.engine",
                                   f"--file={c.engine_file}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: "is ready" in c.log_tail(), 30, "an engine in the namespace registered over CurveZMQ")
    finally:
        if engine is not None:
            engine.terminate()
            engine.wait(10)
        c.stop()


# ---------------------------------------------------------------- ipcontroller with curve
def test_our_client_and_engines_work_against_an_encrypting_ipcontroller(tmp_path):
    c = Controller(tmp_path, ["--IPController.enable_curve=True"], module="ipyparallel.controller", ping=250)
    c.start()
    engines = Engines(c, str(tmp_path))
    rc = None
    try:
        assert c.client_info["curve_serverkey"] and c.client_info["key"] == ""  # ipcontroller drops the HMAC key
        wait_for(lambda: _accepts(c.client_info["registration"]), 20, "ipcontroller listening")
        engines.start(2)
        rc = Client(c.client_file)
        rc.wait_for_engines(2, timeout=60)
        assert rc.curve is not None
        assert sorted(rc.load_balanced_view().map_sync(abs, range(-5, 0))) == [1, 2, 3, 4, 5]
        assert len(set(rc[:].apply_sync(os.getpid))) == 2
    finally:
        if rc is not None:
            rc.close()
        engines.stop()
        c.stop()
