"""Replay protection across restarts.

The replay memory lives in the controller's process; a controller restarted with the
same key (``--reuse``/``--restore``) starts with an empty one.  So that nothing accepted
before the restart can be accepted again, the controller keeps on disk, a second at a
time, a date a few seconds past the newest it has accepted; the restarted controller
refuses everything dated at or before it.  (What it costs: a request created in the
last seconds before the controller died and delivered after its restart is refused with
an error, like any message dated outside the window.)
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Optional

from ..wire.connection import write_atomic
from ..wire.replay import ReplayWindow

CUSHION_US = 5_000_000  # microseconds added to the newest accepted date (saves come every second)
INTERVAL = 1.0


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
        """Raise the replay floor to the saved mark of a run with the same key; the mark (0 if none)."""
        try:
            with open(self.path) as f:
                saved = json.load(f)
        except (OSError, ValueError):
            return 0
        if not isinstance(saved, dict) or saved.get("key") != self.digest or not isinstance(saved.get("floor"), int):
            return 0
        self.replay.floor = max(self.replay.floor, saved["floor"])
        self._written = saved["floor"]
        return saved["floor"]

    def start(self) -> None:
        self._handle = self.loop.call_later(INTERVAL, self._tick)

    def _tick(self) -> None:
        self.save()
        self.start()

    def save(self) -> None:
        mark = self.replay.newest + CUSHION_US
        if self.replay.newest and mark > self._written:
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
