"""Dates as the wire carries them: ISO-8601 strings, read as aware UTC datetimes."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional


def parse_date(value: Any) -> Optional[datetime]:
    """ISO-8601 string (or datetime) to an aware UTC datetime; None if unparsable."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt
