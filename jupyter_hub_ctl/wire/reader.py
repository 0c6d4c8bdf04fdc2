"""Drive plain (non-asyncio) zmq sockets from an asyncio loop.

Each socket's ZMQ_FD is watched with ``loop.add_reader``; when it fires, the
socket is drained in batches with NOBLOCK receives.  The FD is edge-triggered,
so after every send on a socket (which may consume the edge) and whenever a
batch stops early, a drain is scheduled again with ``call_soon``.  This keeps
per-message overhead to a plain function call, with no Future per message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

import zmq

log = logging.getLogger("jupyter_hub_ctl.reader")
NOBLOCK = int(zmq.NOBLOCK)  # plain ints: enum flag arithmetic costs on every call
EVENTS = int(zmq.EVENTS)
POLLIN = int(zmq.POLLIN)
SNDMORE = int(zmq.SNDMORE)
RCVMORE = int(zmq.RCVMORE)


def recv_frames(sock: zmq.Socket, copy: bool = True):
    """One multipart message if one is waiting, else None (no Again exception, no enum arithmetic)."""
    opt = sock.getsockopt
    if not opt(EVENTS) & POLLIN:
        return None
    recv = sock.recv
    frames = [recv(NOBLOCK, copy=copy)]
    while opt(RCVMORE):
        frames.append(recv(NOBLOCK, copy=copy))
    return frames


def send_frames(sock: zmq.Socket, frames, copy: bool = True) -> None:
    """``send_multipart`` without pyzmq's per-frame enum arithmetic."""
    send = sock.send
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        send(frame, SNDMORE if i < last else 0, copy=copy)


class SocketReader:
    """Calls ``handler(frames)`` for every multipart message on ``sock``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: zmq.Socket,
        handler: Callable,
        copy: bool = True,
        batch: int = 512,
        name: str = "",
    ):
        self.loop = loop
        self.sock = sock
        self.handler = handler
        self.copy = copy
        self.batch = batch
        self.name = name or repr(sock)
        self._scheduled = False
        self._closed = False
        self._fd = sock.getsockopt(zmq.FD)
        loop.add_reader(self._fd, self._on_ready)
        self.kick()

    def _on_ready(self) -> None:
        self._scheduled = False
        self.drain()

    def drain(self) -> None:
        if self._closed:
            return
        sock = self.sock
        recv = sock.recv
        opt = sock.getsockopt
        handler = self.handler
        copy = self.copy
        for _ in range(self.batch):
            try:
                if not opt(EVENTS) & POLLIN:  # cheaper than a receive that raises Again
                    return
                frames = [recv(NOBLOCK, copy=copy)]
                while opt(RCVMORE):  # recv_multipart, minus its per-frame enum arithmetic
                    frames.append(recv(NOBLOCK, copy=copy))
            except zmq.Again:
                return
            except zmq.ZMQError as e:
                if e.errno in (zmq.ETERM, zmq.ENOTSOCK):
                    self.close()
                    return
                raise
            try:
                handler(frames)
            except Exception:
                log.exception("error handling a message on %s", self.name)
        self.kick()

    def kick(self) -> None:
        """Schedule a drain soon (after a send, or when a batch was cut short)."""
        if not self._scheduled and not self._closed:
            self._scheduled = True
            self.loop.call_soon(self._on_ready)

    def send(self, frames, copy: bool = True) -> None:
        """Send on the same socket, then re-check it for input.

        Sending may consume the FD's edge; if input is already waiting, drain it soon.
        Otherwise the next arrival raises a new edge, so no extra loop turn is needed.
        """
        try:
            send_frames(self.sock, frames, copy)
        finally:
            if self.sock.getsockopt(EVENTS) & POLLIN:
                self.kick()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.loop.remove_reader(self._fd)
        except Exception:
            pass
