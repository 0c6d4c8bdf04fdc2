"""``view.executor`` / ``rc.executor()``: a view as a ``concurrent.futures.Executor``."""

from __future__ import annotations

from concurrent.futures import Executor


class ViewExecutor(Executor):
    """``submit`` / ``map`` / ``shutdown`` over a view: its futures are AsyncResults (concurrent Futures),
    so ``concurrent.futures.as_completed`` and ``wait`` work on them.

    ``shutdown`` waits for the submitted tasks (with ``wait=True``) and stops taking new ones;
    it never stops engines.
    """

    def __init__(self, view):
        self.view = view
        self._shutdown = False

    @property
    def _max_workers(self) -> int:
        return len(self.view)

    def submit(self, fn, /, *args, **kwargs):
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        return self.view.apply_async(fn, *args, **kwargs)

    def map(self, fn, *iterables, timeout=None, chunksize: int = 1):
        """Results of ``fn`` over the iterables, in order, as a lazy iterator (``view.imap``).

        With ``timeout``, every item is submitted at once and TimeoutError is raised from the
        iterator if a result is not there ``timeout`` seconds after this call.
        """
        from .views import LoadBalancedView

        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        view = self.view
        if timeout is not None:
            kw = {"chunksize": chunksize} if isinstance(view, LoadBalancedView) else {}
            return _with_deadline(view.map_async(fn, *iterables, **kw), timeout)
        if isinstance(view, LoadBalancedView):
            return view.imap(fn, *iterables, chunksize=chunksize)
        return view.imap(fn, *iterables)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True
        if cancel_futures:
            pending = self.view.outstanding
            if pending:
                self.view.abort(jobs=sorted(pending), block=True)
        if wait:
            self.view.wait()


def _with_deadline(ar, timeout: float):
    import time

    deadline = time.monotonic() + timeout
    for c in ar._children:
        if not ar._wait_until(lambda c=c: c.done, max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"a result of map was not there within {timeout}s")
        yield from ar._items(c)


__all__ = ["ViewExecutor"]
