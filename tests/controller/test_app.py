"""The controller process: command line, environment, config files, files, signals, restore."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from support.peers import Peer
from support.procs import Controller, wait_for


def test_sigterm_exits_cleanly_and_removes_files(controller):
    for path in (controller.client_file, controller.engine_file):
        assert os.stat(path).st_mode & 0o777 == 0o600
    assert controller.stop() == 0
    assert not os.path.exists(controller.client_file)
    assert not os.path.exists(controller.engine_file)


def test_connection_files_have_every_key(controller):
    c, e = controller.client_info, controller.engine_info
    for key in ("key", "signature_scheme", "pack", "unpack", "location", "curve_serverkey", "ssh", "interface",
                "registration", "control", "mux", "task", "task_scheme", "iopub", "notification", "broadcast"):
        assert key in c, key
    for key in ("key", "signature_scheme", "pack", "unpack", "location", "interface", "registration", "control",
                "mux", "task", "iopub", "hb_ping", "hb_pong", "broadcast"):
        assert key in e, key
    assert isinstance(c["broadcast"], int) and isinstance(e["broadcast"], list)
    assert c["registration"] == e["registration"] and c["key"] == e["key"] and c["key"]
    assert c["task_scheme"] == "leastload"


def test_reuse_keeps_files_ports_and_key(controller_factory):
    c = controller_factory("--reuse")
    before = dict(c.client_info)
    assert c.stop() == 0
    assert os.path.exists(c.client_file)
    c.start()
    assert c.client_info == before


def test_environment_selects_profile_and_cluster_id(tmp_path):
    profile = tmp_path / "envprofile"
    env = dict(os.environ, IPP_PROFILE_DIR=str(profile), IPP_CLUSTER_ID="fromenv")
    log = open(tmp_path / "log", "wb")
    p = subprocess.Popen([sys.executable, "-m", "jupyter_hub_ctl.controller", "--ping=200"], env=env,
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        path = profile / "security" / "ipcontroller-fromenv-client.json"
        wait_for(lambda: path.exists() or p.poll() is not None, 20, "connection file from env")
        assert path.exists()
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
        log.close()


def test_profile_config_file_is_honoured(tmp_path, zctx):
    profile = tmp_path / "c0" / "profile"
    profile.mkdir(parents=True)
    (profile / "ipcontroller_config.py").write_text(
        "c.HeartMonitor.period = 321\nc.TaskScheduler.scheme_name = 'lru'\n")
    c = Controller(tmp_path / "c0", ping=None).start()
    try:
        assert c.client_info["task_scheme"] == "lru"
        peer = Peer(zctx, c.url("registration"), c.session())
        reply = peer.request("registration_request", {"uuid": "cfgtest-0000"})
        assert reply["content"]["hb_period"] == 321
        peer.close()
    finally:
        c.stop()


def test_command_line_beats_config_file(tmp_path):
    profile = tmp_path / "c0" / "profile"
    profile.mkdir(parents=True)
    (profile / "ipcontroller_config.py").write_text("c.TaskScheduler.scheme_name = 'lru'\n")
    c = Controller(tmp_path / "c0", ["--scheme=twobin"]).start()
    try:
        assert c.client_info["task_scheme"] == "twobin"
    finally:
        c.stop()


def _free_range(n):
    base = 20000 + (os.getpid() * 37) % 30000
    for start in range(base, base + 2000, n):
        ok = True
        for port in range(start, start + n):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                ok = False
            finally:
                s.close()
            if not ok:
                break
        if ok:
            return start, start + n - 1
    pytest.skip("no free port range found")


def test_port_pool_is_used(controller_factory):
    lo, hi = _free_range(20)
    c = controller_factory(f"--ports={lo}-{hi}")
    ports = [v for k, v in c.client_info.items() if isinstance(v, int) and k != "max_message_size"]
    ports += [p for k, v in c.engine_info.items() if k != "max_message_size"
              for p in (v if isinstance(v, list) else [v]) if isinstance(p, int)]
    assert ports and all(lo <= p <= hi for p in ports)


def test_sqlitedb_flag_puts_records_in_the_profile(controller_factory):
    c = controller_factory("--sqlitedb")
    assert os.path.exists(os.path.join(c.profile_dir, "tasks.db"))


def test_mongodb_is_refused_with_a_message(tmp_path):
    c = Controller(tmp_path, ["--mongodb"])
    with pytest.raises(RuntimeError, match="exited"):
        c.start()
    assert "not supported" in c.log_tail()


def test_load_request_reply_is_json(controller, zctx):
    import zmq

    peer = Peer(zctx, controller.url("registration"), controller.session())
    assert peer.request("load_request", {"targets": None})["content"] == {"status": "ok"}
    # register a raw engine and answer its heartbeats so it becomes a registered engine
    uuid = "loadtest-0001"
    reply = peer.request("registration_request", {"uuid": uuid})
    eid = reply["content"]["id"]
    sub = zctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(controller.url("hb_ping", side="engine"))
    pong = zctx.socket(zmq.DEALER)
    pong.setsockopt(zmq.IDENTITY, uuid.encode())
    pong.connect(controller.url("hb_pong", side="engine"))

    def registered():
        while sub.poll(50):
            pong.send(sub.recv())
        return str(eid) in peer.request("connection_request")["content"]["engines"]

    wait_for(registered, 10, "raw engine registered")
    content = peer.request("load_request", {"targets": None})["content"]
    assert content == {"status": "ok", str(eid): 0}
    sub.close(0)
    pong.close(0)
    peer.close()


def test_restore_takes_back_running_ipengines(tmp_path):
    ipp = pytest.importorskip("ipyparallel")
    c = Controller(tmp_path, ["--restore"]).start()
    logs, engines = [], []
    try:
        for i in range(2):
            log = open(tmp_path / f"ipengine{i}.log", "ab")
            logs.append(log)
            engines.append(subprocess.Popen([sys.executable, "-m", "ipyparallel.engine", f"--file={c.engine_file}"],
                                            stdout=log, stderr=subprocess.STDOUT))
        rc = ipp.Client(c.client_file)
        rc.wait_for_engines(2, timeout=60)
        before = sorted(rc.ids)
        rc.close()
        c.proc.send_signal(signal.SIGKILL)
        c.proc.wait(5)
        c.start()
        with open(c.client_file) as f:
            info = json.load(f)

        def restored():
            # a new Client each time: a stock Client learns of engines that register after its
            # connection request only from notifications, which it misses while its
            # subscription is still joining
            probe = ipp.Client(info)
            try:
                return sorted(probe.ids) == before
            finally:
                probe.close()

        wait_for(restored, 45, "engines restored under their old ids", interval=0.3)
        rc = ipp.Client(info)
        import operator

        assert rc[:].apply_sync(operator.add, 1, 2) == [3, 3]
        rc.close()
    finally:
        for p in engines:
            p.terminate()
        for p in engines:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()
        c.stop()
