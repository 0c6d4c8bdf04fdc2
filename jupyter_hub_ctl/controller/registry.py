"""Engines coming and going: registration, heartbeats, unregistration (PROTOCOL.md §5)."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Optional

import zmq
from traitlets import Float
from traitlets.config import LoggingConfigurable

from ..wire.connection import write_atomic
from ..wire.session import Msg, frame_bytes, utcnow
from .errors import error_content


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

        def reply(eid: int) -> None:
            self._reply(idents, "registration_reply", {"status": "ok", "id": eid, "hb_period": self.heartmonitor.period,
                                                       "connection_info": self.engine_info,
                                                       "metrics_interval": self.metrics_interval}, parent=msg.header)

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
        self.engine_ids[ec.uuid] = ec.id
        self.engine_ids.move_to_end(ec.uuid)
        if len(self.engine_ids) > 100000:  # bounded under endless churn: the longest gone go first
            self.engine_ids.popitem(last=False)
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
        self.metrics.drop(ec.id)
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
                "changed": self.stamp(),
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


def _write_json(path: str, obj) -> None:
    try:
        write_atomic(path, json.dumps(obj).encode(), fsync=False)
    except OSError:
        pass
