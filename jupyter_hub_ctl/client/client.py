"""The client: connects to a hub, owns an IO thread, sends work, answers queries.

All sockets belong to one IO thread that waits in ``zmq.Poller``; any user
thread (or a running asyncio loop, as in a notebook) submits by pushing
ready-made frames through an inproc socket, and waits on futures that the IO
thread resolves.  Nothing a user thread does can block the IO thread.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import defaultdict, deque
from contextlib import contextmanager
from typing import Dict, Optional

import zmq

from ..wire.connection import connection_file_paths, ipython_dir, profile_dir_for, read_connection_file
from ..wire.curve import CurveClient, secure
from ..wire.reader import recv_frames, send_frames
from ..wire.session import MessageError, Msg, WireSession, check_part_sizes, frame_bytes, new_id
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from .asyncresult import Message, result_of
from .control import Control
from .dask import DaskMixin
from .errors import EngineError, RemoteError
from .hub_queries import HubQueries
from .metadata import Metadata
from .targets import Targets
from .serialize import SERIALIZER, STAGE_TYPE, SerializerMismatch, Staging, StagingError, deserialize

CHANNELS = {b"q": "registration", b"m": "mux", b"t": "task", b"b": "broadcast", b"c": "control"}
OUTPUT_GRACE = 5.0  # seconds to wait for announced outputs after a reply
RESYNC_RECHECK = 2.0  # seconds before a task the restarted hub does not know is declared lost
CLOSE_LINGER_MS = 1000  # how long close() lets requests queued just before it reach the hub


def _find_connection_file(profile=None, profile_dir=None, cluster_id=None, timeout=10.0) -> str:
    profile_dir = profile_dir or os.environ.get("IPP_PROFILE_DIR") or profile_dir_for(profile or "default",
                                                                                      ipython_dir())
    cluster_id = cluster_id if cluster_id is not None else os.environ.get("IPP_CLUSTER_ID", "")
    path = connection_file_paths(profile_dir, cluster_id)[0]
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise FileNotFoundError(f"no connection file at {path} (is a hub running for this profile/cluster id?)")
        time.sleep(0.1)
    return path


TRACK = object()  # Message.tracker before the IO thread sends a message to be tracked


class Client(Targets, HubQueries, Control, DaskMixin):
    """A connection to one hub, with ipyparallel's ``Client`` API.

    ``Client()`` finds the default profile's hub; ``Client("path/ipcontroller-client.json")``,
    ``Client(info_dict)``, ``Client(profile=..., cluster_id=...)`` or ``Client(hub_id=...)``
    (a hub started through ``jupyter_hub_ctl.cluster``) pick another.  Created inside IPython
    with no ``%px`` magic defined yet, it activates one (``activate()``), as ipyparallel does.

    Deliberate differences from ipyparallel: ``history`` keeps the last ``history_limit``
    msg_ids (the hub keeps them all: ``hub_history()``), so that a long-running client does not
    grow without bound; results of this client's own tasks live in their AsyncResults and are
    freed with them (``results``/``metadata`` hold what ``get_result``/``result_status``
    fetched from the hub, as in ipyparallel where views' results are owned by their AsyncResults).
    """

    def __init__(self, connection_info=None, *, profile: Optional[str] = None, profile_dir: Optional[str] = None,
                 cluster_id: Optional[str] = None, hub_id: Optional[str] = None, timeout: float = 10.0,
                 history_limit: int = 10000, query_timeout: float = 60.0, block: bool = False):
        if hub_id is not None:
            from ..cluster import find_hub  # a hub started through the cluster API

            connection_info = find_hub(hub_id).client_connection_info()
        if connection_info is None:
            connection_info = _find_connection_file(profile, profile_dir, cluster_id, timeout)
        if isinstance(connection_info, (str, os.PathLike)):
            self.connection_file = str(connection_info)
            connection_info = read_connection_file(self.connection_file)
        else:
            self.connection_file = None
        info = self.info = dict(connection_info)
        for key in ("key", "signature_scheme", "interface", "registration"):
            if key not in info:
                raise ValueError(f"connection info lacks {key!r}")
        self.session = WireSession(key=info["key"].encode("ascii"), signature_scheme=info["signature_scheme"],
                                   session=new_id(), username=os.environ.get("USER", "client"))
        self.curve = CurveClient.from_info(info)  # None: the hub does not encrypt
        self._engines: Dict[int, str] = {}
        self._uuids: Dict[str, int] = {}
        self._futures: Dict[str, object] = {}  # msg_id -> Message or _QueryFuture
        self._outstanding: Dict[str, set] = {}
        self._awaiting_output: Dict[str, float] = {}
        self._staging = Staging()  # pieces of large results, until their replies come
        self._registration_callbacks: list = []
        self._hub_lost = False  # the query socket lost its connection (controller restarting?)
        self._closed = False
        self.query_timeout = query_timeout  # seconds to wait for any hub query's reply
        self._thread_limits = threading.local()  # per-thread overrides of query_timeout (query_time_limit)
        self.history: deque = deque(maxlen=history_limit)  # recent msg_ids; the hub keeps them all
        self.results: dict = {}  # msg_id -> result fetched from the hub (get_result, result_status)
        self.metadata = defaultdict(Metadata)  # msg_id -> Metadata of those
        self.block = block  # default of the views' and control methods' ``block``
        self.results_seen = 0
        self._waiters = 0  # threads in wait(): _finish notifies _wait_cond only then
        self._wait_cond = threading.Condition()
        self._ctx = zmq.Context()
        # Submissions: any thread appends (channel, frames) to _outq; the IO thread sends them.  It
        # is woken through a socket pair only when it sleeps in poll (see _send and _io_main).
        self._outq: deque = deque()
        self._io_waiting = False
        self._wake_pending = False
        self._wake_recv, self._wake_send = socket.socketpair()
        self._wake_recv.setblocking(False)
        self._wake_send.setblocking(False)
        self._ready = threading.Event()
        self._io = threading.Thread(target=self._io_main, name="hubctl-client-io", daemon=True)
        self._io.start()
        self._ready.wait(5)
        try:
            reply = self._query("connection_request", {}).result(timeout)
        except FutureTimeout:
            self.close()
            raise TimeoutError(f"no answer from the hub at {self._url('registration')} within {timeout}s "
                               "(is its controller running?)") from None
        except BaseException:
            self.close()
            raise
        content = reply["content"]
        if content.get("status") != "ok":
            self.close()
            raise RemoteError.from_content(content)
        self._update_engines({int(k): v for k, v in content.get("engines", {}).items()})
        self._activate_in_ipython()

    def _activate_in_ipython(self) -> None:
        try:
            from IPython import get_ipython
        except ImportError:
            return
        ip = get_ipython()
        if ip is not None and "px" not in ip.magics_manager.magics["line"]:
            self.activate()

    # ================================================================ sockets / IO thread
    def _url(self, key: str) -> str:
        iface = self.info["interface"]
        if "0.0.0.0" in iface or "*" in iface:
            iface = f"tcp://{self.info.get('location') or '127.0.0.1'}"
        return f"{iface}:{self.info[key]}"

    def _io_main(self) -> None:
        ctx = self._ctx
        socks = {}
        ident = self.session.session.encode()
        for tag, key in CHANNELS.items():
            s = secure(ctx.socket(zmq.DEALER), self.curve)
            # the session id as identity (as the records' client_uuid): after a controller restart
            # the hub can still route a late result of a task to this client
            s.setsockopt(zmq.IDENTITY, ident)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 0)
            s.setsockopt(zmq.RCVHWM, 0)
            if key in self.info:
                s.connect(self._url(key))
            socks[tag] = s
        subs = {}
        for key in ("iopub", "notification"):
            s = secure(ctx.socket(zmq.SUB), self.curve)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RCVHWM, 0)
            s.setsockopt(zmq.SUBSCRIBE, b"")
            s.connect(self._url(key))
            subs[key] = s
        wake = self._wake_recv
        wake_fd = wake.fileno()
        outq = self._outq
        poller = zmq.Poller()
        handlers = {}
        for tag, s in socks.items():
            poller.register(s, zmq.POLLIN)
            handlers[s] = self._on_reply
        poller.register(subs["iopub"], zmq.POLLIN)
        handlers[subs["iopub"]] = self._on_iopub
        poller.register(subs["notification"], zmq.POLLIN)
        handlers[subs["notification"]] = self._on_notification
        poller.register(wake, zmq.POLLIN)
        # connection events of the hub query socket: a reconnect means the controller restarted
        monitor = socks[b"q"].get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        poller.register(monitor, zmq.POLLIN)
        handlers[monitor] = self._on_hub_connection
        self._ready.set()
        try:
            while not self._closed:
                self._io_waiting = True  # before looking at outq: _send wakes us from here on
                events = poller.poll(0 if outq else 200 if self._awaiting_output else 1000)
                self._io_waiting = False
                while outq:  # submissions first: replies can wait a moment, engines should not
                    channel, frames, fut = outq.popleft()
                    if fut is None:
                        send_frames(socks[channel], frames, copy=False)
                    else:
                        self._send_tracked(socks[channel], frames, fut)
                        fut = None  # no reference to it here until the next send: its result may be dropped
                for sock, _ in events:
                    if sock == wake_fd:  # zmq.Poller reports other sockets by file descriptor
                        self._wake_pending = False  # before draining: a later _send writes again
                        try:
                            while wake.recv(4096):
                                pass
                        except (BlockingIOError, InterruptedError):
                            pass
                        continue
                    handler = handlers[sock]
                    for _ in range(1000):
                        frames = recv_frames(sock, copy=False)
                        if frames is None:
                            break
                        try:
                            handler(frames)
                        except Exception as e:  # never let one message kill the IO thread
                            import logging

                            logging.getLogger("jupyter_hub_ctl.client").exception("client IO error: %s", e)
                if self._awaiting_output:
                    self._expire_outputs()
        except zmq.ZMQError as e:
            if e.errno != zmq.ETERM:
                raise
        finally:
            try:
                socks[b"q"].disable_monitor()
            except zmq.ZMQError:
                pass
            linger = 0
            try:
                while outq:  # requests made before close (a non-blocking shutdown, abort...) still go out
                    channel, frames, _ = outq.popleft()
                    send_frames(socks[channel], frames, copy=False)
                    linger = CLOSE_LINGER_MS
            except zmq.ZMQError:
                pass
            for s in socks.values():
                s.close(linger)
            for s in [*subs.values(), monitor]:
                s.close(0)

    @staticmethod
    def _send_tracked(sock, frames: list, fut) -> None:
        """Send a message and mark its Message(s) sent (tracking libzmq's copy if asked to)."""
        if type(fut) is list:  # a broadcast: one message for several Messages
            send_frames(sock, frames, copy=False)
            for f in fut:
                f.sent = True
        elif fut.tracker is TRACK:
            fut.tracker = sock.send_multipart(frames, copy=False, track=True)
            fut.sent = True
        else:
            send_frames(sock, frames, copy=False)
            fut.sent = True

    def _send(self, channel: bytes, frames: list, fut=None) -> None:
        """Queue ``frames`` for the IO thread; ``fut``: the Message(s) to mark sent."""
        if self._closed:
            raise RuntimeError("client is closed")
        self._outq.append((channel, frames, fut))  # first append, then look at the flag: see _io_main
        if self._io_waiting and not self._wake_pending:
            self._wake()

    def _wake(self) -> None:
        """Wake the IO thread from its poll (from any thread)."""
        self._wake_pending = True
        try:
            self._wake_send.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # full (it will wake anyway) or closed

    # ================================================================ replies
    def _parse(self, frames, reply: bool = False):
        try:
            idents, parts = self.session.split(frames)
            return self.session.parse(parts, idents=idents)
        except MessageError as e:
            if reply and e.parent and e.reason != "replay":  # a signed reply we cannot read: its request fails
                self._unreadable_reply(e)
            return None

    def _unreadable_reply(self, e: MessageError) -> None:
        content = {"status": "error", "ename": "MessageError", "evalue": f"the reply could not be read ({e})",
                   "traceback": [], "engine_info": {}}
        self._deliver(Msg([], [], e.header, e.parent, {}, content, []))

    def _on_hub_connection(self, frames) -> None:
        event = int.from_bytes(frame_bytes(frames[0])[:2], "little")
        if event == zmq.EVENT_DISCONNECTED:
            self._hub_lost = True
        elif event == zmq.EVENT_CONNECTED and self._hub_lost:
            self._hub_lost = False
            self._resync()

    def _resync(self, recheck: Optional[set] = None) -> None:
        """The controller came back: ask it about tasks of ours whose replies we have not seen.

        Finished ones (or ones it marked lost in the restart) are finished here from its
        records.  A task it has no record of at all was submitted in the moment before it
        died: it is asked about once more a little later (a submission queued here may still be
        on its way) and then ended with a TaskLost error.  Runs in the IO thread (the recheck in a
        timer thread: it only reads and sends queries; the answers are handled in the IO thread).
        """
        waiting = [m for m, f in list(self._futures.items())
                   if isinstance(f, Message) and f.reply is None and f.msg_type in ("apply_request", "execute_request")
                   and (recheck is None or m in recheck)]
        for i in range(0, len(waiting), 1000):
            chunk = waiting[i:i + 1000]
            fut = self._query("db_request", {
                "query": {"msg_id": {"$in": chunk}},
                "keys": ["completed", "result_header", "result_content", "result_metadata", "result_buffers"]})
            fut.add_done_callback(lambda f, chunk=chunk: self._resynced(f, chunk, recheck is not None))

    def _resynced(self, fut, asked: list, final: bool) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        reply = fut.result()
        content = reply["content"]
        if content.get("status") != "ok":
            return
        buffers = list(reply["buffers"])
        rblens = content.get("result_buffer_lens") or [0] * len(content["records"])
        known = set()
        for rec, n in zip(content["records"], rblens):
            bufs, buffers = buffers[:n], buffers[n:]
            known.add(rec["msg_id"])
            header = rec.get("result_header") or {}
            if not rec.get("completed") or not isinstance(header, dict) or not rec.get("result_content"):
                continue
            self._deliver(Msg([], None, header, {"msg_id": rec["msg_id"]}, rec.get("result_metadata") or {},
                              rec["result_content"], bufs))
        unknown = {m for m in asked if m not in known}
        if not unknown:
            return
        if not final:
            timer = threading.Timer(RESYNC_RECHECK, lambda: self._closed or self._resync(unknown))
            timer.daemon = True
            timer.start()
            return
        for msg_id in unknown:
            fut = self._futures.get(msg_id)
            if isinstance(fut, Message) and fut.reply is None and not fut.done:
                fut.reply = {}
                fut.error = RemoteError("TaskLost", "the controller stopped before it recorded this task; "
                                        "submit it again")
                self._finish(fut)

    def _on_reply(self, frames) -> None:
        msg = self._parse(frames, reply=True)
        if msg is None:
            return
        if msg.msg_type == STAGE_TYPE:  # a piece of a large result, ahead of its reply
            if msg.buffers:
                self._staging.add(msg.content, msg.buffers[0])
            return
        staged = msg.metadata.get("staged")
        if staged and msg.content.get("status") == "ok":
            try:
                msg.buffers = self._staging.unstage(staged, msg.buffers)
            except StagingError as e:  # the result is reported as this error
                msg.content = {"status": "error", "ename": "StagingError", "evalue": str(e), "traceback": []}
        self._deliver(msg)

    def _deliver(self, msg) -> None:
        md = msg.metadata
        msg_id = msg.parent.get("msg_id")
        if md.get("is_coalescing") and md.get("original_msg_id"):
            msg_id = md["original_msg_id"]
        fut = self._futures.get(msg_id)
        if fut is None or fut.reply is not None:
            return
        if isinstance(fut, _QueryFuture):
            self._futures.pop(msg_id, None)
            if fut.engine_uuid is not None:
                self._outstanding.get(fut.engine_uuid, set()).discard(msg_id)
            fut.set_result({"content": msg.content, "buffers": msg.buffers, "header": msg.header,
                            "metadata": md})
            return
        fut.reply = msg.as_dict()
        fut.received = time.time()
        uuid = md.get("engine")
        if uuid is not None and not md.get("is_coalescing"):
            if fut.engine_uuid is None:  # a load-balanced task: the engine that ran it
                fut.engine_uuid = uuid
            fut.engine_id = self._uuids.get(uuid)
        fut.expected_outputs = int(md.get("outputs", 0) or 0)
        if msg.content.get("status") == "ok" and md.get("serializer") != SERIALIZER \
                and fut.msg_type == "apply_request":
            fut.error = SerializerMismatch(
                "the engine that ran this task is not a jupyter_hub_ctl engine (likely ipyparallel's ipengine); "
                "jupyter_hub_ctl.Client needs jupyter_hub_ctl engines — start them with `jupyter hubctl engine`")
        elif msg.content.get("status") == "error" and md.get("serializer") != SERIALIZER \
                and fut.msg_type == "apply_request" and "started" in md:  # an engine's reply, not ours
            fut.error = SerializerMismatch(
                f"the engine could not run our request ({msg.content.get('ename')}: "
                f"{str(msg.content.get('evalue'))[:120]}); it is not a jupyter_hub_ctl engine (likely "
                "ipyparallel's ipengine), and jupyter_hub_ctl.Client needs jupyter_hub_ctl engines")
        else:
            try:
                result_of(fut, msg.content, msg.buffers, self._uuids, deserialize)
            except Exception as e:  # a result that cannot be unpickled here
                fut.error = e
        if fut.outputs_complete():
            self._finish(fut)
        else:
            self._awaiting_output[msg_id] = time.monotonic() + OUTPUT_GRACE

    def _finish(self, msg: Message) -> None:
        self._futures.pop(msg.msg_id, None)
        self._awaiting_output.pop(msg.msg_id, None)
        if self._staging.transfers:  # pieces of a result whose reply never came
            self._staging.drop(msg.msg_id)
        if msg.engine_uuid is not None:
            self._outstanding.get(msg.engine_uuid, set()).discard(msg.msg_id)
        if msg.done:
            return
        self.results_seen += 1
        msg.done = True
        owner = msg.owner
        if owner is not None:
            msg.owner = None  # no cycle: a dropped AsyncResult frees its results at once
            if type(owner) is tuple:
                for o in owner:
                    o._child_finished(msg)
            else:
                owner._child_finished(msg)
        if self._waiters:
            with self._wait_cond:
                self._wait_cond.notify_all()

    def _expire_outputs(self) -> None:
        now = time.monotonic()
        for msg_id, deadline in list(self._awaiting_output.items()):
            if now >= deadline:
                fut = self._futures.get(msg_id)
                if fut is not None:
                    self._finish(fut)
                else:
                    self._awaiting_output.pop(msg_id, None)

    def _on_iopub(self, frames) -> None:
        msg = self._parse(frames)
        if msg is None or msg.parent.get("session") != self.session.session:
            return
        fut = self._futures.get(msg.parent.get("msg_id"))
        if fut is None or isinstance(fut, _QueryFuture):
            return
        if msg.msg_type in ("status", "execute_input", "iopub_welcome"):
            return
        if fut.add_output(msg.msg_type, msg.content):
            self._finish(fut)

    def _on_notification(self, frames) -> None:
        msg = self._parse(frames)
        if msg is None:
            return
        c = msg.content
        if msg.msg_type == "registration_notification":
            eid = int(c["id"])
            if self._engines.get(eid) == c["uuid"]:
                return  # known already (a query answered before the hub's announcement came): no news
            self._update_engines({eid: c["uuid"]})
            event = dict(c, event="register")
        elif msg.msg_type == "unregistration_notification":
            eid = int(c["id"])
            uuid = self._engines.pop(eid, None)
            self._uuids.pop(uuid, None)
            if uuid is not None:
                self._fail_stranded(eid, uuid)
            event = dict(c, event="unregister")
        elif msg.msg_type == "shutdown_notification":
            event = {"event": "shutdown"}
        else:
            return
        for cb in list(self._registration_callbacks):
            try:
                cb(event)
            except Exception:
                pass

    def _fail_stranded(self, eid: int, uuid: str) -> None:
        for msg_id in list(self._outstanding.pop(uuid, ())):
            fut = self._futures.get(msg_id)
            err = EngineError("EngineError", f"Engine {eid} died while running task {msg_id!r}",
                              engine_info={"engine_id": eid, "engine_uuid": uuid, "method": "apply"})
            if isinstance(fut, _QueryFuture):
                self._futures.pop(msg_id, None)
                if not fut.done():
                    fut.set_exception(err)
                continue
            if fut is None or fut.done:
                continue
            fut.error = err
            fut.reply = {}
            self._finish(fut)

    def _update_engines(self, engines: dict) -> None:
        for eid, uuid in engines.items():
            self._engines[eid] = uuid
            self._uuids[uuid] = eid

    # ================================================================ submitting
    def _submit(self, channel: bytes, msg_type: str, content: dict, metadata: dict, buffers=(),
                ident: Optional[str] = None, fut_class=Message, track: bool = False):
        check_part_sizes(buffers, self.info.get("max_message_size"))
        msg_id, header = self.session.header_bytes(msg_type)  # packed; Message.header decodes it if asked
        fut = fut_class(msg_id, msg_type, ident, header)
        self._futures[msg_id] = fut
        if ident is not None:
            self._outstanding.setdefault(ident, set()).add(msg_id)
            fut.engine_id = self._uuids.get(ident)
        idents = [ident.encode()] if ident is not None else []
        frames = self.session.serialize(msg_type, content, metadata=metadata, header=header, buffers=buffers,
                                        idents=idents)
        if fut_class is Message:
            if track:
                fut.tracker = TRACK
            self._send(channel, frames, fut)
            self.history.append(msg_id)
        else:
            self._send(channel, frames)
        return fut

    def _query(self, msg_type: str, content: dict) -> "_QueryFuture":
        return self._submit(b"q", msg_type, content, {}, fut_class=_QueryFuture)

    @contextmanager
    def query_time_limit(self, seconds: float):
        """Within the block, hub queries made on this thread wait at most ``seconds`` for their reply
        (a TimeoutError otherwise); other threads keep ``query_timeout``."""
        previous = getattr(self._thread_limits, "seconds", None)
        self._thread_limits.seconds = seconds
        try:
            yield self
        finally:
            self._thread_limits.seconds = previous

    def _hub(self, msg_type: str, content: dict, timeout: Optional[float] = None) -> dict:
        if timeout is None:
            limit = getattr(self._thread_limits, "seconds", None)
            timeout = self.query_timeout if limit is None else limit
        fut = self._query(msg_type, content)
        try:
            reply = fut.result(timeout)
        except FutureTimeout:
            self._futures.pop(fut.msg_id, None)
            raise TimeoutError(f"the hub did not answer {msg_type} within {timeout}s "
                               "(is its controller running?)") from None
        if reply["content"].get("status") != "ok":
            raise RemoteError.from_content(reply["content"], self._uuids)
        return reply

    # ================================================================ lifetime
    def close(self, linger=None) -> None:
        """Stop the IO thread and close the sockets; tasks still waited for fail (``linger`` is accepted
        for ipyparallel code: nothing queued is sent after close)."""
        if self._closed:
            return
        self._closed = True
        self._wake()
        self._io.join(3)
        closed = RuntimeError("the client was closed before a reply arrived")
        for fut in list(self._futures.values()):  # nobody waits forever on a closed client
            if isinstance(fut, _QueryFuture):
                if not fut.done():
                    fut.set_exception(closed)
            elif not fut.done:
                fut.error = closed
                self._finish(fut)
        self._futures.clear()
        for s in (self._wake_send, self._wake_recv):
            s.close()
        self._ctx.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<jupyter_hub_ctl.Client {len(self._engines)} engines>"


class _QueryFuture(Future):
    """A hub query or control request: resolves to the raw reply."""

    def __init__(self, msg_id: str, msg_type: str, engine_uuid: Optional[str] = None, header=None):
        super().__init__()
        self.msg_id = msg_id
        self.msg_type = msg_type
        self.engine_uuid = engine_uuid
        self.header = header
        self.reply = None
