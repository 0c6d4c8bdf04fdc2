"""Engine operations of ``Cluster``: add, wait for, scale, relaunch and signal engines."""

from __future__ import annotations

import asyncio
import time
from typing import Optional

from ..wire.connection import connection_file_paths, read_connection_file
from . import processes, state
from .lifecycle import MIN_ENGINES
from .errors import ClusterError, ControllerExited, EngineStartFailed, HubNotRunning, HubStopping, RegistrationTimeout
from .supervision import LIVE


def _engine_uuids(client) -> set:
    return set(dict(client._engines).values())  # our own Client: id -> uuid of registered engines


class EngineOpsMixin:
    """The engine-facing half of ``Cluster`` (runs on the cluster's loop)."""

    async def add_engines(self, n: int = 1) -> list:
        """Start ``n`` more engines; return the registered engine ids once they have registered."""
        return await self._async(self._op(self._add_engines(n)))

    def add_engines_sync(self, n: int = 1) -> list:
        return self._sync(self._op(self._add_engines(n)))

    async def _op(self, coro, exclusive: bool = True):
        """Run an engine operation once the hub has started, one at a time (``exclusive``).

        A stop cancels it: the caller gets HubStopping, and what it launched is stopped.
        """
        task = asyncio.current_task()
        self._ops.add(task)
        try:
            start = self._start_task
            if start is not None and not start.done():
                await asyncio.wait([start])
            if not exclusive:
                return await coro
            if self._ops_lock is None:
                self._ops_lock = asyncio.Lock()
            async with self._ops_lock:
                return await coro
        except asyncio.CancelledError:
            if self._stop_wanted or self._stopping:
                raise HubStopping(f"hub {self.cluster_id} was stopped meanwhile") from None
            raise
        finally:
            self._ops.discard(task)
            coro.close()  # (a no-op once it ran; never awaited when the hub stopped first)

    async def _ensure_running(self) -> None:
        if self._attached and self._client is None:
            record = self._live_record()
            self._client_info = self._client_info_of(record)
            self._engine_file = state.connection_file(record, "engine") or \
                connection_file_paths(self.profile_dir, self.cluster_id)[1]
            self._engine_info = read_connection_file(self._engine_file)
            engines = record.get("engines") or ()
            self._next_slot = max((e.get("slot", 0) + e.get("count", 1) for e in engines), default=0)
            await self._connect_attached()
        elif self._stop_wanted and not self._stopped:
            raise HubStopping(f"hub {self.cluster_id} is stopping")
        elif not self._started or self._stopping or self._stopped:
            raise HubNotRunning(f"hub {self.cluster_id} is not running")

    async def _connect_attached(self) -> None:
        from .cluster import open_client

        try:
            self._client = await open_client(self._client_info, timeout=10)
        except Exception as e:
            raise HubNotRunning(f"hub {self.cluster_id} does not answer: {e!r}") from None

    async def _add_engines(self, n: int, starting: bool = False) -> list:
        if n < 1:
            raise ValueError("add at least one engine")
        if not starting:
            await self._ensure_running()
        slots = list(range(self._next_slot, self._next_slot + n))
        self._next_slot += n
        before = _engine_uuids(self._client)
        sets = await self._launch(slots)
        try:
            await self._wait_registered(before, n, sets)
        except BaseException:
            if not starting:
                await self._stop_sets(sets)
            raise
        for es in sets:
            es.status = "running"
        self._commit()
        return self._client.ids

    async def _launch(self, slots: list, generation: int = 0) -> list:
        """Launch engines for ``slots`` and record them in ``_sets`` and the state file.

        A cancellation waits for the launch to finish first, so every process it started is
        recorded (and stopped by whoever cancelled).
        """
        launch = asyncio.ensure_future(self._make_launcher().launch(slots, self._engine_info, self._engine_file,
                                                                    generation=generation))
        try:
            await asyncio.shield(launch)
        except asyncio.CancelledError:
            await asyncio.wait([launch])
            raise
        finally:
            if launch.done() and not launch.cancelled() and launch.exception() is None:
                for es in launch.result():
                    es.owner = self._token
                self._sets.extend(launch.result())
                self._commit()
        return launch.result()

    async def _wait_registered(self, before: set, n: int, sets: list, timeout: Optional[float] = None) -> None:
        timeout = self.engine_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            new = len(_engine_uuids(self._client) - before)
            if new >= n:
                return
            if self._controller is not None and self._controller.poll() is not None:
                raise ControllerExited(
                    f"hub {self.cluster_id}: the controller "
                    f"{processes.describe_exit(self._controller.returncode)['reason']} while engines were starting",
                    processes.log_tail(self._controller_log))
            for es in sets:
                finished, code = self._launcher.poll(es)
                if finished:
                    info = self._launcher.describe(es, code)
                    es.status, es.exit = "exited", info
                    raise EngineStartFailed(
                        f"hub {self.cluster_id}: {es.label} {info['reason']} before "
                        f"registering ({new} of {n} registered; log: {es.log})", processes.log_tail(es.log),
                        exit=info)
            if time.monotonic() > deadline:
                tail = processes.log_tail(sets[0].log) if sets else ""
                raise RegistrationTimeout(
                    f"hub {self.cluster_id}: only {new} of {n} engines registered within {timeout:g}s; "
                    f"the engines were running but did not reach the controller at "
                    f"{self._engine_info.get('interface')}:{self._engine_info.get('registration')} "
                    f"(engine logs in {self._launcher.log_dir})", tail)
            await asyncio.sleep(0.05)

    async def _stop_sets(self, sets: list) -> None:
        for es in sets:
            self._pending_restarts.pop(es.slot, None)
            if es.status in LIVE:
                es.status = "stopping"
        await asyncio.gather(*(self._launcher.stop(es, self.stop_timeout) for es in sets), return_exceptions=True)
        for es in sets:
            if es.status == "stopping":
                es.status = "stopped"

    async def wait_for_engines(self, n: Optional[int] = None, timeout: Optional[float] = None) -> list:
        """Wait until ``n`` engines (default: the hub's ``n``) are registered; return their ids."""
        return await self._async(self._op(self._wait_for_engines(n, timeout), exclusive=False))

    def wait_for_engines_sync(self, n: Optional[int] = None, timeout: Optional[float] = None) -> list:
        return self._sync(self._op(self._wait_for_engines(n, timeout), exclusive=False))

    async def _wait_for_engines(self, n, timeout) -> list:
        await self._ensure_running()
        n = self.n if n is None else n
        timeout = self.engine_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while len(self._client.ids) < n:
            if self._controller is not None and self._controller.poll() is not None:
                raise HubNotRunning(f"hub {self.cluster_id}: the controller exited")
            if time.monotonic() > deadline:
                raise RegistrationTimeout(f"hub {self.cluster_id}: {len(self._client.ids)} of {n} engines "
                                          f"registered within {timeout:g}s")
            await asyncio.sleep(0.05)
        return self._client.ids

    async def scale(self, n: int) -> list:
        """Add or stop engines so that ``n`` run (stopping the newest first)."""
        return await self._async(self._op(self._scale(n)))

    def scale_sync(self, n: int) -> list:
        return self._sync(self._op(self._scale(n)))

    async def _scale(self, n: int) -> list:
        if n < MIN_ENGINES:
            raise ValueError(f"cannot scale to fewer than {MIN_ENGINES} engines")
        await self._ensure_running()
        current = self._live_count()
        if self._attached:
            current += sum(e.get("count", 1) for e in self._foreign_engines())
        self.n = n
        self._commit(n=n)  # the requested count shows at once (the panel: "scaling 2 → 3", not "3/2")
        if n > current:
            await self._add_engines(n - current)
        elif n < current:
            excess = current - n
            victims = []
            for es in sorted((s for s in self._sets if s.status in LIVE or s.slot in self._pending_restarts),
                             key=lambda s: s.slot, reverse=True):
                if es.count <= excess:
                    victims.append(es)
                    excess -= es.count
            if excess:
                raise ClusterError(f"hub {self.cluster_id}: cannot stop {excess} more engine(s): the remaining "
                                   "ones are in larger sets or were started by another process")
            await self._stop_sets(victims)
            self._sets = [s for s in self._sets if s not in victims]
            self._event(f"scaled down to {n} engines (stopped slots {sorted(s.slot for s in victims)})", kind="scale")
        self._commit(n=n)
        return self._client.ids

    def _foreign_engines(self) -> list:
        record = state.read_state(self.cluster_id) or {}
        return [e for e in record.get("engines") or ()
                if e.get("owner") != self._token and e.get("status") in LIVE and
                (not e.get("pid") or state.process_status(e) == "alive")]

    async def relaunch_engines(self) -> list:
        """Stop and start again every engine this object launched; return ids once re-registered.

        (The trait ``restart_engines`` switches automatic replacement of dead engines.)"""
        return await self._async(self._op(self._relaunch_all()))

    def relaunch_engines_sync(self) -> list:
        return self._sync(self._op(self._relaunch_all()))

    async def _relaunch_all(self) -> list:
        await self._ensure_running()
        old = [s for s in self._sets if s.status in LIVE or s.slot in self._pending_restarts]
        await self._stop_sets(old)
        before = _engine_uuids(self._client)
        self._sets = [s for s in self._sets if s not in old]
        fresh = []
        for es in old:
            fresh += await self._launch(list(range(es.slot, es.slot + es.count)), generation=es.generation + 1)
        self._event(f"relaunched {sum(s.count for s in fresh)} engines", kind="relaunch")
        self._commit()
        await self._wait_registered(before, sum(s.count for s in fresh), fresh)
        for es in fresh:
            es.status = "running"
        self._commit()
        return self._client.ids

    async def signal_engines(self, sig: int) -> None:
        """Send signal ``sig`` to every engine (through their processes, or through the hub)."""
        return await self._async(self._signal(sig))

    def signal_engines_sync(self, sig: int) -> None:
        return self._sync(self._signal(sig))

    async def _signal(self, sig: int) -> None:
        await self._ensure_running()
        launcher = self._make_launcher()
        own = [es for es in self._sets if es.status in LIVE]
        foreign = self._foreign_engines()
        if all(launcher.can_signal(es) for es in own) and all(e.get("pid") for e in foreign):
            for es in own:
                launcher.signal(es, sig)
            for e in foreign:
                state.signal_proven(e, sig, group=True)
            return
        await asyncio.get_running_loop().run_in_executor(None, lambda: self._client.send_signal(sig, block=True))
