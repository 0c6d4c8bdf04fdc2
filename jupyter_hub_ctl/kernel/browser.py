"""``ResultsBrowser``: the hub's task records (``db_query``), filtered, with details and resubmit.

Filters: state (pending, completed, failed), engine, label (a glob; plain text matches
anywhere).  Selecting a record shows its stdout, stderr and result (or error); a failed
record can be resubmitted.  Everything a click does is also a method (``filter``,
``select``, ``resubmit``), so the browser works the same from code and without a frontend.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from traitlets import Any, Dict, Enum, Float, Integer, List, Unicode

from .live import LiveView, SourceEnded
from .render import esc, html_table, shorten, text_table

LIST_KEYS = ["msg_id", "engine_uuid", "label", "submitted", "started", "completed", "result_content", "header"]
DETAIL_KEYS = ["msg_id", "engine_uuid", "label", "submitted", "started", "completed", "result_content",
               "result_header", "header", "stdout", "stderr", "execute_result", "resubmitted"]
STATES = ("all", "pending", "completed", "failed")
_GLOB = set("*?[")


def record_state(rec: dict) -> str:
    """pending, completed (ok), or failed (error / aborted)."""
    rc = rec.get("result_content") or {}
    if rec.get("completed") is None and not rc:
        return "pending"
    return "failed" if rc.get("status") in ("error", "aborted") else "completed"


def _when(dt) -> str:
    return dt.astimezone().strftime("%H:%M:%S") if isinstance(dt, datetime) else ""


class ResultsBrowser(LiveView):
    """Browse the hub's task records: filter, inspect one, resubmit failed ones."""

    update_interval = Float(3.0, config=True, help="Seconds between two queries of the task records while live.")
    max_records = Integer(200, config=True, help="Most records listed (the most recently submitted).")
    output_chars = Integer(4000, config=True, help="Longest stdout / stderr / result text shown for one record.")

    state_filter = Enum(STATES, "all", help="Records in this state only.")
    engine_filter = Any(None, allow_none=True, help="Records of this engine id only (None: every engine).")
    label_filter = Unicode("", help="Records whose label matches this glob (plain text matches anywhere).")
    records = List(help="Listed records, newest first: msg_id, engine, label, state, submitted, completed, summary.")
    selected = Unicode(None, allow_none=True, help="msg_id of the record whose details are shown.")
    detail = Dict(help="The selected record: msg_id, state, stdout, stderr, result, error.")
    message = Unicode("", help="Outcome of the last action (resubmit, failed query).")

    def __init__(self, client, hub_id: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        self.client = client
        self.hub_id = hub_id
        self._uuids: dict = {}
        self._syncing = False

    # ------------------------------------------------------------------ querying
    def query(self) -> dict:
        """The db_query query of the current filters."""
        q: dict = {}
        if self.state_filter == "pending":
            q["completed"] = None
        elif self.state_filter in ("completed", "failed"):
            q["completed"] = {"$exists": True}
        if self.engine_filter is not None:
            uuid = {v: k for k, v in self._uuids.items()}.get(self.engine_filter)
            q["engine_uuid"] = uuid if uuid is not None else f"<no engine {self.engine_filter}>"
        if self.label_filter:
            pattern = self.label_filter if _GLOB & set(self.label_filter) else f"*{self.label_filter}*"
            q["label"] = {"$glob": pattern}
        return q

    def _check_source(self) -> None:
        if self.hub_id:
            from .widgets import check_hub

            check_hub(self.hub_id)

    def _fetch(self):
        self._check_source()
        try:
            engines = self.client.engines_info()
        except RuntimeError as e:
            raise SourceEnded(str(e), "unknown") from None
        uuids = dict(self._uuids)
        uuids.update({e["uuid"]: e["id"] for e in engines})
        self._uuids = uuids  # only widens the map; read by query() on this or the owner thread
        return {"records": self.client.db_query(self.query(), keys=LIST_KEYS), "state": self.state_filter}

    def _apply(self, data) -> None:
        rows = []
        for rec in data["records"]:
            st = record_state(rec)
            if self.state_filter == "failed" and st != "failed":
                continue
            if self.state_filter == "completed" and st != "completed":
                continue
            rc = rec.get("result_content") or {}
            summary = shorten(f"{rc.get('ename', '')}: {rc.get('evalue', '')}", 80) if st == "failed" else ""
            rows.append({"msg_id": rec["msg_id"], "engine": self._uuids.get(rec.get("engine_uuid")),
                         "label": rec.get("label") or "", "state": st,
                         "kind": ((rec.get("header") or {}).get("msg_type") or "").replace("_request", ""),
                         "submitted": _when(rec.get("submitted")), "completed": _when(rec.get("completed")),
                         "summary": summary, "_t": rec.get("submitted")})
        epoch = datetime.min.replace(tzinfo=timezone.utc)
        rows.sort(key=lambda r: r["_t"] or epoch, reverse=True)
        for r in rows:
            del r["_t"]
        self.records = rows[: self.max_records]
        listed = {r["msg_id"]: r["state"] for r in self.records}
        if self.selected in listed and listed[self.selected] != self.detail.get("state"):
            self._load_detail(self.selected)  # it finished (or was listed before its details loaded)

    def _problem(self, error: BaseException) -> None:
        self.message = f"query failed: {type(error).__name__}: {error}"
        self.request_render()

    # ------------------------------------------------------------------ actions
    def filter(self, state: Optional[str] = None, engine=..., label: Optional[str] = None) -> "ResultsBrowser":
        """Change filters and query again (``engine=None`` means every engine)."""
        self._check_thread()
        if state is not None:
            self.state_filter = state
        if engine is not ...:
            self.engine_filter = engine
        if label is not None:
            self.label_filter = label
        return self._requery()

    def _requery(self) -> "ResultsBrowser":
        self.refresh()  # at once, so what is shown always matches the filters
        self.render_now()
        return self

    def select(self, msg_id: Optional[str]) -> dict:
        """Show the details of one record; returns them."""
        self._check_thread()
        self.selected = msg_id
        if msg_id is None:
            self.detail = {}
        else:
            self._load_detail(msg_id)
        self.render_now()
        return self.detail

    def _load_detail(self, msg_id: str) -> None:
        try:
            recs = self.client.db_query({"msg_id": msg_id}, keys=DETAIL_KEYS)
        except Exception as e:
            self.detail = {"msg_id": msg_id, "state": "unknown", "error": f"{type(e).__name__}: {e}"}
            return
        if not recs:
            self.detail = {"msg_id": msg_id, "state": "unknown", "error": "no such record"}
            return
        rec = recs[0]
        st = record_state(rec)
        rc = rec.get("result_content") or {}
        limit = self.output_chars
        detail = {"msg_id": msg_id, "state": st, "engine": self._uuids.get(rec.get("engine_uuid")),
                  "label": rec.get("label") or "", "stdout": (rec.get("stdout") or "")[-limit:],
                  "stderr": (rec.get("stderr") or "")[-limit:], "result": "", "error": "",
                  "resubmitted": rec.get("resubmitted") or ""}
        if st == "failed":
            tb = rc.get("traceback") or []
            detail["error"] = ("\n".join(tb) if tb else f"{rc.get('ename')}: {rc.get('evalue')}")[-limit:]
        elif st == "completed":
            detail["result"] = self._result_text(rec)[:limit]
        self.detail = detail

    def _result_text(self, rec: dict) -> str:
        er = rec.get("execute_result") or {}
        if er.get("data"):
            return er["data"].get("text/plain", "")
        if (rec.get("result_header") or {}).get("msg_type") != "apply_reply":
            return "ok"
        try:
            return repr(self.client.get_result(rec["msg_id"]).get(5))
        except Exception as e:  # e.g. a value that cannot be unpickled here
            return f"<result not loadable here: {type(e).__name__}: {e}>"

    def resubmit(self, msg_id: Optional[str] = None) -> Optional[str]:
        """Resubmit a failed record (default: the selected one); returns the new msg_id."""
        self._check_thread()
        msg_id = msg_id or self.selected
        if not msg_id:
            self.message = "select a failed task first"
            self.render_now()
            return None
        try:
            new = self.client.resubmit([msg_id]).msg_ids[0]
        except Exception as e:
            self.message = f"resubmit of {msg_id} failed: {type(e).__name__}: {e}"
            self.render_now()
            return None
        self.message = f"resubmitted {msg_id} as {new}"
        self._requery()
        self.render_now()
        return new

    # ------------------------------------------------------------------ rendering
    HEADERS = ["submitted", "msg_id", "kind", "engine", "label", "state", "completed", "error"]

    def _rows(self) -> list:
        return [[r["submitted"], r["msg_id"][:12], r["kind"], "-" if r["engine"] is None else r["engine"],
                 r["label"], r["state"], r["completed"], r["summary"]] for r in self.records]

    def _title(self) -> str:
        engine = "all" if self.engine_filter is None else self.engine_filter
        return (f"task records: {len(self.records)} shown (state={self.state_filter}, engine={engine}, "
                f"label={self.label_filter or '*'})" + (f" · not updating: {self.ended}" if self.ended else ""))

    def _detail_text(self) -> str:
        d = self.detail
        if not d:
            return ""
        parts = [f"{d['msg_id']}: {d['state']}" + (f" on engine {d.get('engine')}" if d.get("engine") is not None
                                                    else "")]
        for key in ("stdout", "stderr", "result", "error"):
            if d.get(key):
                parts.append(f"--- {key}\n{d[key]}")
        return "\n".join(parts)

    def text(self) -> str:
        parts = [self._title(), text_table(self.HEADERS, self._rows(), "no matching records")]
        if self.message:
            parts.append(self.message)
        if self.detail:
            parts.append(self._detail_text())
        return "\n".join(parts)

    def _detail_html(self) -> str:
        d = self.detail
        if not d:
            return "<i>select a record to see its output</i>"
        head = f"<b>{esc(d['msg_id'])}</b>: {esc(d['state'])}"
        if d.get("engine") is not None:
            head += f" on engine {esc(d['engine'])}"
        blocks = [head]
        for key in ("stdout", "stderr", "result", "error"):
            if d.get(key):
                color = "#b71c1c" if key in ("stderr", "error") else "#222"
                blocks.append(f"<div><b>{key}</b><pre style='color:{color};margin:2px 0'>{esc(d[key])}</pre></div>")
        return "".join(blocks)

    def html(self) -> str:
        styles = ["color:#b71c1c" if r["state"] == "failed" else "" for r in self.records]
        msg = f"<div>{esc(self.message)}</div>" if self.message else ""
        return (f"<b>{esc(self._title())}</b>" + html_table(self.HEADERS, self._rows(), "no matching records",
                                                            row_styles=styles) + msg + self._detail_html())

    def _option(self, r: dict) -> tuple:
        engine = "-" if r["engine"] is None else r["engine"]
        text = f"{r['submitted']}  {r['msg_id'][:12]}  e{engine}  {r['state']:<9} {r['label']}  {r['summary']}"
        return (shorten(text, 120), r["msg_id"])

    def _build(self, widgets):
        self._w_state = widgets.Dropdown(options=list(STATES), value=self.state_filter, description="state")
        self._w_engine = widgets.Dropdown(options=[("all", None)], value=None, description="engine")
        self._w_label = widgets.Text(value=self.label_filter, description="label", placeholder="glob or text",
                                     continuous_update=False)
        self._w_refresh = widgets.Button(description="refresh", icon="refresh")
        self._w_title = widgets.HTML()
        self._w_list = widgets.Select(options=[], rows=10, layout=widgets.Layout(width="100%"))
        self._w_detail = widgets.HTML()
        self._w_resubmit = widgets.Button(description="resubmit", icon="repeat", disabled=True,
                                          tooltip="resubmit the selected failed task")
        self._w_message = widgets.HTML()
        self._w_state.observe(self._ui_filter, "value")
        self._w_engine.observe(self._ui_filter, "value")
        self._w_label.observe(self._ui_filter, "value")
        self._w_list.observe(self._ui_select, "value")
        self._w_refresh.on_click(lambda _b: self._requery())
        self._w_resubmit.on_click(lambda _b: self.resubmit())
        filters = widgets.HBox([self._w_state, self._w_engine, self._w_label, self._w_refresh])
        return widgets.VBox([filters, self._w_title, self._w_list, self._w_detail,
                             widgets.HBox([self._w_resubmit, self._w_message])])

    def _ui_filter(self, _change) -> None:
        if self._syncing:
            return
        self.filter(state=self._w_state.value, engine=self._w_engine.value, label=self._w_label.value)

    def _ui_select(self, change) -> None:
        if not self._syncing:
            self.select(change["new"])

    def _render(self) -> None:
        self._syncing = True
        try:
            with self._widget.hold_sync():
                engines = sorted({e for e in self._uuids.values()})
                options = [("all", None)] + [(str(e), e) for e in engines]
                if list(self._w_engine.options) != options:
                    self._w_engine.options = options
                self._w_engine.value = self.engine_filter if self.engine_filter in engines else None
                self._w_state.value = self.state_filter
                self._w_label.value = self.label_filter
                self._w_title.value = f"<b>{esc(self._title())}</b>"
                options = [self._option(r) for r in self.records]
                if self.selected and self.selected not in {m for _, m in options} and self.detail:
                    options.insert(0, (f"(selected) {self.selected[:12]}", self.selected))
                if list(self._w_list.options) != options:
                    self._w_list.options = options
                self._w_list.value = self.selected if self.selected in {m for _, m in options} else None
                self._w_detail.value = self._detail_html()
                self._w_resubmit.disabled = self.detail.get("state") != "failed"
                self._w_message.value = esc(self.message)
        finally:
            self._syncing = False
