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
        recv = sock.recv_multipart
        handler = self.handler
        copy = self.copy
        for _ in range(self.batch):
            try:
                frames = recv(zmq.NOBLOCK, copy=copy)
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
        """Send on the same socket, then re-check it for input."""
        try:
            self.sock.send_multipart(frames, copy=copy)
        finally:
            self.kick()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.loop.remove_reader(self._fd)
        except Exception:
            pass
