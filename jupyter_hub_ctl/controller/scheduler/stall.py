"""Load-balanced tasks that no engine can take, found off the scheduler's hot path.

Scheduling itself records nothing for this: the waiting queue is sampled on a slow timer
(and whenever the hub's health is asked), and each waiting task seen without a usable
engine — none registered, or every registered one excluded by the task's targets, its
``follow`` dependencies or the engines it already failed on — is remembered with the time
it was first seen so.  Tasks that merely wait for a busy engine are not stuck.
"""

from __future__ import annotations

import time
from itertools import islice
from typing import Optional

#: waiting tasks looked at per sample, oldest first (bounds a sample's cost in a long queue)
SCAN_LIMIT = 500


class StallWatch:
    """Remembers since when waiting tasks of ``scheduler`` have had no usable engine."""

    def __init__(self, scheduler, timeout: float, loop=None):
        self.scheduler = scheduler
        self.timeout = timeout
        self.interval = min(max(timeout / 4.0, 0.5), 5.0)
        self.since: dict = {}  # msg_id -> monotonic time it was first seen without a usable engine
        self._loop = loop
        self._timer = None
        if loop is not None and timeout > 0:
            self._timer = loop.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        try:
            self.sample()
        finally:
            self._timer = self._loop.call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def sample(self, now: Optional[float] = None) -> None:
        now = time.monotonic() if now is None else now
        sched = self.scheduler
        if not sched.waiting:
            self.since = {}
            return
        stuck = {}
        for msg_id, job in islice(sched.waiting.items(), SCAN_LIMIT):
            if not sched.usable_engines(job):
                stuck[msg_id] = self.since.get(msg_id, now)
        self.since = stuck

    def reason(self) -> Optional[str]:
        """A sentence for the hub's health when tasks have waited ``timeout`` seconds with no usable engine."""
        if self.timeout <= 0:
            return None
        now = time.monotonic()
        self.sample(now)
        overdue = [t for t in self.since.values() if now - t >= self.timeout]
        if not overdue:
            return None
        sched = self.scheduler
        why = "no engine is registered" if not sched.engines else \
            "every registered engine is excluded by the tasks' targets, dependencies or earlier failures"
        count = f"{len(overdue)}{'+' if len(sched.waiting) > SCAN_LIMIT else ''}"
        tasks = "1 load-balanced task has" if count == "1" else f"{count} load-balanced tasks have"
        return f"{tasks} waited more than {self.timeout:g} s with no engine that can run them: {why}"
