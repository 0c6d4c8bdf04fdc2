"""Results read back from the hub's task records: ``AsyncHubResult`` and the record decoding it shares."""

from __future__ import annotations

import threading
from typing import List

from .asyncresult import AsyncResult, Message
from .errors import RemoteError
from .metadata import of_record
from .outputs import ExecuteReply
from .serialize import MAGIC, deserialize


def _take_object(buffers: list, n=None):
    """Deserialize one object from the front of ``buffers``; (value, rest)."""
    if n is None:
        n = 1
        while n < len(buffers) and memoryview(buffers[n])[: len(MAGIC)].tobytes() != MAGIC:
            n += 1
    return deserialize(buffers[:n]), buffers[n:]


def _outputs_of(io: dict) -> list:
    out = []
    for name in ("stdout", "stderr"):
        if io.get(name):
            out.append({"msg_type": "stream", "content": {"name": name, "text": io[name]}})
    if io.get("execute_result"):
        out.append({"msg_type": "execute_result", "content": io["execute_result"]})
    if io.get("error"):
        out.append({"msg_type": "error", "content": io["error"]})
    return out


def fill_from_records(msgs: dict, content: dict, buffers: list, engine_ids: dict) -> list:
    """Fill the ``Message`` of every completed record of a ``result_reply``; the Messages filled.

    ``msgs`` maps msg_id -> Message to fill (each completed record consumes its buffers in
    order, whether or not it is wanted).
    """
    buffers = list(buffers)
    filled = []
    for m in content.get("completed", []):
        rec = content.get(m) or {}
        rc = rec.get("result_content") or {}
        rh = rec.get("result_header") or {}
        rmd = rec.get("result_metadata") or {}
        value = error = None
        if rc.get("status") == "ok" and rh.get("msg_type") == "apply_reply":
            if rmd.get("staged"):
                buffers = buffers[int(rmd.get("nbuffers") or 1):]
                error = RemoteError(
                    "ResultNotRecorded",
                    f"the result of task {m} was large (sent in pieces straight to the client that "
                    "submitted it) and the hub keeps only its first part, so it cannot be fetched again")
            else:
                try:
                    value, buffers = _take_object(buffers, rmd.get("nbuffers"))
                except Exception as e:  # e.g. a result of ipyparallel's engines, or one not importable here
                    error = e
        elif rc.get("status") != "ok":
            error = RemoteError.from_content(rc, engine_ids)
        msg = msgs.get(m)
        if msg is None or msg.done:
            continue
        io = rec.get("io") or {}
        md = of_record(rec, engine_ids)
        msg.engine_uuid, msg.engine_id = md["engine_uuid"], md["engine_id"]
        msg.stdout, msg.stderr = md["stdout"], md["stderr"]
        msg.outputs = _outputs_of(io)
        msg.reply = {"header": rh, "content": rc, "metadata": rmd}
        msg._md = md
        if error is not None:
            msg.error = error
        elif rh.get("msg_type") == "execute_reply":
            msg.value = ExecuteReply(m, rc, msg)
        else:
            msg.value = value if rh.get("msg_type") == "apply_reply" else rc
        msg.done = True
        filled.append(msg)
    return filled


class AsyncHubResult(AsyncResult):
    """Results of tasks read from the hub's records: tasks of other clients, resubmitted ones, old ones.

    It asks the hub once when made, then (if some are still pending) every ``poll_interval``
    seconds in a background thread until all are done, so it completes like any Future.
    """

    poll_interval = 0.1

    def __init__(self, client, msg_ids: List[str], single: bool = False, fname: str = "get_result"):
        children = [Message(m, "apply_request") for m in msg_ids]
        super().__init__(client, children, fname=fname, single=single)
        self._poll()
        if not self.done():
            threading.Thread(target=self._poll_until_done, name="hubctl-hub-result", daemon=True).start()

    def _poll(self) -> None:
        pending = {c.msg_id: c for c in self._children if not c.done}
        try:
            reply = self._client._hub("result_request", {"msg_ids": sorted(pending), "status_only": False})
        except Exception as e:  # e.g. "No such message": every pending task fails with it
            for c in pending.values():
                c.error = e
                c.done = True
                self._child_finished(c)
            return
        for msg in fill_from_records(pending, reply["content"], reply["buffers"], self._client._uuids):
            self._child_finished(msg)

    def _poll_until_done(self) -> None:
        interval = self.poll_interval
        while not self.done() and not self._client._closed:
            self._wait_until(self.done, interval)
            if not self.done() and not self._client._closed:
                self._poll()
            interval = min(1.0, interval * 1.5)
        if not self.done():
            for c in self._children:
                if not c.done:
                    c.error = RuntimeError("the client was closed before the hub reported this result")
                    c.done = True
                    self._child_finished(c)


__all__ = ["AsyncHubResult", "fill_from_records"]
