"""Short tasks are sent ahead of an engine's running task (TaskScheduler.prefetch); others one at a time."""

from __future__ import annotations

import os
import time

from support.procs import wait_for

T = 60
#: a generous window, so that the warm-up's no-op tasks count as short however busy the machine is
ARGS = ["--TaskScheduler.prefetch=0.2"]
LONG = 1.0  # seconds a long task takes: well over that window


def step(gate, i, long=0.0):
    """Returns at once for i < 100; from 100 on, waits until the file ``gate`` exists; takes at
    least ``long`` seconds."""
    time.sleep(long)
    deadline = time.monotonic() + 120
    while i >= 100 and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return i


def other(gate, i):
    return step(gate, i)


for _f in (step, other):
    _f.__module__ = "__main__"  # shipped by value (the engines cannot import this test module)


def placement(client, msg_ids) -> tuple:
    """(sorted task counts per engine, number unassigned) among ``msg_ids``."""
    status = client.queue_status(verbose=True)
    ours = set(msg_ids)
    loads = sorted(len([m for m in status[e]["tasks"] if m in ours]) for e in client.ids)
    return loads, len([m for m in status["unassigned"] if m in ours])


def submit(view, f, gate, n):
    ars = [view.apply_async(f, str(gate), 100 + i) for i in range(n)]
    return ars, [ar.msg_ids[0] for ar in ars]


def settle(client, msg_ids, want, what):
    wait_for(lambda: placement(client, msg_ids) == want, 20, f"{what}: placement {want}")


def test_short_tasks_go_ahead_evenly_and_long_or_new_ones_one_at_a_time(fresh_hub, tmp_path):
    hub = fresh_hub(2, ARGS)
    client, view = hub.client, hub.client.load_balanced_view()
    warm = [view.apply_async(step, "", i) for i in range(40)]
    assert [ar.get(timeout=T) for ar in warm] == list(range(40))

    # a function never timed goes one at a time, even right after short tasks of another
    ars, ids = submit(view, other, tmp_path / "g0", 6)
    settle(client, ids, ([1, 1], 4), "an untimed function")
    (tmp_path / "g0").touch()
    assert [ar.get(timeout=T) for ar in ars] == list(range(100, 106))

    # more of the timed short function: every engine holds several, evenly, none wait at the hub
    ars, ids = submit(view, step, tmp_path / "g1", 6)
    settle(client, ids, ([3, 3], 0), "a short function")
    (tmp_path / "g1").touch()
    assert [ar.get(timeout=T) for ar in ars] == list(range(100, 106))
    assert {ar.engine_id for ar in ars} == set(client.ids)

    # once it took long, the same function goes one at a time again
    assert [ar.get(timeout=T) for ar in [view.apply_async(step, "", i, LONG) for i in range(2)]] == [0, 1]
    ars, ids = submit(view, step, tmp_path / "g2", 6)
    settle(client, ids, ([1, 1], 4), "a function that took long")
    (tmp_path / "g2").touch()
    assert [ar.get(timeout=T) for ar in ars] == list(range(100, 106))


def test_prefetch_zero_keeps_one_task_per_engine(fresh_hub, tmp_path):
    hub = fresh_hub(2, ["--TaskScheduler.prefetch=0"])
    client, view = hub.client, hub.client.load_balanced_view()
    assert view.map_sync(step, [""] * 40, range(40)) == list(range(40))
    ars, ids = submit(view, step, tmp_path / "g", 6)
    settle(client, ids, ([1, 1], 4), "prefetch off")
    (tmp_path / "g").touch()
    assert [ar.get(timeout=T) for ar in ars] == list(range(100, 106))
