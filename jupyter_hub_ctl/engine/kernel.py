"""The engine: registration, heart, shell loop, control thread."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Optional

import zmq

from ..client.serialize import (SERIALIZER, STAGE_MD, STAGE_MIN, STAGE_TYPE, Staging, StagingError, oob_nbytes,
                                stage_pieces)
from ..wire.session import MessageError, WireSession, frame_bytes, new_id, pack, unpack, utcnow
from .executor import OK_CONTENT, Executor, error_content
from ..wire.reader import recv_frames, send_frames
from .iopub import IOPub, OutStream
from .metrics import MetricsReporter

log = logging.getLogger("jupyter_hub_ctl.engine")
_OK = pack(OK_CONTENT)  # the executor's reply content for a successful apply, sent packed once
STAGE_ORPHAN_AFTER = 120.0  # seconds a large push's pieces wait for their request


class RegistrationError(RuntimeError):
    pass


class Heart:
    """Echoes pings in C (libzmq proxy) so user code holding the GIL cannot starve it."""

    def __init__(self, ctx: zmq.Context, ping_url: str, pong_url: str, identity: bytes):
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(ping_url)
        self.dealer = ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.setsockopt(zmq.IDENTITY, identity)
        self.dealer.connect(pong_url)
        self.capture_url = f"inproc://hubctl-heart-{id(self)}"
        self.capture = ctx.socket(zmq.PUB)
        self.capture.setsockopt(zmq.LINGER, 0)
        self.capture.bind(self.capture_url)
        self.thread = threading.Thread(target=self._run, name="hubctl-heart", daemon=True)
        self.thread.start()

    def _run(self):
        try:
            zmq.proxy(self.sub, self.dealer, self.capture)
        except zmq.ZMQError:
            pass
        finally:
            for s in (self.sub, self.dealer, self.capture):
                s.close(0)


class Engine:
    """One engine process's runtime."""

    def __init__(self, info: dict, session: WireSession, requested_id: Optional[int] = None,
                 registration_timeout: float = 5.0, controller_timeout: float = 60.0,
                 metrics_interval: float = -1.0):
        self.info = info
        self.session = session
        self.uuid = session.session
        self.ident = self.uuid.encode()
        self.requested_id = requested_id
        self.registration_timeout = registration_timeout
        self.controller_timeout = controller_timeout
        self.id: Optional[int] = None
        self.hb_period = 3.0
        self.ctx = zmq.Context()
        self.parent: Optional[dict] = None
        self.task: Optional[tuple] = None  # (msg_id, name, started epoch) while a request runs
        self.metrics_override = metrics_interval  # >= 0: used instead of the hub's interval
        self.metrics_interval = 0.0
        self.reporter: Optional[MetricsReporter] = None
        self.aborted: set = set()
        self.abort_all = False
        self.exiting = False
        self.outputs = 0
        self.staging = Staging()  # pieces of large pushes, until their request comes
        self._last_ping = time.monotonic()
        self._controller_instance = None  # our controller's run id, from its pings
        self._controller_epoch = None  # monotonic time the controller started, from its pings
        self.executor = Executor(self.engine_info, self._publish_display, self._publish_result,
                                 self._publish_error)

    # ------------------------------------------------------------------ urls
    def url(self, key: str) -> str:
        port = self.info[key]
        if isinstance(port, list):
            port = port[self.id % len(port)]
        interface = self.info["interface"]
        if "0.0.0.0" in interface or "*" in interface:
            interface = f"tcp://{self.info.get('location') or '127.0.0.1'}"
        return f"{interface}:{port}"

    def engine_info(self, method: str) -> dict:
        return {"engine_uuid": self.uuid, "engine_id": self.id, "method": method}

    # ------------------------------------------------------------------ registration
    def register(self) -> None:
        reg = self.ctx.socket(zmq.DEALER)
        reg.setsockopt(zmq.LINGER, 0)
        reg.setsockopt(zmq.IDENTITY, self.ident)
        reg.connect(self.url("registration"))
        import socket

        content = {"uuid": self.uuid, "info": {"host": socket.gethostname(), "pid": os.getpid()}}
        want = self.id if self.id is not None else self.requested_id
        if want is not None:
            content["id"] = want
        try:
            reg.send_multipart(self.session.serialize("registration_request", content))
            if not reg.poll(self.registration_timeout * 1000):
                raise RegistrationError(
                    f"no registration reply from the controller at {self.url('registration')} "
                    f"within {self.registration_timeout:g}s")
            _, parts = self.session.split(reg.recv_multipart())
            reply = self.session.parse(parts, idents=[])
        finally:
            reg.close(0)
        c = reply.content
        if c.get("status") != "ok":
            if self.id is not None and "in use" in str(c.get("evalue", "")):
                return  # the controller restored us already
            raise RegistrationError(f"registration refused: {c.get('ename')}: {c.get('evalue')}")
        self.id = int(c["id"])
        self.hb_period = max(0.01, float(c.get("hb_period", 3000)) / 1000.0)
        self._set_metrics_interval(c.get("metrics_interval"))

    def _set_metrics_interval(self, hub_interval) -> None:
        """Report metrics as often as the hub asks (or our override says); a hub that does not
        name an interval in its registration reply takes no reports (e.g. ipcontroller)."""
        if isinstance(hub_interval, bool) or not isinstance(hub_interval, (int, float)):
            interval = 0.0
        else:
            interval = self.metrics_override if self.metrics_override >= 0 else max(0.0, float(hub_interval))
        self.metrics_interval = interval
        if self.reporter is not None:
            self.reporter.interval = interval
        elif interval > 0 and getattr(self, "shell", None) is not None:
            self._start_reporter()

    def _start_reporter(self) -> None:
        self.reporter = MetricsReporter(self, self.metrics_interval)
        self.reporter.start()

    def connect(self) -> None:
        ctx = self.ctx
        self.shell = ctx.socket(zmq.ROUTER)
        self.shell.setsockopt(zmq.LINGER, 1000)
        self.shell.setsockopt(zmq.IDENTITY, self.ident)
        self.shell.setsockopt(zmq.SNDHWM, 0)
        self.shell.setsockopt(zmq.RCVHWM, 0)
        for key in ("mux", "task", "broadcast"):
            if key in self.info:
                self.shell.connect(self.url(key))
        self.iopub = IOPub(ctx, self.url("iopub"), self.ident, self.session)
        self.iopub.topic_prefix = f"engine.{self.id}".encode()
        self.heart = Heart(ctx, self.url("hb_ping"), self.url("hb_pong"), self.ident)
        self.pings = ctx.socket(zmq.SUB)
        self.pings.setsockopt(zmq.SUBSCRIBE, b"")
        self.pings.setsockopt(zmq.LINGER, 0)
        self.pings.connect(self.heart.capture_url)
        self.wake_url = f"inproc://hubctl-wake-{id(self)}"
        self.wake = ctx.socket(zmq.PULL)
        self.wake.bind(self.wake_url)
        self.control_thread = threading.Thread(target=self._control_loop, name="hubctl-control", daemon=True)
        self.control_thread.start()
        self.stdout = OutStream("stdout", self._publish_stream)
        self.stderr = OutStream("stderr", self._publish_stream)
        self._flusher = threading.Thread(target=self._flush_loop, name="hubctl-flush", daemon=True)
        self._flusher.start()
        if self.metrics_interval > 0:
            self._start_reporter()

    # ------------------------------------------------------------------ output
    def _publish_stream(self, name: str, text: str) -> None:
        self.outputs += 1
        self.iopub.send(name, "stream", {"name": name, "text": text}, self.parent)

    def _publish_display(self, msg_type: str, content: dict) -> None:
        self._flush_streams()
        self.outputs += 1
        self.iopub.send("displaypub", msg_type, content, self.parent)

    def _flush_streams(self) -> None:
        for s in (self.stdout, self.stderr):
            s.flush()

    def _publish_result(self, content: dict) -> None:
        self._flush_streams()  # printed text comes before the value, as it was produced
        self.outputs += 1
        self.iopub.send("execute_result", "execute_result", content, self.parent)

    def _publish_error(self, content: dict) -> None:
        self._flush_streams()
        self.outputs += 1
        self.iopub.send("error", "error", content, self.parent)

    def _flush_loop(self) -> None:
        while not self.exiting:
            time.sleep(0.1)
            for s in (self.stdout, self.stderr):
                if s.pending() and time.monotonic() - s._last > s.flush_interval:
                    s.flush()

    # ------------------------------------------------------------------ shell
    def _on_sigterm(self, signum, frame) -> None:
        self.exiting = True
        raise SystemExit(0)  # leaves user code or the wait for requests; close() unregisters

    def _on_sigint(self, signum, frame) -> None:
        if self.parent is not None:  # interrupt running user code; ignored while idle
            raise KeyboardInterrupt

    def run(self) -> int:
        """Serve requests until shut down or the controller is gone for good."""
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGINT, self._on_sigint)
        sys.stdout, sys.stderr = self.stdout, self.stderr
        poller = zmq.Poller()
        poller.register(self.shell, zmq.POLLIN)
        poller.register(self.pings, zmq.POLLIN)
        poller.register(self.wake, zmq.POLLIN)
        while not self.exiting:
            events = dict(poller.poll(max(50, int(self.hb_period * 1000))))
            if self.pings in events:
                self._drain_pings()
            if self.wake in events:
                self.wake.recv_multipart()
            if self.shell in events:
                self._drain_shell()
            if self.staging.transfers:
                for transfer in self.staging.expire(STAGE_ORPHAN_AFTER):
                    log.warning("dropped the pieces of large transfer %s: its request did not follow "
                                "within %g s", transfer, STAGE_ORPHAN_AFTER)
            if not self.exiting and time.monotonic() - self._last_ping > self.controller_timeout:
                sys.__stderr__.write(
                    f"engine {self.id}: no heartbeat from the controller for {self.controller_timeout:g}s; "
                    "it is gone, exiting\n")
                return 2
        return 0

    def _drain_pings(self) -> None:
        ping = None
        while True:  # only the newest ping matters
            try:
                ping = self.pings.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        if ping is None:
            return
        now = self._last_ping = time.monotonic()
        uptime, _, instance = ping.partition(b":")
        if instance:  # our controller names its run in every ping: a new name is a new controller
            restarted = self._controller_instance is not None and instance != self._controller_instance
            self._controller_instance = instance
        else:  # another controller: judge by when its uptime says it started
            try:
                epoch = now - float(uptime)
            except ValueError:
                return
            restarted = self._controller_epoch is not None and epoch - self._controller_epoch > max(0.5, 2 * self.hb_period)
            if self._controller_epoch is None or restarted or epoch < self._controller_epoch:
                self._controller_epoch = epoch
        if restarted:
            self._reregister()

    def _reregister(self) -> None:
        """The controller restarted: register again under the same uuid and id."""
        for attempt in range(3):
            try:
                self.register()
                sys.__stderr__.write(f"engine {self.id}: registered again with a restarted controller\n")
                return
            except RegistrationError as e:
                sys.__stderr__.write(f"engine: re-registration attempt {attempt + 1} failed: {e}\n")

    def _drain_shell(self) -> None:
        while not self.exiting:
            frames = recv_frames(self.shell, copy=False)
            if frames is None:
                self.abort_all = False
                return
            self._handle(frames)

    def _handle(self, frames) -> None:
        try:
            idents, parts = self.session.split(frames)
            # apply requests need no content; it is decoded below only where it is used
            msg = self.session.parse(parts, idents=idents, content=False)
        except MessageError as e:
            log.warning("dropped a bad request (%s)", e.reason)
            return
        msg_type = msg.msg_type
        md = msg.metadata
        if msg_type != "apply_request":
            try:
                msg.content = unpack(frame_bytes(parts[4]))
            except (ValueError, UnicodeDecodeError):
                msg.content = None
            if not isinstance(msg.content, dict):
                log.warning("dropped a bad request (bad-content)")
                return
            if msg_type == STAGE_TYPE:  # a piece of a large push, ahead of its request
                if msg.buffers:
                    self.staging.add(msg.content, msg.buffers[0])
                return
        parent = frame_bytes(parts[1])  # the request's header, as signed: the replies' parent
        reply_md = {
            "started": utcnow().isoformat().replace("+00:00", "Z"),
            "dependencies_met": True,
            "engine": self.uuid,
            "is_broadcast": md.get("is_broadcast", False),
            "is_coalescing": md.get("is_coalescing", False),
            "original_msg_id": md.get("original_msg_id", ""),
            "label": md.get("label"),
            "serializer": SERIALIZER,
        }
        reply_type = msg_type.replace("_request", "_reply")
        staged = md.get("staged")
        if msg.msg_id in self.aborted or self.abort_all:
            self.aborted.discard(msg.msg_id)
            if isinstance(staged, dict):
                self.staging.drop(str(staged.get("transfer")))
            reply_md["status"] = "aborted"
            self._send(idents, reply_type, {"status": "aborted"}, parent, reply_md)
            return
        self.parent = msg.header
        name = md.get("hubctl_name")
        self.task = (msg.msg_id, name if isinstance(name, str) else msg_type, time.time())
        self.outputs = 0
        compat = md.get("serializer") != SERIALIZER  # a peer that waits for busy/idle
        if compat:
            self.iopub.send("status", "status", {"execution_state": "busy"}, msg.header)
        buffers = []
        try:
            if msg_type == "apply_request":
                if staged:
                    msg.buffers = self.staging.unstage(staged, msg.buffers)
                content, buffers, status = self.executor.apply(md, msg.buffers)
                if status == "unmet":
                    reply_md["dependencies_met"] = False
                    status = "error"
            elif msg_type == "execute_request":
                content = self.executor.execute(msg.content, msg.header)
                status = content["status"]
            elif msg_type == "kernel_info_request":
                content, status = self.kernel_info(), "ok"
            else:
                content = error_content(ValueError(f"unsupported request {msg_type!r}"), self.engine_info(msg_type))
                status = "error"
        except (KeyboardInterrupt, StagingError) as e:
            content, status = error_content(e, self.engine_info(msg_type)), "error"
        for s in (self.stdout, self.stderr):
            s.flush()
        reply_md["status"] = status
        reply_md["outputs"] = self.outputs
        reply_md["nbuffers"] = len(buffers)
        if status == "error":
            reply_md["engine_info"] = content.get("engine_info", {})
        if compat:
            self.iopub.send("status", "status", {"execution_state": "idle"}, msg.header)
        if md.get("stage_result") and status == "ok" and oob_nbytes(buffers) >= STAGE_MIN:
            # a large result (pull): its buffers go ahead in pieces, the reply names them
            for piece_content, piece in stage_pieces(msg.msg_id, buffers):
                self._send(idents, STAGE_TYPE, piece_content, b"{}", STAGE_MD, [piece])
            reply_md["staged"] = {"transfer": msg.msg_id, "count": len(buffers) - 1}
            reply_md["nbuffers"] = 1
            buffers = buffers[:1]
        self.task = None
        self._send(idents, reply_type, _OK if content is OK_CONTENT else content, parent, reply_md, buffers)
        self.parent = None

    def _send(self, idents, msg_type, content, parent, md, buffers=()) -> None:
        send_frames(self.shell, self.session.serialize(msg_type, content, parent=parent, metadata=md,
                                                       buffers=buffers, idents=idents), copy=bool(not buffers))

    def kernel_info(self) -> dict:
        from .._version import __version__

        return {"status": "ok", "protocol_version": "5.3", "implementation": "jupyter_hub_ctl",
                "implementation_version": __version__,
                "language_info": {"name": "python", "version": sys.version.split()[0]}}

    # ------------------------------------------------------------------ control
    def _control_loop(self) -> None:
        ctrl = self.ctx.socket(zmq.ROUTER)
        ctrl.setsockopt(zmq.LINGER, 1000)
        ctrl.setsockopt(zmq.IDENTITY, self.ident)
        ctrl.connect(self.url("control"))
        wake = self.ctx.socket(zmq.PUSH)
        wake.connect(self.wake_url)
        try:
            while not self.exiting:
                if not ctrl.poll(200):
                    continue
                frames = ctrl.recv_multipart()
                try:
                    idents, parts = self.session.split(frames)
                    msg = self.session.parse(parts, idents=idents)
                except MessageError:
                    continue
                content = self._control(msg)
                reply_type = msg.msg_type.replace("_request", "_reply")
                ctrl.send_multipart(self.session.serialize(
                    reply_type, content, parent=msg.header,
                    metadata={"status": content.get("status"), "engine": self.uuid}, idents=idents))
                if msg.msg_type == "shutdown_request":
                    self.iopub.send("shutdown", "shutdown_reply", content, msg.header)
                    self.exiting = True
                    wake.send(b"")
                    threading.Timer(3.0, os._exit, (0,)).start()  # if user code never returns
        finally:
            ctrl.close()
            wake.close(0)

    def _control(self, msg) -> dict:
        t = msg.msg_type
        c = msg.content
        if t == "abort_request":
            ids = c.get("msg_ids") or []
            if ids:
                self.aborted.update(i for i in ids if isinstance(i, str))
            else:
                self.abort_all = True
            return {"status": "ok"}
        if t == "clear_request":
            self.executor.clear()
            self.staging.clear()
            return {"status": "ok"}
        if t == "shutdown_request":
            return {"status": "ok", "restart": bool(c.get("restart", False))}
        if t == "signal_request":
            sig = c.get("sig", signal.SIGINT)
            try:
                sig = getattr(signal, sig) if isinstance(sig, str) else signal.Signals(int(sig))
                os.kill(os.getpid(), sig)
            except (AttributeError, ValueError, OSError) as e:
                return error_content(e, self.engine_info("signal"))
            return {"status": "ok"}
        if t == "kernel_info_request":
            return self.kernel_info()
        return error_content(ValueError(f"unsupported control request {t!r}"), self.engine_info(t))

    # ------------------------------------------------------------------ exit
    def unregister(self) -> None:
        if self.id is None:
            return
        reg = self.ctx.socket(zmq.DEALER)
        reg.setsockopt(zmq.LINGER, 1000)
        reg.connect(self.url("registration"))
        reg.send_multipart(self.session.serialize("unregistration_request", {"id": self.id}))
        reg.close()

    def close(self) -> None:
        """Unregister, close this thread's sockets, let the others end, terminate the context."""
        self.exiting = True
        if self.reporter is not None:
            self.reporter.stop()
        for s in (getattr(self, "stdout", None), getattr(self, "stderr", None)):
            if s is not None:
                s.flush()
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        self.unregister()
        for name in ("shell", "pings", "wake"):
            sock = getattr(self, name, None)
            if sock is not None:
                sock.close()
        if getattr(self, "control_thread", None) is not None:
            self.control_thread.join(1.0)
        if getattr(self, "iopub", None) is not None:
            self.iopub.close()
        term = threading.Thread(target=self.ctx.term, daemon=True)
        term.start()
        term.join(3.0)


def make_session(info: dict, ident: Optional[str] = None) -> WireSession:
    key = info.get("key", "") or ""
    return WireSession(key=key.encode("ascii"), signature_scheme=info.get("signature_scheme", "hmac-sha256"),
                       session=ident or new_id(), username=os.environ.get("USER", "engine"))

