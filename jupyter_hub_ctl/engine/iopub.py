"""Engine output: a thread-safe IOPub path and the stdout/stderr streams.

Any thread may publish: each gets its own inproc PUSH socket; a libzmq proxy
thread forwards everything to the PUB connected to the controller.
"""

from __future__ import annotations

import io
import threading
import time
from typing import Callable, Optional

import zmq

from ..wire.curve import CurveClient, secure
from ..wire.session import WireSession


class IOPub:
    """Fan-in from any thread to one PUB socket."""

    def __init__(self, ctx: zmq.Context, url: str, identity: bytes, session: WireSession,
                 curve: Optional[CurveClient] = None):
        self.ctx = ctx
        self.session = session
        self._inproc = f"inproc://hubctl-iopub-{id(self)}"
        self._pull = ctx.socket(zmq.PULL)
        self._pull.setsockopt(zmq.LINGER, 0)
        self._pull.bind(self._inproc)
        self._pub = secure(ctx.socket(zmq.PUB), curve)
        self._pub.setsockopt(zmq.LINGER, 2000)
        self._pub.setsockopt(zmq.SNDHWM, 0)
        self._pub.setsockopt(zmq.IDENTITY, identity)
        self._pub.connect(url)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sockets: list = []
        self._thread = threading.Thread(target=self._run, name="hubctl-iopub", daemon=True)
        self._thread.start()
        self.topic_prefix = b"engine"

    def _run(self) -> None:
        try:
            zmq.proxy(self._pull, self._pub)
        except zmq.ZMQError:
            pass
        finally:
            self._pull.close(0)
            self._pub.close()

    def _socket(self) -> zmq.Socket:
        s = getattr(self._local, "sock", None)
        if s is None:
            s = self.ctx.socket(zmq.PUSH)
            s.setsockopt(zmq.LINGER, 1000)
            s.setsockopt(zmq.SNDHWM, 0)
            s.connect(self._inproc)
            self._local.sock = s
            with self._lock:
                self._sockets.append(s)
        return s

    def send(self, kind: str, msg_type: str, content: dict, parent: Optional[dict], metadata=None) -> None:
        frames = self.session.serialize(msg_type, content, parent=parent, metadata=metadata)
        self._socket().send_multipart([f"{self.topic_prefix.decode()}.{kind}".encode(), *frames])

    def close(self) -> None:
        with self._lock:
            for s in self._sockets:
                s.close()
            self._sockets.clear()


class OutStream(io.TextIOBase):
    """A text stream that publishes what is written as ``stream`` messages."""

    def __init__(self, name: str, publish: Callable[[str, str], None], flush_interval: float = 0.2):
        super().__init__()
        self.name = name
        self._publish = publish
        self._buf: list = []
        self._size = 0
        self._lock = threading.Lock()
        self._last = time.monotonic()
        self.flush_interval = flush_interval

    @property
    def encoding(self) -> str:
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text) -> int:
        if not isinstance(text, str):
            text = str(text)
        if not text:
            return 0
        with self._lock:
            if not self._buf:
                self._last = time.monotonic()  # age of the oldest unsent text
            self._buf.append(text)
            self._size += len(text)
            due = self._size > 8192 or time.monotonic() - self._last > self.flush_interval
        if due:
            self.flush()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if not self._buf:
                return
            text = "".join(self._buf)
            self._buf.clear()
            self._size = 0
            self._last = time.monotonic()
        self._publish(self.name, text)

    def pending(self) -> bool:
        return bool(self._buf)
