"""``ResultsBrowser``: the hub's task records as a sortable, paged, filterable grid.

The browser keeps a copy of the records' list fields (never their buffers): one full query at
first (and every ``resync_interval``, which also drops purged records), then only records
submitted, started or completed since the last poll.  Filters (state, engine, label glob, time
range), sorting and paging work on that copy, so they answer at once.  Selecting a row loads
its details (stdout, stderr, displayed outputs, result preview, the traceback without this
package's own frames); checked rows can be resubmitted, or exported to a pandas DataFrame.
Every click is also a method (``filter``, ``sort_by``, ``go_to``, ``select``, ``check``,
``resubmit``, ``to_dataframe``), so the browser works the same from code and without a frontend.
"""

from __future__ import annotations

import fnmatch
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from typing import Optional

from traitlets import Any, Bool, Dict, Enum, Float, Integer, List, Unicode

from .live import LiveView, SourceEnded, describe
from .records import DETAIL_KEYS, LIST_KEYS, STATE_FILTERS, cells_of, error_text, execute_text, row_of, \
    sort_value, when
from .render import clock, duration, short_id, shorten, template, text_table
from .status import check_hub, client_query

#: the grid's columns: (key, heading)
COLUMNS = (("msg_id", "task"), ("name", "function / label"), ("engine", "engine"), ("state", "state"),
           ("submitted", "submitted"), ("started", "started"), ("completed", "completed"),
           ("duration", "duration"), ("result", "result / error"))
TIME_RANGES = OrderedDict([("any time", None), ("last 5 min", 300), ("last 15 min", 900), ("last hour", 3600),
                           ("last day", 86400)])
_GLOB = set("*?[")
_EPOCH = datetime.min.replace(tzinfo=timezone.utc)


class ResultsBrowser(LiveView):
    """Browse the hub's task records: filter, sort, page, inspect one, resubmit or export several."""

    update_interval = Float(2.0, config=True, help="Seconds between two queries of new task records while live.")
    page_size = Integer(15, config=True, help="Rows on one page of the grid.")
    max_records = Integer(100_000, config=True,
                          help="Most records the browser keeps (the most recently submitted); older ones are "
                               "not listed.")
    output_chars = Integer(4000, config=True, help="Longest stdout / stderr / result text shown for one record.")
    resync_interval = Float(60.0, config=True,
                            help="Seconds between two full queries of the records (which also drop purged ones).")
    late_margin = Float(5.0, config=True,
                        help="How far back (seconds) each poll looks for records the hub recorded late.")
    export_name = Unicode("results_df", config=True,
                          help="Variable the export button binds the DataFrame of the selection to.")

    state_filter = Enum(list(STATE_FILTERS), "all", help="Records in this state (group) only.")
    engine_filter = Any(None, allow_none=True, help="Records of this engine id only (None: every engine).")
    label_filter = Unicode("", help="Records whose function name or label matches this glob (plain text matches "
                                    "anywhere).")
    time_filter = Enum(list(TIME_RANGES), "any time", help="Records submitted within this last stretch of time.")
    after = Any(None, allow_none=True, help="Records submitted at or after this datetime only (None: no bound).")
    before = Any(None, allow_none=True, help="Records submitted at or before this datetime only (None: no bound).")
    sort_key = Enum([k for k, _ in COLUMNS], "submitted", help="The column the grid is sorted by.")
    descending = Bool(True, help="Whether the sort is descending.")
    page = Integer(0, help="The page shown (0-based).")
    total = Integer(0, help="Records matching the filters.")
    total_all = Integer(0, help="Records the browser knows of.")
    records = List(help="The rows of the page shown (dicts: msg_id, name, engine, state, times, error, preview).")
    checked = List(help="msg_ids of the checked rows (the selection resubmit and export act on).")
    selected = Unicode(None, allow_none=True, help="msg_id of the record whose details are shown.")
    detail = Dict(help="The selected record: msg_id, state, engine, times, stdout, stderr, outputs, result, error.")
    message = Unicode("", help="Outcome of the last action (resubmit, export).")

    def __init__(self, client, hub_id: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        self.client = client
        self.hub_id = hub_id
        self._rows: dict = {}  # msg_id -> row
        self._uuids: dict = {}  # engine uuid -> id
        self._previews: OrderedDict = OrderedDict()  # msg_id -> result preview (bounded)
        self._names: dict = {}  # msg_id -> function name, where the hub reports them
        self._watermarks: dict = {}
        self._last_full: Optional[float] = None
        self._stream_since: Optional[float] = None  # the hub's time of the last task-stream answer
        self._matching: list = []

    # ------------------------------------------------------------------ polling
    def _fetch(self):
        import time

        if self.hub_id:
            check_hub(self.hub_id)
        client = self.client
        t = self.query_timeout
        with self._lock:
            full = self._last_full is None or time.monotonic() - self._last_full > self.resync_interval
            marks = dict(self._watermarks)
            page_ids = [r["msg_id"] for r in self.records if r["state"] == "done" and r["kind"] == "apply"
                        and r["msg_id"] not in self._previews]
        engines = client_query(client, client.engines_info, timeout=t)
        data = {"full": full, "mono": time.monotonic(), "uuids": {e["uuid"]: e["id"] for e in engines}}
        if full:
            data["records"] = client_query(client, client.db_query, {}, keys=LIST_KEYS, timeout=t)
        else:
            data["records"] = []
            for key in ("submitted", "started", "completed"):
                since = marks.get(key, _EPOCH) - timedelta(seconds=self.late_margin)
                data["records"] += client_query(client, client.db_query, {key: {"$gte": since}}, keys=LIST_KEYS,
                                                timeout=t)
        if hasattr(client, "task_stream"):
            try:
                stream = client_query(client, client.task_stream, since=None if full else self._stream_since,
                                      timeout=t)
                data["names"] = {task["msg_id"]: task.get("name") for task in stream.get("tasks") or ()}
                data["stream_now"] = stream.get("now")
            except Exception as e:  # a hub without the query: names stay unknown
                self.log.debug("no task stream from this hub: %s", describe(e))
        data["previews"] = self._load_previews(page_ids)
        return data

    def _apply(self, data) -> None:
        self._uuids.update(data["uuids"])
        self._names.update({k: v for k, v in (data.get("names") or {}).items() if v})
        self._stream_since = data.get("stream_now", self._stream_since)
        self._remember_previews(data["previews"])
        if data["full"]:
            self._rows = {}
            self._last_full = data["mono"]
        for rec in data["records"]:
            self._rows[rec["msg_id"]] = row_of(rec, self._uuids, self._names.get(rec["msg_id"]))
            for key in ("submitted", "started", "completed"):
                if rec.get(key) is not None and rec[key] > self._watermarks.get(key, _EPOCH):
                    self._watermarks[key] = rec[key]
        if len(self._rows) > self.max_records:
            keep = sorted(self._rows.values(), key=lambda r: r["submitted"] or _EPOCH)[-self.max_records:]
            self._rows = {r["msg_id"]: r for r in keep}
        self._recompute()

    def _load_previews(self, msg_ids: list) -> dict:
        """Short reprs of the results of ``msg_ids`` (fetched from the hub; blocking)."""
        previews = {}
        for msg_id in msg_ids:
            try:
                value = client_query(self.client, lambda m: self.client.get_result(m).get(self.query_timeout),
                                     msg_id, timeout=self.query_timeout)
                previews[msg_id] = shorten(repr(value), 200)
            except SourceEnded:
                raise
            except Exception as e:  # e.g. a value this kernel cannot unpickle, or a large result
                previews[msg_id] = f"<not loadable here: {describe(e)}>"
        return previews

    def _remember_previews(self, previews: dict) -> None:
        self._previews.update(previews)
        while len(self._previews) > 1000:
            self._previews.popitem(last=False)

    # ------------------------------------------------------------------ filtering, sorting, paging
    def _matches(self, row: dict, now: datetime) -> bool:
        states = STATE_FILTERS[self.state_filter]
        if states is not None and row["state"] not in states:
            return False
        if self.engine_filter is not None and row["engine"] != self.engine_filter:
            return False
        if self.label_filter:
            pattern = self.label_filter if _GLOB & set(self.label_filter) else f"*{self.label_filter}*"
            if not (fnmatch.fnmatch(row["label"], pattern) or fnmatch.fnmatch(row["name"], pattern)):
                return False
        submitted = row["submitted"]
        window = TIME_RANGES[self.time_filter]
        bounds = [(self.after, 1), (self.before, -1)]
        if window is not None:
            bounds.append((now - timedelta(seconds=window), 1))
        for bound, sign in bounds:
            if bound is not None and (submitted is None or sign * (submitted - _aware(bound)).total_seconds() < 0):
                return False
        return True

    def _recompute(self) -> None:
        """Filter, sort and page the rows (under the lock)."""
        now = datetime.now(timezone.utc)
        rows = [r for r in self._rows.values() if self._matches(r, now)]
        present = [r for r in rows if not sort_value(r, self.sort_key)[0]]
        missing = [r for r in rows if sort_value(r, self.sort_key)[0]]
        present.sort(key=lambda r: (sort_value(r, self.sort_key), r["msg_id"]), reverse=self.descending)
        self._matching = present + missing
        self.total, self.total_all = len(self._matching), len(self._rows)
        self.page = max(0, min(self.page, self.pages - 1))
        start = self.page * self.page_size
        self.records = [dict(r, preview=self._previews.get(r["msg_id"], r["preview"]))
                        for r in self._matching[start:start + self.page_size]]
        self.checked = [m for m in self.checked if m in self._rows]
        if self.selected in self._rows and self._rows[self.selected]["state"] != self.detail.get("state"):
            self._load_detail(self.selected)  # it finished meanwhile
        self.request_render()

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // max(1, self.page_size)))

    # ------------------------------------------------------------------ actions
    def filter(self, state: Optional[str] = None, engine=..., label: Optional[str] = None,
               time: Optional[str] = None, after=..., before=...) -> "ResultsBrowser":
        """Change filters (``engine=None``: every engine; ``time``: one of TIME_RANGES; ``after`` / ``before``:
        datetimes bounding the submission time) and show page 1."""
        with self._lock:
            if state is not None:
                self.state_filter = state
            if engine is not ...:
                self.engine_filter = engine
            if label is not None:
                self.label_filter = label
            if time is not None:
                self.time_filter = time
            if after is not ...:
                self.after = after
            if before is not ...:
                self.before = before
            self.page = 0
            self._after_action()
        return self

    def sort_by(self, key: str, descending: Optional[bool] = None) -> "ResultsBrowser":
        """Sort by column ``key``; by default a second sort by the same column reverses it."""
        with self._lock:
            if descending is None:
                descending = not self.descending if key == self.sort_key else key not in ("msg_id", "name")
            self.sort_key, self.descending = key, descending
            self._after_action()
        return self

    def go_to(self, page: int) -> "ResultsBrowser":
        """Show page ``page`` (0-based; clamped to the pages there are)."""
        with self._lock:
            self.page = page
            self._after_action()
        return self

    def _after_action(self) -> None:
        self._recompute()
        missing = [r["msg_id"] for r in self.records if r["state"] == "done" and r["kind"] == "apply"
                   and r["msg_id"] not in self._previews]
        if missing:
            self._remember_previews(self._load_previews(missing))
            self._recompute()
        self.render_now()

    def select(self, msg_id: Optional[str]) -> dict:
        """Show the details of one record (None: none); returns them."""
        with self._lock:
            self.selected = msg_id
            if msg_id is None:
                self.detail = {}
            else:
                self._load_detail(msg_id)
            self.render_now()
            return self.detail

    def check(self, msg_id: str, on: bool = True) -> None:
        """Add a record to the selection (``on=False``: remove it)."""
        with self._lock:
            rest = [m for m in self.checked if m != msg_id]
            self.checked = rest + [msg_id] if on else rest
            self.render_now()

    def check_page(self, on: bool = True) -> None:
        """Check (or uncheck) every row of the page shown."""
        with self._lock:
            ids = [r["msg_id"] for r in self.records]
            rest = [m for m in self.checked if m not in ids]
            self.checked = rest + ids if on else rest
            self.render_now()

    def _load_detail(self, msg_id: str) -> None:
        try:
            recs = client_query(self.client, self.client.db_query, {"msg_id": msg_id},
                                keys=DETAIL_KEYS + ["display_data"], timeout=self.query_timeout)
        except SourceEnded:
            raise
        except Exception as e:
            self.detail = {"msg_id": msg_id, "state": "unknown", "error": describe(e)}
            return
        if not recs:
            self.detail = {"msg_id": msg_id, "state": "unknown", "error": "no such record (purged?)"}
            return
        rec = recs[0]
        row = row_of(rec, self._uuids, self._names.get(msg_id))
        limit = self.output_chars
        outputs = [((d or {}).get("data") or {}).get("text/plain", "") for d in rec.get("display_data") or ()]
        detail = dict(row, stdout=(rec.get("stdout") or "")[-limit:], stderr=(rec.get("stderr") or "")[-limit:],
                      outputs=[o[:limit] for o in outputs if o], result="", error=error_text(rec)[-limit:],
                      code=((rec.get("execute_input") or {}).get("code") or "")[:limit])
        if row["state"] == "done":
            text = execute_text(rec)
            if text is None and row["kind"] == "apply":
                text = self._load_previews([msg_id])[msg_id]
            detail["result"] = (text or "")[:limit]
        self.detail = detail

    def resubmit(self, msg_ids=None) -> dict:
        """Resubmit records (default: the checked ones, else the selected one); returns {old: new msg_id}."""
        with self._lock:
            if isinstance(msg_ids, str):
                ids = [msg_ids]
            elif msg_ids is not None:
                ids = list(msg_ids)
            else:
                ids = list(self.checked) or ([self.selected] if self.selected else [])
            if not ids:
                raise ValueError("select the tasks to resubmit first (check their rows, or click one)")
            mapping = dict(zip(ids, self.client.resubmit(ids).msg_ids))
            shown = ", ".join(f"{self._short(old)} → {self._short(new)}" for old, new in list(mapping.items())[:3])
            more = f" and {len(mapping) - 3} more" if len(mapping) > 3 else ""
            self.message = f"resubmitted {len(mapping)} task{'s' if len(mapping) != 1 else ''}: {shown}{more}"
            self.checked = [m for m in self.checked if m not in mapping]
            self.render_now()
        self.poke()
        return mapping

    @staticmethod
    def _short(msg_id: str) -> str:
        return short_id(msg_id)

    def to_dataframe(self, which: str = "checked"):
        """The rows as a pandas DataFrame: ``checked`` (the selection; all matching rows when none is
        checked), ``matching`` (every row the filters let through) or ``page``."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("exporting needs pandas: pip install pandas (or jupyter_hub_ctl[dataframe])") from None
        with self._lock:
            if which == "checked" and self.checked:
                rows = [self._rows[m] for m in self.checked if m in self._rows]
            elif which == "page":
                rows = list(self.records)
            else:
                rows = list(self._matching)
            columns = ["msg_id", "name", "label", "kind", "engine", "state", "submitted", "started", "completed",
                       "duration", "error", "preview", "resubmitted"]
            table = [{c: (self._previews.get(r["msg_id"], r["preview"]) if c == "preview" else r.get(c))
                      for c in columns} for r in rows]
        return pd.DataFrame(table, columns=columns)

    def export(self, _button=None):
        """The export button: the selection as a DataFrame, bound to ``export_name`` in the user's namespace."""
        from .live import _shell

        frame = self.to_dataframe()
        shell = _shell()
        if shell is not None:
            shell.user_ns[self.export_name] = frame
            self.message = f"exported {len(frame)} rows to `{self.export_name}` (a pandas DataFrame)"
        else:
            self.message = f"exported {len(frame)} rows (no IPython namespace to bind them in)"
        self.render_now()
        return frame

    # ------------------------------------------------------------------ text and HTML
    def _title(self) -> str:
        engine = "all" if self.engine_filter is None else self.engine_filter
        title = (f"task records: {self.total} of {self.total_all} (state={self.state_filter}, engine={engine}, "
                 f"label={self.label_filter or '*'}, {self.time_filter}) · page {self.page + 1} of {self.pages}")
        if self.updated:
            title += f" · updated {clock(self.updated)}"
        return title + (f" · not updating: {self.ended}" if self.ended else "")

    def _context(self) -> dict:
        return {"title": self._title(), "columns": COLUMNS, "sort_key": self.sort_key, "descending": self.descending,
                "rows": [dict(cells_of(r), full_id=r["msg_id"], state=r["state"]) for r in self.records],
                "message": self.message, "errors": [m for m in (self.problem, self.error) if m],
                "detail": self._detail_context(), "ended": bool(self.ended)}

    def _detail_context(self) -> dict:
        d = self.detail
        if not d:
            return {}
        return dict(d, submitted_at=when(d.get("submitted")), started_at=when(d.get("started")),
                    completed_at=when(d.get("completed")),
                    took=duration(d.get("started"), d.get("completed")) if d.get("started") else "")

    def text(self) -> str:
        rows = [[c for c in cells_of(r).values()] for r in self.records]
        parts = [self._title(), text_table([h for _, h in COLUMNS], rows, "no matching records")]
        parts += [m for m in (self.message, self.problem, self.error) if m]
        d = self.detail
        if d:
            parts.append(f"{d['msg_id']}: {d['state']}" + (f" on engine {d['engine']}" if d.get("engine") is not None
                                                             else ""))
            for key in ("stdout", "stderr", "result", "error"):
                if d.get(key):
                    parts.append(f"--- {key}\n{d[key]}")
        return "\n".join(parts)

    def html(self) -> str:
        context = self._context()
        return template("browser.html.j2").render(v=context, errors=context["errors"])

    def _build(self, widgets):
        from .grid import build_grid

        return build_grid(self, widgets)

    def _render(self) -> None:
        from .grid import render_grid

        render_grid(self)


def _aware(dt: datetime) -> datetime:
    """``dt`` with a timezone (naive datetimes are taken as local time)."""
    return dt if dt.tzinfo is not None else dt.astimezone()
