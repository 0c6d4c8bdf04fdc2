"""``AsyncMapResult``: the result of a map, joined from its tasks' chunks, iterable as items arrive."""

from __future__ import annotations

from typing import Iterator, List, Optional

from .asyncresult import AsyncResult, Message


class AsyncMapResult(AsyncResult):
    """The result of a map: one list, joined from the tasks' chunks; iterable as items arrive.

    ``joiner`` joins the chunks' values (default: concatenates lists); ``ordered=False`` makes
    iteration yield items in the order their tasks finish.
    """

    def __init__(self, client, children: List[Message], fname: str = "", chunks: Optional[list] = None,
                 ordered: bool = True, return_exceptions: bool = False, joiner=None):
        self._chunks = list(chunks) if chunks is not None else [1] * len(children)
        self._joiner = joiner
        self.ordered = ordered
        super().__init__(client, children, fname=fname, return_exceptions=return_exceptions)

    def _reconstruct(self, values: list):
        if self._joiner is not None and not any(isinstance(v, BaseException) for v in values):
            return self._joiner(values)
        out = []
        for v in values:
            if isinstance(v, (list, tuple)):
                out.extend(v)
            else:
                out.append(v)
        return out

    def split(self) -> tuple:
        return tuple(AsyncMapResult(self._client, [c], fname=self._fname, chunks=[n],
                                    return_exceptions=self._return_exceptions, joiner=self._joiner)
                     for c, n in zip(self._children, self._chunks))

    def __iter__(self) -> Iterator:
        """Items as they arrive: in submission order, or completion order if not ``ordered``."""
        if not self.ordered:
            yield from self.iter_unordered()
            return
        for c in self._children:
            self._wait_until(lambda c=c: c.done, None)
            yield from self._items(c)

    def _items(self, c: Message) -> list:
        value = self._child_value(c)
        if isinstance(value, BaseException):
            return [value]
        return value if isinstance(value, list) else list(value)

    def iter_unordered(self) -> Iterator:
        """Items in the order their tasks finish."""
        import queue

        with self._lock:
            self._queue = queue.SimpleQueue()
            for c in self._children:
                if id(c) in self._seen:
                    self._queue.put(c)
        for _ in range(len(self._children)):
            yield from self._items(self._queue.get())


__all__ = ["AsyncMapResult"]
