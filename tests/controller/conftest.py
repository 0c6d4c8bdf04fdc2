"""Fixtures: a real controller subprocess and raw ZeroMQ peers speaking to it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid as _uuid

import pytest
import zmq
from jupyter_client.session import Session


def wait_for(cond, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Controller:
    def __init__(self, root, args=(), cluster_id="t"):
        self.profile_dir = str(root / "profile")
        self.cluster_id = cluster_id
        self.log_path = str(root / "controller.log")
        self.args = list(args)
        sec = os.path.join(self.profile_dir, "security")
        self.client_file = os.path.join(sec, f"ipcontroller-{cluster_id}-client.json")
        self.engine_file = os.path.join(sec, f"ipcontroller-{cluster_id}-engine.json")
        self.proc = None

    def start(self):
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        cmd = [sys.executable, "-m", "jupyter_hub_ctl.controller", f"--profile-dir={self.profile_dir}",
               f"--cluster-id={self.cluster_id}", "--ping=200", "--log-level=10", *self.args]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(lambda: self.proc.poll() is not None or (os.path.exists(self.client_file)
                                                           and os.path.exists(self.engine_file)),
                 20, "connection files")
        if self.proc.poll() is not None:
            raise RuntimeError(f"controller exited {self.proc.returncode}:\n{self.log_tail()}")
        with open(self.client_file) as f:
            self.client_info = json.load(f)
        with open(self.engine_file) as f:
            self.engine_info = json.load(f)
        return self

    def url(self, channel, side="client"):
        info = self.client_info if side == "client" else self.engine_info
        port = info[channel]
        if isinstance(port, list):
            port = port[0]
        return f"{info['interface']}:{port}"

    def session(self, **kw):
        return Session(key=self.client_info["key"].encode(), signature_scheme=self.client_info["signature_scheme"], **kw)

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode("utf8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


class Peer:
    """A DEALER speaking to one controller socket with a jupyter_client Session."""

    def __init__(self, ctx, url, session, identity=None):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if identity:
            self.sock.setsockopt(zmq.IDENTITY, identity)
        self.sock.connect(url)
        self.session = session

    def send(self, msg_type, content=None, **kw):
        return self.session.send(self.sock, msg_type, content=content or {}, **kw)

    def recv(self, timeout=5.0):
        if not self.sock.poll(timeout * 1000):
            raise TimeoutError("no reply")
        idents, msg = self.session.feed_identities(self.sock.recv_multipart())
        return self.session.deserialize(msg)

    def request(self, msg_type, content=None, timeout=5.0, **kw):
        sent = self.send(msg_type, content, **kw)
        reply = self.recv(timeout)
        assert reply["parent_header"].get("msg_id") == sent["header"]["msg_id"]
        return reply

    def close(self):
        self.sock.close(0)


@pytest.fixture
def zctx():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(0)


@pytest.fixture
def controller_factory(tmp_path):
    started = []

    def make(*args, cluster_id=None):
        c = Controller(tmp_path / f"c{len(started)}", args, cluster_id=cluster_id or f"t{len(started)}")
        started.append(c)
        return c.start()

    yield make
    for c in started:
        c.stop()
        assert c.proc is None or c.proc.poll() is not None


@pytest.fixture
def controller(controller_factory):
    return controller_factory()


def fake_engine_uuid():
    h = _uuid.uuid4().hex
    return f"{h[:8]}-{h[8:]}"
