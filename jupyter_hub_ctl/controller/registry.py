"""Engines coming and going: registration, heartbeats, unregistration (PROTOCOL.md §5)."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Optional

import zmq

from ..wire.connection import write_atomic
from ..wire.session import Msg, frame_bytes, utcnow
from . import limits
from .errors import engine_died, error_content

#: Engine ids are ints in [0, MAX_ENGINE_ID): an id a peer asks for outside it is refused.
MAX_ENGINE_ID = 2**31
STATE_WRITE_INTERVAL = 0.1  # seconds between rewrites of the engine state file during a burst


class EngineConnector:
    """What the Hub knows about one engine: id, uuid, pending msg_ids, stall timer.

    A plain object with slots (a hub holds thousands of them): its one setting,
    ``EngineConnector.registration_timeout``, is read by the Hub.
    """

    __slots__ = ("id", "uuid", "ident", "stallback", "registered", "queue", "tasks", "completed", "host", "pid",
                 "engine_set")

    def __init__(self, id: int, uuid: str, ident: bytes, host: str = "", pid: Optional[int] = None,
                 engine_set: str = ""):
        self.id = id
        self.uuid = uuid
        self.ident = ident
        self.stallback = None  # timer handle while registration is unfinished
        self.registered = utcnow()
        self.queue: "OrderedDict[str, str]" = OrderedDict()  # MUX msg_ids outstanding -> apply/execute
        self.tasks: "OrderedDict[str, None]" = OrderedDict()  # task msg_ids outstanding
        self.completed: list = []
        self.host = host
        self.pid = pid
        self.engine_set = engine_set  # the launched set it belongs to (its supervisor reports the set's exit)

    @property
    def pending(self) -> set:
        """msg_ids sent to this engine and not answered yet (direct and load-balanced)."""
        return set(self.queue) | set(self.tasks)

    def info(self) -> dict:
        return {"id": self.id, "uuid": self.uuid}


class HubRegistry:
    """Mixed into `Hub`."""

    def register_engine(self, idents, msg: Msg) -> None:
        content = msg.content
        uuid = content.get("uuid")
        if not isinstance(uuid, str) or not uuid or len(uuid) > 256:
            raise ValueError("registration_request needs a uuid string")
        about = content.get("info") if isinstance(content.get("info"), dict) else {}
        pid = about.get("pid")
        pid = pid if isinstance(pid, int) and not isinstance(pid, bool) else None
        engine_set = about.get("set") if isinstance(about.get("set"), str) else ""

        def reply(eid: int) -> None:
            self._reply(idents, "registration_reply", {"status": "ok", "id": eid, "hb_period": self.heartmonitor.period,
                                                       "connection_info": self.engine_info,
                                                       "metrics_interval": self.metrics_interval}, parent=msg.header)

        if uuid in self.by_uuid:
            ec = self.engines[self.by_uuid[uuid]]
            if ec.pid is not None and ec.pid != pid:
                raise KeyError(f"uuid {uuid!r} in use")
            # an engine taken back from its heartbeat after a restart, registering again: same id
            ec.host, ec.pid, ec.engine_set = str(about.get("host", ""))[:255] or ec.host, pid, engine_set[:255]
            reply(ec.id)
            return
        if uuid in self.incoming:
            raise KeyError(f"uuid {uuid!r} in use")
        requested = content.get("id")
        if requested is not None and (not isinstance(requested, int) or isinstance(requested, bool)
                                      or not 0 <= requested < MAX_ENGINE_ID):
            raise ValueError(f"the requested engine id must be an int in [0, {MAX_ENGINE_ID}), "
                             f"not {str(requested)[:40]}")
        if requested is None and uuid in self.restore_engines:
            requested = self.restore_engines[uuid]
        if requested is None:
            requested = self._departed_id(uuid)
        if len(self.engines) + len(self.incoming) >= self.engine_capacity:
            self._refuse_registration(idents, msg, uuid)
            return
        eid = self._pick_id(requested, uuid)
        self._undepart(uuid)
        ec = EngineConnector(eid, uuid, frame_bytes(idents[0]), host=str(about.get("host", ""))[:255],
                             pid=pid, engine_set=engine_set[:255])
        heart = uuid.encode()
        self.heartmonitor.known.add(heart)  # from now on its pongs count
        reply(eid)
        self.log.info("registration: engine %d uuid %s", eid, uuid)
        if self.heartmonitor.beating(heart):
            self.finish_registration(ec)
        else:
            ec.stallback = self.loop.call_later(self.registration_timeout, self._purge_stalled, uuid)
            self.incoming[uuid] = ec
            self._incoming_ids.add(eid)

    def _refuse_registration(self, idents, msg: Msg, uuid: str) -> None:
        """No room for another engine: say why, so the engine exits instead of hanging."""
        self._refused += 1
        self.count_error("engine-capacity")
        soft, hard = limits.fd_limits()
        reason = (f"this controller is full: {len(self.engines) + len(self.incoming)} engines registered, "
                  f"its limit is {self.engine_capacity} (each engine holds {limits.FDS_PER_ENGINE} connections; "
                  f"open-file limit {soft}, hard limit {hard}); raise `ulimit -n` before starting the "
                  "controller, or set Hub.engine_capacity")
        if self._refused == 1 or self._refused % 1000 == 0:
            self.log.warning("registration of %s refused (%d so far): %s", uuid[:64], self._refused, reason)
        self._reply(idents, "registration_reply", error_content("EngineCapacityError", reason), parent=msg.header)

    def _id_in_use(self, eid: int, uuid: Optional[str] = None) -> bool:
        if eid in self.engines or eid in self._incoming_ids:
            return True
        holder = self._departed_ids.get(eid)
        if holder is None or holder == uuid:
            return False
        entry = self.departed.get(holder)
        return entry is not None and entry[1] > self.loop.time()

    def _depart(self, ec: EngineConnector) -> None:
        """Keep a silent engine's id for ``reconnect_grace`` seconds; forget the oldest expired entries."""
        self._undepart(ec.uuid)
        now = self.loop.time()
        self.departed[ec.uuid] = (ec.id, now + self.reconnect_grace, ec.host, ec.pid)
        self._departed_ids[ec.id] = ec.uuid
        while self.departed:  # bounded memory
            uuid, first = next(iter(self.departed.items()))
            if first[1] > now and len(self.departed) <= 10000:
                break
            self._forget_heart(uuid)
            self._undepart(uuid)

    def _undepart(self, uuid: str) -> Optional[tuple]:
        entry = self.departed.pop(uuid, None)
        if entry is not None and self._departed_ids.get(entry[0]) == uuid:
            del self._departed_ids[entry[0]]
        return entry

    def _departed_id(self, uuid: str) -> Optional[int]:
        """The id an engine dropped for silence may take back (None once its window has passed)."""
        entry = self.departed.get(uuid)
        if entry is None:
            return None
        eid, until = entry[:2]
        if until <= self.loop.time() or self._id_in_use(eid, uuid):
            return None
        return eid

    def _pick_id(self, requested: Optional[int], uuid: Optional[str] = None) -> int:
        if requested is not None and not self._id_in_use(requested, uuid):
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
            self._incoming_ids.discard(ec.id)
            self._forget_heart(uuid)
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
                self.finish_registration(EngineConnector(eid, uuid, heart))
            elif self._departed_id(uuid) is not None:
                # dropped for silence, but it was only paused or cut off: same engine, same id
                eid, _, host, pid = self._undepart(uuid)
                self.log.info("engine %d (%s) answers heartbeats again; it keeps id %d", eid, uuid, eid)
                self.finish_registration(EngineConnector(eid, uuid, heart, host=host, pid=pid))
            elif uuid in self.departed:
                self._undepart(uuid)
                self._forget_heart(uuid)
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
        if ec is not None:
            self._incoming_ids.discard(ec.id)
            self._forget_heart(uuid)
            if ec.stallback is not None:
                ec.stallback.cancel()

    def _forget_heart(self, uuid: str) -> None:
        """Pongs from this uuid stop counting (it is no engine, nor one that may come back)."""
        heart = uuid.encode()
        self.heartmonitor.known.discard(heart)
        self.heartmonitor.forget(heart)

    def restore(self, engines: dict, next_id: int) -> None:
        """After a restart (--restore): take back these engines (uuid -> id) when their hearts answer."""
        engines = {u: i for u, i in engines.items() if isinstance(i, int) and 0 <= i < MAX_ENGINE_ID}
        self.restore_engines = engines
        self.heartmonitor.known.update(u.encode() for u in engines)
        if self.scheduler is not None:  # their tasks wait for them while they may still come back
            self.scheduler.expect(engines, self.registration_timeout)
        self._next_id = min(max(next_id, max(engines.values(), default=-1) + 1), MAX_ENGINE_ID)

    def finish_registration(self, ec: EngineConnector) -> None:
        if self.incoming.pop(ec.uuid, None) is not None:
            self._incoming_ids.discard(ec.id)
        if ec.stallback is not None:
            ec.stallback.cancel()
            ec.stallback = None
        self.engines[ec.id] = ec
        self.by_uuid[ec.uuid] = ec.id
        self.engine_ids[ec.uuid] = ec.id
        self.engine_ids.move_to_end(ec.uuid)
        if len(self.engine_ids) > 100000:  # bounded under endless churn: the longest gone go first
            self.engine_ids.popitem(last=False)
        if self.scheduler is not None:
            self.scheduler.add_engine(ec.uuid)
        self._mute_status(ec.id)
        self._announce("registration_notification", ec.info())
        self.log.info("engine %d (%s) is ready", ec.id, ec.uuid)
        if self.dask is not None:
            self.dask.engine_added(ec)

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

    def unregister_engine(self, eid: int, reason: str = "unregistration", gone: bool = False) -> None:
        """The engine has left; ``gone``: it is known to send nothing more (its process exited or
        it said goodbye), so its unfinished tasks fail (or are retried) after the short
        ``TaskScheduler.gone_delay`` instead of ``stranded_delay``."""
        ec = self.engines.pop(eid, None)
        if ec is None:
            if eid in self._incoming_ids:
                for uuid, inc in list(self.incoming.items()):
                    if inc.id == eid:
                        self._drop_incoming(uuid)
                        return
            self.log.info("unregistration of unknown engine %r ignored", eid)
            return
        del self.by_uuid[ec.uuid]
        self.metrics.drop(ec.id)
        self._unmute_status(ec.id)
        self.heartmonitor.forget(ec.uuid.encode())
        if reason == "heart failure" and self.reconnect_grace > 0:
            self._depart(ec)
        else:
            self._forget_heart(ec.uuid)
        if self.scheduler is not None:
            self.scheduler.remove_engine(ec.uuid, ec.id, gone)
        if self.broadcast is not None:
            self.broadcast.remove_engine(ec.uuid, ec.id)
        self._announce("unregistration_notification", ec.info())
        self.log.info("engine %d (%s) unregistered: %s", eid, ec.uuid, reason)
        delay = self.scheduler.stranded_after(gone) if self.scheduler is not None else 5.0
        self.loop.call_later(delay, self._handle_stranded_mux, ec)

    def _handle_stranded_mux(self, ec: EngineConnector) -> None:
        now = utcnow()
        for msg_id in list(ec.queue):
            if msg_id not in self.pending:
                continue
            self.pending.discard(msg_id)
            self.all_completed.add(msg_id)
            content = engine_died(ec.id, ec.uuid, msg_id, ec.queue[msg_id])
            self._db_call("update_record", msg_id, {
                "result_content": content,
                "result_header": {"msg_id": "", "msg_type": "apply_reply", "engine": ec.uuid, "date": now},
                "result_metadata": {"status": "error", "engine": ec.uuid},
                "result_buffers": [],
                "completed": now,
                "engine_uuid": ec.uuid,
                "changed": self.stamp(),
            })
        ec.queue.clear()

    def unregistration_request(self, idents, msg: Msg) -> None:
        """An engine leaving (``{id}`` or ``{uuid}``: the engine itself, or ipyparallel's nanny
        when the engine's process exited), or a supervisor that saw a launched set's process
        exit (``{engine_set, reason}``: every engine of that set).  Either way the engines send
        nothing more, so their tasks fail or are retried at once."""
        c = msg.content
        engine_set = c.get("engine_set")
        if isinstance(engine_set, str) and engine_set:
            ids = sorted(ec.id for ec in [*self.engines.values(), *self.incoming.values()]
                         if ec.engine_set == engine_set)
            why = str(c.get("reason") or "its process exited")[:200]
            for eid in ids:
                self.unregister_engine(eid, reason=f"reported by its supervisor: {why}", gone=True)
            self._reply(idents, "unregistration_reply", {"status": "ok", "ids": ids}, parent=msg.header)
            return
        eid, uuid = c.get("id"), c.get("uuid")
        if isinstance(uuid, str) and uuid:  # exactly that engine (a late goodbye never hits a successor)
            eid = self.by_uuid[uuid] if uuid in self.by_uuid else getattr(self.incoming.get(uuid), "id", None)
        elif not isinstance(eid, int):
            eid = self.by_uuid.get(frame_bytes(idents[0]).decode("utf8", "replace"), eid)
        self.unregister_engine(eid, reason="engine asked", gone=True)
        self._reply(idents, "unregistration_reply", {"status": "ok"}, parent=msg.header)

    def _announce(self, msg_type: str, content: dict) -> None:
        """Notify clients of an (un)registration once the engine state file says so.

        The file is rewritten whole (O(engines)), so under a registration storm it is written
        at most every STATE_WRITE_INTERVAL seconds, each write followed by the notifications
        it covers, in order: a controller killed at any moment restores at least what it announced.
        """
        self._announcements.append((msg_type, content))
        if self._announce_handle is None:
            delay = max(0.0, self._last_state_write + STATE_WRITE_INTERVAL - self.loop.time())
            self._announce_handle = self.loop.call_later(delay, self._flush_announcements)

    def _flush_announcements(self) -> None:
        self._announce_handle = None
        self._save_engine_state()
        self._last_state_write = self.loop.time()
        pending, self._announcements = self._announcements, []
        for msg_type, content in pending:
            self._notify(msg_type, content)

    def _save_engine_state(self) -> None:
        if not self.engine_state_file:
            return
        state = {"engines": {str(ec.id): ec.uuid for ec in self.engines.values()}, "next_id": self._next_id}
        # a few hundred bytes, no fsync: written before anyone hears of the change, so a
        # controller killed right after an (un)registration restores exactly what it announced
        _write_json(self.engine_state_file, state)


def _write_json(path: str, obj) -> None:
    try:
        write_atomic(path, json.dumps(obj).encode(), fsync=False)
    except OSError:
        pass
