"""The options every controller socket gets before it binds.

- ``MAXMSGSIZE``: libzmq refuses a larger message from its header on (the peer is
  disconnected) before any of it is buffered, so a huge frame from anyone costs nothing.
- TCP keepalive: the kernel probes a connection idle for half of ``timeout`` seconds and
  closes it when the peer's host stops answering, about ``timeout`` seconds in.  A peer that
  really went away thus frees its routing id, and its reconnect finds it free (ROUTER handover
  stays off: a new connection can never take a routing id in use).  (ZeroMQ's own ZMTP
  heartbeats would do the same from libzmq's I/O thread, at a cost that grows faster than the
  number of connections: 40 % of a core with 1,000 idle engines at a 5 s interval.)
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
#: Unanswered keepalive probes after which the kernel closes a connection.
KEEPALIVE_PROBES = 3


class SocketPolicy:
    """Bound, heartbeat and encryption settings shared by the controller's sockets."""

    def __init__(self, maxmsgsize: int, timeout: float, curve_secretkey: Optional[bytes] = None):
        self.maxmsgsize = maxmsgsize
        timeout = max(3, int(timeout))
        self.keepalive_idle = timeout // 2  # seconds idle before the first probe
        self.keepalive_intvl = max(1, (timeout - self.keepalive_idle) // KEEPALIVE_PROBES)
        self.curve_secretkey = curve_secretkey

    def apply(self, sock: zmq.Socket, maxmsgsize: Optional[int] = None) -> zmq.Socket:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, maxmsgsize or self.maxmsgsize)
        sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
        sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, self.keepalive_idle)
        sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, self.keepalive_intvl)
        sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, KEEPALIVE_PROBES)
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
