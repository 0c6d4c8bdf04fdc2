"""ipyparallel's ``Client.become_dask`` / ``stop_dask`` with ipyparallel engines (PROTOCOL.md §7:
``become_dask_request``, ``stop_distributed_request``)."""

import os

import pytest
from support.procs import accepts_connections

from .harness import scaled, wait_for

distributed = pytest.importorskip("distributed", reason="become_dask needs dask.distributed (optional dependency)")
da = pytest.importorskip("dask.array", reason="the reduction uses dask.array (needs numpy)")

pytestmark = pytest.mark.timeout(240)


def test_ipyparallel_client_becomes_dask_and_stops(hub_factory):
    hub = hub_factory(n_engines=2)
    client = hub.connect(n_engines=2)
    engine_pids = set(client[:].apply_sync(os.getpid))
    dc = client.become_dask()
    try:
        dc.wait_for_workers(2, timeout=scaled(60))
        assert int(da.arange(100_000, chunks=10_000).sum().compute()) == sum(range(100_000))
        assert set(dc.run(os.getpid).values()) == engine_pids  # workers inside the engines
    finally:
        dc.close()
    client.stop_dask()  # (the reference leaves its scheduler listening: it never awaits its close)
    assert client[:].apply_sync(lambda: 1) == [1, 1]


@pytest.mark.ours_only
def test_engine_registering_later_gets_a_worker_and_stop_closes_everything(hub_factory):
    hub = hub_factory(n_engines=1)
    client = hub.connect(n_engines=1)
    dc = client.become_dask()
    address = dc.scheduler.address
    try:
        dc.wait_for_workers(1, timeout=scaled(60))
        (late,) = hub.start_engines(1)
        dc.wait_for_workers(2, timeout=scaled(60))
        assert late.pid in set(dc.run(os.getpid).values())
        assert int(da.ones(40, chunks=10).sum().compute()) == 40
    finally:
        dc.close()
    client.stop_dask()
    wait_for(lambda: not accepts_connections(address), 10, "the scheduler's port to close")
    # every worker closed with the scheduler: ipyparallel's own stop on the engines finds none
    assert client[:].apply_sync(lambda: __import__("IPython").get_ipython().kernel.distributed_worker) == [None, None]
