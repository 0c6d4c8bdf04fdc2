"""The MUX and control relays (on the Hub's loop) and the IOPub relay (a libzmq device).

MUX and control requests are checked before they are relayed: each is parsed once
with the Hub's session (signature, the shared replay memory, the date window), and
goes only to a registered engine.  A request the controller refuses is answered with
an error instead of reaching an engine.  Replies are checked the same way on their
way back.  IOPub output is relayed in C (``zmq.proxy``); the Hub records a copy.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Optional

import zmq

from ..wire.session import DELIM, WireSession, frame_bytes
from .errors import error_content
from .intake import accept, reply_type
from .sockets import SocketPolicy, bound_port

log = logging.getLogger("jupyter_hub_ctl.relays")
UNREACHABLE_WAIT = 10.0  # seconds a request waits for a registered engine's connection to come up


class RouterRelay:
    """Client ROUTER <-> engine ROUTER (PROTOCOL.md §3.3), swapping the first two frames.

    ``engines`` maps registered engine uuids (str) to ids; ``on_request(uuid, msg)`` and
    ``on_reply(uuid, msg)`` see what was relayed (the Hub records MUX traffic).
    """

    def __init__(self, name: str, session: WireSession, engines: dict, drop: Callable,
                 on_request: Optional[Callable] = None, on_reply: Optional[Callable] = None):
        self.name = name
        self.session = session
        self.engines = engines
        self.drop = drop
        self.on_request = on_request
        self.on_reply = on_reply
        self.client_reader = None
        self.engine_reader = None
        self._client_socket = f"{name}-client"
        self._engine_socket = f"{name}-engine"

    def _answer(self, idents, header: dict, content: dict, engine: str = "") -> None:
        md = {"status": "error", "dependencies_met": True}
        if engine:
            md["engine"] = engine
        self.client_reader.send([idents[0], *self.session.serialize(
            reply_type(header), content, parent=header, metadata=md)])

    def from_client(self, raw: list) -> None:
        """``[C, E, DELIM, ...]`` from a client: to engine E as ``[E, C, DELIM, ...]``."""
        msg = accept(self.session, raw, 2, self.drop, self._client_socket, content=False, answer=self._answer)
        if msg is None:
            return
        idents = msg.idents
        target = frame_bytes(idents[1])
        uuid = target.decode("utf8", "replace")
        if uuid not in self.engines:
            self.drop("no-such-engine", self._client_socket)
            self._answer(idents, msg.header, error_content(
                "EngineError", f"no engine {uuid[:64]!r} is registered with this controller"), uuid[:64])
            return
        self._to_engine([target, idents[0], *idents[2:], DELIM, *msg.frames], msg, uuid, None)
        if self.on_request is not None:
            self.on_request(uuid, msg)

    def _to_engine(self, frames: list, msg, uuid: str, deadline: Optional[float]) -> None:
        """Send to a registered engine; one whose connection is not up yet (an engine taken back from
        its heartbeat reconnects its other sockets a moment later) is tried again for a while."""
        try:
            self.engine_reader.send(frames, copy=False)
            return
        except zmq.ZMQError as e:  # the engine socket is ROUTER_MANDATORY
            if e.errno != zmq.EHOSTUNREACH:
                raise
        loop = self.engine_reader.loop
        deadline = deadline if deadline is not None else loop.time() + UNREACHABLE_WAIT
        if loop.time() < deadline and uuid in self.engines:
            loop.call_later(0.05, self._to_engine, frames, msg, uuid, deadline)
            return
        self.drop("engine-unreachable", self._client_socket)
        self._answer(msg.idents, msg.header, error_content(
            "EngineError", f"engine {uuid[:64]!r} is registered but not connected to the {self.name} channel"), uuid)

    def from_engine(self, raw: list) -> None:
        """``[E, C, DELIM, ...]`` from an engine: to client C as ``[C, E, DELIM, ...]``."""
        msg = accept(self.session, raw, 2, self.drop, self._engine_socket, content=False)
        if msg is None:
            return
        idents = msg.idents
        self.client_reader.send([idents[1], idents[0], *idents[2:], DELIM, *msg.frames], copy=False)
        if self.on_reply is not None:
            self.on_reply(frame_bytes(idents[0]).decode("utf8", "replace"), msg)


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


def monitor_pub(ctx: zmq.Context, url: str) -> zmq.Socket:
    """PUB end of the IOPub capture copy; it drops what its (inverted) subscriber subscribes to."""
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.setsockopt(zmq.LINGER, 0)
    pub.setsockopt(zmq.INVERT_MATCHING, 1)
    pub.bind(url)
    return pub


def monitor_sub(ctx: zmq.Context, url: str) -> zmq.Socket:
    """SUB end of the IOPub capture copy: everything except the topic prefixes later subscribed
    to (the filtering happens in the relay thread, so dropped messages never reach the hub's loop)."""
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.INVERT_MATCHING, 1)
    sub.connect(url)
    return sub


def iopub_relay(ctx: zmq.Context, policy: SocketPolicy, client_url: str, engine_url: str,
                monitor_url: str) -> tuple:
    """SUB (engines publish here) -> PUB (clients subscribe) with a capture copy."""
    sub = policy.sub(ctx, engine_url)
    pub = policy.pub(ctx, client_url)
    cap = monitor_pub(ctx, monitor_url)  # the hub mutes engines' status topics
    relay = Relay("iopub", [sub, pub, cap], zmq.proxy, (sub, pub, cap))
    return relay, bound_port(pub), bound_port(sub)
