"""HubFactory: binds every controller socket and assembles the Hub."""

from __future__ import annotations

import socket as _socket
import threading
from typing import Optional

import zmq
from traitlets import Bool, Enum, Integer, List, Unicode, default
from traitlets.config import LoggingConfigurable

from ..wire.session import WireSession
from . import relays
from .heartmonitor import HeartMonitor
from .hub import Hub
from .scheduler.broadcast import BroadcastScheduler
from .scheduler.task import TaskScheduler, make_engine_router
from ..wire.reader import SocketReader

CLIENT_CHANNELS = ("registration", "control", "mux", "task", "iopub", "notification", "broadcast")
ENGINE_CHANNELS = ("registration", "control", "mux", "task", "iopub", "hb_ping", "hb_pong", "broadcast")


class HubFactory(LoggingConfigurable):
    """Where the controller listens, and the construction of its parts."""

    transport = Enum(["tcp"], default_value="tcp", config=True,
                     help="ZeroMQ transport for every channel (tcp; ipc URLs are not portable to peers).")
    ip = Unicode("127.0.0.1", config=True,
                 help="Address to listen on for both engines and clients (``*`` or 0.0.0.0 for all).")
    engine_ip = Unicode("", config=True, help="Address for engine channels (default: ip).")
    client_ip = Unicode("", config=True, help="Address for client channels (default: ip).")
    location = Unicode(config=True,
                       help="This controller's host name or IP, written to connection files so peers "
                       "can resolve a wildcard listen address.")
    ports = List(Integer(), config=True,
                 help="Pool of ports to use, in order (registration first); empty: random free ports.")
    fixed_ports = List(Integer(), config=True,
                       help="Exact ports by channel, as saved in connection files (used by --reuse).")
    registration_port = Integer(0, config=True, help="Port for registration and queries (0: from pool or random).")
    use_broadcast = Bool(True, config=True, help="Serve BroadcastView through a broadcast scheduler.")
    listen_backlog = Integer(
        4096, config=True,
        help="Pending TCP connections each listening socket queues (ZMQ_BACKLOG; the kernel caps it at "
        "net.core.somaxconn). libzmq's default, 100, overflows when hundreds of engines start at once: "
        "their connections are then retried with growing delays and registrations time out.",
    )
    maxmsgsize = Integer(
        64 * 1024 * 1024, config=True,
        help="Largest message (bytes) accepted on the registration/query socket; larger ones drop the peer.",
    )

    @default("location")
    def _default_location(self):
        try:
            return _socket.gethostname()
        except OSError:
            return "127.0.0.1"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.context: Optional[zmq.Context] = None
        self.hub = None
        self.client_ports: dict = {}
        self.engine_ports: dict = {}
        self._pool = list(self.ports)
        self._preset: dict = {}

    # ---------------------------------------------------------------- URLs
    def _ip(self, side: str) -> str:
        ip = (self.engine_ip if side == "engine" else self.client_ip) or self.ip
        return "*" if ip in ("0.0.0.0", "") else ip

    def _interface_ip(self, side: str) -> str:
        ip = (self.engine_ip if side == "engine" else self.client_ip) or self.ip
        return "0.0.0.0" if ip == "*" else ip

    def interface(self, side: str) -> str:
        return f"{self.transport}://{self._interface_ip(side)}"

    def client_url(self, channel: str) -> str:
        return f"{self.interface('client')}:{self.client_ports[channel]}"

    def engine_url(self, channel: str) -> str:
        return f"{self.interface('engine')}:{self.engine_ports[channel]}"

    def preset_ports(self, client: dict, engine: dict) -> None:
        """Use exactly these ports (from earlier connection files)."""
        self._preset = {"client": dict(client), "engine": dict(engine)}

    def _bind_url(self, side: str, channel: str) -> str:
        port = self._preset.get(side, {}).get(channel)
        if isinstance(port, list):
            port = port[0] if port else None
        if not port and channel == "registration" and self.registration_port:
            port = self.registration_port
        if not port and self._pool:
            port = self._pool.pop(0)
        return f"{self.transport}://{self._ip(side)}:{port or '*'}"

    # ---------------------------------------------------------------- construction
    def init_hub(self, loop, session: WireSession, db, on_shutdown=None, config=None) -> Hub:
        """Bind every socket, start relays and heartbeat threads, return the Hub."""
        ctx = self.context = zmq.Context()
        ctx.setsockopt(zmq.BACKLOG, self.listen_backlog)  # a default for every socket created below
        cfg = config if config is not None else self.config
        cp, ep = self.client_ports, self.engine_ports

        # registration / queries
        q = ctx.socket(zmq.ROUTER)
        q.setsockopt(zmq.LINGER, 0)
        q.setsockopt(zmq.SNDHWM, 0)
        q.setsockopt(zmq.RCVHWM, 0)
        q.setsockopt(zmq.ROUTER_HANDOVER, 1)
        q.setsockopt(zmq.MAXMSGSIZE, self.maxmsgsize)
        q.bind(self._bind_url("client", "registration"))
        cp["registration"] = ep["registration"] = relays.bound_port(q)
        if self._ip("engine") != self._ip("client"):
            q.bind(f"{self.transport}://{self._ip('engine')}:{cp['registration']}")

        # heartbeat
        hm = HeartMonitor(ctx, self._bind_url("engine", "hb_ping"), self._bind_url("engine", "hb_pong"),
                          on_new=None, on_failed=None, loop=loop, parent=self, config=cfg)
        ep["hb_ping"], ep["hb_pong"] = hm.ping_port, hm.pong_port

        # MUX, control, IOPub relays
        mux, cp["mux"], ep["mux"] = relays.router_relay(
            ctx, "mux", self._bind_url("client", "mux"), self._bind_url("engine", "mux"), "inproc://hubctl-mux-mon")
        ctrl, cp["control"], ep["control"] = relays.router_relay(
            ctx, "control", self._bind_url("client", "control"), self._bind_url("engine", "control"), None)
        iopub, cp["iopub"], ep["iopub"] = relays.iopub_relay(
            ctx, self._bind_url("client", "iopub"), self._bind_url("engine", "iopub"), "inproc://hubctl-iopub-mon")

        # task scheduler sockets
        task_in = make_engine_router(ctx, self._bind_url("client", "task"), b"task_in")
        task_out = make_engine_router(ctx, self._bind_url("engine", "task"), b"task_out")
        cp["task"], ep["task"] = relays.bound_port(task_in), relays.bound_port(task_out)

        # broadcast
        bc_in = make_engine_router(ctx, self._bind_url("client", "broadcast"), b"bcast_in")
        bc_out = make_engine_router(ctx, self._bind_url("engine", "broadcast"), b"bcast_out")
        cp["broadcast"] = relays.bound_port(bc_in)
        ep["broadcast"] = [relays.bound_port(bc_out)]

        # notifications
        notifier = ctx.socket(zmq.PUB)
        notifier.setsockopt(zmq.LINGER, 0)
        notifier.setsockopt(zmq.SNDHWM, 0)
        notifier.bind(self._bind_url("client", "notification"))
        cp["notification"] = relays.bound_port(notifier)

        query_reader = SocketReader(loop, q, lambda f: None, name="registration")
        hub = Hub(loop, session, hm, notifier, query_reader, self.engine_info(session, with_secrets=False),
                  db, on_shutdown=on_shutdown, parent=self, config=cfg)
        query_reader.handler = hub.dispatch_query
        hm.on_new = hub.handle_new_heart
        hm.on_failed = hub.handle_heart_failure

        # copy=True: for the small messages that dominate, bytes are much cheaper than zmq.Frame
        # objects; a large buffer costs one memcpy here.
        task_in_r = SocketReader(loop, task_in, lambda f: None, name="task-in")
        task_out_r = SocketReader(loop, task_out, lambda f: None, name="task-out")
        sched = TaskScheduler(loop, session, task_in_r, task_out_r, hub, count_error=hub.count_error,
                              parent=self, config=cfg)
        task_in_r.handler = sched.dispatch_submission
        task_out_r.handler = sched.dispatch_result
        hub.scheduler = sched

        bc_in_r = SocketReader(loop, bc_in, lambda f: None, name="broadcast-in")
        bc_out_r = SocketReader(loop, bc_out, lambda f: None, name="broadcast-out")
        bsched = BroadcastScheduler(session, bc_in_r, bc_out_r, hub, count_error=hub.count_error,
                                    parent=self, config=cfg)
        bc_in_r.handler = bsched.dispatch_submission
        bc_out_r.handler = bsched.dispatch_result
        hub.broadcast = bsched

        mux_mon = relays.monitor_sub(ctx, "inproc://hubctl-mux-mon")
        iopub_mon = relays.monitor_sub(ctx, "inproc://hubctl-iopub-mon", invert=True)
        hub.iopub_monitor = iopub_mon
        self.readers = [
            query_reader, task_in_r, task_out_r, bc_in_r, bc_out_r,
            # large buffers (pushes, pulled arrays) are recorded or dropped without a copy
            SocketReader(loop, mux_mon, hub.dispatch_monitor_traffic, copy="small", name="mux-monitor"),
            SocketReader(loop, iopub_mon, hub.save_iopub_message, name="iopub-monitor"),
        ]
        self.loop_sockets = [q, task_in, task_out, bc_in, bc_out, notifier, mux_mon, iopub_mon]
        self.relays = [mux, ctrl, iopub]
        self.heartmonitor = hm
        for r in self.relays:
            r.start()
        hm.start()
        self.hub = hub
        return hub

    # ---------------------------------------------------------------- connection info
    def _base_info(self, session: WireSession, side: str) -> dict:
        return {
            "key": session.key.decode("ascii"),
            "signature_scheme": session.signature_scheme,
            "pack": "json",
            "unpack": "json",
            "location": self.location,
            "curve_serverkey": None,
            "ssh": "",
            "interface": self.interface(side),
            "registration": self.client_ports["registration"],
        }

    def client_info(self, session: WireSession, task_scheme: str) -> dict:
        info = self._base_info(session, "client")
        for ch in CLIENT_CHANNELS[1:]:
            info[ch] = self.client_ports[ch]
        info["task_scheme"] = task_scheme
        return info

    def engine_info(self, session: WireSession, with_secrets: bool = True) -> dict:
        info = self._base_info(session, "engine")
        for ch in ENGINE_CHANNELS[1:]:
            info[ch] = self.engine_ports[ch]
        if not with_secrets:
            info.pop("key")
        return info

    def stop(self) -> None:
        for r in getattr(self, "readers", []):
            r.close()
        if getattr(self, "heartmonitor", None) is not None:
            self.heartmonitor.stop()
        for s in getattr(self, "loop_sockets", []):
            s.close(0)
        ctx, self.context = self.context, None
        if ctx is None:
            return
        relays_ = getattr(self, "relays", [])
        if not any(r.thread.is_alive() for r in relays_) and getattr(self, "hub", None) is None:
            ctx.destroy(linger=0)  # failed before anything ran: close whatever was created
            return
        # relay threads get ETERM, close their sockets and end
        term = threading.Thread(target=ctx.term, name="hubctl-term", daemon=True)
        term.start()
        for r in relays_:
            r.thread.join(2)
        term.join(5)
