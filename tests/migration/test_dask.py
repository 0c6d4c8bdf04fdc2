"""Dask on the engines, as ipyparallel's tutorial shows it: ``become_dask``, a ``dask.array``
reduction and a ``map``/``gather`` through the returned ``distributed.Client``, then ``stop_dask`` —
the same code on both stacks, the same results."""

import os

import pytest

distributed = pytest.importorskip("distributed", reason="become_dask needs dask.distributed (optional dependency)")
da = pytest.importorskip("dask.array", reason="the reduction uses dask.array (needs numpy)")

pytestmark = pytest.mark.timeout(240)


def test_become_dask_then_a_dask_array_reduction(rc):
    engine_pids = set(rc[:].apply_sync(os.getpid))
    dc = rc.become_dask()
    try:
        dc.wait_for_workers(len(engine_pids), timeout=60)
        assert int(da.arange(200_000, chunks=20_000).sum().compute()) == sum(range(200_000))
        assert dc.gather(dc.map(abs, range(-10, 10))) == [abs(x) for x in range(-10, 10)]
        assert set(dc.run(os.getpid).values()) == engine_pids  # the workers live inside the engines
    finally:
        dc.close()
        rc.stop_dask()
    assert rc[:].apply_sync(lambda: "still an engine") == ["still an engine"] * len(engine_pids)
