"""``@view.remote``, ``@view.parallel`` and ``@interactive``: functions that run on engines when called."""

from __future__ import annotations

import sys
import types
from inspect import signature

from . import ops
from .partition import check_dist, joiner, part


def getname(f) -> str:
    """A callable's name for display: ``__name__``, else ``name``, else ``str(f)``."""
    for attr in ("__name__", "name"):
        try:
            return str(getattr(f, attr))
        except AttributeError:
            pass
    return str(f)


def code_name(code: str) -> str:
    """What the hub's task stream calls an execute request: its code's first non-blank line."""
    for line in code.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= 80 else line[:79] + "…"
    return "execute"


def interactive(f):
    """Mark a function defined in a module to run on engines as if typed there: its globals are the
    engine's namespace (names pushed or imported there), not its module's."""
    if isinstance(f, types.FunctionType):
        main = sys.modules["__main__"].__dict__  # called here, it sees the interactive namespace too
        g = types.FunctionType(f.__code__, main, f.__name__, f.__defaults__, f.__closure__)
        g.__kwdefaults__ = f.__kwdefaults__
        g.__doc__ = f.__doc__
        g.__qualname__ = f.__qualname__
        g.__module__ = "__main__"
        return g
    return f


class RemoteFunction:
    """``f`` wrapped so that calling it runs it on ``view``'s engines (``view.apply``).

    ``block`` (default: the view's ``block`` at call time) and other ``flags`` are set on the
    view for each call.
    """

    def __init__(self, view, f, block=None, **flags):
        self.view = view
        self.func = f
        self.block = block
        self.flags = flags
        self.__name__ = getname(f)
        if getattr(f, "__doc__", None):
            self.__doc__ = f"{type(self).__name__} wrapping:\n{f.__doc__}"
        try:
            self.__signature__ = signature(f)
        except (TypeError, ValueError):
            pass

    def __call__(self, *args, **kwargs):
        block = self.view.block if self.block is None else self.block
        with self.view.temp_flags(block=block, **self.flags):
            return self.view.apply(self.func, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.__name__} on {self.view!r}>"


class ParallelFunction(RemoteFunction):
    """``f`` called once per part of its sequence arguments, in parallel (``@view.parallel``).

    Calling it hands each task one part of every sequence (``dist='b'``: contiguous blocks,
    ``'r'``: round robin) and joins the tasks' results; ``.map(*seqs)`` calls ``f`` on each
    element instead, like the builtin ``map``.  On a load-balanced view each task gets
    ``chunksize`` items (default 1); on a direct view each engine gets one part.
    """

    def __init__(self, view, f, dist: str = "b", block=None, chunksize=None, ordered: bool = True,
                 return_exceptions: bool = False, **flags):
        super().__init__(view, f, block=block, **flags)
        self.dist = check_dist(dist)
        self.chunksize = chunksize
        self.ordered = ordered
        self.return_exceptions = return_exceptions

    def __call__(self, *sequences):
        return self._run(sequences, mapping=False)

    def map(self, *sequences):
        """``f`` on each element of the sequences (shortest wins, as for ``map``)."""
        return self._run(sequences, mapping=True)

    def _run(self, sequences, mapping: bool):
        from .mapresult import AsyncMapResult

        if not sequences:
            raise TypeError("needs at least one sequence to map over")
        seqs = [s if hasattr(s, "__len__") and hasattr(s, "__getitem__") else list(s) for s in sequences]
        lens = [len(s) for s in seqs]
        if not mapping and min(lens) != max(lens):
            raise ValueError(f"all sequences must have equal length, but have {lens}")
        n = max(lens)
        view = self.view
        block = view.block if self.block is None else self.block
        if n == 0:
            return [] if block else AsyncMapResult(view.client, [], fname=getname(self.func))
        with view.temp_flags(**self.flags):
            nparts = view._parallel_parts(n, self.chunksize)
            calls, chunks = [], []
            for i in range(nparts):
                args = [part(s, i, nparts, n, self.dist) for s in seqs]
                size = min(len(a) for a in args) if mapping else 1
                if mapping and size == 0:
                    continue
                calls.append((ops.map_chunk, (self.func, *args)) if mapping else (self.func, tuple(args)))
                chunks.append(size)
            children = view._submit_parts(calls, getname(self.func))
        ar = AsyncMapResult(view.client, children, fname=getname(self.func), chunks=chunks, ordered=self.ordered,
                            return_exceptions=self.return_exceptions, joiner=joiner(self.dist))
        return view._finish(ar, block)


def remote(view, block=None, **flags):
    """Decorator: ``@remote(view)`` makes a RemoteFunction."""
    return lambda f: RemoteFunction(view, f, block=block, **flags)


def parallel(view, dist: str = "b", block=None, ordered: bool = True, **flags):
    """Decorator: ``@parallel(view)`` makes a ParallelFunction."""
    return lambda f: ParallelFunction(view, f, dist=dist, block=block, ordered=ordered, **flags)


__all__ = ["RemoteFunction", "ParallelFunction", "remote", "parallel", "interactive", "getname"]
