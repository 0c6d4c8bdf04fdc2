"""BroadcastView through the broadcast scheduler (PROTOCOL.md §11.4)."""

import os

import pytest
from ipyparallel import error

from .harness import scaled

pytestmark = pytest.mark.timeout(120)

T = scaled(20)


def tagged_pid(tag):
    return (tag, os.getpid())


def divide(a, b):
    return a / b


@pytest.fixture
def engine_pids(client):
    """{engine id: pid}, asked through the MUX so broadcast is not needed to know it."""
    return {eid: client[eid].apply_sync(os.getpid) for eid in client.ids}


@pytest.mark.parametrize("coalescing", [False, True], ids=["per-engine", "coalescing"])
def test_broadcast_apply_returns_every_engine_in_target_order(client, engine_pids, coalescing):
    bview = client.broadcast_view(is_coalescing=coalescing)
    ar = bview.apply_async(tagged_pid, "x")
    results = ar.get(timeout=T)
    assert results == [("x", engine_pids[eid]) for eid in client.ids]
    assert list(ar.engine_id) == list(client.ids)


def test_per_engine_replies_are_addressed_by_msg_id_and_engine_uuid(client):
    bview = client.broadcast_view(is_coalescing=False)
    ar = bview.apply_async(tagged_pid, "ids")
    ar.get(timeout=T)
    assert len(ar.msg_ids) == len(client.ids)
    original = ar.msg_ids[0].rsplit("_", 1)[0]
    for msg_id, eid in zip(ar.msg_ids, client.ids, strict=True):
        assert msg_id == f"{original}_{client._engines[eid]}"


def test_coalescing_broadcast_is_one_reply(client):
    bview = client.broadcast_view(is_coalescing=True)
    ar = bview.apply_async(tagged_pid, "one")
    assert len(ar.get(timeout=T)) == len(client.ids)
    assert len(ar.msg_ids) == 1


def test_broadcast_to_a_subset_of_engines(client, engine_pids):
    target = client.ids[-1]
    for coalescing in (False, True):
        bview = client.broadcast_view(targets=[target], is_coalescing=coalescing)
        assert bview.apply_sync(tagged_pid, "s") == [("s", engine_pids[target])]


@pytest.mark.parametrize("coalescing", [False, True], ids=["per-engine", "coalescing"])
def test_broadcast_execute_runs_everywhere_and_captures_output(client, coalescing):
    bview = client.broadcast_view(is_coalescing=coalescing)
    ar = bview.execute("interop_bcast = 11\nprint('bcast', interop_bcast)", block=False)
    ar.get(timeout=T)
    assert ar.wait_for_output(T)
    assert ar.stdout == ["bcast 11\n"] * len(client.ids)
    assert client[:].pull("interop_bcast", block=True) == [11] * len(client.ids)


def test_broadcast_push_and_pull(client):
    bview = client.broadcast_view(is_coalescing=True)
    bview.push({"interop_pushed": "yes"}, block=True)
    assert client[:].pull("interop_pushed", block=True) == ["yes"] * len(client.ids)
    assert bview.pull("interop_pushed", block=True) == ["yes"] * len(client.ids)


@pytest.mark.parametrize("coalescing", [False, True], ids=["per-engine", "coalescing"])
def test_broadcast_remote_exception(client, coalescing):
    bview = client.broadcast_view(is_coalescing=coalescing)
    with pytest.raises(error.RemoteError) as info:
        bview.apply_sync(divide, 1, 0)
    if isinstance(info.value, error.CompositeError):
        assert {e[0] for e in info.value.elist} == {"ZeroDivisionError"}
    else:
        assert info.value.ename == "ZeroDivisionError"
