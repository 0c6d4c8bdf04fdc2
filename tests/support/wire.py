"""Looking at and speaking raw bytes on loopback TCP: a recording proxy and a hand-made ZMTP peer."""

from __future__ import annotations

import socket
import struct
import threading
import uuid as _uuid

import zmq


class RecordingProxy:
    """Forwards one loopback TCP port to another and keeps every byte that passes, both ways."""

    def __init__(self, target_port: int, host: str = "127.0.0.1"):
        self.target = (host, target_port)
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.captured = bytearray()
        self._lock = threading.Lock()
        self._closed = False
        self._sockets: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    self.captured += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def seen(self, needle: bytes) -> bool:
        with self._lock:
            return needle in self.captured

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        for s in self._sockets:
            s.close()


def zmtp_null_dealer(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    """A TCP connection that has done the ZMTP 3.0 NULL handshake as a DEALER (no identity)."""
    s = socket.create_connection((host, port), timeout=timeout)
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
    s.sendall(greeting)
    got = b""
    while len(got) < 64:
        chunk = s.recv(64 - len(got))
        if not chunk:
            raise ConnectionError("the peer closed the connection during the greeting")
        got += chunk
    prop = b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    body = b"\x05READY" + prop
    s.sendall(b"\x04" + bytes([len(body)]) + body)
    return s


def long_frame_header(size: int, more: bool = False) -> bytes:
    """The header of a ZMTP message frame of ``size`` bytes (8-byte length)."""
    return bytes([0x02 | (0x01 if more else 0)]) + struct.pack(">Q", size)


def raw_peer(ctx: zmq.Context, url: str, kind: int = zmq.DEALER, identity: bytes = None) -> zmq.Socket:
    """A bare ZeroMQ socket connected to ``url`` (optionally with a chosen routing id)."""
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    if identity is not None:
        s.setsockopt(zmq.IDENTITY, identity)
    s.connect(url)
    return s


def random_uuid() -> str:
    h = _uuid.uuid4().hex
    return f"{h[:8]}-{h[8:]}"
