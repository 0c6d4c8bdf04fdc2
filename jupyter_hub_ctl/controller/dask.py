"""``become_dask`` / ``stop_dask``: a dask.distributed scheduler run by the hub, a worker in each engine.

Wire (ipyparallel's): ``become_dask_request {scheduler_args}`` answered ``become_dask_reply
{status, ip, address, port}`` once the scheduler listens; ``stop_distributed_request {}`` answered
``stop_distributed_reply {status}``.  We add to the reply ``dashboard_link`` and ``pid`` (the
scheduler's process), and accept in the request ``worker_args`` and ``nanny`` (how workers of
engines that register later are started; ipyparallel's client sends neither: one thread each,
no nanny) and ``late_engines`` (false: engines that register later get no worker; ipyparallel's
client does not send it: they do).

The scheduler runs in a process beside the controller (``dask_scheduler``): the hub's loop only
waits for its one-line answer, without blocking.  Clients start the workers of the engines they
target (ipyparallel's client by ``apply``, ours by ``execute``); the hub starts one in every
engine that registers while the scheduler runs, and ``stop_distributed_request`` closes every
engine's worker, then the scheduler.  Hub-made requests go to engines through the task
scheduler's engine socket, outside scheduling and task records.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Optional

from traitlets import Float, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from ..engine.dask_worker import start_source, stop_source

EXECUTE = {"silent": True, "store_history": False, "user_expressions": {}, "allow_stdin": False,
           "stop_on_error": False}


class DaskSupport(LoggingConfigurable):
    """The hub's dask scheduler process and the workers it asked engines to start."""

    scheduler_cmd = List(
        Unicode(), default_value=[sys.executable, "-m", "jupyter_hub_ctl.controller.dask_scheduler"], config=True,
        help="Command that runs the hub's dask scheduler (reads its arguments as JSON on stdin).")
    start_timeout = Float(60.0, config=True, help="Seconds the dask scheduler may take to start listening.")
    worker_timeout = Float(
        10.0, config=True,
        help="Seconds the hub waits for an engine to answer a request to start or stop its dask worker "
        "(an engine busy with a task answers when the task ends; a start is sent again, a stop is not waited for).")
    worker_attempts = Integer(3, config=True, help="How many times the hub asks a new engine to start its worker.")

    def __init__(self, hub, **kwargs):
        super().__init__(**kwargs)
        self.hub = hub
        self.proc: Optional[asyncio.subprocess.Process] = None
        self.info: Optional[dict] = None  # the scheduler's address etc. while it runs
        self.worker_args: dict = {"nthreads": 1}
        self.nanny = False
        self.late_engines = True
        self._lock = asyncio.Lock()

    @property
    def running(self) -> bool:
        return self.info is not None and self.proc is not None and self.proc.returncode is None

    # ------------------------------------------------------------------ scheduler
    async def become(self, content: dict) -> dict:
        scheduler_args = content.get("scheduler_args") or {}
        worker_args = content.get("worker_args")
        if not isinstance(scheduler_args, dict) or (worker_args is not None and not isinstance(worker_args, dict)):
            raise TypeError("scheduler_args and worker_args must be dicts of keyword arguments")
        if worker_args is not None:
            start_source("tcp://x", False, worker_args)  # names that can be passed: checked now, not on each engine
            self.worker_args = dict(worker_args)
            self.nanny = bool(content.get("nanny", False))
        self.late_engines = bool(content.get("late_engines", True))
        async with self._lock:
            if not self.running:
                await self._start(dict(scheduler_args))
        return dict(self.info, status="ok")

    def _scheduler_defaults(self, args: dict) -> dict:
        """Listen where the hub listens for engines (not on every interface, as dask would by
        default: a dask scheduler runs whatever code it is sent)."""
        factory = self.hub.parent
        ip = getattr(factory, "engine_ip", "") or getattr(factory, "ip", "") or "127.0.0.1"
        if ip in ("*", "0.0.0.0", ""):
            ip = getattr(factory, "location", "") or ""
        if ip and "host" not in args and "interface" not in args:
            args["host"] = ip
        if ip and "dashboard_address" not in args:
            args["dashboard_address"] = f"{ip}:8787"
        return args

    async def _start(self, scheduler_args: dict) -> None:
        args = self._scheduler_defaults(scheduler_args)
        self.proc = proc = await asyncio.create_subprocess_exec(
            *self.scheduler_cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=None)
        proc.stdin.write(json.dumps(args).encode() + b"\n")
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), self.start_timeout)
            answer = json.loads(line) if line else {"error": f"the scheduler process exited ({await proc.wait()})"}
        except (asyncio.TimeoutError, ValueError) as e:
            answer = {"error": f"no answer from the scheduler process: {e!r}"}
        if "error" in answer:
            await self._end_process()
            error = answer["error"]
            if "No module named 'distributed'" in error or "No module named 'dask'" in error:
                raise RuntimeError("become_dask needs dask.distributed where the controller runs: "
                                   "pip install 'dask[distributed]'")
            raise RuntimeError(f"the dask scheduler did not start: {error}")
        self.info = {k: answer.get(k) for k in ("ip", "address", "port", "dashboard_link", "pid")}
        self.log.info("dask scheduler running at %s (pid %s)", self.info["address"], self.info["pid"])

    async def _end_process(self) -> None:
        proc, self.proc, self.info = self.proc, None, None
        if proc is None:
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()  # the scheduler closes and exits
        try:
            await asyncio.wait_for(proc.wait(), self.worker_timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()

    async def stop(self) -> None:
        """Close every engine's worker (waiting up to ``worker_timeout``), then the scheduler."""
        async with self._lock:
            if self.proc is None:
                return
            futures = [self._ask(ec.uuid, stop_source()) for ec in list(self.hub.engines.values())]
            if futures:
                done, _ = await asyncio.wait(futures, timeout=self.worker_timeout)
                self.log.info("dask workers closed on %d of %d engines", len(done), len(futures))
            await self._end_process()
            self.log.info("dask scheduler stopped")

    # ------------------------------------------------------------------ engines
    def _ask(self, uuid: str, code: str) -> asyncio.Future:
        """Send ``code`` to the engine as an execute_request; the future gets its reply (None if
        the engine left first)."""
        fut = self.hub.loop.create_future()

        def answered(msg) -> None:
            if not fut.done():
                fut.set_result(msg)

        self.hub.scheduler.send_to_engine(uuid, "execute_request", dict(EXECUTE, code=code), answered)
        return fut

    def engine_added(self, ec) -> None:
        """An engine registered while the scheduler runs: give it a worker too."""
        if self.running and self.late_engines:
            self.hub.loop.create_task(self._start_worker(ec.id, ec.uuid))

    async def _start_worker(self, eid: int, uuid: str) -> None:
        code = start_source(self.info["address"], self.nanny, self.worker_args)
        for attempt in range(1, self.worker_attempts + 1):
            try:
                # (a request sent before the engine's shell connection is up is lost: ask again)
                reply = await asyncio.wait_for(self._ask(uuid, code), self.worker_timeout)
            except asyncio.TimeoutError:
                continue
            if reply is None or not self.running:
                return
            content = reply.content or {}
            if content.get("status") == "ok":
                self.log.info("engine %d started its dask worker", eid)
            else:
                self.log.warning("engine %d could not start a dask worker: %s: %s", eid, content.get("ename"),
                                 content.get("evalue"))
            return
        self.log.warning("engine %d did not answer %d requests to start a dask worker", eid, self.worker_attempts)


async def become_dask_request(hub, idents, msg) -> None:
    if hub.dask is None:
        hub.dask = DaskSupport(hub, parent=hub)
    content = await hub.dask.become(msg.content)
    hub._reply(idents, "become_dask_reply", content, parent=msg.header)


async def stop_distributed_request(hub, idents, msg) -> None:
    if hub.dask is not None:
        await hub.dask.stop()
    hub._reply(idents, "stop_distributed_reply", {"status": "ok"}, parent=msg.header)


__all__ = ["DaskSupport", "become_dask_request", "stop_distributed_request"]
