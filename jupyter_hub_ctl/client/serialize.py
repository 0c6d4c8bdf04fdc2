"""Payload serialization shared by our client and engine.

A payload is a list of buffers: ``[MAGIC + pickle stream, *out_of_band]``.
Objects are pickled with cloudpickle (functions, closures and lambdas by
value) at protocol 5; large contiguous buffers (numpy arrays, bytes,
bytearrays) travel out of band as their own zmq frames, so they are neither
copied into the pickle stream nor, on receipt, out of the received frames.
"""

from __future__ import annotations

import pickle
from typing import Any, List, Sequence

SERIALIZER = "hubctl/1"
MAGIC = b"HUBCTL1\x00"
OOB_THRESHOLD = 4096


class SerializationError(TypeError):
    """An object that cannot be sent (names what it is and why)."""


class SerializerMismatch(RuntimeError):
    """The peer speaks another payload format (e.g. ipyparallel's)."""


def _dumps(obj: Any, oob: list) -> bytes:
    import cloudpickle

    def callback(pb: pickle.PickleBuffer):
        raw = pb.raw()
        if raw.nbytes < OOB_THRESHOLD:
            return True  # small: keep in band
        oob.append(raw)
        return False

    return cloudpickle.dumps(obj, protocol=5, buffer_callback=callback)


_SIMPLE = (type(None), bool, int, float, complex, str)


def serialize(obj: Any, what: str = "object") -> List:
    """Buffers for ``obj``; SerializationError names ``what`` on failure."""
    if type(obj) in _SIMPLE:  # the common case of small results: plain pickle is several times faster
        return [MAGIC + pickle.dumps(obj, protocol=5)]
    oob: list = []
    try:
        head = _dumps(obj, oob)
    except Exception as e:
        raise SerializationError(f"cannot serialize {what} of type {type(obj).__name__}: {e}") from e
    return [MAGIC + head, *oob]


def serialize_call(f, args: Sequence, kwargs: dict) -> List:
    """Buffers for an apply request; names the offending argument on failure."""
    oob: list = []
    try:
        head = _dumps((f, tuple(args), dict(kwargs)), oob)
    except Exception as e:
        for label, value in [("function", f)] + [(f"argument {i}", a) for i, a in enumerate(args)] + \
                [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]:
            try:
                _dumps(value, [])
            except Exception as inner:
                raise SerializationError(
                    f"cannot serialize {label} ({type(value).__name__}): {inner}") from inner
        raise SerializationError(f"cannot serialize the call: {e}") from e
    return [MAGIC + head, *oob]


def _head(buffers: Sequence) -> memoryview:
    if not buffers:
        raise SerializerMismatch("empty payload")
    head = memoryview(buffers[0])
    if head[: len(MAGIC)].tobytes() != MAGIC:
        raise SerializerMismatch(
            "payload is not in jupyter_hub_ctl's format (it looks like it came from an ipyparallel "
            "client or engine); use jupyter_hub_ctl engines with jupyter_hub_ctl.Client, or "
            "ipyparallel engines with ipyparallel.Client"
        )
    return head[len(MAGIC):]


def deserialize(buffers: Sequence) -> Any:
    head = _head(buffers)
    return pickle.loads(head, buffers=[memoryview(b) for b in buffers[1:]])


def deserialize_call(buffers: Sequence):
    f, args, kwargs = deserialize(buffers)
    return f, args, kwargs
