"""A joblib parallel backend running joblib's batches as load-balanced tasks.

``lview.register_joblib_backend()`` (name ``'ipyparallel'``, as in ipyparallel) makes
``joblib.parallel_backend('ipyparallel')`` and scikit-learn's ``n_jobs`` run on the hub's
engines.  joblib is an optional dependency: it is imported only here.
"""

from __future__ import annotations

from joblib.parallel import AutoBatchingMixin, ParallelBackendBase, register_parallel_backend


class HubBackend(AutoBatchingMixin, ParallelBackendBase):
    """joblib backend over a LoadBalancedView: one task per batch, results through callbacks.

    ``effective_n_jobs`` is the number of engines the view can use (whatever ``n_jobs`` asks);
    an exception in one batch aborts the batches not yet started (``abort_everything``).
    """

    supports_retrieve_callback = True  # results come back through the AsyncResults' callbacks
    supports_timeout = True
    uses_threads = False
    supports_sharedmem = False

    def __init__(self, view, **kwargs):
        super().__init__(**kwargs)
        self._view = view
        self._pending: set = set()

    def effective_n_jobs(self, n_jobs) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        return max(1, len(self._view))

    def submit(self, func, callback=None):
        ar = self._view.apply_async(func)
        self._pending.add(ar)
        ar.add_done_callback(self._pending.discard)
        if callback is not None:
            ar.add_done_callback(callback)
        return ar

    def retrieve_result_callback(self, out):
        return out.get()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        pending = [ar for ar in list(self._pending) if not ar.done()]
        if pending:
            self._view.client.abort([m for ar in pending for m in ar.msg_ids], block=False)


def register(view, name: str = "ipyparallel", make_default: bool = False) -> None:
    """Register ``view`` as joblib backend ``name``."""
    register_parallel_backend(name, lambda nesting_level=None, **kw: HubBackend(view, nesting_level=nesting_level,
                                                                                   **kw), make_default=make_default)


__all__ = ["HubBackend", "register"]
