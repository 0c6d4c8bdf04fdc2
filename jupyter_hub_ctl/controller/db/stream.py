"""The task stream of a store: records in the order of the Hub's change stamps.

The Hub stamps a record's ``changed`` field (epoch seconds on its own clock, strictly
increasing) whenever the task is submitted, sent to an engine, seen running or finished.
"Tasks changed since T" is then one range of that stamp: an index range scan in SQLite,
and in memory a walk back from the newest change (:class:`ChangeOrder`).
"""

from __future__ import annotations

import heapq
import json
from collections import OrderedDict
from datetime import datetime

from .base import STREAM_KEYS, result_status
from .sqlformat import quote

_NEG_INF = float("-inf")


class ChangeOrder:
    """msg_ids ordered by their records' ``changed`` stamps, for stores that keep records in dicts.

    Stamps normally arrive in increasing order (the Hub issues them so), and then a
    record whose stamp changes moves to the end: the newest changes are read from the end
    in O(number read).  A stamp older than the newest seen (a record written by someone
    else) switches to a full scan for the reads, which stays correct.
    """

    def __init__(self):
        self._ids: "OrderedDict[str, None]" = OrderedDict()
        self._last = _NEG_INF
        self.in_order = True

    def __len__(self) -> int:
        return len(self._ids)

    def touch(self, msg_id: str, changed) -> None:
        """The record of ``msg_id`` now has stamp ``changed`` (None: it has none)."""
        if changed is None:
            self._ids.pop(msg_id, None)
            return
        if changed < self._last:
            self.in_order = False
        else:
            self._last = changed
        ids = self._ids
        ids[msg_id] = None
        ids.move_to_end(msg_id)

    def discard(self, msg_id: str) -> None:
        self._ids.pop(msg_id, None)

    def oldest(self):
        """msg_ids from the oldest change on (a snapshot: callers may discard while iterating)."""
        return list(self._ids)

    def newest(self, records: dict, since, until: float, limit: int) -> tuple[list[dict], bool]:
        """Records (from ``records``, by msg_id) with ``since < changed <= until``, at most
        ``limit``, newest first, and whether more matched: the newest ``limit`` without
        ``since``, the oldest ``limit`` after it (see ``TaskStore.task_stream``)."""
        low = _NEG_INF if since is None else since
        if not self.in_order:
            found = [rec for rec in (records[m] for m in self._ids) if low < rec["changed"] <= until]
            pick = heapq.nlargest if since is None else heapq.nsmallest
            top = pick(limit + 1, found, key=lambda rec: rec["changed"])
            chosen = top[:limit]
            return chosen if since is None else chosen[::-1], len(top) > limit
        out = []
        for msg_id in reversed(self._ids):
            rec = records[msg_id]
            changed = rec["changed"]
            if changed > until:
                continue  # changed while the request waited: the next request reports it
            if changed <= low:
                break
            if since is None and len(out) == limit:
                return out, True
            out.append(rec)
        if len(out) > limit:  # after ``since``: the oldest ``limit`` of them
            return out[-limit:], True
        return out, False


def sqlite_stream(conn, table: str, json_functions: bool, since, until: float, limit: int):
    """The task stream of an SQLite task table: one range scan of its ``changed`` index,
    stopping after ``limit + 1`` rows (the newest without ``since``, the oldest after it;
    see ``TaskStore.task_stream``), returned newest first."""
    status = "json_extract(result_content, '$.status')" if json_functions else "result_content"
    where, params = "changed <= ?", [until]
    if since is not None:
        where += " AND changed > ?"
        params.append(since)
    sql = (f"SELECT msg_id, engine_uuid, name, label, submitted, started, completed, changed, {status} "
           f"FROM {quote(table)} WHERE {where} ORDER BY changed {'DESC' if since is None else 'ASC'} LIMIT ?")
    rows = conn.execute(sql, (*params, limit + 1)).fetchall()
    out = []
    for row in rows[:limit]:
        rec = dict(zip(STREAM_KEYS, row))
        for key in ("submitted", "started", "completed"):
            if rec[key] is not None:
                rec[key] = _parse_time(rec[key])
        if not json_functions:
            rec["status"] = _status_of_json(rec["status"])
        out.append(rec)
    return out if since is None else out[::-1], len(rows) > limit


def _parse_time(raw):
    try:
        return datetime.fromisoformat(raw)
    except (TypeError, ValueError):
        return None


def _status_of_json(raw):
    try:
        return result_status(json.loads(raw)) if raw is not None else None
    except ValueError:
        return None
