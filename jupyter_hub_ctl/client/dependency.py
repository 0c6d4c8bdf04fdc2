"""Task dependencies: ``Dependency`` (on other tasks), ``@depend`` / ``@require`` (on an engine's state)."""

from __future__ import annotations

from types import ModuleType

from .errors import UnmetDependency


def _bound(f):
    """``f`` with the engine's namespace as its globals, when running inside an engine."""
    try:
        from ..engine.executor import bind
    except ImportError:
        return f
    return bind(f)


class dependent:
    """``f`` guarded by ``df(*dargs, **dkwargs)``: on an engine where ``df`` returns False (or raises
    UnmetDependency) the task is not run there, and the scheduler tries another engine."""

    def __init__(self, _wrapped_f, _wrapped_df, *dargs, **dkwargs):
        self.f = _wrapped_f
        self.__name__ = getattr(_wrapped_f, "__name__", "f")
        self.df = _wrapped_df
        self.dargs = dargs
        self.dkwargs = dkwargs

    def check_dependency(self) -> None:
        if _bound(self.df)(*self.dargs, **self.dkwargs) is False:
            raise UnmetDependency(f"{getattr(self.df, '__name__', 'dependency')} is not met on this engine")

    def __call__(self, *args, **kwargs):
        self.check_dependency()
        return _bound(self.f)(*args, **kwargs)


class depend:
    """Decorator: ``@depend(df, *args, **kwargs)`` runs a task only on engines where ``df(*args, **kwargs)``
    is not False."""

    def __init__(self, _wrapped_f, *args, **kwargs):
        self.f = _wrapped_f
        self.args = args
        self.kwargs = kwargs

    def __call__(self, f):
        return dependent(f, self.f, *self.args, **self.kwargs)


def _require(*modules, **mapping) -> bool:
    """On the engine: import ``modules`` and set ``mapping`` in its namespace (UnmetDependency if an import fails)."""
    from .ops import _ns

    ns = _ns()
    for name in modules:
        try:
            exec(f"import {name}", ns)
        except ImportError as e:
            raise UnmetDependency(f"{name}: {e}") from None
    for name, obj in mapping.items():
        ns[name] = _bound(obj)
    return True


def require(*objects, **mapping):
    """Decorator: the task imports these modules (names or modules) and gets these objects (functions
    positionally, under their ``__name__``; anything by keyword) in the engine's namespace before
    it runs.  An engine where an import fails is skipped (UnmetDependency)."""
    names = []
    for obj in objects:
        if isinstance(obj, ModuleType):
            obj = obj.__name__
        if isinstance(obj, str):
            names.append(obj)
        elif hasattr(obj, "__name__"):
            mapping[obj.__name__] = obj
        else:
            raise TypeError(f"Objects other than modules and functions must be passed by kwarg, but got: {type(obj)}")
    return depend(_require, *names, **mapping)


class Dependency(set):
    """Task msg_ids a task waits for (``after``/``follow``), with the rule of when that is met.

    ``all``: all of them (else any); ``success``/``failure``: which outcomes count.  With
    ``all=True, success=True, failure=False`` the task fails with ImpossibleDependency as soon as
    one of them fails.
    """

    def __init__(self, dependencies=(), all: bool = True, success: bool = True, failure: bool = False):
        from .hub_queries import msg_ids_of

        if isinstance(dependencies, dict):
            all = dependencies.get("all", all)
            success = dependencies.get("success", success)
            failure = dependencies.get("failure", failure)
            dependencies = dependencies.get("dependencies", dependencies.get("msg_ids", []))
        try:
            ids = msg_ids_of(dependencies, allow_index=False)
        except TypeError as e:
            raise TypeError(f"invalid dependency: {e}") from None
        super().__init__(ids)
        if not (success or failure):
            raise ValueError("Must depend on at least one of successes or failures!")
        self.all = all
        self.success = success
        self.failure = failure

    def check(self, completed, failed=None) -> bool:
        """Whether the rule is met, given the msg_ids that succeeded (and failed)."""
        if not self:
            return True
        against = set(completed) if self.success else set()
        if failed is not None and self.failure:
            against |= set(failed)
        return self.issubset(against) if self.all else not self.isdisjoint(against)

    def unreachable(self, completed, failed=None) -> bool:
        """Whether the rule can no longer be met."""
        if not self:
            return False
        against = set(completed) if not self.success else set()
        if failed is not None and not self.failure:
            against |= set(failed)
        return not self.isdisjoint(against) if self.all else self.issubset(against)

    def as_dict(self) -> dict:
        """The wire form (for ``after``/``follow``)."""
        return {"dependencies": sorted(self), "all": self.all, "success": self.success, "failure": self.failure}


__all__ = ["Dependency", "depend", "dependent", "require"]
