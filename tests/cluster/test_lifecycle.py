"""Stop and scale requests at every moment of a hub's life, through ``Cluster``, the state file
(``background``/``lifecycle``, as the server and the magic use it) and the CLI: a stop always
wins and leaves no process; a scale is refused with the reason once the hub stops."""

from __future__ import annotations

import shlex
import subprocess
import sys
import threading

import pytest
from support.procs import live, recorded_engine_pids, slow_engine_cmd

from jupyter_hub_ctl.cluster import (
    Cluster, HubNotFound, HubNotRunning, HubStopping, StartCancelled, background, list_hubs, state,
)

from .conftest import FAST, wait_for

SLOW = 60.0  # seconds the slow engines take before they register


def launched(hub_id: str, count: int) -> list:
    """Wait until ``count`` engine processes of the hub are recorded in its state file; their pids."""
    def pids():
        found = recorded_engine_pids(hub_id)
        return found if len(found) >= count else None
    return wait_for(pids, 60, f"{count} engine(s) of {hub_id} launched")


def gone(pids) -> bool:
    return not live(pids)


class Starting:
    """``cluster.start_sync()`` in a thread, its outcome kept."""

    def __init__(self, cluster):
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(cluster,))
        self.thread.start()

    def _run(self, cluster):
        try:
            cluster.start_sync()
        except BaseException as e:
            self.error = e

    def join(self, timeout=60):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "start did not return"
        return self.error


def test_stop_during_start_cancels_it(hubenv):
    cluster = Cluster(n=2, cluster_id="slow", controller_args=[FAST], engine_cmd=slow_engine_cmd(SLOW))
    starting = Starting(cluster)
    pids = launched("slow", 2)
    cluster.stop_sync()  # from another thread, while start waits for registrations
    assert isinstance(starting.join(), StartCancelled)
    assert gone(pids) and list_hubs() == [] and hubenv.processes() == []


def test_stop_request_through_the_state_file_during_start(hubenv):
    """What the server, the CLI and the magic do: another tool asks; ``stop`` returns once all is gone."""
    cluster = Cluster(n=2, cluster_id="slowreq", controller_args=[FAST], engine_cmd=slow_engine_cmd(SLOW))
    starting = Starting(cluster)
    pids = launched("slowreq", 2)
    assert background.stop("slowreq") is True
    assert gone(pids) and list_hubs() == [] and hubenv.processes() == []
    error = starting.join()
    assert isinstance(error, StartCancelled) and "stopped while starting" in str(error)
    assert background.stop("slowreq") is False


def test_stop_request_before_the_daemon_adopts_the_hub(hubenv):
    from traitlets.config import Config

    config = Config()
    config.Cluster.cluster_id, config.Cluster.n, config.Cluster.controller_args = "early", 1, [FAST]
    started = background.start(config, owner_role="cli")
    assert background.stop("early") is True  # at once: the daemon may not even run Python yet
    assert started["process"].wait(30) == 0  # it saw the request and launched nothing
    assert list_hubs() == [] and hubenv.processes() == []


def test_scale_request_during_start_is_applied_once_running(hubenv):
    cluster = Cluster(n=1, cluster_id="later", controller_args=[FAST])
    starting = Starting(cluster)
    wait_for(lambda: state.read_state("later"), 30, "the state file")
    background.request_scale("later", 2)
    assert starting.join() is None
    try:
        wait_for(lambda: len(cluster.engine_sets) == 2 and state.read_state("later")["n"] == 2, 60,
                 "the requested second engine")
        with cluster.connect_client_sync() as client:
            client.wait_for_engines(2, timeout=60)
    finally:
        cluster.stop_sync()
    assert hubenv.processes() == []


def test_stop_during_a_scale_wins(hubenv):
    cluster = Cluster(n=1, cluster_id="scaling", controller_args=[FAST])
    cluster.start_sync()
    cluster.launcher.engine_cmd = slow_engine_cmd(SLOW)  # the next engines take long to register
    scaling_error = []
    scaler = threading.Thread(target=lambda: scaling_error.append(_catch(cluster.scale_sync, 3)))
    scaler.start()
    pids = launched("scaling", 3)
    cluster.stop_sync()
    scaler.join(30)
    assert isinstance(scaling_error[0], HubStopping), scaling_error
    assert gone(pids) and list_hubs() == [] and hubenv.processes() == []


def _catch(fn, *args):
    try:
        fn(*args)
    except Exception as e:
        return e
    return None


def test_scale_requests_are_refused_once_the_hub_stops(hubenv):
    with pytest.raises(HubNotFound):
        background.request_scale("nohub", 2)
    cluster = Cluster(n=1, cluster_id="ref", controller_args=[FAST])
    cluster.start_sync()
    try:
        record = background.request_scale("ref", 1)
        assert record["scale_requested"] == 1
        background.request_stop("ref")
        with pytest.raises(HubStopping, match="hub ref is stopping"):
            background.request_scale("ref", 2)
        assert cluster._ended.wait(30)
    finally:
        cluster.stop_sync()
    crashed = Cluster(n=1, cluster_id="dead", controller_args=[FAST], controller_restarts=0)
    crashed.start_sync()
    crashed._controller.kill()
    assert crashed._ended.wait(30)
    with pytest.raises(HubNotRunning, match="not running") as info:
        background.request_scale("dead", 2)
    assert not isinstance(info.value, HubStopping)
    assert background.stop("dead") is True and list_hubs() == []
    assert hubenv.processes() == []


def test_cli_stop_during_cli_start(hubenv):
    h = hubenv
    cmd = [sys.executable, "-m", "jupyter_hub_ctl.cli", "start", "-n", "2", "--id", "clislow",
           f"--controller-args={FAST}", f"--engine-cmd={shlex.join(slow_engine_cmd(SLOW))}"]
    start = subprocess.Popen(cmd, env=h.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pids = launched("clislow", 2)
        stopped = h.cli("stop", "clislow")
        assert stopped.returncode == 0, stopped.stderr
        out, err = start.communicate(timeout=60)
    finally:
        if start.poll() is None:
            start.kill()
    assert start.returncode != 0 and "stopped while starting" in err, err
    assert gone(pids) and list_hubs() == [] and h.processes() == []
