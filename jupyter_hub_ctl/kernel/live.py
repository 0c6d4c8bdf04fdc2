"""``LiveView``: the update machinery every widget of this package shares.

A view polls a source (usually hub queries, which block, so they run on the view's own
worker thread) and applies what it got on the thread that owns the view — the kernel's
main thread, whose asyncio loop drives live updates.  Traits are only ever set there:
results cross from the worker thread as futures awaited on the loop, and events from the
client's IO thread only ``poke`` the loop (``call_soon_threadsafe``).  Renders are
throttled to ``max_updates_per_second``; a view stops updating when it is closed, when
its frontend closes the widget, or when ``_apply`` reports that its source has ended.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
import time
from concurrent.futures import Future
from typing import Optional

from traitlets import Bool, Float, Integer, Unicode
from traitlets.config import LoggingConfigurable

from .render import TextAndHtml


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


def running_loop() -> Optional[asyncio.AbstractEventLoop]:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _Worker:
    """One daemon thread running blocking calls in order, answering with futures.

    A daemon thread (not a ThreadPoolExecutor) so that a query to a vanished hub, which
    may never return, cannot hold up interpreter exit.
    """

    def __init__(self, name: str):
        self._jobs: "queue.SimpleQueue" = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fut, fn = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as e:
                fut.set_exception(e)

    def submit(self, fn) -> Future:
        fut: Future = Future()
        self._jobs.put((fut, fn))
        return fut

    def stop(self) -> None:
        self._jobs.put(None)


class SourceEnded(Exception):
    """Raised by ``_fetch`` when there is nothing more to watch; ``state`` says what became of the source."""

    def __init__(self, message: str, state: str = "stopped"):
        super().__init__(message)
        self.state = state


class LiveView(TextAndHtml, LoggingConfigurable):
    """Base of the live widgets: throttled updates from the kernel's event loop."""

    update_interval = Float(1.0, config=True, help="Seconds between two polls while the view updates live.")
    max_updates_per_second = Float(2.0, config=True,
                                   help="Upper bound on re-renders per second; changes arriving faster are "
                                        "coalesced into the next render.")
    query_timeout = Float(10.0, config=True,
                          help="Seconds one poll may take; a source that does not answer in time stops the "
                               "live updates (the view says why).")

    live = Bool(False, help="True while updates are scheduled on the event loop.")
    ended = Unicode("", help="Why the view stopped updating ('' while it may still update).")
    renders = Integer(0, help="How many times the view has been rendered.")
    polls = Integer(0, help="How many polls of the source were applied.")
    updated = Float(0.0, help="Wall-clock time of the last applied poll.")

    #: whether ``_fetch`` blocks (hub queries) and so runs on the worker thread
    fetch_blocks = True

    def __init__(self, **kwargs):
        if "parent" not in kwargs and "config" not in kwargs:
            kwargs["parent"] = _shell()  # so c.HubStatus.update_interval = ... in IPython config applies
        super().__init__(**kwargs)
        self._owner = threading.get_ident()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._task: Optional[asyncio.Task] = None
        self._wake: Optional[asyncio.Event] = None
        self._worker: Optional[_Worker] = None
        self._widget = None
        self._closed = False
        self._last_render = float("-inf")
        self._render_timer = None
        self._dirty = False

    # ------------------------------------------------------------------ to implement
    def _fetch(self):
        """Collect fresh data (on the worker thread when ``fetch_blocks``); raise SourceEnded to stop."""
        raise NotImplementedError

    def _apply(self, data) -> None:
        """Take fetched data into the view's traits (owner thread)."""
        raise NotImplementedError

    def _build(self, widgets):
        """Create the ipywidgets tree (called once, owner thread)."""
        raise NotImplementedError

    def _render(self) -> None:
        """Copy the view's state into its widgets (owner thread)."""
        raise NotImplementedError

    def text(self) -> str:
        raise NotImplementedError

    def html(self) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------ widget
    @property
    def widget(self):
        """The ipywidgets tree (None when ipywidgets is not installed)."""
        if self._widget is None and not self._closed:
            widgets = ipywidgets_or_none()
            if widgets is not None:
                self._check_thread()
                self._widget = self._build(widgets)
                self._render()
        return self._widget

    def _widget_alive(self) -> bool:
        return self._widget is None or getattr(self._widget, "comm", None) is not None

    def _check_thread(self) -> None:
        if threading.get_ident() != self._owner:
            raise RuntimeError(f"{type(self).__name__} state may only change on the thread that created it "
                               "(the kernel's main thread)")

    # ------------------------------------------------------------------ updating
    def refresh(self) -> "LiveView":
        """Poll once now, on this (the owner) thread, and render."""
        self._check_thread()
        if self._closed:
            return self
        try:
            data = self._fetch()
        except SourceEnded as e:
            self._source_ended(e)
        else:
            self._take(data)
        self.flush()
        return self

    def start(self, loop: Optional[asyncio.AbstractEventLoop] = None) -> bool:
        """Update live from ``loop`` (default: the running loop); False when there is no loop to use."""
        self._check_thread()
        if self._closed or self.ended or self._task is not None:
            return self._task is not None
        loop = loop or running_loop()
        if loop is None:
            return False
        self._loop = loop
        self._wake = asyncio.Event()
        # A fresh context: updates are not outputs of the cell that opened the view, so the kernel
        # attributes them to its latest request (ipykernel's fallback for code outside any request).
        self._task = contextvars.Context().run(loop.create_task, self._run())
        self.live = True
        self._on_start()
        return True

    def _on_start(self) -> None:
        """Hook: subscribe to events (which must only call ``poke``)."""

    def poke(self) -> None:
        """Ask for a poll soon; safe from any thread (e.g. a client's IO thread)."""
        loop = self._loop
        if loop is None or self._closed or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._set_wake)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def _set_wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        try:
            while not self._closed and not self.ended:
                if not self._widget_alive():
                    self._end("the widget was closed")
                    break
                try:
                    data = await self._fetch_async()
                except SourceEnded as e:
                    self._source_ended(e)
                    break
                except asyncio.TimeoutError:
                    self._end(f"no answer within {self.query_timeout:g}s")
                    break
                except Exception as e:  # a failed poll: show it, keep trying
                    self._problem(e)
                else:
                    if self._closed:
                        break
                    self._take(data)
                if self.ended:
                    break
                await self._pause()
        except asyncio.CancelledError:
            pass
        finally:
            self.live = False
            self._task = None
            self.flush()

    async def _fetch_async(self):
        if not self.fetch_blocks:
            return self._fetch()
        if self._worker is None:
            self._worker = _Worker(f"hubctl-{type(self).__name__}")
        fut = asyncio.wrap_future(self._worker.submit(self._fetch))
        deadline = time.monotonic() + self.query_timeout
        while True:  # a query to a hub that vanished meanwhile may never return: keep checking the source
            done, _ = await asyncio.wait({fut}, timeout=min(0.25, self.query_timeout))
            if done:
                return fut.result()
            self._check_source()
            if time.monotonic() > deadline:
                raise asyncio.TimeoutError

    def _check_source(self) -> None:
        """Hook, called on the owner thread while a poll is slow: raise SourceEnded if the source is gone."""

    async def _pause(self) -> None:
        """Wait for the next poll: the interval, or a poke (never sooner than the throttle allows)."""
        gap = 1.0 / self.max_updates_per_second if self.max_updates_per_second > 0 else 0.0
        started = time.monotonic()
        try:
            await asyncio.wait_for(self._wake.wait(), self.update_interval)
        except asyncio.TimeoutError:
            pass
        self._wake.clear()
        rest = gap - (time.monotonic() - started)
        if rest > 0 and not self._closed:
            await asyncio.sleep(rest)

    async def until(self, predicate, timeout: Optional[float] = None):
        """Wait, letting live updates run, until ``predicate(view)`` is true; return its value.

        ``await status.until(lambda s: s.totals["running"] == 0, timeout=60)`` in a notebook cell.
        Raises TimeoutError at the deadline, or RuntimeError if the view stops updating first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            if self._task is None and (self.ended or self._closed or self._loop is None):
                raise RuntimeError(f"{type(self).__name__} is not updating ({self.ended or 'not started'})")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{type(self).__name__}: condition not met within {timeout:g}s")
            await asyncio.sleep(0.05)

    def _take(self, data) -> None:
        self._check_thread()
        self._apply(data)
        self.polls += 1
        self.updated = time.time()
        self.request_render()

    def _problem(self, error: BaseException) -> None:
        """A poll failed (not fatally); subclasses show it."""
        self.log.debug("%s: poll failed: %r", type(self).__name__, error)

    def _source_ended(self, e: SourceEnded) -> None:
        self._end(str(e))

    def _end(self, reason: str) -> None:
        self._check_thread()
        if not self.ended:
            self.ended = reason or "ended"
            self._on_end()
        self.request_render()

    def _on_end(self) -> None:
        """Hook: release what the view holds when it stops updating."""

    # ------------------------------------------------------------------ throttled rendering
    def request_render(self) -> None:
        """Render now, or as soon as the throttle allows (owner thread)."""
        self._check_thread()
        gap = 1.0 / self.max_updates_per_second if self.max_updates_per_second > 0 else 0.0
        wait = self._last_render + gap - time.monotonic()
        if wait <= 0:
            self._do_render()
            return
        self._dirty = True
        if self._render_timer is None and self._loop is not None and not self._loop.is_closed():
            self._render_timer = self._loop.call_later(wait, self._timer_render, context=contextvars.Context())

    def _timer_render(self) -> None:
        self._render_timer = None
        if self._dirty:
            self._do_render()

    def render_now(self) -> None:
        """Render at once, bypassing the throttle: for changes a user just made (owner thread)."""
        self._check_thread()
        self._dirty = True
        self.flush()

    def flush(self) -> None:
        """Render pending changes regardless of the throttle (owner thread)."""
        self._check_thread()
        if self._dirty:
            self._do_render()

    def _do_render(self) -> None:
        self._dirty = False
        self._last_render = time.monotonic()
        if self._widget is not None and not self._closed:
            self._render()
        self.renders += 1

    # ------------------------------------------------------------------ lifetime
    def end(self, reason: str, state: str = "stopped") -> None:
        """Stop updating for good, saying why (e.g. the hub was stopped); any thread may call this."""
        if threading.get_ident() != self._owner:
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self.end, reason, state)
            return
        if self._closed or self.ended:
            return
        self.stop()
        self._source_ended(SourceEnded(reason, state))
        self.flush()

    def stop(self) -> None:
        """Stop live updates (the widget stays, showing the last state)."""
        self._check_thread()
        try:
            if self._task is not None:
                self._task.cancel()
            if self._render_timer is not None:
                self._render_timer.cancel()
        except RuntimeError:  # the loop is already closed (interpreter exit): nothing runs any more
            self._task = None
        self._render_timer = None
        self.flush()
        self.live = False

    def close(self) -> None:
        """Stop updating and close the widgets."""
        if self._closed:
            return
        self.stop()
        self._closed = True
        if self._worker is not None:
            self._worker.stop()
        self._on_end()
        if self._widget is not None:
            _close_tree(self._widget)

    # ------------------------------------------------------------------ display
    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = {"text/plain": self.text(), "text/html": self.html()}
        widget = None if self._closed else self.widget
        if widget is not None and getattr(widget, "comm", None) is not None:
            bundle["application/vnd.jupyter.widget-view+json"] = {
                "version_major": 2, "version_minor": 0, "model_id": widget.model_id}
        return bundle


def _close_tree(widget) -> None:
    for child in getattr(widget, "children", ()) or ():
        _close_tree(child)
    try:
        widget.close()
    except Exception:
        pass
