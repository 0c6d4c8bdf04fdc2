"""Task records as the results browser shows them: state, rows, previews and trimmed tracebacks."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Optional

from .render import duration, shorten, short_id

#: what a row of the grid needs from each record (no buffers: those stay in the hub)
LIST_KEYS = ["msg_id", "engine_uuid", "label", "submitted", "started", "completed", "result_content", "header",
             "execute_result", "resubmitted"]
DETAIL_KEYS = LIST_KEYS + ["result_header", "stdout", "stderr", "execute_input"]
#: task states, and the groups the state filter offers
STATES = ("queued", "running", "done", "failed", "aborted")
STATE_FILTERS = {"all": None, "unfinished": {"queued", "running"}, "queued": {"queued"},
                 "running": {"running"}, "done": {"done"}, "failed": {"failed", "aborted"}}

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# frames of this package's (or ipyparallel's) own machinery around a user's function
_INTERNAL = re.compile(r'File "[^"]*[/\\](jupyter_hub_ctl|ipyparallel)[/\\][^"]*"')


def record_state(rec: dict) -> str:
    """queued, running, done (ok), failed (error) or aborted."""
    rc = rec.get("result_content") or {}
    status = rc.get("status")
    if rec.get("completed") is None and not status:
        return "running" if rec.get("started") is not None else "queued"
    if status == "error":
        return "failed"
    return "aborted" if status == "aborted" else "done"


def task_kind(rec: dict) -> str:
    """apply or execute (the request's type without ``_request``)."""
    return ((rec.get("header") or {}).get("msg_type") or "").replace("_request", "")


def error_line(rec: dict) -> str:
    """``Type: message`` of a failed record ('' otherwise)."""
    rc = rec.get("result_content") or {}
    if rc.get("status") == "error":
        return f"{rc.get('ename', 'Error')}: {rc.get('evalue', '')}"
    if rc.get("status") == "aborted":
        return "aborted before it ran"
    return ""


def execute_text(rec: dict) -> Optional[str]:
    """The text/plain result of an execute request (None for other records)."""
    data = (rec.get("execute_result") or {}).get("data") or {}
    return data.get("text/plain") if data else None


def row_of(rec: dict, engine_ids: dict, name: Optional[str] = None) -> dict:
    """One grid row: what is shown, plus the raw values sorting and filtering use."""
    state = record_state(rec)
    submitted, started, completed = rec.get("submitted"), rec.get("started"), rec.get("completed")
    elapsed = (completed - started).total_seconds() if started is not None and completed is not None else None
    label = rec.get("label") or ""
    kind = task_kind(rec)
    return {"msg_id": rec["msg_id"], "short_id": short_id(rec["msg_id"]), "name": name or label or kind,
            "label": label, "kind": kind, "engine": engine_ids.get(rec.get("engine_uuid")), "state": state,
            "submitted": submitted, "started": started, "completed": completed, "duration": elapsed,
            "error": error_line(rec), "preview": execute_text(rec), "resubmitted": rec.get("resubmitted") or ""}


def when(dt) -> str:
    return dt.astimezone().strftime("%H:%M:%S") if isinstance(dt, datetime) else ""


def cells_of(row: dict) -> dict:
    """The grid's text for each column of ``row``."""
    preview = row["error"] or row.get("preview") or ""
    return {"msg_id": row["short_id"], "name": row["name"], "engine": "-" if row["engine"] is None else str(row["engine"]),
            "state": row["state"], "submitted": when(row["submitted"]), "started": when(row["started"]),
            "completed": when(row["completed"]), "duration": duration(row["started"], row["completed"]),
            "result": shorten(preview, 120)}


def trim_traceback(lines) -> str:
    """A remote traceback as text, without this package's own frames (``client/ops.py``'s
    ``map_chunk``, the engine's executor) and without terminal colours."""
    if isinstance(lines, str):
        lines = [lines]
    kept = []
    for entry in lines or ():
        text = _ANSI.sub("", str(entry))
        if _INTERNAL.search(text):
            continue
        kept.append(text if text.endswith("\n") else text + "\n")
    return "".join(kept).rstrip("\n")


def error_text(rec: dict) -> str:
    rc = rec.get("result_content") or {}
    if rc.get("status") != "error":
        return ""
    tb = trim_traceback(rc.get("traceback") or [])
    return tb or error_line(rec)


def sort_value(row: dict, key: str) -> tuple:
    """A key that sorts rows by column ``key``: missing values last, times by time, ids by submission."""
    if key == "msg_id":
        key = "submitted"
    elif key == "result":
        return (False, row["error"] or row.get("preview") or "")
    value = row.get(key)
    if isinstance(value, datetime):
        value = value.timestamp()
    return (value is None, 0 if value is None else value)
