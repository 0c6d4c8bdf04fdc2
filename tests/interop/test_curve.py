"""CurveZMQ with ipyparallel's settings: stock clients and engines on an encrypting hub, and a
stock Cluster asking for encryption."""

import json
import os

import ipyparallel as ipp
import pytest

from .harness import IS_REFERENCE, PING_MS, alive, cluster_config, kill_leftovers, scaled, wait_for

pytestmark = pytest.mark.timeout(180)

#: how each controller is asked for encryption on its command line
CURVE_ARGS = ["--IPController.enable_curve=True"] if IS_REFERENCE else ["--enable-curve"]


def whoami():
    return os.getpid()


def square(x):
    return x * x


def test_stock_client_and_engines_work_on_an_encrypting_hub(hub_factory):
    hub = hub_factory(args=CURVE_ARGS)
    info = hub.connection_info("client")
    assert info["curve_serverkey"] and hub.connection_info("engine")["curve_serverkey"] == info["curve_serverkey"]
    hub.start_engines(2)
    client = hub.connect(n_engines=2)
    assert client.curve_serverkey == info["curve_serverkey"].encode()
    assert client[:].map_sync(square, range(10)) == [x * x for x in range(10)]
    assert client.load_balanced_view().map_sync(square, range(10), chunksize=2) == [x * x for x in range(10)]
    assert sorted(client.broadcast_view().apply_sync(whoami)) == sorted(p.pid for p in hub.engines)
    client[:].push({"a": b"x" * 1_000_000}, block=True)
    assert [len(v) for v in client[:].pull("a", block=True)] == [1_000_000, 1_000_000]
    assert len(client.db_query({"msg_id": {"$ne": None}}, keys=["msg_id"])) > 0


def test_a_cluster_asking_for_curve_gets_an_encrypting_controller(tmp_path):
    """IPP_ENABLE_CURVE=1, the way ipyparallel's own tests ask for it."""
    config = cluster_config({"IPP_ENABLE_CURVE": "1"})
    cluster = ipp.Cluster(controller_launcher_class="local", engine_launcher_class="local",
                          profile_dir=str(tmp_path / "profile_curve"), cluster_id="interop-curve", n=2, delay=0,
                          controller_args=[f"--ping={PING_MS}"], engine_timeout=int(scaled(30)), load_profile=False,
                          shutdown_atexit=False, config=config)
    processes = []
    client = None
    try:
        client = cluster.start_and_connect_sync()
        processes = [cluster.controller.process]
        for engine_set in cluster.engines.values():
            processes += [launcher.process for launcher in engine_set.launchers.values()]
        security = tmp_path / "profile_curve" / "security"
        for kind in ("client", "engine"):
            assert json.loads((security / f"ipcontroller-interop-curve-{kind}.json").read_text())["curve_serverkey"]
        assert client.curve_serverkey
        assert client.load_balanced_view().map_sync(square, range(6)) == [x * x for x in range(6)]
        client.close()
        client = None
        cluster.stop_cluster_sync()
        wait_for(lambda: not alive(processes), 20, "every cluster process to exit")
    finally:
        if client is not None:
            client.close()
        kill_leftovers(processes)
