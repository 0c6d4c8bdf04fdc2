"""The Hub's upkeep: tasks lost in a restart, retention of old records, and its health."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Optional

from ..wire.session import Msg, utcnow
from .errors import error_content


class HubUpkeep:
    """Mixed into `Hub`."""

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
                "changed": self.stamp(),
            })
        if lost:
            self.log.warning("%d task(s) in flight when the controller stopped are marked lost", len(lost))
        return len(lost)

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
