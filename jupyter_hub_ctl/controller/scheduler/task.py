"""The load-balancing task scheduler (PROTOCOL.md §11.3).

It runs on the Hub's asyncio loop and talks to the Hub by direct calls
(``monitor.save_task_request`` / ``save_task_destination`` /
``save_task_result``): every message is parsed once, with its content left
packed unless the Hub needs it.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Callable, Optional

from traitlets import Enum, Float, Integer
from traitlets.config import LoggingConfigurable

from ...wire.session import DELIM, WireSession, frame_bytes
from ..errors import engine_died, error_content
from ..intake import accept, reply_type
from .dependency import Dependency, DependencyError
from .prefetch import Durations, task_kind
from .stall import StallWatch

SCHEMES = ("leastload", "lru", "plainrandom", "twobin", "weighted")
NO_DEPENDENCY = Dependency()  # shared by every job without after/follow (never mutated)
ERROR_MD = {"status": "error", "dependencies_met": True}  # metadata of the scheduler's own error replies


class Job:
    """One load-balanced request waiting for, or running on, an engine."""

    __slots__ = (
        "msg_id", "client", "frames", "header", "targets", "after", "follow",
        "retries", "timeout", "blacklist", "timer", "engine", "kind", "sent", "ahead",
    )

    def __init__(self, msg_id, client, frames, header, targets, after, follow, retries, timeout, kind=None):
        self.msg_id = msg_id
        self.client = client  # list of routing frames, or None for hub-originated work
        self.frames = frames  # [sig, header, parent, metadata, content, *buffers]
        self.header = header
        self.targets = targets
        self.after = after
        self.follow = follow
        self.retries = retries
        self.timeout = timeout
        self.blacklist: set = set()
        self.timer = None
        self.engine: Optional[str] = None
        self.kind = kind  # what it runs (see ``task_kind``): tasks of one kind are timed together
        self.sent = 0.0  # loop time it went to its engine
        self.ahead = None  # its expected seconds if it was sent ahead of an engine's running task


def _choose_lru(loads):
    return 0


def _choose_leastload(loads):
    return loads.index(min(loads))


def _choose_plainrandom(loads):
    return random.randrange(len(loads))


def _choose_twobin(loads):
    n = len(loads)
    return min(random.randrange(n), random.randrange(n))


def _choose_weighted(loads):
    weights = [1.0 / (x + 1e-6) for x in loads]
    a, b = random.choices(range(len(loads)), weights=weights, k=2)
    return a if loads[a] <= loads[b] else b


CHOOSERS = {
    "lru": _choose_lru,
    "leastload": _choose_leastload,
    "plainrandom": _choose_plainrandom,
    "twobin": _choose_twobin,
    "weighted": _choose_weighted,
}


class TaskScheduler(LoggingConfigurable):
    """Assigns load-balanced tasks to engines, honouring dependencies."""

    scheme_name = Enum(
        list(SCHEMES),
        default_value="leastload",
        config=True,
        help="How to pick an engine for a task: leastload (fewest outstanding tasks), lru, "
        "plainrandom, twobin (better of two random picks in LRU order) or weighted.",
    )
    hwm = Integer(
        1,
        config=True,
        help="Most tasks outstanding on one engine at a time (0 = no limit). 1 gives the "
        "best balance; larger values hide latency for very short tasks.",
    )
    prefetch = Float(
        0.02,
        config=True,
        help="With hwm=1: seconds of expected work an engine may hold beyond its running task when "
        "its tasks are short (timed by the hub, per function, to take less than this), "
        "so that short tasks do not wait for a round trip through the hub. Tasks not timed yet, "
        "or longer, go one at a time. 0: never send ahead.",
    )
    max_prefetch = Integer(
        16,
        config=True,
        help="With prefetch: most tasks outstanding on one engine at a time.",
    )
    stranded_delay = Float(
        5.0,
        config=True,
        help="Seconds to wait after an engine disappears (its heartbeat stopped) before its "
        "unfinished tasks fail with EngineError or are retried (replies still in flight may "
        "arrive meanwhile).",
    )
    gone_delay = Float(
        0.5,
        config=True,
        help="Like stranded_delay, for an engine known to send nothing more: it unregistered, "
        "or its supervisor (cluster's, or ipyparallel's nanny) saw its process exit. Only "
        "replies already on their way can still come.",
    )
    stall_timeout = Float(
        10.0,
        config=True,
        help="Seconds a load-balanced task may wait with no engine able to run it (none registered, "
        "or every one excluded by its targets, dependencies or earlier failures) before the hub's "
        "health says degraded, naming them. Checked on a slow timer, not per task. 0: never.",
    )

    def __init__(
        self,
        loop,
        session: WireSession,
        client_reader,
        engine_reader,
        monitor,
        drop: Callable = lambda reason, socket=None: None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.loop = loop
        self.session = session
        self.client_reader = client_reader
        self.engine_reader = engine_reader
        self.monitor = monitor
        self.count_error = drop  # drop(reason, socket=None): counted by the Hub
        self._choose = CHOOSERS[self.scheme_name]
        self._hwm = self.hwm  # plain attributes on the hot path (trait access is slow)
        self._log = self.log
        self.engines: "OrderedDict[str, None]" = OrderedDict()  # uuids, least recently used first
        self.loads: dict = {}  # uuid -> outstanding count
        # engines of the previous run a restarted controller expects back (uuids): a task that
        # targets them waits for them instead of failing as impossible, until ``expect`` expires
        self.expected: set = set()
        # engines with room for another task (load < hwm; all if no hwm), in the order they got
        # room: with hwm 1 and leastload or lru, a task without constraints takes the first one
        # (O(1) per task, whatever the number of engines)
        self.free: "OrderedDict[str, None]" = OrderedDict()
        self._first_free = self.hwm == 1 and self.scheme_name in ("leastload", "lru")
        # sending ahead (hwm 1 only): engines running short tasks that may hold more, in the
        # order they got room, and the seconds of work each holds ahead of its running task
        self._prefetch = self.prefetch if self.hwm == 1 else 0.0
        self._max_ahead = max(1, self.max_prefetch)
        self.durations = Durations()
        self.topup: "OrderedDict[str, None]" = OrderedDict()
        self.ahead: dict = {}  # uuid -> seconds of short work it holds (None: a task not short)
        self.last_reply: dict = {}  # uuid -> loop time of its last reply
        self.pending: dict = {}  # uuid -> {msg_id: Job}
        self.stranded: dict = {}  # uuid of a departed engine -> {msg_id: Job}
        self.engine_done: dict = {}  # uuid -> set of msg_ids finished there
        self.engine_failed: dict = {}
        self.all_ids: set = set()
        self.succeeded: set = set()
        self.failed: set = set()
        self.waiting: "OrderedDict[str, Job]" = OrderedDict()  # dependencies met, no engine yet
        self.depending: dict = {}  # msg_id -> Job (unmet ``after``/``follow``)
        self.graph: dict = {}  # dependency msg_id -> set of waiting job ids
        self.dispatched = 0
        self.internal: dict = {}  # msg_id of a hub-made request (send_to_engine) -> (uuid, on_reply)
        self.stall = StallWatch(self, self.stall_timeout, loop)

    # ------------------------------------------------------------------ engines
    def add_engine(self, uuid: str) -> None:
        if uuid in self.loads:
            return
        self.engines[uuid] = None
        self.engines.move_to_end(uuid, last=False)
        self.free[uuid] = None
        self.free.move_to_end(uuid, last=False)
        self.loads[uuid] = 0
        self.ahead[uuid] = 0.0
        self.pending[uuid] = {}
        self.engine_done.setdefault(uuid, set())
        self.engine_failed.setdefault(uuid, set())
        self._schedule()

    def stranded_after(self, gone: bool) -> float:
        """Seconds before the tasks of a departed engine fail (``gone``: it sends nothing more)."""
        return self.gone_delay if gone else self.stranded_delay

    def remove_engine(self, uuid: str, engine_id: int, gone: bool = False) -> None:
        if uuid not in self.loads:
            return
        del self.engines[uuid]
        self.free.pop(uuid, None)
        self.topup.pop(uuid, None)
        del self.loads[uuid]
        self.ahead.pop(uuid, None)
        self.last_reply.pop(uuid, None)
        for msg_id, (target, on_reply) in list(self.internal.items()):
            if target == uuid:
                del self.internal[msg_id]
                on_reply(None)
        stranded = self.pending.pop(uuid, {})
        if stranded:
            self.stranded.setdefault(uuid, {}).update(stranded)
            self.loop.call_later(self.stranded_after(gone), self._fail_stranded, uuid, engine_id)
        self._fail_impossible()
        self._schedule()

    def _fail_stranded(self, uuid: str, engine_id: int) -> None:
        jobs = self.stranded.pop(uuid, {})
        for msg_id, job in list(jobs.items()):
            content = engine_died(engine_id, uuid, msg_id)
            metadata = {"status": "error", "engine": uuid, "dependencies_met": True}
            self._handle_result(job, uuid, content, metadata, None)

    def send_to_engine(self, uuid: str, msg_type: str, content: dict, on_reply: Callable) -> str:
        """Send a request of the hub's own to one engine, outside scheduling and task records (e.g. to
        start a dask worker there); ``on_reply`` gets the reply (``None`` if the engine leaves first)."""
        msg_id, header = self.session.header_bytes(msg_type)
        self.internal[msg_id] = (uuid, on_reply)
        self.engine_reader.send([uuid.encode(), b"hub", *self.session.serialize(msg_type, content, header=header)])
        return msg_id

    # ------------------------------------------------------------------ submissions
    def dispatch_submission(self, raw: list) -> None:
        msg = accept(self.session, raw, 1, self.count_error, "task-client", content=False, answer=self._answer)
        if msg is None:
            return
        idents, parts = msg.idents, msg.frames
        self.submit(msg.msg_id, idents, parts, msg.header, msg.metadata, msg)

    def submit(self, msg_id, client, frames, header, md, msg=None) -> None:
        if msg_id in self.all_ids:
            self.count_error("duplicate-msg-id", "task-client")
            self._reply_error(client, header, "ValueError", f"duplicate msg_id {msg_id!r}", record=False)
            return
        self.all_ids.add(msg_id)
        self.monitor.save_task_request(msg, client, header, md, frames)
        try:
            targets = md.get("targets") or []
            if isinstance(targets, str):
                targets = [targets]
            if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
                raise DependencyError("targets must be a list of engine uuids")
            retries = md.get("retries") or 0
            if not isinstance(retries, int) or retries < 0:
                raise DependencyError("retries must be a non-negative int")
            timeout = md.get("timeout")
            if timeout is not None and not isinstance(timeout, (int, float)):
                raise DependencyError("timeout must be a number of seconds or null")
            after = md.get("after")
            after = Dependency.from_wire(after) if after else NO_DEPENDENCY
            follow = md.get("follow")
            follow = Dependency.from_wire(follow) if follow else NO_DEPENDENCY
        except DependencyError as e:
            self._fail(Job(msg_id, client, frames, header, set(), None, None, 0, None),
                       "InvalidDependency", str(e))
            return
        job = Job(msg_id, client, frames, header, set(targets), after, follow, retries, timeout,
                  task_kind(header, md, frames))
        if after or follow:  # (most jobs have neither: nothing to check)
            for dep in (after, follow):
                if msg_id in dep or not dep.issubset(self.all_ids):
                    unknown = sorted(d for d in dep if d not in self.all_ids or d == msg_id)
                    self._fail(job, "InvalidDependency", f"unknown or self dependency: {unknown[:5]}")
                    return
            if after.unreachable(self.succeeded, self.failed) or follow.unreachable(self.succeeded, self.failed):
                self._fail(job, "ImpossibleDependency", "dependency can no longer be met")
                return
            if after.check(self.succeeded, self.failed):
                job.after = NO_DEPENDENCY
        self._enqueue(job)
        self._schedule()

    def _enqueue(self, job: Job) -> None:
        if job.timeout:
            job.timer = self.loop.call_later(job.timeout, self._on_timeout, job.msg_id)
        if not job.after and not job.follow:
            self.waiting[job.msg_id] = job
            return
        unfinished = [d for d in (job.after | job.follow) if d not in self.succeeded and d not in self.failed]
        if job.after and not job.after.check(self.succeeded, self.failed) or (job.follow and unfinished):
            self.depending[job.msg_id] = job
            for d in unfinished:
                self.graph.setdefault(d, set()).add(job.msg_id)
        else:
            self.waiting[job.msg_id] = job

    def _on_timeout(self, msg_id: str) -> None:
        job = self.waiting.pop(msg_id, None) or self.depending.pop(msg_id, None)
        if job is not None:
            job.timer = None
            self._fail(job, "TaskTimeout", f"task {msg_id} timed out waiting for an engine or its dependencies")
            self._schedule()

    # ------------------------------------------------------------------ scheduling
    def _candidates(self, job: Job, hwm: Optional[int] = None) -> list:
        """Engines that may take ``job`` now (``hwm=0``: leaving their load aside)."""
        if hwm is None:
            if self._first_free and not job.targets and not job.blacklist and not job.follow:
                for uuid in self.free:
                    return [uuid]
                for uuid in self.topup:  # the engine that has had room longest, if the job fits
                    return [uuid] if self._fits(uuid, job) else []
                return []
            hwm = self._hwm
        topup = self.topup
        out = []
        for uuid in self.engines:
            if hwm and self.loads[uuid] >= hwm and not (uuid in topup and self._fits(uuid, job)):
                continue
            if uuid in job.blacklist:
                continue
            if job.targets and uuid not in job.targets:
                continue
            if job.follow and not job.follow.check(self.engine_done[uuid], self.engine_failed[uuid]):
                continue
            out.append(uuid)
        return out

    def expect(self, uuids, seconds: float) -> None:
        """After a restart: these engines may come back within ``seconds``; tasks may wait for them."""
        self.expected = set(uuids)
        if self.expected:
            self.loop.call_later(seconds, self._expect_no_more)

    def _expect_no_more(self) -> None:
        self.expected = set()
        self._fail_impossible()

    def _impossible(self, job: Job) -> Optional[str]:
        if job.targets:
            allowed = job.targets - job.blacklist
            if not allowed.intersection(self.loads) and not allowed.intersection(self.expected):
                return "no allowed target engine is available"
        if job.follow and job.follow.all:
            followed = {u for u in self.engine_done if job.follow & (self.engine_done[u] | self.engine_failed[u])}
            if len(followed) > 1:
                return "followed tasks ran on different engines"
            if followed and not followed.issubset(self.loads):
                return "the engine the followed tasks ran on is gone"
        return None

    def _has_capacity(self) -> bool:
        if self.free:
            return True
        if not self.topup:
            return False
        for job in self.waiting.values():  # the oldest job goes first: only it may be sent ahead
            for uuid in self.topup:
                return self._fits(uuid, job)
        return False

    def _fits(self, uuid: str, job: Job) -> bool:
        """May ``job`` be sent to busy engine ``uuid`` ahead of its running task?"""
        est = self.durations.estimate(job.kind)
        return est is not None and est < self._prefetch and self.ahead[uuid] + est <= self._prefetch

    def _room_changed(self, uuid: str, load: int) -> None:
        """After ``uuid``'s load changed: may it take a task, or a short one ahead of its running task?"""
        if not self._hwm or load < self._hwm:
            if uuid not in self.free:
                self.free[uuid] = None
            self.topup.pop(uuid, None)
            return
        self.free.pop(uuid, None)
        ahead = self.ahead[uuid]
        if self._prefetch and ahead is not None and load < self._max_ahead and ahead < self._prefetch:
            self.topup[uuid] = None
            self.topup.move_to_end(uuid)  # the others' turn first: short tasks spread evenly
        else:
            self.topup.pop(uuid, None)

    def _schedule(self) -> None:
        """Dispatch waiting jobs, oldest first, while any engine has room."""
        while self.waiting and self._has_capacity():
            found = None
            doomed = []
            for job in self.waiting.values():
                cands = self._candidates(job)
                if cands:
                    found = (job, cands)
                    break
                reason = self._impossible(job)
                if reason:
                    doomed.append((job, reason))
            for job, reason in doomed:
                del self.waiting[job.msg_id]
                self._fail(job, "ImpossibleDependency", reason)
            if found is None:
                if not doomed:
                    return
                continue
            del self.waiting[found[0].msg_id]
            self._dispatch(*found)

    def _fail_impossible(self) -> None:
        for msg_id in list(self.waiting):
            job = self.waiting[msg_id]
            reason = self._impossible(job)
            if reason:
                del self.waiting[msg_id]
                self._fail(job, "ImpossibleDependency", reason)

    def _dispatch(self, job: Job, candidates: list) -> None:
        if len(candidates) == 1:
            uuid = candidates[0]
        else:
            loads = [self.loads[u] for u in candidates]
            uuid = candidates[self._choose(loads)]
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None
        load = self.loads[uuid] = self.loads[uuid] + 1
        if self._prefetch:
            job.sent = self.loop.time()
            est = self.durations.estimate(job.kind)
            if load == 1:  # runs at once; only while it is short may more be sent ahead of it
                self.ahead[uuid] = 0.0 if est is not None and est < self._prefetch else None
            else:  # sent ahead (it fit): counts against the engine's prefetch until it replies
                job.ahead = est
                self.ahead[uuid] += est
        if self._hwm and load >= self._hwm:
            self._room_changed(uuid, load)
        self.engines.move_to_end(uuid)
        job.engine = uuid
        self.pending[uuid][job.msg_id] = job
        self.dispatched += 1
        self.engine_reader.send([uuid.encode(), *(job.client or [b"hub"]), DELIM, *job.frames])
        self.monitor.save_task_destination(job.msg_id, uuid)

    # ------------------------------------------------------------------ replies
    def dispatch_result(self, raw: list) -> None:
        msg = accept(self.session, raw, 2, self.count_error, "task-engine")
        if msg is None:
            return
        idents = msg.idents
        uuid = frame_bytes(idents[0]).decode("utf8", "replace")
        parent_id = msg.parent.get("msg_id")
        if self.internal and parent_id in self.internal:
            self.internal.pop(parent_id)[1](msg)
            return
        job = self.pending.get(uuid, {}).get(parent_id) or self.stranded.get(uuid, {}).get(parent_id)
        if job is None:
            client = self.monitor.late_result(parent_id, uuid, msg) if parent_id else None
            if client is not None:  # in flight when the controller restarted: keep the result
                if client:
                    self.client_reader.send([client.encode(), msg.idents[0], DELIM, *msg.frames])
                return
            self.count_error("unexpected-reply", "task-engine")
            return
        self._handle_result(job, uuid, msg.content, msg.metadata, msg)

    def _handle_result(self, job: Job, uuid: str, content, md, msg) -> None:
        jobs = self.pending.get(uuid)
        if jobs is not None:
            jobs.pop(job.msg_id, None)
        jobs = self.stranded.get(uuid)
        if jobs is not None:
            jobs.pop(job.msg_id, None)
        if uuid in self.loads:
            load = self.loads[uuid] = self.loads[uuid] - 1
            if self._prefetch and job.sent:
                self._timed(uuid, job)
            self._room_changed(uuid, load)
        job.engine = None
        if md.get("dependencies_met", True) is False:
            job.blacklist.add(uuid)
            if job.blacklist >= (job.targets or set(self.loads)):  # the allowed engines, or all of them
                self._fail(job, "ImpossibleDependency", "every allowed engine reported unmet dependencies")
            else:
                self._enqueue(job)
            self._schedule()
            return
        status = md.get("status") or (content or {}).get("status")
        if status not in ("ok", "aborted") and job.retries > 0:  # an abort is meant: never retried
            job.retries -= 1
            job.blacklist.add(uuid)
            self._enqueue(job)
            self._schedule()
            return
        if msg is not None and job.client is not None:
            self.client_reader.send([*job.client, msg.idents[0], DELIM, *msg.frames])
        elif msg is None and job.client is not None:
            frames = self.session.serialize(reply_type(job.header), content, parent=job.header, metadata=md)
            self.client_reader.send([*job.client, uuid.encode(), *frames])
        self.monitor.save_task_result(job.msg_id, uuid, msg, content, md)
        self._finished(job.msg_id, status == "ok", uuid)
        self._schedule()

    def _timed(self, uuid: str, job: Job) -> None:
        """A reply from ``uuid``: time its task (from when the engine could start it) and release
        what it held ahead."""
        now = self.loop.time()
        self.durations.add(job.kind, now - max(job.sent, self.last_reply.get(uuid, 0.0)))
        self.last_reply[uuid] = now
        if self.loads[uuid] == 0:
            self.ahead[uuid] = 0.0  # nothing outstanding, nothing held
        elif job.ahead is not None and self.ahead[uuid] is not None:
            self.ahead[uuid] = max(0.0, self.ahead[uuid] - job.ahead)
        job.sent = 0.0
        job.ahead = None

    def _fail(self, job: Job, ename: str, evalue: str) -> None:
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None
        self._reply_error(job.client, job.header, ename, evalue, record=True, msg_id=job.msg_id)
        self._finished(job.msg_id, False, None)

    def _answer(self, client, header: dict, content: dict) -> None:
        """A submission failed or refused by the controller (its error content says why)."""
        self.client_reader.send([*client, *self.session.serialize(reply_type(header), content, parent=header,
                                                                  metadata=ERROR_MD)])

    def _reply_error(self, client, header, ename, evalue, record=True, msg_id=None) -> None:
        content = error_content(ename, evalue)
        if client is not None:
            self._answer(client, header, content)
        if record:
            self.monitor.save_task_result(msg_id, None, None, content, dict(ERROR_MD))

    def _finished(self, msg_id: str, ok: bool, uuid: Optional[str]) -> None:
        (self.succeeded if ok else self.failed).add(msg_id)
        if uuid is not None:
            (self.engine_done if ok else self.engine_failed).setdefault(uuid, set()).add(msg_id)
        dependents = self.graph.pop(msg_id, None)
        if not dependents:
            return
        for dep_id in dependents:
            job = self.depending.get(dep_id)
            if job is None:
                continue
            if job.after.unreachable(self.succeeded, self.failed) or job.follow.unreachable(self.succeeded, self.failed):
                del self.depending[dep_id]
                self._fail(job, "ImpossibleDependency", "a dependency finished with a disallowed outcome")
                continue
            if not job.after.check(self.succeeded, self.failed):
                continue
            unfinished = [d for d in job.follow if d not in self.succeeded and d not in self.failed]
            if job.follow and unfinished and (job.follow.all or not job.follow.check(self.succeeded, self.failed)):
                continue
            del self.depending[dep_id]
            job.after = NO_DEPENDENCY
            self.waiting[dep_id] = job

    def forget(self, msg_ids) -> None:
        """Finished tasks whose records were purged: later dependencies on them are unknown."""
        waiting = set(self.graph)
        for msg_id in msg_ids:
            if msg_id in waiting:
                continue  # something still depends on it; keep its outcome
            self.all_ids.discard(msg_id)
            self.succeeded.discard(msg_id)
            self.failed.discard(msg_id)
        for table in (self.engine_done, self.engine_failed):
            for uuid, done in list(table.items()):
                done.difference_update(msg_ids)
                if not done and uuid not in self.loads:
                    del table[uuid]  # a departed engine with nothing left to remember

    # ------------------------------------------------------------------ status
    def usable_engines(self, job: Job) -> list:
        """Registered engines that could run ``job``, busy or not."""
        return self._candidates(job, hwm=0)

    def queue_counts(self) -> dict:
        return {
            "waiting": len(self.waiting),
            "depending": len(self.depending),
            "running": sum(self.loads.values()),
            "engines": len(self.engines),
        }

