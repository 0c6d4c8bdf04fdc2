"""Futures for submitted work: one ``Message`` per request, and ``AsyncResult`` over several.

``AsyncResult`` has ipyparallel's API (``get``, ``wait``, ``get_dict``, ``ar[i]``,
``ar['engine_id']``, ``ar.submitted``, ``timedelta``, ``wall_time``, ``serial_time``,
``display_outputs``, ...) and is also a ``concurrent.futures.Future`` and an awaitable.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, Future
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as wait_futures
from datetime import datetime
from typing import Any, Iterator, List, Optional

from . import metadata as md_mod
from .errors import CompositeError, RemoteError, TaskAborted
from .outputs import ExecuteReply, display_outputs


def _timeout(timeout):
    """ipyparallel's convention: None or a negative number waits forever."""
    return None if timeout is None or timeout < 0 else timeout


class Message:
    """One request/reply; done when its reply and all the outputs it announced have arrived.

    Not a Future itself (that would cost a Condition and a notify per message):
    the client's IO thread reports completion to the owning `AsyncResult`(s).
    """

    __slots__ = (
        "msg_id", "msg_type", "engine_uuid", "engine_id", "_header", "submitted", "received", "reply", "outputs",
        "stdout", "stderr", "expected_outputs", "value", "error", "done", "owner", "sent", "tracker", "label", "code",
        "_md",
    )

    def __init__(self, msg_id: str, msg_type: str, engine_uuid: Optional[str] = None, header=None):
        self.msg_id = msg_id
        self.msg_type = msg_type
        self.engine_uuid = engine_uuid
        self.engine_id = None
        self._header = header  # a dict, or as sent (packed JSON bytes)
        self.submitted = time.time()
        self.received = None
        self.reply: Optional[dict] = None
        self.outputs: list = []
        self.stdout = ""
        self.stderr = ""
        self.expected_outputs = 0
        self.value = None
        self.error: Optional[BaseException] = None
        self.done = False
        self.owner = None  # the AsyncResult waiting for it, or a tuple of them
        self.sent = False
        self.tracker = None
        self.label = None
        self.code = None
        self._md = None

    @property
    def header(self) -> Optional[dict]:
        """The request's header."""
        h = self._header
        if isinstance(h, bytes):
            from ..wire.session import unpack

            h = self._header = unpack(h)
        return h

    @property
    def metadata(self) -> md_mod.Metadata:
        """This task's metadata (built from the reply and outputs; cached once done)."""
        md = self._md
        if md is None:
            md = md_mod.of_message(self)
            if self.done:
                self._md = md
        return md

    def add_output(self, msg_type: str, content: dict) -> bool:
        """Record one IOPub message; True when this completes the message."""
        if msg_type == "stream":
            if content.get("name") == "stderr":
                self.stderr += content.get("text", "")
            else:
                self.stdout += content.get("text", "")
        self.outputs.append({"msg_type": msg_type, "content": content})
        return self.reply is not None and len(self.outputs) >= self.expected_outputs

    def outputs_complete(self) -> bool:
        return len(self.outputs) >= self.expected_outputs

    def result(self):
        if self.error is not None:
            raise self.error
        return self.value

    def outcome(self):
        """The value, or the exception in its place."""
        return self.error if self.error is not None else self.value


class CoalescedMessage(Message):
    """The single reply of a coalescing broadcast: one result per engine."""

    __slots__ = ()


def own(children: List[Message], ar) -> None:
    """Make ``ar`` one of the owners ``children`` report completion to (after their owner).

    Several owners are a tuple, replaced rather than changed, so that the IO thread can go
    through the owners it took while another thread adds one.
    """
    for c in children:
        owner = c.owner
        if owner is None:
            c.owner = ar
        elif type(owner) is tuple:
            c.owner = owner + (ar,)
        else:
            c.owner = (owner, ar)


def disown(c: Message, ar) -> None:
    """``ar`` no longer waits for ``c`` (it is done): no reference cycle through ``c.owner``."""
    owner = c.owner
    if owner is ar:
        c.owner = None
    elif type(owner) is tuple and ar in owner:
        rest = tuple(o for o in owner if o is not ar)
        c.owner = rest if len(rest) > 1 else (rest[0] if rest else None)


class AsyncResult(Future):
    """A result of one or more messages; a concurrent Future and an awaitable.

    ``single``: one message whose value is the result (not a list of one);
    ``chunks``: for maps, the number of items in each message's list of values.
    """

    _chunks: Optional[list] = None
    _joiner = None
    _return_exceptions = False
    owner = False

    def __init__(self, client, children: List[Message], fname: str = "", single: bool = False,
                 return_exceptions: bool = False, targets=None):
        super().__init__()
        self._client = client
        self._children = children
        self._fname = fname
        self._single = single
        self._targets = targets
        if return_exceptions:
            self._return_exceptions = True
        self._lock = threading.Lock()
        self._cond: Optional[threading.Condition] = None
        self._queue = None
        self._seen = set()  # ids of the children counted as done
        self.msg_ids = [c.msg_id for c in children]
        with self._lock:
            for c in children:
                owner = c.owner
                if owner is None:
                    c.owner = self
                else:
                    own((c,), self)
                if c.done:  # finished already: counted here, no reference back to us
                    self._seen.add(id(c))
                    disown(c, self)
            complete = len(self._seen) == len(children)
        if complete:
            self._complete()

    @property
    def fname(self) -> str:
        return self._fname

    # ------------------------------------------------------------------ completion
    def _child_finished(self, msg: Message) -> None:
        """Called by the client's IO thread when one message is done."""
        with self._lock:
            seen = self._seen
            if id(msg) in seen:
                return
            seen.add(id(msg))
            complete = len(seen) == len(self._children)
            if self._queue is not None:
                self._queue.put(msg)
            cond = self._cond
        if cond is not None:
            with cond:
                cond.notify_all()
        if complete:
            self._complete()

    def _values(self, return_exceptions: bool) -> list:
        if return_exceptions:
            return [c.outcome() for c in self._children]
        return [c.value for c in self._children]

    def _reconstruct(self, values: list):
        if self._single:
            return values[0] if values else None
        return values

    def _complete(self) -> None:
        if self.done():
            return
        errors = [c.error for c in self._children if c.error is not None]
        if errors and not self._return_exceptions:
            if self._single:
                self.set_exception(errors[0])
            else:
                first = errors[0]
                what = f"{first.ename}: {first.evalue}" if isinstance(first, RemoteError) else \
                    f"{type(first).__name__}: {first}"
                self.set_exception(CompositeError(f"one or more exceptions raised in: {self._fname} "
                                                  f"({len(errors)} of {len(self._children)}, first {what})", errors))
            return
        if self._single and self._children:
            c = self._children[0]
            self.set_result(c.outcome() if self._return_exceptions else c.value)
            return
        try:
            self.set_result(self._reconstruct(self._values(self._return_exceptions)))
        except Exception as e:  # e.g. chunks that cannot be joined
            self.set_exception(e)

    def _wait_until(self, cond_fn, timeout: Optional[float]) -> bool:
        """Wait until ``cond_fn()`` (re-checked whenever a child finishes) or the timeout; its last value."""
        if cond_fn():
            return True
        with self._lock:
            if self._cond is None:
                self._cond = threading.Condition()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not cond_fn():
                remaining = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    # ------------------------------------------------------------------ waiting
    def get(self, timeout: Optional[float] = None, return_exceptions: Optional[bool] = None, return_when=None) -> Any:
        """The result, waiting up to ``timeout`` seconds (None or -1: for ever).

        A remote exception is raised (several as a ``CompositeError``), or with
        ``return_exceptions=True`` returned in place of the value.  ``return_when=FIRST_EXCEPTION``
        raises the first remote exception as soon as it arrives instead of waiting for all tasks.
        """
        timeout = _timeout(timeout)
        if return_when == FIRST_EXCEPTION and not self.done():
            failed = lambda: self.done() or any(c.done and c.error is not None for c in self._children)  # noqa: E731
            self._wait_until(failed, timeout)
            if not self.done():
                for c in self._children:
                    if c.done and c.error is not None:
                        if return_exceptions:
                            return c.error
                        raise c.error
        if return_exceptions is None:
            return_exceptions = self._return_exceptions
        if return_exceptions and not self._return_exceptions:
            if not self.wait(timeout):
                raise TimeoutError(f"result not ready: {self.progress} of {len(self)} tasks done after {timeout}s")
            return self._reconstruct(self._values(True))
        try:
            return self.result(timeout)
        except FutureTimeout:
            raise TimeoutError(f"result not ready: {self.progress} of {len(self)} tasks done after {timeout}s") from None

    def wait(self, timeout: Optional[float] = -1, return_when=None):
        """Wait up to ``timeout`` seconds (None or -1: for ever); True when done.

        With ``return_when`` (``FIRST_COMPLETED``, ``FIRST_EXCEPTION``, ``ALL_COMPLETED``) returns
        ``(done, pending)``: sets of one-task AsyncResults, as ``concurrent.futures.wait`` does.
        """
        timeout = _timeout(timeout)
        if return_when is None:
            try:
                self.exception(timeout)
            except FutureTimeout:
                return False
            return True
        return wait_futures(self.split(), timeout=timeout, return_when=return_when)

    def wait_for_output(self, timeout: Optional[float] = -1) -> bool:
        """Wait until the outputs are complete too (a result here is done only once they are)."""
        return self.wait(timeout)

    def ready(self) -> bool:
        return self.done()

    def successful(self) -> bool:
        """Whether the tasks finished without an exception; RuntimeError if not done yet."""
        if not self.done():
            raise RuntimeError("Cannot check successful() if not done.")
        return self.exception() is None

    @property
    def r(self):
        """``get()``: the result, waiting for it."""
        return self.get()

    @property
    def result_dict(self) -> dict:
        return self.get_dict()

    def get_dict(self, timeout: Optional[float] = -1) -> dict:
        """The results keyed by the id of the engine that produced each (ValueError if one ran several)."""
        results = self.get(timeout)
        if self._single:
            results = [results]
        eids = [c.engine_id for c in self._children]
        if len(set(eids)) != len(eids):
            dup = next(e for e in eids if eids.count(e) > 1)
            raise ValueError(f"Cannot build dict, {eids.count(dup)} jobs ran on engine #{dup}")
        return dict(zip(eids, results))

    def split(self) -> tuple:
        """One AsyncResult per message (for ``concurrent.futures.wait`` and ``as_completed``)."""
        if len(self._children) == 1:
            return (self,)
        return tuple(AsyncResult(self._client, [c], fname=self._fname, single=True,
                                 return_exceptions=self._return_exceptions) for c in self._children)

    @classmethod
    def join(cls, *results: "AsyncResult") -> "AsyncResult":
        """One AsyncResult over the messages of several (the inverse of ``split``)."""
        if not results:
            raise ValueError("Must specify at least one AsyncResult to join")
        if len(results) == 1:
            return results[0]
        first = results[0]
        children = [c for r in results for c in r._children]
        return AsyncResult(first._client, children, fname=first._fname, return_exceptions=first._return_exceptions)

    @property
    def progress(self) -> int:
        """Tasks done so far (map items, for maps)."""
        if self._chunks is None:
            return len(self._seen)
        return sum(n for c, n in zip(self._children, self._chunks) if c.done)

    def __len__(self) -> int:
        """Number of tasks (map items, for maps)."""
        return len(self._children) if self._chunks is None else sum(self._chunks)

    def __await__(self):
        return asyncio.wrap_future(self).__await__()

    def __iter__(self) -> Iterator:
        """Each task's result as it arrives, in submission order."""
        if self._single:
            raise TypeError("AsyncResults with a single result are not iterable.")
        for c in self._children:
            self._wait_until(lambda c=c: c.done, None)
            yield self._child_value(c)

    def _child_value(self, c: Message):
        if c.error is not None and not self._return_exceptions:
            if isinstance(c.error, RemoteError):
                raise CompositeError(f"one or more exceptions raised in: {self._fname}", [c.error])
            raise c.error
        return c.outcome()

    # ------------------------------------------------------------------ indexing and metadata
    def __getitem__(self, key):
        """``ar[i]``/``ar[a:b]``: result values (the result must be ready); ``ar['key']``: metadata."""
        if isinstance(key, str):
            values = [c.metadata[key] for c in self._children]
            return values[0] if self._single else values
        if isinstance(key, (int, slice)):
            if not self.done():
                raise TimeoutError("Result not ready.")
            return self.get()[key]
        raise TypeError(f"Invalid key type {type(key)!r}, must be 'int','slice', or 'str'")

    def __getattr__(self, key):
        if key.startswith("_") or key not in md_mod.KEYS:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")
        return self[key]

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(md_mod.KEYS))

    def _pick(self, values):
        return values[0] if self._single else values

    @property
    def metadata(self):
        """Task metadata (a Metadata dict, or a list of them)."""
        return self._pick([c.metadata for c in self._children])

    @property
    def stdout(self):
        return self._pick([c.stdout for c in self._children])

    @property
    def stderr(self):
        return self._pick([c.stderr for c in self._children])

    @property
    def outputs(self):
        """Rich display outputs (``display_data`` contents), as in ipyparallel's metadata."""
        return self._pick([[o["content"] for o in c.outputs if o["msg_type"] == "display_data"]
                           for c in self._children])

    @property
    def output_messages(self):
        """Every IOPub message each task produced, in order: ``{'msg_type', 'content'}`` dicts."""
        return self._pick([c.outputs for c in self._children])

    @property
    def engine_id(self):
        return self._pick([c.engine_id for c in self._children])

    # ------------------------------------------------------------------ timing
    @staticmethod
    def timedelta(start, end, start_key=min, end_key=max) -> float:
        """Seconds between ``start`` and ``end`` (datetimes, or lists reduced with ``start_key``/``end_key``)."""
        if not isinstance(start, datetime):
            start = start_key(start)
        if not isinstance(end, datetime):
            end = end_key(end)
        return (end - start).total_seconds()

    def _check_ready(self) -> None:
        if not self.done():
            raise TimeoutError("result not ready")

    @property
    def serial_time(self) -> float:
        """Sum of every task's (completed - started): the computation time, serially."""
        self._check_ready()
        return sum((c.metadata["completed"] - c.metadata["started"]).total_seconds() for c in self._children
                   if c.metadata["completed"] is not None and c.metadata["started"] is not None)

    @property
    def wall_time(self) -> float:
        """Seconds from the first submission to the last result received."""
        self._check_ready()
        return max(c.received or c.submitted for c in self._children) - min(c.submitted for c in self._children)

    @property
    def elapsed(self) -> float:
        """Seconds since the first submission (the wall time once done)."""
        if not self._children:
            return 0.0
        if self.done():
            return self.wall_time
        return time.time() - min(c.submitted for c in self._children)

    # ------------------------------------------------------------------ sending
    @property
    def sent(self) -> bool:
        """Whether every message has left this process (its buffers may be modified again)."""
        return all(c.sent and (c.tracker is None or c.tracker.done) for c in self._children)

    def wait_for_send(self, timeout: Optional[float] = -1) -> bool:
        """Wait until every message was sent; TimeoutError after ``timeout`` seconds."""
        deadline = None if _timeout(timeout) is None else time.monotonic() + timeout
        while not self.sent:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("Still waiting to be sent")
            time.sleep(0.0005)
        return True

    # ------------------------------------------------------------------ control and display
    def abort(self) -> None:
        """Ask the engines not to run this result's tasks that have not started yet."""
        if self.done():
            raise RuntimeError("Can't abort, I am already done!")
        self._client.abort(self.msg_ids, targets=self._targets, block=True)

    def display_outputs(self, groupby: str = "type", result_only: bool = False) -> None:
        """Show the tasks' stdout/stderr (``[stdout:3]`` ...), rich outputs and results again.

        ``groupby``: ``type`` (all stdout, then all stderr, then outputs), ``engine`` (everything of
        one engine, then the next) or ``order`` (the first output of every engine, then the second...).
        """
        self._check_ready()
        display_outputs(self, groupby, result_only)

    @property
    def failures(self) -> int:
        """How many of the finished tasks failed (raised, were aborted or lost)."""
        return sum(1 for c in self._children if c.done and c.error is not None)

    def wait_interactive(self, interval: float = 0.1, timeout: Optional[float] = -1, widget: Optional[bool] = None,
                         return_when=ALL_COMPLETED) -> None:
        """Wait, showing progress (done/total, rate, elapsed, ETA, failures): a live widget in a
        notebook, a text bar (tqdm) elsewhere.  Returns None, as ipyparallel's does, so a notebook
        echoes nothing; ``HUBCTL_NO_PROGRESS=1`` turns the display off.  With ``return_when``
        ``FIRST_COMPLETED`` or ``FIRST_EXCEPTION`` it returns as soon as that happens (no display).
        """
        timeout = _timeout(timeout)
        if return_when == FIRST_COMPLETED:
            self._wait_until(lambda: self.done() or any(c.done for c in self._children), timeout)
            return None
        if return_when == FIRST_EXCEPTION:
            self._wait_until(lambda: self.done() or self.failures > 0, timeout)
            return None
        if os.environ.get("HUBCTL_NO_PROGRESS"):
            self.wait(timeout)
            return None
        from ..kernel.progress import TaskProgress

        TaskProgress(self, description=self.fname or "tasks").wait(timeout, widget=widget, interval=interval)
        return None

    def __repr__(self) -> str:
        if self.done():
            state = "finished" if self.exception() is None else "failed"
        else:
            state = f"pending {self.progress}/{len(self)}"
        return f"<{type(self).__name__}({self._fname}): {state}>"


def result_of(fut: Message, content: dict, buffers: list, engine_ids: dict, deserialize) -> None:
    """Fill a message's value or error from its reply (called on the client's IO thread)."""
    status = content.get("status")
    if status == "ok":
        if isinstance(fut, CoalescedMessage):
            counts = (fut.reply or {}).get("metadata", {}).get("broadcast_nbuffers") or []
            values, rest = [], list(buffers)
            for n in counts:
                values.append(deserialize(rest[:n]))
                rest = rest[n:]
            fut.value = values
        elif fut.msg_type == "execute_request":
            fut.value = ExecuteReply(fut.msg_id, content, fut)
        else:
            fut.value = deserialize(buffers)
    elif status == "aborted":
        fut.error = TaskAborted(f"task {fut.msg_id} was aborted")
    else:
        fut.error = RemoteError.from_content(content, engine_ids)


__all__ = ["AsyncResult", "Message", "CoalescedMessage", "ExecuteReply", "result_of", "own"]
