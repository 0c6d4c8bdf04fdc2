"""A private asyncio loop in a daemon thread: the Cluster's coroutines run there.

The public async methods await them from any loop (a notebook's, an application's); the
``*_sync`` twins block on them from plain code.  Supervision keeps running on this loop
whatever the caller does with its own.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Optional


class LoopThread:
    def __init__(self, name: str = "hubctl-cluster"):
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive() and not self.loop.is_closed()

    def in_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def run(self, coro, timeout: Optional[float] = None):
        """Run ``coro`` on the loop and wait for its result; Ctrl-C cancels it and waits for its cleanup."""
        if self.in_thread():
            coro.close()
            raise RuntimeError("a *_sync method was called from the cluster's own loop; await the async one")
        finished = threading.Event()

        async def wrapper():
            try:
                return await coro
            finally:
                finished.set()

        fut = asyncio.run_coroutine_threadsafe(wrapper(), self.loop)
        try:
            return fut.result(timeout)
        except KeyboardInterrupt:
            fut.cancel()
            finished.wait(60)
            raise

    async def arun(self, coro):
        """Await ``coro`` running on this loop from another loop (or directly when already on it)."""
        if self.in_thread():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def spawn(self, coro) -> "asyncio.Future":
        """Start ``coro`` as a task on the loop without waiting for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        if self.alive:
            self.loop.call_soon_threadsafe(self.loop.stop)
            if not self.in_thread():
                self.thread.join(5)
