"""The Client's engines, its views of them, and waiting for its own tasks (ipyparallel's API)."""

from __future__ import annotations

import time
import warnings
from concurrent.futures import Future
from typing import Optional

from .errors import NoEnginesRegistered, RemoteError


class Targets:
    """Mixin of ``Client``: engine ids, views (``rc[0]``, ``rc[:]``, ``rc[-1]``), ``wait``, ``outstanding``."""

    # ------------------------------------------------------------------ engines
    @property
    def ids(self) -> list:
        """Ids of the registered engines, sorted."""
        return sorted(self._engines)

    @property
    def engines(self) -> dict:
        """Registered engines: ``{id: uuid}`` (a copy)."""
        return dict(self._engines)

    def __len__(self) -> int:
        return len(self._engines)

    def __iter__(self):
        """A DirectView of each engine."""
        for eid in self.ids:
            yield self.direct_view(eid)

    def wait_for_engines(self, n: int, timeout: Optional[float] = None, interactive: Optional[bool] = None,
                         widget: Optional[bool] = None, *, block: bool = True):
        """Block until at least ``n`` engines are registered (``timeout`` None or -1: for ever) and
        return the ids of all registered engines (ipyparallel's returns None).

        TimeoutError says how many came.  ``interactive`` (default: inside IPython, as ipyparallel
        does) shows a progress bar while waiting, a widget in a notebook (``widget=False``: text);
        it returns the ids as well.  ``block=False`` returns a Future of the engine ids instead.
        """
        if not block:
            fut: Future = Future()

            def run():
                try:
                    fut.set_result(self.wait_for_engines(n, timeout, False))
                except BaseException as e:
                    fut.set_exception(e)

            import threading

            threading.Thread(target=run, name="hubctl-wait-engines", daemon=True).start()
            return fut
        if timeout is not None and timeout < 0:
            timeout = None
        if interactive is None:
            from ..kernel.progress import in_ipython

            interactive = in_ipython()
        if interactive and len(self._engines) < n:
            from ..kernel.progress import EngineProgress

            EngineProgress(n, client=self).wait(timeout, widget=widget)
            return self.ids
        deadline = None if timeout is None else time.monotonic() + timeout
        next_ask = time.monotonic() + 0.25
        while len(self._engines) < n:
            now = time.monotonic()
            if deadline is not None and now > deadline:
                ids = self.ids
                shown = ids if len(ids) <= 20 else f"{str(ids[:10])[:-1]}, ... {len(ids) - 10} more]"
                raise TimeoutError(
                    f"only {len(self._engines)} of {n} engines registered within {timeout}s "
                    f"(engines: {shown}); check the engines' logs for registration errors")
            if now >= next_ask:
                # registrations are announced on a PUB socket, which drops what is published before
                # our subscription is joined (e.g. engines coming back to a restarted controller
                # first): ask the hub itself now and then
                next_ask = now + 1.0
                try:
                    engines = self._hub("connection_request", {}, timeout=5)["content"].get("engines", {})
                    self._update_engines({int(k): v for k, v in engines.items()})
                except (TimeoutError, RemoteError):
                    pass
                continue
            time.sleep(0.05)
        return self.ids

    async def wait_for_engines_async(self, n: int, timeout: Optional[float] = None) -> list:
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(None, self.wait_for_engines, n, timeout, False)

    def _uuid_of(self, target: int) -> str:
        try:
            return self._engines[target]
        except KeyError:
            raise IndexError(f"no engine with id {target} (engines: {self.ids})") from None

    def _engine_id(self, target) -> int:
        """An engine id from an id or a negative index (``-1``: the last engine)."""
        if isinstance(target, bool) or not isinstance(target, int):
            raise TypeError(f"engine ids are ints, not {type(target).__name__}")
        if target < 0:
            ids = self.ids
            if -target > len(ids):
                raise IndexError(f"no engine at index {target} (engines: {ids})")
            return ids[target]
        self._uuid_of(target)
        return target

    def _resolve_targets(self, targets) -> list:
        """Engine ids of ``targets``: 'all'/None, an id (negative: counted from the last), a slice, a list."""
        if targets is None or targets == "all":
            ids = self.ids
        elif isinstance(targets, str):
            raise TypeError(f"{targets!r} is not a valid target: use 'all', an engine id, a slice or a list")
        elif isinstance(targets, int):
            ids = [self._engine_id(targets)]
        elif isinstance(targets, slice):
            ids = self.ids[targets]
        else:
            ids = [self._engine_id(t) for t in targets]
        if not ids:
            raise NoEnginesRegistered("no engines registered with this hub")
        return ids

    # ------------------------------------------------------------------ views
    def __getitem__(self, key):
        """``rc[0]``, ``rc[-1]``: one engine (its results come back unwrapped); ``rc[:]``, ``rc[[0, 2]]``: several."""
        if not isinstance(key, (int, slice, list, tuple, range)) or isinstance(key, bool):
            raise TypeError(f"key by int/slice/iterable of ints only, not {type(key).__name__}")
        return self.direct_view(key)

    def direct_view(self, targets="all", **flags):
        """A DirectView; ``'all'`` means whichever engines are registered at each call."""
        from .directview import DirectView

        if isinstance(targets, int):
            targets = self._engine_id(targets)
        elif targets != "all":
            targets = self._resolve_targets(targets)
        return DirectView(self, targets, **flags)

    def load_balanced_view(self, targets=None, **flags):
        """A LoadBalancedView over every engine, or over ``targets``."""
        from .views import LoadBalancedView

        if targets == "all":
            targets = None
        if targets is not None:
            targets = self._resolve_targets(targets)
        return LoadBalancedView(self, targets, **flags)

    def broadcast_view(self, targets="all", is_coalescing: bool = False, **flags):
        from .directview import BroadcastView

        return BroadcastView(self, self._resolve_targets(targets), is_coalescing=is_coalescing, **flags)

    def executor(self, targets=None):
        """A ``concurrent.futures.Executor`` running tasks load-balanced (``load_balanced_view(targets).executor``)."""
        return self.load_balanced_view(targets).executor

    def activate(self, targets="all", suffix: str = ""):
        """Make ``%px<suffix>``, ``%%px<suffix>``, ``%autopx<suffix>``, ``%pxconfig<suffix>`` and
        ``%pxresult<suffix>`` run on ``targets`` (a blocking DirectView, returned)."""
        view = self.direct_view(targets)
        view.block = True
        view.activate(suffix)
        return view

    def on_registration(self, callback):
        """Call ``callback(event_dict)`` on engine register/unregister and hub shutdown.

        Returns a function that unsubscribes ``callback`` (as ``off_registration(callback)`` does).
        """
        self._registration_callbacks.append(callback)
        return lambda: self.off_registration(callback)

    def off_registration(self, callback) -> bool:
        """Stop calling ``callback`` (one subscription of it); False if it was not subscribed."""
        try:
            self._registration_callbacks.remove(callback)
        except ValueError:
            return False
        return True

    # ------------------------------------------------------------------ this client's tasks
    @property
    def outstanding(self) -> set:
        """msg_ids of this client's tasks whose results have not arrived yet."""
        from .client import _QueryFuture

        return {m for m, f in list(self._futures.items()) if not isinstance(f, _QueryFuture)}

    def wait(self, jobs=None, timeout: Optional[float] = -1) -> bool:
        """Wait for tasks (msg_ids, history indices, AsyncResults; default: all outstanding).

        True once they are all done, False if ``timeout`` seconds (None or -1: for ever) pass first.
        """
        from .hub_queries import msg_ids_of

        futures = []
        if jobs is None:
            ids = self.outstanding
        else:
            items = jobs if isinstance(jobs, (list, tuple, set)) else [jobs]
            ids = set()
            for job in items:
                if isinstance(job, Future):
                    futures.append(job)
                else:
                    ids.update(msg_ids_of(job, self.history))
        futs = self._futures

        def done():
            return all(f.done() for f in futures) and not any(m in futs for m in ids)

        if done():
            return True
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        self._waiters += 1
        try:
            with self._wait_cond:
                while not done():
                    remaining = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                    if remaining <= 0:
                        return False
                    self._wait_cond.wait(remaining)
        finally:
            self._waiters -= 1
        return True

    def wait_interactive(self, jobs=None, interval: float = 1.0, timeout: Optional[float] = -1) -> bool:
        """``wait``, showing progress (see ``AsyncResult.wait_interactive``)."""
        from .asyncresult import AsyncResult, Message

        if jobs is None:
            children = [f for f in list(self._futures.values()) if isinstance(f, Message)]
            if not children:
                return True
            ar = AsyncResult(self, children, fname="wait")
        else:
            ar = self.get_result(jobs, block=False)
        return ar.wait_interactive(interval=interval, timeout=timeout)

    def spin(self) -> None:
        """Nothing to do: results arrive on the client's IO thread (kept for ipyparallel code)."""
        warnings.warn("Client.spin is not needed: results arrive on the client's IO thread", DeprecationWarning,
                      stacklevel=2)


__all__ = ["Targets"]
