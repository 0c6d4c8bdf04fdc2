"""Views: where work goes (named engines, load balancing, broadcast) and how."""

from __future__ import annotations

import contextlib
from typing import Any, Optional

from . import ops
from .asyncresult import AsyncResult, CoalescedMessage, Message
from ..wire.session import pack
from .serialize import SERIALIZER, STAGE_MD, STAGE_MIN, STAGE_TYPE, oob_nbytes, serialize_call, stage_pieces

_MISSING = object()
#: request metadata key naming the task for the hub's task stream (the function's name)
NAME_KEY = "hubctl_name"


def func_name(f) -> str:
    """The name a task of ``f`` shows under (a partial's function's name, else the type's)."""
    name = getattr(f, "__name__", None) or getattr(getattr(f, "func", None), "__name__", None)
    return name if isinstance(name, str) else type(f).__name__


def code_name(code: str) -> str:
    """The name of an execute request: the code's first non-blank line (shortened)."""
    for line in code.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= 80 else line[:79] + "…"
    return "execute"


def _chunks(seq: list, n: int) -> list:
    """Split ``seq`` into ``n`` contiguous parts, sizes differing by at most one."""
    q, r = divmod(len(seq), n)
    out, start = [], 0
    for i in range(n):
        end = start + q + (1 if i < r else 0)
        out.append(seq[start:end])
        start = end
    return out


class View:
    """Common flags and plumbing."""

    _flag_names = ("block", "targets", "label")

    def __init__(self, client, targets=None, block: bool = False, label: Optional[str] = None):
        self.client = client
        self.targets = targets
        self.block = block
        self.label = label
        self._md_cache = None  # (flags, packed metadata) of the last request sent with default flags

    def set_flags(self, **flags) -> None:
        for k, v in flags.items():
            if k not in self._flag_names:
                raise KeyError(f"{type(self).__name__} has no flag {k!r} (flags: {', '.join(self._flag_names)})")
            setattr(self, k, v)

    @contextlib.contextmanager
    def temp_flags(self, **flags):
        """Set flags for the duration of a ``with`` block."""
        saved = {k: getattr(self, k) for k in flags}
        self.set_flags(**flags)
        try:
            yield self
        finally:
            for k, v in saved.items():
                setattr(self, k, v)

    def _finish(self, ar: AsyncResult, block):
        block = self.block if block is None else block
        return ar.get() if block else ar

    def apply(self, f, *args, **kwargs):
        return self._finish(self._apply(f, args, kwargs), None)

    def apply_async(self, f, *args, **kwargs) -> AsyncResult:
        return self._apply(f, args, kwargs)

    def apply_sync(self, f, *args, **kwargs):
        return self._apply(f, args, kwargs).get()

    def map_async(self, f, *seqs, **kw) -> AsyncResult:
        return self.map(f, *seqs, block=False, **kw)

    def map_sync(self, f, *seqs, **kw):
        return self.map(f, *seqs, block=True, **kw)

    def _metadata(self, name: str, label=None) -> dict:
        """Request metadata; ``label`` None: the view's label."""
        return {"serializer": SERIALIZER, "label": self.label if label is None else label, NAME_KEY: name}

    def _cached_packed(self, key, build):
        """``pack(build())``, reused while ``key`` (the flags it depends on) stays the same."""
        cached = self._md_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        packed = pack(build())
        self._md_cache = (key, packed)
        return packed

    def _packed_metadata(self, name: str):
        label = self.label
        if label is None or type(label) is str:
            return self._cached_packed(("direct", label, name), lambda: self._metadata(name))
        return self._metadata(name)


class DirectView(View):
    """Work on named engines (``client[0]``, ``client[:]``, ``client[[1, 3]]``)."""

    def _ids(self) -> list:
        return self.client._resolve_targets(self.targets)

    @property
    def _single(self) -> bool:
        return isinstance(self.targets, int)

    def _apply(self, f, args, kwargs, targets=None, stage: bool = False, stage_result: bool = False) -> AsyncResult:
        """Send ``f(*args, **kwargs)`` to the targets.

        ``stage``: large out-of-band data goes ahead in pieces (see serialize.STAGE_MIN);
        ``stage_result``: the engines may send a large result the same way.
        """
        client = self.client
        ids = client._resolve_targets(targets) if targets is not None else self._ids()
        bufs = serialize_call(f, args, kwargs)
        name = func_name(f)
        if stage_result:
            md = dict(self._metadata(name), stage_result=True)
        else:
            md = self._packed_metadata(name)
        if stage and oob_nbytes(bufs) >= STAGE_MIN:
            futs = []
            for t in ids:
                uuid = client._uuid_of(t)
                transfer = client.session.new_msg_id()
                for content, piece in stage_pieces(transfer, bufs):
                    client._send(b"m", client.session.serialize(STAGE_TYPE, content, metadata=STAGE_MD,
                                                                buffers=[piece], idents=[uuid.encode()]))
                staged_md = dict(self._metadata(name), staged={"transfer": transfer, "count": len(bufs) - 1})
                futs.append(client._submit(b"m", "apply_request", {}, staged_md, bufs[:1], ident=uuid))
        else:
            futs = [client._submit(b"m", "apply_request", {}, md, bufs, ident=client._uuid_of(t)) for t in ids]
        return AsyncResult(client, futs, fname=name, single=self._single)

    def map(self, f, *seqs, block=None, label: Optional[str] = None) -> Any:
        """Apply ``f`` elementwise, splitting the sequences evenly over the view's engines.

        ``label``: shown with the tasks in the hub's records and task stream (default: the view's).
        """
        if not seqs:
            raise TypeError("map needs at least one sequence")
        seqs = [list(s) for s in seqs]
        ids = self._ids()
        n = min(len(ids), max(1, len(seqs[0])))
        parts = [_chunks(s, n) for s in seqs]
        name = func_name(f)
        md = self._metadata(name, label)
        futs = []
        for i, t in enumerate(ids[:n]):
            bufs = serialize_call(ops.map_chunk, (f, *[p[i] for p in parts]), {})
            futs.append(self.client._submit(b"m", "apply_request", {}, md, bufs, ident=self.client._uuid_of(t)))
        return self._finish(AsyncResult(self.client, futs, fname=name, mapping=True), block)

    def execute(self, code: str, silent: bool = False, block=None, targets=None, label: Optional[str] = None):
        """Run a code string (through IPython on the engines); ``label`` as for ``map``."""
        ids = self.client._resolve_targets(targets) if targets is not None else self._ids()
        md = self._metadata(code_name(code), label)
        futs = [self.client._submit(b"m", "execute_request",
                                    {"code": code, "silent": silent, "user_expressions": {}, "allow_stdin": False,
                                     "store_history": not silent},
                                    md, ident=self.client._uuid_of(t)) for t in ids]
        return self._finish(AsyncResult(self.client, futs, fname="execute", single=self._single), block)

    def run(self, filename: str, block=None, label: Optional[str] = None):
        with open(filename) as f:
            code = f.read()
        return self.execute(code, block=block, label=label)

    def push(self, ns: dict, block=None, targets=None):
        """Set names in the engines' namespaces."""
        if not isinstance(ns, dict):
            raise TypeError("push takes a dict of names to values")
        return self._finish(self._apply(ops.push, (ns,), {}, targets, stage=True), block)

    def pull(self, names, block=None, targets=None):
        """Get names' values from the engines."""
        return self._finish(self._apply(ops.pull, (names,), {}, targets, stage_result=True), block)

    def scatter(self, name: str, seq, block=None, flatten: bool = False):
        """Partition ``seq`` over the engines as ``name`` (a single item per engine with ``flatten``)."""
        ids = self._ids()
        seq = list(seq) if not hasattr(seq, "__array__") else seq
        n = len(ids)
        parts = _chunks(seq, n) if not hasattr(seq, "__array__") else _array_chunks(seq, n)
        futs = []
        for t, part in zip(ids, parts):
            value = part[0] if flatten and len(part) == 1 else part
            bufs = serialize_call(ops.push, ({name: value},), {})
            futs.append(self.client._submit(b"m", "apply_request", {}, self._metadata("scatter"), bufs,
                                            ident=self.client._uuid_of(t)))
        return self._finish(AsyncResult(self.client, futs, fname="scatter"), block)

    def gather(self, name: str, block=None):
        """Concatenate ``name`` from every engine (inverse of scatter)."""
        ar = self._apply(ops.pull, (name,), {})
        if not (self.block if block is None else block):
            return ar
        parts = ar.get()
        if parts and hasattr(parts[0], "__array__"):
            import numpy

            return numpy.concatenate(parts)
        out = []
        for p in parts:
            out.extend(p if isinstance(p, (list, tuple)) else [p])
        return out

    def __getitem__(self, name: str):
        return self.pull(name, block=True)

    def __setitem__(self, name: str, value) -> None:
        self.push({name: value}, block=True)

    def abort(self, msg_ids=None):
        return self.client.abort(msg_ids, targets=self.targets)

    def __len__(self) -> int:
        return 1 if self._single else len(self._ids())

    def __repr__(self) -> str:
        return f"<DirectView {self.targets!r}>"


def _array_chunks(arr, n: int) -> list:
    q, r = divmod(len(arr), n)
    out, start = [], 0
    for i in range(n):
        end = start + q + (1 if i < r else 0)
        out.append(arr[start:end])
        start = end
    return out


def _dep_ids(dep) -> Any:
    if dep is None:
        return []
    if isinstance(dep, AsyncResult):
        return list(dep.msg_ids)
    if isinstance(dep, Message):
        return [dep.msg_id]
    if isinstance(dep, str):
        return [dep]
    if isinstance(dep, dict):
        return dep
    out = []
    for d in dep:
        out.extend(_dep_ids(d))
    return out


def Dependency(deps, all: bool = True, success: bool = True, failure: bool = False) -> dict:
    """A dependency with its rule: ``all`` or any of ``deps``, counting successes and/or failures."""
    return {"dependencies": _dep_ids(deps), "all": all, "success": success, "failure": failure}


class LoadBalancedView(View):
    """Work placed on whichever engine is free, by the hub's task scheduler."""

    _flag_names = ("block", "targets", "label", "retries", "after", "follow", "timeout")

    def __init__(self, client, targets=None, block: bool = False, label=None, retries: int = 0,
                 after=None, follow=None, timeout: Optional[float] = None):
        super().__init__(client, targets, block, label)
        self.retries = retries
        self.after = after
        self.follow = follow
        self.timeout = timeout

    def _task_metadata(self, name: str, **override) -> dict:
        get = lambda k: override[k] if override.get(k, _MISSING) is not _MISSING else getattr(self, k)
        targets = get("targets")
        uuids = [] if targets is None else [self.client._uuid_of(t) for t in self.client._resolve_targets(targets)]
        retries = get("retries")
        if not isinstance(retries, int) or retries < 0:
            raise TypeError("retries must be a non-negative int")
        return {
            "serializer": SERIALIZER,
            "label": get("label"),
            "targets": uuids,
            "retries": retries,
            "after": _dep_ids(get("after")),
            "follow": _dep_ids(get("follow")),
            "timeout": get("timeout"),
            NAME_KEY: name,
        }

    def _packed_task_metadata(self, name: str):
        """``_task_metadata(name)``, packed once for as long as the flags keep their defaults."""
        retries, label = self.retries, self.label
        if self.targets is None and not self.after and not self.follow and self.timeout is None \
                and type(retries) is int and retries >= 0 and (label is None or type(label) is str):
            return self._cached_packed(("task", retries, label, name), lambda: self._task_metadata(name))
        return self._task_metadata(name)

    def _apply(self, f, args, kwargs) -> AsyncResult:
        bufs = serialize_call(f, args, kwargs)
        name = func_name(f)
        fut = self.client._submit(b"t", "apply_request", {}, self._packed_task_metadata(name), bufs)
        return AsyncResult(self.client, [fut], fname=name, single=True)

    def _label_override(self, label) -> dict:
        return {} if label is None else {"label": label}

    def map(self, f, *seqs, block=None, chunksize: int = 1, ordered: bool = True,
            label: Optional[str] = None) -> Any:
        """Apply ``f`` elementwise as load-balanced tasks of ``chunksize`` items each.

        ``label``: shown with the tasks in the hub's records and task stream (default: the view's).
        """
        if not seqs:
            raise TypeError("map needs at least one sequence")
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError("chunksize must be a positive int")
        seqs = [list(s) for s in seqs]
        n = len(seqs[0])
        name = func_name(f)
        md = pack(self._task_metadata(name, **self._label_override(label)))  # once for all chunks
        futs = []
        for start in range(0, n, chunksize):
            chunk = [s[start:start + chunksize] for s in seqs]
            bufs = serialize_call(ops.map_chunk, (f, *chunk), {})
            futs.append(self.client._submit(b"t", "apply_request", {}, md, bufs))
        ar = AsyncResult(self.client, futs, fname=name, mapping=True, ordered=ordered)
        return self._finish(ar, block)

    def imap(self, f, *seqs, ordered: bool = True, max_outstanding: int = 1000, chunksize: int = 1,
             label: Optional[str] = None):
        """Lazily map over (possibly endless) iterables with at most ``max_outstanding`` tasks in flight."""
        from collections import deque
        from concurrent.futures import FIRST_COMPLETED, wait

        md = pack(self._task_metadata(func_name(f), **self._label_override(label)))
        its = zip(*seqs)
        window: deque = deque()
        exhausted = False
        while True:
            while not exhausted and len(window) < max_outstanding:
                chunk = []
                for _ in range(chunksize):
                    try:
                        chunk.append(next(its))
                    except StopIteration:
                        exhausted = True
                        break
                if not chunk:
                    break
                bufs = serialize_call(ops.starmap_chunk, (f, chunk), {})
                msg = self.client._submit(b"t", "apply_request", {}, md, bufs)
                window.append(AsyncResult(self.client, [msg], fname="imap", single=True))
            if not window:
                return
            if ordered:
                fut = window.popleft()
            else:
                done, _ = wait(list(window), return_when=FIRST_COMPLETED)
                fut = next(iter(done))
                window.remove(fut)
            yield from fut.result()

    def __repr__(self) -> str:
        return f"<LoadBalancedView targets={self.targets!r}>"


class BroadcastView(DirectView):
    """One request to the hub, copied to every target engine by the hub."""

    def __init__(self, client, targets="all", is_coalescing: bool = False, **kw):
        super().__init__(client, targets, **kw)
        self.is_coalescing = is_coalescing

    def _send(self, msg_type: str, content: dict, bufs, name: str, label=None, fname=None) -> AsyncResult:
        ids = self._ids()
        pairs = [[self.client._uuid_of(t), t] for t in ids]
        md = dict(self._metadata(name, label), targets=pairs, is_broadcast=True, is_coalescing=self.is_coalescing)
        client = self.client
        header = client.session.header(msg_type)
        orig = header["msg_id"]
        if self.is_coalescing:
            fut = CoalescedMessage(orig, msg_type, None, header)
            client._futures[orig] = fut
            futs = [fut]
        else:
            futs = []
            for uuid, _ in pairs:
                sub = Message(f"{orig}_{uuid}", msg_type, uuid, header)
                client._futures[sub.msg_id] = sub
                client._outstanding.setdefault(uuid, set()).add(sub.msg_id)
                futs.append(sub)
        frames = client.session.serialize(msg_type, content, metadata=md, header=header, buffers=bufs)
        client._send(b"b", frames)
        client.history.append(orig)
        return AsyncResult(client, futs, fname=fname or name, single=self.is_coalescing)

    def _apply(self, f, args, kwargs, targets=None, stage: bool = False, stage_result: bool = False) -> AsyncResult:
        # one message for all targets, copied by the hub: no staging (the hub would copy the pieces)
        return self._send("apply_request", {}, serialize_call(f, args, kwargs), func_name(f))

    def execute(self, code: str, silent: bool = False, block=None, targets=None, label: Optional[str] = None):
        content = {"code": code, "silent": silent, "user_expressions": {}, "allow_stdin": False}
        coalescing, self.is_coalescing = self.is_coalescing, False
        try:
            ar = self._send("execute_request", content, [], code_name(code), label, fname="execute")
        finally:
            self.is_coalescing = coalescing
        return self._finish(ar, block)


__all__ = ["DirectView", "LoadBalancedView", "BroadcastView", "Dependency"]
