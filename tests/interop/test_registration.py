"""Engine registration: requested ids, late engines, id allocation (PROTOCOL.md §5.1, §8)."""

import os
import time

import pytest

from .harness import call_with_deadline, scaled, wait_for

pytestmark = pytest.mark.timeout(150)

T = scaled(30)


def whoami():
    return os.getpid()


def slow_whoami(delay):
    time.sleep(delay)
    return os.getpid()


def test_requested_engine_id_is_honoured_and_later_ids_continue_past_it(hub_factory):
    hub = hub_factory()
    client = hub.connect()
    (engine,) = hub.start_engines(1, extra_args=["--IPEngine.id=7"])
    assert engine.engine_id == 7
    wait_for(lambda: client.ids == [7], 10, "the client to learn engine 7")
    assert client[7].apply_sync(whoami) == engine.pid
    assert hub.connect().ids == [7], "connection_reply does not list engine 7"
    (later,) = hub.start_engines(1)
    assert later.engine_id == 8


def test_requested_id_in_use_gets_another_id(hub_factory):
    hub = hub_factory()
    (first,) = hub.start_engines(1, extra_args=["--IPEngine.id=3"])
    (second,) = hub.start_engines(1, extra_args=["--IPEngine.id=3"])
    assert first.engine_id == 3
    assert second.engine_id not in (None, 3)
    client = hub.connect(n_engines=2)
    assert sorted(client.ids) == sorted([3, second.engine_id])
    assert client[second.engine_id].apply_sync(whoami) == second.pid


def test_late_engines_register_and_get_work(hub_factory):
    hub = hub_factory(n_engines=1)
    client = hub.connect(n_engines=1)
    assert len(client.ids) == 1
    added = hub.start_engines(2)
    wait_for(lambda: len(client.ids) == 3, 10, "the client to see three engines")
    assert sorted(client.ids) == sorted(p.engine_id for p in hub.engines)
    lview = client.load_balanced_view()
    ars = [lview.apply_async(slow_whoami, 0.1) for _ in range(9)]
    pids = {ar.get(timeout=T) for ar in ars}
    assert {p.pid for p in added} <= pids, "a late engine got no load-balanced work"
    assert sorted(client[:].apply_sync(whoami)) == sorted(p.pid for p in hub.engines)


def test_engine_ids_are_not_reused(hub_factory):
    hub = hub_factory(n_engines=1)
    client = hub.connect(n_engines=1)
    (first_id,) = client.ids
    call_with_deadline(client.shutdown, targets=[first_id], block=True, timeout=15, what="shutdown")
    wait_for(lambda: client.ids == [], 10, "the engine to unregister")
    (replacement,) = hub.start_engines(1)
    assert replacement.engine_id != first_id
    assert replacement.engine_id > first_id
    wait_for(lambda: client.ids == [replacement.engine_id], 10, "the client to see the new engine")
