"""Plain-text tables, short formats, and the HTML templates shared by the magics and the widgets.

HTML comes from the Jinja2 templates in ``templates/`` (package data, autoescaped); their
colours are JupyterLab's ``--jp-*`` CSS variables (``templates/style.css``), so every repr and
widget follows the light and dark themes.  No widget imports here.
"""

from __future__ import annotations

import functools
import time
from typing import Iterable, Optional, Sequence


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
               row_classes: Optional[Sequence[str]] = None) -> str:
    """Rows as an HTML table (every cell escaped); ``empty`` in italics when there are none.

    ``row_classes`` names a state per row (e.g. ``busy``, ``error``), styled by ``style.css``."""
    return template("table.html.j2").render(headers=list(headers), rows=[list(r) for r in rows], empty=empty,
                                            row_classes=list(row_classes or ()))


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


# ---------------------------------------------------------------- templates
@functools.lru_cache(maxsize=None)
def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("jupyter_hub_ctl.kernel", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(age=age, clock=clock, shorten=shorten, since=_since)
    return env


def template(name: str):
    """The Jinja2 template ``templates/<name>`` (autoescaped)."""
    return _environment().get_template(name)


def with_style(body: str) -> str:
    """HTML for a notebook output: the stylesheet, then ``body`` inside the package's root element."""
    return template("page.html.j2").render(body=body)


# ---------------------------------------------------------------- hub health


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
    return template("degraded.html.j2").render(since=_since(health.get("degraded_since")),
                                               reasons=health.get("reasons") or ["no reason given"])


class TextAndHtml:
    """Mixin: shows as ``self.text()`` in a terminal and in repr(), as ``self.html()`` in a notebook."""

    def _repr_html_(self) -> str:
        return with_style(self.html())

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
        return template("titled.html.j2").render(title=self.title, banner=degraded_html(self.health),
                                                 table=html_table(self.headers, self.rows, self.empty))


def short_id(msg_id) -> str:
    """A task id short enough for a table, from its distinguishing end.

    Jupyter message ids are ``<session>_<pid>_<counter>``: the tasks of one map share the session
    and pid and differ only in the counter, so that is kept with the session's first characters
    (``0f07…17``).  Other ids keep their last 10 characters."""
    text = "" if msg_id is None else str(msg_id)
    session, _, rest = text.partition("_")
    counter = rest.rpartition("_")[2]
    if session and counter.isdigit():
        return f"{session[:4]}…{counter}"
    return text if len(text) <= 11 else "…" + text[-10:]


def duration(start, end) -> str:
    """``end - start`` of two datetimes as a short duration ('' if either is missing)."""
    if start is None or end is None:
        return ""
    seconds = (end - start).total_seconds()
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else age(seconds)


def nbytes(n) -> str:
    """A byte count the way people read it: 512 B, 3.4 MB, 1.2 GB ('' when unknown)."""
    if n is None:
        return ""
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""
