"""DirectView traffic through the MUX relay (PROTOCOL.md §11.1) with stock peers."""

import os

import pytest
from ipyparallel import error

from .harness import scaled

pytestmark = pytest.mark.timeout(120)

T = scaled(20)


def double(x):
    return 2 * x


def divide(a, b):
    return a / b


def test_apply_sync_runs_once_on_every_engine(shared_hub, client):
    pids = client[:].apply_sync(os.getpid)
    assert sorted(pids) == sorted(p.pid for p in shared_hub.engines)


def test_apply_async_result_and_metadata(client):
    ar = client[:].apply_async(double, 21)
    assert ar.get(timeout=T) == [42, 42]
    assert sorted(ar.engine_id) == sorted(client.ids)
    for md in ar.metadata:
        assert md["status"] == "ok"
        assert md["started"] is not None and md["completed"] is not None
        assert md["started"] <= md["completed"]
        assert md["engine_uuid"] == client._engines[md["engine_id"]]


def test_single_engine_views_return_scalars(client):
    first, last = client.ids[0], client.ids[-1]
    assert client[0].apply_sync(os.getpid) != client[-1].apply_sync(os.getpid)
    ar = client[first].apply_async(double, 5)
    assert ar.get(timeout=T) == 10
    assert ar.engine_id == first
    assert client[last].apply_sync(double, 6) == 12


def test_map_sync_preserves_order_across_engines(client):
    dview = client[:]
    assert dview.map_sync(double, range(11)) == [2 * i for i in range(11)]


def test_execute_output_is_captured_per_engine(client):
    ar = client[:].execute("print('hello from', 6 * 7)", block=False)
    ar.get(timeout=T)
    assert ar.wait_for_output(T)
    assert ar.stdout == ["hello from 42\n"] * len(client.ids)


def test_execute_result_is_delivered(client):
    ar = client[0].execute("6 * 7", silent=False, block=False)
    reply = ar.get(timeout=T)
    assert ar.wait_for_output(T)
    assert reply.execute_result["data"]["text/plain"] == "42"


def test_push_and_pull_roundtrip(client):
    dview = client[:]
    dview.push({"interop_a": 5, "interop_b": "text"}, block=True)
    assert dview.pull("interop_a", block=True) == [5, 5]
    assert dview.pull(["interop_a", "interop_b"], block=True) == [[5, "text"]] * 2
    client[0].push({"interop_a": 99}, block=True)
    assert client[0].pull("interop_a", block=True) == 99
    assert client[1].pull("interop_a", block=True) == 5


def test_scatter_partitions_and_gather_reassembles(client):
    dview = client[:]
    dview.scatter("interop_part", list(range(10)), block=True)
    parts = dview.pull("interop_part", block=True)
    assert sorted(len(p) for p in parts) == [5, 5]
    assert sorted(x for p in parts for x in p) == list(range(10))
    assert dview.gather("interop_part", block=True) == list(range(10))


def test_remote_exception_is_remote_error_with_ename(client):
    with pytest.raises(error.RemoteError) as info:
        client[0].apply_sync(divide, 1, 0)
    assert info.value.ename == "ZeroDivisionError"
    assert info.value.engine_info.get("engine_id") == client.ids[0]


def test_exception_on_several_engines_is_composite_error(client):
    with pytest.raises(error.CompositeError) as info:
        client[:].apply_sync(divide, 1, 0)
    enames = [e[0] for e in info.value.elist]
    assert enames == ["ZeroDivisionError"] * len(client.ids)


def test_execute_error_reports_ename(client):
    with pytest.raises(error.RemoteError) as info:
        client[0].execute("raise KeyError('interop')", block=True)
    assert info.value.ename == "KeyError"


def test_engines_keep_state_between_requests(client):
    target = client[client.ids[1]]
    target.execute("interop_counter = 0", block=True)
    for _ in range(3):
        target.execute("interop_counter += 1", block=True)
    assert target.pull("interop_counter", block=True) == 3
