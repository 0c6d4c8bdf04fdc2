"""Task dependencies as the scheduler sees them (``after`` / ``follow``)."""

from __future__ import annotations

from typing import Any, Iterable


class DependencyError(ValueError):
    """A dependency specification that cannot be understood."""


class Dependency(set):
    """A set of msg_ids plus the rule for when it counts as met.

    ``all``: every id must finish (else any one); ``success`` / ``failure``:
    which outcomes count as finishing.
    """

    __slots__ = ("all", "success", "failure")

    def __init__(self, ids: Iterable = (), all: bool = True, success: bool = True, failure: bool = False):
        super().__init__(ids)
        self.all = bool(all)
        self.success = bool(success)
        self.failure = bool(failure)
        if not (self.success or self.failure):
            raise DependencyError("a dependency must allow success, failure or both")

    @classmethod
    def from_wire(cls, spec: Any) -> "Dependency":
        """Accept a list of msg_ids, a single msg_id, None, or the dict form."""
        if spec is None or spec == "":
            return cls()
        if isinstance(spec, str):
            return cls([spec])
        if isinstance(spec, (list, tuple)):
            if not all(isinstance(i, str) for i in spec):
                raise DependencyError("dependency ids must be strings")
            return cls(spec)
        if isinstance(spec, dict):
            ids = spec.get("dependencies", spec.get("msg_ids", []))
            if ids is None:
                ids = []
            if not isinstance(ids, (list, tuple)) or not all(isinstance(i, str) for i in ids):
                raise DependencyError("dependency ids must be a list of strings")
            return cls(
                ids,
                all=spec.get("all", True),
                success=spec.get("success", True),
                failure=spec.get("failure", False),
            )
        raise DependencyError(f"cannot read a dependency from {type(spec).__name__}")

    def _done(self, msg_id: str, succeeded: set, failed: set) -> bool:
        return (self.success and msg_id in succeeded) or (self.failure and msg_id in failed)

    def check(self, succeeded: set, failed: set) -> bool:
        """True when the dependency is met given the finished sets."""
        if not self:
            return True
        test = all if self.all else any
        return test(self._done(i, succeeded, failed) for i in self)

    def unreachable(self, succeeded: set, failed: set) -> bool:
        """True when the dependency can never be met anymore."""
        if not self:
            return False
        if self.success and self.failure:
            return False
        bad = failed if self.success else succeeded
        if self.all:
            return not self.isdisjoint(bad)
        return self.issubset(bad)

    def as_dict(self) -> dict:
        return {"dependencies": sorted(self), "all": self.all, "success": self.success, "failure": self.failure}
