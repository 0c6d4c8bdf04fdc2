"""Views: where work goes (named engines, load balancing, broadcast) and how, with ipyparallel's API.

``DirectView`` and ``BroadcastView`` live in ``directview.py``; this module has the common
``View`` and the ``LoadBalancedView``.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from concurrent.futures import FIRST_COMPLETED, wait
from typing import Any, Optional

from . import ops
from .asyncresult import AsyncResult, Message
from .dependency import Dependency
from .remotefunction import ParallelFunction, RemoteFunction, getname
from ..wire.session import pack
from .serialize import SERIALIZER, serialize_call

_MISSING = object()
#: request metadata key naming the task for the hub's task stream (the function's name)
NAME_KEY = "hubctl_name"


class View:
    """Common flags (``block``, ``track``, ``targets``, ``label``) and plumbing of every view."""

    _flag_names = ("block", "track", "targets", "label")

    def __init__(self, client, targets=None, block: Optional[bool] = None, label: Optional[str] = None,
                 track: bool = False):
        self.client = client
        self.targets = targets
        self.block = client.block if block is None else block
        self.label = label
        self.track = track
        self.history: deque = deque(maxlen=client.history.maxlen)  # this view's msg_ids
        self._executor = None
        self._md_cache = None  # (flags, packed metadata) of the last request sent with default flags

    # ------------------------------------------------------------------ flags
    def set_flags(self, **flags):
        """Set flags by keyword (``block``, ``track``, ``targets``, ``label``, ...); returns the view."""
        for k, v in flags.items():
            if k not in self._flag_names:
                raise KeyError(f"Invalid name: {k!r} ({type(self).__name__} flags: {', '.join(self._flag_names)})")
            setattr(self, k, v)
        return self

    @contextlib.contextmanager
    def temp_flags(self, **flags):
        """Set flags for the duration of a ``with`` block."""
        saved = {k: getattr(self, k) for k in self._flag_names}
        self.set_flags(**flags)
        try:
            yield self
        finally:
            for k, v in saved.items():
                setattr(self, k, v)

    def _finish(self, ar: AsyncResult, block):
        return ar.get() if (self.block if block is None else block) else ar

    # ------------------------------------------------------------------ apply and map
    def apply(self, f, *args, **kwargs):
        """``f(*args, **kwargs)`` on the view's engines: the result if ``block``, else an AsyncResult."""
        return self._finish(self._apply(f, args, kwargs), None)

    def apply_async(self, f, *args, **kwargs) -> AsyncResult:
        return self._apply(f, args, kwargs)

    def apply_sync(self, f, *args, **kwargs):
        return self._apply(f, args, kwargs).get()

    def map(self, f, *sequences, block=None, **kwargs):
        """Parallel ``map(f, *sequences)``; a list if ``block``, else an AsyncMapResult."""
        if not sequences:
            raise TypeError("map needs at least one sequence")
        return ParallelFunction(self, f, block=self.block if block is None else block, **kwargs).map(*sequences)

    def map_async(self, f, *sequences, **kwargs) -> AsyncResult:
        if "block" in kwargs:
            raise TypeError("map_async doesn't take a `block` keyword argument.")
        return self.map(f, *sequences, block=False, **kwargs)

    def map_sync(self, f, *sequences, **kwargs):
        if "block" in kwargs:
            raise TypeError("map_sync doesn't take a `block` keyword argument.")
        return self.map(f, *sequences, block=True, **kwargs)

    def imap(self, f, *sequences, **kwargs):
        """An iterator over ``map(f, *sequences)`` yielding results as they arrive."""
        return iter(self.map_async(f, *sequences, **kwargs))

    def remote(self, block=None, **flags):
        """Decorator: calling the function runs it on the view's engines (a RemoteFunction)."""
        return lambda f: RemoteFunction(self, f, block=self.block if block is None else block, **flags)

    def parallel(self, dist: str = "b", block=None, **flags):
        """Decorator: calling the function runs it on parts of its sequence arguments (a ParallelFunction)."""
        return lambda f: ParallelFunction(self, f, dist=dist, block=self.block if block is None else block, **flags)

    @property
    def executor(self):
        """This view as a ``concurrent.futures.Executor`` (``submit``, ``map``, ``shutdown``)."""
        if self._executor is None:
            from .executor import ViewExecutor

            self._executor = ViewExecutor(self)
        return self._executor

    # ------------------------------------------------------------------ this view's tasks
    def _record(self, msgs) -> None:
        h = self.history
        for m in msgs:
            h.append(m.msg_id)

    @property
    def outstanding(self) -> set:
        """msg_ids of this view's tasks whose results have not arrived yet."""
        futs = self.client._futures
        return {m for m in list(self.history) if m in futs}

    def wait(self, jobs=None, timeout: Optional[float] = -1) -> bool:
        """Wait for tasks (default: all of this view's); False if ``timeout`` seconds pass first."""
        return self.client.wait(list(self.outstanding) if jobs is None else jobs, timeout)

    def abort(self, jobs=None, targets=None, block: Optional[bool] = None):
        """Keep tasks (default: this view's outstanding ones) from running if they have not started."""
        block = self.block if block is None else block
        targets = self.targets if targets is None else targets
        jobs = sorted(self.outstanding) if jobs is None else jobs
        return self.client.abort(jobs=jobs, targets=targets, block=block)

    def queue_status(self, targets=None, verbose: bool = False) -> dict:
        return self.client.queue_status(targets=self.targets if targets is None else targets, verbose=verbose)

    def purge_results(self, jobs=(), targets=()):
        return self.client.purge_results(jobs=jobs, targets=targets)

    def shutdown(self, targets=None, restart: bool = False, hub: bool = False, block: Optional[bool] = None):
        return self.client.shutdown(targets=self.targets if targets in (None, "all") else targets, restart=restart,
                                    hub=hub, block=self.block if block is None else block)

    def get_result(self, indices_or_msg_ids=None, block: Optional[bool] = None, owner: bool = False):
        """An AsyncResult of tasks by msg_id or by index into this view's history (default: the last)."""
        if indices_or_msg_ids is None:
            indices_or_msg_ids = -1
        if isinstance(indices_or_msg_ids, int):
            indices_or_msg_ids = self.history[indices_or_msg_ids]
        elif isinstance(indices_or_msg_ids, (list, tuple)):
            indices_or_msg_ids = [self.history[i] if isinstance(i, int) else i for i in indices_or_msg_ids]
        return self.client.get_result(indices_or_msg_ids, block=block, owner=owner)

    def __len__(self) -> int:
        if isinstance(self.targets, int):
            return 1
        if isinstance(self.targets, (list, tuple)):
            return len(self.targets)
        return len(self.client)

    # ------------------------------------------------------------------ metadata of requests
    def _metadata(self, name: Optional[str] = None) -> dict:
        """Request metadata; ``name``: what the hub's task stream calls the task (its function)."""
        md = {"serializer": SERIALIZER, "label": self.label}
        if name:
            md[NAME_KEY] = name
        return md

    def _cached_packed(self, key, build):
        """``pack(build())``, reused while ``key`` (the flags it depends on) stays the same."""
        cached = self._md_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        packed = pack(build())
        self._md_cache = (key, packed)
        return packed

    def _packed_metadata(self, name: Optional[str] = None):
        label = self.label
        if label is None or type(label) is str:
            return self._cached_packed(("direct", label, name), lambda: self._metadata(name))
        return self._metadata(name)


def _dep_ids(dep) -> Any:
    """The wire form of an ``after``/``follow`` dependency: a list of msg_ids or a rule dict."""
    if dep is None:
        return []
    if isinstance(dep, Dependency):
        return dep.as_dict()
    if isinstance(dep, AsyncResult):
        return list(dep.msg_ids)
    if isinstance(dep, Message):
        return [dep.msg_id]
    if isinstance(dep, str):
        return [dep]
    if isinstance(dep, dict):
        return Dependency(dep).as_dict()
    out = []
    for d in dep:
        out.extend(_dep_ids(d))
    return out


class LazyMapIterator:
    """The iterator ``LoadBalancedView.imap`` returns; ``cancel()`` stops it taking more input."""

    def __init__(self, gen, cancel):
        self._gen = gen
        self.cancel = cancel

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._gen)


class LoadBalancedView(View):
    """Work placed on whichever engine is free, by the hub's task scheduler.

    Flags beyond View's: ``retries``, ``after``/``follow`` (dependencies: msg_ids, AsyncResults or
    ``Dependency``), ``timeout`` (seconds a task may wait for its dependencies).
    """

    _flag_names = ("block", "track", "targets", "label", "retries", "after", "follow", "timeout")

    def __init__(self, client, targets=None, block: Optional[bool] = None, label=None, retries: int = 0,
                 after=None, follow=None, timeout: Optional[float] = None, track: bool = False):
        super().__init__(client, targets, block, label, track)
        self.retries = retries
        self.after = after
        self.follow = follow
        self.timeout = timeout

    def set_flags(self, **flags):
        if "timeout" in flags:
            t = flags["timeout"]
            if t is not None and (not isinstance(t, (int, float)) or isinstance(t, bool)):
                raise TypeError(f"Invalid type for timeout: {type(t)!r}")
            if t is not None and t < 0:
                raise ValueError(f"Invalid timeout: {t}")
        for name in ("after", "follow"):
            if name in flags:
                _dep_ids(flags[name])  # TypeError/ValueError for what is not a dependency
        return super().set_flags(**flags)

    def _task_metadata(self, name: Optional[str] = None) -> dict:
        targets = self.targets
        uuids = [] if targets is None else [self.client._uuid_of(t) for t in self.client._resolve_targets(targets)]
        retries = self.retries
        if not isinstance(retries, int) or retries < 0:
            raise TypeError("retries must be a non-negative int")
        return {
            "serializer": SERIALIZER,
            "label": self.label,
            "targets": uuids,
            "retries": retries,
            "after": _dep_ids(self.after),
            "follow": _dep_ids(self.follow),
            "timeout": self.timeout,
            NAME_KEY: name,
        }

    def _packed_task_metadata(self, name: Optional[str] = None):
        """``_task_metadata(name)``, packed once for as long as the flags keep their defaults."""
        retries, label = self.retries, self.label
        if self.targets is None and not self.after and not self.follow and self.timeout is None \
                and type(retries) is int and retries >= 0 and (label is None or type(label) is str):
            return self._cached_packed(("task", retries, label, name), lambda: self._task_metadata(name))
        return pack(self._task_metadata(name))

    def _apply(self, f, args, kwargs) -> AsyncResult:
        bufs = serialize_call(f, args, kwargs)
        name = getname(f)
        fut = self.client._submit(b"t", "apply_request", {}, self._packed_task_metadata(name), bufs, track=self.track)
        self.history.append(fut.msg_id)
        return AsyncResult(self.client, [fut], fname=name, single=True)

    def _parallel_parts(self, n: int, chunksize) -> int:
        chunksize = 1 if chunksize is None else chunksize
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError("chunksize must be a positive int")
        return math.ceil(n / chunksize)

    def _submit_parts(self, calls: list, name: Optional[str] = None) -> list:
        """One task per ``(f, args)`` of ``calls``, with the view's flags (metadata packed once);
        ``name``: the tasks' name in the hub's task stream."""
        md = self._packed_task_metadata(name)
        submit, track = self.client._submit, self.track
        msgs = [submit(b"t", "apply_request", {}, md, serialize_call(f, args, {}), track=track) for f, args in calls]
        self._record(msgs)
        return msgs

    def map(self, f, *sequences, block=None, chunksize: int = 1, ordered: bool = True,
            return_exceptions: bool = False, label=None) -> Any:
        """Parallel ``map``, ``chunksize`` items per load-balanced task; ``ordered=False`` iterates
        results in completion order."""
        if label is not None:
            with self.temp_flags(label=label):
                return self.map(f, *sequences, block=block, chunksize=chunksize, ordered=ordered,
                                return_exceptions=return_exceptions)
        return super().map(f, *sequences, block=block, chunksize=chunksize, ordered=ordered,
                           return_exceptions=return_exceptions)

    def imap(self, f, *sequences, ordered: bool = True, max_outstanding="auto", return_exceptions: bool = False,
             chunksize: int = 1):
        """Lazily map over (possibly endless) iterables, keeping at most ``max_outstanding`` tasks in flight.

        ``'auto'`` (default) is two tasks per engine: one running, one on its way, so that engines
        do not wait for the next task (ipyparallel keeps one per engine).  ``0`` submits everything.
        """
        if max_outstanding == "auto":
            max_outstanding = 2 * max(1, len(self))
        state = {"cancelled": False}
        return LazyMapIterator(self._imap(f, sequences, ordered, max_outstanding, return_exceptions, chunksize,
                                          state), lambda: state.update(cancelled=True))

    def _imap(self, f, sequences, ordered, max_outstanding, return_exceptions, chunksize, state):
        md = pack(self._task_metadata(getname(f)))
        its = zip(*sequences)
        window: deque = deque()
        exhausted = False
        while True:
            while not exhausted and not state["cancelled"] and (not max_outstanding or len(window) < max_outstanding):
                chunk = []
                for _ in range(chunksize):
                    try:
                        chunk.append(next(its))
                    except StopIteration:
                        exhausted = True
                        break
                if not chunk:
                    break
                msg = self.client._submit(b"t", "apply_request", {}, md,
                                          serialize_call(ops.starmap_chunk, (f, chunk), {}))
                self.history.append(msg.msg_id)
                window.append(AsyncResult(self.client, [msg], fname="imap", single=True,
                                          return_exceptions=return_exceptions))
            if not window:
                return
            if ordered:
                ar = window.popleft()
            else:
                done, _ = wait(list(window), return_when=FIRST_COMPLETED)
                ar = next(iter(done))
                window.remove(ar)
            value = ar.get()
            if isinstance(value, BaseException):
                yield value
            else:
                yield from value

    def register_joblib_backend(self, name: str = "ipyparallel", make_default: bool = False) -> None:
        """Make this view joblib's parallel backend ``name`` (``joblib.parallel_backend(name)``)."""
        from .joblib_backend import register

        register(self, name, make_default)

    def __repr__(self) -> str:
        return f"<LoadBalancedView targets={self.targets!r}>"


__all__ = ["View", "LoadBalancedView", "LazyMapIterator", "Dependency"]
