"""Futures for submitted work: one per message, and AsyncResult over several."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Iterator, List, Optional

from .errors import CompositeError, RemoteError, TaskAborted


class ExecuteReply:
    """The outcome of ``execute``: the reply content and the outputs it produced."""

    def __init__(self, msg_id: str, content: dict, outputs: list, engine_id=None):
        self.msg_id = msg_id
        self.content = content
        self.outputs = outputs
        self.engine_id = engine_id

    @property
    def execute_result(self) -> Optional[dict]:
        for o in self.outputs:
            if o["msg_type"] == "execute_result":
                return o["content"]
        return None

    def __repr__(self) -> str:
        r = self.execute_result
        text = r["data"].get("text/plain", "") if r else ""
        return f"<ExecuteReply engine={self.engine_id} {text[:60]!r}>"


class Message:
    """One request/reply; done when its reply and all the outputs it announced have arrived.

    Not a Future itself (that would cost a Condition and a notify per message):
    the client's IO thread reports completion to the owning `AsyncResult`.
    """

    __slots__ = (
        "msg_id", "msg_type", "engine_uuid", "_header", "submitted", "reply", "outputs", "stdout",
        "stderr", "expected_outputs", "metadata", "value", "error", "done", "owner", "counted",
    )

    def __init__(self, msg_id: str, msg_type: str, engine_uuid: Optional[str] = None, header=None):
        self.msg_id = msg_id
        self.msg_type = msg_type
        self.engine_uuid = engine_uuid
        self._header = header  # a dict, or as sent (packed JSON bytes)
        self.submitted = time.time()
        self.reply: Optional[dict] = None
        self.outputs: list = []
        self.stdout = ""
        self.stderr = ""
        self.expected_outputs = 0
        self.metadata: dict = {"msg_id": msg_id, "submitted": self.submitted}
        self.value = None
        self.error: Optional[BaseException] = None
        self.done = False
        self.owner = None
        self.counted = False

    @property
    def header(self) -> Optional[dict]:
        """The request's header."""
        h = self._header
        if isinstance(h, bytes):
            from ..wire.session import unpack

            h = self._header = unpack(h)
        return h

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


class CoalescedMessage(Message):
    """The single reply of a coalescing broadcast: one result per engine."""

    __slots__ = ()


class AsyncResult(Future):
    """A result of one or more messages; a concurrent Future and an awaitable."""

    def __init__(self, client, children: List[Message], fname: str = "", single: bool = False,
                 mapping: bool = False, ordered: bool = True):
        super().__init__()
        self.ordered = ordered
        self._client = client
        self._children = children
        self.fname = fname
        self._single = single
        self._mapping = mapping
        self._lock = threading.Lock()
        self._cond: Optional[threading.Condition] = None
        self._queue = None
        self._done_count = 0
        self.msg_ids = [c.msg_id for c in children]
        with self._lock:
            for c in children:
                c.owner = self
                if c.done:
                    c.owner = None  # finished already: no reference back (no cycle to collect)
                    if not c.counted:
                        c.counted = True
                        self._done_count += 1
            complete = self._done_count == len(children)
        if complete:
            self._complete()

    # ------------------------------------------------------------------ completion
    def _child_finished(self, msg: Message) -> None:
        """Called by the client's IO thread when one message is done."""
        with self._lock:
            if msg.counted:
                return
            msg.counted = True
            self._done_count += 1
            complete = self._done_count == len(self._children)
            if self._queue is not None:
                self._queue.put(msg)
            cond = self._cond
        if cond is not None:
            with cond:
                cond.notify_all()
        if complete:
            self._complete()

    def _complete(self) -> None:
        if self.done():
            return
        errors = [c.error for c in self._children if c.error is not None]
        if errors:
            if self._single or len(errors) == 1:
                self.set_exception(errors[0])
            else:
                self.set_exception(CompositeError(f"{len(errors)} of {len(self._children)} tasks failed", errors))
            return
        values = [c.value for c in self._children]
        if not self._children:
            self.set_result(None if self._single else [])
            return
        if self._mapping:
            values = [v for chunk in values for v in chunk]
        self.set_result(values[0] if self._single else values)

    def _wait_child(self, c: Message) -> None:
        if c.done:
            return
        with self._lock:
            if self._cond is None:
                self._cond = threading.Condition()
        with self._cond:
            while not c.done:
                self._cond.wait(1.0)

    # ------------------------------------------------------------------ waiting
    def get(self, timeout: Optional[float] = None) -> Any:
        """The result(s), waiting up to ``timeout`` seconds; raises the remote error if one failed."""
        try:
            return self.result(timeout)
        except FutureTimeout:
            raise TimeoutError(f"{self.progress}/{len(self._children)} tasks done after {timeout}s") from None

    def wait(self, timeout: Optional[float] = None) -> bool:
        try:
            self.exception(timeout)
        except FutureTimeout:
            return False
        return True

    def ready(self) -> bool:
        return self.done()

    def successful(self) -> bool:
        if not self.done():
            raise AssertionError("not ready")
        return self.exception() is None

    @property
    def progress(self) -> int:
        return self._done_count

    def __len__(self) -> int:
        return len(self._children)

    def __await__(self):
        return asyncio.wrap_future(self).__await__()

    def __iter__(self) -> Iterator:
        """Results as they arrive: in submission order, or completion order if not ``ordered``."""
        if not self.ordered:
            yield from self.iter_unordered()
            return
        for c in self._children:
            self._wait_child(c)
            value = c.result()
            if self._mapping:
                yield from value
            else:
                yield value

    def iter_unordered(self) -> Iterator:
        """Results in completion order."""
        import queue

        with self._lock:
            self._queue = queue.SimpleQueue()
            for c in self._children:
                if c.counted:
                    self._queue.put(c)
        for _ in range(len(self._children)):
            c = self._queue.get()
            value = c.result()
            if self._mapping:
                yield from value
            else:
                yield value

    # ------------------------------------------------------------------ metadata
    def _pick(self, values):
        return values[0] if self._single else values

    @property
    def metadata(self):
        return self._pick([c.metadata for c in self._children])

    @property
    def stdout(self):
        return self._pick([c.stdout for c in self._children])

    @property
    def stderr(self):
        return self._pick([c.stderr for c in self._children])

    @property
    def outputs(self):
        return self._pick([c.outputs for c in self._children])

    @property
    def engine_id(self):
        return self._pick([c.metadata.get("engine_id") for c in self._children])

    @property
    def elapsed(self) -> float:
        ends = [c.metadata.get("received", time.time()) for c in self._children]
        return max(ends) - min(c.submitted for c in self._children) if self._children else 0.0

    def wall_time(self) -> float:
        return self.elapsed

    # ------------------------------------------------------------------ control
    def abort(self) -> None:
        """Ask engines not to run the tasks of this result that have not started."""
        pending = [c.msg_id for c in self._children if not c.done]
        if pending:
            self._client.abort(pending)

    @property
    def failures(self) -> int:
        """How many of the finished tasks failed (raised, were aborted or lost)."""
        return sum(1 for c in self._children if c.done and c.error is not None)

    def wait_interactive(self, interval: float = 0.1, timeout: Optional[float] = None,
                         widget: Optional[bool] = None) -> None:
        """Wait, showing progress (done/total, rate, elapsed, ETA, failures): a live widget in a
        notebook, a text bar (tqdm) elsewhere.  Returns None, as ipyparallel's does, so a notebook
        echoes nothing; ``HUBCTL_NO_PROGRESS=1`` turns the display off."""
        if os.environ.get("HUBCTL_NO_PROGRESS"):
            self.wait(timeout)
            return None
        from ..kernel.progress import TaskProgress

        TaskProgress(self, description=self.fname or "tasks").wait(timeout, widget=widget, interval=interval)
        return None

    def __repr__(self) -> str:
        state = "done" if self.done() else f"{self.progress}/{len(self._children)}"
        return f"<AsyncResult({self.fname}): {state}>"


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
            fut.value = ExecuteReply(fut.msg_id, content, fut.outputs, fut.metadata.get("engine_id"))
        else:
            fut.value = deserialize(buffers)
    elif status == "aborted":
        fut.error = TaskAborted(f"task {fut.msg_id} was aborted")
    else:
        fut.error = RemoteError.from_content(content, engine_ids)


__all__ = ["AsyncResult", "Message", "CoalescedMessage", "ExecuteReply", "result_of"]
