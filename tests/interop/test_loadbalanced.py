"""LoadBalancedView through the task scheduler: schemes and high-water mark (PROTOCOL.md §11.3)."""

import functools
import math
import time

import pytest
from ipyparallel import error

from .harness import IS_REFERENCE, scaled, wait_for
from .remote import wait_for_gate

pytestmark = pytest.mark.timeout(180)

T = scaled(30)


def double(x):
    return 2 * x


def slow_double(x, delay=0.05):
    time.sleep(delay)
    return 2 * x


def fail_with_value_error(x):
    raise ValueError(f"bad {x}")


def test_apply_returns_result_from_some_engine(client):
    lview = client.load_balanced_view()
    ar = lview.apply_async(double, 4)
    assert ar.get(timeout=T) == 8
    assert ar.engine_id in client.ids
    assert ar.metadata["status"] == "ok"


def test_apply_sync_and_remote_error(client):
    lview = client.load_balanced_view()
    assert lview.apply_sync(double, 21) == 42
    with pytest.raises(error.RemoteError) as info:
        lview.apply_sync(fail_with_value_error, 3)
    assert info.value.ename == "ValueError"
    assert "bad 3" in info.value.evalue


def test_map_with_chunksize_sends_one_task_per_chunk_and_keeps_order(client):
    lview = client.load_balanced_view()
    ar = lview.map(double, range(20), chunksize=3, block=False)
    assert ar.get(timeout=T) == [2 * i for i in range(20)]
    assert len(ar.msg_ids) == math.ceil(20 / 3)


def test_unordered_map_returns_every_result(client):
    lview = client.load_balanced_view()
    ar = lview.map(slow_double, range(8), ordered=False, block=False)
    assert sorted(ar.get(timeout=T)) == [2 * i for i in range(8)]


def test_leastload_gives_both_engines_work(client):
    lview = client.load_balanced_view()
    ars = [lview.apply_async(slow_double, i, 0.05) for i in range(16)]
    assert [ar.get(timeout=T) for ar in ars] == [2 * i for i in range(16)]
    used = {ar.engine_id for ar in ars}
    assert used == set(client.ids), f"only engines {used} got work"


def _placement(client, msg_ids):
    """Where the hub says these tasks are: ({engine id: [ours in tasks]}, [ours unassigned]).

    Only our own msg_ids are looked at: the reference hub keeps stale entries
    in ``tasks`` for tasks that were retried or rescheduled on another engine.
    """
    status = client.queue_status(verbose=True)
    ours = set(msg_ids)
    per_engine = {eid: [m for m in status[eid]["tasks"] if m in ours] for eid in client.ids}
    return per_engine, [m for m in status["unassigned"] if m in ours]


def test_hwm_one_keeps_one_task_per_engine_and_queues_the_rest(client, gate):
    lview = client.load_balanced_view()
    # a function this hub never ran: not timed, so not sent ahead (TaskScheduler.prefetch)
    ars = [lview.apply_async(functools.partial(wait_for_gate, str(gate)), i) for i in range(6)]
    msg_ids = [ar.msg_ids[0] for ar in ars]

    def one_each_rest_queued():
        per_engine, unassigned = _placement(client, msg_ids)
        loads = [len(v) for v in per_engine.values()]
        return len(unassigned) == 4 and loads == [1, 1]

    wait_for(one_each_rest_queued, 10, "4 tasks unassigned and one task on each engine")
    gate.open()
    assert [ar.get(timeout=T) for ar in ars] == list(range(6))
    wait_for(
        lambda: _placement(client, msg_ids) == ({eid: [] for eid in client.ids}, []),
        10,
        "the hub to clear the finished tasks from queue_status",
    )


def test_hwm_zero_assigns_every_task_at_once(hub_factory, gate):
    hub = hub_factory(n_engines=2, args=["--hwm=0"])
    client = hub.connect(n_engines=2)
    lview = client.load_balanced_view()
    ars = [lview.apply_async(wait_for_gate, str(gate), i) for i in range(6)]
    msg_ids = [ar.msg_ids[0] for ar in ars]

    def all_assigned():
        per_engine, unassigned = _placement(client, msg_ids)
        loads = [len(v) for v in per_engine.values()]
        return not unassigned and sum(loads) == 6 and loads

    loads = wait_for(all_assigned, 10, "all 6 tasks assigned to engines with hwm=0")
    assert sorted(loads) == [3, 3], f"leastload with hwm=0 split tasks as {loads}"
    gate.open()
    assert [ar.get(timeout=T) for ar in ars] == list(range(6))
    assert {ar.engine_id for ar in ars} == set(client.ids)


@pytest.mark.skipif(IS_REFERENCE, reason="sending short tasks ahead (TaskScheduler.prefetch) is this "
                    "controller's scheduling; ipcontroller sends one task at a time")
def test_short_tasks_of_an_ipyparallel_client_are_sent_ahead(hub_factory, gate, tmp_path):
    hub = hub_factory(n_engines=2, args=["--TaskScheduler.prefetch=0.2"])
    client = hub.connect(n_engines=2)
    lview = client.load_balanced_view()
    opened = tmp_path / "open"
    opened.touch()
    # the same function (its serialized form is what the hub times), short while its gate is open
    assert [ar.get(timeout=T) for ar in [lview.apply_async(wait_for_gate, str(opened), i) for i in range(40)]] \
        == list(range(40))
    ars = [lview.apply_async(wait_for_gate, str(gate), i) for i in range(6)]
    msg_ids = [ar.msg_ids[0] for ar in ars]

    def all_held_evenly():
        per_engine, unassigned = _placement(client, msg_ids)
        return not unassigned and sorted(len(v) for v in per_engine.values()) == [3, 3]

    wait_for(all_held_evenly, 10, "6 short tasks held 3 and 3 by the engines, none at the hub")
    gate.open()
    assert [ar.get(timeout=T) for ar in ars] == list(range(6))


@pytest.mark.parametrize("scheme", ["leastload", "lru", "plainrandom", "twobin", "weighted"])
def test_every_scheme_computes_correct_results_on_both_engines(hub_factory, scheme):
    hub = hub_factory(n_engines=2, args=[f"--scheme={scheme}"])
    assert hub.connection_info("client")["task_scheme"] == scheme
    client = hub.connect(n_engines=2)
    lview = client.load_balanced_view()
    ars = [lview.apply_async(slow_double, i, 0.05) for i in range(12)]
    assert [ar.get(timeout=T) for ar in ars] == [2 * i for i in range(12)]
    # hwm=1: while one engine holds a task the other is the only candidate
    assert {ar.engine_id for ar in ars} == set(client.ids)
    assert lview.map_sync(double, range(10)) == [2 * i for i in range(10)]
