"""Progress of every wait: ``TaskProgress`` (an AsyncResult: ``hub.progress(ar)``,
``ar.wait_interactive()``) and ``EngineProgress`` (engines registering: ``%hub start``,
``rc.wait_for_engines()``).

The bar is tqdm's (``tqdm.notebook``'s widget in a notebook, ``tqdm.std`` text elsewhere, the two
``tqdm.auto`` chooses between): done/total, rate, elapsed and ETA; failures are counted in a red
badge next to it.  In a notebook the bar is a ``LiveView`` that the kernel's updater thread keeps
moving while a cell blocks; where no widget frontend exists it shows as text/HTML.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Optional

from traitlets import Float, Integer, Unicode

from .live import LiveView, describe, ipywidgets_or_none
from .render import shorten, template


def in_notebook() -> bool:
    """True in a kernel with a frontend that may render widgets (ipywidgets installed)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell" and ipywidgets_or_none() is not None


def in_ipython() -> bool:
    """True inside IPython (a terminal or a kernel): where waits show progress by default."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def show(view):
    """Display ``view``; returns the display handle (to refresh the static text/HTML copy later)."""
    from IPython.display import display

    return display(view, display_id=True)


def _widget_bar_class():
    from tqdm.notebook import tqdm as notebook_tqdm

    class WidgetBar(notebook_tqdm):
        monitor_interval = 0  # no tqdm monitor thread: the updater thread drives the bar

    return WidgetBar


def _text_bar_class():
    from tqdm.std import tqdm as std_tqdm

    class TextBar(std_tqdm):
        monitor_interval = 0

    return TextBar


class Progress(LiveView):
    """done/total with rate, elapsed, ETA and failures, drawn by tqdm."""

    update_interval = Float(0.5, config=True, help="Seconds between two looks at the progress while it runs.")

    done = Integer(0, help="Units finished.")
    total = Integer(0, help="Units in all (0: unknown).")
    failed = Integer(0, help="Units that failed.")
    outcome = Unicode("", help="'' while running, then 'ok' or why it failed.")
    description = Unicode("", help="What is being counted (the bar's label).")

    unit = " tasks"
    css_class = "hubctl-task-progress"

    def __init__(self, total: int, description: str, stream=None, **kwargs):
        super().__init__(total=max(0, int(total)), description=description, **kwargs)
        self._started = time.time()
        self._bar = None  # tqdm's widget bar, once built
        self._bar_closed = False
        self._stream = stream  # a text stream: a tqdm text bar is drawn there on every render
        self._text_bar = None

    # ------------------------------------------------------------------ figures
    def _elapsed(self) -> float:
        return max(0.0, time.time() - self._started)

    def meter(self, bar: bool = False) -> str:
        """tqdm's status line: label, percentage, done/total, elapsed<remaining, rate (and a text bar)."""
        from tqdm.std import tqdm as std_tqdm

        fmt = None if bar else "{desc}{percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]"
        if not self.total:
            fmt = None if bar else "{desc}{n_fmt} [{elapsed}, {rate_fmt}]"
        return std_tqdm.format_meter(self.done, self.total or None, self._elapsed(),
                                     prefix=f"{self.description}: " if self.description else "",
                                     unit=self.unit, bar_format=fmt, ncols=70 if bar else None)

    def _suffix(self) -> str:
        parts = [f"{self.failed} failed"] if self.failed else []
        if self.outcome and self.outcome != "ok":
            parts.append(self.outcome)
        return " — " + ", ".join(parts) if parts else ""

    def text(self) -> str:
        return self.meter(bar=True) + self._suffix()

    def html(self) -> str:
        context = {"done": self.done, "total": self.total, "failed": self.failed, "outcome": self.outcome,
                   "meter": self.meter(), "ended": bool(self.ended),
                   "errors": [m for m in (self.problem, self.error) if m]}
        return template("progress.html.j2").render(p=context, failed=self.failed, outcome=self.outcome,
                                                   errors=context["errors"])

    # ------------------------------------------------------------------ the end
    def finish(self, outcome: str = "ok") -> None:
        """Stop, with ``outcome`` ('ok' or why it stopped); renders at once (any thread)."""
        with self._lock:
            if not self.outcome:
                self.outcome = outcome
            self._end("finished")
            # The updater thread's comm messages carry the parent header of whatever request the kernel
            # saw last; a client that files widget state by request (nbclient saving a notebook) can drop
            # them, so the thread that finishes sends the final state once more as its own.
            if self._widget is not None and threading.current_thread() is threading.main_thread():
                from .live import _resend_tree

                _resend_tree(self._widget)
        self._update_handle()

    def _end(self, reason: str) -> None:
        super()._end(reason)
        if self._stream is not None:  # the text bar's last state, then its line is left as it is
            self._draw_text()
            self._text_bar.close()
            self._text_bar = self._stream = None

    # ------------------------------------------------------------------ widgets
    def _buttons(self, widgets) -> list:
        """Hook: buttons shown after the bar."""
        return []

    def _build(self, widgets):
        self._bar = _widget_bar_class()(total=self.total or None, desc=self.description, unit=self.unit,
                                        display=False, leave=True)
        self._bar.start_t = self._bar.last_print_t = self._bar._time() - self._elapsed()
        self._w_failed = widgets.HTML()
        self._w_errors = widgets.HTML()
        row = widgets.HBox([self._bar.container, self._w_failed, *self._buttons(widgets)])
        row.add_class("hubctl-progress")
        box = widgets.VBox([self.style_widget(widgets), row, self._w_errors], layout=widgets.Layout(width="100%"))
        box.add_class("hubctl")
        box.add_class(self.css_class)
        return box

    def _render(self) -> None:
        bar = self._bar
        relabel = bar.desc != self.description
        if relabel:
            bar.set_description_str(self.description, refresh=False)
            if self._bar_closed:  # a closed bar no longer refreshes itself: redraw its label
                bar.disp(check_delay=False)
        if self.total and bar.total != self.total:
            bar.reset(total=self.total)
        step = self.done - bar.n
        if step > 0:
            bar.update(step)
        elif step < 0:
            bar.n = self.done
        if self.outcome and not self._bar_closed:
            self._bar_closed = True
            bar.refresh()  # tqdm's close draws the bar but keeps the label last drawn, not the current one
            bar.close()
            if self.failed or self.outcome != "ok":
                bar.disp(bar_style="danger", check_delay=False)
        else:
            bar.refresh()
        self._w_failed.value = template("badges.html.j2").render(failed=self.failed, outcome=self.outcome)
        self._w_errors.value = template("errors.html.j2").render(errors=[m for m in (self.problem, self.error) if m])
        self._render_buttons()
        if self.ended:
            self._widget.add_class("hubctl-ended")

    def _render_buttons(self) -> None:
        """Hook: enable or disable the buttons."""

    def _do_render(self) -> None:
        super()._do_render()
        if self._stream is not None and not self.ended:
            self._draw_text()

    def _draw_text(self) -> None:
        fresh = self._text_bar is None
        if fresh:
            self._text_bar = _text_bar_class()(total=self.total or None, desc=self.description, unit=self.unit,
                                               file=self._stream, leave=True, mininterval=0, position=0)
            self._text_bar.start_t = self._text_bar._time() - self._elapsed()
        bar = self._text_bar
        bar.set_description_str(self.description, refresh=False)
        red = getattr(self._stream, "isatty", lambda: False)()
        failed = f"{self.failed} failed" if self.failed else ""
        note = ", ".join(p for p in (failed, self.outcome if self.outcome not in ("", "ok") else "") if p)
        bar.set_postfix_str(f"\x1b[31m{note}\x1b[0m" if note and red else note, refresh=False)
        if self.done > bar.n:
            bar.update(self.done - bar.n)
        elif not fresh:  # a new bar has just drawn itself
            bar.refresh()

    # ------------------------------------------------------------------ blocking waits
    def _block(self, timeout: Optional[float], interval: float) -> bool:
        """Hook: wait (on the calling thread) until done or ``timeout``; True when done."""
        raise NotImplementedError

    def wait(self, timeout: Optional[float] = None, widget: Optional[bool] = None, interval: float = 0.1) -> None:
        """Block until done (or ``timeout``), showing the progress: a live widget in a notebook (the
        updater thread moves it), else a text bar on stderr driven from this thread."""
        widget = in_notebook() if widget is None else (widget and ipywidgets_or_none() is not None)
        if widget:
            self.handle = show(self)
        else:
            self._stream = sys.stderr
        self.start()
        try:
            finished = self._block(timeout, interval)
        except KeyboardInterrupt:
            self.finish("interrupted")
            raise
        self.refresh()
        if not finished:
            self.finish(f"not done after {timeout:g}s")
        self.stop()
        self._update_handle()


class TaskProgress(Progress):
    """Progress of an ``AsyncResult``, with a button that aborts its unstarted tasks."""

    def __init__(self, ar, description: str = "tasks", **kwargs):
        super().__init__(len(ar), description, **kwargs)
        self.ar = ar

    def _elapsed(self) -> float:
        return max(0.0, float(self.ar.elapsed))

    def _fetch(self):
        return self.ar.progress, getattr(self.ar, "failures", 0), self.ar.done()

    def _apply(self, data) -> None:
        self.done, self.failed, finished = data
        if finished:
            error = self.ar.exception(0)
            self.outcome = "ok" if error is None else shorten(describe(error), 120)
            self.done = self.total
            self._end("finished")

    def _on_start(self) -> None:
        self.ar.add_done_callback(lambda _f: self.poke())

    def _block(self, timeout: Optional[float], interval: float) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.ar.done():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self.ar.wait(interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic())))
        return True

    def abort(self, _button=None) -> None:
        """Ask the engines to skip this result's tasks that have not started."""
        self.ar.abort()
        self.poke()

    def _buttons(self, widgets) -> list:
        self._w_abort = widgets.Button(description="abort", icon="stop", tooltip="skip the tasks not started yet",
                                       layout=widgets.Layout(width="auto"))
        self._w_abort.on_click(self.callback(self.abort, "abort"))
        return [self._w_abort]

    def _render_buttons(self) -> None:
        self._w_abort.disabled = bool(self.ended)


class EngineProgress(Progress):
    """Engines registered out of those wanted, with the phase of a hub's start in the label."""

    update_interval = Float(0.25, config=True, help="Seconds between two looks at the registered engines.")
    unit = " engines"
    css_class = "hubctl-engine-progress"

    def __init__(self, wanted: int, client=None, stream=None, **kwargs):
        super().__init__(wanted, "engines", stream=stream, **kwargs)
        self.client = client
        self._unsubscribe = None

    registered = property(lambda self: self.done, lambda self, n: setattr(self, "done", int(n)),
                          doc="Engines registered so far.")
    wanted = property(lambda self: self.total, doc="Engines waited for.")
    phase = property(lambda self: self.description, doc="What is happening (e.g. 'starting the controller').")

    def attach(self, client) -> None:
        """Count the engines of ``client`` from now on."""
        with self._lock:
            self.client = client
            if self.live:
                self._subscribe()

    def _subscribe(self) -> None:
        if self._unsubscribe is None and self.client is not None:
            self._unsubscribe = self.client.on_registration(lambda _e: self.poke())

    def _on_start(self) -> None:
        self._subscribe()

    def _on_end(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe, unsubscribe = None, self._unsubscribe
            unsubscribe()

    def _fetch(self):
        return len(self.client.ids) if self.client is not None else self.done

    def _apply(self, data) -> None:
        self.done = data
        if self.total and self.done >= self.total and not self.outcome:
            self.outcome = "ok"
            self._say_ready()
            self._end("finished")

    def update(self, registered: Optional[int] = None, phase: Optional[str] = None) -> None:
        """Set progress by hand (any thread); renders within the throttle."""
        with self._lock:
            if registered is not None:
                self.done = registered
            if phase is not None:
                self.description = phase
            self.request_render()

    def finish(self, outcome: str = "ok") -> None:
        if outcome == "ok":
            if self.client is not None:  # the last count, not the updater thread's previous poll
                try:
                    self.done = max(self.done, len(self.client.ids))
                except Exception:
                    pass
            self._say_ready()
        super().finish(outcome)

    def _say_ready(self) -> None:
        # Both ways of finishing (the updater thread seeing every engine, the starter returning) give
        # the same last label, whichever of their renders reaches the front end last.
        if ":" in self.description:
            self.description = self.description.split(":")[0] + ": ready"

    def _block(self, timeout: Optional[float], interval: float) -> bool:
        try:
            self.client.wait_for_engines(self.total, timeout, interactive=False)
        except TimeoutError:
            self.refresh()
            self.finish(f"only {self.done} of {self.total} after {timeout:g}s")
            raise
        return True
