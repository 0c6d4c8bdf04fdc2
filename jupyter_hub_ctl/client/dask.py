"""``Client.become_dask`` / ``stop_dask``: the hub's engines as a dask.distributed cluster."""

from __future__ import annotations

from ..engine.dask_worker import start_source

WORKER_TIMEOUT = 60.0  # seconds the engines' workers may take to join the scheduler


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ImportError("become_dask needs dask.distributed: pip install 'dask[distributed]'") from None
    return distributed


class DaskMixin:
    """Mixin of ``Client``."""

    def become_dask(self, targets=None, port: int = 0, nanny: bool = False, scheduler_args=None, **worker_args):
        """Turn the engines into a dask.distributed cluster; return a ``distributed.Client`` on it.

        The hub starts a ``distributed.Scheduler`` (on ``port``, default any free one;
        ``scheduler_args`` go to its constructor), then every target engine (default: all)
        starts a ``distributed.Worker`` inside itself (a ``distributed.Nanny`` with ``nanny``;
        ``worker_args`` go to its constructor, ``nthreads=1`` unless given).  With all engines
        as targets (even none yet), engines that register later get a worker too.  Works with ipyparallel's
        engines as well.  Unlike ipyparallel's, the scheduler runs in a process beside the
        controller (not in its event loop), listens where the hub listens for engines, and
        ``port`` is honoured; the returned client has waited for the workers to join.
        """
        distributed = _distributed()
        scheduler_args = dict(scheduler_args or {})
        if port:
            scheduler_args["port"] = int(port)
        worker_args.setdefault("nthreads", 1)
        everywhere = targets is None or targets == "all"
        ids = list(self.ids) if everywhere else self._resolve_targets(targets)  # (no engines yet: they come later)
        start_source("tcp://", nanny, worker_args)  # (checks the argument names before anything starts)
        content = {"scheduler_args": scheduler_args, "worker_args": worker_args, "nanny": bool(nanny),
                   "late_engines": everywhere}
        info = self._hub("become_dask_request", content, timeout=WORKER_TIMEOUT + 30)["content"]
        if ids:
            code = start_source(info["address"], nanny, worker_args)
            self.direct_view(ids).execute(code, silent=True, block=False).get(WORKER_TIMEOUT)
        client = distributed.Client(info["address"])
        try:
            client.wait_for_workers(len(ids), timeout=WORKER_TIMEOUT)
        except BaseException:
            client.close()
            raise
        return client

    def stop_dask(self, targets="all") -> None:
        """Close the dask workers of the engines and the hub's scheduler (``become_dask`` undone).

        ``targets`` is accepted for ipyparallel's signature; every engine's worker is closed.
        """
        self._hub("stop_distributed_request", {}, timeout=60)

    become_distributed = become_dask
    stop_distributed = stop_dask


__all__ = ["DaskMixin"]
