"""The client's questions to the hub: queues, results, records, history, metrics, the task stream."""

from __future__ import annotations

import time
from typing import Optional

from ..wire.session import parse_date
from .asyncresult import AsyncResult
from .errors import RemoteError
from .serialize import deserialize


class HubQueries:
    """Mixed into `Client`: each method asks the hub (from any thread) and waits for its answer."""

    def queue_status(self, targets=None, verbose: bool = False) -> dict:
        content = self._hub("queue_request", {"targets": targets, "verbose": verbose})["content"]
        out = {}
        for k, v in content.items():
            if k == "status":
                continue
            out[int(k) if k.isdigit() else k] = v
        return out[targets] if isinstance(targets, int) else out

    def result_status(self, msg_ids, status_only: bool = True) -> dict:
        content = self._hub("result_request", {"msg_ids": _msg_ids(msg_ids), "status_only": status_only})["content"]
        return {"pending": content["pending"], "completed": content["completed"]}

    def get_result(self, msg_ids, timeout: Optional[float] = None):
        """Results by msg_id, including tasks submitted by other clients (from the hub's records)."""
        single = isinstance(msg_ids, str)
        ids = _msg_ids(msg_ids)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            reply = self._hub("result_request", {"msg_ids": ids, "status_only": False})
            content = reply["content"]
            if not content["pending"]:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{len(content['pending'])} of {len(ids)} results still pending")
            time.sleep(0.1)
        buffers = list(reply["buffers"])
        results = {}
        for m in content["completed"]:
            rec = content.get(m) or {}
            rc = rec.get("result_content") or {}
            rh = rec.get("result_header") or {}
            rmd = rec.get("result_metadata") or {}
            if rc.get("status") == "ok" and rh.get("msg_type") == "apply_reply" and rmd.get("staged"):
                buffers = buffers[int(rmd.get("nbuffers") or 1):]
                results[m] = RemoteError(
                    "ResultNotRecorded",
                    f"the result of task {m} was large (sent in pieces straight to the client that "
                    "submitted it) and the hub keeps only its first part, so it cannot be fetched again")
            elif rc.get("status") == "ok" and rh.get("msg_type") == "apply_reply":
                value, buffers = _take_object(buffers, rmd.get("nbuffers"))
                results[m] = value
            elif rc.get("status") == "ok":
                results[m] = rc
            else:
                results[m] = RemoteError.from_content(rc, self._uuids)
        for v in results.values():
            if isinstance(v, BaseException):
                raise v
        return results[ids[0]] if single else [results[m] for m in ids]

    def hub_history(self) -> list:
        return self._hub("history_request", {})["content"]["history"]

    def db_query(self, query: dict, keys=None) -> list:
        reply = self._hub("db_request", {"query": query, "keys": keys})
        content = reply["content"]
        records = content["records"]
        buffers = list(reply["buffers"])
        blens, rblens = content.get("buffer_lens"), content.get("result_buffer_lens")
        for i, rec in enumerate(records):
            if blens is not None:
                rec["buffers"], buffers = buffers[: blens[i]], buffers[blens[i]:]
            if rblens is not None:
                rec["result_buffers"], buffers = buffers[: rblens[i]], buffers[rblens[i]:]
            for key in ("submitted", "started", "completed", "received"):
                if key in rec:
                    rec[key] = parse_date(rec[key])
        return records

    def resubmit(self, msg_ids) -> dict:
        return self._hub("resubmit_request", {"msg_ids": _msg_ids(msg_ids)})["content"]["resubmitted"]

    def purge_results(self, msg_ids=(), targets=()) -> None:
        if msg_ids == "all":
            self._hub("purge_request", {"msg_ids": "all"})
            return
        engine_ids = [targets] if isinstance(targets, int) else list(targets or [])
        self._hub("purge_request", {"msg_ids": _msg_ids(msg_ids) if msg_ids else [], "engine_ids": engine_ids})

    def engines_info(self) -> list:
        """Registered engines: id, uuid, host, pid, queue/tasks/completed counts, last heartbeat (epoch s)."""
        return self._hub("engines_request", {})["content"]["engines"]

    def health(self) -> dict:
        return self._hub("health_request", {})["content"]

    def engine_metrics(self, targets=None, history: int = 0) -> dict:
        """What our engines report of themselves, as kept by the hub (any thread may ask).

        Returns ``{"interval": s, "engines": {id: {"latest": sample, "history": [sample, ...]}},
        "hosts": {name: {"time", "load1", "cpus", "mem_total", "mem_used"}}}``: the hub's
        reporting interval (0: off), for each engine (``targets``: an id or a list; None: all)
        its latest sample (None for engines that report nothing, such as ipyparallel's) and up
        to ``history`` earlier ones, oldest first, and the latest figures of their hosts.  A
        sample is ``{"time", "cpu", "rss", "threads", "task", "task_name", "host", "pid"}``:
        hub time (epoch s), CPU % (100 = one core), resident bytes, threads, the msg_id and
        name of the running task (None when idle), and where the engine runs.
        """
        if isinstance(targets, int):
            targets = [targets]
        content = self._hub("engine_metrics_request", {"targets": targets, "history": history})["content"]
        return {"interval": content["interval"],
                "engines": {int(k): v for k, v in content["engines"].items()},
                "hosts": content["hosts"]}

    def task_stream(self, since: Optional[float] = None, limit: int = 5000) -> dict:
        """Tasks submitted, sent to an engine, seen running or finished since ``since``
        (any thread may ask).

        Returns ``{"now": t, "tasks": [...], "truncated": bool}``; pass ``now`` back as
        ``since`` next time to get exactly what changed in between (``since=None``: the latest
        changes).  Each task is ``{"msg_id", "engine_id", "name", "label", "submitted",
        "started", "completed", "state"}``, oldest change first, times in epoch seconds;
        ``state`` is ``pending`` (waiting for an engine), ``queued`` (sent to one), ``running``
        (an engine reported it), ``ok``, ``error`` or ``aborted``.  ``truncated``: more than
        ``limit`` changed and only the newest ``limit`` are listed.
        """
        content = self._hub("task_stream_request", {"since": since, "limit": limit})["content"]
        return {"now": content["now"], "tasks": content["tasks"], "truncated": content["truncated"]}


def _msg_ids(msg_ids) -> list:
    if isinstance(msg_ids, str):
        return [msg_ids]
    if isinstance(msg_ids, AsyncResult):
        return list(msg_ids.msg_ids)
    out = []
    for m in msg_ids:
        out.extend(m.msg_ids if isinstance(m, AsyncResult) else [m])
    return out


def _take_object(buffers: list, n=None):
    """Deserialize one object from the front of ``buffers``; (value, rest)."""
    if n is None:
        n = 1 + sum(1 for _ in _oob_run(buffers[1:]))
    value = deserialize(buffers[:n])
    return value, buffers[n:]


def _oob_run(buffers):
    from .serialize import MAGIC

    for b in buffers:
        if memoryview(b)[: len(MAGIC)].tobytes() == MAGIC:
            return
        yield b
