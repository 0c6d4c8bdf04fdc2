"""A bounded in-memory task-record store."""

from __future__ import annotations

import heapq
from collections import OrderedDict
from datetime import datetime, timezone
from itertools import islice

from traitlets import Float, Integer, observe, validate

from .base import BUFFER_KEYS, TIMESTAMP_KEYS, BaseDB, as_bytes, check_keys, stream_row, to_utc
from .query import compile_query
from .stream import ChangeOrder

_UTC = timezone.utc


def _copy_value(value):
    """One level of copying: containers are copied, their items are shared."""
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


def _copy_record(rec: dict) -> dict:
    return {key: _copy_value(value) for key, value in rec.items()}


def _age_key(rec: dict):
    """Sort key by ``submitted``; records without one sort first."""
    submitted = rec.get("submitted")
    if isinstance(submitted, datetime):
        return (1, submitted.timestamp())
    return (0, 0.0)


def _nbytes(rec: dict) -> int:
    total = 0
    for key in BUFFER_KEYS:
        for buf in rec.get(key) or ():
            total += len(buf)
    return total


class DictDB(BaseDB):
    """Task records in a dict, bounded by record count and buffer bytes.

    When a limit is exceeded the oldest records (by ``submitted``) are culled;
    their ids are remembered for a while so that lookups can say so.
    """

    backend_name = "dictdb"

    record_limit = Integer(
        1024,
        config=True,
        help="""Maximum number of task records kept in memory. When exceeded,
        the oldest ``cull_fraction`` of this many records are dropped.""",
    )
    size_limit = Integer(
        1024**3,
        config=True,
        help="""Maximum total size in bytes of the request and result buffers kept
        in memory. When exceeded, the oldest records are dropped until the total
        is at most ``size_limit * (1 - cull_fraction)``.""",
    )
    cull_fraction = Float(
        0.1,
        config=True,
        help="""Fraction of the limits freed when culling: of ``record_limit`` when
        there are too many records, of ``size_limit`` when buffers are too big.""",
    )

    @validate("record_limit", "size_limit")
    def _check_positive(self, proposal):
        if proposal.value < 1:
            raise ValueError(f"{proposal.trait.name} must be at least 1")
        return proposal.value

    @validate("cull_fraction")
    def _check_fraction(self, proposal):
        if not 0 <= proposal.value < 1:
            raise ValueError("cull_fraction must be in [0, 1)")
        return proposal.value

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._records: dict[str, dict] = {}
        self._sizes: dict[str, int] = {}
        self._total_bytes = 0
        self._culled: OrderedDict[str, None] = OrderedDict()
        # ``_records`` is kept in age order (``_age_key``) while ``_ordered``: records
        # normally arrive oldest first, so culling takes the first ones instead of sorting
        self._ordered = True
        self._last_age = (0, 0.0)
        self._changes = ChangeOrder()  # the task stream's index
        self._limits_changed(None)

    @observe("record_limit", "size_limit", "cull_fraction")
    def _limits_changed(self, change):
        # plain attributes for the write path (a trait read costs about a microsecond)
        self._record_limit = self.record_limit
        self._size_limit = self.size_limit
        self._cull_fraction = self.cull_fraction

    # -- bookkeeping ----------------------------------------------------------

    @property
    def nbytes(self) -> int:
        """Total bytes of buffers currently held."""
        return self._total_bytes

    def _prepare(self, rec: dict) -> dict:
        """Copy an incoming record, normalising timestamps and buffers."""
        return self._normalise(_copy_record(rec))

    @staticmethod
    def _normalise(rec: dict) -> dict:
        """Timestamps as aware UTC datetimes and buffers as bytes, in place."""
        for key in TIMESTAMP_KEYS:
            value = rec.get(key)
            if value is not None and isinstance(value, datetime) and value.tzinfo is not _UTC:
                rec[key] = to_utc(value)
        for key in BUFFER_KEYS:
            bufs = rec.get(key)
            if bufs:
                for b in bufs:
                    if type(b) is not bytes:
                        rec[key] = [as_bytes(b) for b in bufs]
                        break
                else:
                    if type(bufs) is not list:
                        rec[key] = list(bufs)
        return rec

    def _set_size(self, msg_id: str, size: int) -> None:
        self._total_bytes += size - self._sizes.get(msg_id, 0)
        self._sizes[msg_id] = size

    def _forget(self, msg_id: str) -> None:
        self._records.pop(msg_id, None)
        self._total_bytes -= self._sizes.pop(msg_id, 0)
        self._changes.discard(msg_id)

    def _remember_culled(self, msg_id: str) -> None:
        self._culled[msg_id] = None
        self._culled.move_to_end(msg_id)
        while len(self._culled) > 10 * self._record_limit:
            self._culled.popitem(last=False)

    def _oldest(self, count=None) -> list:
        """msg_ids of the ``count`` (default: all) oldest records, oldest first; records of
        the same age in insertion order."""
        records = self._records
        if self._ordered:  # insertion order is age order
            return list(records) if count is None else list(islice(records, count))
        if count is None:
            return [rec["msg_id"] for rec in sorted(records.values(), key=_age_key)]
        return [rec["msg_id"] for rec in heapq.nsmallest(count, records.values(), key=_age_key)]

    def _check_order(self) -> None:
        """After culling: is insertion order age order again?"""
        last = (0, 0.0)
        for rec in self._records.values():
            age = _age_key(rec)
            if age < last:
                return
            last = age
        self._ordered = True
        self._last_age = last

    def _cull(self) -> None:
        limit = self._record_limit
        excess = len(self._records) - limit
        if excess > 0:
            count = max(excess, 1, int(self._cull_fraction * limit))
            for msg_id in self._oldest(count):
                self._drop_culled(msg_id)
        if self._total_bytes > self._size_limit:
            target = self._size_limit * (1 - self._cull_fraction)
            for msg_id in self._oldest():
                if self._total_bytes <= target:
                    break
                self._drop_culled(msg_id)
        if not self._ordered:
            self._check_order()

    def _drop_culled(self, msg_id: str) -> None:
        self._forget(msg_id)
        self._remember_culled(msg_id)

    def _missing(self, msg_id: str) -> KeyError:
        if msg_id in self._culled:
            return KeyError(
                f"Task record {msg_id!r} was culled from the in-memory store"
            )
        return KeyError(f"No such task record: {msg_id!r}")

    # -- API ------------------------------------------------------------------

    def add_record(self, msg_id, rec):
        self._add(msg_id, self._prepare(rec))

    def adopt_record(self, msg_id, rec):
        """``add_record`` of a record the caller hands over: kept as it is, not copied."""
        self._add(msg_id, self._normalise(rec))

    def _add(self, msg_id, rec) -> None:
        rec["msg_id"] = msg_id
        records = self._records
        if self._ordered:
            age = _age_key(rec)
            if age < self._last_age or msg_id in records:  # a replacement keeps its place
                self._ordered = False
            else:
                self._last_age = age
        records[msg_id] = rec
        self._changes.touch(msg_id, rec.get("changed"))
        if self._culled:
            self._culled.pop(msg_id, None)
        size = _nbytes(rec)
        if size or msg_id in self._sizes:
            self._set_size(msg_id, size)
        if len(records) > self._record_limit or self._total_bytes > self._size_limit:
            self._cull()

    def update_record(self, msg_id, rec):
        current = self._records.get(msg_id)
        if current is None:
            raise self._missing(msg_id)
        self._update(msg_id, current, self._prepare(rec))

    def merge_record(self, msg_id, rec):
        """``update_record`` with ``rec`` handed over (its values kept, not copied).

        Returns False, instead of raising KeyError, when there is no such record.
        """
        current = self._records.get(msg_id)
        if current is None:
            return False
        self._update(msg_id, current, self._normalise(rec))
        return True

    def _update(self, msg_id, current: dict, update: dict) -> None:
        update.pop("msg_id", None)
        current.update(update)
        if "changed" in update:
            self._changes.touch(msg_id, update["changed"])
        if "submitted" in update:
            self._ordered = False
        if "buffers" in update or "result_buffers" in update:
            self._set_size(msg_id, _nbytes(current))
        if len(self._records) > self._record_limit or self._total_bytes > self._size_limit:
            self._cull()

    def get_record(self, msg_id):
        try:
            return _copy_record(self._records[msg_id])
        except KeyError:
            raise self._missing(msg_id) from None

    def drop_record(self, msg_id):
        self._forget(msg_id)

    def drop_matching_records(self, query):
        test = compile_query(query)
        for msg_id in [m for m, rec in self._records.items() if test(rec)]:
            self._forget(msg_id)

    def retain(self, older_than=None, max_records=0, max_bytes=0):
        finished = sorted(
            (rec for rec in self._records.values() if rec.get("completed") is not None),
            key=lambda rec: rec["completed"],
        )
        doomed = []
        if older_than is not None:
            cutoff = to_utc(older_than)
            n = next((i for i, rec in enumerate(finished) if rec["completed"] >= cutoff), len(finished))
            doomed = [rec["msg_id"] for rec in finished[:n]]
            finished = finished[n:]
        count = len(self._records) - len(doomed)
        if max_records and count > max_records:
            extra = count - int(max_records * 0.9)
            doomed.extend(rec["msg_id"] for rec in finished[:extra])
            finished = finished[extra:]
        for msg_id in doomed:
            self._forget(msg_id)
        if max_bytes and self._total_bytes > max_bytes:
            target = max_bytes * 0.9
            for rec in finished:
                if self._total_bytes <= target:
                    break
                doomed.append(rec["msg_id"])
                self._forget(rec["msg_id"])
        return doomed

    def find_records(self, query, keys=None):
        return self._find(query, keys, True)

    async def aquery_records(self, query, keys=None):
        return self._find(query, keys, False)  # values shared: see BaseDB.aquery_records

    def _find(self, query, keys, copy: bool) -> list:
        test = compile_query(query)
        if keys is None:
            if copy:
                return [_copy_record(rec) for rec in self._records.values() if test(rec)]
            return [dict(rec) for rec in self._records.values() if test(rec)]
        keys = check_keys(keys)
        found = []
        for msg_id, rec in self._records.items():
            if test(rec):
                if copy:
                    sub = {key: _copy_value(rec.get(key)) for key in keys}
                else:
                    sub = {key: rec.get(key) for key in keys}
                sub["msg_id"] = msg_id
                found.append(sub)
        return found

    def task_stream(self, since, until, limit):
        found, truncated = self._changes.newest(self._records, since, until, limit)
        return [stream_row(rec) for rec in found], truncated

    def get_history(self):
        dated = [
            rec for rec in self._records.values() if rec.get("submitted") is not None
        ]
        dated.sort(key=_age_key)
        return [rec["msg_id"] for rec in dated]

    def health(self):
        return {
            "ok": True,
            "error": None,
            "backend": self.backend_name,
            "records": len(self._records),
            "bytes": self._total_bytes,
        }
