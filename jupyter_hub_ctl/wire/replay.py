"""Replay protection: remembering the signatures of messages already accepted.

`ReplayCache` is what every peer (engine, client) keeps: the last N signatures it
accepted, so one message delivered twice is handled once.

`ReplayWindow` is the controller's: one memory for every socket, holding each
accepted signature with the date in the message's (signed) header.  A message is
accepted once, only if dated within ``window`` seconds of now, and only if the
memory can prove it has not seen it: when the memory is full the entry with the
oldest date is forgotten and the *floor* rises to that date, so from then on
anything dated at or before the floor is refused as expired.  A legitimate
message is therefore refused only if it is older than the window, or if more than
``size`` newer-dated messages reached the controller before it did.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from datetime import datetime, timedelta, timezone
from typing import Optional

from .dates import parse_date
from .errors import MessageError

_MICRO = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_SHIFT = 64  # an entry is one int: date in microseconds << 64 | the first 64 bits of the signature


class ReplayCache:
    """The last ``size`` signatures accepted; a signature seen again is a replay."""

    def __init__(self, size: int = 65536):
        self.size = size
        self._seen: set = set()
        self._order: deque = deque()

    def check(self, sig: bytes, header: dict) -> None:
        if sig in self._seen:
            raise MessageError("replay", header=header)
        self._seen.add(sig)
        self._order.append(sig)
        if len(self._order) > self.size:
            self._seen.discard(self._order.popleft())

    def stats(self) -> dict:
        return {"size": self.size, "remembered": len(self._seen)}


def header_time(header: dict) -> Optional[int]:
    """The header's ``date`` in microseconds since the epoch; None if missing or not ISO-8601."""
    value = header.get("date")
    dt = parse_date(value) if isinstance(value, str) else None  # a naive date is taken as UTC
    return None if dt is None else (dt - _EPOCH) // _US


class ReplayWindow:
    """Signatures of every message accepted within ``window`` seconds, at most ``size`` of them."""

    def __init__(self, window: float = 600.0, size: int = 262144, clock=time.time):
        if window <= 0 or size <= 0:
            raise ValueError("the replay window and memory must be positive")
        self.window = window
        self.size = size
        self.clock = clock
        self._window_us = int(window * _MICRO)
        self._seen: set = set()
        self._heap: list = []  # the same ints, oldest date first
        self.floor = 0  # microseconds: messages dated at or before it are refused
        self.restored = 0  # microseconds: the floor taken over from a previous run (ReplayMark)
        self.newest = 0  # microseconds: the latest date accepted
        self.forgotten = 0  # entries dropped because the memory was full (the floor rose)

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, sig: bytes, header: dict) -> None:
        """Accept ``sig`` (a hex HMAC already verified) once; raise MessageError otherwise."""
        t = header_time(header)
        if t is None:
            raise MessageError("no-date", "the header has no ISO-8601 date", header=header)
        entry = t << _SHIFT | int(sig[:16], 16)
        seen = self._seen
        if entry in seen:
            raise MessageError("replay", header=header)
        now = int(self.clock() * _MICRO)
        if t > now + self._window_us:
            raise MessageError("future", f"dated {(t - now) / _MICRO:.0f}s ahead of the controller's clock",
                               header=header)
        low = now - self._window_us
        heap = self._heap
        while heap and heap[0] >> _SHIFT < low:  # too old to be accepted anyway: forget
            seen.discard(heapq.heappop(heap))
        if t < low or t <= self.floor:
            raise MessageError("expired", self._expired_detail(t, now), header=header)
        seen.add(entry)
        heapq.heappush(heap, entry)
        if t > self.newest:
            self.newest = t
        if len(heap) > self.size:
            oldest = heapq.heappop(heap)
            seen.discard(oldest)
            self.floor = max(self.floor, oldest >> _SHIFT)
            self.forgotten += 1

    def _expired_detail(self, t: int, now: int) -> str:
        age = (now - t) / _MICRO
        if now - t > self._window_us:
            return f"dated {age:.0f}s ago, outside the controller's {self.window:g}s window"
        if t <= self.restored:
            return f"dated {age:.1f}s ago, before the controller restarted (its previous run may have accepted it)"
        return (f"dated {age:.1f}s ago, before the {self.size} newer messages the controller remembers "
                "(HubFactory.replay_memory)")

    def stats(self) -> dict:
        return {"window": self.window, "size": self.size, "remembered": len(self._seen),
                "forgotten": self.forgotten}
