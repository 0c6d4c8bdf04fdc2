"""Per-task metadata (``ar.metadata``, ``rc.metadata``) with ipyparallel's documented keys.

Every timestamp is an aware UTC ``datetime``.  A task's metadata is built from its reply and
outputs when it is read, not on the client's IO thread for every reply (that keeps results
coming in fast); it is cached once the task is done.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ..wire.dates import parse_date

KEYS = ("msg_id", "submitted", "started", "completed", "received", "engine_uuid", "engine_id", "follow", "after",
        "status", "execute_input", "execute_result", "error", "stdout", "stderr", "outputs", "data", "label",
        "is_broadcast", "is_coalescing")
DATE_KEYS = ("submitted", "started", "completed", "received")


class Metadata(dict):
    """A dict with a fixed set of keys (``KEYS``) that are also attributes: ``md.engine_id``."""

    def __init__(self, *args, **kwargs):
        super().__init__(msg_id=None, submitted=None, started=None, completed=None, received=None, engine_uuid=None,
                         engine_id=None, follow=[], after=[], status=None, execute_input=None, execute_result=None,
                         error=None, stdout="", stderr="", outputs=[], data={}, label=None, is_broadcast=False,
                         is_coalescing=False)
        for k, v in dict(*args, **kwargs).items():
            self[k] = v

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        if key not in self:
            raise AttributeError(key)
        self[key] = value

    def __setitem__(self, key, value):
        if key not in self:
            raise KeyError(f"{key!r} is not a metadata key (keys: {', '.join(KEYS)})")
        super().__setitem__(key, value)


def from_epoch(t):
    return None if t is None else datetime.fromtimestamp(t, timezone.utc)


def _output_fields(outputs: list, md: Metadata) -> None:
    """Fill execute_result / error / outputs / data from a task's IOPub messages."""
    displays = []
    for item in outputs:
        kind, content = item["msg_type"], item["content"]
        if kind == "display_data":
            displays.append(content)
        elif kind == "execute_result":
            md["execute_result"] = content
        elif kind == "error":
            from .errors import RemoteError

            md["error"] = RemoteError.from_content(content)
        elif kind == "execute_input":
            md["execute_input"] = content.get("code")
    md["outputs"] = displays


def of_message(msg) -> Metadata:
    """The metadata of one submitted message, from what the client has seen of it so far."""
    reply = msg.reply or {}
    rmd = reply.get("metadata") or {}
    header = reply.get("header") or {}
    content = reply.get("content") or {}
    md = Metadata(
        msg_id=msg.msg_id, submitted=from_epoch(msg.submitted), received=from_epoch(msg.received),
        engine_uuid=msg.engine_uuid, engine_id=msg.engine_id, stdout=msg.stdout, stderr=msg.stderr,
        started=parse_date(rmd.get("started")), completed=parse_date(header.get("date")),
        status=content.get("status"), label=rmd.get("label", msg.label), follow=rmd.get("follow", []),
        after=rmd.get("after", []), is_broadcast=bool(rmd.get("is_broadcast", False)),
        is_coalescing=bool(rmd.get("is_coalescing", False)), execute_input=msg.code,
    )
    _output_fields(msg.outputs, md)
    return md


def of_record(rec: dict, engine_ids: dict) -> Metadata:
    """The metadata of a task from the hub's record of it (``result_request`` / ``db_query``)."""
    rmd = rec.get("result_metadata") or {}
    io = rec.get("io") or rec
    uuid = rmd.get("engine") or rec.get("engine_uuid")
    md = Metadata(
        msg_id=(rec.get("header") or {}).get("msg_id") or rec.get("msg_id"),
        submitted=parse_date((rec.get("header") or {}).get("date") or rec.get("submitted")),
        started=parse_date(rmd.get("started") or rec.get("started")),
        completed=parse_date((rec.get("result_header") or {}).get("date") or rec.get("completed")),
        received=parse_date(rec.get("received")),
        engine_uuid=uuid, engine_id=engine_ids.get(uuid), status=(rec.get("result_content") or {}).get("status"),
        label=rmd.get("label"), stdout=io.get("stdout") or "", stderr=io.get("stderr") or "",
        execute_input=io.get("execute_input"), execute_result=io.get("execute_result"),
        is_broadcast=bool(rmd.get("is_broadcast", False)), is_coalescing=bool(rmd.get("is_coalescing", False)),
    )
    if io.get("error"):
        from .errors import RemoteError

        md["error"] = RemoteError.from_content(io["error"], engine_ids)
    return md


__all__ = ["Metadata", "KEYS", "DATE_KEYS", "of_message", "of_record", "from_epoch"]
