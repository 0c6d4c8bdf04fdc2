"""Error dicts sent on the wire (``status: error`` content)."""

from __future__ import annotations

import traceback
from typing import Optional


def error_content(ename: str, evalue: str, tb: Optional[list] = None, engine_info: Optional[dict] = None) -> dict:
    """An error reply content: ``{status, ename, evalue, traceback, engine_info}``."""
    return {
        "status": "error",
        "ename": ename,
        "evalue": evalue,
        "traceback": tb if tb is not None else [f"{ename}: {evalue}"],
        "engine_info": engine_info or {},
    }


def engine_died(engine_id: int, engine_uuid: str, msg_id: str, method: str = "apply") -> dict:
    """The EngineError content for a task whose engine died under it.  Its ``engine_info`` has the
    fields an engine's own errors carry (ipyparallel's client renders ``[<engine_id>:<method>]``
    from them)."""
    return error_content("EngineError", f"Engine {engine_id} died while running task {msg_id!r}",
                         engine_info={"engine_uuid": engine_uuid, "engine_id": engine_id, "method": method})


def wrap_exception(exc: BaseException, with_traceback: bool = False) -> dict:
    """Error content for an exception raised in the controller."""
    tb = None
    if with_traceback:
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    evalue = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return error_content(type(exc).__name__, evalue, tb)
