"""The Client's control requests to engines: abort, clear, send_signal, shutdown (ipyparallel's signatures)."""

from __future__ import annotations

import signal as signal_mod
from concurrent.futures import Future
from typing import Optional

from .errors import NoEnginesRegistered, RemoteError


def _all_replies(futs: list) -> Future:
    """A Future of the list of replies of ``futs`` (failing with the first failure)."""
    out: Future = Future()
    left = [len(futs)]

    def one_done(_f):
        left[0] -= 1
        if left[0] == 0 and not out.done():
            for f in futs:
                if f.exception() is not None:
                    out.set_exception(f.exception())
                    return
            out.set_result([f.result() for f in futs])

    if not futs:
        out.set_result([])
    for f in futs:
        f.add_done_callback(one_done)
    return out


class Control:
    """Mixin of ``Client``: requests on the engines' control channel (answered while they are busy)."""

    control_timeout = 10.0  # seconds a blocking control request waits for each engine's reply

    def _control(self, msg_type: str, content: dict, targets, block: Optional[bool]):
        """Send a control request to each target engine.

        ``block`` (default: the client's ``block``): wait for every reply and raise an engine's
        error as a RemoteError; otherwise return a Future of the list of replies.
        """
        from .client import _QueryFuture

        block = self.block if block is None else block
        futs = [self._submit(b"c", msg_type, content, {}, ident=self._engines[t], fut_class=_QueryFuture)
                for t in self._resolve_targets(targets)]
        replies = _all_replies(futs)
        if not block:
            return replies
        for f in futs:
            try:
                reply = f.result(self.control_timeout)
            except TimeoutError:
                eid = self._uuids.get(f.engine_uuid)
                raise TimeoutError(f"engine {eid} did not answer {msg_type} within {self.control_timeout}s") from None
            if reply["content"].get("status") != "ok":
                raise RemoteError.from_content(reply["content"], self._uuids)
        return None

    def abort(self, jobs=None, targets=None, block: Optional[bool] = None):
        """Keep engines from running these tasks if they have not started yet.

        ``jobs``: a msg_id, an AsyncResult or a list of them (default: every task of this
        client still outstanding).  Running tasks are not stopped (``send_signal`` does that).
        """
        from .hub_queries import msg_ids_of

        if jobs is None:
            ids = sorted(self.outstanding)
        else:
            ids = msg_ids_of(jobs, self.history, allow_index=False)
        return self._control("abort_request", {"msg_ids": ids}, targets, block)

    def clear(self, targets=None, block: Optional[bool] = None):
        """Reset the engines' namespaces."""
        return self._control("clear_request", {}, targets, block)

    def send_signal(self, sig, targets=None, block: Optional[bool] = None):
        """Send a signal (a number, ``signal.SIGINT``, or a name like ``'SIGINT'``) to the engines' processes."""
        if isinstance(sig, signal_mod.Signals) or not isinstance(sig, str):
            sig = int(sig)
        return self._control("signal_request", {"sig": sig}, targets, block)

    def shutdown(self, targets="all", restart: bool = False, hub: bool = False, block: Optional[bool] = None):
        """Stop engines (every engine, and the hub, with ``hub=True``)."""
        if restart:
            raise NotImplementedError("Engine restart is not yet implemented")
        if hub:
            targets = "all"
        try:
            if self._engines:
                self._control("shutdown_request", {"restart": False}, targets, True if hub else block)
        except NoEnginesRegistered:
            pass
        if hub:
            self._hub("shutdown_request", {}, timeout=10)


__all__ = ["Control"]
