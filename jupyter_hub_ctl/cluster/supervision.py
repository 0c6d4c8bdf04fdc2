"""Watching a running hub: engine deaths (reported, and replaced with a budget and backoff),
controller exit, and stop requests other tools leave in the hub's state file."""

from __future__ import annotations

import asyncio
import time

from . import processes
from .errors import HubNotRunning
from .launchers.base import EngineSet
from .state import add_event, read_state, update_state

LIVE = ("starting", "running")


class SupervisionMixin:
    """The part of ``Cluster`` that runs on its loop while the hub is up."""

    async def _supervise(self) -> None:
        while not self._stopping:
            try:
                await asyncio.sleep(self.supervise_interval)
                if self._stopping:
                    return
                if self._controller is not None and self._controller.poll() is not None:
                    if not await self._on_controller_exit():
                        return
                    continue
                changed = False
                for es in list(self._sets):
                    if es.status in LIVE:
                        finished, code = self._launcher.poll(es)
                        if finished:
                            self._on_engine_exit(es, code)
                            changed = True
                        elif es.status == "starting" and time.time() - es.started > 1.0:
                            es.status = "running"
                now = time.monotonic()
                for slot, due in sorted(self._pending_restarts.items()):
                    if now >= due:
                        del self._pending_restarts[slot]
                        await self._relaunch(slot)
                        changed = True
                if changed:
                    self._commit()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # supervision must outlive any one bad tick
                self.log.error("hub %s: supervision error: %r", self.cluster_id, e)

    # ------------------------------------------------------------ requests (see lifecycle)
    async def _watch_requests(self) -> None:
        """Carry out the stop and scale requests other tools write into the hub's state file.

        Runs from the start of ``start`` on: a stop request cancels the start (or a scale in
        progress) and stops everything; a scale request is taken up once the hub runs and
        no other requested scale is in progress.
        """
        scaling = None
        while not self._stopping:
            try:
                record = read_state(self.cluster_id)
                if record and record.get("stop_requested"):
                    self.log.info("hub %s: stop requested through its state file", self.cluster_id)
                    asyncio.ensure_future(self._stop())
                    return
                idle = scaling is None or scaling.done()
                if record and record.get("scale_requested") is not None and self._supervisor is not None and idle:
                    n = self._take_scale_request()
                    if n is not None:
                        scaling = asyncio.ensure_future(self._requested_scale(n))
            except (OSError, ValueError) as e:  # an unreadable state file: look again next time
                self.log.warning("hub %s: reading requests from the state file failed: %s", self.cluster_id, e)
            await asyncio.sleep(self.supervise_interval)

    def _take_scale_request(self):
        """Remove the scale request from the state file and return it (None if another tool took it)."""
        taken = []

        def take(record):
            taken.append(record.get("scale_requested"))
            record["scale_requested"] = None

        update_state(self.cluster_id, take)
        return taken[0] if taken else None

    async def _requested_scale(self, n) -> None:
        self.log.info("hub %s: scaling to %s engines as requested through its state file", self.cluster_id, n)
        try:
            await self._op(self._scale(int(n)))
        except HubNotRunning:
            return  # stopped meanwhile: the stop wins
        except Exception as e:
            self.log.error("hub %s: requested scale to %s failed: %s", self.cluster_id, n, e)
            self._event(f"scale to {n} failed: {e}", kind="error")
            self._commit()

    def _stop_requested(self) -> bool:
        try:
            record = read_state(self.cluster_id)
        except ValueError:
            return False
        return bool(record and record.get("stop_requested"))

    # ------------------------------------------------------------ engines
    def _on_engine_exit(self, es: EngineSet, code) -> None:
        info = self._launcher.describe(es, code)
        es.status = "exited"
        es.exit = info
        message = f"{es.label} {info['reason']}"
        tail = processes.log_tail(es.log, 5)
        self.log.warning("hub %s: %s", self.cluster_id, message)
        self._event(message, kind="engine_exit", slot=es.slot, pid=es.pid, exit=info, log=es.log, log_tail=tail)
        if not self.restart_engines:
            return
        if code == 0:
            self._event(f"slot {es.slot} not restarted: the engine exited normally (it was asked to shut down)",
                        kind="restart_skipped", slot=es.slot)
            return
        if not self._launcher.restartable:
            self._event(f"slot {es.slot} not restarted: the {self.engine_launcher} launcher cannot restart "
                        "single engines", kind="restart_skipped", slot=es.slot)
            return
        if es.restarts >= self.restart_limit:
            self._event(f"slot {es.slot} not restarted: restart budget of {self.restart_limit} used up",
                        kind="restart_skipped", slot=es.slot)
            return
        ran = time.time() - es.started
        streak = 0 if ran >= self.restart_reset_seconds else es.streak + 1
        es.streak = streak
        delay = min(self.restart_backoff * (2 ** max(0, streak - 1)), self.restart_backoff_max)
        self._pending_restarts[es.slot] = time.monotonic() + delay
        self._event(f"restarting slot {es.slot} in {delay:.1f}s (restart {es.restarts + 1} of {self.restart_limit})",
                    kind="restart_scheduled", slot=es.slot, delay=delay)

    async def _relaunch(self, slot: int) -> None:
        old = next((es for es in self._sets if es.slot == slot), None)
        if old is None or self._stopping:
            return
        try:
            new_sets = await self._launch([slot], generation=old.generation + 1)
        except Exception as e:
            self._event(f"restarting slot {slot} failed: {e}", kind="restart_failed", slot=slot)
            return
        for es in new_sets:
            es.restarts = old.restarts + 1
            es.streak = old.streak
        self._sets.remove(old)
        pids = ", ".join(str(es.pid) for es in new_sets if es.pid)
        self._event(f"slot {slot} restarted (pid {pids})", kind="engine_restarted", slot=slot,
                    pids=[es.pid for es in new_sets])

    # ------------------------------------------------------------ controller
    async def _on_controller_exit(self) -> bool:
        """The controller process ended: start it again after a crash (True), or end the hub."""
        code = self._controller.returncode
        info = processes.describe_exit(code)
        if code == 0:
            message = "controller exited normally (shut down by a client or signal)"
            state, error = "stopped", None
        else:
            message = f"controller {info['reason']}"
            state, error = "failed", message + "\n" + processes.log_tail(self._controller_log, 15)
        self.log.warning("hub %s: %s", self.cluster_id, message)
        if code != 0 and not self._stopping and self._controller_restarts_used < self.controller_restarts:
            self._controller_restarts_used += 1
            n, limit = self._controller_restarts_used, self.controller_restarts
            self._event(f"{message}; starting it again with --restore ({n} of {limit})",
                        kind="controller_restart", exit=info)
            try:
                await self._start_controller(restore=True)
            except Exception as e:
                error = f"{message}; starting it again failed: {e}"
                self._event(error, kind="controller_exit", exit=info)
                await self._shutdown_processes("failed", error)
                return False
            self._event(f"controller running again (pid {self._controller.pid}); engines are taken back "
                        "under their ids", kind="controller_restarted")
            self._commit()
            return True
        self._event(message, kind="controller_exit", exit=info)
        await self._shutdown_processes(state, error)
        return False

    def _event(self, message: str, **fields) -> None:
        self._events.append(add_event({"events": []}, message, **fields))
