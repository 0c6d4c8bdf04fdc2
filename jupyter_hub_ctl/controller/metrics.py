"""Engine metrics: what our engines report about themselves, kept by the Hub in memory.

Our engines send ``engine_metrics_report`` on the registration/query connection every
``metrics_interval`` seconds (the Hub tells them the interval in its registration reply;
ipyparallel engines ignore that field and report nothing).  The Hub keeps the latest
sample and a ring of the last ``metrics_history`` samples per engine, plus the latest
figures per host, and forgets an engine's samples when it unregisters.  Nothing is
written to the task store; a report costs a parse and an append.
"""

from __future__ import annotations

import math
import time
from collections import deque
from datetime import datetime, timezone
from typing import Optional


MAX_ID = 256  # longest task msg_id kept from a report
MAX_NAME = 200
MAX_EPOCH = 1e11  # later than any real start time (year 5138), early enough for datetime
HOST_KEYS = {"load1": float, "cpus": int, "mem_total": int, "mem_used": int}


def _number(value, kind):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"not a non-negative number: {value!r}")
    return kind(value)


def _text(value, limit: int) -> Optional[str]:
    return value[:limit] if isinstance(value, str) and value else None


FIELDS = ("time", "cpu", "rss", "threads", "task", "task_name")


class EngineMetrics:
    """Latest sample, a bounded history per engine, and the latest figures per host.

    Samples are kept as tuples of :data:`FIELDS` (a task named in consecutive reports is kept
    once): about 0.2 kB each, so 300 samples of 1000 engines hold some 60 MB.
    """

    def __init__(self, history: int):
        self.history = max(1, history)
        self.rings: dict = {}  # engine id -> deque of sample tuples, oldest first
        self.where: dict = {}  # engine id -> (host, pid)
        self.hosts: dict = {}  # host name -> latest host figures

    def add(self, ec, content: dict, now: float) -> Optional[tuple]:
        """Keep one report of engine ``ec``; raises ValueError if it is malformed.

        Returns ``(msg_id, started)`` when the report names a task the engine's previous
        report did not (``started``: epoch seconds by the engine's clock, or None).
        """
        task = content.get("task")
        if task is not None and (not isinstance(task, str) or len(task) > MAX_ID):
            raise ValueError("task must be a msg_id string or null")
        started = content.get("task_started")
        started = _number(started, float) if started is not None else None
        if started is not None and started > MAX_EPOCH:
            raise ValueError("task_started is not a time")
        cpu, rss = _number(content.get("cpu"), float), _number(content.get("rss"), int)
        threads = _number(content.get("threads"), int)
        host = content.get("host_info")
        if isinstance(host, dict) and ec.host:
            figures = {key: _number(host.get(key), kind) for key, kind in HOST_KEYS.items()}
            self.hosts[ec.host] = dict(figures, time=now)
        ring = self.rings.get(ec.id)
        if ring is None:
            ring = self.rings[ec.id] = deque(maxlen=self.history)
        self.where[ec.id] = (ec.host, ec.pid)
        last = ring[-1] if ring else None
        if last is not None and task == last[4]:
            ring.append((now, cpu, rss, threads, last[4], last[5]))
            return None
        name = _text(content.get("task_name"), MAX_NAME) if task else None
        ring.append((now, cpu, rss, threads, task, name))
        return None if task is None else (task, started)

    def drop(self, eid: int) -> None:
        """Forget an engine's samples (it unregistered), and its host if no engine there reports."""
        self.rings.pop(eid, None)
        host = self.where.pop(eid, ("", None))[0]
        if host and not any(h == host for h, _ in self.where.values()):
            self.hosts.pop(host, None)

    def _sample(self, eid: int, values: tuple) -> dict:
        host, pid = self.where[eid]
        return dict(zip(FIELDS, values), host=host, pid=pid)

    def latest(self, eid: int) -> Optional[dict]:
        ring = self.rings.get(eid)
        return self._sample(eid, ring[-1]) if ring else None

    def host_of(self, eid: int) -> Optional[dict]:
        """The latest figures of the host engine ``eid`` reported from."""
        where = self.where.get(eid)
        return self.hosts.get(where[0]) if where else None

    def snapshot(self, eids: list, history: int) -> dict:
        engines, hosts = {}, set()
        for eid in eids:
            ring = self.rings.get(eid)
            if not ring:
                engines[str(eid)] = {"latest": None, "history": []}
                continue
            past = list(ring)[-history:] if history > 0 else []
            engines[str(eid)] = {"latest": self._sample(eid, ring[-1]),
                                 "history": [self._sample(eid, v) for v in past]}
            hosts.add(self.where[eid][0])
        return {"engines": engines, "hosts": {h: self.hosts[h] for h in sorted(hosts) if h in self.hosts}}


class HubMetrics:
    """Mixed into `Hub`: the metrics report from engines and the metrics query from clients."""

    def engine_metrics_report(self, idents, msg) -> None:
        """A report from one of our engines: kept, never answered (it is a notification)."""
        eid = self.by_uuid.get(msg.header.get("session", ""))
        if eid is None:
            self.count_error("metrics-unknown-engine")
            return
        try:
            started = self.metrics.add(self.engines[eid], msg.content, time.time())
        except ValueError as e:
            self.count_error("bad-metrics")
            self.log.debug("engine %d: bad metrics report: %s", eid, e)
            return
        if started is not None and started[0] in self.pending:
            msg_id, t = started
            when = datetime.fromtimestamp(t, timezone.utc) if t is not None else datetime.now(timezone.utc)
            self._db_call("update_record", msg_id, {"started": when, "changed": self.stamp()})

    def engine_metrics_request(self, idents, msg) -> None:
        content = msg.content
        history = content.get("history", 0)
        if isinstance(history, bool) or not isinstance(history, int) or history < 0:
            raise TypeError("history must be a non-negative int")
        targets = content.get("targets")
        eids = sorted(self.engines) if targets is None else self._targets(targets)
        reply = self.metrics.snapshot(eids, history)
        reply.update(status="ok", interval=self.metrics_interval)
        self._reply(idents, "engine_metrics_reply", reply, parent=msg.header)
