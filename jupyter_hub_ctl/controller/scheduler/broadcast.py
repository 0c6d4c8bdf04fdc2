"""Flat broadcast scheduler: one request in, one copy per target engine out.

Every engine connects its shell to the single engine-side port (the engine
connection file lists ``broadcast: [port]``).  Per-engine copies get msg_id
``<original>_<uuid>`` and ``metadata.original_msg_id``; coalescing requests
are answered by one message carrying every engine's buffers in target order
and ``metadata.broadcast_targets = [[uuid, id], ...]``.
"""

from __future__ import annotations

from typing import Callable

from traitlets.config import LoggingConfigurable

from ...wire.session import DELIM, Msg, WireSession, frame_bytes, pack
from ..errors import engine_died, error_content
from ..intake import accept, reply_type


def _header_packer(header: dict):
    """``msg_id -> packed header``: the header is packed once and each copy's msg_id put in."""
    parts = pack(dict(header, msg_id="\0")).split(b'"\\u0000"')
    if len(parts) != 2:  # another field holds the marker too: pack each copy whole
        return lambda msg_id: pack(dict(header, msg_id=msg_id))
    head, tail = parts
    return lambda msg_id: head + pack(msg_id) + tail


class _Pending:
    __slots__ = ("client", "header", "targets", "replies", "remaining", "coalescing", "msg_type")

    def __init__(self, client, header, targets, coalescing, msg_type):
        self.client = client
        self.header = header
        self.targets = targets  # [(uuid, id)]
        self.replies: dict = {}
        self.remaining = {u for u, _ in targets}
        self.coalescing = coalescing
        self.msg_type = msg_type


class BroadcastScheduler(LoggingConfigurable):
    """Fans broadcast requests out to engines and gathers the replies."""

    def __init__(self, session: WireSession, client_reader, engine_reader, monitor,
                 drop: Callable = lambda reason, socket=None: None, **kwargs):
        super().__init__(**kwargs)
        self.monitor = monitor
        self.session = session
        self.client_reader = client_reader
        self.engine_reader = engine_reader
        self.count_error = drop  # drop(reason, socket=None): counted by the Hub
        self.pending: dict = {}  # original msg_id -> _Pending
        self.sub_ids: dict = {}  # per-engine msg_id -> (original msg_id, uuid)
        self.by_engine: dict = {}  # uuid -> set of per-engine msg_ids outstanding

    def dispatch_submission(self, raw: list) -> None:
        msg = accept(self.session, raw, 1, self.count_error, "broadcast-client", content=False,
                     answer=self._answer)
        if msg is None:
            return
        idents, parts = msg.idents, msg.frames
        md = msg.metadata
        targets = md.get("targets")
        try:
            pairs = [(str(t[0]), int(t[1])) for t in targets]
        except (TypeError, ValueError, IndexError, KeyError):
            self._reply_error(idents, msg.header, "ValueError",
                              "broadcast metadata.targets must be a list of [uuid, id] pairs")
            return
        if not pairs:
            self._reply_error(idents, msg.header, "ValueError", "broadcast request with no targets")
            return
        original = md.get("original_msg_id") or msg.msg_id
        if original in self.pending:
            self.count_error("duplicate-msg-id", "broadcast-client")
            self._reply_error(idents, msg.header, "ValueError", f"duplicate msg_id {original!r}")
            return
        # each engine's copy leaves out the target list: engines do not read it, and N copies of
        # N targets would make a broadcast cost O(N^2) bytes (500 MB for 10,000 engines)
        md = {k: v for k, v in md.items() if k != "targets"}
        md["original_msg_id"] = original
        coalescing = bool(md.get("is_coalescing"))
        self.pending[original] = _Pending(idents, msg.header, pairs, coalescing, reply_type(msg.header))
        m = pack(md)
        p = parts[2]
        c = parts[4]
        pb, cb = frame_bytes(p), frame_bytes(c)
        bufs = parts[5:]
        header_for = _header_packer(msg.header)
        self.monitor.save_broadcast_request(original, msg, [(f"{original}_{u}", u) for u, _ in pairs])
        for uuid, _ in pairs:
            sub_id = f"{original}_{uuid}"
            h = header_for(sub_id)
            sig = self.session.resign(h, pb, m, cb)
            self.sub_ids[sub_id] = (original, uuid)
            self.by_engine.setdefault(uuid, set()).add(sub_id)
            self.engine_reader.send([uuid.encode(), *idents, DELIM, sig, h, p, m, c, *bufs], copy=False)

    def dispatch_result(self, raw: list) -> None:
        msg = accept(self.session, raw, 2, self.count_error, "broadcast-engine")
        if msg is None:
            return
        idents = msg.idents
        sub_id = msg.parent.get("msg_id")
        entry = self.sub_ids.pop(sub_id, None)
        uuid = frame_bytes(idents[0]).decode("utf8", "replace")
        if entry is None or entry[1] != uuid:
            if entry is not None:
                self.sub_ids[sub_id] = entry
            self.count_error("unexpected-reply", "broadcast-engine")
            return
        self.by_engine.get(uuid, set()).discard(sub_id)
        self.monitor.save_broadcast_result(sub_id, uuid, msg, None)
        self._collect(entry[0], uuid, msg)

    def _collect(self, original: str, uuid: str, msg) -> None:
        pend = self.pending.get(original)
        if pend is None:
            return
        if not pend.coalescing:
            pend.remaining.discard(uuid)
            if msg is not None:
                pend.replies[uuid] = msg
            if not pend.remaining:
                del self.pending[original]
                last = msg or next(iter(pend.replies.values()), None)
                self.monitor.save_broadcast_result(original, None, last, None if last else {"status": "error"})
            if msg is not None:
                self.client_reader.send([*pend.client, msg.idents[0], DELIM, *msg.frames], copy=False)
            return
        pend.replies[uuid] = msg
        pend.remaining.discard(uuid)
        if not pend.remaining:
            del self.pending[original]
            self._send_coalesced(original, pend)

    def _send_coalesced(self, original: str, pend: _Pending) -> None:
        last = None
        buffers = []
        counts = []
        error = None
        for uuid, _ in pend.targets:
            msg = pend.replies.get(uuid)
            if isinstance(msg, dict):  # a synthesized error
                error = error or msg
                continue
            last = msg
            if msg.content.get("status") != "ok":
                error = error or msg.content
            buffers.extend(msg.buffers)
            counts.append(len(msg.buffers))
        md = dict(last.metadata if last is not None else {})
        md.update(
            is_broadcast=True,
            is_coalescing=True,
            original_msg_id=original,
            broadcast_targets=[[u, i] for u, i in pend.targets],
            broadcast_nbuffers=counts,
        )
        if error is not None:
            md["status"] = "error"
            md["engine_info"] = error.get("engine_info") or {}
            header = self.session.header(pend.msg_type)
            parent, content, buffers = pend.header, error, []
        else:
            header, parent, content = last.header, last.parent, last.content
        frames = self.session.serialize(header["msg_type"], content, parent=parent, metadata=md,
                                        header=header, buffers=buffers)
        self.client_reader.send([*pend.client, *frames], copy=False)
        self.monitor.save_broadcast_result(original, None, Msg([], frames[1:], header, parent, md, content, buffers), None)

    def remove_engine(self, uuid: str, engine_id: int) -> None:
        """Fail this engine's part of every broadcast still waiting on it."""
        for sub_id in list(self.by_engine.pop(uuid, ())):
            entry = self.sub_ids.pop(sub_id, None)
            if entry is None:
                continue
            pend = self.pending.get(entry[0])
            if pend is None:
                continue
            err = engine_died(engine_id, uuid, sub_id, pend.msg_type[: -len("_reply")])
            self.monitor.save_broadcast_result(sub_id, uuid, None, err)
            if pend.coalescing:
                pend.replies[uuid] = err
                pend.remaining.discard(uuid)
                if not pend.remaining:
                    del self.pending[entry[0]]
                    self._send_coalesced(entry[0], pend)
            else:
                self._collect(entry[0], uuid, None)

    def _answer(self, client, header: dict, content: dict) -> None:
        self.client_reader.send([*client, *self.session.serialize(
            reply_type(header), content, parent=header, metadata={"status": "error"})])

    def _reply_error(self, client, header, ename, evalue) -> None:
        self._answer(client, header, error_content(ename, evalue))
