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


def wrap_exception(exc: BaseException, with_traceback: bool = False) -> dict:
    """Error content for an exception raised in the controller."""
    tb = None
    if with_traceback:
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    evalue = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return error_content(type(exc).__name__, evalue, tb)
