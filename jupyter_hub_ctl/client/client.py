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
from collections import deque
from contextlib import contextmanager
from typing import Dict, Optional

import zmq

from ..wire.connection import connection_file_paths, ipython_dir, profile_dir_for, read_connection_file
from ..wire.reader import recv_frames, send_frames
from ..wire.session import MessageError, Msg, WireSession, frame_bytes, new_id, parse_date
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as wait_futures

from .asyncresult import AsyncResult, Message, result_of
from .errors import EngineError, NoEnginesRegistered, RemoteError
from .serialize import SERIALIZER, STAGE_TYPE, SerializerMismatch, Staging, StagingError, deserialize

CHANNELS = {b"q": "registration", b"m": "mux", b"t": "task", b"b": "broadcast", b"c": "control"}
OUTPUT_GRACE = 5.0  # seconds to wait for announced outputs after a reply
RESYNC_RECHECK = 2.0  # seconds before a task the restarted hub does not know is declared lost


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


class Client:
    """A connection to one hub.

    ``Client()`` finds the default profile's hub; ``Client("path/ipcontroller-client.json")``,
    ``Client(info_dict)``, ``Client(profile=..., cluster_id=...)`` or ``Client(hub_id=...)``
    (a hub started through ``jupyter_hub_ctl.cluster``) pick another.
    """

    def __init__(self, connection_info=None, *, profile: Optional[str] = None, profile_dir: Optional[str] = None,
                 cluster_id: Optional[str] = None, hub_id: Optional[str] = None, timeout: float = 10.0,
                 history_limit: int = 10000, query_timeout: float = 60.0):
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
        self.results_seen = 0
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
            s = ctx.socket(zmq.DEALER)
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
            s = ctx.socket(zmq.SUB)
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
                    channel, frames = outq.popleft()
                    send_frames(socks[channel], frames, copy=False)
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
            for s in [*socks.values(), *subs.values(), monitor]:
                s.close(0)

    def _send(self, channel: bytes, frames: list) -> None:
        if self._closed:
            raise RuntimeError("client is closed")
        self._outq.append((channel, frames))  # first append, then look at the flag: see _io_main
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
    def _parse(self, frames):
        try:
            idents, parts = self.session.split(frames)
            return self.session.parse(parts, idents=idents)
        except MessageError:
            return None

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
        msg = self._parse(frames)
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
        meta = fut.metadata
        uuid = md.get("engine") or fut.engine_uuid
        meta.update(
            engine_uuid=uuid,
            engine_id=self._uuids.get(uuid),
            status=msg.content.get("status"),
            started=parse_date(md.get("started")),
            completed=parse_date(msg.header.get("date")),
            received=time.time(),
            label=md.get("label"),
        )
        if md.get("is_coalescing"):
            targets = md.get("broadcast_targets") or []
            meta["engine_uuid"] = [t[0] for t in targets]
            meta["engine_id"] = [t[1] for t in targets]
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
            owner._child_finished(msg)

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
            self._update_engines({int(c["id"]): c["uuid"]})
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
                              engine_info={"engine_id": eid, "engine_uuid": uuid})
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
                ident: Optional[str] = None, fut_class=Message):
        msg_id, header = self.session.header_bytes(msg_type)  # packed; Message.header decodes it if asked
        fut = fut_class(msg_id, msg_type, ident, header)
        self._futures[msg_id] = fut
        if ident is not None:
            self._outstanding.setdefault(ident, set()).add(msg_id)
        idents = [ident.encode()] if ident is not None else []
        frames = self.session.serialize(msg_type, content, metadata=metadata, header=header, buffers=buffers,
                                        idents=idents)
        self._send(channel, frames)
        if fut_class is Message:
            self.history.append(msg_id)
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

    # ================================================================ engines
    @property
    def ids(self) -> list:
        return sorted(self._engines)

    @property
    def engines(self) -> dict:
        """Registered engines: ``{id: uuid}`` (a copy)."""
        return dict(self._engines)

    def __len__(self) -> int:
        return len(self._engines)

    def wait_for_engines(self, n: int, timeout: Optional[float] = None, interactive: Optional[bool] = None,
                         widget: Optional[bool] = None) -> list:
        """Block until at least ``n`` engines are registered; TimeoutError says how many came.

        ``interactive`` (default: inside IPython, as ipyparallel does) shows a progress bar while
        waiting, a widget in a notebook (``widget=False``: text)."""
        if interactive is None:
            from ..kernel.progress import in_ipython

            interactive = in_ipython()
        if interactive and len(self._engines) < n:
            from ..kernel.progress import EngineProgress

            EngineProgress(n, client=self).wait(timeout, widget=widget)
            return self.ids
        deadline = None if timeout is None else time.monotonic() + timeout
        next_ask = time.monotonic() + 0.25
        while len(self._engines) < n:
            now = time.monotonic()
            if deadline is not None and now > deadline:
                raise TimeoutError(
                    f"only {len(self._engines)} of {n} engines registered within {timeout}s "
                    f"(engines: {self.ids}); check the engines' logs for registration errors")
            if now >= next_ask:
                # registrations are announced on a PUB socket, which drops what is published before
                # our subscription is joined (e.g. engines coming back to a restarted controller
                # first): ask the hub itself now and then
                next_ask = now + 1.0
                try:
                    engines = self._hub("connection_request", {}, timeout=5)["content"].get("engines", {})
                    self._update_engines({int(k): v for k, v in engines.items()})
                except (TimeoutError, RemoteError):
                    pass
                continue
            time.sleep(0.05)
        return self.ids

    async def wait_for_engines_async(self, n: int, timeout: Optional[float] = None) -> list:
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(None, self.wait_for_engines, n, timeout, False)

    def _uuid_of(self, target: int) -> str:
        try:
            return self._engines[target]
        except KeyError:
            raise IndexError(f"no engine with id {target} (engines: {self.ids})") from None

    def _resolve_targets(self, targets) -> list:
        if targets is None or targets == "all":
            ids = self.ids
        elif isinstance(targets, int):
            ids = [targets]
        elif isinstance(targets, slice):
            ids = self.ids[targets]
        else:
            ids = list(targets)
        if not ids:
            raise NoEnginesRegistered("no engines registered with this hub")
        for t in ids:
            self._uuid_of(t)
        return ids

    def __getitem__(self, key):
        from .views import DirectView

        if isinstance(key, int):
            self._uuid_of(key)
            return DirectView(self, key)
        if isinstance(key, (slice, list, tuple)):
            return DirectView(self, self._resolve_targets(key if not isinstance(key, tuple) else list(key)))
        raise TypeError(f"engine index must be int, slice or list, not {type(key).__name__}")

    def direct_view(self, targets="all"):
        from .views import DirectView

        return DirectView(self, targets)

    def load_balanced_view(self, targets=None, **flags):
        from .views import LoadBalancedView

        return LoadBalancedView(self, targets, **flags)

    def broadcast_view(self, targets="all", is_coalescing: bool = False):
        from .views import BroadcastView

        return BroadcastView(self, targets, is_coalescing=is_coalescing)

    def on_registration(self, callback):
        """Call ``callback(event_dict)`` on engine register/unregister and hub shutdown.

        Returns a function that unsubscribes ``callback`` (as ``off_registration(callback)`` does).
        """
        self._registration_callbacks.append(callback)
        return lambda: self.off_registration(callback)

    def off_registration(self, callback) -> bool:
        """Stop calling ``callback`` (one subscription of it); False if it was not subscribed."""
        try:
            self._registration_callbacks.remove(callback)
        except ValueError:
            return False
        return True

    # ================================================================ control
    def _control(self, msg_type: str, content: dict, targets, block: bool, timeout: float = 10.0):
        """Send a control request to each target engine; with ``block``, wait for the replies' contents."""
        futs = [self._submit(b"c", msg_type, content, {}, ident=self._engines[t], fut_class=_QueryFuture)
                for t in self._resolve_targets(targets)]
        if not block:
            return futs
        wait_futures(futs, timeout)
        return [f.result(0)["content"] if f.done() and f.exception() is None else None for f in futs]

    def abort(self, msg_ids=None, targets=None, block: bool = True):
        """Ask engines to skip these (queued) tasks; all queued tasks if ``msg_ids`` is None."""
        ids = list(msg_ids) if msg_ids else []
        return self._control("abort_request", {"msg_ids": ids}, targets, block)

    def clear(self, targets=None, block: bool = True):
        """Reset the engines' namespaces."""
        return self._control("clear_request", {}, targets, block)

    def send_signal(self, sig, targets=None, block: bool = True):
        """Send a signal (e.g. ``signal.SIGINT``) to engines' processes."""
        return self._control("signal_request", {"sig": int(sig)}, targets, block)

    def shutdown(self, targets="all", hub: bool = False, block: bool = True):
        """Stop engines (and the hub with ``hub=True``)."""
        if self._engines and targets is not None:
            self._control("shutdown_request", {"restart": False}, targets, block)
        if hub:
            self._hub("shutdown_request", {}, timeout=10)

    # ================================================================ hub queries
    def queue_status(self, targets=None, verbose: bool = False) -> dict:
        content = self._hub("queue_request", {"targets": targets, "verbose": verbose})["content"]
        out = {}
        for k, v in content.items():
            if k == "status":
                continue
            out[int(k) if k.isdigit() else k] = v
        return out[targets] if isinstance(targets, int) else out

    def result_status(self, msg_ids, status_only: bool = True) -> dict:
        content = self._hub("result_request", {"msg_ids": _msg_ids(msg_ids), "status_only": status_only})["content"]
        return {"pending": content["pending"], "completed": content["completed"]}

    def get_result(self, msg_ids, timeout: Optional[float] = None):
        """Results by msg_id, including tasks submitted by other clients (from the hub's records)."""
        single = isinstance(msg_ids, str)
        ids = _msg_ids(msg_ids)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            reply = self._hub("result_request", {"msg_ids": ids, "status_only": False})
            content = reply["content"]
            if not content["pending"]:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{len(content['pending'])} of {len(ids)} results still pending")
            time.sleep(0.1)
        buffers = list(reply["buffers"])
        results = {}
        for m in content["completed"]:
            rec = content.get(m) or {}
            rc = rec.get("result_content") or {}
            rh = rec.get("result_header") or {}
            rmd = rec.get("result_metadata") or {}
            if rc.get("status") == "ok" and rh.get("msg_type") == "apply_reply" and rmd.get("staged"):
                buffers = buffers[int(rmd.get("nbuffers") or 1):]
                results[m] = RemoteError(
                    "ResultNotRecorded",
                    f"the result of task {m} was large (sent in pieces straight to the client that "
                    "submitted it) and the hub keeps only its first part, so it cannot be fetched again")
            elif rc.get("status") == "ok" and rh.get("msg_type") == "apply_reply":
                value, buffers = _take_object(buffers, rmd.get("nbuffers"))
                results[m] = value
            elif rc.get("status") == "ok":
                results[m] = rc
            else:
                results[m] = RemoteError.from_content(rc, self._uuids)
        for v in results.values():
            if isinstance(v, BaseException):
                raise v
        return results[ids[0]] if single else [results[m] for m in ids]

    def hub_history(self) -> list:
        return self._hub("history_request", {})["content"]["history"]

    def db_query(self, query: dict, keys=None) -> list:
        reply = self._hub("db_request", {"query": query, "keys": keys})
        content = reply["content"]
        records = content["records"]
        buffers = list(reply["buffers"])
        blens, rblens = content.get("buffer_lens"), content.get("result_buffer_lens")
        for i, rec in enumerate(records):
            if blens is not None:
                rec["buffers"], buffers = buffers[: blens[i]], buffers[blens[i]:]
            if rblens is not None:
                rec["result_buffers"], buffers = buffers[: rblens[i]], buffers[rblens[i]:]
            for key in ("submitted", "started", "completed", "received"):
                if key in rec:
                    rec[key] = parse_date(rec[key])
        return records

    def resubmit(self, msg_ids) -> dict:
        return self._hub("resubmit_request", {"msg_ids": _msg_ids(msg_ids)})["content"]["resubmitted"]

    def purge_results(self, msg_ids=(), targets=()) -> None:
        if msg_ids == "all":
            self._hub("purge_request", {"msg_ids": "all"})
            return
        engine_ids = [targets] if isinstance(targets, int) else list(targets or [])
        self._hub("purge_request", {"msg_ids": _msg_ids(msg_ids) if msg_ids else [], "engine_ids": engine_ids})

    def engines_info(self) -> list:
        """Registered engines: id, uuid, host, pid, queue/tasks/completed counts, last heartbeat (epoch s)."""
        return self._hub("engines_request", {})["content"]["engines"]

    def health(self) -> dict:
        return self._hub("health_request", {})["content"]

    # ================================================================ lifetime
    def close(self) -> None:
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


def _msg_ids(msg_ids) -> list:
    if isinstance(msg_ids, str):
        return [msg_ids]
    if isinstance(msg_ids, AsyncResult):
        return list(msg_ids.msg_ids)
    out = []
    for m in msg_ids:
        out.extend(m.msg_ids if isinstance(m, AsyncResult) else [m])
    return out


def _take_object(buffers: list, n=None):
    """Deserialize one object from the front of ``buffers``; (value, rest)."""
    if n is None:
        n = 1 + sum(1 for _ in _oob_run(buffers[1:]))
    value = deserialize(buffers[:n])
    return value, buffers[n:]


def _oob_run(buffers):
    from .serialize import MAGIC

    for b in buffers:
        if memoryview(b)[: len(MAGIC)].tobytes() == MAGIC:
            return
        yield b

