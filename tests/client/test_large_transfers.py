"""push and pull of large data: sent in pieces ahead of the request / reply, over real processes."""

from __future__ import annotations

import pytest

from jupyter_hub_ctl.client import serialize

np = pytest.importorskip("numpy")


def big(seed: int, mb: int = 40):
    return np.random.default_rng(seed).random(mb * 2**20 // 8)


def test_large_push_and_pull_round_trip(rc):
    arr = big(1)
    assert arr.nbytes >= serialize.STAGE_MIN + 3 * serialize.STAGE_PIECE + 5  # several pieces, a short last one
    dv = rc[rc.ids[0]]
    dv.push({"a": arr, "small": 7}, block=True)
    # the engine holds the whole array, writable, and the small value next to it
    assert dv.apply_sync(lambda: (float(a.sum()), a.shape, a.flags.writeable, small)) == (  # noqa: F821
        float(arr.sum()), arr.shape, True, 7)
    back = dv.pull("a", block=True)
    assert back.shape == arr.shape and back.dtype == arr.dtype and np.array_equal(back, arr)
    assert back.flags.writeable
    both = dv.pull(["a", "small"], block=True)
    assert np.array_equal(both[0], arr) and both[1] == 7
    dv.execute("del a", block=True)


def test_large_push_to_every_engine_and_pull_from_all(rc):
    arr = big(2, 20)
    rc[:].push({"b": arr}, block=True)
    assert rc[:].apply_sync(lambda: float(b[-1])) == [float(arr[-1])] * len(rc.ids)  # noqa: F821
    parts = rc[:].pull("b", block=True)
    assert len(parts) == len(rc.ids) and all(np.array_equal(p, arr) for p in parts)
    rc[:].execute("del b", block=True)


def test_pieces_are_not_recorded_as_tasks(rc):
    dv = rc[rc.ids[0]]
    before = len(rc.hub_history())
    ar = dv.push({"c": big(3, 20)})
    ar.get(60)
    history = rc.hub_history()
    assert len(history) == before + 1 and history[-1] == ar.msg_ids[0]
    dv.execute("del c", block=True)


def test_small_push_and_pull_are_not_staged(rc):
    dv = rc[rc.ids[0]]
    arr = np.arange(1000.0)
    dv.push({"d": arr}, block=True)
    assert np.array_equal(dv.pull("d", block=True), arr)
    recs = rc.db_query({"msg_id": rc.history[-1]}, keys=["msg_id", "result_metadata"])
    assert "staged" not in recs[0]["result_metadata"]


def test_engine_reports_a_push_whose_pieces_did_not_arrive(rc):
    from jupyter_hub_ctl.client import ops

    dv = rc[rc.ids[0]]
    client = rc
    head = serialize.serialize_call(ops.push, ({"e": big(4, 1)},), {})[:1]
    md = dict(dv._metadata("push"), staged={"transfer": "never-sent", "count": 1})
    fut = client._submit(b"m", "apply_request", {}, md, head, ident=client._uuid_of(rc.ids[0]))
    from jupyter_hub_ctl.client.asyncresult import AsyncResult
    from jupyter_hub_ctl.client.errors import RemoteError

    with pytest.raises(RemoteError, match="StagingError"):
        AsyncResult(client, [fut], single=True).get(30)


def test_staging_refuses_a_transfer_with_a_piece_missing():
    arr = big(5, 20)
    bufs = serialize.serialize(arr)
    pieces = list(serialize.stage_pieces("t1", bufs))
    assert len(pieces) >= 3
    staging = serialize.Staging()
    for content, piece in pieces[:1] + pieces[2:]:  # the second piece is lost
        staging.add(content, piece)
    with pytest.raises(serialize.StagingError, match=r"buffer 0: \d+ of \d+ bytes arrived"):
        staging.take("t1", len(bufs) - 1)
    assert staging.transfers == {}  # nothing kept for the failed transfer


def test_staging_reassembles_into_a_writable_buffer_numpy_uses_without_copying():
    arr = big(6, 20)
    bufs = serialize.serialize(arr)
    staging = serialize.Staging()
    for content, piece in reversed(list(serialize.stage_pieces("t2", bufs))):  # any order
        staging.add(content, piece)
    out = staging.take("t2", len(bufs) - 1)
    back = serialize.deserialize([bufs[0], *out])
    assert np.array_equal(back, arr) and back.flags.writeable
    back[0] = -1.0  # the array is a view on the reassembled buffer, not a copy of it
    assert memoryview(out[0]).cast("d")[0] == -1.0


def test_a_dropped_result_is_freed_at_once_without_the_cycle_collector(rc):
    import gc
    import weakref

    dv = rc[rc.ids[0]]
    dv.push({"f": big(7, 20)}, block=True)
    gc.disable()  # only reference counting may free it
    try:
        for fetch in (lambda: dv.pull("f"), lambda: dv.apply_async(lambda: f)):  # noqa: F821
            ar = fetch()
            value = ar.get(60)
            assert value.nbytes == 20 * 2**20
            gone = weakref.ref(value)
            del ar, value
            assert gone() is None, "an AsyncResult cycle kept a 20 MB result alive"
    finally:
        gc.enable()
    dv.execute("del f", block=True)


def test_pool_reuses_a_buffer_only_once_nothing_refers_to_it():
    pool = serialize.BufferPool(idle=60)
    a = pool.get(3 * 2**20)
    a[:3] = b"abc"
    b = pool.get(3 * 2**20)  # a is still referenced: a new mapping
    assert pool.reused == 0
    view = memoryview(a)[1:]  # a view keeps it in use too
    del a
    c = pool.get(3 * 2**20)
    assert pool.reused == 0 and bytes(view[:2]) == b"bc"
    del view
    d = pool.get(3 * 2**20 - 100)  # about the same size: the freed one again
    assert pool.reused == 1 and len(d) == 3 * 2**20 - 100 and bytes(d[:3]) == b"abc"
    del d
    assert pool.get(30 * 2**20) is not None and pool.reused == 1  # much bigger: not that one
    assert len(b) == len(c) == 3 * 2**20


def test_pool_unmaps_what_stays_unused():
    from tests.support.procs import wait_for

    pool = serialize.BufferPool(idle=0.2, free_limit=5 * 2**20)
    bufs = [pool.get(2 * 2**20) for _ in range(4)]
    del bufs
    assert pool.held() == 8 * 2**20
    again = pool.get(2 * 2**20)  # every call first trims to the byte limit
    assert pool.reused == 1 and pool.held() == 2 * 2**20  # 4 MB kept, one of them handed out
    del again
    wait_for(lambda: pool.held() == 0, 10, "the idle mappings to be unmapped")


def test_pool_counts_idle_time_from_release_not_from_hand_out():
    now = [1000.0]
    pool = serialize.BufferPool(idle=5)
    pool.clock = lambda: now[0]
    a = pool.get(2 * 2**20)
    now[0] += 60  # the user holds it for a minute
    pool.get(8 * 2**20)  # (another transfer meanwhile)
    del a
    b = pool.get(2 * 2**20)  # released just now: reused, however long it was held
    assert pool.reused == 1
    del b
    pool.get(30 * 2**20)  # marks the 8 MB and 2 MB ones unused as of now
    now[0] += 6
    pool.get(30 * 2**20)
    assert pool.held() == 30 * 2**20  # the others were unused for longer than idle: unmapped


def test_engine_reuses_its_buffers_and_never_overwrites_live_data(rc):
    dv = rc[rc.ids[0]]
    dv.execute("from jupyter_hub_ctl.client import serialize as _s; _r0 = _s.POOL.reused", block=True)
    first, second, third = big(8, 20), big(9, 20), big(10, 20)
    dv.push({"g": first}, block=True)
    dv.execute("kept = g", block=True)  # the user keeps the first array
    dv.push({"g": second}, block=True)
    dv.push({"g": third}, block=True)  # the second's buffer is free again by now
    reused, same_kept, same_g = dv.apply_sync(
        lambda: (_s.POOL.reused - _r0, float(kept.sum()), float(g.sum())))  # noqa: F821
    assert reused >= 1
    assert same_kept == float(first.sum()) and same_g == float(third.sum())
    dv.execute("del g, kept", block=True)


@pytest.mark.parametrize("n", [1, 2**20 - 1, 2**20, 2**20 + 12345, 5 * 2**20 + 1])
def test_pool_buffers_are_exactly_n_writable_bytes(n):
    buf = memoryview(serialize.POOL.get(n)).cast("B")
    assert buf.nbytes == n and not buf.readonly
    buf[n - 1] = 2
    buf[0] = 1
    assert buf[0] == 1 and buf[n - 1] == (2 if n > 1 else 1)


def test_staging_drops_transfers_whose_request_never_follows():
    staging = serialize.Staging()
    bufs = serialize.serialize(big(11, 20))
    pieces = list(serialize.stage_pieces("orphan", bufs))
    for content, piece in pieces[:2]:
        staging.add(content, piece)
    assert staging.expire(60) == []  # recent: kept
    staging.transfers["orphan"].touched -= 61
    assert staging.expire(60) == ["orphan"]
    assert staging.transfers == {}


def test_engine_answers_a_push_too_large_to_hold_with_a_clear_error(rc):
    from jupyter_hub_ctl.client import ops
    from jupyter_hub_ctl.client.asyncresult import AsyncResult
    from jupyter_hub_ctl.client.errors import RemoteError

    dv = rc[rc.ids[0]]
    uuid = rc._uuid_of(rc.ids[0])
    piece = {"transfer": "huge", "buffer": 0, "nbytes": 2**62, "offset": 0}
    rc._send(b"m", rc.session.serialize(serialize.STAGE_TYPE, piece, metadata=serialize.STAGE_MD,
                                        buffers=[b"x" * 2**20], idents=[uuid.encode()]))
    head = serialize.serialize_call(ops.push, ({"h": big(12, 1)},), {})[:1]
    md = dict(dv._metadata("push"), staged={"transfer": "huge", "count": 1})
    fut = rc._submit(b"m", "apply_request", {}, md, head, ident=uuid)
    with pytest.raises(RemoteError, match="no memory for"):
        AsyncResult(rc, [fut], single=True).get(30)
    assert dv.apply_sync(lambda: 1 + 1) == 2  # the engine carries on


def test_another_client_is_told_clearly_that_a_large_result_was_not_recorded(hub, rc):
    from jupyter_hub_ctl import Client
    from jupyter_hub_ctl.client.errors import RemoteError

    dv = rc[rc.ids[0]]
    dv.push({"k": big(13, 20), "small": 5}, block=True)
    ar = dv.pull("k")
    ar.get(60)
    small = dv.pull("small")
    small.get(60)
    other = Client(hub.controller.client_file)
    try:
        with pytest.raises(RemoteError, match="ResultNotRecorded"):
            other.get_result(ar.msg_ids[0]).get(30)
        assert other.get_result(small.msg_ids[0]).get(30) == 5  # small results are recorded whole
    finally:
        other.close()
    dv.execute("del k, small", block=True)


def test_resubmitting_a_large_push_is_refused_with_the_reason(rc):
    from jupyter_hub_ctl.client.errors import RemoteError

    dv = rc[rc.ids[0]]
    big_push = dv.push({"m": big(14, 20)})
    big_push.get(60)
    small_push = dv.push({"m2": 1})
    small_push.get(60)
    before = len(rc.hub_history())
    with pytest.raises(RemoteError, match="cannot be resubmitted"):
        rc.resubmit([small_push.msg_ids[0], big_push.msg_ids[0]])
    assert len(rc.hub_history()) == before  # the refused call sent nothing, not even the small one
    again = rc.resubmit(small_push.msg_ids[0])
    assert again.get(60) == [None] and again.msg_ids[0] != small_push.msg_ids[0]
    dv.execute("del m, m2", block=True)


def test_unstage_puts_the_head_first_and_says_what_is_wrong():
    bufs = serialize.serialize(big(16, 20))
    staging = serialize.Staging()
    for content, piece in serialize.stage_pieces("t3", bufs):
        staging.add(content, piece)
    out = staging.unstage({"transfer": "t3", "count": len(bufs) - 1}, [bufs[0]])
    assert out[0] is bufs[0] and bytes(out[1]) == bytes(memoryview(bufs[1]).cast("B"))
    with pytest.raises(serialize.StagingError, match=r"0 of 1 buffers arrived"):
        staging.unstage({"transfer": "t3", "count": 1}, [bufs[0]])  # taken already
    with pytest.raises(serialize.StagingError, match="bad staged transfer"):
        staging.unstage({"count": 1}, [bufs[0]])
