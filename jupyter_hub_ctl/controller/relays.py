"""MUX, control and IOPub relays running as libzmq devices in threads.

The devices (``zmq.devices.monitored_queue`` and ``zmq.proxy``) run in C with
the GIL released, so relaying costs no Python per message.  Copies of the
traffic the Hub must record go to inproc PUB sockets the Hub subscribes to.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional

import zmq
from zmq.devices import monitored_queue

log = logging.getLogger("jupyter_hub_ctl.relays")


def _router(ctx: zmq.Context, url: str, ident: Optional[bytes] = None) -> zmq.Socket:
    s = ctx.socket(zmq.ROUTER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 0)
    s.setsockopt(zmq.RCVHWM, 0)
    s.setsockopt(zmq.ROUTER_HANDOVER, 1)
    if ident:
        s.setsockopt(zmq.IDENTITY, ident)
    s.bind(url)
    return s


def bound_port(sock: zmq.Socket) -> int:
    return int(sock.getsockopt(zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1])


class Relay:
    """A device thread over sockets created (and bound) by the caller."""

    def __init__(self, name: str, sockets: list, target, args: tuple):
        self.name = name
        self.sockets = sockets
        self._target = target
        self._args = args
        self.thread = threading.Thread(target=self._run, name=f"hubctl-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            self._target(*self._args)
        except zmq.ZMQError as e:
            if e.errno not in (zmq.ETERM, zmq.ENOTSOCK):
                log.error("%s relay stopped: %s", self.name, e)
        finally:
            for s in self.sockets:
                try:
                    s.close(0)
                except Exception:
                    pass


def monitor_pub(ctx: zmq.Context, url: str, invert: bool = False) -> zmq.Socket:
    """PUB end of a monitor copy; with ``invert`` it drops what its subscriber subscribes to."""
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.setsockopt(zmq.LINGER, 0)
    if invert:
        pub.setsockopt(zmq.INVERT_MATCHING, 1)
    pub.bind(url)
    return pub


def monitor_sub(ctx: zmq.Context, url: str, invert: bool = False) -> zmq.Socket:
    """SUB end of a monitor copy: everything, or with ``invert`` everything except the
    topic prefixes later subscribed to (the PUB must be inverted too; the filtering then
    happens in the relay thread, so dropped messages never reach the hub's loop)."""
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.LINGER, 0)
    if invert:
        sub.setsockopt(zmq.INVERT_MATCHING, 1)
    else:
        sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(url)
    return sub


def router_relay(
    ctx: zmq.Context, name: str, client_url: str, engine_url: str, monitor_url: Optional[str]
) -> tuple:
    """ROUTER<->ROUTER queue (MUX or control); returns (relay, client_port, engine_port)."""
    cin = _router(ctx, client_url, f"{name}_in".encode())
    cout = _router(ctx, engine_url, f"{name}_out".encode())
    if monitor_url:
        mon = monitor_pub(ctx, monitor_url)
    else:
        mon = ctx.socket(zmq.PUB)  # no subscriber: copies are discarded at once
        mon.setsockopt(zmq.LINGER, 0)
    relay = Relay(name, [cin, cout, mon], monitored_queue, (cin, cout, mon, b"in", b"out"))
    return relay, bound_port(cin), bound_port(cout)


def iopub_relay(ctx: zmq.Context, client_url: str, engine_url: str, monitor_url: str) -> tuple:
    """SUB (engines publish here) -> PUB (clients subscribe) with a capture copy."""
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.bind(engine_url)
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.bind(client_url)
    cap = monitor_pub(ctx, monitor_url, invert=True)  # the hub mutes engines' status topics
    relay = Relay("iopub", [sub, pub, cap], zmq.proxy, (sub, pub, cap))
    return relay, bound_port(pub), bound_port(sub)
