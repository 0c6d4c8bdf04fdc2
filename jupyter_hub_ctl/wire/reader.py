"""Drive plain (non-asyncio) zmq sockets from an asyncio loop.

Each socket's ZMQ_FD is watched with ``loop.add_reader``; when it fires, the
socket is drained in batches with NOBLOCK receives.  The FD is edge-triggered,
so after every send on a socket (which may consume the edge) and whenever a
batch stops early, a drain is scheduled again with ``call_soon``.  This keeps
per-message overhead to a plain function call, with no Future per message.

Where the small C module ``_zmqbatch`` was built (it is, by the package's build), whole
batches of messages are received, and whole messages sent, with one call each into the libzmq
pyzmq loaded, instead of one Python-level pyzmq call per frame; elsewhere, or with
``JUPYTER_HUB_CTL_PURE_PYTHON=1`` in the environment, the same is done through pyzmq.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Callable

import zmq

log = logging.getLogger("jupyter_hub_ctl.reader")
NOBLOCK = int(zmq.NOBLOCK)  # plain ints: enum flag arithmetic costs on every call
EVENTS = int(zmq.EVENTS)
POLLIN = int(zmq.POLLIN)
SNDMORE = int(zmq.SNDMORE)
RCVMORE = int(zmq.RCVMORE)

# The backend's methods, called directly.  ``zmq.Socket.getsockopt`` turns the option into a
# ``SocketOption`` enum and its result into an ``Events`` enum (about 1.7 us a call, more than a
# receive); the backend's ``get`` skips the latter (0.7 us).  ``send`` skips the sugar layer's
# routing_id/group handling, which plain multipart messages never use.
_get = zmq.backend.Socket.get
_recv = zmq.backend.Socket.recv
_send = zmq.backend.Socket.send


def _libzmq_path():
    """The file of the libzmq this process loaded for pyzmq (None if it is not a shared library)."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split(maxsplit=5)[-1].strip()
                if os.path.basename(path).startswith("libzmq"):
                    return path
    except OSError:
        pass
    return None


def _load_native():
    """The bound C module, or None (not built, libzmq not found, or turned off)."""
    if os.environ.get("JUPYTER_HUB_CTL_PURE_PYTHON"):
        return None
    try:
        from . import _zmqbatch
    except ImportError:
        return None
    path = _libzmq_path()
    if path is None:
        return None
    try:
        _zmqbatch.bind(path)
    except (OSError, RuntimeError) as e:
        log.warning("batched zmq calls unavailable (%s); using pyzmq's calls", e)
        return None
    return _zmqbatch


native = _load_native()



def readable(sock: zmq.Socket) -> bool:
    """Is a message waiting?  (Also processes the socket's pending commands, re-arming ZMQ_FD.)"""
    return bool(_get(sock, EVENTS) & POLLIN)


def recv_frames(sock: zmq.Socket, copy: bool = True):
    """One multipart message if one is waiting, else None (no Again exception, no enum arithmetic).

    Frames are received as `zmq.Frame` (whose ``more`` flag saves a RCVMORE query per frame);
    with ``copy`` they are returned as bytes.
    """
    if native is not None and copy is True:
        if sock.closed:
            raise zmq.ZMQError(zmq.ENOTSOCK)
        messages, err = native.recv(sock.underlying, 1)
        if messages:
            return messages[0]
        if err:
            raise zmq.ZMQError(err)
        return None
    if not _get(sock, EVENTS) & POLLIN:
        return None
    frame = _recv(sock, NOBLOCK, False)
    frames = [frame]
    while frame.more:
        frame = _recv(sock, NOBLOCK, False)
        frames.append(frame)
    if copy:
        return [f.bytes for f in frames]
    return frames


ZERO_COPY_MIN = 65536  # pyzmq's default copy_threshold: smaller frames are copied anyway


def send_frames(sock: zmq.Socket, frames, copy: bool = True) -> None:
    """``send_multipart`` without pyzmq's per-frame enum arithmetic.

    With ``copy=False``, large frames go out zero-copy (libzmq holds a reference to the
    buffer until it is sent: do not modify it meanwhile) and small bytes frames are copied,
    which is cheaper for them.
    """
    if native is not None and (copy or _all_small(frames)):
        if sock.closed:
            raise zmq.ZMQError(zmq.ENOTSOCK)
        err = native.send(sock.underlying, frames if type(frames) is list else list(frames))
        if err:
            raise zmq.ZMQError(err)
        return
    last = len(frames) - 1
    if copy:
        for i in range(last):
            _send(sock, frames[i], SNDMORE)
        _send(sock, frames[last], 0)
        return
    for i, frame in enumerate(frames):
        flags = SNDMORE if i < last else 0
        if type(frame) is bytes and len(frame) < ZERO_COPY_MIN:
            _send(sock, frame, flags)
        else:
            _send(sock, frame, flags, False)


def _all_small(frames) -> bool:
    """Would ``send_frames(copy=False)`` copy every frame anyway?"""
    for frame in frames:
        if type(frame) is not bytes or len(frame) >= ZERO_COPY_MIN:
            return False
    return True


class SocketReader:
    """Calls ``handler(frames)`` for every multipart message on ``sock``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: zmq.Socket,
        handler: Callable,
        copy=True,  # True: bytes; False: zmq.Frames; "small": bytes below ZERO_COPY_MIN, Frames above
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
        self._draining = False  # in drain(), whose next receive re-checks the socket anyway
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
        handler = self.handler
        copy = self.copy
        small_only = copy == "small"
        self._draining = True
        try:
            self._drain(sock, handler, copy, small_only)
        finally:
            self._draining = False

    def _drain(self, sock, handler, copy, small_only) -> None:
        if native is not None and copy is True:
            self._drain_batch(sock, handler)
            return
        for _ in range(self.batch):
            try:
                frames = recv_frames(sock, False if small_only else copy)
                if frames is None:  # checking EVENTS is cheaper than a receive that raises Again
                    return
                if small_only:  # large frames stay zmq.Frames: no copy unless someone needs bytes
                    frames = [f.bytes if len(f) < ZERO_COPY_MIN else f for f in frames]
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

    def _drain_batch(self, sock, handler) -> None:
        """One C call receives every waiting message (up to ``batch``), then each is handled."""
        if sock.closed:
            self.close()
            return
        messages, err = native.recv(sock.underlying, self.batch)
        for frames in messages:
            try:
                handler(frames)
            except Exception:
                log.exception("error handling a message on %s", self.name)
        if err in (zmq.ETERM, zmq.ENOTSOCK):
            self.close()
            return
        if err:
            raise zmq.ZMQError(err)
        # the receive that found nothing left re-armed the FD; a handler's send on this socket
        # since then may have taken its edge: check, as the pure-Python drain's next receive does
        if len(messages) == self.batch or (not sock.closed and _get(sock, EVENTS) & POLLIN):
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
        While this socket is being drained (a handler answering on the socket it read
        from), the drain's next receive does that check.
        """
        try:
            send_frames(self.sock, frames, copy)
        finally:
            if not self._draining and _get(self.sock, EVENTS) & POLLIN:
                self.kick()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.loop.remove_reader(self._fd)
        except Exception:
            pass
