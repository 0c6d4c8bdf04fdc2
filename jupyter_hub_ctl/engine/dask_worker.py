"""A ``dask.distributed`` worker inside an engine, for ``become_dask``.

In our engines the worker runs in a thread of its own with its own event loop, so it serves
the dask scheduler while the engine runs tasks (the engine's main thread blocks in user code).
ipyparallel's engines run it on their kernel's event loop, as ipyparallel does.

The hub and the clients start and stop workers with ``execute_request``s of the code
``start_source`` and ``stop_source`` build: the same code works on both kinds of engine, and
needs nothing but ``distributed`` on an ipyparallel engine.  Nothing here imports ``distributed``
until a worker starts (it is an optional dependency).
"""

from __future__ import annotations

import asyncio
import keyword
import logging
import sys
import threading
from typing import Optional

log = logging.getLogger("jupyter_hub_ctl.engine")

START_TIMEOUT = 60.0  # seconds a worker may take to reach its scheduler
STOP_TIMEOUT = 10.0

_START = '''\
def __hubctl_dask_worker(address, nanny, kwargs):
    shell = get_ipython()
    if getattr(shell, "kernel", None) is None:  # one of our engines: a worker thread of its own
        from jupyter_hub_ctl.engine.dask_worker import start_worker
        start_worker(address, nanny, **kwargs)
        return
    import asyncio
    from distributed import Nanny, Worker
    if getattr(shell.kernel, "distributed_worker", None) is None:  # ipyparallel's: its kernel's loop
        worker = (Nanny if nanny else Worker)(address, **kwargs)
        shell.kernel.distributed_worker = worker
        shell.user_ns["dask_worker"] = shell.user_ns["distributed_worker"] = worker
        asyncio.ensure_future(worker.start())
try:
    __hubctl_dask_worker({address!r}, {nanny!r}, {kwargs!r})
finally:
    del __hubctl_dask_worker
'''

_STOP = '''\
def __hubctl_dask_stop():
    shell = get_ipython()
    if getattr(shell, "kernel", None) is None:
        from jupyter_hub_ctl.engine.dask_worker import stop_worker
        stop_worker()
        return
    import asyncio
    worker = getattr(shell.kernel, "distributed_worker", None)
    shell.kernel.distributed_worker = None
    for name in ("dask_worker", "distributed_worker"):
        if name in shell.user_ns and shell.user_ns[name] is worker:
            del shell.user_ns[name]
    if worker is not None:
        asyncio.ensure_future(worker.close())
try:
    __hubctl_dask_stop()
finally:
    del __hubctl_dask_stop
'''


def start_source(address: str, nanny: bool, worker_args: dict) -> str:
    """Code that starts a worker for the scheduler at ``address`` on the engine that runs it
    (nothing if it has one).  ``worker_args`` go to ``distributed.Worker`` (JSON values)."""
    for name in worker_args:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(f"worker argument names must be identifiers, not {name!r}")
    return _START.format(address=str(address), nanny=bool(nanny), kwargs=dict(worker_args))


def stop_source() -> str:
    """Code that stops the engine's worker (nothing if it has none)."""
    return _STOP


class _WorkerThread:
    """A Worker (or Nanny) on an event loop in its own thread."""

    def __init__(self, address: str, nanny: bool, kwargs: dict):
        self.target = address
        self.nanny = nanny
        self.kwargs = kwargs
        self.worker = None
        self.error: Optional[BaseException] = None
        self.ready = threading.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self.thread = threading.Thread(target=self._run, name="hubctl-dask-worker", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # noqa: B036 - reported to start(); the thread ends
            self.error = self.error or e
        finally:
            self.ready.set()

    async def _main(self) -> None:
        from distributed import Nanny, Worker

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.worker = await (Nanny if self.nanny else Worker)(self.target, **self.kwargs)
        self.ready.set()
        await self._stop.wait()
        await self.worker.close()

    def start(self, timeout: float) -> None:
        self.thread.start()
        if not self.ready.wait(timeout):
            self.stop(STOP_TIMEOUT)
            raise TimeoutError(f"the dask worker did not reach the scheduler at {self.target} within {timeout:g}s")
        if self.error is not None:
            raise self.error

    def alive(self) -> bool:
        return self.thread.is_alive() and self.error is None

    def stop(self, timeout: float) -> None:
        if self._loop is not None and self._stop is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # its loop has ended already
                pass
        self.thread.join(timeout)


_runner: dict = {}  # "current": the _WorkerThread of this engine


def _logs_to_real_stderr() -> None:
    """distributed's log handler writes to the ``sys.stderr`` it found when first imported: in an
    engine that may be the stream carrying a task's output to its client.  Its messages belong in
    the engine's log."""
    for handler in logging.getLogger("distributed").handlers:
        if type(handler) is logging.StreamHandler and handler.stream is not sys.__stderr__:
            handler.setStream(sys.__stderr__)


def start_worker(address: str, nanny: bool = False, **kwargs) -> str:
    """Start this engine's dask worker for the scheduler at ``address`` (keyword arguments go to
    ``distributed.Worker``); returns its address once it has joined the scheduler.  An engine
    has one worker: while it runs, this returns its address."""
    current = _runner.get("current")
    if current is not None and current.alive() and current.target == address:
        return current.worker.address
    if current is not None:  # a worker of an earlier scheduler
        stop_worker()
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ImportError("become_dask needs dask.distributed on the engines: pip install 'dask[distributed]'") \
            from None
    _logs_to_real_stderr()
    runner = _WorkerThread(address, nanny, kwargs)
    runner.start(START_TIMEOUT)
    _runner["current"] = runner
    from .executor import current_namespace

    ns = current_namespace()
    ns["dask_worker"] = ns["distributed_worker"] = runner.worker
    log.info("dask worker %s joined the scheduler at %s", runner.worker.address, address)
    return runner.worker.address


def stop_worker() -> bool:
    """Close this engine's dask worker; False if it had none."""
    runner = _runner.pop("current", None)
    if runner is None:
        return False
    from .executor import current_namespace

    ns = current_namespace()
    for name in ("dask_worker", "distributed_worker"):
        if ns.get(name) is runner.worker:
            del ns[name]
    runner.stop(STOP_TIMEOUT)
    return True


__all__ = ["start_source", "stop_source", "start_worker", "stop_worker"]
