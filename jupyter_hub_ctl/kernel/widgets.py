"""Notebook widgets: hub status, task progress, engine registration, the results browser.

All are ``LiveView`` s (see ``live``): stock ipywidgets updated from the kernel's event loop,
throttled, never from a bare thread; they stop updating when closed or when their hub stops,
and show as text or HTML where no widget frontend exists (or ipywidgets is not installed).

    status = HubStatus(client, hub_id="abc")   # or hub.status() after %hub start
    status.start()                             # live updates (done by hub.status())
    TaskProgress(ar)                           # a progress bar for an AsyncResult
    wait_for_engines(client, 4)                # block with a progress bar
"""

from __future__ import annotations

import collections
import time
from datetime import datetime, timedelta, timezone
from typing import Optional

from traitlets import Dict, Float, Integer, List, Unicode

from .live import LiveView, SourceEnded
from .render import age, clock, degraded_html, degraded_lines, esc, health_summary, html_table, shorten, text_bar, \
    text_table

RECENT_KEYS = ["msg_id", "engine_uuid", "label", "completed", "result_content"]
STATE_COLORS = {"busy": "#e8f4e8", "silent": "#fff4d6", "gone": "#f6dddd"}


def result_status(record: dict) -> tuple:
    """(status, one-line summary) of a task record: ok / error / aborted / pending."""
    rc = record.get("result_content") or {}
    if record.get("completed") is None and not rc:
        return "pending", ""
    status = rc.get("status") or "ok"
    if status == "error":
        return "error", shorten(f"{rc.get('ename', 'Error')}: {rc.get('evalue', '')}", 100)
    return status, status


def check_hub(hub_id: str) -> None:
    """Raise SourceEnded unless the hub's state file says it runs (or is starting)."""
    from ..cluster import state
    from ..cluster.errors import HubNotFound

    try:
        record = state.get_hub(hub_id)
    except HubNotFound:
        raise SourceEnded(f"hub {hub_id} stopped", "stopped") from None
    if record.get("state") in ("stopping", "stopped"):
        raise SourceEnded(f"hub {hub_id} stopped", "stopped")
    if not record.get("alive"):
        raise SourceEnded(f"hub {hub_id} is not running ({record.get('stale_reason') or record.get('status')})")


class HubStatus(LiveView):
    """A hub's engines, queues, throughput and latest results, updating live."""

    recent_count = Integer(8, config=True, help="How many of the latest results and errors are listed.")
    recent_window = Float(600.0, config=True,
                          help="At first, list results completed up to this many seconds before the view opened.")
    throughput_window = Float(10.0, config=True, help="Seconds over which throughput (tasks/s) is averaged.")
    gone_engines = Integer(8, config=True, help="How many engines that unregistered stay listed (state 'gone').")
    silent_after = Float(10.0, config=True,
                         help="Engines whose last heartbeat is older than this many seconds are shown as 'silent'.")

    hub_id = Unicode(None, allow_none=True, help="The hub's id (its state file tells when it stops).")
    hub_state = Unicode("unknown", help="running, stopped, disconnected (this kernel closed its client) or unknown.")
    engines = List(help="One dict per engine: id, host, pid, state, queue, running, completed, heartbeat_age.")
    totals = Dict(help="engines, queued, running, completed, unassigned.")
    throughput = Float(0.0, help="Tasks completed per second over throughput_window.")
    recent = List(help="The latest results, newest first: msg_id, engine, label, status, summary, completed.")
    results_seen = Integer(0, help="Results seen since the view opened.")
    errors_seen = Integer(0, help="Failed results seen since the view opened.")
    problem = Unicode("", help="The last failed poll, if any ('' after a good one).")
    health = Dict(help="What the hub says of its health: state (ok or degraded; a degraded hub keeps scheduling), "
                       "reasons (one sentence per problem) and degraded_since; {} when it does not say.")

    def __init__(self, client, hub_id: Optional[str] = None, owns_client: bool = False, **kwargs):
        super().__init__(hub_id=hub_id, **kwargs)
        self.client = client
        self._owns_client = owns_client
        self._since = datetime.now(timezone.utc) - timedelta(seconds=self.recent_window)
        self._known: dict = {}  # id -> last row
        self._gone: collections.OrderedDict = collections.OrderedDict()
        self._uuids: dict = {}
        self._samples: collections.deque = collections.deque()
        self._shutdown = False
        self._unsubscribe = None  # ends this view's subscription to the client's registration events

    # ------------------------------------------------------------------ polling
    def _check_source(self) -> None:
        if self.hub_id:
            check_hub(self.hub_id)

    def _fetch(self):
        self._check_source()
        if self._shutdown:
            raise SourceEnded("the hub shut down")
        try:
            engines = self.client.engines_info()
            unassigned = self.client.queue_status().get("unassigned", 0)
        except RuntimeError as e:  # the client was closed
            raise SourceEnded(f"disconnected from the hub ({e})", "disconnected") from None
        data = {"now": time.time(), "mono": time.monotonic(), "engines": engines, "unassigned": unassigned}
        try:
            data["health"] = self.client.health()
        except RuntimeError as e:
            raise SourceEnded(f"disconnected from the hub ({e})", "disconnected") from None
        except Exception:  # a hub that cannot say: no banner, the rest of the view still works
            data["health"] = None
        try:
            data["records"] = self.client.db_query({"completed": {"$gt": self._since}}, keys=RECENT_KEYS)
        except Exception as e:  # e.g. a hub that keeps no records (NoDB)
            data["db_error"] = f"{type(e).__name__}: {e}"
        return data

    def _apply(self, data) -> None:
        now = data["now"]
        rows = {}
        for e in data["engines"]:
            outstanding = int(e.get("queue") or 0) + int(e.get("tasks") or 0)
            beat = e.get("last_heartbeat")
            hb_age = None if beat is None else max(0.0, now - beat)
            state = "busy" if outstanding else "idle"
            if hb_age is not None and hb_age > self.silent_after:
                state = "silent"
            rows[e["id"]] = {"id": e["id"], "host": e.get("host") or "", "pid": e.get("pid"), "state": state,
                             "queue": max(0, outstanding - 1), "running": min(1, outstanding),
                             "completed": int(e.get("completed") or 0), "heartbeat_age": hb_age}
            self._uuids[e.get("uuid")] = e["id"]
        for eid, row in self._known.items():
            if eid not in rows and eid not in self._gone:
                self._gone[eid] = dict(row, state="gone", queue=0, running=0, heartbeat_age=None, gone_at=now)
        for eid in rows:
            self._gone.pop(eid, None)
        while len(self._gone) > self.gone_engines:
            self._gone.popitem(last=False)
        self._known = rows
        self.engines = [rows[k] for k in sorted(rows)] + list(self._gone.values())
        live = list(rows.values())
        self.totals = {"engines": len(live), "queued": sum(r["queue"] for r in live) + int(data["unassigned"] or 0),
                       "running": sum(r["running"] for r in live),
                       "completed": sum(r["completed"] for r in live), "unassigned": int(data["unassigned"] or 0)}
        self._sample(data["mono"], {r["id"]: r["completed"] for r in live})
        self._take_records(data.get("records") or [])
        self.problem = data.get("db_error", "")
        self.health = health_summary(data.get("health"))
        self.hub_state = "running"

    def _sample(self, t: float, counts: dict) -> None:
        self._samples.append((t, counts))
        while len(self._samples) > 2 and t - self._samples[0][0] > self.throughput_window:
            self._samples.popleft()
        (t0, first), (t1, last) = self._samples[0], self._samples[-1]
        if t1 - t0 <= 0:
            self.throughput = 0.0
            return
        done = sum(max(0, n - first[eid]) for eid, n in last.items() if eid in first)
        self.throughput = done / (t1 - t0)

    def _take_records(self, records: list) -> None:
        if not records:
            return
        records = sorted(records, key=lambda r: r.get("completed") or datetime.min.replace(tzinfo=timezone.utc))
        new = []
        for rec in records:
            status, summary = result_status(rec)
            when = rec.get("completed")
            new.append({"msg_id": rec["msg_id"], "engine": self._uuids.get(rec.get("engine_uuid"), "?"),
                        "label": rec.get("label") or "", "status": status, "summary": summary,
                        "completed": when.astimezone().strftime("%H:%M:%S") if when else ""})
            if status in ("error", "aborted"):
                self.errors_seen += 1
        self.results_seen += len(records)
        times = [r["completed"] for r in records if r.get("completed")]
        if times:
            self._since = max(self._since, max(times))
        self.recent = (list(reversed(new)) + list(self.recent))[: self.recent_count]

    def _problem(self, error: BaseException) -> None:
        self.problem = f"{type(error).__name__}: {error}"
        self.request_render()

    def _on_start(self) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self.client.on_registration(self._on_event)

    def _on_event(self, event: dict) -> None:  # the client's IO thread: only flags and pokes
        if self._closed:
            return
        if event.get("event") == "shutdown":
            self._shutdown = True
        self.poke()

    def _source_ended(self, e: SourceEnded) -> None:
        self.hub_state = e.state
        self.health = {}  # what a hub that is gone said of its health no longer holds
        self._end(str(e))

    def _on_end(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe, unsubscribe = None, self._unsubscribe
            unsubscribe()
        if self._owns_client and self.client is not None:
            client, self.client = self.client, None
            client.close()

    # ------------------------------------------------------------------ rendering
    def _headline(self) -> str:
        t = self.totals or {}
        who = f"hub {self.hub_id}" if self.hub_id else "hub"
        head = (f"{who}: {self.hub_state} · {t.get('engines', 0)} engines · queued {t.get('queued', 0)} · "
                f"running {t.get('running', 0)} · completed {t.get('completed', 0)} · "
                f"{self.throughput:.1f} tasks/s · {self.errors_seen} errors")
        if self.updated:
            head += f" · updated {clock(self.updated)}"
        return head

    def _engine_rows(self) -> list:
        return [[r["id"], r["host"], r["state"], r["queue"], r["running"], r["completed"], age(r["heartbeat_age"])]
                for r in self.engines]

    def _recent_rows(self) -> list:
        return [[r["completed"], r["msg_id"][:12], r["engine"], r["label"], r["status"], r["summary"]]
                for r in self.recent]

    ENGINE_HEADERS = ["id", "host", "state", "queue", "running", "completed", "heartbeat"]
    RECENT_HEADERS = ["completed", "msg_id", "engine", "label", "status", "summary"]

    def _notes(self) -> list:
        notes = []
        if self.ended:
            notes.append(f"not updating: {self.ended}")
        if self.problem:
            notes.append(self.problem)
        return notes

    @property
    def degraded(self) -> bool:
        """Whether the hub says it is degraded (see ``health``)."""
        return self.health.get("state") == "degraded"

    def text(self) -> str:
        parts = [self._headline(), *degraded_lines(self.health), *self._notes(),
                 text_table(self.ENGINE_HEADERS, self._engine_rows(), "no engines"),
                 "latest results:", text_table(self.RECENT_HEADERS, self._recent_rows(), "none yet")]
        return "\n".join(parts)

    def _header_html(self) -> str:
        color = "#2e7d32" if self.hub_state == "running" else "#b71c1c" if self.hub_state == "stopped" else "#555"
        if self.hub_state == "running" and self.degraded:
            color = "#e65100"
        notes = "".join(f"<div style='color:#b71c1c'>{esc(n)}</div>" for n in self._notes())
        return f"<div style='color:{color};font-weight:bold'>{esc(self._headline())}</div>{notes}"

    def _engines_html(self) -> str:
        styles = [f"background:{STATE_COLORS.get(r['state'], '')}" if r["state"] in STATE_COLORS else ""
                  for r in self.engines]
        return html_table(self.ENGINE_HEADERS, self._engine_rows(), "no engines", row_styles=styles)

    def _recent_html(self) -> str:
        styles = ["color:#b71c1c" if r["status"] in ("error", "aborted") else "" for r in self.recent]
        return "<b>latest results</b>" + html_table(self.RECENT_HEADERS, self._recent_rows(), "none yet",
                                                    row_styles=styles)

    def html(self) -> str:
        return self._header_html() + degraded_html(self.health) + self._engines_html() + self._recent_html()

    def _build(self, widgets):
        self._w_header = widgets.HTML()
        self._w_banner = widgets.HTML(layout=widgets.Layout(display="none"))  # shown only while degraded
        self._w_banner.add_class("hubctl-degraded-banner")
        self._w_engines = widgets.HTML()
        self._w_recent = widgets.HTML()
        return widgets.VBox([self._w_header, self._w_banner, self._w_engines, self._w_recent])

    def _render(self) -> None:
        with self._widget.hold_sync():
            self._w_header.value = self._header_html()
            self._w_banner.value = degraded_html(self.health)
            self._w_banner.layout.display = None if self.degraded else "none"
            self._w_engines.value = self._engines_html()
            self._w_recent.value = self._recent_html()


class TaskProgress(LiveView):
    """A progress bar for an ``AsyncResult``."""

    update_interval = Float(0.5, config=True, help="Seconds between two looks at the result while it runs.")
    fetch_blocks = False

    done = Integer(0, help="Tasks finished.")
    total = Integer(0, help="Tasks in the result.")
    outcome = Unicode("", help="'' while running, then 'ok' or the error summary.")

    def __init__(self, ar, description: str = "tasks", **kwargs):
        super().__init__(total=len(ar), **kwargs)
        self.ar = ar
        self.description = description

    def _fetch(self):
        return self.ar.progress, self.ar.done()

    def _apply(self, data) -> None:
        self.done, finished = data
        if finished:
            error = self.ar.exception(0)
            self.outcome = "ok" if error is None else shorten(f"{type(error).__name__}: {error}", 120)
            self.done = self.total
            self._end("finished")

    def _on_start(self) -> None:
        self.ar.add_done_callback(lambda _f: self.poke())

    def _suffix(self) -> str:
        if self.outcome == "ok":
            return " — done"
        return f" — failed: {self.outcome}" if self.outcome else ""

    def _label(self) -> str:
        return f"{self.done}/{self.total} {self.description}{self._suffix()}"

    def text(self) -> str:
        return f"{text_bar(self.done, self.total)} {self.description}{self._suffix()}"

    def html(self) -> str:
        return f"<progress value='{self.done}' max='{self.total}'></progress> {esc(self._label())}"

    def _build(self, widgets):
        self._w_bar = widgets.IntProgress(min=0, max=max(self.total, 1), description=self.description)
        self._w_label = widgets.Label()
        return widgets.HBox([self._w_bar, self._w_label])

    def _render(self) -> None:
        with self._widget.hold_sync():
            self._w_bar.value = self.done
            self._w_label.value = self._label()
            if self.outcome:
                self._w_bar.bar_style = "success" if self.outcome == "ok" else "danger"


class EngineProgress(LiveView):
    """Engines registered out of those wanted, with the phase of a hub's start."""

    update_interval = Float(0.25, config=True, help="Seconds between two looks at the registered engines.")
    fetch_blocks = False

    registered = Integer(0, help="Engines registered so far.")
    wanted = Integer(0, help="Engines waited for.")
    phase = Unicode("", help="What is happening (e.g. 'starting the controller').")
    outcome = Unicode("", help="'' while waiting, then 'ok' or why it failed.")

    def __init__(self, wanted: int, client=None, echo=None, **kwargs):
        super().__init__(wanted=wanted, **kwargs)
        self.client = client
        self._echo = echo  # a callable given each new one-line status (text mode)
        self._echoed = ""
        self._unsubscribe = None
        self.handle = None  # the display handle, when shown

    def attach(self, client) -> None:
        """Count the engines of ``client`` from now on."""
        self.client = client
        if self.live:
            self._subscribe()

    def _subscribe(self) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self.client.on_registration(lambda _e: self.poke())

    def _on_end(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe, unsubscribe = None, self._unsubscribe
            unsubscribe()

    def _fetch(self):
        return len(self.client.ids) if self.client is not None else self.registered

    def _apply(self, data) -> None:
        self.registered = data
        if self.wanted and self.registered >= self.wanted and not self.outcome:
            self.finish("ok")

    def _on_start(self) -> None:
        if self.client is not None:
            self._subscribe()

    def update(self, registered: Optional[int] = None, phase: Optional[str] = None) -> None:
        """Set progress by hand (owner thread); renders within the throttle."""
        self._check_thread()
        if registered is not None:
            self.registered = registered
        if phase is not None:
            self.phase = phase
        self.request_render()
        self._echo_line()

    def finish(self, outcome: str = "ok") -> None:
        self.outcome = outcome
        if outcome == "ok":
            self.phase = self.phase.split(":")[0] + ": ready" if ":" in self.phase else "ready"
        self._end("finished")
        self.flush()
        self._echo_line()
        if self.handle is not None:  # the text/HTML copy (what a saved notebook shows without widgets)
            self.handle.update(self)

    def _echo_line(self) -> None:
        line = self._label()
        if self._echo is not None and line != self._echoed:
            self._echoed = line
            self._echo(line)

    def _label(self) -> str:
        text = f"{self.registered}/{self.wanted} engines registered"
        if self.phase:
            text += f" — {self.phase}"
        if self.outcome and self.outcome != "ok":
            text += f" — failed: {self.outcome}"
        return text

    def text(self) -> str:
        return f"{text_bar(self.registered, self.wanted)} {self._label()}"

    def html(self) -> str:
        return f"<progress value='{self.registered}' max='{self.wanted}'></progress> {esc(self._label())}"

    def _build(self, widgets):
        self._w_bar = widgets.IntProgress(min=0, max=max(self.wanted, 1), description="engines")
        self._w_label = widgets.Label()
        return widgets.HBox([self._w_bar, self._w_label])

    def _render(self) -> None:
        with self._widget.hold_sync():
            self._w_bar.value = min(self.registered, max(self.wanted, 1))
            self._w_label.value = self._label()
            if self.outcome:
                self._w_bar.bar_style = "success" if self.outcome == "ok" else "danger"


def in_notebook() -> bool:
    """True in a kernel with a frontend that may render widgets (ipywidgets installed)."""
    from .live import ipywidgets_or_none

    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell" and ipywidgets_or_none() is not None


def show(view):
    """Display ``view``; returns the display handle (to refresh the static text/HTML copy later)."""
    from IPython.display import display

    return display(view, display_id=True)


def wait_for_engines(client, n: int, timeout: Optional[float] = None, widget: Optional[bool] = None) -> list:
    """Block until ``client`` has ``n`` engines, showing progress (a widget in a notebook); return the ids."""
    import sys

    widget = in_notebook() if widget is None else widget
    echo = None if widget else (lambda line: print(line, file=sys.stdout, flush=True))
    bar = EngineProgress(n, client=client, echo=echo)
    bar.handle = show(bar) if widget else None
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while len(client.ids) < n:
            bar.update(registered=len(client.ids), phase="waiting")
            if deadline is not None and time.monotonic() > deadline:
                bar.finish(f"only {len(client.ids)} of {n} after {timeout:g}s")
                raise TimeoutError(f"only {len(client.ids)} of {n} engines registered within {timeout}s")
            time.sleep(0.05)
    except KeyboardInterrupt:
        bar.finish("interrupted")
        raise
    bar.update(registered=len(client.ids))
    bar.finish("ok")
    return client.ids


from .browser import ResultsBrowser  # noqa: E402  (re-exported: one import place for all widgets)

__all__ = ["HubStatus", "TaskProgress", "EngineProgress", "ResultsBrowser", "wait_for_engines", "in_notebook",
           "result_status"]
