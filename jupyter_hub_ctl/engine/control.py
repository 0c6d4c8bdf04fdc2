"""The engine's control channel: abort, clear, signal, shutdown - served in its own thread.

Control requests are answered while user code runs (that is what they are for), so they
have a thread and a socket of their own.  Every request that carries a valid signature
gets a reply: a handler that raises answers with the error (and logs its traceback), an
unknown or malformed request answers with an error saying so, and nothing a peer sends
ends the thread.  Should the thread end all the same, the engine's main loop starts a
new one (``ControlChannel.ensure_running``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import OrderedDict
from typing import Optional

import zmq

from ..wire.curve import secure
from ..wire.session import MessageError
from .executor import error_content

log = logging.getLogger("jupyter_hub_ctl.engine")

SHUTDOWN_GRACE = 3.0  # seconds user code gets to return after shutdown_request before the process exits


class Aborts:
    """Requests the control channel asked the engine to skip instead of running.

    By msg_id (``add``): the request is answered ``aborted`` whenever it arrives, now or
    later.  Everything queued (``all``): every request already waiting in the engine's
    shell socket when the main thread next looks; requests that arrive after that run.
    The control thread writes, the main thread reads; the generation counters make a
    request for "everything" that races with the main thread's emptying of its queue
    apply to the next look rather than be lost.
    """

    def __init__(self, limit: int = 100_000):
        self.limit = limit
        self.ids: "OrderedDict[str, None]" = OrderedDict()
        self.requested = 0  # generations of abort-everything asked for (control thread)
        self.done = 0  # generation the main thread has emptied its queue for
        self._lock = threading.Lock()

    def add(self, msg_ids) -> None:
        with self._lock:
            for msg_id in msg_ids:
                self.ids[msg_id] = None
            while len(self.ids) > self.limit:  # ids that never arrived here (another engine ran them)
                self.ids.popitem(last=False)

    def all(self) -> None:
        self.requested += 1

    def skip(self, msg_id: str) -> bool:
        """Main thread, for each request it takes from its queue: answer it ``aborted``?"""
        with self._lock:
            if msg_id in self.ids:
                del self.ids[msg_id]
                return True
        return self.requested != self.done

    def queue_empty(self, generation: int) -> None:
        """Main thread: its queue was found empty after it read ``requested`` as ``generation``."""
        self.done = generation


class ControlChannel:
    """Serves the engine's control socket in a thread of its own."""

    def __init__(self, engine):
        self.engine = engine
        self.thread: Optional[threading.Thread] = None
        self.handlers = {
            "abort_request": self.abort_request,
            "clear_request": self.clear_request,
            "signal_request": self.signal_request,
            "interrupt_request": self.interrupt_request,
            "shutdown_request": self.shutdown_request,
            "kernel_info_request": self.kernel_info_request,
        }

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="hubctl-control", daemon=True)
        self.thread.start()

    def ensure_running(self) -> None:
        """Start the thread again if it ended while the engine runs (it should never)."""
        if self.thread is not None and not self.thread.is_alive() and not self.engine.exiting:
            log.error("engine %s: the control thread ended; starting it again", self.engine.id)
            self.start()

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        engine = self.engine
        sock = secure(engine.ctx.socket(zmq.ROUTER), engine.curve)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.setsockopt(zmq.IDENTITY, engine.ident)
        sock.connect(engine.url("control"))
        try:
            while not engine.exiting:
                try:
                    if not sock.poll(200):
                        continue
                    frames = sock.recv_multipart()
                except zmq.ContextTerminated:
                    return
                except zmq.ZMQError as e:
                    if engine.exiting:
                        return
                    log.error("control: receiving failed: %s", e)
                    continue
                try:
                    self.serve(sock, frames)
                except Exception:  # a reply that could not be built or sent: never end the loop
                    log.exception("control: a request could not be answered")
        finally:
            sock.close()

    def serve(self, sock: zmq.Socket, frames: list) -> None:
        """Answer one control message (or drop it, logged, if it is not from a key holder)."""
        session = self.engine.session
        try:
            idents, parts = session.split(frames)
        except MessageError as e:
            log.warning("control: dropped a message (%s)", e.reason)
            return
        try:
            msg = session.parse(parts, idents=idents)
        except MessageError as e:
            # answered when its header was read under a valid signature (a replay is not answered)
            if e.header is None or e.reason == "replay":
                log.warning("control: dropped a message (%s)", e.reason)
                return
            log.warning("control: malformed request (%s)", e)
            header = e.header
            msg_type = header.get("msg_type") if isinstance(header.get("msg_type"), str) else ""
            content = error_content(ValueError(f"malformed control message: {e}"), self.engine.engine_info(msg_type),
                                    [f"ValueError: malformed control message: {e}"])
            self._reply(sock, idents, _reply_type(msg_type), content, header)
            return
        handler = self.handlers.get(msg.msg_type)
        if handler is None:
            exc = ValueError(f"unsupported control request {msg.msg_type[:80]!r}")
            content = error_content(exc, self.engine.engine_info(msg.msg_type), [f"ValueError: {exc}"])
        else:
            try:
                content = handler(msg.content)
            except BaseException as e:  # noqa: B036 - a handler that raises anything gets answered
                log.exception("control: %s failed", msg.msg_type)
                content = error_content(e, self.engine.engine_info(msg.msg_type.replace("_request", "")))
        self._reply(sock, idents, _reply_type(msg.msg_type), content, msg.header)
        if msg.msg_type == "shutdown_request" and content.get("status") == "ok":
            self.engine.shut_down(content, msg.header)

    def _reply(self, sock, idents, reply_type: str, content: dict, parent: dict) -> None:
        engine = self.engine
        metadata = {"status": content.get("status"), "engine": engine.uuid}
        if content.get("status") == "error":
            metadata["engine_info"] = content.get("engine_info", {})
        sock.send_multipart(engine.session.serialize(reply_type, content, parent=parent, metadata=metadata,
                                                     idents=idents))

    # ------------------------------------------------------------------ handlers
    def abort_request(self, content: dict) -> dict:
        ids = content.get("msg_ids")
        if isinstance(ids, str):
            ids = [ids]
        if ids is not None and not isinstance(ids, list):
            raise TypeError(f"msg_ids must be a list of msg_ids, not {type(ids).__name__}")
        if ids:
            self.engine.aborts.add(str(i) for i in ids)
        else:
            self.engine.aborts.all()
            self.engine.wake_main()  # an idle engine empties its queue now
        return {"status": "ok"}

    def clear_request(self, content: dict) -> dict:
        self.engine.executor.clear()
        self.engine.staging.clear()
        return {"status": "ok"}

    def signal_request(self, content: dict) -> dict:
        sig = content.get("sig", signal.SIGINT)
        if isinstance(sig, str):
            name = sig if sig.startswith("SIG") else f"SIG{sig}"
            if not isinstance(getattr(signal, name, None), int):
                raise ValueError(f"no signal named {sig!r}")
            sig = getattr(signal, name)
        elif isinstance(sig, bool) or not isinstance(sig, int):
            raise TypeError(f"sig must be a signal number or name, not {type(sig).__name__}")
        os.kill(os.getpid(), signal.Signals(sig))
        return {"status": "ok"}

    def interrupt_request(self, content: dict) -> dict:
        return self.signal_request({"sig": int(signal.SIGINT)})

    def shutdown_request(self, content: dict) -> dict:
        return {"status": "ok", "restart": bool(content.get("restart", False))}

    def kernel_info_request(self, content: dict) -> dict:
        return self.engine.kernel_info()


def _reply_type(msg_type: str) -> str:
    if msg_type.endswith("_request"):
        return msg_type[: -len("_request")] + "_reply"
    return "error"


__all__ = ["Aborts", "ControlChannel", "SHUTDOWN_GRACE"]
