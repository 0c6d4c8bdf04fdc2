"""An engine killed under a ``Cluster``: its supervisor tells the hub at once, and the tasks that
were running or queued on it fail with EngineError (or are retried) within a couple of seconds,
not after the ~11 heartbeat periods the hub would otherwise wait for."""

from __future__ import annotations

import os
import signal
import time

import pytest

from jupyter_hub_ctl.client.errors import EngineError
from jupyter_hub_ctl.cluster import Cluster

from .conftest import wait_for

#: heartbeat every second: without the supervisor's report the hub would notice the death
#: after more than 10 s (10 missed periods), and fail its tasks 5 s later still
SLOW_HEART = "--ping=1000"
BOUND = 2.5  # seconds from the kill to the end of the killed engine's tasks


def test_killed_engine_fails_or_retries_its_tasks_within_seconds(hubenv, tmp_path):
    cluster = Cluster(n=2, controller_args=[SLOW_HEART], cluster_id="kill9", restart_engines=False)
    cluster.start_sync()
    client = cluster.connect_client_sync()
    marker = str(tmp_path / "first-attempt")

    def once_then_nap(path):
        import os
        import time

        if not os.path.exists(path):  # the first attempt announces itself and never ends
            with open(path, "w") as f:
                f.write(str(os.getpid()))
            time.sleep(60)
        return os.getpid()

    try:
        ids_by_pid = dict(zip(client[:].apply_sync(os.getpid), client.ids))
        retried = client.load_balanced_view(retries=1).apply_async(once_then_nap, marker)
        pid = int(wait_for(lambda: os.path.exists(marker) and open(marker).read(), 20, "the task to start"))
        victim = ids_by_pid[pid]
        (survivor,) = set(client.ids) - {victim}
        queued = client[victim].apply_async(lambda: "never runs")
        wait_for(lambda: client.queue_status(verbose=True)[victim]["queue"], 10, "the direct task to be queued")

        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(EngineError):
            queued.get(BOUND + 10)
        retried_on = retried.get(BOUND + 10)
        took = time.monotonic() - killed
        assert retried_on == next(p for p, i in ids_by_pid.items() if i == survivor)
        assert took < BOUND, f"the tasks of the killed engine ended {took:.1f}s after the kill"
        assert client.ids == [survivor]
        assert client[survivor].apply_sync(lambda: "fine") == "fine"
        with open(cluster._controller_log) as f:
            assert "reported by its supervisor" in f.read()
    finally:
        client.close()
        cluster.stop_sync()
    assert hubenv.processes() == []
