"""Exceptions a client user sees, in ipyparallel's hierarchy (``jupyter_hub_ctl.error`` exports them).

::

    HubError (= IPythonError)
    ├── KernelError
    │   ├── RemoteError            an exception raised on an engine (or by the hub) for one task
    │   │   ├── EngineError        the engine running a task died or went away
    │   │   └── CompositeError     several tasks of one result failed (``elist``)
    │   ├── NoEnginesRegistered
    │   ├── TaskAborted
    │   ├── TaskTimeout
    │   └── UnmetDependency > ImpossibleDependency > DependencyTimeout, InvalidDependency
    └── TaskRejectError

Deliberate difference: ipyparallel reports a dead engine as a ``RemoteError`` whose ``ename`` is
``'EngineError'``; here it is an ``EngineError``, which is a ``RemoteError`` too, so both ``except``
clauses catch it.
"""

from __future__ import annotations

import builtins

TimeoutError = builtins.TimeoutError  # noqa: A001 - ipyparallel's error.TimeoutError is the builtin


class HubError(Exception):
    """Base class of this package's client-side errors."""


IPythonError = HubError


class KernelError(HubError):
    """An error about engines or the tasks they run."""


class RemoteError(KernelError):
    """An exception raised on an engine (or by the controller) for one task.

    ``ename``/``evalue`` name the remote exception, ``traceback`` is its remote traceback as
    text and ``engine_info`` says where it happened (``engine_id``, ``engine_uuid``, ``method``).
    """

    def __init__(self, ename: str, evalue: str, traceback=None, engine_info=None):
        super().__init__(ename, evalue)
        self.ename = ename
        self.evalue = evalue
        if isinstance(traceback, (list, tuple)):
            traceback = "\n".join(str(line).rstrip("\n") for line in traceback)
        self.traceback = traceback or ""
        self.engine_info = dict(engine_info or {})

    @property
    def engine_id(self):
        return self.engine_info.get("engine_id")

    @staticmethod
    def _where(engine_info: dict) -> str:
        if not engine_info:
            return "[Engine Exception]"
        return f"[{engine_info.get('engine_id')}:{engine_info.get('method', 'apply')}]"

    def __str__(self) -> str:
        return f"{self._where(self.engine_info)} {self.ename}: {self.evalue}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__}[{self.engine_info.get('engine_id', ' ')}]:{self.ename}({self.evalue})>"

    def render_traceback(self) -> list:
        """The remote traceback as lines, headed by where it happened."""
        return [self._where(self.engine_info)] + (self.traceback or "No traceback available").splitlines()

    def _render_traceback_(self) -> list:  # IPython shows this instead of the local traceback
        return self.render_traceback()

    def print_traceback(self, excid=None) -> None:
        print("\n".join(self.render_traceback()))

    @classmethod
    def from_content(cls, content: dict, engine_ids=None) -> "RemoteError":
        """The exception an error reply's content describes."""
        info = dict(content.get("engine_info") or {})
        if "engine_uuid" in info and info.get("engine_id") is None and engine_ids is not None:
            info["engine_id"] = engine_ids.get(info["engine_uuid"])
        ename = content.get("ename", "Error")
        kind = EngineError if ename == "EngineError" else cls
        return kind(ename, content.get("evalue", ""), content.get("traceback"), info)


class EngineError(RemoteError):
    """The engine running a task died or went away."""


def error_tuple(error: BaseException) -> tuple:
    """``(ename, evalue, traceback, engine_info)`` of any exception, as ``CompositeError.elist`` holds."""
    if isinstance(error, RemoteError):
        return error.ename, error.evalue, error.traceback, error.engine_info
    return type(error).__name__, str(error), "", {}


class CompositeError(RemoteError):
    """Several tasks of one result failed.

    ``elist`` holds one ``(ename, evalue, traceback, engine_info)`` per failure (as in ipyparallel),
    ``errors`` the exceptions themselves.  ``raise_exception(i)`` raises the i-th as a RemoteError.
    """

    tb_limit = 4  # tracebacks shown by render_traceback

    def __init__(self, message: str, errors: list):
        flat = []
        for e in errors:  # nested composites are flattened
            flat.extend(e.errors if isinstance(e, CompositeError) else [e])
        self.errors = flat
        self.elist = [error_tuple(e) for e in flat]
        self.msg = message
        super().__init__("CompositeError", message, "", {})
        self.args = (message, self.elist)

    def __str__(self) -> str:
        lines = [str(self.msg)]
        for ename, evalue, _tb, info in self.elist[: self.tb_limit]:
            lines.append(f"{self._where(info)} {ename}: {evalue}")
        if len(self.elist) > self.tb_limit:
            lines.append(f".... {len(self.elist) - self.tb_limit} more exceptions ...")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"CompositeError({len(self.elist)})"

    def _one(self, excid: int) -> tuple:
        try:
            return self.elist[excid]
        except (IndexError, TypeError):
            raise IndexError(f"an exception with index {excid} does not exist") from None

    def render_traceback(self, excid=None) -> list:
        """The tracebacks of the first ``tb_limit`` failures (or of failure ``excid``) as lines."""
        chosen = [self._one(excid)] if excid is not None else self.elist[: self.tb_limit]
        lines = []
        for ename, evalue, tb, info in chosen:
            lines.append(self._where(info) + ":")
            lines.extend((tb or f"{ename}: {evalue}").splitlines())
            lines.append("")
        if excid is None and len(self.elist) > self.tb_limit:
            lines.append(f"... {len(self.elist) - self.tb_limit} more exceptions ...")
        return lines

    def print_traceback(self, excid=None) -> None:
        print("\n".join(self.render_traceback(excid)))

    def raise_exception(self, excid: int = 0):
        """Raise failure ``excid`` (default: the first) as a RemoteError."""
        ename, evalue, tb, info = self._one(excid)
        original = self.errors[excid]
        if isinstance(original, RemoteError):
            raise original
        raise RemoteError(ename, evalue, tb, info)

    def raise_first(self):
        raise self.errors[0]


class NoEnginesRegistered(KernelError):
    """The hub has no engines to send work to."""


class TaskAborted(KernelError):
    """The task was aborted before it ran."""


class TaskTimeout(KernelError):
    """The task did not start within its timeout."""


class UnmetDependency(KernelError):
    """Raised on an engine by a task that cannot run there (the scheduler tries another engine)."""


class ImpossibleDependency(UnmetDependency):
    """A task's dependencies can never be met."""


class DependencyTimeout(ImpossibleDependency):
    """A task's dependencies were not met within its timeout."""


class InvalidDependency(ImpossibleDependency):
    """A task names a dependency the hub does not know."""


class TaskRejectError(HubError):
    """Raise on an engine to have a task with ``retries`` tried again elsewhere."""


__all__ = [
    "HubError", "IPythonError", "KernelError", "RemoteError", "EngineError", "CompositeError",
    "NoEnginesRegistered", "TaskAborted", "TaskTimeout", "UnmetDependency", "ImpossibleDependency",
    "DependencyTimeout", "InvalidDependency", "TaskRejectError", "TimeoutError", "collect_exceptions",
]


def collect_exceptions(results, method: str = "unspecified"):
    """``results`` (a list or dict) unchanged, or a CompositeError raised for the errors in it."""
    values = results.values() if isinstance(results, dict) else results
    errors = [r for r in values if isinstance(r, RemoteError)]
    if errors:
        raise CompositeError(f"one or more exceptions raised in: {method}", errors)
    return results
