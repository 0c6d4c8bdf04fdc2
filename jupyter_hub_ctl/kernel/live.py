"""``LiveView``: the update machinery every widget of this package shares.

A view polls a source (hub queries, an AsyncResult's state), takes what it got into its
traits and copies them into its ipywidgets.  While it updates live, the kernel's updater
thread (``updater``) runs its polls and renders, so it stays live while a cell blocks; button
and control callbacks run on whatever thread the kernel delivers them on (a subshell thread in
JupyterLab >= 4.4).  Both sides hold the view's lock while they change its state or widgets,
so they never interleave; blocking queries run outside the lock.  Renders are throttled to
``max_updates_per_second``; a render sends one message per changed widget, and a live render
waits while the kernel's live views have sent ``max_messages_per_second`` messages in the last
second.  An error in a poll or a callback is shown inside the widget.  A view stops updating
when it is closed, when its frontend closes the widget, when its source ends (the hub
stopped) or when the interpreter exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from typing import Optional

from traitlets import Bool, Float, Integer, Unicode
from traitlets.config import LoggingConfigurable

from .render import TextAndHtml, template
from .updater import updater


def ipywidgets_or_none():
    try:
        import ipywidgets
    except ImportError:
        return None
    return ipywidgets


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


class SourceEnded(Exception):
    """Raised by ``_fetch`` when there is nothing more to watch; ``state`` says what became of the source."""

    def __init__(self, message: str, state: str = "stopped"):
        super().__init__(message)
        self.state = state


def describe(error: BaseException) -> str:
    """One line for an exception: ``Type: message``."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


class LiveView(TextAndHtml, LoggingConfigurable):
    """Base of the live widgets: polled on the updater thread, throttled, thread-safe."""

    update_interval = Float(1.0, config=True, help="Seconds between two polls while the view updates live.")
    max_updates_per_second = Float(2.0, config=True,
                                   help="Upper bound on re-renders (and polls) per second; changes arriving "
                                        "faster are coalesced into the next render.")
    max_messages_per_second = Float(200.0, config=True,
                                    help="Comm messages per second that the live views of this kernel together "
                                         "may send while they update on their own (0: no limit): a render due "
                                         "beyond it waits, and its changes coalesce.  The kernel's IOPub socket "
                                         "drops the messages the Jupyter server does not read in time.  A user's "
                                         "own actions render at once whatever the count.")
    query_timeout = Float(5.0, config=True,
                          help="Seconds one hub query of a poll may take; a hub that does not answer in time "
                               "is reported in the view, which tries again later.")

    live = Bool(False, help="True while the updater thread updates the view.")
    ended = Unicode("", help="Why the view stopped updating ('' while it may still update).")
    error = Unicode("", help="The last error of a callback (a click, a filter), shown in the widget until the "
                             "next action succeeds ('' if none).")
    problem = Unicode("", help="The last failed poll, shown in the widget until a poll succeeds ('' if none).")
    renders = Integer(0, help="How many times the view has been rendered.")
    polls = Integer(0, help="How many polls of the source were applied.")
    updated = Float(0.0, help="Wall-clock time of the last applied poll.")

    def __init__(self, **kwargs):
        if "parent" not in kwargs and "config" not in kwargs:
            kwargs["parent"] = _shell()  # so c.HubStatus.update_interval = ... in IPython config applies
        super().__init__(**kwargs)
        self._lock = threading.RLock()
        self._rendering: Optional[int] = None  # the thread copying state into the widgets
        self._widget = None
        self._closed = False
        self._last_render = float("-inf")
        self._last_poll = float("-inf")
        self._dirty = False
        self._poked = False
        self._backoff = 0.0
        self.handle = None  # the display handle, when shown through show(): updated when the view ends

    # ------------------------------------------------------------------ to implement
    def _fetch(self):
        """Collect fresh data (outside the lock; may block); raise SourceEnded to stop."""
        raise NotImplementedError

    def _apply(self, data) -> None:
        """Take fetched data into the view's traits (under the lock)."""
        raise NotImplementedError

    def _build(self, widgets):
        """Create the ipywidgets tree (called once, under the lock)."""
        raise NotImplementedError

    def _render(self) -> None:
        """Copy the view's state into its widgets (under the lock)."""
        raise NotImplementedError

    def text(self) -> str:
        raise NotImplementedError

    def html(self) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------ widget
    @property
    def widget(self):
        """The ipywidgets tree (None when ipywidgets is not installed)."""
        with self._lock:
            if self._widget is None and not self._closed:
                widgets = ipywidgets_or_none()
                if widgets is not None:
                    self._widget = self._build(widgets)
                    self._widget.add_class("hubctl-widget")
                    self._do_render()
            return self._widget

    def style_widget(self, widgets):
        """An HTML widget holding the package's stylesheet (theme-aware, from ``--jp-*`` variables)."""
        style = widgets.HTML(template("style.html.j2").render(), layout=widgets.Layout(display="none"))
        style.add_class("hubctl-style")
        return style

    def _widget_alive(self) -> bool:
        return self._widget is None or getattr(self._widget, "comm", None) is not None

    @property
    def rendering(self) -> bool:
        """True on the thread that is copying state into the widgets (its trait changes are not a user's)."""
        return self._rendering == threading.get_ident()

    def callback(self, fn, what: str = "action"):
        """Wrap a widget callback: it runs under the view's lock, its errors are shown in the widget.

        Changes the view itself makes to its widgets while rendering do not call ``fn``.
        """
        @functools.wraps(fn)
        def run(*args, **kwargs):
            if self.rendering or self._closed:
                return None
            with self._lock:
                try:
                    result = fn(*args, **kwargs)
                    if self.error:
                        self.error = ""
                        self.render_now()
                    return result
                except Exception as e:
                    self.show_error(f"{what} failed: {describe(e)}")
                    self.log.debug("%s: %s failed", type(self).__name__, what, exc_info=True)
                    return None
        return run

    def show_error(self, message: str) -> None:
        """Show ``message`` in the widget (and the text form) at once; '' clears it."""
        with self._lock:
            self.error = message
            self.render_now()

    # ------------------------------------------------------------------ updating
    def refresh(self) -> "LiveView":
        """Poll once now, on this thread, and render."""
        if self._closed:
            return self
        try:
            data = self._fetch()
        except SourceEnded as e:
            with self._lock:
                self._source_ended(e)
        except Exception as e:
            with self._lock:
                self._problem(e)
        else:
            with self._lock:
                self._take(data)
        self.flush()
        return self

    def start(self) -> bool:
        """Update live from the kernel's updater thread; False if the view can no longer update."""
        with self._lock:
            if self._closed or self.ended:
                return False
            if not self.live:
                self.live = True
                self._on_start()
        return updater().schedule(self, self._last_poll + self.update_interval)

    def _on_start(self) -> None:
        """Hook (under the lock): subscribe to events (which must only call ``poke``)."""

    def poke(self) -> None:
        """Ask for a poll soon (never sooner than the throttle allows); safe from any thread."""
        if self._closed or not self.live:
            return
        self._poked = True
        updater().schedule(self, self._last_poll + self._gap())

    def _gap(self) -> float:
        return 1.0 / self.max_updates_per_second if self.max_updates_per_second > 0 else 0.0

    def _tick(self) -> Optional[float]:
        """One turn on the updater thread: poll if due, render if due; seconds until the next turn."""
        if self._closed or self.ended or not self.live:
            return None
        if not self._widget_alive():
            with self._lock:
                self._end("the widget was closed")
            return None
        now = time.monotonic()
        if self._poked or now >= self._last_poll + self.update_interval + self._backoff:
            self._poked = False
            self._last_poll = now
            self._poll_once()
            if self.ended or self._closed:
                return None
        with self._lock:
            if self._dirty and self._render_wait() <= 0:
                self._do_render()
            now = time.monotonic()
            wait = self._last_poll + self.update_interval + self._backoff - now
            if self._dirty:
                wait = min(wait, self._render_wait())
        return max(0.0, wait)

    def _render_wait(self) -> float:
        """Seconds until a live render may go out: the view's throttle, then the kernel's message budget."""
        throttle = self._last_render + self._gap() - time.monotonic()
        return max(throttle, updater().budget_wait(self.max_messages_per_second))

    def _poll_once(self) -> None:
        try:
            data = self._fetch()
        except SourceEnded as e:
            with self._lock:
                self._source_ended(e)
                self.flush()
            self._update_handle()
            return
        except Exception as e:  # a failed poll: show it, try again later (backing off while it fails)
            self._backoff = min(30.0, max(self.update_interval, self._backoff * 2))
            with self._lock:
                self._problem(e)
            return
        self._backoff = 0.0
        with self._lock:
            if not self._closed:
                self._take(data)

    def _take(self, data) -> None:
        self.problem = ""
        self._apply(data)
        self.polls += 1
        self.updated = time.time()
        self.request_render()

    def _problem(self, error: BaseException) -> None:
        """A poll failed (not fatally): shown in the view until the next good poll clears it."""
        self.problem = f"update failed: {describe(error)}"
        self.request_render()

    def _source_ended(self, e: SourceEnded) -> None:
        self._end(str(e))

    def _end(self, reason: str) -> None:
        """Stop updating for good (under the lock)."""
        if not self.ended:
            self.ended = reason or "ended"
            self.live = False
            self._on_end()
        self.render_now()

    def _on_end(self) -> None:
        """Hook: release what the view holds when it stops updating."""

    async def until(self, predicate, timeout: Optional[float] = None):
        """Wait without blocking the event loop until ``predicate(view)`` is true; return its value.

        ``await status.until(lambda s: s.totals["running"] == 0, timeout=60)`` in a notebook cell.
        Raises TimeoutError at the deadline, or RuntimeError if the view stops updating first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            if not self.live:
                raise RuntimeError(f"{type(self).__name__} is not updating ({self.ended or 'not started'})")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{type(self).__name__}: condition not met within {timeout:g}s")
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ throttled rendering
    def request_render(self) -> None:
        """Render now, or (while live) as soon as the throttle and the kernel's message budget allow."""
        with self._lock:
            wait = self._render_wait() if self.live else 0.0
            if wait <= 0:
                self._do_render()
                return
            self._dirty = True
        updater().schedule(self, time.monotonic() + wait)

    def render_now(self) -> None:
        """Render at once, bypassing the throttle: for changes a user just made."""
        with self._lock:
            self._do_render()

    def flush(self) -> None:
        """Render pending changes regardless of the throttle."""
        with self._lock:
            if self._dirty:
                self._do_render()

    def _do_render(self) -> None:
        with self._lock:
            self._dirty = False
            self._last_render = time.monotonic()
            if self._widget is not None and not self._closed and self._widget_alive():
                self._rendering = threading.get_ident()
                held = _Held(self._widget)
                try:
                    with held:
                        self._render()
                finally:
                    self._rendering = None
                    updater().spent(held.sent)
            self.renders += 1

    def _update_handle(self) -> None:
        """Refresh the static text/HTML copy of a displayed view (what a notebook saved without widget state shows)."""
        if self.handle is not None:
            try:
                self.handle.update(self)
            except Exception:  # no display to update (the kernel is going away)
                pass

    # ------------------------------------------------------------------ lifetime
    def end(self, reason: str, state: str = "stopped") -> None:
        """Stop updating for good, saying why (e.g. the hub was stopped); any thread may call this."""
        with self._lock:
            if self._closed or self.ended:
                return
            self._source_ended(SourceEnded(reason, state))
            self.flush()
        updater().remove(self)
        self._update_handle()

    def stop(self) -> None:
        """Stop live updates (the widget stays, showing the last state)."""
        with self._lock:
            self.live = False
            self.flush()
        updater().remove(self)

    def close(self) -> None:
        """Stop updating and close the widgets."""
        with self._lock:
            if self._closed:
                return
            self.stop()
            self._closed = True
            self._on_end()
            widget, self._widget = self._widget, None
        if widget is not None:
            _close_tree(widget)

    # ------------------------------------------------------------------ display
    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = {"text/plain": self.text(), "text/html": self.html()}
        widget = None if self._closed else self.widget
        if widget is not None and getattr(widget, "comm", None) is not None:
            bundle["application/vnd.jupyter.widget-view+json"] = {
                "version_major": 2, "version_minor": 0, "model_id": widget.model_id}
        return bundle


def _tree(widget, seen=None) -> list:
    """Every widget model of a tree, children first: its children's, then its layout and style
    models (shared ones once), then the widget itself."""
    seen = set() if seen is None else seen
    found = []
    for part in (*(getattr(widget, "children", ()) or ()), getattr(widget, "layout", None),
                 getattr(widget, "style", None)):
        if part is not None and hasattr(part, "hold_sync") and id(part) not in seen:
            found += _tree(part, seen)
    seen.add(id(widget))
    return found + [widget]


class _Held:
    """Holds every model of a widget tree: each sends the traits changed in the block as ONE update
    message when it ends, instead of one message per trait; ``sent`` counts those messages.

    The volume matters: the kernel's IOPub socket silently drops messages (ZeroMQ's high-water
    mark, 1000 by default) while the Jupyter server reads them slower than they come.  A lost
    comm_open shows as "Error displaying widget: model not found"; a lost execute_result or
    status leaves a cell that never ends.  A page of the results grid is ~180 widgets, with up to
    five traits each that a render may change.
    """

    def __init__(self, widget):
        self.models = _tree(widget)
        self.sent = 0
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "_Held":
        for model in self.models:
            self._stack.enter_context(model.hold_sync())
        return self

    def __exit__(self, *exc):
        self.sent = sum(1 for model in self.models if getattr(model, "_states_to_send", None))
        return self._stack.__exit__(*exc)


def _each_widget(widget, action: str) -> None:
    """Call ``<model>.<action>()`` on every model of a tree, children first (a failing one is skipped)."""
    for model in _tree(widget):
        try:
            getattr(model, action)()
        except Exception:
            pass


def _resend_tree(widget) -> None:
    """Send the whole state of a widget tree again, attributed to the current request (see finish())."""
    _each_widget(widget, "send_state")


def _close_tree(widget) -> None:
    _each_widget(widget, "close")
