"""The Hub: engine registry, bookkeeping of all traffic, and the query service.

Everything here runs on one asyncio loop.  Relays and the heartbeat run in
their own threads and report through inproc sockets (traffic copies) or
``call_soon_threadsafe`` (heart events); the task and broadcast schedulers
call the Hub directly.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from collections import Counter, OrderedDict
from typing import Optional

import zmq
from traitlets import Any, Dict, Float, Integer, Unicode, observe
from traitlets.config import LoggingConfigurable

from ..wire.connection import write_atomic
from ..wire.session import MessageError, Msg, WireSession, frame_bytes, parse_date, unpack, utcnow
from .errors import error_content, wrap_exception
from .queries import HubQueries
from .records import buffers_of, empty_record, init_record

__all__ = ["Hub", "EngineConnector", "init_record", "empty_record"]


class EngineConnector(LoggingConfigurable):
    """What the Hub knows about one engine: id, uuid, pending msg_ids, stall timer."""

    registration_timeout = Float(
        0.0,
        config=True,
        help="Seconds an accepted registration may wait for the engine's first heartbeat before it is "
        "dropped (0: the Hub's registration_timeout).",
    )

    def __init__(self, id: int, uuid: str, ident: bytes, host: str = "", pid: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.id = id
        self.uuid = uuid
        self.ident = ident
        self.stallback = None  # timer handle while registration is unfinished
        self.registered = utcnow()
        self.queue: "OrderedDict[str, None]" = OrderedDict()  # MUX msg_ids outstanding
        self.tasks: "OrderedDict[str, None]" = OrderedDict()  # task msg_ids outstanding
        self.completed: list = []
        self.host = host
        self.pid = pid

    @property
    def pending(self) -> set:
        """msg_ids sent to this engine and not answered yet (direct and load-balanced)."""
        return set(self.queue) | set(self.tasks)

    def info(self) -> dict:
        return {"id": self.id, "uuid": self.uuid}


class Hub(HubQueries, LoggingConfigurable):
    """Registers engines, records tasks, answers clients' queries."""

    registration_timeout = Float(
        0.0,
        config=True,
        help="Seconds an accepted registration may wait for the engine's first heartbeat "
        "before it is dropped (0: max(30, 10 heartbeat periods)).",
    )
    io_cache_size = Integer(
        4096,
        config=True,
        help="How many tasks' accumulating stdout/stderr the Hub keeps in memory.",
    )
    shutdown_delay = Float(
        0.5, config=True, help="Seconds between answering shutdown_request and exiting."
    )
    engine_state_file = Unicode(
        "", config=True, help="Where to save the engine id map (used by --restore); empty: do not save."
    )
    restore_engines = Dict(
        help="Engine ids and uuids to accept again after a restart (--restore)."
    )
    reconnect_grace = Float(
        60.0,
        config=True,
        help="Seconds an engine dropped for missed heartbeats keeps its id: if its heart answers "
        "again within this window (it was only partitioned or paused) it is taken back under the "
        "same id. 0: a dropped engine is gone for good.",
    )
    retention_max_age = Float(
        0.0,
        config=True,
        help="Finished task records older than this many seconds are purged automatically (0: kept).",
    )
    retention_max_records = Integer(
        0,
        config=True,
        help="When the task database holds more records than this, the oldest finished ones are "
        "purged (down to 90 %%) automatically (0: no limit).",
    )
    retention_max_bytes = Integer(
        0,
        config=True,
        help="When the task database (SQLite: the file's used pages; DictDB: buffers held) grows "
        "beyond this many bytes, the oldest finished records are purged (down to 90 %%) and the "
        "space given back (0: no limit).",
    )
    retention_interval = Float(
        60.0, config=True, help="Seconds between checks of the retention limits."
    )
    db = Any(help="The task-record store.")

    def __init__(self, loop, session: WireSession, heartmonitor, notifier, query_reader,
                 engine_info: dict, db, on_shutdown=None, **kwargs):
        super().__init__(**kwargs)
        self.loop = loop
        self.session = session
        self.heartmonitor = heartmonitor
        self.notifier = notifier
        self.query = query_reader
        self.engine_info = engine_info
        self.db = db
        self.on_shutdown = on_shutdown
        self.scheduler = None
        self.broadcast = None
        self.iopub_monitor = None  # inverted SUB of the IOPub copy: subscribed topics are dropped
        self.engines: dict = {}  # id -> EngineConnector
        self.by_uuid: dict = {}  # uuid str -> id
        self.incoming: dict = {}  # uuid str -> EngineConnector awaiting first heartbeat
        # uuid -> (id, loop time until which the id is kept) of engines dropped for silence
        self.departed: "OrderedDict[str, tuple]" = OrderedDict()
        self.retention_task = None
        self.lost_tasks: dict = {}  # msg_id -> client uuid, for tasks marked lost at a restart
        self.retained = 0  # records purged by the retention limits
        self._next_id = 0
        self.pending: set = set()
        self.all_completed: set = set()
        self.unassigned: set = set()
        self.task_engine: dict = {}  # task msg_id -> id of the engine it is assigned to
        self.skeletons: set = set()
        self.io: "OrderedDict[str, dict]" = OrderedDict()
        self.errors: Counter = Counter()
        self.tasks_seen = 0
        self._degraded_since = None
        if not self.registration_timeout:
            self.registration_timeout = max(30.0, 10 * heartmonitor.period / 1000.0)

    @observe("db")
    def _db_changed(self, change):
        self._store = change["new"]  # a plain attribute for the per-task writes

    # ================================================================ utilities
    def count_error(self, reason: str) -> None:
        self.errors[reason] += 1

    def _reply(self, idents, msg_type: str, content: dict, parent: Optional[dict] = None, buffers=()) -> None:
        self.query.send(self.session.serialize(msg_type, content, parent=parent, buffers=buffers, idents=idents),
                        copy=False)

    def _notify(self, msg_type: str, content: dict, parent=None) -> None:
        self.notifier.send_multipart(self.session.serialize(msg_type, content, parent=parent))

    def _db_call(self, name: str, msg_id: str, rec: dict) -> None:
        """``add_record`` / ``update_record`` of a dict built here and handed over to the
        store (its ``adopt_record`` / ``merge_record``: no copy); failures are counted and
        logged, never raised."""
        db = self._store
        try:
            if name == "add_record":
                db.adopt_record(msg_id, rec)
            elif not db.merge_record(msg_id, rec):
                self.log.debug("%s: no record %s", name, msg_id)  # culled, purged or never seen
        except KeyError:
            self.log.debug("%s: no record %s", name, msg_id)
        except Exception as e:
            self.count_error("db-error")
            self.log.error("task store %s failed: %s", name, e)

    # ================================================================ queries
    def dispatch_query(self, raw: list) -> None:
        """Handle one message on the registration/query socket; always reply if possible."""
        try:
            idents, parts = self.session.split(raw)
        except MessageError as e:
            self.count_error(e.reason)
            self.log.warning("query: dropped a message without delimiter")
            return
        if not idents:
            self.count_error("no-ident")
            return
        try:
            msg = self.session.parse(parts, idents=idents)
        except MessageError as e:
            self.count_error(e.reason)
            if e.reason in ("unsigned", "bad-signature", "replay", "short"):
                self.log.warning("query: dropped a message (%s)", e.reason)
                return
            self.log.warning("query: malformed message (%s)", e.reason)
            self._reply(idents, "hub_error", error_content("ValueError", f"malformed message: {e.reason}"))
            return
        handler = self.query_handlers.get(msg.msg_type)
        if handler is None:
            self.count_error("unknown-msg-type")
            self.log.warning("query: unknown message type %r", msg.msg_type[:60])
            self._reply(idents, "hub_error", error_content("KeyError", f"Bad Message Type: {msg.msg_type[:60]}"),
                        parent=msg.header)
            return
        try:
            result = handler(self, idents, msg)
        except Exception as e:
            self._handler_failed(idents, msg, e)
            return
        if asyncio.iscoroutine(result):
            task = self.loop.create_task(result)
            task.add_done_callback(lambda t, i=idents, m=msg: self._async_done(t, i, m))

    def _async_done(self, task, idents, msg) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._handler_failed(idents, msg, exc)

    def _handler_failed(self, idents, msg: Msg, exc: BaseException) -> None:
        self.count_error("handler-error")
        if not isinstance(exc, (KeyError, ValueError, IndexError, TypeError)):
            self.log.error("query %s failed", msg.msg_type, exc_info=exc)
        reply_type = msg.msg_type.replace("_request", "_reply") if msg.msg_type.endswith("_request") else "hub_error"
        self._reply(idents, reply_type, wrap_exception(exc), parent=msg.header)

    # ================================================================ registration
    def register_engine(self, idents, msg: Msg) -> None:
        content = msg.content
        uuid = content.get("uuid")
        if not isinstance(uuid, str) or not uuid or len(uuid) > 256:
            raise ValueError("registration_request needs a uuid string")
        about = content.get("info") if isinstance(content.get("info"), dict) else {}
        pid = about.get("pid")
        pid = pid if isinstance(pid, int) and not isinstance(pid, bool) else None

        def reply(eid: int) -> None:
            self._reply(idents, "registration_reply", {"status": "ok", "id": eid, "hb_period": self.heartmonitor.period,
                                                       "connection_info": self.engine_info}, parent=msg.header)

        if uuid in self.by_uuid:
            ec = self.engines[self.by_uuid[uuid]]
            if ec.pid is not None and ec.pid != pid:
                raise KeyError(f"uuid {uuid!r} in use")
            # an engine taken back from its heartbeat after a restart, registering again: same id
            ec.host, ec.pid = str(about.get("host", ""))[:255] or ec.host, pid
            reply(ec.id)
            return
        if uuid in self.incoming:
            raise KeyError(f"uuid {uuid!r} in use")
        requested = content.get("id")
        if requested is None and uuid in self.restore_engines:
            requested = self.restore_engines[uuid]
        if requested is None:
            requested = self._departed_id(uuid)
        eid = self._pick_id(requested, uuid)
        self.departed.pop(uuid, None)
        ec = EngineConnector(eid, uuid, frame_bytes(idents[0]), host=str(about.get("host", ""))[:255],
                             pid=pid, parent=self)
        reply(eid)
        self.log.info("registration: engine %d uuid %s", eid, uuid)
        heart = uuid.encode()
        if self.heartmonitor.beating(heart):
            self.finish_registration(ec)
        else:
            ec.stallback = self.loop.call_later(ec.registration_timeout or self.registration_timeout,
                                                self._purge_stalled, uuid)
            self.incoming[uuid] = ec

    def _id_in_use(self, eid: int, uuid: Optional[str] = None) -> bool:
        if eid in self.engines or any(ec.id == eid for ec in self.incoming.values()):
            return True
        now = self.loop.time()
        return any(d[0] == eid and d[1] > now and u != uuid for u, d in self.departed.items())

    def _departed_id(self, uuid: str) -> Optional[int]:
        """The id an engine dropped for silence may take back (None once its window has passed)."""
        entry = self.departed.get(uuid)
        if entry is None:
            return None
        eid, until = entry[:2]
        if until <= self.loop.time() or self._id_in_use(eid, uuid):
            return None
        return eid

    def _pick_id(self, requested, uuid: Optional[str] = None) -> int:
        if isinstance(requested, int) and not isinstance(requested, bool) and requested >= 0 \
                and not self._id_in_use(requested, uuid):
            self._next_id = max(self._next_id, requested + 1)
            return requested
        if requested is not None:
            self.log.warning("registration: requested id %r unavailable; assigning another", requested)
        while self._id_in_use(self._next_id):
            self._next_id += 1
        eid = self._next_id
        self._next_id += 1
        return eid

    def _purge_stalled(self, uuid: str) -> None:
        ec = self.incoming.pop(uuid, None)
        if ec is not None:
            self.count_error("registration-stalled")
            self.log.warning("registration: engine %d (%s) never sent a heartbeat; dropped", ec.id, uuid)

    def handle_new_heart(self, hearts: list) -> None:
        for heart in hearts:
            uuid = heart.decode("utf8", "replace")
            ec = self.incoming.get(uuid)
            if ec is not None:
                self.finish_registration(ec)
            elif uuid in self.by_uuid:
                continue
            elif uuid in self.restore_engines and not self._id_in_use(self.restore_engines[uuid]):
                # an engine of the previous run, still beating: take it back under its old id
                eid = self.restore_engines.pop(uuid)
                self._next_id = max(self._next_id, eid + 1)
                self.log.info("restored engine %d (%s) from its heartbeat", eid, uuid)
                self.finish_registration(EngineConnector(eid, uuid, heart, parent=self))
            elif self._departed_id(uuid) is not None:
                # dropped for silence, but it was only paused or cut off: same engine, same id
                eid, _, host, pid = self.departed.pop(uuid)
                self.log.info("engine %d (%s) answers heartbeats again; it keeps id %d", eid, uuid, eid)
                self.finish_registration(EngineConnector(eid, uuid, heart, host=host, pid=pid, parent=self))
            elif uuid in self.departed:
                self.departed.pop(uuid)
                self.log.warning("engine %s answers heartbeats again after its %gs grace window; "
                                 "restart it to use it", uuid[:64], self.reconnect_grace)
            else:
                self.log.debug("heartbeat from unknown engine %s", uuid[:64])

    def handle_heart_failure(self, hearts: list) -> None:
        for heart in hearts:
            uuid = heart.decode("utf8", "replace")
            if uuid in self.by_uuid:
                eid = self.by_uuid[uuid]
                self.log.warning("engine %d (%s) stopped answering heartbeats", eid, uuid)
                self.unregister_engine(eid, reason="heart failure")
            elif uuid in self.incoming:
                self._drop_incoming(uuid)

    def _drop_incoming(self, uuid: str) -> None:
        ec = self.incoming.pop(uuid, None)
        if ec is not None and ec.stallback is not None:
            ec.stallback.cancel()

    def finish_registration(self, ec: EngineConnector) -> None:
        self.incoming.pop(ec.uuid, None)
        if ec.stallback is not None:
            ec.stallback.cancel()
            ec.stallback = None
        self.engines[ec.id] = ec
        self.by_uuid[ec.uuid] = ec.id
        if self.scheduler is not None:
            self.scheduler.add_engine(ec.uuid)
        self._mute_status(ec.id)
        self._save_engine_state()
        self._notify("registration_notification", ec.info())
        self.log.info("engine %d (%s) is ready", ec.id, ec.uuid)

    def _mute_status(self, eid: int) -> None:
        """Have the IOPub relay stop copying this engine's ``status`` messages to the Hub.

        Engines publish busy/idle around every request on ``engine.<id>.status``
        (PROTOCOL.md §12) and the Hub records none of them; dropping them in the relay
        thread saves the Hub's loop two wakeups and receives per task. Anything arriving
        before it takes effect (or after ``unmute``) is dropped by ``save_iopub_message``.
        """
        self._set_status_filter(zmq.SUBSCRIBE, eid)

    def _unmute_status(self, eid: int) -> None:
        """Undo ``_mute_status`` when the engine leaves (subscriptions are counted)."""
        self._set_status_filter(zmq.UNSUBSCRIBE, eid)

    def _set_status_filter(self, option: int, eid: int) -> None:
        mon = self.iopub_monitor
        if mon is None:
            return
        try:
            mon.setsockopt(option, b"engine.%d.status" % eid)
        except zmq.ZMQError as e:
            self.log.debug("iopub monitor: cannot change the status filter of engine %d: %s", eid, e)

    def unregister_engine(self, eid: int, reason: str = "unregistration") -> None:
        ec = self.engines.pop(eid, None)
        if ec is None:
            for uuid, inc in list(self.incoming.items()):
                if inc.id == eid:
                    self._drop_incoming(uuid)
                    return
            self.log.info("unregistration of unknown engine %r ignored", eid)
            return
        del self.by_uuid[ec.uuid]
        self._unmute_status(ec.id)
        self.heartmonitor.forget(ec.uuid.encode())
        if reason == "heart failure" and self.reconnect_grace > 0:
            self.departed[ec.uuid] = (ec.id, self.loop.time() + self.reconnect_grace, ec.host, ec.pid)
            now = self.loop.time()
            while self.departed:  # forget the oldest expired entries (bounded memory)
                first = next(iter(self.departed.values()))
                if first[1] > now and len(self.departed) <= 10000:
                    break
                self.departed.popitem(last=False)
        if self.scheduler is not None:
            self.scheduler.remove_engine(ec.uuid)
        if self.broadcast is not None:
            self.broadcast.remove_engine(ec.uuid, ec.id)
        self._save_engine_state()
        self._notify("unregistration_notification", ec.info())
        self.log.info("engine %d (%s) unregistered: %s", eid, ec.uuid, reason)
        delay = self.scheduler.stranded_delay if self.scheduler is not None else 5.0
        self.loop.call_later(delay, self._handle_stranded_mux, ec)

    def _handle_stranded_mux(self, ec: EngineConnector) -> None:
        now = utcnow()
        for msg_id in list(ec.queue):
            if msg_id not in self.pending:
                continue
            self.pending.discard(msg_id)
            self.all_completed.add(msg_id)
            content = error_content("EngineError", f"Engine {ec.id} died while running task {msg_id!r}",
                                    engine_info={"engine_uuid": ec.uuid, "engine_id": ec.id})
            self._db_call("update_record", msg_id, {
                "result_content": content,
                "result_header": {"msg_id": "", "msg_type": "apply_reply", "engine": ec.uuid, "date": now},
                "result_metadata": {"status": "error", "engine": ec.uuid},
                "result_buffers": [],
                "completed": now,
                "engine_uuid": ec.uuid,
            })
        ec.queue.clear()

    def unregistration_request(self, idents, msg: Msg) -> None:
        eid = msg.content.get("id")
        if not isinstance(eid, int):
            uuid = msg.content.get("uuid") or frame_bytes(idents[0]).decode("utf8", "replace")
            eid = self.by_uuid.get(uuid, eid)
        self.unregister_engine(eid, reason="engine asked")
        self._reply(idents, "unregistration_reply", {"status": "ok"}, parent=msg.header)

    def _save_engine_state(self) -> None:
        if not self.engine_state_file:
            return
        state = {"engines": {str(ec.id): ec.uuid for ec in self.engines.values()}, "next_id": self._next_id}
        # a few hundred bytes, no fsync: written before anyone hears of the change, so a
        # controller killed right after an (un)registration restores exactly what it announced
        _write_json(self.engine_state_file, state)

    # ================================================================ MUX traffic
    def dispatch_monitor_traffic(self, raw: list) -> None:
        """Copies from the MUX relay: ``[b"in", E, C, ...]`` or ``[b"out", C, E, ...]``."""
        topic = raw[0]
        try:
            idents, parts = self.session.split(raw[1:])
            msg = self.session.parse(parts, idents=idents)
        except MessageError as e:
            self.count_error("mux-" + e.reason)
            return
        if len(idents) < 2:
            return
        if topic == b"in":
            self.save_queue_request(frame_bytes(idents[0]).decode("utf8", "replace"), msg)
        elif topic == b"out":
            self.save_queue_result(frame_bytes(idents[1]).decode("utf8", "replace"), msg)

    def save_queue_request(self, uuid: str, msg: Msg) -> None:
        eid = self.by_uuid.get(uuid)
        if eid is None:
            self.log.warning("MUX request %s to unknown engine %s not recorded", msg.msg_id, uuid[:64])
            return
        if msg.msg_type not in ("apply_request", "execute_request"):
            return
        rec = init_record(msg)
        rec["engine_uuid"] = uuid
        rec["queue"] = "mux"
        self._store_request(msg.msg_id, rec)
        self.pending.add(msg.msg_id)
        self.engines[eid].queue[msg.msg_id] = None

    def save_queue_result(self, uuid: str, msg: Msg) -> None:
        eid = self.by_uuid.get(uuid)
        msg_id = msg.parent.get("msg_id")
        if eid is None or not msg_id:
            return
        ec = self.engines[eid]
        if msg_id in self.pending:
            self.pending.discard(msg_id)
            ec.queue.pop(msg_id, None)
            self.all_completed.add(msg_id)
            ec.completed.append(msg_id)
        elif msg_id in self.lost_tasks:
            self.late_result(msg_id, uuid, msg)
            return
        elif msg_id not in self.all_completed:
            return
        self._store_result(msg_id, uuid, msg)

    # ================================================================ task traffic
    def save_task_request(self, msg, client, header, md, frames) -> None:
        msg_id = header["msg_id"]
        self.tasks_seen += 1
        if msg is None:  # submitted by the Hub itself (resubmit); its record exists
            self.pending.add(msg_id)
            self.unassigned.add(msg_id)
            return
        msg.content = _safe_unpack(frames[4])
        rec = init_record(msg)
        rec["queue"] = "task"
        self._store_request(msg_id, rec)
        self.pending.add(msg_id)
        self.unassigned.add(msg_id)

    def save_task_destination(self, msg_id: str, uuid: str) -> None:
        self.unassigned.discard(msg_id)
        self._leave_engine(msg_id)  # a retried task moves on: not outstanding where it failed
        eid = self.by_uuid.get(uuid)
        if eid is not None:
            self.engines[eid].tasks[msg_id] = None
            self.task_engine[msg_id] = eid
        self._db_call("update_record", msg_id, {"engine_uuid": uuid})

    def _leave_engine(self, msg_id: str) -> None:
        eid = self.task_engine.pop(msg_id, None)
        ec = self.engines.get(eid) if eid is not None else None
        if ec is not None:
            ec.tasks.pop(msg_id, None)

    def save_task_result(self, msg_id: str, uuid: Optional[str], msg, content, md) -> None:
        self.unassigned.discard(msg_id)
        self.pending.discard(msg_id)
        self.all_completed.add(msg_id)
        self._leave_engine(msg_id)
        eid = self.by_uuid.get(uuid) if uuid else None
        if eid is not None and md.get("status") != "aborted":
            self.engines[eid].completed.append(msg_id)
        if msg is not None:
            self._store_result(msg_id, uuid, msg)
            return
        now = utcnow()
        self._db_call("update_record", msg_id, {
            "result_content": content,
            "result_header": {"msg_id": "", "msg_type": "apply_reply", "date": now, "engine": uuid or ""},
            "result_metadata": md,
            "result_buffers": [],
            "completed": now,
            "received": now,
            "engine_uuid": uuid or "",
        })

    # ================================================================ broadcast traffic
    def save_broadcast_request(self, original: str, msg: Msg, subs: list) -> None:
        msg.content = _safe_unpack(msg.frames[4])
        rec = init_record(msg)
        rec["msg_id"] = original
        rec["queue"] = "broadcast"
        self._store_request(original, rec)
        self.pending.add(original)
        for sub_id, uuid in subs:
            sub = dict(rec, msg_id=sub_id, header=dict(rec["header"], msg_id=sub_id), engine_uuid=uuid)
            self._store_request(sub_id, sub)
            self.pending.add(sub_id)

    def save_broadcast_result(self, msg_id: str, uuid: Optional[str], msg, content) -> None:
        if msg_id not in self.pending:
            return
        self.pending.discard(msg_id)
        self.all_completed.add(msg_id)
        eid = self.by_uuid.get(uuid) if uuid else None
        if eid is not None:
            self.engines[eid].completed.append(msg_id)
        if msg is not None:
            self._store_result(msg_id, uuid, msg)
        else:
            now = utcnow()
            self._db_call("update_record", msg_id, {
                "result_content": content, "result_metadata": {"status": "error", "engine": uuid},
                "result_header": {"msg_id": "", "msg_type": "apply_reply", "date": now},
                "result_buffers": [], "completed": now, "received": now,
            })

    # ================================================================ records
    def _store_request(self, msg_id: str, rec: dict) -> None:
        if msg_id in self.skeletons:
            self.skeletons.discard(msg_id)
            for key in ("stdout", "stderr", "execute_input", "execute_result", "error"):
                rec.pop(key, None)
            self._db_call("update_record", msg_id, rec)
        else:
            self._db_call("add_record", msg_id, rec)

    def _store_result(self, msg_id: str, uuid: Optional[str], msg: Msg) -> None:
        header = dict(msg.header)
        completed = parse_date(header.get("date"))
        header["date"] = completed
        update = {
            "result_header": header,
            "result_metadata": msg.metadata,
            "result_content": msg.content,
            "result_buffers": buffers_of(msg.buffers),
            "started": parse_date(msg.metadata.get("started")),
            "completed": completed,
            "received": utcnow(),
        }
        if uuid is not None:
            update["engine_uuid"] = uuid
        self._db_call("update_record", msg_id, update)

    def save_iopub_message(self, raw: list) -> None:
        """Record engine output against the request it belongs to."""
        if raw and raw[0].endswith(b".status"):
            return
        try:
            idents, parts = self.session.split(raw)
            msg = self.session.parse(parts, idents=idents)
        except MessageError as e:
            self.count_error("iopub-" + e.reason)
            return
        msg_type = msg.msg_type
        if msg_type == "shutdown_reply":
            eid = self.by_uuid.get(msg.header.get("session", ""))
            if eid is not None:
                self.unregister_engine(eid, reason="engine shut down")
            return
        msg_id = msg.parent.get("msg_id")
        if not msg_id or msg_type in ("status", "iopub_welcome"):
            return
        c = msg.content
        update = None
        if msg_type == "stream":
            name = c.get("name")
            if name in ("stdout", "stderr"):
                io = self._io(msg_id)
                io[name] += str(c.get("text", ""))
                update = {name: io[name]}
        elif msg_type == "execute_input":
            update = {"execute_input": c.get("code")}
        elif msg_type == "execute_result":
            update = {"execute_result": c}
        elif msg_type == "error":
            update = {"error": c}
        elif msg_type == "display_data":
            io = self._io(msg_id)
            io["display_data"].append(c)
            update = {"display_data": list(io["display_data"])}
        if update is None:
            return
        if msg_id not in self.pending and msg_id not in self.all_completed and msg_id not in self.skeletons:
            rec = empty_record()
            rec["msg_id"] = msg_id
            rec.update(update)
            self.skeletons.add(msg_id)
            self._db_call("add_record", msg_id, rec)
        else:
            self._db_call("update_record", msg_id, update)

    def _io(self, msg_id: str) -> dict:
        io = self.io.get(msg_id)
        if io is None:
            io = self.io[msg_id] = {"stdout": "", "stderr": "", "display_data": []}
            if len(self.io) > self.io_cache_size:
                self.io.popitem(last=False)
        else:
            self.io.move_to_end(msg_id)
        return io

    # ================================================================ shutdown
    def shutdown_request(self, idents, msg: Msg) -> None:
        self._reply(idents, "shutdown_reply", {"status": "ok"}, parent=msg.header)
        self._notify("shutdown_notification", {"status": "ok"}, parent=msg.header)
        self.log.info("shutdown requested by a client")
        if self.on_shutdown is not None:
            self.loop.call_later(self.shutdown_delay, self.on_shutdown)

    def mark_lost_tasks(self) -> int:
        """After a restart: tasks the store still shows unfinished can never finish; say so.

        They get a ``TaskLost`` error result (so clients waiting on them stop waiting) and
        stay resubmittable.  Returns how many were marked.
        """
        try:
            lost = self.db.find_records({"completed": None, "submitted": {"$ne": None}}, ["msg_id", "client_uuid"])
        except Exception as e:  # NoDB, or a store that cannot answer
            self.log.debug("no unfinished tasks to check: %s", e)
            return 0
        now = utcnow()
        for rec in lost:
            msg_id = rec["msg_id"]
            self.lost_tasks[msg_id] = rec.get("client_uuid") or ""
            self._db_call("update_record", msg_id, {
                "result_content": error_content(
                    "TaskLost", "the controller stopped while this task was in flight; resubmit it to run it again"),
                "result_header": {"msg_id": "", "msg_type": "apply_reply", "date": now},
                "result_metadata": {"status": "error"},
                "result_buffers": [],
                "completed": now,
                "received": now,
            })
        if lost:
            self.log.warning("%d task(s) in flight when the controller stopped are marked lost", len(lost))
        return len(lost)

    # ================================================================ retention
    def start_retention(self) -> None:
        """Purge finished records beyond the retention limits now and every ``retention_interval``."""
        if self.retention_max_age > 0 or self.retention_max_records > 0 or self.retention_max_bytes > 0:
            self.retention_task = self.loop.create_task(self._retention_loop())

    def stop_retention(self) -> None:
        if self.retention_task is not None:
            self.retention_task.cancel()
            self.retention_task = None

    async def _retention_loop(self) -> None:
        while True:
            try:
                await self.apply_retention()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a full or failing store: try again next round
                self.log.warning("retention: purging old task records failed: %s", e)
            await asyncio.sleep(max(0.05, self.retention_interval))

    async def apply_retention(self) -> int:
        cutoff = None
        if self.retention_max_age > 0:
            cutoff = utcnow() - timedelta(seconds=self.retention_max_age)
        dropped = await self.db.aretain(cutoff, self.retention_max_records, self.retention_max_bytes)
        if dropped:
            self.forget_tasks(dropped)
            self.retained += len(dropped)
            self.log.info("retention: purged %d finished task record(s)", len(dropped))
        return len(dropped)

    def forget_tasks(self, msg_ids) -> None:
        """Purged records: drop what the Hub and scheduler still remember of them."""
        msg_ids = set(msg_ids) - self.pending
        self.all_completed.difference_update(msg_ids)
        if self.scheduler is not None:
            self.scheduler.forget(msg_ids)

    def late_result(self, msg_id: str, uuid: Optional[str], msg: Msg) -> Optional[str]:
        """A reply, after a restart, for a task marked lost: its real result replaces TaskLost.

        Returns the uuid of the client that submitted it ("" if unknown), None if the task
        was not one of the lost ones.
        """
        client = self.lost_tasks.pop(msg_id, None)
        if client is None:
            return None
        self.all_completed.add(msg_id)
        self._store_result(msg_id, uuid, msg)
        self.log.info("task %s finished after the restart; its result replaces the TaskLost error", msg_id)
        return client

    def health_request(self, idents, msg: Msg) -> None:
        self._reply(idents, "health_reply", dict(self.health(), status="ok"), parent=msg.header)

    def health(self) -> dict:
        """The hub's own view of whether it is working properly.

        ``state`` is ``"ok"`` or ``"degraded"``; a degraded hub keeps scheduling, and
        ``reasons`` says in a sentence each what is wrong (e.g. the task database cannot
        write because the disk is full; records wait in memory and are written when it can).
        """
        try:
            db_health = self.db.health()
        except Exception as e:  # a store without health() or a failing one
            db_health = {"ok": False, "error": str(e)[:200]}
        reasons = []
        if not db_health.get("ok", True):
            reasons.append(f"task database: {db_health.get('error') or 'not working'}")
        stalled = self.scheduler.stall.reason() if self.scheduler is not None else None
        if stalled:
            reasons.append(f"load-balanced scheduling is stuck: {stalled}")
        degraded = bool(reasons)  # (the store logs its own failures and recovery)
        if degraded and self._degraded_since is None:
            self._degraded_since = utcnow()
        elif not degraded:
            self._degraded_since = None
        return {
            "ok": not degraded,
            "state": "degraded" if degraded else "ok",
            "reasons": reasons,
            "degraded_since": self._degraded_since.isoformat() if self._degraded_since else None,
            "db": db_health,
            "errors": dict(self.errors),
            "engines": len(self.engines),
            "pending": len(self.pending),
            "unassigned": len(self.unassigned),
            "retention": {"purged": self.retained, "max_age": self.retention_max_age,
                          "max_records": self.retention_max_records, "max_bytes": self.retention_max_bytes},
        }


def _safe_unpack(frame):
    try:
        v = unpack(frame_bytes(frame))
        return v if isinstance(v, dict) else {}
    except ValueError:
        return {}


def _write_json(path: str, obj) -> None:
    try:
        write_atomic(path, json.dumps(obj).encode(), fsync=False)
    except OSError:
        pass


Hub.query_handlers = {
    "connection_request": Hub.connection_request,
    "registration_request": Hub.register_engine,
    "unregistration_request": Hub.unregistration_request,
    "queue_request": Hub.queue_status,
    "result_request": Hub.get_results,
    "history_request": Hub.get_history,
    "db_request": Hub.db_query,
    "purge_request": Hub.purge_results,
    "resubmit_request": Hub.resubmit_task,
    "shutdown_request": Hub.shutdown_request,
    "load_request": Hub.load_status,
    "health_request": Hub.health_request,
    "engines_request": Hub.engines_status,
    "become_dask_request": Hub.not_supported,
    "stop_distributed_request": Hub.not_supported,
}
