"""Where messages enter the controller: parse once, count and drop the bad, answer the signed.

Every message a client or an engine sends reaches the controller through one of its
ROUTER sockets and is parsed there exactly once with the Hub's session, so one replay
memory (a `ReplayWindow`) covers them all.  A message that fails is counted under its
socket and reason.  If it failed after its signed header was read (bad JSON further on,
nesting too deep, dated outside the window), the sender holds the key and is waiting: it
is answered with an error naming the reason.  Unsigned, badly signed and replayed
messages are dropped without an answer.
"""

from __future__ import annotations

from typing import Callable, Optional

from ..wire.session import MessageError, Msg, WireSession
from .errors import error_content

#: reasons whose sender gets no answer (no valid signature, or the message was answered before)
SILENT = frozenset(("unsigned", "bad-signature", "replay", "short", "no-delimiter", "no-ident", "bad-header"))


#: reasons about when a message was sent, not what it holds
DATED = frozenset(("expired", "future", "no-date"))


def refusal(e: MessageError) -> Optional[dict]:
    """The error content answering a refused message, or None if it gets no answer."""
    if e.header is None or e.reason in SILENT:
        return None
    what = "message refused by the controller" if e.reason in DATED else "malformed message"
    return error_content("MessageError", f"{what} ({e})")


def reply_type(header: dict) -> str:
    t = str(header.get("msg_type", ""))
    return t[: -len("_request")] + "_reply" if t.endswith("_request") else "hub_error"


def accept(session: WireSession, raw: list, min_idents: int, drop: Callable, socket: str,
           content: bool = True, answer: Optional[Callable] = None) -> Optional[Msg]:
    """Parse a routed message; a bad one is counted (``drop(reason, socket)``) and dropped (None).

    ``answer(idents, header, error_content)`` is called for a refused message that deserves an answer.
    """
    idents = None
    try:
        idents, parts = session.split(raw)
        if len(idents) < min_idents:
            raise MessageError("no-ident")
        return session.parse(parts, content=content, idents=idents)
    except MessageError as e:
        drop(e.reason, socket)
        err = refusal(e)
        if err is not None and answer is not None and idents:
            answer(idents, e.header, err)
        return None
