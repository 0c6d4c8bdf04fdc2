"""The task-record store interface shared by every backend.

A task record is a flat dict keyed by the names in :data:`RECORD_KEYS` (see
PROTOCOL.md section 9.1).  Stores keep timestamps as timezone-aware UTC
datetimes and buffers as ``bytes``.
"""

from __future__ import annotations

from datetime import datetime, timezone

from traitlets.config import LoggingConfigurable

RECORD_KEYS = (
    "msg_id",
    "header",
    "metadata",
    "content",
    "buffers",
    "submitted",
    "client_uuid",
    "engine_uuid",
    "started",
    "completed",
    "resubmitted",
    "received",
    "result_header",
    "result_metadata",
    "result_content",
    "result_buffers",
    "queue",
    "execute_input",
    "execute_result",
    "error",
    "stdout",
    "stderr",
    "label",
    "name",
    "changed",
)
#: keys outside the schema that the hub may still write (IOPub display data)
EXTRA_KEYS = ("display_data",)
KNOWN_KEYS = frozenset(RECORD_KEYS + EXTRA_KEYS)
TIMESTAMP_KEYS = ("submitted", "started", "completed", "received")
BUFFER_KEYS = ("buffers", "result_buffers")
HEADER_KEYS = ("header", "result_header")


class NoData(KeyError):
    """Raised by stores that keep no records when asked to read one."""


class DBOpenError(RuntimeError):
    """A task database could not be opened; ``path`` names the file."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


def to_utc(dt: datetime) -> datetime:
    """Return ``dt`` as an aware UTC datetime (naive values are taken as local time)."""
    if dt.tzinfo is timezone.utc:
        return dt
    return dt.astimezone(timezone.utc)


def iso_utc(dt: datetime) -> str:
    """Format a datetime as ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00`` (sortable as text)."""
    return to_utc(dt).isoformat(timespec="microseconds")


def as_bytes(buf) -> bytes:
    """Turn a bytes-like object (bytes, bytearray, memoryview, zmq.Frame) into bytes."""
    if isinstance(buf, bytes):
        return buf
    if isinstance(buf, str):
        return buf.encode("utf8")
    frame_bytes = getattr(buf, "bytes", None)
    if isinstance(frame_bytes, bytes):
        return frame_bytes
    return bytes(memoryview(buf))


def check_keys(keys) -> list[str]:
    """Validate the ``keys`` argument of ``find_records``; return it as a list."""
    keys = list(keys)
    unknown = [k for k in keys if k not in KNOWN_KEYS]
    if unknown:
        raise KeyError(
            f"Unknown task record key(s) {unknown!r}; "
            f"valid keys are {sorted(KNOWN_KEYS)}"
        )
    return [k for k in dict.fromkeys(keys) if k != "msg_id"]


class BaseDB(LoggingConfigurable):
    """Interface of a task-record store.

    Writes (``add_record``, ``update_record``, ``drop_*``) may be applied
    asynchronously by a backend, but a later read on the same store always
    sees them.  The ``a*`` coroutines are what code running on an asyncio
    loop should call; backends that do I/O override them so the loop is
    never blocked.
    """

    #: short backend name reported by :meth:`health`
    backend_name = "base"

    def add_record(self, msg_id: str, rec: dict) -> None:
        """Store a new record (replacing any record with the same msg_id)."""
        raise NotImplementedError

    def update_record(self, msg_id: str, rec: dict) -> None:
        """Merge the keys of ``rec`` into an existing record (KeyError if absent)."""
        raise NotImplementedError

    def adopt_record(self, msg_id: str, rec: dict) -> None:
        """``add_record`` of a record the caller hands over and never touches again
        (nor the dicts and lists in it): a store may keep it without copying."""
        self.add_record(msg_id, rec)

    def merge_record(self, msg_id: str, rec: dict) -> bool:
        """``update_record`` with ``rec`` handed over as in ``adopt_record``.

        Returns False when the store knows at once that there is no such record (instead
        of raising KeyError); True otherwise.
        """
        try:
            self.update_record(msg_id, rec)
        except KeyError:
            return False
        return True

    def get_record(self, msg_id: str) -> dict:
        """Return a full record (KeyError if absent)."""
        raise NotImplementedError

    def drop_record(self, msg_id: str) -> None:
        """Remove a record; removing an absent record is not an error."""
        raise NotImplementedError

    def drop_matching_records(self, query: dict) -> None:
        """Remove every record matching ``query``."""
        raise NotImplementedError

    def find_records(self, query: dict, keys=None) -> list[dict]:
        """Records matching ``query``; with ``keys``, only ``msg_id`` and those keys."""
        raise NotImplementedError

    def get_history(self) -> list[str]:
        """msg_ids of the records with a ``submitted`` time, oldest first."""
        raise NotImplementedError

    def flush(self) -> bool:
        """Make every write issued so far durable; True when that succeeded."""
        return True

    def close(self) -> None:
        """Release resources; pending writes are flushed first."""

    def retain(self, older_than=None, max_records: int = 0, max_bytes: int = 0) -> list[str]:
        """Drop finished records beyond the retention limits; return their msg_ids.

        ``older_than`` (a datetime): finished records completed before it go.
        ``max_records`` / ``max_bytes`` (0: no limit): when the store holds more, the
        oldest finished records go until it is back under 90 % of the limit.  Records of
        tasks still pending are never dropped.
        """
        return []

    def reclaim(self) -> None:
        """Give space freed by dropped records back to the file system (if it holds any)."""

    async def aretain(self, older_than=None, max_records: int = 0, max_bytes: int = 0) -> list[str]:
        return self.retain(older_than, max_records, max_bytes)

    async def areclaim(self) -> None:
        self.reclaim()

    def health(self) -> dict:
        """Report whether the store is working: ``{"ok", "error", "backend", ...}``."""
        return {"ok": True, "error": None, "backend": self.backend_name}

    async def afind_records(self, query: dict, keys=None) -> list[dict]:
        return self.find_records(query, keys)

    async def aquery_records(self, query: dict, keys=None) -> list[dict]:
        """``afind_records`` for a reply serialized at once: the records are fresh dicts,
        but a store may share the values in them (dicts, lists) with what it keeps, so
        callers may add or remove top-level keys and must change nothing else."""
        return await self.afind_records(query, keys)

    async def aget_record(self, msg_id: str) -> dict:
        return self.get_record(msg_id)

    async def aget_history(self) -> list[str]:
        return self.get_history()

    async def adrop_matching_records(self, query: dict) -> None:
        return self.drop_matching_records(query)

    async def aflush(self) -> bool:
        return self.flush()

    def task_stream(self, since, until: float, limit: int) -> tuple[list[dict], bool]:
        """Records whose ``changed`` stamp lies in ``(since, until]``, at most ``limit``, newest
        change first; and whether more than ``limit`` matched.  With ``since`` None (no lower
        bound) they are the newest ``limit`` changes; with a ``since`` they are the *oldest*
        ``limit`` after it, so that a caller that continues from the newest stamp it got misses
        nothing when a burst of changes exceeds ``limit``.

        Each is a dict of :data:`STREAM_KEYS` (``status``: the result's status, None while
        unfinished).  This generic form filters ``find_records``; stores override it with
        an index on ``changed``.
        """
        cond = {"$lte": until} if since is None else {"$gt": since, "$lte": until}
        found = self.find_records({"changed": cond}, list(STREAM_KEYS[1:-1]) + ["result_content"])
        found.sort(key=lambda rec: rec["changed"], reverse=since is None)
        rows = [stream_row(rec) for rec in found[:limit]]
        return rows if since is None else rows[::-1], len(found) > limit

    async def atask_stream(self, since, until: float, limit: int) -> tuple[list[dict], bool]:
        return self.task_stream(since, until, limit)


#: what a store reports of a record in the task stream (``status`` from ``result_content``)
STREAM_KEYS = ("msg_id", "engine_uuid", "name", "label", "submitted", "started", "completed", "changed", "status")


def result_status(result_content):
    """The status of a finished task's result content (None while there is none)."""
    return result_content.get("status") if isinstance(result_content, dict) else None


def stream_row(rec: dict) -> dict:
    """The task-stream fields of a record."""
    row = {key: rec.get(key) for key in STREAM_KEYS[:-1]}
    row["status"] = result_status(rec.get("result_content"))
    return row
