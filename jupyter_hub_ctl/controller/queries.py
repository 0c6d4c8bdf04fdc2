"""The Hub's answers to clients' queries (PROTOCOL.md §7)."""

from __future__ import annotations

import math

from ..wire.dates import parse_date
from ..wire.session import utcnow
from .records import DATE_KEYS, RECORD_KEYS, task_name

#: most tasks one task_stream_request may ask for
MAX_STREAM_LIMIT = 100000

def _convert_dates(query):
    """ISO date strings under date keys become datetimes (recursively in operator dicts)."""
    if not isinstance(query, dict):
        raise TypeError("query must be a dict")
    out = {}
    for key, value in query.items():
        if key in DATE_KEYS:
            value = _date_arg(value)
        out[key] = value
    return out


def _date_arg(value):
    if isinstance(value, str):
        return parse_date(value) or value
    if isinstance(value, dict):
        return {op: _date_arg(v) for op, v in value.items()}
    if isinstance(value, list):
        return [_date_arg(v) for v in value]
    return value


class HubQueries:
    """Mixed into `Hub`: one method per query message type."""

    def connection_request(self, idents, msg) -> None:
        engines = {str(ec.id): ec.uuid for ec in self.engines.values()}
        self._reply(idents, "connection_reply", {"status": "ok", "engines": engines}, parent=msg.header)

    def _targets(self, targets) -> list:
        if targets is None:
            return sorted(self.engines)
        if isinstance(targets, (int, str)):
            targets = [targets]
        if not isinstance(targets, list):
            raise TypeError(f"targets must be an int, uuid or list, not {type(targets).__name__}")
        out = []
        for t in targets:
            if isinstance(t, str) and t in self.by_uuid:
                t = self.by_uuid[t]
            if isinstance(t, bool) or not isinstance(t, int) or t not in self.engines:
                raise IndexError(f"No Such Engine: {t!r}")
            out.append(t)
        if not out:
            raise IndexError("No Engines Registered")
        return out

    def queue_status(self, idents, msg) -> None:
        content = msg.content
        verbose = bool(content.get("verbose", False))
        targets = self._targets(content.get("targets"))
        reply = {"status": "ok"}
        for eid in targets:
            ec = self.engines[eid]
            if verbose:
                reply[str(eid)] = {"queue": list(ec.queue), "completed": list(ec.completed), "tasks": list(ec.tasks)}
            else:
                reply[str(eid)] = {"queue": len(ec.queue), "completed": len(ec.completed), "tasks": len(ec.tasks)}
        reply["unassigned"] = sorted(self.unassigned) if verbose else len(self.unassigned)
        self._reply(idents, "queue_reply", reply, parent=msg.header)

    def engines_status(self, idents, msg) -> None:
        """Registered engines with what is known of each (an extension of the protocol)."""
        import time

        now_wall, now_mono = time.time(), time.monotonic()
        seen = self.heartmonitor.last_seen
        engines = []
        for eid in sorted(self.engines):
            ec = self.engines[eid]
            beat = seen.get(ec.uuid.encode())
            engines.append({
                "id": eid, "uuid": ec.uuid, "host": ec.host, "pid": ec.pid, "state": "running",
                "registered": ec.registered, "queue": len(ec.queue), "tasks": len(ec.tasks),
                "completed": len(ec.completed),
                "last_heartbeat": None if beat is None else now_wall - (now_mono - beat),
                "metrics": self.metrics.latest(eid),
                "host_metrics": self.metrics.host_of(eid),
            })
        self._reply(idents, "engines_reply", {"status": "ok", "engines": engines,
                                              "unassigned": len(self.unassigned)}, parent=msg.header)

    def load_status(self, idents, msg) -> None:
        targets = self._targets(msg.content.get("targets"))
        reply = {"status": "ok"}
        for eid in targets:
            ec = self.engines[eid]
            reply[str(eid)] = len(ec.queue) + len(ec.tasks)
        self._reply(idents, "load_reply", reply, parent=msg.header)

    async def get_results(self, idents, msg) -> None:
        content = msg.content
        msg_ids = content.get("msg_ids")
        if not isinstance(msg_ids, list) or not all(isinstance(m, str) for m in msg_ids):
            raise TypeError("msg_ids must be a list of strings")
        msg_ids = sorted(set(msg_ids))
        status_only = bool(content.get("status_only", False))
        pending, completed, unknown = [], [], []
        for m in msg_ids:
            if m in self.pending:
                pending.append(m)
            elif m in self.all_completed:
                completed.append(m)
            else:
                unknown.append(m)
        records = {}
        if unknown or (completed and not status_only):
            wanted = unknown + ([] if status_only else completed)
            keys = None if not status_only else ["msg_id", "completed"]
            found = await self.db.afind_records({"msg_id": {"$in": wanted}}, keys)
            records = {r["msg_id"]: r for r in found}
            for m in unknown:
                rec = records.get(m)
                if rec is None:
                    raise KeyError(f"No such message: {m}")
                (completed if rec.get("completed") else pending).append(m)
            completed.sort()
            pending.sort()
        if not status_only:
            gone = [m for m in completed if m not in records]
            if gone:  # completed, but its record was purged or culled
                raise KeyError(f"No such message: {gone[0]} (its record is no longer kept)")
        reply = {"status": "ok", "pending": pending, "completed": completed}
        buffers = []
        if not status_only:
            for m in completed:
                rec = records[m]
                reply[m] = {
                    "header": rec.get("header") or {"msg_id": m},
                    "metadata": rec.get("metadata") or {},
                    "result_header": rec.get("result_header") or {},
                    "result_metadata": rec.get("result_metadata") or {},
                    "result_content": rec.get("result_content") or {"status": "error", "ename": "KeyError",
                                                                  "evalue": "result not recorded",
                                                                  "traceback": [], "engine_info": {}},
                    "received": rec.get("received"),
                    "io": {k: rec.get(k) for k in ("execute_input", "execute_result", "error", "stdout", "stderr")},
                }
                buffers.extend(rec.get("result_buffers") or [])
        self._reply(idents, "result_reply", reply, parent=msg.header, buffers=buffers)

    async def task_stream(self, idents, msg) -> None:
        """Tasks submitted, sent to an engine, seen running or finished since ``since`` (the
        ``now`` of an earlier reply; null: ever), by the Hub's change stamps (an extension)."""
        content = msg.content
        since = content.get("since")
        if since is not None and (isinstance(since, bool) or not isinstance(since, (int, float))
                                  or not math.isfinite(since)):
            raise TypeError("since must be a number (epoch seconds) or null")
        limit = content.get("limit", 5000)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_STREAM_LIMIT:
            raise ValueError(f"limit must be an int from 1 to {MAX_STREAM_LIMIT}")
        now = self.stamp()
        rows, truncated = await self.db.atask_stream(since, now, limit)
        if truncated and since is not None and rows:
            # the oldest changes after ``since`` came: the next request continues after the last of them
            now = rows[0]["changed"]
        ids = self.engine_ids
        tasks = [{
            "msg_id": row["msg_id"],
            "engine_id": ids.get(row["engine_uuid"]) if row["engine_uuid"] else None,
            "name": row["name"] or "",
            "label": row["label"],
            "submitted": _epoch(row["submitted"]),
            "started": _epoch(row["started"]),
            "completed": _epoch(row["completed"]),
            "state": _state(row),
        } for row in reversed(rows)]  # oldest change first
        self._reply(idents, "task_stream_reply", {"status": "ok", "now": now, "tasks": tasks, "truncated": truncated},
                    parent=msg.header)

    async def get_history(self, idents, msg) -> None:
        history = await self.db.aget_history()
        self._reply(idents, "history_reply", {"status": "ok", "history": history}, parent=msg.header)

    async def db_query(self, idents, msg) -> None:
        content = msg.content
        query = _convert_dates(content.get("query", {}) or {})
        keys = content.get("keys")
        if keys is not None:
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise TypeError("keys must be a list of record keys or null")
            bad = [k for k in keys if k not in RECORD_KEYS and k != "display_data"]
            if bad:
                raise KeyError(f"unknown record keys: {bad}")
        records = await self.db.aquery_records(query, keys)  # serialized below, never modified
        buffer_lens = [] if keys is not None and "buffers" in keys else None
        result_buffer_lens = [] if keys is not None and "result_buffers" in keys else None
        buffers = []
        for rec in records:
            b = rec.pop("buffers", None) or []
            rb = rec.pop("result_buffers", None) or []
            if buffer_lens is not None:
                buffer_lens.append(len(b))
                buffers.extend(b)
            if result_buffer_lens is not None:
                result_buffer_lens.append(len(rb))
                buffers.extend(rb)
        reply = {"status": "ok", "records": records, "buffer_lens": buffer_lens,
                 "result_buffer_lens": result_buffer_lens}
        self._reply(idents, "db_reply", reply, parent=msg.header, buffers=buffers)

    async def purge_results(self, idents, msg) -> None:
        content = msg.content
        msg_ids = content.get("msg_ids", [])
        engine_ids = content.get("engine_ids", []) or []
        if msg_ids == "all":
            await self.db.adrop_matching_records({"completed": {"$ne": None}})
            self.forget_tasks(list(self.all_completed))
        else:
            if not isinstance(msg_ids, list) or not all(isinstance(m, str) for m in msg_ids):
                raise TypeError("msg_ids must be a list of strings or 'all'")
            busy = [m for m in msg_ids if m in self.pending]
            if busy:
                raise IndexError(f"msg pending: {busy[:10]}")
            if msg_ids:
                await self.db.adrop_matching_records({"msg_id": {"$in": msg_ids}})
                self.forget_tasks(msg_ids)
            if not isinstance(engine_ids, list):
                raise TypeError("engine_ids must be a list of ints")
            for eid in engine_ids:
                ec = self.engines.get(eid) if isinstance(eid, int) else None
                if ec is None:
                    raise IndexError(f"No such engine: {eid!r}")
                await self.db.adrop_matching_records({"engine_uuid": ec.uuid, "completed": {"$ne": None}})
        await self.db.areclaim()  # purged space goes back to the disk
        self._reply(idents, "purge_reply", {"status": "ok"}, parent=msg.header)

    async def resubmit_task(self, idents, msg) -> None:
        msg_ids = msg.content.get("msg_ids")
        if isinstance(msg_ids, str):
            msg_ids = [msg_ids]
        if not isinstance(msg_ids, list) or not all(isinstance(m, str) for m in msg_ids):
            raise TypeError("msg_ids must be a list of strings")
        if self.scheduler is None:
            raise RuntimeError("this controller has no task scheduler to resubmit to")
        records = await self.db.afind_records({"msg_id": {"$in": msg_ids}},
                                              ["header", "metadata", "content", "buffers"])
        found = {r["msg_id"]: r for r in records}
        missing = [m for m in msg_ids if m not in found]
        if missing:
            raise KeyError(f"No such msg(s): {missing}")
        for old_id in msg_ids:  # all checked before any is sent again
            if not found[old_id]["header"]:
                raise KeyError(f"no request recorded for {old_id}")
            if (found[old_id].get("metadata") or {}).get("staged"):
                raise ValueError(f"{old_id} cannot be resubmitted: its data was large and went to its "
                                 "engine in pieces the hub does not record")
        resubmitted = {}
        now = utcnow()
        for old_id in msg_ids:
            rec = found[old_id]
            header = dict(rec["header"])
            new_id = self.session.new_msg_id()
            header["msg_id"] = new_id
            header["date"] = now
            md = dict(rec.get("metadata") or {})
            content = rec.get("content") or {}
            buffers = [bytes(b) for b in rec.get("buffers") or []]
            frames = self.session.serialize(header["msg_type"], content, parent={}, metadata=md,
                                            header=header, buffers=buffers)[1:]
            new_rec = dict(rec)
            new_rec.update(msg_id=new_id, header=header, metadata=md, content=content, buffers=buffers,
                           submitted=now, queue="task", engine_uuid=None, resubmitted=None,
                           label=md.get("label"), name=task_name(header, md), changed=self.stamp())
            for key in ("started", "completed", "received", "result_header", "result_metadata",
                        "result_content", "result_buffers", "execute_input", "execute_result", "error"):
                new_rec[key] = None
            new_rec["stdout"] = new_rec["stderr"] = ""
            new_rec.setdefault("client_uuid", header.get("session"))
            self._db_call("add_record", new_id, new_rec)
            self.scheduler.submit(new_id, None, frames, header, md)
            resubmitted[old_id] = new_id
        self._reply(idents, "resubmit_reply", {"status": "ok", "resubmitted": resubmitted}, parent=msg.header)
        for old_id, new_id in resubmitted.items():
            self._db_call("update_record", old_id, {"resubmitted": new_id})


STATES = ("pending", "queued", "running", "ok", "error", "aborted")


def _state(row: dict) -> str:
    """A task's state in the task stream (one of STATES)."""
    if row["completed"] is not None:
        status = row["status"]
        return status if status in ("ok", "error", "aborted") else "error"
    if row["started"] is not None:
        return "running"
    return "queued" if row["engine_uuid"] else "pending"


def _epoch(value):
    return value.timestamp() if value is not None else None
