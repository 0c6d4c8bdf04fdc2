"""Writes waiting for the SQLite thread, coalesced per msg_id.

Writes to different records commute, so consecutive per-record writes share
one *segment* (a dict ``msg_id -> (kind, fields)``) in which a later write is
folded into the earlier one: insert + update is one insert with the merged
fields, update + update one update, and an insert or delete replaces whatever
was queued.  A drop-matching write is a barrier: later writes start a new
segment, so it is applied after everything queued before it and before
everything queued after it.

The class is not thread-safe; its owner serialises access.
"""

from __future__ import annotations

INSERT, UPDATE, DELETE = "insert", "update", "delete"


class DropMatching:
    """A queued drop-matching write; ``sql`` is ``(where, params, rest)``."""

    __slots__ = ("sql",)

    def __init__(self, sql):
        self.sql = sql


class PendingWrites:
    """Queued writes in the order they were issued."""

    def __init__(self):
        self._segments: list = []
        #: queued operations (records with a write plus barriers)
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def add(self, msg_id: str, op: tuple, strict: bool = True) -> int:
        """Queue ``op`` = ``(kind, fields)`` for one record.

        An update of a record deleted earlier in the same segment raises
        KeyError when ``strict``, else it is discarded.  Returns the number of
        discarded updates (0 or 1).
        """
        segments = self._segments
        if segments and isinstance(segments[-1], dict):
            segment = segments[-1]
            prev = segment.get(msg_id)
            if prev is not None:
                if op[0] != UPDATE:
                    segment[msg_id] = op
                elif prev[0] == DELETE:
                    if strict:
                        raise KeyError(
                            f"No such task record: {msg_id!r} (it was dropped)"
                        )
                    return 1
                else:
                    prev[1].update(op[1])
                return 0
            segment[msg_id] = op
        else:
            segments.append({msg_id: op})
        self.count += 1
        return 0

    def add_barrier(self, drop: DropMatching) -> None:
        self._segments.append(drop)
        self.count += 1

    def take(self, chunk_size: int) -> list:
        """Remove everything queued; return it as chunks of at most ``chunk_size``
        record writes (dicts) or single barriers, in order."""
        segments, self._segments, self.count = self._segments, [], 0
        chunks = []
        for segment in segments:
            if isinstance(segment, DropMatching):
                chunks.append(segment)
                continue
            items = list(segment.items())
            for start in range(0, len(items), chunk_size):
                chunks.append(dict(items[start : start + chunk_size]))
        return chunks

    def put_back(self, chunks: list) -> int:
        """Queue unwritten ``chunks`` again, ahead of anything queued since they
        were taken.  Returns the number of updates discarded while merging."""
        later, self._segments, self.count = self._segments, [], 0
        discarded = 0
        for part in (chunks, later):
            for chunk in part:
                if isinstance(chunk, DropMatching):
                    self.add_barrier(chunk)
                elif chunk:
                    for msg_id, op in chunk.items():
                        discarded += self.add(msg_id, op, strict=False)
        return discarded
