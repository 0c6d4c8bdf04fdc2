"""Plain-text and HTML tables shared by the magics and the widgets (no widget imports here)."""

from __future__ import annotations

import html
import time
from typing import Iterable, Optional, Sequence

TABLE_STYLE = "border-collapse:collapse;font-family:monospace;font-size:12px"
CELL_STYLE = "padding:1px 8px;text-align:left;border-bottom:1px solid #ddd"


def esc(value) -> str:
    return html.escape("" if value is None else str(value))


def text_table(headers: Sequence[str], rows: Iterable[Sequence], empty: str = "(none)") -> str:
    """Rows as aligned columns; ``empty`` when there are none."""
    rows = [["" if c is None else str(c) for c in r] for r in rows]
    if not rows:
        return empty
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def html_table(headers: Sequence[str], rows: Iterable[Sequence], empty: str = "(none)",
               row_styles: Optional[Sequence[str]] = None, css_class: str = "hubctl-table") -> str:
    """Rows as an HTML table (every cell escaped); ``empty`` in italics when there are none."""
    rows = list(rows)
    if not rows:
        return f"<i>{esc(empty)}</i>"
    head = "".join(f"<th style='{CELL_STYLE}'>{esc(h)}</th>" for h in headers)
    body = []
    for i, r in enumerate(rows):
        style = f" style='{row_styles[i]}'" if row_styles and row_styles[i] else ""
        cells = "".join(f"<td style='{CELL_STYLE}'>{esc(c)}</td>" for c in r)
        body.append(f"<tr{style}>{cells}</tr>")
    return (f"<table class='{css_class}' style='{TABLE_STYLE}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def age(seconds: Optional[float]) -> str:
    """A short human duration: 0.4s, 12s, 3m05s, 2h10m; '-' when unknown."""
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def clock(epoch: Optional[float] = None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(time.time() if epoch is None else epoch))


def shorten(text, limit: int = 80) -> str:
    text = "" if text is None else str(text)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def text_bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


# ---------------------------------------------------------------- hub health
BANNER_STYLE = ("background:#fff4d6;border-left:4px solid #e65100;color:#5d2c00;padding:4px 8px;"
                "margin:4px 0;font-family:sans-serif;font-size:13px")


def health_summary(health) -> dict:
    """``{state, reasons, degraded_since}`` of a hub's health reply (``Client.health()``); {} when unknown."""
    if not isinstance(health, dict) or health.get("state") not in ("ok", "degraded"):
        return {}
    reasons = health.get("reasons")
    return {"state": health["state"],
            "reasons": [str(r) for r in reasons if r] if isinstance(reasons, list) else [],
            "degraded_since": health.get("degraded_since") if health["state"] == "degraded" else None}


def _since(iso_time) -> str:
    from datetime import datetime

    if not iso_time:
        return ""
    try:
        return " since " + datetime.fromisoformat(str(iso_time)).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return f" since {iso_time}"


def degraded_lines(health: dict) -> list:
    """The degraded banner as text lines ([] unless ``health`` says degraded)."""
    if not health or health.get("state") != "degraded":
        return []
    lines = [f"DEGRADED{_since(health.get('degraded_since'))} (tasks are still scheduled):"]
    lines += [f"  - {r}" for r in health.get("reasons") or ["no reason given"]]
    return lines


def degraded_html(health: dict) -> str:
    """The degraded banner as HTML ('' unless ``health`` says degraded)."""
    if not health or health.get("state") != "degraded":
        return ""
    items = "".join(f"<li>{esc(r)}</li>" for r in health.get("reasons") or ["no reason given"])
    return (f"<div class='hubctl-degraded' role='alert' style='{BANNER_STYLE}'>"
            f"<b>Hub degraded{esc(_since(health.get('degraded_since')))}</b> — tasks are still scheduled"
            f"<ul style='margin:2px 0 2px 18px;padding:0'>{items}</ul></div>")


class TextAndHtml:
    """Mixin: shows as ``self.text()`` in a terminal and in repr(), as ``self.html()`` in a notebook."""

    def _repr_html_(self) -> str:
        return self.html()

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(self.text())

    def __repr__(self) -> str:
        return self.text()


class Table(TextAndHtml):
    """A static table that shows as text in a terminal and as HTML in a notebook."""

    def __init__(self, title: str, headers: Sequence[str], rows: Sequence[Sequence], empty: str = "(none)",
                 data=None, health: Optional[dict] = None):
        self.title = title
        self.headers = list(headers)
        self.rows = [list(r) for r in rows]
        self.empty = empty
        self.data = data  # the structured data behind the table, for programs
        self.health = health or {}  # a health_summary: a degraded hub gets a banner above the table

    def __len__(self) -> int:
        return len(self.rows)

    def text(self) -> str:
        parts = [self.title] if self.title else []
        parts += degraded_lines(self.health)
        parts.append(text_table(self.headers, self.rows, self.empty))
        return "\n".join(parts)

    def html(self) -> str:
        title = f"<b>{esc(self.title)}</b><br>" if self.title else ""
        return title + degraded_html(self.health) + html_table(self.headers, self.rows, self.empty)
