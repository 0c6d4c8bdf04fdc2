"""Task records for the task-record store tests."""

from __future__ import annotations

from jupyter_hub_ctl.controller.db.base import RECORD_KEYS


def record(msg_id, **fields):
    """A full record (every key of RECORD_KEYS) with ``fields`` set, empty outputs and buffers."""
    rec = dict.fromkeys(RECORD_KEYS)
    rec.update(msg_id=msg_id, stdout="", stderr="", buffers=[], result_buffers=[])
    rec.update(fields)
    return rec
