"""``DirectView`` (named engines, their namespaces as a dict) and ``BroadcastView`` (ipyparallel's API)."""

from __future__ import annotations

import importlib
from typing import Optional

from . import ops
from .asyncresult import AsyncResult, CoalescedMessage, Message
from .mapresult import AsyncMapResult
from .partition import check_dist, joiner, part
from .remotefunction import code_name, getname
from .serialize import STAGE_MD, STAGE_MIN, STAGE_TYPE, oob_nbytes, serialize_call, stage_pieces
from .views import View


class DirectView(View):
    """Work on named engines: ``rc[0]``, ``rc[-1]``, ``rc[:]``, ``rc[[1, 3]]``, ``rc.direct_view()``.

    With one engine (an int ``targets``, ``rc[0]``) results come back as the value, not a list
    of one; the same for a call given an int ``targets=``.  The engines' namespaces read and
    write like a dict: ``dv['a'] = 5``, ``dv['a']``.
    """

    def _ids_of(self, targets=None) -> tuple:
        """(engine ids, single) of a call's ``targets`` (default: the view's)."""
        targets = self.targets if targets is None else targets
        return self.client._resolve_targets(targets), isinstance(targets, int)

    def _apply(self, f, args, kwargs, targets=None, stage: bool = False, stage_result: bool = False) -> AsyncResult:
        """Send ``f(*args, **kwargs)`` to the targets.

        ``stage``: large out-of-band data goes ahead in pieces (see serialize.STAGE_MIN);
        ``stage_result``: the engines may send a large result the same way.
        """
        client = self.client
        ids, single = self._ids_of(targets)
        bufs = serialize_call(f, args, kwargs)
        name = getname(f)
        md = dict(self._metadata(name), stage_result=True) if stage_result else self._packed_metadata(name)
        track = self.track
        if stage and oob_nbytes(bufs) >= STAGE_MIN:
            futs = []
            for t in ids:
                uuid = client._uuid_of(t)
                transfer = client.session.new_msg_id()
                for content, piece in stage_pieces(transfer, bufs):
                    client._send(b"m", client.session.serialize(STAGE_TYPE, content, metadata=STAGE_MD,
                                                                buffers=[piece], idents=[uuid.encode()]))
                staged_md = dict(self._metadata(name), staged={"transfer": transfer, "count": len(bufs) - 1})
                futs.append(client._submit(b"m", "apply_request", {}, staged_md, bufs[:1], ident=uuid, track=track))
        else:
            futs = [client._submit(b"m", "apply_request", {}, md, bufs, ident=client._uuid_of(t), track=track)
                    for t in ids]
        self._record(futs)
        return AsyncResult(client, futs, fname=name, single=single, targets=ids)

    def _parallel_parts(self, n: int, chunksize) -> int:
        if chunksize is not None:
            import warnings

            warnings.warn("`chunksize` is ignored unless load balancing", UserWarning, stacklevel=3)
        return len(self._ids_of()[0])

    def _submit_parts(self, calls: list, name: Optional[str] = None) -> list:
        """``calls[i]`` (an ``(f, args)``) on the view's i-th engine; ``name``: the tasks' name."""
        ids = self._ids_of()[0]
        client, md, track = self.client, self._packed_metadata(name), self.track
        msgs = [client._submit(b"m", "apply_request", {}, md, serialize_call(f, args, {}), ident=client._uuid_of(t),
                               track=track) for (f, args), t in zip(calls, ids)]
        self._record(msgs)
        return msgs

    def map(self, f, *sequences, block=None, track: bool = False, return_exceptions: bool = False, label=None):
        """Parallel ``map``: the sequences are split in one contiguous part per engine."""
        with self.temp_flags(track=track, **({} if label is None else {"label": label})):
            return super().map(f, *sequences, block=block, return_exceptions=return_exceptions)

    def execute(self, code: str, silent: bool = True, targets=None, block=None, label=None):
        """Run a code string through IPython on the engines (``silent``: no ``Out`` value, no history).

        Returns the AsyncResult, also with ``block`` (after waiting for it and raising its
        error), as ipyparallel does; its values are ``ExecuteReply`` objects.
        """
        ids, single = self._ids_of(targets)
        md = dict(self._metadata(code_name(code)), label=self.label if label is None else label)
        content = {"code": code, "silent": silent, "user_expressions": {}, "allow_stdin": False,
                   "store_history": not silent}
        client = self.client
        futs = [client._submit(b"m", "execute_request", content, md, ident=client._uuid_of(t)) for t in ids]
        for fut in futs:
            fut.code = code
        self._record(futs)
        return self._executed(AsyncResult(client, futs, fname="execute", single=single, targets=ids), block)

    def _executed(self, ar: AsyncResult, block) -> AsyncResult:
        if self.block if block is None else block:
            ar.get()
        return ar

    def run(self, filename: str, targets=None, block=None, label=None):
        """``execute`` the contents of a file."""
        with open(filename) as f:
            code = f.read() + "\n"
        return self.execute(code, block=block, targets=targets, label=label)

    # ------------------------------------------------------------------ namespaces
    def push(self, ns: dict, targets=None, block=None, track=None):
        """Set names in the engines' namespaces."""
        if not isinstance(ns, dict):
            raise TypeError(f"Must be a dict, not {type(ns)}")
        with self.temp_flags(track=self.track if track is None else track):
            return self._finish(self._apply(ops.push, (ns,), {}, targets, stage=True), block)

    def update(self, ns: dict):
        """``push(ns)`` with the view's flags."""
        return self.push(ns)

    def pull(self, names, targets=None, block=None):
        """A name's value (or a list of names' values) from each engine."""
        if isinstance(names, (list, tuple, set)):
            bad = [n for n in names if not isinstance(n, str)]
            if bad:
                raise TypeError(f"keys must be str, not type {type(bad[0])!r}")
            names = list(names)
        elif not isinstance(names, str):
            raise TypeError(f"names must be strs, not {names!r}")
        return self._finish(self._apply(ops.pull, (names,), {}, targets, stage_result=True), block)

    def get(self, key_s):
        """``pull(key_s, block=True)``."""
        return self.pull(key_s, block=True)

    def __getitem__(self, name: str):
        return self.get(name)

    def __setitem__(self, name: str, value) -> None:
        self.update({name: value})

    def scatter(self, key: str, seq, dist: str = "b", flatten: bool = False, targets=None, block=None, track=None):
        """Partition ``seq`` over the engines as ``key`` (``dist='r'``: round robin; ``flatten``: a
        one-item part as the item).  Blocking, it waits and returns None, as in ipyparallel."""
        check_dist(dist)
        ids, _ = self._ids_of(targets)
        if not (hasattr(seq, "__len__") and hasattr(seq, "__getitem__")):
            seq = list(seq)
        children = []
        with self.temp_flags(track=self.track if track is None else track):
            for i, t in enumerate(ids):
                p = part(seq, i, len(ids), dist=dist)
                value = p[0] if flatten and len(p) == 1 else p
                children.extend(self._apply(ops.push, ({key: value},), {}, t, stage=True)._children)
        ar = AsyncResult(self.client, children, fname="scatter", targets=ids)
        if self.block if block is None else block:
            ar.get()
            return None
        return ar

    def gather(self, key: str, dist: str = "b", targets=None, block=None):
        """The parts of ``key`` on the engines joined into one list or array (the inverse of ``scatter``)."""
        check_dist(dist)
        ids, _ = self._ids_of(targets)
        children = [m for t in ids for m in self._apply(ops.pull, (key,), {}, t, stage_result=True)._children]
        ar = AsyncMapResult(self.client, children, fname="gather", joiner=joiner(dist))
        return self._finish(ar, block)

    def clear(self, targets=None, block: Optional[bool] = None):
        """Reset the engines' namespaces."""
        return self.client.clear(targets=self.targets if targets is None else targets,
                                 block=self.block if block is None else block)

    # ------------------------------------------------------------------ imports and serialization
    def sync_imports(self, local: bool = True, quiet: bool = False):
        """``with view.sync_imports(): import numpy``: the imports run here and on the engines.

        ``quiet``: no "importing numpy on engine(s)" lines; ``local=False``: only on the engines
        (placeholders are bound here; ipyparallel raises NotImplementedError for it).
        """
        from .imports import sync_imports

        return sync_imports(self, local, quiet)

    @property
    def importer(self):
        """``sync_imports()`` as a property: ``with view.importer: import numpy``."""
        return self.sync_imports()

    def _serializer_call(self):
        return self.apply(ops.serializer_noop)

    def use_cloudpickle(self):
        """Accepted for ipyparallel code: functions, closures and lambdas already travel by value (cloudpickle)."""
        return self._serializer_call()

    def use_dill(self):
        """Accepted for ipyparallel code (dill must be importable, as there): the payload stays cloudpickle,
        which already sends closures and interactively defined functions and classes by value."""
        importlib.import_module("dill")  # the same ImportError as ipyparallel's where dill is missing

        return self._serializer_call()

    def use_pickle(self):
        """Accepted for ipyparallel code: the payload format does not change (see ``use_cloudpickle``)."""
        return self._serializer_call()

    def activate(self, suffix: str = "") -> None:
        """Make ``%px<suffix>``, ``%%px<suffix>``, ``%autopx<suffix>``, ``%pxconfig<suffix>`` and
        ``%pxresult<suffix>`` run on this view (``rc[::2].activate('_even')`` -> ``%px_even``)."""
        from ..kernel.px_magics import activate

        activate(self, suffix)

    def __repr__(self) -> str:
        text = str(self.targets)
        if len(text) > 16:
            text = text[:12] + "...]"
        return f"<DirectView {text}>"


class BroadcastView(DirectView):
    """One request to the hub, copied to every target engine by the hub (``is_coalescing``: one reply)."""

    def __init__(self, client, targets="all", is_coalescing: bool = False, **kw):
        super().__init__(client, targets, **kw)
        self.is_coalescing = is_coalescing

    def _send(self, msg_type: str, content: dict, bufs, fname: str, ids, name: Optional[str] = None) -> AsyncResult:
        client = self.client
        pairs = [[client._uuid_of(t), t] for t in ids]
        md = dict(self._metadata(name or fname), targets=pairs, is_broadcast=True, is_coalescing=self.is_coalescing)
        header = client.session.header(msg_type)
        orig = header["msg_id"]
        if self.is_coalescing:
            fut = CoalescedMessage(orig, msg_type, None, header)
            client._futures[orig] = fut
            futs = [fut]
        else:
            futs = []
            for uuid, eid in pairs:
                sub = Message(f"{orig}_{uuid}", msg_type, uuid, header)
                sub.engine_id = eid
                client._futures[sub.msg_id] = sub
                client._outstanding.setdefault(uuid, set()).add(sub.msg_id)
                futs.append(sub)
        if msg_type == "execute_request":
            for sub in futs:
                sub.code = content["code"]
        frames = client.session.serialize(msg_type, content, metadata=md, header=header, buffers=bufs)
        client._send(b"b", frames, futs)
        client.history.append(orig)
        self.history.append(orig)
        return AsyncResult(client, futs, fname=fname, single=self.is_coalescing, targets=ids)

    def _apply(self, f, args, kwargs, targets=None, stage: bool = False, stage_result: bool = False) -> AsyncResult:
        # one message for all targets, copied by the hub: no staging (the hub would copy the pieces)
        ids, _ = self._ids_of(targets)
        return self._send("apply_request", {}, serialize_call(f, args, kwargs), getname(f), ids)

    def execute(self, code: str, silent: bool = True, targets=None, block=None, label=None):
        content = {"code": code, "silent": silent, "user_expressions": {}, "allow_stdin": False}
        ids, _ = self._ids_of(targets)
        coalescing, self.is_coalescing = self.is_coalescing, False
        try:
            with self.temp_flags(**({} if label is None else {"label": label})):
                ar = self._send("execute_request", content, [], "execute", ids, code_name(code))
        finally:
            self.is_coalescing = coalescing
        return self._executed(ar, block)


__all__ = ["DirectView", "BroadcastView"]
