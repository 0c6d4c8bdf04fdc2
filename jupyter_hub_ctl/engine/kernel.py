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
from ..wire.connection import ENGINE_SET_ENV
from ..wire.session import MessageError, WireSession, frame_bytes, new_id, pack, unpack, utcnow
from .control import SHUTDOWN_GRACE, Aborts, ControlChannel
from .executor import OK_CONTENT, Executor, error_content
from ..wire.reader import recv_frames, send_frames
from .iopub import IOPub, OutStream

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
                 registration_timeout: float = 5.0, controller_timeout: float = 60.0):
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
        self.interruptible = False  # a request is being handled: SIGINT interrupts it
        self.aborts = Aborts()
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

        content = {"uuid": self.uuid, "info": {"host": socket.gethostname(), "pid": os.getpid(),
                                               "set": os.environ.get(ENGINE_SET_ENV, "")}}
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
        self._wake_push = None  # other threads' way to wake the main loop (wake_main)
        self._wake_lock = threading.Lock()
        self.control = ControlChannel(self)
        self.control.start()
        self.stdout = OutStream("stdout", self._publish_stream)
        self.stderr = OutStream("stderr", self._publish_stream)
        self._flusher = threading.Thread(target=self._flush_loop, name="hubctl-flush", daemon=True)
        self._flusher.start()

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
        if self.interruptible:  # interrupt the request being handled; ignored between requests
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
            if self.shell in events or self.wake in events:
                try:
                    self._drain_shell()
                except KeyboardInterrupt:  # a second SIGINT while the first one was being handled
                    self.interruptible = False
                    log.warning("engine %s: an interrupt arrived between requests; ignored", self.id)
            self.control.ensure_running()
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
            generation = self.aborts.requested
            frames = recv_frames(self.shell, copy=False)
            if frames is None:
                self.aborts.queue_empty(generation)
                return
            self._handle(frames)

    def wake_main(self) -> None:
        """Have the main loop look at its queue (from another thread)."""
        with self._wake_lock:
            if self._wake_push is None:
                self._wake_push = self.ctx.socket(zmq.PUSH)
                self._wake_push.setsockopt(zmq.LINGER, 0)
                self._wake_push.connect(self.wake_url)
            try:
                self._wake_push.send(b"", zmq.NOBLOCK)
            except zmq.Again:  # the main loop has a wake-up pending already, or is gone
                pass

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
        if self.aborts.skip(msg.msg_id):
            if isinstance(staged, dict):
                self.staging.drop(str(staged.get("transfer")))
            reply_md["status"] = "aborted"
            self._send(idents, reply_type, {"status": "aborted"}, parent, reply_md)
            return
        self.parent = msg.header
        self.outputs = 0
        compat = md.get("serializer") != SERIALIZER  # a peer that waits for busy/idle
        if compat:
            self.iopub.send("status", "status", {"execution_state": "busy"}, msg.header)
        buffers = []
        try:
            self.interruptible = True  # (inside the try: a SIGINT from here on ends this request)
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
            self.interruptible = False
        except (KeyboardInterrupt, StagingError) as e:
            self.interruptible = False
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
    def shut_down(self, content: dict, request_header: dict) -> None:
        """After the reply to ``shutdown_request``: say so on IOPub (the hub unregisters us), leave."""
        self.iopub.send("shutdown", "shutdown_reply", content, request_header)
        self.exiting = True
        self.wake_main()
        threading.Timer(SHUTDOWN_GRACE, os._exit, (0,)).start()  # if user code never returns

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
        for s in (getattr(self, "stdout", None), getattr(self, "stderr", None)):
            if s is not None:
                s.flush()
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        self.unregister()
        for name in ("shell", "pings", "wake"):
            sock = getattr(self, name, None)
            if sock is not None:
                sock.close()
        if getattr(self, "control", None) is not None:
            self.control.join(1.0)
            with self._wake_lock:
                if self._wake_push is not None:
                    self._wake_push.close()
                    self._wake_push = None
        if getattr(self, "iopub", None) is not None:
            self.iopub.close()
        term = threading.Thread(target=self.ctx.term, daemon=True)
        term.start()
        term.join(3.0)


def make_session(info: dict, ident: Optional[str] = None) -> WireSession:
    key = info.get("key", "") or ""
    return WireSession(key=key.encode("ascii"), signature_scheme=info.get("signature_scheme", "hmac-sha256"),
                       session=ident or new_id(), username=os.environ.get("USER", "engine"))

