"""ipyparallel.Cluster launching the selected controller (PROTOCOL.md §13.1)."""


import ipyparallel as ipp
import psutil
import pytest
from .harness import (
    CONTROLLER_KIND,
    PING_MS,
    alive,
    kill_leftovers,
    cluster_config,
    controller_command,
    scaled,
    wait_for,
)

pytestmark = pytest.mark.timeout(180)

T = scaled(30)


def square(x):
    return x * x


def _tree(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return [process]


def test_cluster_starts_selected_controller_runs_work_and_stops_everything(tmp_path):
    config = cluster_config()
    profile_dir = tmp_path / "profile_cluster"
    cluster = ipp.Cluster(
        controller_launcher_class="local",
        engine_launcher_class="local",
        profile_dir=str(profile_dir),
        cluster_id="interop-cluster",
        n=2,
        delay=0,
        controller_args=[f"--ping={PING_MS}", "--log-level=10"],
        engine_timeout=int(T),
        load_profile=False,
        shutdown_atexit=False,
        config=config,
    )
    processes: list[psutil.Process] = []
    client = None
    try:
        client = cluster.start_and_connect_sync()
        controller = cluster.controller.process
        assert controller.cmdline()[: len(controller_command())] == controller_command(), (
            f"Cluster did not run the {CONTROLLER_KIND} controller: {controller.cmdline()}"
        )
        processes += _tree(controller)
        for engine_set in cluster.engines.values():
            for launcher in engine_set.launchers.values():
                processes += _tree(launcher.process)
        assert len(client.ids) == 2

        assert client[:].map_sync(square, range(10)) == [x * x for x in range(10)]
        lview = client.load_balanced_view()
        assert lview.map_sync(square, range(10), chunksize=2) == [x * x for x in range(10)]

        security = profile_dir / "security"
        assert (security / "ipcontroller-interop-cluster-client.json").exists()
        client.close()
        client = None
        cluster.stop_cluster_sync()
        wait_for(lambda: not alive(processes), 20, "every cluster process to exit")
        assert not (security / "ipcontroller-interop-cluster-client.json").exists()
        assert not (security / "ipcontroller-interop-cluster-engine.json").exists()
    finally:
        if client is not None:
            client.close()
        kill_leftovers(processes)
