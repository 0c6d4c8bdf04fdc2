"""jupyter_hub_ctl.controller.scheduler: load-balanced and broadcast scheduling."""

from __future__ import annotations

from typing import Callable, Optional

from ...wire.session import MessageError, Msg, WireSession


def accept(session: WireSession, raw: list, min_idents: int, count_error: Callable, log, what: str,
           content: bool = True) -> Optional[Msg]:
    """Parse a routed message; a bad one is counted, logged briefly and dropped (None)."""
    try:
        idents, parts = session.split(raw)
        if len(idents) < min_idents:
            raise MessageError("no-ident")
        return session.parse(parts, content=content, idents=idents)
    except MessageError as e:
        count_error(e.reason)
        log.warning("%s: dropped a bad message (%s)", what, e.reason)
        return None
