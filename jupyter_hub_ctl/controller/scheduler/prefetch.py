"""How long tasks take, so that short ones need not wait for a round trip through the hub.

With one task at a time per engine (``hwm = 1``), an engine that finishes a task idles until
its reply has reached the hub and the next task has come back: for tasks shorter than that
round trip the engines idle more than they work.  The scheduler therefore times tasks by
what they run (the serialized function of an ``apply_request``, the code of an
``execute_request``) and lets an engine that is running *short* tasks hold a few more of them,
as long as the work it holds is expected to take at most ``TaskScheduler.prefetch`` seconds.
A task whose function was not timed twice yet, or takes longer, is never sent ahead: long
tasks keep the best balance.
"""

from __future__ import annotations

from typing import Optional

from ..records import NAME_KEY

#: weight of a new duration in a kind's running estimate (one long task moves it at once)
ALPHA = 0.25
#: kinds remembered; the oldest is forgotten beyond that
MAX_KINDS = 1024


def task_kind(header: dict, md: dict, frames: list) -> Optional[int]:
    """What a request runs, as a number (None: not known without reading a large frame).

    ``frames`` is ``[sig, header, parent, metadata, content, *buffers]``.  Our client names the
    function in the metadata, which is then the same frame from call to call of one function
    through one view; for other clients, an apply request's first buffer is its serialized
    function, and an execute request's content its code."""
    if NAME_KEY in md:
        f = frames[3]
    elif len(frames) > 5:
        f = frames[5]
    elif header.get("msg_type") == "execute_request":
        f = frames[4]
    else:
        return None
    return hash(f) if type(f) is bytes else None


class Durations:
    """A running estimate of each task kind's duration on an engine (seconds)."""

    __slots__ = ("_est",)

    def __init__(self):
        self._est: dict = {}  # kind -> [estimate, samples]

    def add(self, kind: Optional[int], seconds: float) -> None:
        if kind is None:
            return
        e = self._est.get(kind)
        if e is None:
            if len(self._est) >= MAX_KINDS:
                del self._est[next(iter(self._est))]
            self._est[kind] = [seconds, 1]
        else:
            e[0] += ALPHA * (seconds - e[0])
            e[1] += 1

    def estimate(self, kind: Optional[int]) -> Optional[float]:
        """The expected duration, once the kind was timed twice; None before (or never)."""
        e = self._est.get(kind)
        if e is None or e[1] < 2:
            return None
        return e[0]
