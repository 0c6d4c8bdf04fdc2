"""Task records: the shape every store keeps (PROTOCOL.md §9.1)."""

from __future__ import annotations

from ..wire.dates import parse_date
from ..wire.session import Msg
from .db.base import RECORD_KEYS

DATE_KEYS = ("submitted", "started", "completed", "received")
#: request metadata key in which our client names the task (the function's name)
NAME_KEY = "hubctl_name"
MAX_NAME = 200


def task_name(header: dict, md: dict) -> str:
    """The task's name for the task stream: what the client named it, else its message type."""
    name = md.get(NAME_KEY)
    if isinstance(name, str) and name:
        return name[:MAX_NAME]
    return str(header.get("msg_type") or "")[:MAX_NAME]


def empty_record() -> dict:
    """A record with every key present and nothing known yet."""
    rec = dict.fromkeys(RECORD_KEYS)
    rec["stdout"] = ""
    rec["stderr"] = ""
    return rec


def buffers_of(frames) -> list:
    """Buffers as bytes-like objects the stores can keep (no copy for zmq Frames)."""
    out = []
    for f in frames:
        out.append(f if isinstance(f, bytes) else f.buffer)
    return out


def init_record(msg: Msg) -> dict:
    """The record of a request, from its parsed message."""
    header = dict(msg.header)
    submitted = parse_date(header.get("date"))
    header["date"] = submitted
    md = msg.metadata
    return {
        "msg_id": msg.msg_id,
        "header": header,
        "metadata": md,
        "content": msg.content,
        "buffers": buffers_of(msg.buffers),
        "submitted": submitted,
        "client_uuid": header.get("session"),
        "engine_uuid": None,
        "started": None,
        "completed": None,
        "resubmitted": None,
        "received": None,
        "result_header": None,
        "result_metadata": None,
        "result_content": None,
        "result_buffers": None,
        "queue": None,
        "execute_input": None,
        "execute_result": None,
        "error": None,
        "stdout": "",
        "stderr": "",
        "label": md.get("label") if isinstance(md.get("label"), str) else None,
        "name": task_name(header, md),
        "changed": None,  # the Hub's stamp, set when it stores the record
    }
