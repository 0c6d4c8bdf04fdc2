"""``become_dask`` / ``stop_dask`` with our client and engines: a dask scheduler beside the hub, a
worker inside every engine, engines that join later, and a complete teardown."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import psutil
import pytest
from support.procs import Controller, accepts_connections, wait_for

from jupyter_hub_ctl import Client
from jupyter_hub_ctl.client.errors import RemoteError

distributed = pytest.importorskip("distributed", reason="become_dask needs dask.distributed (optional dependency)")
da = pytest.importorskip("dask.array", reason="the reduction test uses dask.array (needs numpy)")

pytestmark = pytest.mark.timeout(240)


def _worker_pids(dc) -> set:
    return set(dc.run(os.getpid).values())


def _scheduler_processes(hub) -> list:
    procs = psutil.Process(hub.controller.proc.pid).children(recursive=True)
    return [p for p in procs if "dask_scheduler" in " ".join(p.cmdline())]


def _worker_threads(rc) -> list:
    return rc[:].apply_sync(lambda: sum(t.name == "hubctl-dask-worker" for t in __import__("threading").enumerate()))


def test_become_dask_runs_dask_arrays_on_the_engines_and_stop_tears_down(fresh_hub):
    hub = fresh_hub(n=2)
    rc = hub.client
    engine_pids = set(rc[:].apply_sync(os.getpid))
    dc = rc.become_dask()
    try:
        address = dc.scheduler.address
        assert address.startswith("tcp://127.0.0.1:")  # where the hub listens, not every interface
        x = da.arange(200_000, chunks=20_000)
        assert int(x.sum().compute()) == sum(range(200_000))
        assert int((x ** 2).mean().compute()) == sum(i * i for i in range(200_000)) // 200_000
        assert _worker_pids(dc) == engine_pids  # the workers run inside the engines
        assert all(w["nthreads"] == 1 for w in dc.scheduler_info()["workers"].values())
        assert rc[:].apply_sync(lambda: type(dask_worker).__name__) == ["Worker", "Worker"]  # noqa: F821
        # the engines keep taking tasks while their workers serve dask
        assert rc.load_balanced_view().map_sync(lambda i: i * 2, range(10)) == list(range(0, 20, 2))

        # an engine that registers later gets a worker too
        (late,) = hub.add_engines(1)
        rc.wait_for_engines(3, timeout=30)
        wait_for(lambda: len(dc.scheduler_info()["workers"]) == 3, 30, "the late engine's worker")
        assert late.pid in _worker_pids(dc)
        assert int(da.ones(30, chunks=10).sum().compute()) == 30
    finally:
        dc.close()
    rc.stop_dask()
    assert not accepts_connections(address), "the scheduler's port is still open after stop_dask"
    assert _worker_threads(rc) == [0, 0, 0]
    assert rc[:].apply_sync(lambda: "dask_worker" in globals()) == [False] * 3
    assert _scheduler_processes(hub) == []

    # and again, from scratch
    dc = rc.become_dask(port=0)
    try:
        assert accepts_connections(dc.scheduler.address) and len(_scheduler_processes(hub)) == 1
        assert int(da.arange(10, chunks=5).sum().compute()) == 45
        assert len(dc.scheduler_info()["workers"]) == 3
    finally:
        dc.close()
        rc.stop_dask()


def test_become_dask_on_some_engines_leaves_later_ones_alone(fresh_hub):
    hub = fresh_hub(n=2)
    rc = hub.client
    first = rc.ids[0]
    dc = rc.become_dask(targets=[first], nthreads=2)
    try:
        [info] = dc.scheduler_info()["workers"].values()
        assert info["nthreads"] == 2
        assert _worker_pids(dc) == {rc[first].apply_sync(os.getpid)}
        hub.add_engines(1)
        rc.wait_for_engines(3, timeout=30)
        # (the hub would have asked the new engine for a worker when it registered, before this
        # client heard of it: by the time the engine answers this task it would have one)
        assert rc[rc.ids[-1]].apply_sync(lambda: "registered") == "registered"
        assert len(dc.scheduler_info()["workers"]) == 1
        assert _worker_threads(rc) == [1, 0, 0]
    finally:
        dc.close()
        rc.stop_dask()


def test_bad_worker_arguments_are_refused_before_anything_starts(fresh_hub):
    rc = fresh_hub(n=1).client
    with pytest.raises(ValueError, match="identifiers"):
        rc.become_dask(**{"not a name": 1})
    with pytest.raises(RemoteError, match="did not start"):
        rc.become_dask(scheduler_args={"no_such_option": 1})


def test_controller_without_distributed_says_so(tmp_path, monkeypatch):
    shim = tmp_path / "shim" / "distributed"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(textwrap.dedent("""\
        raise ModuleNotFoundError("No module named 'distributed'", name="distributed")
    """))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(shim.parent), os.environ.get("PYTHONPATH", "")]))
    controller = Controller(tmp_path / "hub", ["--HubFactory.ip=127.0.0.1"]).start()
    rc = Client(controller.client_file)
    try:
        with pytest.raises(RemoteError, match=r"needs dask.distributed where the controller runs"):
            rc.become_dask()
        rc.stop_dask()  # nothing to stop: still answered
    finally:
        rc.close()
        controller.stop()


def test_our_client_turns_ipyparallel_engines_into_dask_workers(tmp_path):
    pytest.importorskip("ipyparallel", reason="ipyparallel's engines are the peers here")
    controller = Controller(tmp_path / "hub", ["--HubFactory.ip=127.0.0.1"]).start()
    log = open(tmp_path / "ipengines.log", "ab")
    engines = [subprocess.Popen([sys.executable, "-m", "ipyparallel.engine", f"--file={controller.engine_file}"],
                                stdout=log, stderr=subprocess.STDOUT) for _ in range(2)]
    rc = Client(controller.client_file)
    try:
        rc.wait_for_engines(2, timeout=60)
        dc = rc.become_dask()
        try:
            assert int(da.arange(1000, chunks=100).sum().compute()) == 499500
            assert set(dc.run(os.getpid).values()) == {e.pid for e in engines}  # on the kernels' loops
            address = dc.scheduler.address
        finally:
            dc.close()
        rc.stop_dask()
        assert not accepts_connections(address)
    finally:
        rc.close()
        for e in engines:
            e.terminate()
        for e in engines:
            e.wait(15)
        log.close()
        controller.stop()
