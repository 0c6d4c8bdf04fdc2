"""The error raised for a message that cannot be accepted."""

from __future__ import annotations

from typing import Optional


class MessageError(ValueError):
    """A message that cannot be accepted; ``reason`` is a short counter key.

    ``header`` (and ``parent``) are the message's own, when it got far enough to read them
    under a valid signature: the sender can then be answered with an error.
    """

    def __init__(self, reason: str, detail: str = "", header: Optional[dict] = None, parent: Optional[dict] = None):
        self.reason = reason
        self.detail = detail
        self.header = header
        self.parent = parent
        super().__init__(f"{reason}: {detail}" if detail else reason)
