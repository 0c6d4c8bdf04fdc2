"""The Hub: engine registry, bookkeeping of all traffic, and the query service.

Everything here runs on one asyncio loop.  Relays and the heartbeat run in
their own threads and report through inproc sockets (traffic copies) or
``call_soon_threadsafe`` (heart events); the task and broadcast schedulers
call the Hub directly.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict
from typing import Optional

from traitlets import Any, Dict, Float, Integer, Unicode, observe
from traitlets.config import LoggingConfigurable

from ..wire.dates import parse_date
from ..wire.session import MessageError, Msg, WireSession, frame_bytes, unpack, utcnow
from .errors import error_content, wrap_exception
from . import dask, limits
from .intake import refusal, reply_type
from .metrics import EngineMetrics, HubMetrics
from .queries import HubQueries
from .registry import EngineConnector, HubRegistry
from .upkeep import HubUpkeep
from .records import buffers_of, empty_record, init_record

__all__ = ["Hub", "EngineConnector", "init_record", "empty_record"]


class Hub(HubRegistry, HubQueries, HubMetrics, HubUpkeep, LoggingConfigurable):
    """Registers engines, records tasks, answers clients' queries."""

    registration_timeout = Float(
        0.0,
        config=True,
        help="Seconds an accepted registration may wait for the engine's first heartbeat "
        "before it is dropped (0: EngineConnector.registration_timeout if configured, else "
        "max(30, 10 heartbeat periods)).",
    )
    engine_capacity = Integer(
        0,
        config=True,
        help="Most engines registered at once; registrations beyond it are refused with the reason "
        "(0: as many as the controller's file-descriptor limit leaves room for, about 8 per engine).",
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
    metrics_interval = Float(
        1.0,
        config=True,
        help="Seconds between the reports our engines send of their CPU, memory, threads and "
        "running task (told to each engine when it registers; an engine's own "
        "EngineApp.metrics_interval overrides it). 0: engines report nothing.",
    )
    metrics_history = Integer(
        300,
        config=True,
        help="How many of each engine's latest metrics reports the Hub keeps (at least 1).",
    )
    db = Any(help="The task-record store.")

    def __init__(self, loop, session: WireSession, heartmonitor, notifier, query_reader,
                 engine_info: dict, db, drops, on_shutdown=None, **kwargs):
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
        self.dask = None  # dask.DaskSupport, from the first become_dask_request
        self.iopub_monitor = None  # inverted SUB of the IOPub copy: subscribed topics are dropped
        self.engines: dict = {}  # id -> EngineConnector
        self.by_uuid: dict = {}  # uuid str -> id
        self.incoming: dict = {}  # uuid str -> EngineConnector awaiting first heartbeat
        # uuid -> (id, loop time until which the id is kept) of engines dropped for silence
        self.departed: "OrderedDict[str, tuple]" = OrderedDict()
        self._incoming_ids: set = set()  # ids of self.incoming, for O(1) id checks
        self._departed_ids: dict = {}  # id -> uuid of the newest departed entry holding it
        self._announcements: list = []  # (un)registration notifications waiting for the state file
        self._announce_handle = None
        self._last_state_write = float("-inf")
        self._refused = 0  # registrations refused for want of file descriptors
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
        self.drops = drops  # DropLog: messages dropped or refused, by socket and reason
        self.encrypted = False  # CurveZMQ on every socket
        self.tasks_seen = 0
        self._degraded_since = None
        self.metrics = EngineMetrics(self.metrics_history)
        self._last_stamp = 0.0
        # uuid -> id of every engine registered (also gone ones): the task stream names engines by id
        self.engine_ids: "OrderedDict[str, int]" = OrderedDict()
        if not self.registration_timeout:
            legacy = self.config.get("EngineConnector", {}).get("registration_timeout")
            self.registration_timeout = float(str(legacy)) if legacy else max(30.0, 10 * heartmonitor.period / 1000.0)
        if not self.engine_capacity:
            self.engine_capacity = limits.engine_capacity()

    @observe("db")
    def _db_changed(self, change):
        self._store = change["new"]  # a plain attribute for the per-task writes

    # ================================================================ utilities
    def count_error(self, reason: str, socket: Optional[str] = None) -> None:
        """Count a problem; with ``socket``, a message dropped or refused there (logged in summary)."""
        self.errors[reason] += 1
        if socket is not None:
            self.drops.drop(socket, reason)

    def stamp(self) -> float:
        """Now by the Hub's clock in epoch seconds, later than every stamp before: what
        records' ``changed`` field holds, so "changed since T" misses and repeats nothing."""
        t = time.time()
        if t <= self._last_stamp:
            t = self._last_stamp + 1e-6
        self._last_stamp = t
        return t

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
            self.count_error(e.reason, "registration")
            return
        if not idents:
            self.count_error("no-ident", "registration")
            return
        try:
            msg = self.session.parse(parts, idents=idents)
        except MessageError as e:
            self.count_error(e.reason, "registration")
            err = refusal(e)
            if err is not None:
                self._reply(idents, reply_type(e.header), err, parent=e.header)
            elif e.reason == "bad-header":  # signed, but no header to answer to
                self._reply(idents, "hub_error", error_content("MessageError", f"malformed message: {e.reason}"))
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
        self._reply(idents, reply_type(msg.header), wrap_exception(exc), parent=msg.header)

    # ================================================================ MUX traffic
    def save_queue_request(self, uuid: str, msg: Msg) -> None:
        """A request the MUX relay passed to registered engine ``uuid`` (content still packed)."""
        if msg.msg_type not in ("apply_request", "execute_request"):
            return
        eid = self.by_uuid[uuid]
        msg.content = _safe_unpack(msg.frames[4])
        rec = init_record(msg)
        rec["engine_uuid"] = uuid
        rec["queue"] = "mux"
        self._store_request(msg.msg_id, rec)
        self.pending.add(msg.msg_id)
        self.engines[eid].queue[msg.msg_id] = msg.msg_type[: -len("_request")]  # the method, for errors

    def save_queue_result(self, uuid: str, msg: Msg) -> None:
        eid = self.by_uuid.get(uuid)
        msg_id = msg.parent.get("msg_id")
        if eid is None or not msg_id:
            return
        ec = self.engines[eid]
        if msg.content is None:  # relayed with its content still packed
            msg.content = _safe_unpack(msg.frames[4])
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
        # (a retried task is no longer running where it failed)
        self._db_call("update_record", msg_id, {"engine_uuid": uuid, "started": None, "changed": self.stamp()})

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
            "changed": self.stamp(),
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
                "result_buffers": [], "completed": now, "received": now, "changed": self.stamp(),
            })

    # ================================================================ records
    def _store_request(self, msg_id: str, rec: dict) -> None:
        rec["changed"] = self.stamp()
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
            "changed": self.stamp(),
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


def _safe_unpack(frame):
    try:
        v = unpack(frame_bytes(frame))
        return v if isinstance(v, dict) else {}
    except ValueError:
        return {}


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
    "engine_metrics_report": Hub.engine_metrics_report,
    "engine_metrics_request": Hub.engine_metrics_request,
    "task_stream_request": Hub.task_stream,
    "become_dask_request": dask.become_dask_request,
    "stop_distributed_request": dask.stop_distributed_request,
}
