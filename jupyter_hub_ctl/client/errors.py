"""Exceptions a client user sees."""

from __future__ import annotations


class HubError(Exception):
    """Base class of this package's client-side errors."""


class RemoteError(HubError):
    """An exception raised on an engine (or by the controller) for one task."""

    def __init__(self, ename: str, evalue: str, traceback=None, engine_info=None):
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback if isinstance(traceback, list) else ([traceback] if traceback else [])
        self.engine_info = engine_info or {}
        super().__init__(ename, evalue)

    @property
    def engine_id(self):
        return self.engine_info.get("engine_id")

    def __str__(self) -> str:
        where = f"[engine {self.engine_id}] " if self.engine_id is not None else ""
        return f"{where}{self.ename}: {self.evalue}"

    def render_traceback(self) -> list:
        """The remote traceback (IPython shows this instead of the local one)."""
        return list(self.traceback) or [str(self)]

    @classmethod
    def from_content(cls, content: dict, engine_ids=None) -> "RemoteError":
        info = dict(content.get("engine_info") or {})
        if "engine_uuid" in info and "engine_id" not in info and engine_ids is not None:
            info["engine_id"] = engine_ids.get(info["engine_uuid"])
        ename = content.get("ename", "Error")
        if ename == "EngineError":
            return EngineError(ename, content.get("evalue", ""), content.get("traceback"), info)
        return cls(ename, content.get("evalue", ""), content.get("traceback"), info)


class EngineError(RemoteError):
    """The engine running a task died or went away."""


class TaskAborted(HubError):
    """The task was aborted before it ran."""


class CompositeError(HubError):
    """Several tasks of one AsyncResult failed."""

    def __init__(self, message: str, errors: list):
        self.errors = errors
        super().__init__(message)

    def __str__(self) -> str:
        lines = [self.args[0]]
        lines += [f"  {e}" for e in self.errors[:10]]
        if len(self.errors) > 10:
            lines.append(f"  ... and {len(self.errors) - 10} more")
        return "\n".join(lines)

    def raise_first(self):
        raise self.errors[0]


class NoEnginesRegistered(HubError):
    """The hub has no engines to send work to."""
