"""HubFactory: binds every controller socket and assembles the Hub."""

from __future__ import annotations

import ipaddress
import socket as _socket
import threading
from typing import Optional

import zmq
from traitlets import Bool, Enum, Float, Integer, List, Unicode, default
from traitlets.config import LoggingConfigurable

from ..wire.reader import SocketReader
from ..wire.replay import ReplayWindow
from ..wire.session import WireSession
from . import relays
from .drops import DropLog
from .heartmonitor import HeartMonitor
from .hub import Hub
from .scheduler.broadcast import BroadcastScheduler
from .scheduler.task import TaskScheduler
from .sockets import SocketPolicy, bound_port

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
        512 * 1024 * 1024, config=True,
        help="Largest message part (bytes) any controller socket accepts, before anything else is "
        "checked: a larger one is refused as soon as its size is announced (its sender is "
        "disconnected; nothing of it is buffered). It must hold the largest single buffer that "
        "ipyparallel clients push or engines return (jupyter_hub_ctl's own client and engine send "
        "large transfers in pieces, so any size passes). Heartbeats and subscriptions are capped "
        "at 4 kB regardless.",
    )
    connection_timeout = Float(
        15.0, config=True,
        help="Seconds after which the controller closes a connection whose peer's host stopped "
        "answering (TCP keepalive probes from half of it on). A peer that went away frees its "
        "routing id this way, so its reconnect is accepted.",
    )
    replay_window = Float(
        600.0, config=True,
        help="Seconds: a signed message dated further than this from the controller's clock is "
        "refused (the sender gets an error). Must cover clock differences between machines and "
        "the time a large message takes to arrive.",
    )
    replay_memory = Integer(
        262144, config=True,
        help="How many signatures of accepted messages the controller remembers (about 80 bytes "
        "each) so that none is accepted twice. When it is full the oldest-dated is forgotten and "
        "messages dated before it are refused as expired, so a message is refused only if this many "
        "newer-dated ones reached the controller before it.",
    )
    enable_curve = Bool(
        None, allow_none=True, config=True,
        help="Encrypt and authenticate every connection with CurveZMQ (ipyparallel's enable_curve; "
        "env IPP_ENABLE_CURVE=1). Unset: on whenever the controller listens on anything but "
        "loopback, off on loopback. Peers need the connection file's curve_serverkey to connect.",
    )
    curve_secretkey = Unicode(
        "", config=True,
        help="The controller's Z85 CurveZMQ secret key (env IPP_CURVE_SECRETKEY); empty: the "
        "saved key pair of reused connection files, else a new one.",
    )
    curve_publickey = Unicode(
        "", config=True,
        help="The controller's Z85 CurveZMQ public key (env IPP_CURVE_PUBLICKEY); written to the "
        "connection files as curve_serverkey.",
    )

    @default("location")
    def _default_location(self):
        try:
            return _socket.gethostname()
        except OSError:
            return "127.0.0.1"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.curve = False  # resolved by resolve_curve()
        self.context: Optional[zmq.Context] = None
        self.hub = None
        self.client_ports: dict = {}
        self.engine_ports: dict = {}
        self._pool = list(self.ports)
        self._preset: dict = {}

    # ---------------------------------------------------------------- encryption
    def loopback_only(self) -> bool:
        """Whether every address the controller listens on is a loopback address."""
        return all(_is_loopback(getattr(self, name) or self.ip) for name in ("engine_ip", "client_ip"))

    def resolve_curve(self, saved: Optional[dict] = None) -> bool:
        """Decide whether to encrypt, and with which key pair; ``saved`` is a reused pair."""
        on = self.enable_curve
        if on is None:
            on = bool(saved) or not self.loopback_only()
        elif not on and not self.loopback_only():
            self.log.warning("CurveZMQ encryption is off although the controller listens beyond loopback "
                             "(%s): anyone on the network can read the traffic and connect to its ports",
                             ", ".join(sorted({self._interface_ip("client"), self._interface_ip("engine")})))
        self.curve = bool(on)
        if not self.curve:
            return False
        if not (self.curve_secretkey and self.curve_publickey):
            if saved:
                self.curve_publickey, self.curve_secretkey = saved["public"], saved["secret"]
            else:
                public, secret = zmq.curve_keypair()
                self.curve_publickey, self.curve_secretkey = public.decode("ascii"), secret.decode("ascii")
        elif zmq.curve_public(self.curve_secretkey.encode("ascii")).decode("ascii") != self.curve_publickey:
            raise ValueError("HubFactory.curve_publickey is not the public key of curve_secretkey")
        return True

    def curve_keys(self) -> dict:
        return {"public": self.curve_publickey, "secret": self.curve_secretkey}

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
        if session.key:  # one replay memory for every socket, with the date window
            session.replay = ReplayWindow(self.replay_window, self.replay_memory)
        policy = self.policy = SocketPolicy(self.maxmsgsize, self.connection_timeout,
                                            self.curve_secretkey.encode("ascii") if self.curve else None)
        drops = DropLog(self.log)

        # registration / queries
        q = policy.router(ctx, self._bind_url("client", "registration"))
        cp["registration"] = ep["registration"] = bound_port(q)
        if self._ip("engine") != self._ip("client"):
            q.bind(f"{self.transport}://{self._ip('engine')}:{cp['registration']}")

        # heartbeat
        hm = HeartMonitor(ctx, policy, self._bind_url("engine", "hb_ping"), self._bind_url("engine", "hb_pong"),
                          on_new=None, on_failed=None, loop=loop, drops=drops, parent=self, config=cfg)
        ep["hb_ping"], ep["hb_pong"] = hm.ping_port, hm.pong_port

        # MUX and control (relayed on the loop), IOPub (a device thread)
        mux_in = policy.router(ctx, self._bind_url("client", "mux"), b"mux_in")
        mux_out = policy.router(ctx, self._bind_url("engine", "mux"), b"mux_out", mandatory=True)
        ctrl_in = policy.router(ctx, self._bind_url("client", "control"), b"control_in")
        ctrl_out = policy.router(ctx, self._bind_url("engine", "control"), b"control_out", mandatory=True)
        cp["mux"], ep["mux"] = bound_port(mux_in), bound_port(mux_out)
        cp["control"], ep["control"] = bound_port(ctrl_in), bound_port(ctrl_out)
        iopub, cp["iopub"], ep["iopub"] = relays.iopub_relay(
            ctx, policy, self._bind_url("client", "iopub"), self._bind_url("engine", "iopub"),
            "inproc://hubctl-iopub-mon")

        # task scheduler sockets
        task_in = policy.router(ctx, self._bind_url("client", "task"), b"task_in")
        task_out = policy.router(ctx, self._bind_url("engine", "task"), b"task_out")
        cp["task"], ep["task"] = bound_port(task_in), bound_port(task_out)

        # broadcast
        bc_in = policy.router(ctx, self._bind_url("client", "broadcast"), b"bcast_in")
        bc_out = policy.router(ctx, self._bind_url("engine", "broadcast"), b"bcast_out")
        cp["broadcast"] = bound_port(bc_in)
        ep["broadcast"] = [bound_port(bc_out)]

        # notifications
        notifier = policy.pub(ctx, self._bind_url("client", "notification"))
        cp["notification"] = bound_port(notifier)

        query_reader = SocketReader(loop, q, lambda f: None, name="registration")
        hub = Hub(loop, session, hm, notifier, query_reader, self.engine_info(session, with_secrets=False),
                  db, drops=drops, on_shutdown=on_shutdown, parent=self, config=cfg)
        hub.encrypted = self.curve
        query_reader.handler = hub.dispatch_query
        hm.on_new = hub.handle_new_heart
        hm.on_failed = hub.handle_heart_failure

        # copy=True: for the small messages that dominate, bytes are much cheaper than zmq.Frame
        # objects; a large buffer costs one memcpy here.  The relays keep large buffers as Frames
        # (pushes and pulls pass through without a copy).
        task_in_r = SocketReader(loop, task_in, lambda f: None, name="task-in")
        task_out_r = SocketReader(loop, task_out, lambda f: None, name="task-out")
        sched = TaskScheduler(loop, session, task_in_r, task_out_r, hub, drop=hub.count_error,
                              parent=self, config=cfg)
        task_in_r.handler = sched.dispatch_submission
        task_out_r.handler = sched.dispatch_result
        hub.scheduler = sched

        bc_in_r = SocketReader(loop, bc_in, lambda f: None, name="broadcast-in")
        bc_out_r = SocketReader(loop, bc_out, lambda f: None, name="broadcast-out")
        bsched = BroadcastScheduler(session, bc_in_r, bc_out_r, hub, drop=hub.count_error,
                                    parent=self, config=cfg)
        bc_in_r.handler = bsched.dispatch_submission
        bc_out_r.handler = bsched.dispatch_result
        hub.broadcast = bsched

        self.readers = [query_reader, task_in_r, task_out_r, bc_in_r, bc_out_r]
        for name, cin, cout, record in (("mux", mux_in, mux_out, True), ("control", ctrl_in, ctrl_out, False)):
            relay = relays.RouterRelay(name, session, hub.by_uuid, hub.count_error,
                                       on_request=hub.save_queue_request if record else None,
                                       on_reply=hub.save_queue_result if record else None)
            relay.client_reader = SocketReader(loop, cin, relay.from_client, copy="small", name=f"{name}-client")
            relay.engine_reader = SocketReader(loop, cout, relay.from_engine, copy="small", name=f"{name}-engine")
            self.readers += [relay.client_reader, relay.engine_reader]

        iopub_mon = relays.monitor_sub(ctx, "inproc://hubctl-iopub-mon")
        hub.iopub_monitor = iopub_mon
        self.readers.append(SocketReader(loop, iopub_mon, hub.save_iopub_message, name="iopub-monitor"))
        self.loop_sockets = [q, task_in, task_out, bc_in, bc_out, notifier, mux_in, mux_out, ctrl_in, ctrl_out,
                             iopub_mon]
        self.relays = [iopub]
        self.heartmonitor = hm
        self.hub = hub
        return hub

    def start(self) -> None:
        """Start the IOPub relay and the heartbeat (after the Hub knows which engines to take back)."""
        for r in self.relays:
            r.start()
        self.heartmonitor.start()

    # ---------------------------------------------------------------- connection info
    def _base_info(self, session: WireSession, side: str) -> dict:
        return {
            "key": session.key.decode("ascii"),
            "signature_scheme": session.signature_scheme,
            "pack": "json",
            "unpack": "json",
            "location": self.location,
            "curve_serverkey": self.curve_publickey if self.curve else None,
            "ssh": "",
            "interface": self.interface(side),
            "registration": self.client_ports["registration"],
            "max_message_size": self.maxmsgsize,  # (an extension: our peers refuse to send more)
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


def _is_loopback(ip: str) -> bool:
    if ip in ("localhost", "localhost6"):
        return True
    try:
        return ipaddress.ip_address(ip.strip("[]")).is_loopback
    except ValueError:  # a wildcard (*, 0.0.0.0 is an address: not loopback) or a host name
        return False
