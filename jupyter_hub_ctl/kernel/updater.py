"""The kernel's one updater thread: it schedules every live view of this process.

Each ``LiveView`` that updates live is registered here with the time it next wants to run.
The thread (a daemon, started on first use) sleeps until the earliest of those times or a
``wake``, then calls ``view._tick()`` of every view that is due; a tick polls the view's source
(hub queries through the thread-safe ``Client``, an AsyncResult's state), applies what it got
under the view's lock and sets the widgets' traits, and returns how long until it wants to run
again (None: drop it).  Widget state may be sent from here because ipykernel >= 7.1 routes comm
messages from any thread; button callbacks, which JupyterLab >= 4.4 delivers on a kernel
subshell thread, take the same per-view lock.

So the views keep updating while the kernel's main thread blocks in a cell (``ar.get()``,
``time.sleep``), and nothing depends on the kernel's event loop.  The updater also keeps the
count of comm messages the views' renders sent in the last second: a live view whose render is
due waits while that count is over its ``max_messages_per_second`` (its changes coalesce), so
many live views together cannot flood the kernel's IOPub socket, which drops what the Jupyter
server does not read in time.  The thread stops at
interpreter exit (kernel shutdown or restart) before the interpreter tears down its modules.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from typing import Optional

log = logging.getLogger(__name__)


class Updater:
    """Runs ``_tick()`` of registered views when they are due, on one daemon thread."""

    def __init__(self, name: str = "hubctl-updater"):
        self.name = name
        self._cond = threading.Condition()
        self._due: dict = {}  # view -> monotonic time it is due
        self._thread: Optional[threading.Thread] = None
        self._stopped = False
        self._sent: deque = deque()  # (monotonic time, comm messages) of the last second's renders
        self._sent_total = 0
        self.ticks = 0  # ticks run (for tests and diagnostics)

    # ------------------------------------------------------------------ scheduling
    def schedule(self, view, at: Optional[float] = None) -> bool:
        """Run ``view._tick()`` at monotonic time ``at`` (now by default), or sooner if already due sooner.

        False once the updater has stopped (the interpreter is exiting)."""
        at = time.monotonic() if at is None else at
        with self._cond:
            if self._stopped:
                return False
            current = self._due.get(view)
            if current is None or at < current:
                self._due[view] = at
                self._cond.notify()
            self._ensure_thread()
        return True

    # ------------------------------------------------------------------ the kernel's message budget
    def spent(self, messages: int) -> None:
        """Count the comm messages a render just sent (any view, any thread)."""
        if messages > 0:
            now = time.monotonic()
            with self._cond:
                self._forget_sent(now)
                self._sent.append((now, messages))
                self._sent_total += messages

    def _forget_sent(self, now: float) -> None:
        while self._sent and self._sent[0][0] <= now - 1.0:
            self._sent_total -= self._sent.popleft()[1]

    def budget_wait(self, per_second: float) -> float:
        """Seconds until the views' messages of the last second fall below ``per_second`` (0: now;
        ``per_second`` <= 0: no budget)."""
        if per_second <= 0:
            return 0.0
        now = time.monotonic()
        with self._cond:
            self._forget_sent(now)
            left, wait = self._sent_total, 0.0
            for at, messages in self._sent:  # oldest first: wait until enough of them leave the window
                if left < per_second:
                    break
                left -= messages
                wait = at + 1.0 - now
            return max(0.0, wait)

    def remove(self, view) -> None:
        with self._cond:
            self._due.pop(view, None)

    def scheduled(self, view) -> bool:
        with self._cond:
            return view in self._due

    @property
    def thread(self) -> Optional[threading.Thread]:
        return self._thread

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ the thread
    def _next_ready(self) -> Optional[list]:
        """Wait until some views are due; return them (None when stopping)."""
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                ready = [v for v, t in self._due.items() if t <= now]
                if ready:
                    for v in ready:
                        del self._due[v]
                    return ready
                timeout = min(self._due.values()) - now if self._due else None
                self._cond.wait(timeout)
            return None

    def _main(self) -> None:
        while True:
            ready = self._next_ready()
            if ready is None:
                return
            for view in ready:
                try:
                    delay = view._tick()
                except BaseException:  # a tick shows its own errors; this is a bug in the view
                    log.exception("live view %r failed; it stops updating", type(view).__name__)
                    delay = None
                self.ticks += 1
                if delay is not None:
                    self.schedule(view, time.monotonic() + max(0.0, delay))

    def stop(self, timeout: float = 2.0) -> None:
        """Stop for good: no view runs again (their widgets keep what they last showed)."""
        with self._cond:
            self._stopped = True
            self._due.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)  # a poll stuck on a silent hub may outlast this; the thread is a daemon

    @property
    def stopped(self) -> bool:
        return self._stopped


_updater: Optional[Updater] = None
_updater_lock = threading.Lock()


def updater() -> Updater:
    """This process's updater (created, and stopped at exit, on first use)."""
    global _updater
    with _updater_lock:
        if _updater is None:
            _updater = Updater()
            atexit.register(_updater.stop)
        return _updater
