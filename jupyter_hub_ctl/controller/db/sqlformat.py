"""How task records are laid out in SQLite: columns and value encoding.

Dicts are JSON text; the Hub's change stamps REAL (epoch seconds); timestamps ISO-8601 UTC text in one fixed format (so
text order is time order); a list of buffers is one blob: a 4-byte
little-endian count, then for each buffer an 8-byte little-endian length and
its bytes.  Plain string columns are declared without a type, so values keep
the type they were written with (a number stays a number).  Decoding never
executes anything stored in the file.
"""

from __future__ import annotations

import json
import logging
import struct
from datetime import datetime

from .base import HEADER_KEYS, iso_utc

#: (column, kind); kind is one of text, json, time, bufs
COLUMNS = (
    ("msg_id", "text"),
    ("header", "json"),
    ("metadata", "json"),
    ("content", "json"),
    ("buffers", "bufs"),
    ("submitted", "time"),
    ("client_uuid", "text"),
    ("engine_uuid", "text"),
    ("started", "time"),
    ("completed", "time"),
    ("resubmitted", "text"),
    ("received", "time"),
    ("result_header", "json"),
    ("result_metadata", "json"),
    ("result_content", "json"),
    ("result_buffers", "bufs"),
    ("queue", "text"),
    ("execute_input", "text"),
    ("execute_result", "json"),
    ("error", "json"),
    ("stdout", "text"),
    ("stderr", "text"),
    ("label", "text"),
    ("display_data", "json"),
    ("name", "text"),
    ("changed", "real"),
)
KINDS = dict(COLUMNS)
#: columns added after the first layout: a table without them gets them (ALTER TABLE)
ADDED = ("name", "changed")
DECLARED = {"text": "", "time": "TEXT", "json": "TEXT", "bufs": "BLOB", "real": "REAL"}
INDEXED = ("submitted", "completed", "engine_uuid", "client_uuid", "changed")
_INT64 = 2**63


def quote(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def table_sql(table: str) -> str:
    """The CREATE TABLE statement for a task table."""
    columns = ", ".join(
        f"{quote(col)} TEXT PRIMARY KEY"
        if col == "msg_id"
        else f"{quote(col)} {DECLARED[kind]}".rstrip()
        for col, kind in COLUMNS
    )
    return f"CREATE TABLE {quote(table)} ({columns})"


def missing_columns(info: list):
    """The columns to add (ALTER TABLE) to the table ``PRAGMA table_info`` rows describe:
    ``[]`` if it has our layout, a list of ``(column, declared type)`` if it has an earlier one
    (without some of :data:`ADDED`), None if it is some other table."""
    expected = [("msg_id", "TEXT", 1)] + [(c, DECLARED[k], 0) for c, k in COLUMNS[1:]]
    found = [(r[1], r[2].upper(), r[5]) for r in info]
    if found != expected[: len(found)]:
        return None
    missing = expected[len(found):]
    if any(c not in ADDED for c, _, _ in missing):
        return None
    return [(c, declared) for c, declared, _ in missing]


def pack_buffers(bufs) -> bytes:
    """Frame a list of bytes-like objects as one blob."""
    parts = [struct.pack("<I", len(bufs))]
    for buf in bufs:
        if isinstance(buf, str):
            buf = buf.encode("utf8")
        parts.append(struct.pack("<Q", memoryview(buf).nbytes))
        parts.append(buf)
    return b"".join(parts)


def unpack_buffers(blob) -> list[bytes]:
    """Inverse of :func:`pack_buffers`."""
    view = memoryview(blob)
    (count,) = struct.unpack_from("<I", view, 0)
    pos, bufs = 4, []
    for _ in range(count):
        (size,) = struct.unpack_from("<Q", view, pos)
        pos += 8
        if pos + size > len(view):
            raise ValueError("truncated buffer blob")
        bufs.append(bytes(view[pos : pos + size]))
        pos += size
    return bufs


def _json_default(obj):
    if isinstance(obj, datetime):
        return iso_utc(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


# one encoder for every value (json.dumps with ``default`` builds a new one per call);
# the same settings as json.dumps, so the same text
_encode_json = json.JSONEncoder(default=_json_default).encode


def encode_value(key: str, kind: str, value, log: logging.Logger):
    """The SQL value stored for ``value``; never raises."""
    if value is None:
        return None
    try:
        if kind == "json":
            return _encode_json(value)
        if kind == "bufs":
            return pack_buffers(value)
        if kind == "time":
            if isinstance(value, str):
                try:
                    value = datetime.fromisoformat(value)
                except ValueError:
                    return value
            return iso_utc(value)
        if kind == "real":
            return float(value)
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, (str, float)):
            return value
        if isinstance(value, int) and -_INT64 <= value < _INT64:
            return value
        return str(value)
    except Exception as e:
        log.warning("Storing %s of a task record as text: %s", key, e)
        if kind == "bufs":
            return None
        return json.dumps(repr(value)) if kind == "json" else repr(value)


def decode_value(key: str, kind: str, raw, log: logging.Logger):
    """The Python value of a stored SQL value; never raises."""
    if raw is None or kind in ("text", "real"):
        return raw
    try:
        if kind == "time":
            return datetime.fromisoformat(raw)
        if kind == "bufs":
            return unpack_buffers(raw)
        value = json.loads(raw)
        if (
            key in HEADER_KEYS
            and isinstance(value, dict)
            and isinstance(value.get("date"), str)
        ):
            try:
                value["date"] = datetime.fromisoformat(value["date"])
            except ValueError:
                pass
        return value
    except (ValueError, TypeError, struct.error) as e:
        log.warning("Unreadable %s in a task record: %s", key, e)
        return None if kind == "bufs" else raw
