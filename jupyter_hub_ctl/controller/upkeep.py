"""The Hub's upkeep: retention of finished task records, and its own health report."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from ..wire.session import Msg, utcnow


class HubUpkeep:
    """Mixin of ``Hub`` (whose traits ``retention_*`` configure it)."""

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

    # ================================================================ health
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

