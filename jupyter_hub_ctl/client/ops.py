"""Small functions the client sends by reference to run inside engines."""

from __future__ import annotations


def _ns() -> dict:
    from ..engine.executor import current_namespace

    return current_namespace()


def push(mapping: dict) -> None:
    _ns().update(mapping)


def pull(names):
    ns = _ns()
    if isinstance(names, str):
        if names not in ns:
            raise NameError(f"name {names!r} is not defined on this engine")
        return ns[names]
    missing = [n for n in names if n not in ns]
    if missing:
        raise NameError(f"names not defined on this engine: {missing}")
    return [ns[n] for n in names]


def map_chunk(f, *seqs):
    return list(map(f, *seqs))


def starmap_chunk(f, chunk):
    return [f(*args) for args in chunk]


def engine_pid_host():
    import os
    import socket

    return {"pid": os.getpid(), "host": socket.gethostname()}


def serializer_noop() -> None:
    """What ``use_cloudpickle``/``use_dill``/``use_pickle`` run on the engines: the format never changes."""


def import_into_namespace(name: str, fromlist, level: int) -> None:
    """``import name`` / ``from name import *fromlist`` into the engine's namespace (``sync_imports``)."""
    import importlib
    import sys

    ns = _ns()
    module = __import__(name, ns, ns, fromlist or (), level)
    if fromlist:
        for key in fromlist:
            ns[key] = getattr(module, key) if hasattr(module, key) else importlib.import_module(f"{name}.{key}")
    else:
        top = name.split(".", 1)[0]
        ns[top] = sys.modules[top]


def resolve_reference(name: str):
    """The value of ``name`` (an expression) in the engine's namespace: what a ``Reference`` becomes there."""
    return eval(name, _ns())


class Reference:
    """A name to look up on the engine: ``view.apply(f, Reference('a'))`` calls ``f`` with the
    engine's own ``a`` (any expression: ``Reference('a[0]')``)."""

    def __init__(self, name: str):
        if not isinstance(name, str):
            raise TypeError(f"illegal name: {name!r}")
        self.name = name

    def __reduce__(self):
        return resolve_reference, (self.name,)

    def __repr__(self) -> str:
        return f"<Reference: {self.name!r}>"
