"""Replay protection across restarts.

The replay memory lives in the controller's process; a controller restarted with the
same key (``--reuse``/``--restore``) starts with an empty one.  So that what was accepted
before the restart is not accepted again, the controller saves, every second, the date of
the newest message it has accepted; the restarted controller refuses everything dated at or
before it.  Messages made while the controller was down (queued by their senders) are newer
and pass.  What remains: a message accepted in the last second before the controller died
(after the last save) could be accepted once more after the restart, within the window.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Optional

from ..wire.connection import write_atomic
from ..wire.replay import ReplayWindow

INTERVAL = 1.0  # seconds between saves


class ReplayMark:
    """The file holding the date the next run must refuse up to, for one key."""

    def __init__(self, path: str, key: bytes, replay: ReplayWindow, loop, log: Optional[logging.Logger] = None):
        self.path = path
        self.digest = hashlib.sha256(b"hubctl replay mark\0" + key).hexdigest()[:32]  # which key it is for
        self.replay = replay
        self.loop = loop
        self.log = log or logging.getLogger(__name__)
        self._written = 0
        self._handle = None

    def restore(self) -> int:
        """Raise the replay floor to the saved mark of a run with the same key (but not past now: a
        future-dated message accepted from a peer whose clock runs ahead must not make fresh ones
        refused); the floor set, or 0."""
        try:
            with open(self.path) as f:
                saved = json.load(f)
        except (OSError, ValueError):
            return 0
        if not isinstance(saved, dict) or saved.get("key") != self.digest or not isinstance(saved.get("floor"), int):
            return 0
        floor = min(saved["floor"], int(time.time() * 1_000_000))
        self.replay.floor = self.replay.restored = max(self.replay.floor, floor)
        self._written = saved["floor"]
        return floor

    def start(self) -> None:
        self._handle = self.loop.call_later(INTERVAL, self._tick)

    def _tick(self) -> None:
        self.save()
        self.start()

    def save(self) -> None:
        mark = self.replay.newest
        if mark > self._written:
            try:
                write_atomic(self.path, json.dumps({"key": self.digest, "floor": mark}).encode(), fsync=False)
                self._written = mark
            except OSError as e:
                self.log.warning("cannot save the replay mark to %s: %s", self.path, e)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.save()
