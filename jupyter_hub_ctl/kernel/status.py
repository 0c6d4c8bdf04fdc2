"""``HubStatus``: a hub's engines (with CPU, memory and current task where the hub reports them),
queues, throughput and latest results, updated live by the kernel's updater thread."""

from __future__ import annotations

import collections
import time
from datetime import datetime, timedelta, timezone
from typing import Optional

from traitlets import Bool, Dict, Float, Integer, List, Unicode

from .live import LiveView, SourceEnded, describe
from .render import age, clock, degraded_html, degraded_lines, duration, health_summary, nbytes, short_id, \
    shorten, template, text_table

RECENT_KEYS = ["msg_id", "engine_uuid", "label", "started", "completed", "result_content"]


def result_status(record: dict) -> tuple:
    """(status, one-line summary) of a task record: ok / error / aborted / pending; the summary names the error."""
    rc = record.get("result_content") or {}
    if record.get("completed") is None and not rc:
        return "pending", ""
    status = rc.get("status") or "ok"
    if status == "error":
        return "error", shorten(f"{rc.get('ename', 'Error')}: {rc.get('evalue', '')}", 100)
    return status, ""


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


def client_query(client, fn, *args, timeout: float, **kwargs):
    """``fn(*args, **kwargs)`` with the client's hub queries on this thread limited to ``timeout`` seconds;
    a closed client ends the view."""
    try:
        with client.query_time_limit(timeout):
            return fn(*args, **kwargs)
    except RuntimeError as e:  # the client was closed
        if getattr(client, "_closed", False):
            raise SourceEnded(f"disconnected from the hub ({e})", "disconnected") from None
        raise


class HubStatus(LiveView):
    """A hub's engines, queues, throughput and latest results, updating live."""

    recent_count = Integer(8, config=True, help="How many of the latest results and errors are listed.")
    recent_window = Float(600.0, config=True,
                          help="At first, list results completed up to this many seconds before the view opened.")
    throughput_window = Float(10.0, config=True, help="Seconds over which throughput (tasks/s) is averaged.")
    gone_engines = Integer(8, config=True, help="How many engines that unregistered stay listed (state 'gone').")
    silent_after = Float(10.0, config=True,
                         help="Engines whose last heartbeat is older than this many seconds are shown as 'silent'.")
    show_metrics = Bool(True, config=True,
                        help="Show each engine's CPU, memory and current task when the hub reports them "
                             "(our engines do; ipyparallel's do not).")

    hub_id = Unicode(None, allow_none=True, help="The hub's id (its state file tells when it stops).")
    hub_state = Unicode("unknown", help="running, stopped, disconnected (this kernel closed its client) or unknown.")
    stopped_at = Float(0.0, help="Wall-clock time the view saw its hub stop (0 while it runs).")
    engines = List(help="One dict per engine: id, host, pid, state, queue, running, completed, heartbeat_age, "
                        "and cpu, rss, task where the hub reports metrics.")
    totals = Dict(help="engines, queued, running, completed, unassigned.")
    throughput = Float(0.0, help="Tasks completed per second over throughput_window.")
    recent = List(help="The latest results, newest first: msg_id, engine, label, status, summary, completed.")
    results_seen = Integer(0, help="Results seen since the view opened.")
    errors_seen = Integer(0, help="Failed results seen since the view opened.")
    health = Dict(help="What the hub says of its health: state (ok or degraded; a degraded hub keeps scheduling), "
                       "reasons (one sentence per problem) and degraded_since; {} when it does not say.")
    metrics = Bool(False, help="Whether the hub reported engine metrics at the last poll.")

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
        self._metrics_supported = self.show_metrics and hasattr(client, "engine_metrics")
        self._unsubscribe = None  # ends this view's subscription to the client's registration events

    # ------------------------------------------------------------------ polling
    def _fetch(self):
        if self.hub_id:
            check_hub(self.hub_id)
        if self._shutdown:
            raise SourceEnded("the hub shut down")
        client = self.client
        if client is None:
            raise SourceEnded("disconnected from the hub", "disconnected")
        t = self.query_timeout
        data = {"now": time.time(), "mono": time.monotonic(),
                "engines": client_query(client, client.engines_info, timeout=t),
                "unassigned": client_query(client, client.queue_status, timeout=t).get("unassigned", 0)}
        try:
            data["health"] = client_query(client, client.health, timeout=t)
        except SourceEnded:
            raise
        except Exception:  # a hub that cannot say: no banner, the rest of the view still works
            data["health"] = None
        try:
            data["records"] = client_query(client, client.db_query, {"completed": {"$gt": self._since}},
                                           keys=RECENT_KEYS, timeout=t)
        except SourceEnded:
            raise
        except Exception as e:  # e.g. a hub that keeps no records (NoDB)
            data["db_error"] = f"latest results unavailable: {describe(e)}"
        if self._metrics_supported:
            try:
                data["metrics"] = client_query(client, client.engine_metrics, timeout=t)
            except SourceEnded:
                raise
            except Exception as e:  # a hub without metrics (ipcontroller): stop asking
                self._metrics_supported = False
                self.log.debug("no engine metrics from this hub: %s", describe(e))
        return data

    def _apply(self, data) -> None:
        now = data["now"]
        samples = ((data.get("metrics") or {}).get("engines") or {})
        rows = {}
        for e in data["engines"]:
            outstanding = int(e.get("queue") or 0) + int(e.get("tasks") or 0)
            beat = e.get("last_heartbeat")
            hb_age = None if beat is None else max(0.0, now - beat)
            state = "busy" if outstanding else "idle"
            if hb_age is not None and hb_age > self.silent_after:
                state = "silent"
            row = {"id": e["id"], "host": e.get("host") or "", "pid": e.get("pid"), "state": state,
                   "queue": max(0, outstanding - 1), "running": min(1, outstanding),
                   "completed": int(e.get("completed") or 0), "heartbeat_age": hb_age,
                   "cpu": None, "rss": None, "task": None, "task_id": None}
            sample = (samples.get(e["id"]) or samples.get(str(e["id"])) or {}).get("latest")
            if sample:
                row.update(cpu=sample.get("cpu"), rss=sample.get("rss"), task_id=sample.get("task"),
                           task=sample.get("task_name") or (short_id(sample["task"]) if sample.get("task") else None))
            rows[e["id"]] = row
            self._uuids[e.get("uuid")] = e["id"]
        for eid, row in self._known.items():
            if eid not in rows and eid not in self._gone:
                self._gone[eid] = dict(row, state="gone", queue=0, running=0, heartbeat_age=None, cpu=None,
                                       rss=None, task=None, task_id=None, gone_at=now)
        for eid in rows:
            self._gone.pop(eid, None)
        while len(self._gone) > self.gone_engines:
            self._gone.popitem(last=False)
        self._known = rows
        self.metrics = bool(samples)
        self.engines = [rows[k] for k in sorted(rows)] + list(self._gone.values())
        live = list(rows.values())
        unassigned = int(data["unassigned"] or 0)
        self.totals = {"engines": len(live), "queued": sum(r["queue"] for r in live) + unassigned,
                       "running": sum(r["running"] for r in live),
                       "completed": sum(r["completed"] for r in live), "unassigned": unassigned}
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
            new.append({"msg_id": rec["msg_id"], "short_id": short_id(rec["msg_id"]),
                        "engine": self._uuids.get(rec.get("engine_uuid"), "?"),
                        "label": rec.get("label") or "", "status": status, "summary": summary,
                        "duration": duration(rec.get("started"), when),
                        "completed": when.astimezone().strftime("%H:%M:%S") if when else ""})
            if status in ("error", "aborted"):
                self.errors_seen += 1
        self.results_seen += len(records)
        times = [r["completed"] for r in records if r.get("completed")]
        if times:
            self._since = max(self._since, max(times))
        self.recent = (list(reversed(new)) + list(self.recent))[: self.recent_count]

    def _on_start(self) -> None:
        if self._unsubscribe is None and self.client is not None:
            self._unsubscribe = self.client.on_registration(self._on_event)

    def _on_event(self, event: dict) -> None:  # the client's IO thread: only flags and pokes
        if event.get("event") == "shutdown":
            self._shutdown = True
        self.poke()

    def _source_ended(self, e: SourceEnded) -> None:
        self.hub_state = e.state
        self.stopped_at = time.time()
        self.health = {}  # what a hub that is gone said of its health no longer holds
        # engines of a stopped hub are not idle: nothing of theirs is current any more
        self.engines = [dict(r, state="gone" if r["state"] == "gone" else e.state, queue=0, running=0,
                             heartbeat_age=None, cpu=None, rss=None, task=None, task_id=None)
                        for r in self.engines]
        self.totals = dict(self.totals, engines=0, queued=0, running=0, unassigned=0)
        self.throughput = 0.0
        self._end(str(e))

    def _on_end(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe, unsubscribe = None, self._unsubscribe
            unsubscribe()
        if self._owns_client and self.client is not None:
            client, self.client = self.client, None
            client.close()

    # ------------------------------------------------------------------ actions
    def refresh_clicked(self, _button=None) -> None:
        """The refresh button: poll at once (on the updater thread while live, else here)."""
        if self.live:
            self.poke()
        elif not self.ended:
            self.refresh()

    # ------------------------------------------------------------------ rendering
    @property
    def degraded(self) -> bool:
        """Whether the hub says it is degraded (see ``health``)."""
        return self.health.get("state") == "degraded"

    def _badge(self) -> str:
        if self.hub_state == "running" and self.degraded:
            return "degraded"
        return self.hub_state

    def _notes(self) -> list:
        notes = []
        if self.ended:
            when = f" at {clock(self.stopped_at)}" if self.stopped_at else ""
            notes.append({"kind": "note", "text": f"not updating: {self.ended}{when}"})
        for message in (self.problem, self.error):
            if message:
                notes.append({"kind": "error-box", "text": message})
        return notes

    def _context(self) -> dict:
        engines = [dict(r, memory=nbytes(r.get("rss"))) for r in self.engines]
        return {"hub_id": self.hub_id, "hub_state": self.hub_state, "badge": self._badge(),
                "totals": {"engines": 0, "queued": 0, "running": 0, "completed": 0, **self.totals},
                "throughput": self.throughput, "errors_seen": self.errors_seen, "updated": self.updated,
                "notes": self._notes(), "engines": engines, "metrics": self.metrics, "recent": self.recent,
                "ended": bool(self.ended), "banner": degraded_html(self.health)}

    def _headline(self) -> str:
        t = self.totals or {}
        who = f"hub {self.hub_id}" if self.hub_id else "hub"
        head = (f"{who}: {self._badge()} · {t.get('engines', 0)} engines · queued {t.get('queued', 0)} · "
                f"running {t.get('running', 0)} · completed {t.get('completed', 0)} · "
                f"{self.throughput:.1f} tasks/s · {self.errors_seen} errors")
        if self.updated:
            head += f" · updated {clock(self.updated)}"
        return head

    def _engine_rows(self) -> list:
        rows = []
        for r in self.engines:
            row = [r["id"], r["host"], r["state"], r["queue"], r["running"], r["completed"]]
            if self.metrics:
                row += ["-" if r.get("cpu") is None else f"{r['cpu']:.0f}%", nbytes(r.get("rss")) or "-",
                        r.get("task") or "-"]
            rows.append(row + [age(r["heartbeat_age"])])
        return rows

    def text(self) -> str:
        headers = ["id", "host", "state", "queue", "running", "done"]
        headers += ["cpu", "memory", "task"] if self.metrics else []
        recent = [[r["completed"], r["short_id"], r["engine"], r["label"], r["status"], r["duration"], r["summary"]]
                  for r in self.recent]
        parts = [self._headline(), *degraded_lines(self.health), *(n["text"] for n in self._notes()),
                 text_table(headers + ["heartbeat"], self._engine_rows(), "no engines"),
                 "latest results:",
                 text_table(["completed", "task", "engine", "label", "state", "duration", "error"], recent,
                            "none yet")]
        return "\n".join(parts)

    def html(self) -> str:
        return template("status.html.j2").render(v=self._context())

    def _build(self, widgets):
        self._w_head = widgets.HTML()
        self._w_banner = widgets.HTML(layout=widgets.Layout(display="none"))  # shown only while degraded
        self._w_banner.add_class("hubctl-degraded-banner")
        self._w_engines = widgets.HTML()
        self._w_recent = widgets.HTML()
        self._w_refresh = widgets.Button(description="refresh", icon="refresh", tooltip="poll the hub now")
        self._w_refresh.on_click(self.callback(self.refresh_clicked, "refresh"))
        box = widgets.VBox([self.style_widget(widgets), self._w_head, self._w_banner, self._w_engines,
                            self._w_recent, self._w_refresh], layout=widgets.Layout(width="100%"))
        box.add_class("hubctl")
        box.add_class("hubctl-status")
        return box

    def _render(self) -> None:
        ctx = self._context()
        parts = template("status_parts.html.j2").module
        self._w_head.value = str(parts.head(ctx))
        self._w_banner.value = ctx["banner"]
        self._w_banner.layout.display = None if self.degraded else "none"
        self._w_engines.value = str(parts.engines(ctx))
        self._w_recent.value = str(parts.recent(ctx))
        self._w_refresh.disabled = bool(self.ended)
        if self.ended:
            self._widget.add_class("hubctl-ended")
