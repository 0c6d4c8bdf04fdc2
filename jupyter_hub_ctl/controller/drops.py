"""Counting of dropped and refused messages, and logging them without flooding the log."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict


class DropLog:
    """Every message the controller drops or refuses, by socket and reason.

    The first drop after a quiet interval is logged at once; later ones are summed and
    logged as one line per ``interval`` seconds (at the next drop or ``tick()`` after it),
    so a flood of bad messages costs a line every ``interval``, not a line each.
    Thread-safe: the heartbeat thread counts its pongs here too.
    """

    def __init__(self, log: logging.Logger, interval: float = 10.0, clock=time.monotonic):
        self.log = log
        self.interval = interval
        self.clock = clock
        self.by_socket: defaultdict = defaultdict(Counter)
        self._unlogged: Counter = Counter()
        self._last = -float("inf")
        self._lock = threading.Lock()

    def drop(self, socket: str, reason: str, n: int = 1) -> None:
        with self._lock:
            self.by_socket[socket][reason] += n
            self._unlogged[(socket, reason)] += n
            if self.clock() >= self._last + self.interval:
                self._flush()

    def tick(self) -> None:
        """Log what was counted since the last line, if an interval has passed."""
        if self._unlogged and self.clock() >= self._last + self.interval:
            with self._lock:
                self._flush()

    def _flush(self) -> None:
        if not self._unlogged:
            return
        self._last = self.clock()
        items = sorted(self._unlogged.items(), key=lambda kv: -kv[1])
        total = sum(n for _, n in items)
        shown = ", ".join(f"{n} on {sock} ({reason})" for (sock, reason), n in items[:8])
        more = f" and {len(items) - 8} other kinds" if len(items) > 8 else ""
        self.log.warning("dropped %d bad message(s): %s%s", total, shown, more)
        self._unlogged.clear()

    def snapshot(self) -> dict:
        with self._lock:
            return {sock: dict(c) for sock, c in self.by_socket.items()}
