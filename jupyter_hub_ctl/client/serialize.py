"""Payload serialization shared by our client and engine.

A payload is a list of buffers: ``[MAGIC + pickle stream, *out_of_band]``.
Objects are pickled with cloudpickle (functions, closures and lambdas by
value) at protocol 5; large contiguous buffers that pickle protocol 5 hands
out of band (numpy arrays and other PickleBuffer providers; not bytes or
bytearray, which pickle in band) travel as their own zmq frames, so they are
neither copied into the pickle stream nor, on receipt, out of the received frames.
"""

from __future__ import annotations

import mmap
import pickle
import sys
import threading
import time
import types
import weakref
from typing import Any, List, Optional, Sequence

from ..wire.session import pack

SERIALIZER = "hubctl/1"
MAGIC = b"HUBCTL1\x00"
OOB_THRESHOLD = 4096


class SerializationError(TypeError):
    """An object that cannot be sent (names what it is and why)."""


class SerializerMismatch(RuntimeError):
    """The peer speaks another payload format (e.g. ipyparallel's)."""


def _oob_callback(oob: list):
    def callback(pb: pickle.PickleBuffer):
        raw = pb.raw()
        if raw.nbytes < OOB_THRESHOLD:
            return True  # small: keep in band
        oob.append(raw)
        return False

    return callback


def _dumps(obj: Any, oob: list) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(obj, protocol=5, buffer_callback=_oob_callback(oob))


# ----------------------------------------------------------------------------- function cache
# Sending the same function many times (a loop of apply_async, map with chunksize=1) used to
# cloudpickle it by value every time.  Now a function whose pickle cannot change while its
# state stays the same (see _fn_state) is pickled once; the call payload carries those bytes
# as ``_load_function(bytes)``, and the engine unpickles each distinct function once.

_FN_CACHE: dict = {}  # id(function) -> (weakref, state tuple, pickled bytes, len(sys.modules))
_FN_CACHE_MAX = 1024
_CODE_NAMES: dict = {}  # id(code) -> (code, names it may read as globals)
_MAX_STATE = 256
_ATOMS = frozenset({
    type(None), bool, int, float, complex, str, bytes, type(Ellipsis), type(NotImplemented),
    types.CodeType, types.ModuleType, types.BuiltinFunctionType,
})
_MISSING = object()
_EMPTY_CELL = object()


def _code_names(code: types.CodeType) -> tuple:
    """Names ``code`` (and the code nested in it) may look up as globals: a superset."""
    hit = _CODE_NAMES.get(id(code))
    if hit is not None and hit[0] is code:
        return hit[1]
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names.update(_code_names(c))
    names = tuple(sorted(names))
    if len(_CODE_NAMES) > 4096:
        _CODE_NAMES.clear()
    _CODE_NAMES[id(code)] = (code, names)
    return names


def _by_reference(obj) -> bool:
    """Would cloudpickle pickle this function or class by reference (module + qualified name)?"""
    module_name = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module_name or module_name == "__main__" or not qualname or "<" in qualname:
        return False
    registry = _registry()
    if registry:  # modules registered with cloudpickle.register_pickle_by_value, and their submodules
        name = module_name
        while name:
            if name in registry:
                return False
            name = name.rpartition(".")[0]
    module = sys.modules.get(module_name)
    if module is None or getattr(module, "__spec__", None) is None:
        return False
    target = module
    for part in qualname.split("."):
        target = getattr(target, part, _MISSING)
    return target is obj


def _registry():
    import cloudpickle

    return cloudpickle.list_registry_pickle_by_value()


def _safe(value, out: list, seen: set) -> bool:
    """Add ``value`` to ``out``; False if its pickle could change while its identity does not."""
    out.append(value)
    if len(out) > _MAX_STATE:
        return False
    t = type(value)
    if t in _ATOMS:
        return True
    if t is tuple or t is frozenset:
        return all(_safe(v, out, seen) for v in value)
    if t is types.FunctionType:
        return _by_reference(value) or _fn_state(value, out, seen)
    if isinstance(value, type):
        return _by_reference(value)
    return False  # lists, dicts, instances...: mutable, or unknown


def _fn_state(f: types.FunctionType, out: list, seen: set) -> bool:
    """Everything cloudpickle puts in ``f``'s by-value pickle, appended to ``out``.

    False if any of it is mutable (a list default, a dict global, a class defined in
    ``__main__``, ...): such a function is pickled afresh on every call, as before.
    """
    if id(f) in seen:
        return True
    seen.add(id(f))
    code = f.__code__
    out.extend((f, code, f.__name__, f.__qualname__, f.__module__, f.__doc__))
    if f.__defaults__ is not None and not _safe(f.__defaults__, out, seen):
        return False
    for d in (f.__kwdefaults__, f.__dict__, f.__annotations__):
        if d:
            for k, v in d.items():
                out.append(k)
                if not _safe(v, out, seen):
                    return False
        else:
            out.append(None)
    if f.__closure__ is not None:
        for cell in f.__closure__:
            try:
                v = cell.cell_contents
            except ValueError:
                v = _EMPTY_CELL
                out.append(v)
                continue
            if not _safe(v, out, seen):
                return False
    g = f.__globals__
    for name in _code_names(code):
        v = g.get(name, _MISSING)
        if v is _MISSING:
            out.append(None)
            continue
        out.append(name)
        if not _safe(v, out, seen):
            return False
    return True


def _function_bytes(f: types.FunctionType):
    """cloudpickle bytes of ``f`` alone, cached while its state is unchanged; None if uncacheable."""
    import cloudpickle

    state: list = []
    if not _fn_state(f, state, set()):
        return None
    n_modules = len(sys.modules)  # a new import may add a submodule to the pickle
    hit = _FN_CACHE.get(id(f))
    if hit is not None and hit[0]() is f and hit[3] == n_modules:
        old = hit[1]
        if len(old) == len(state) and all(a is b for a, b in zip(old, state)):
            return hit[2]
    data = cloudpickle.dumps(f, protocol=5)
    if len(_FN_CACHE) >= _FN_CACHE_MAX:
        _FN_CACHE.clear()
    key = id(f)
    # the callback holds the dict itself: at interpreter exit the module global may already be None
    _FN_CACHE[key] = (weakref.ref(f, lambda _r, key=key, cache=_FN_CACHE: cache.pop(key, None)), tuple(state), data,
                      n_modules)
    return data


_LOADED: dict = {}  # pickled function bytes -> function (on the receiving side)
_LOADED_MAX = 512


def _load_function(data: bytes):
    """Unpickle a function sent by ``_function_bytes``; each distinct one only once."""
    f = _LOADED.get(data)
    if f is None:
        import cloudpickle

        f = cloudpickle.loads(data)
        if len(_LOADED) >= _LOADED_MAX:
            del _LOADED[next(iter(_LOADED))]  # the oldest
        _LOADED[data] = f
    return f


def _call_pickler():
    """A CloudPickler that sends cacheable functions as ``_load_function(bytes)``."""
    global _CallPickler
    if _CallPickler is None:
        import cloudpickle

        class CallPickler(cloudpickle.CloudPickler):
            def reducer_override(self, obj):
                if type(obj) is types.FunctionType:
                    if _by_reference(obj):
                        return NotImplemented  # as cloudpickle does: pickle's save_global
                    data = _function_bytes(obj)
                    if data is not None:
                        return _load_function, (data,)
                return super().reducer_override(obj)

        _CallPickler = CallPickler
    return _CallPickler


_CallPickler = None


def _dumps_call(obj: Any, oob: list) -> bytes:
    import io

    buf = io.BytesIO()
    _call_pickler()(buf, protocol=5, buffer_callback=_oob_callback(oob)).dump(obj)
    return buf.getvalue()


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
        head = _dumps_call((f, tuple(args), dict(kwargs)), oob)
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


# ----------------------------------------------------------------------------- large transfers
# The hub relays a message only once all of it has arrived, so one 100 MB message crosses the
# two TCP hops (client -> hub -> engine) one after the other.  push and pull of large data
# send the out-of-band buffers ahead as pieces (messages of type STAGE_TYPE, which the hub
# relays without recording), so both hops work at once; the request (push) or reply (pull)
# that follows carries only the pickle head and names the staged transfer in its metadata.
STAGE_MIN = 16 * 2**20  # out-of-band bytes from which a push or pull result is sent in pieces
STAGE_PIECE = 4 * 2**20
STAGE_TYPE = "hubctl_data"
STAGE_MD = pack({"serializer": SERIALIZER})  # the metadata of every piece, packed once


def oob_nbytes(buffers: Sequence) -> int:
    """Bytes in the out-of-band buffers (all but the head) of a payload."""
    return sum(memoryview(b).nbytes for b in buffers[1:])


def stage_pieces(transfer: str, buffers: Sequence):
    """``(content, piece)`` for each piece of the out-of-band buffers of a payload, in order."""
    for i, b in enumerate(buffers[1:]):
        view = memoryview(b).cast("B")
        n = view.nbytes
        if n == 0:
            yield {"transfer": transfer, "buffer": i, "nbytes": 0, "offset": 0}, b""
        for offset in range(0, n, STAGE_PIECE):
            yield ({"transfer": transfer, "buffer": i, "nbytes": n, "offset": offset},
                   view[offset:offset + STAGE_PIECE])


_POPULATE = (getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
             | getattr(mmap, "MAP_POPULATE", 0)) if hasattr(mmap, "MAP_POPULATE") else 0


class BufferPool:
    """Large reassembly buffers, handed out again once nothing refers to them any more.

    Filling fresh memory costs more than copying into it: the kernel must zero and map every
    page (a bytearray of 100 MB is faulted in 4 kB at a time, ~68 ms here; a mapping the kernel
    populates in one go, ~43 ms; the copy itself ~15 ms).  Repeated transfers of about the same
    size (pushing a model's weights every iteration, pulling a result in a loop) reuse a mapping
    whose previous array has been freed instead.  A mapping is kept at most ``idle`` seconds
    after it was found unused, and at most ``free_limit`` bytes of unused ones; a daemon thread
    looks every ``idle / 2`` seconds while the pool holds any.  (Needs CPython's reference
    counts to tell when a mapping is unused; elsewhere every buffer is new.)
    """

    def __init__(self, idle: float = 10.0, free_limit: int = 256 * 2**20):
        self.idle = idle
        self.free_limit = free_limit
        self._entries: list = []  # [mapping, monotonic time it was first seen unused or None], oldest first
        self._lock = threading.Lock()
        self._reaper: Optional[threading.Thread] = None
        self.reused = 0  # buffers handed out again (for tests and benchmarks)
        self.clock = time.monotonic

    @staticmethod
    def _unused(entry: list) -> bool:
        # the only references left: the entry's own slot and getrefcount's argument
        return sys.getrefcount(entry[0]) <= 2

    def get(self, n: int):
        """A writable buffer of exactly ``n`` bytes."""
        if n < 2**20 or not _POPULATE or not hasattr(sys, "getrefcount"):
            return bytearray(n)
        now = self.clock()
        with self._lock:
            self._trim(now)
            for entry in self._entries:
                if n <= len(entry[0]) <= n + (n >> 3) + 2**20 and self._unused(entry):
                    entry[1] = None
                    self.reused += 1
                    return memoryview(entry[0])[:n]
            try:
                fresh = [mmap.mmap(-1, n, flags=_POPULATE), None]
            except (OSError, ValueError):
                return bytearray(n)
            self._entries.append(fresh)
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="hubctl-buffers", daemon=True)
                self._reaper.start()
            return memoryview(fresh[0])[:n]

    def _trim(self, now: float) -> None:
        """Drop mappings unused for too long, then the oldest unused ones over the byte limit."""
        keep, free = [], 0
        for entry in reversed(self._entries):  # newest first
            if not self._unused(entry):
                entry[1] = None
            else:
                if entry[1] is None:
                    entry[1] = now
                if now - entry[1] > self.idle or free + len(entry[0]) > self.free_limit:
                    continue
                free += len(entry[0])
            keep.append(entry)
        keep.reverse()
        self._entries = keep

    def _reap(self) -> None:
        while True:
            time.sleep(self.idle / 2)
            with self._lock:
                self._trim(self.clock())
                if not self._entries:
                    self._reaper = None
                    return

    def held(self) -> int:
        """Bytes mapped by the pool and not in use."""
        with self._lock:
            return sum(len(e[0]) for e in self._entries if self._unused(e))


POOL = BufferPool()


class StagingError(RuntimeError):
    """The pieces of a large push or pull did not all arrive (or could not be held)."""


class _Transfer:
    """The pieces of one staged transfer received so far."""

    __slots__ = ("bufs", "failed", "touched")

    def __init__(self):
        self.bufs: dict = {}  # buffer index -> [buffer, bytes filled, size]
        self.touched = time.monotonic()  # when its last piece came
        self.failed: Optional[str] = None  # why its pieces could not be kept


class Staging:
    """Reassembles staged buffers (each into one writable buffer from `POOL`), by transfer id."""

    def __init__(self):
        self.transfers: dict = {}  # transfer id -> _Transfer

    def add(self, content: dict, piece) -> None:
        """Copy one piece into place (``content`` as made by `stage_pieces`)."""
        try:
            transfer = str(content["transfer"])
            i, n, offset = int(content["buffer"]), int(content["nbytes"]), int(content["offset"])
        except (KeyError, TypeError, ValueError):
            return
        t = self.transfers.get(transfer)
        if t is None:
            t = self.transfers[transfer] = _Transfer()
        t.touched = time.monotonic()
        if t.failed:
            return
        entry = t.bufs.get(i)
        if entry is None:
            if i < 0 or n < 0:
                return
            try:
                entry = t.bufs[i] = [POOL.get(n), 0, n]
            except (MemoryError, OverflowError, ValueError, OSError) as e:
                t.bufs.clear()
                t.failed = f"no memory for {n} bytes ({type(e).__name__})"
                return
        view = memoryview(piece).cast("B")
        if 0 <= offset and offset + view.nbytes <= entry[2]:
            entry[0][offset:offset + view.nbytes] = view
            entry[1] += view.nbytes

    def take(self, transfer: str, count: int) -> list:
        """The ``count`` reassembled buffers of a transfer; StagingError if any is missing or short."""
        t = self.transfers.pop(transfer, None) or _Transfer()
        if t.failed:
            raise StagingError(f"staged data of transfer {transfer!r} could not be received: {t.failed}")
        out = []
        for i in range(count):
            entry = t.bufs.get(i)
            if entry is None:
                raise StagingError(f"staged data of transfer {transfer!r} is incomplete "
                                   f"({len(t.bufs)} of {count} buffers arrived)")
            if entry[1] != entry[2]:
                raise StagingError(f"staged data of transfer {transfer!r} is incomplete "
                                   f"(buffer {i}: {entry[1]} of {entry[2]} bytes arrived)")
            out.append(entry[0])
        return out

    def unstage(self, staged, buffers: list) -> list:
        """A message's buffers with the staged ones its metadata names (``staged``) after its
        head; StagingError if they are not all here."""
        try:
            transfer, count = str(staged["transfer"]), int(staged["count"])
            head = buffers[0]
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise StagingError(f"bad staged transfer {staged!r}: {e!r}") from None
        return [head, *self.take(transfer, count)]

    def drop(self, transfer: str) -> None:
        self.transfers.pop(transfer, None)

    def expire(self, max_idle: float) -> list:
        """Drop the transfers whose last piece came over ``max_idle`` seconds ago (their request or
        reply never followed: a sender gone mid-way); returns their ids."""
        now = time.monotonic()
        old = [tid for tid, t in self.transfers.items() if now - t.touched > max_idle]
        for tid in old:
            del self.transfers[tid]
        return old

    def clear(self) -> None:
        self.transfers.clear()
