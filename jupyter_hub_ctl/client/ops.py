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
