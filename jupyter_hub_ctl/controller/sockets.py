"""The options every controller socket gets before it binds.

- ``MAXMSGSIZE``: libzmq refuses a larger message from its header on (the peer is
  disconnected) before any of it is buffered, so a huge frame from anyone costs nothing.
- ZMTP heartbeats: the controller pings every connection; one silent for ``timeout``
  seconds is closed, and peers are told (``HEARTBEAT_TTL``) to close theirs after twice
  that.  A peer that really went away thus frees its routing id, and its reconnect finds it
  free (ROUTER handover stays off: a new connection can never take a routing id in use).
- CurveZMQ: with a secret key every socket is a CURVE server; a peer without the
  server's public key cannot complete a connection.
"""

from __future__ import annotations

from typing import Optional

import zmq

#: At most this many messages from one connection wait in a ROUTER to be read; beyond that
#: libzmq stops reading the connection (TCP back-pressure: nothing is lost).
ROUTER_RCVHWM = 1000
#: Heartbeat pongs and PUB subscriptions are a few bytes; nothing larger is accepted on them.
TINY_MSGSIZE = 4096


class SocketPolicy:
    """Bound, heartbeat and encryption settings shared by the controller's sockets."""

    def __init__(self, maxmsgsize: int, timeout: float, curve_secretkey: Optional[bytes] = None):
        self.maxmsgsize = maxmsgsize
        self.timeout_ms = max(1000, int(timeout * 1000))
        self.curve_secretkey = curve_secretkey

    def apply(self, sock: zmq.Socket, maxmsgsize: Optional[int] = None) -> zmq.Socket:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, maxmsgsize or self.maxmsgsize)
        sock.setsockopt(zmq.HEARTBEAT_IVL, self.timeout_ms // 3)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, self.timeout_ms)
        sock.setsockopt(zmq.HEARTBEAT_TTL, min(2 * self.timeout_ms, 6_553_500))
        if self.curve_secretkey:
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            sock.setsockopt(zmq.CURVE_SECRETKEY, self.curve_secretkey)
        return sock

    def router(self, ctx: zmq.Context, url: str, ident: Optional[bytes] = None,
               maxmsgsize: Optional[int] = None, mandatory: bool = False) -> zmq.Socket:
        """A bound ROUTER; ``mandatory``: sending to a routing id not connected raises EHOSTUNREACH."""
        s = self.apply(ctx.socket(zmq.ROUTER), maxmsgsize)
        s.setsockopt(zmq.SNDHWM, 0)
        s.setsockopt(zmq.RCVHWM, ROUTER_RCVHWM)
        if mandatory:
            s.setsockopt(zmq.ROUTER_MANDATORY, 1)
        if ident:
            s.setsockopt(zmq.IDENTITY, ident)
        s.bind(url)
        return s

    def pub(self, ctx: zmq.Context, url: str) -> zmq.Socket:
        s = self.apply(ctx.socket(zmq.PUB), TINY_MSGSIZE)
        s.setsockopt(zmq.SNDHWM, 0)
        s.bind(url)
        return s

    def sub(self, ctx: zmq.Context, url: str) -> zmq.Socket:
        s = self.apply(ctx.socket(zmq.SUB))
        s.setsockopt(zmq.RCVHWM, 0)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.bind(url)
        return s


def bound_port(sock: zmq.Socket) -> int:
    return int(sock.getsockopt(zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1])
