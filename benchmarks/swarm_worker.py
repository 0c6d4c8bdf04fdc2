"""One process of an engine swarm: ``n`` wire-level IPython-parallel engines on one asyncio loop.

Each emulated engine does on the wire what an ipyparallel 9 engine does (PROTOCOL.md §3, §5, §12):

* a registration DEALER (identity = uuid) sends ``registration_request``, waits up to
  ``--reg-timeout`` seconds (ipengine's 5 s) for the reply, and stays connected, as ipengine's does;
  without a reply the engine gives up like ipengine (an ``unregistration_request``, then gone);
* after the reply: one shell ROUTER (identity uuid) connected to mux, task and its broadcast leaf
  (``broadcast[id % len]``), a control ROUTER, an IOPub PUB, and the heart: a SUB on the ping port
  whose frames are echoed on a DEALER (identity uuid) to the pong port, as ipengine's Heart device;
* ``apply_request`` / ``execute_request`` are answered at once: IOPub ``status`` busy, the reply
  (metadata ``started``, ``dependencies_met``, ``engine``, ``is_broadcast``, ``is_coalescing``,
  ``original_msg_id``, ``label``, ``status``), IOPub ``status`` idle.  The result is ``None``
  serialized in the requesting client's payload format (ipyparallel's pickle, or jupyter_hub_ctl's
  when the request's metadata names its serializer), or, with ``--execute``, the value of the call;
* control: ``shutdown_request`` (reply on control and IOPub, then the engine is gone),
  ``abort_request`` and ``clear_request`` (``status: ok``); anything else gets an error reply.

Commands from the coordinator (`swarm.Swarm`) arrive as JSON on a DEALER: ``stats``, ``kill``
(``how``: ``unregister`` = the nanny's ``unregistration_request`` then gone, ``vanish`` = every
socket closed without a word, as a killed process), ``reset`` (request counters) and ``stop``.

This file is started by `swarm.Swarm`; it is not meant to be run by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import resource
import sys
import time

import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the checkout holding this file, for jupyter_hub_ctl.wire

from jupyter_hub_ctl.wire.reader import SocketReader, send_frames  # noqa: E402
from jupyter_hub_ctl.wire.session import MessageError, WireSession, new_id, pack, utcnow  # noqa: E402

SOCKETS_PER_ENGINE = 6  # registration, shell, control, iopub, heart SUB, heart DEALER
HUBCTL_SERIALIZER = "hubctl/1"  # metadata.serializer of jupyter_hub_ctl's client and engine
HUBCTL_MAGIC = b"HUBCTL1\x00"
NONE_IPP = pickle.dumps(None, pickle.DEFAULT_PROTOCOL)  # ipyparallel's serialize_object(None)
NONE_HUBCTL = HUBCTL_MAGIC + pickle.dumps(None, protocol=5)
OK = pack({"status": "ok"})
BUSY = pack({"execution_state": "busy"})
IDLE = pack({"execution_state": "idle"})


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


class Engine:
    """One emulated engine's sockets and counters."""

    __slots__ = ("uuid", "ident", "id", "session", "reg", "shell", "control", "iopub", "hb_in", "hb_out",
                 "readers", "state", "deadline", "requests", "prefix")

    def __init__(self, session: WireSession):
        self.session = session
        self.uuid = session.session
        self.ident = self.uuid.encode()
        self.id = None
        self.reg = self.shell = self.control = self.iopub = self.hb_in = self.hb_out = None
        self.readers: list = []
        self.state = "new"  # new, registering, registered, failed, gone
        self.deadline = None
        self.requests = 0
        self.prefix = b""

    def sockets(self):
        return [s for s in (self.reg, self.shell, self.control, self.iopub, self.hb_in, self.hb_out) if s is not None]


class Worker:
    def __init__(self, opts):
        self.opts = opts
        with open(opts.info) as f:
            self.info = json.load(f)
        self.key = self.info.get("key", "").encode("ascii")
        self.scheme = self.info.get("signature_scheme", "hmac-sha256")
        self.ctx = zmq.Context()
        self.ctx.set(zmq.MAX_SOCKETS, SOCKETS_PER_ENGINE * opts.n + 64)  # libzmq default: 1023
        self.ctx.setsockopt(zmq.LINGER, 0)
        self.engines: list = []
        self.counts = {"reg_replies": 0, "refused": 0, "timed_out": 0, "requests": 0, "control": 0,
                       "pings": 0, "bad": 0, "unregistered": 0, "vanished": 0, "shutdown": 0}
        self.first_reply = self.last_reply = None
        self.done = None

    # ------------------------------------------------------------------ urls
    def url(self, key: str, eid: int = 0) -> str:
        port = self.info[key]
        if isinstance(port, list):
            port = port[eid % len(port)]
        return f"{self.info['interface']}:{port}"

    def _socket(self, kind: int, ident: bytes = b"") -> zmq.Socket:
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        if ident:
            s.setsockopt(zmq.IDENTITY, ident)
        return s

    def _read(self, eng: Engine, sock: zmq.Socket, handler) -> None:
        eng.readers.append(SocketReader(self.loop, sock, lambda frames: handler(eng, frames), name="swarm"))

    # ------------------------------------------------------------------ registration
    async def register_all(self) -> None:
        opts = self.opts
        for i in range(opts.n):
            eng = Engine(WireSession(self.key, self.scheme, session=new_id(), username="swarm", replay_cache=256))
            self.engines.append(eng)
            eng.reg = self._socket(zmq.DEALER, eng.ident)
            eng.reg.connect(self.url("registration"))
            self._read(eng, eng.reg, self.on_registration)
            eng.state = "registering"
            eng.deadline = self.loop.call_later(opts.reg_timeout, self.on_reg_timeout, eng)
            send_frames(eng.reg, eng.session.serialize("registration_request", {"uuid": eng.uuid}))
            if i % 50 == 49:
                await asyncio.sleep(0)  # let replies in while the rest are created

    def on_reg_timeout(self, eng: Engine) -> None:
        for r in list(eng.readers):  # a reply that came in time but waits behind this busy process's
            r.drain()               # other engines counts: a real engine, a process of its own, has read it
        if eng.state != "registering":
            return
        self.counts["timed_out"] += 1
        # what ipengine does when no reply comes in time (IPEngine.abort): say so, then exit
        eng.reg.setsockopt(zmq.LINGER, 1000)
        send_frames(eng.reg, eng.session.serialize("unregistration_request", {"id": None}))
        self.close(eng, "failed")

    def _parse(self, eng: Engine, frames: list):
        """The message, or None (counted) if it does not check out."""
        try:
            return eng.session.parse(frames)
        except MessageError:
            self.counts["bad"] += 1
            return None

    def on_registration(self, eng: Engine, frames: list) -> None:
        msg = self._parse(eng, frames)
        if msg is None:
            return
        if eng.state != "registering" or msg.msg_type != "registration_reply":
            return
        eng.deadline.cancel()
        now = time.monotonic()
        self.first_reply = self.first_reply or now
        self.last_reply = now
        self.counts["reg_replies"] += 1
        if msg.content.get("status") != "ok":
            self.counts["refused"] += 1
            self.close(eng, "failed")
            return
        eng.id = int(msg.content["id"])
        eng.prefix = f"engine.{eng.id}.".encode()
        eng.state = "registered"
        eng.shell = self._socket(zmq.ROUTER, eng.ident)
        for url in (self.url("mux"), self.url("task"), self.url("broadcast", eng.id)):
            eng.shell.connect(url)
        self._read(eng, eng.shell, self.on_shell)
        eng.control = self._socket(zmq.ROUTER, eng.ident)
        eng.control.connect(self.url("control"))
        self._read(eng, eng.control, self.on_control)
        eng.iopub = self._socket(zmq.PUB, eng.ident)
        eng.iopub.setsockopt(zmq.SNDHWM, 0)
        eng.iopub.connect(self.url("iopub"))
        eng.hb_out = self._socket(zmq.DEALER, eng.ident)
        eng.hb_out.connect(self.url("hb_pong"))
        eng.hb_in = self._socket(zmq.SUB)
        eng.hb_in.setsockopt(zmq.SUBSCRIBE, b"")
        eng.hb_in.connect(self.url("hb_ping"))
        self._read(eng, eng.hb_in, self.on_ping)

    # ------------------------------------------------------------------ heart
    def on_ping(self, eng: Engine, frames: list) -> None:
        if eng.state == "registered":
            self.counts["pings"] += 1
            send_frames(eng.hb_out, frames)

    # ------------------------------------------------------------------ shell
    def on_shell(self, eng: Engine, frames: list) -> None:
        try:
            idents, parts = eng.session.split(frames)
            msg = eng.session.parse(parts, idents=idents, content=False)
        except MessageError:
            self.counts["bad"] += 1
            return
        mtype = msg.msg_type
        if mtype not in ("apply_request", "execute_request"):
            return  # comm messages and the like get no reply
        md = msg.metadata
        parent = parts[1] if isinstance(parts[1], bytes) else bytes(parts[1])
        eng.requests += 1
        self.counts["requests"] += 1
        self._status(eng, BUSY, parent)
        reply_md = {
            "started": utcnow(), "dependencies_met": True, "engine": eng.uuid,
            "is_broadcast": md.get("is_broadcast", False), "is_coalescing": md.get("is_coalescing", False),
            "original_msg_id": md.get("original_msg_id", ""), "label": md.get("label"), "status": "ok",
        }
        ours = md.get("serializer") == HUBCTL_SERIALIZER
        if ours:
            reply_md["serializer"] = HUBCTL_SERIALIZER
        if mtype == "apply_request":
            content, buffers = OK, self._apply(msg.buffers, ours)
            if buffers is None:
                content, buffers = pack(self._error(eng, "apply")), []
                reply_md["status"] = "error"
        else:
            content = pack({"status": "ok", "execution_count": eng.requests, "user_expressions": {}, "payload": []})
            buffers = []
        send_frames(eng.shell, eng.session.serialize(mtype.replace("_request", "_reply"), content, parent=parent,
                                                     metadata=reply_md, buffers=buffers, idents=idents))
        self._status(eng, IDLE, parent)

    def _apply(self, buffers: list, ours: bool):
        """The result buffers: ``None`` serialized, or with ``--execute`` the call's value (None on failure)."""
        if not self.opts.execute:
            return [NONE_HUBCTL if ours else NONE_IPP]
        try:
            if ours:
                from jupyter_hub_ctl.client.serialize import deserialize_call, serialize

                f, args, kwargs = deserialize_call([b if isinstance(b, bytes) else b.bytes for b in buffers])
                return serialize(f(*args, **kwargs))
            from ipyparallel.serialize import serialize_object, unpack_apply_message

            f, args, kwargs = unpack_apply_message([b if isinstance(b, bytes) else b.bytes for b in buffers], {})
            return serialize_object(f(*args, **kwargs))
        except Exception as e:  # reported to the client as the task's error
            self.last_error = f"{type(e).__name__}: {e}"
            return None

    def _error(self, eng: Engine, method: str) -> dict:
        ename, _, evalue = getattr(self, "last_error", "Error: ").partition(": ")
        return {"status": "error", "ename": ename, "evalue": evalue, "traceback": [],
                "engine_info": {"engine_uuid": eng.uuid, "engine_id": eng.id, "method": method}}

    def _status(self, eng: Engine, state: bytes, parent: bytes) -> None:
        send_frames(eng.iopub, eng.session.serialize("status", state, parent=parent, metadata={"engine": eng.uuid},
                                                     idents=[eng.prefix + b"status"]))

    # ------------------------------------------------------------------ control
    def on_control(self, eng: Engine, frames: list) -> None:
        msg = self._parse(eng, frames)
        if msg is None:
            return
        self.counts["control"] += 1
        mtype = msg.msg_type
        if mtype in ("shutdown_request", "abort_request", "clear_request"):
            content = {"status": "ok"}
            if mtype == "shutdown_request":
                content["restart"] = bool(msg.content.get("restart", False))
        else:
            content = dict(self._error(eng, mtype), ename="ValueError", evalue=f"unsupported request {mtype!r}")
        reply_type = mtype.replace("_request", "_reply")
        send_frames(eng.control, eng.session.serialize(reply_type, content, parent=msg.header, idents=msg.idents,
                                                       metadata={"status": content["status"], "engine": eng.uuid}))
        if mtype == "shutdown_request":
            send_frames(eng.iopub, eng.session.serialize("shutdown_reply", content, parent=msg.header,
                                                         idents=[eng.prefix + b"shutdown"]))
            self.counts["shutdown"] += 1
            self.loop.call_later(0.5, self.close, eng, "gone")  # lets the replies leave

    # ------------------------------------------------------------------ leaving
    def close(self, eng: Engine, state: str) -> None:
        if eng.state in ("failed", "gone"):
            return
        eng.state = state
        for r in eng.readers:
            r.close()
        eng.readers = []
        for s in eng.sockets():
            s.close()  # each socket's own LINGER: 0, except a registration socket with a last word
        eng.reg = eng.shell = eng.control = eng.iopub = eng.hb_in = eng.hb_out = None

    def kill(self, count: int, how: str) -> list:
        """Take ``count`` registered engines away at once; return their ids."""
        victims = [e for e in self.engines if e.state == "registered"][:count]
        for eng in victims:
            if how == "unregister":  # the nanny's message when its engine exits
                eng.reg.setsockopt(zmq.LINGER, 2000)
                send_frames(eng.reg, eng.session.serialize("unregistration_request", {"id": eng.id}))
                self.counts["unregistered"] += 1
            else:
                self.counts["vanished"] += 1
        for eng in victims:
            self.close(eng, "gone")
        return [e.id for e in victims]

    def stats(self) -> dict:
        states: dict = {}
        for e in self.engines:
            states[e.state] = states.get(e.state, 0) + 1
        return {"states": states, "counts": dict(self.counts), "first_reply": self.first_reply,
                "last_reply": self.last_reply, "now": time.monotonic(),
                "requests_by_id": {str(e.id): e.requests for e in self.engines if e.id is not None and e.requests},
                "ids": [e.id for e in self.engines if e.state == "registered"]}

    # ------------------------------------------------------------------ main
    def on_command(self, frames: list) -> None:
        cmd = json.loads(frames[-1])
        op = cmd.get("op")
        if op == "stats":
            reply = self.stats()
        elif op == "kill":
            reply = {"ids": self.kill(int(cmd["count"]), cmd.get("how", "vanish"))}
        elif op == "reset":
            for e in self.engines:
                e.requests = 0
            self.counts["requests"] = 0
            reply = {"ok": True}
        elif op == "stop":
            reply = {"ok": True}
            self.done.set()
        else:
            reply = {"error": f"unknown op {op!r}"}
        send_frames(self.cmd, [json.dumps(reply).encode()])

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.done = asyncio.Event()
        self.cmd = self._socket(zmq.DEALER, f"w{self.opts.index}".encode())
        self.cmd.connect(self.opts.control_url)
        cmd_reader = SocketReader(self.loop, self.cmd, self.on_command, name="swarm-control")
        send_frames(self.cmd, [json.dumps({"hello": self.opts.index, "pid": os.getpid(),
                                           "fd_limit": raise_fd_limit()}).encode()])
        await self.register_all()
        await self.done.wait()
        cmd_reader.close()
        for eng in self.engines:
            self.close(eng, "gone")
        self.cmd.close(0)
        self.ctx.term()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="one process of an engine swarm (started by swarm.Swarm)")
    p.add_argument("--info", required=True, help="the controller's engine connection file")
    p.add_argument("--n", type=int, required=True, help="engines in this process")
    p.add_argument("--index", type=int, default=0, help="this process's number in the swarm")
    p.add_argument("--control-url", required=True, help="the coordinator's command socket")
    p.add_argument("--reg-timeout", type=float, default=5.0, help="seconds to wait for a registration reply")
    p.add_argument("--execute", action="store_true", help="run the functions of apply requests")
    opts = p.parse_args(argv)
    raise_fd_limit()
    asyncio.run(Worker(opts).run())


if __name__ == "__main__":
    main()
