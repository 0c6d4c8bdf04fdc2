"""The Client's questions to the hub: results and records, history, queues, purge, resubmit (ipyparallel's API);
engine metrics and the task stream (extensions of this hub)."""

from __future__ import annotations

import types
from typing import Optional

from ..wire.dates import parse_date
from .errors import RemoteError, collect_exceptions


def msg_ids_of(jobs, history=(), allow_index: bool = True) -> list:
    """msg_ids from a msg_id, an index into ``history``, an AsyncResult, or a list of those."""
    from .asyncresult import AsyncResult

    if not isinstance(jobs, (list, tuple, set, frozenset, types.GeneratorType)):
        jobs = [jobs]
    out = []
    for job in jobs:
        if isinstance(job, str):
            out.append(job)
        elif isinstance(job, AsyncResult):
            out.extend(job.msg_ids)
        elif isinstance(job, int) and not isinstance(job, bool) and allow_index:
            out.append(history[job])
        else:
            raise TypeError(f"Invalid msg_id {job!r}: expected a msg_id (str), "
                            f"{'a history index (int), ' if allow_index else ''}or an AsyncResult")
    return out


class HubQueries:
    """Mixin of ``Client``: requests answered by the hub from its task records and queues."""

    def queue_status(self, targets="all", verbose: bool = False) -> dict:
        """Per engine: queued and running tasks (``queue``, ``tasks``, ``completed``) and ``unassigned``."""
        engine_ids = None if targets in ("all", None) else self._resolve_targets(targets)
        content = self._hub("queue_request", {"targets": engine_ids, "verbose": verbose})["content"]
        out = {}
        for k, v in content.items():
            if k == "status":
                continue
            out[int(k) if k.isdigit() else k] = v
        return out[self._resolve_targets(targets)[0]] if isinstance(targets, int) else out

    def result_status(self, msg_ids, status_only: bool = True) -> dict:
        """``{'pending': [...], 'completed': [...]}``; with ``status_only=False`` also each completed
        result by msg_id (kept in ``results``/``metadata``); failures raise (several as a CompositeError)."""
        from .asyncresult import Message
        from .hubresult import fill_from_records

        ids = msg_ids_of(msg_ids, self.history)
        reply = self._hub("result_request", {"msg_ids": ids, "status_only": status_only})
        content = reply["content"]
        out = {"pending": content["pending"], "completed": content["completed"]}
        if status_only:
            return out
        msgs = {m: Message(m, "apply_request") for m in content["completed"]}
        failures = []
        for msg in fill_from_records(msgs, content, reply["buffers"], self._uuids):
            value = msg.outcome()
            out[msg.msg_id] = self.results[msg.msg_id] = value
            self.metadata[msg.msg_id] = msg.metadata
            if msg.error is not None:
                failures.append(msg.error)
        if len(ids) == 1 and failures:
            raise failures[0]
        collect_exceptions(failures, "result_status")
        return out

    def get_result(self, indices_or_msg_ids=None, block: Optional[bool] = None, owner: bool = True):
        """An AsyncResult for tasks by msg_id, history index or AsyncResult (default: the last task).

        Tasks of this client still running are followed locally; any other task (another
        client's, a finished one, a resubmitted one) is read from the hub's records
        (``AsyncHubResult``).  ``block`` (default: the client's) waits for it.
        """
        from .asyncresult import AsyncResult, Message
        from .hubresult import AsyncHubResult

        if indices_or_msg_ids is None:
            indices_or_msg_ids = -1
        single = not isinstance(indices_or_msg_ids, (list, tuple, set, types.GeneratorType))
        ids = msg_ids_of(indices_or_msg_ids, self.history)
        local = [self._futures.get(m) for m in ids]
        if ids and all(isinstance(f, Message) for f in local):
            ar = AsyncResult(self, local, fname="get_result", single=single and len(ids) == 1)
        else:
            ar = AsyncHubResult(self, ids, single=single and len(ids) == 1)
        if self.block if block is None else block:
            ar.wait()
        return ar

    def hub_history(self) -> list:
        """Every msg_id the hub has a record of, oldest first."""
        return self._hub("history_request", {})["content"]["history"]

    def db_query(self, query: dict, keys=None) -> list:
        """Task records matching a MongoDB-style ``query`` (only ``keys`` if given; dates as datetimes)."""
        if isinstance(keys, str):
            keys = [keys]
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

    def resubmit(self, indices_or_msg_ids=None, metadata=None, block: Optional[bool] = None):
        """Run finished tasks again (by msg_id, history index or AsyncResult; default: the last one).

        Returns an ``AsyncHubResult`` of the new tasks (a list, in the order given).
        """
        from .hubresult import AsyncHubResult

        if indices_or_msg_ids is None:
            indices_or_msg_ids = -1
        ids = msg_ids_of(indices_or_msg_ids, self.history)
        mapping = self._hub("resubmit_request", {"msg_ids": ids})["content"]["resubmitted"]
        ar = AsyncHubResult(self, [mapping[m] for m in ids], fname="resubmit")
        if self.block if block is None else block:
            ar.wait()
        return ar

    def purge_local_results(self, jobs=(), targets=()) -> None:
        """Forget results fetched into ``results``/``metadata`` (``'all'``, msg_ids, or by engine)."""
        if not jobs and not targets:
            raise ValueError("Must specify at least one of `targets` and `jobs`")
        outstanding = self.outstanding
        if jobs == "all":
            if outstanding:
                raise RuntimeError(f"Can't purge outstanding tasks: {outstanding}")
            self.results.clear()
            self.metadata.clear()
            return
        ids = set(msg_ids_of(jobs, self.history)) if jobs else set()
        if targets:
            uuids = {self._uuid_of(t) for t in self._resolve_targets(targets)}
            ids.update(m for m, md in self.metadata.items() if md["engine_uuid"] in uuids)
        if outstanding & ids:
            raise RuntimeError(f"Can't purge outstanding tasks: {outstanding & ids}")
        for m in ids:
            self.results.pop(m, None)
            self.metadata.pop(m, None)

    def purge_hub_results(self, jobs=(), targets=()) -> None:
        """Have the hub forget task records (``'all'``, msg_ids/AsyncResults, or every record of engines)."""
        if not jobs and not targets:
            raise ValueError("Must specify at least one of `targets` and `jobs`")
        engine_ids = self._resolve_targets(targets) if targets else []
        ids = "all" if jobs == "all" else (msg_ids_of(jobs, self.history) if jobs else [])
        self._hub("purge_request", {"msg_ids": ids, "engine_ids": engine_ids})

    def purge_results(self, jobs=(), targets=()) -> None:
        """``purge_local_results`` and ``purge_hub_results`` with the same arguments."""
        self.purge_local_results(jobs, targets)
        self.purge_hub_results(jobs, targets)

    def purge_everything(self) -> None:
        """Forget every finished result, here and in the hub, and this client's history."""
        self.purge_results("all")
        self.history.clear()

    def engines_info(self) -> list:
        """Registered engines: id, uuid, host, pid, queue/tasks/completed counts, last heartbeat (epoch s).

        A hub that does not answer ``engines_request`` (ipcontroller) is asked for its queue status
        instead: the same counts, with ``host``, ``pid`` and ``last_heartbeat`` unknown (None)."""
        if getattr(self, "_engines_request_refused", False):
            return self._engines_from_queue_status()
        try:
            return self._hub("engines_request", {})["content"]["engines"]
        except RemoteError as e:
            if "engines_request" not in str(e) and "Message Type" not in str(e):
                raise
            self._engines_request_refused = True
            return self._engines_from_queue_status()

    def _engines_from_queue_status(self) -> list:
        counts = self.queue_status()
        uuids = dict(self._engines)
        return [{"id": eid, "uuid": uuids.get(eid), "host": None, "pid": None, "last_heartbeat": None,
                 "queue": c.get("queue", 0), "tasks": c.get("tasks", 0), "completed": c.get("completed", 0)}
                for eid, c in sorted((k, v) for k, v in counts.items() if isinstance(k, int))]

    def health(self) -> dict:
        return self._hub("health_request", {})["content"]

    def engine_metrics(self, targets=None, history: int = 0) -> dict:
        """What our engines report of themselves, as kept by the hub (any thread may ask).

        Returns ``{"interval": s, "engines": {id: {"latest": sample, "history": [sample, ...]}},
        "hosts": {name: {"time", "load1", "cpus", "mem_total", "mem_used"}}}``: the hub's
        reporting interval (0: off), for each engine (``targets``: an id or a list; None: all)
        its latest sample (None for engines that report nothing, such as ipyparallel's) and up
        to ``history`` of its last samples, oldest first (the latest is the last), and the latest figures of their hosts.  A
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
        ``limit`` changed; without ``since`` the newest ``limit`` are listed, after a ``since``
        the oldest ``limit`` (and ``now`` is the last of them), so continuing from ``now``
        still misses nothing: call again at once to read the rest.
        """
        content = self._hub("task_stream_request", {"since": since, "limit": limit})["content"]
        return {"now": content["now"], "tasks": content["tasks"], "truncated": content["truncated"]}


__all__ = ["HubQueries", "msg_ids_of"]
