"""A few hundred wire-level engines (benchmarks/swarm.py) against our controller.

One test, bounded in time: 300 engines register, a tenth of them vanish at once (sockets
closed without a word, as killed processes) and only those are declared gone, and a
load-balanced map runs across all the survivors (every one of them answers a part of it).
"""

from __future__ import annotations

import os
import sys
import time

import pytest
from support.procs import Controller, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
from swarm import Notifications, Swarm  # noqa: E402

from jupyter_hub_ctl import Client  # noqa: E402

N = 300
PING_MS = 500  # a vanished engine is declared dead after > 10 missed beats: ~5.5 s


@pytest.mark.timeout(120)
def test_300_engines_register_survive_a_tenth_vanishing_and_all_take_part_in_a_map(tmp_path):
    ctl = Controller(tmp_path, ["--dictdb"], cluster_id="swarm", ping=PING_MS, log_level=20).start()
    started = time.monotonic()
    notes = Notifications(ctl.client_file)
    client = None
    try:
        with Swarm(ctl.engine_file, N, execute=True, log_dir=str(tmp_path)) as swarm:
            client = Client(ctl.client_file)
            client.wait_for_engines(N, timeout=30)
            stats = swarm.stats()
            assert stats["states"] == {"registered": N}, stats["states"]
            assert sorted(client.ids) == sorted(stats["ids"])

            killed = set(swarm.kill(N // 10, how="vanish"))
            assert len(killed) == N // 10
            wait_for(lambda: killed <= set(notes.unregistered), 15, "the vanished engines to be declared gone")
            # two more periods: time for a live engine to be declared dead by mistake
            time.sleep(2 * PING_MS / 1000)
            assert set(notes.unregistered) == killed, "engines that kept beating were declared dead"
            survivors = sorted(set(client.ids))
            assert survivors == sorted(set(stats["ids"]) - killed)

            swarm.reset()
            items = list(range(4 * len(survivors)))
            ar = client.load_balanced_view().map(lambda x: 2 * x, items)  # a lambda travels by value
            assert ar.get(timeout=15) == [2 * x for x in items]
            served = {int(k) for k, v in swarm.stats()["requests_by_id"].items() if v > 0}
            assert served == set(survivors), f"engines without a part of the map: {sorted(set(survivors) - served)[:20]}"
    finally:
        if client is not None:
            client.close()
        notes.close()
        ctl.stop()
    assert time.monotonic() - started < 60, "the whole scenario took more than 60 s"
