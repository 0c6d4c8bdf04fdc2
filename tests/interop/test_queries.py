"""Hub queries on the registration/query socket (PROTOCOL.md §7, §9, §10).

The DB-backed queries run against ``--dictdb`` and ``--sqlitedb`` (one shared
hub per backend); ``--nodb`` and ``shutdown(hub=True)`` get their own hubs.
"""

import os
import time
import uuid

import pytest
from ipyparallel import error
from ipyparallel.serialize import deserialize_object, unpack_apply_message

from .harness import call_with_deadline, hub_request, scaled, wait_for, wait_for_hub_records
from .remote import wait_for_gate

pytestmark = pytest.mark.timeout(180)

T = scaled(30)
BOTH_DBS = ["dictdb", "sqlitedb"]


def square(x):
    return x * x


def pause(seconds):
    time.sleep(seconds)
    return os.getpid()


def divide(a, b):
    return a / b


@pytest.fixture(scope="module")
def db_hub(request, tmp_path_factory):
    """A hub with two engines and the backend named by the parameter."""
    from .harness import Hub

    hub = Hub(tmp_path_factory.mktemp(f"db-{request.param}"), extra_args=[f"--{request.param}"])
    hub.start_or_close(n_engines=2)
    hub.db = request.param
    yield hub
    hub.close()


@pytest.fixture
def hc(db_hub):
    """A client on the DB hub."""
    return db_hub.connect(n_engines=2)


@pytest.fixture
def other(db_hub):
    """A second, independent client on the same hub."""
    return db_hub.connect(n_engines=2)


def by_backend(*, ours_only=()):
    """Parametrize ``db_hub`` over both backends; ``ours_only`` names the backends
    on which the test checks a fix of a reference bug."""
    return pytest.mark.parametrize(
        "db_hub",
        [pytest.param(db, marks=pytest.mark.ours_only) if db in ours_only else db for db in BOTH_DBS],
        indirect=True,
    )


def dictdb_only():
    return pytest.mark.parametrize("db_hub", ["dictdb"], indirect=True)


def run_labelled(client, tag, n=5):
    """Run ``n`` load-balanced tasks one after another, labelled ``<tag>-<i>``;
    return their msg_ids in submission order."""
    lview = client.load_balanced_view()
    msg_ids = []
    for i in range(n):
        with lview.temp_flags(label=f"{tag}-{i}"):
            ar = lview.apply_async(square, i)
        assert ar.get(timeout=T) == i * i
        msg_ids.append(ar.msg_ids[0])
    wait_for_hub_records(client, msg_ids)
    return msg_ids


def labels(records):
    return sorted(r["label"] for r in records)


# ---------------------------------------------------------------------------
# queue_status / result_status / get_result / history
# ---------------------------------------------------------------------------


@dictdb_only()
def test_queue_status_reports_every_engine_and_unassigned(hc):
    status = hc.queue_status()
    assert set(status) == set(hc.ids) | {"unassigned"}
    assert isinstance(status["unassigned"], int)
    for eid in hc.ids:
        assert set(status[eid]) == {"queue", "completed", "tasks"}
        assert all(isinstance(v, int) for v in status[eid].values())


@dictdb_only()
def test_queue_status_tracks_direct_and_balanced_work(hc, gate):
    a = hc.ids[0]
    before = hc.queue_status(targets=a)
    assert set(before) == {"queue", "completed", "tasks"}
    direct = hc[a].apply_async(wait_for_gate, str(gate))
    balanced = hc.load_balanced_view(targets=[a]).apply_async(pause, 0.0)

    def both_visible():
        status = hc.queue_status(verbose=True)
        return direct.msg_ids[0] in status[a]["queue"] and balanced.msg_ids[0] in status[a]["tasks"]

    wait_for(both_visible, 10, "the direct task in queue and the balanced task in tasks")
    gate.open()
    direct.get(timeout=T)
    balanced.get(timeout=T)
    ours = {direct.msg_ids[0], balanced.msg_ids[0]}

    def both_completed():
        status = hc.queue_status(targets=a, verbose=True)
        return (
            ours <= set(status["completed"])
            and not ours & set(status["queue"])
            and not ours & set(status["tasks"])
        )

    wait_for(both_completed, 10, "both tasks to move to completed")
    assert hc.queue_status(targets=a)["completed"] == before["completed"] + 2


@dictdb_only()
def test_queue_request_for_unknown_engine_is_an_error(hc):
    with pytest.raises(IndexError):
        hc.queue_status(targets=999)  # refused by the client itself
    reply = hub_request(hc, "queue_request", {"targets": [999], "verbose": False})
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "IndexError"
    assert reply["parent_header"]["msg_id"]


@dictdb_only()
def test_unknown_request_type_gets_an_error_reply(hc):
    reply = hub_request(hc, "no_such_request", {})
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyError"


@dictdb_only()
@pytest.mark.ours_only
def test_load_request_reports_per_engine_load(hc):
    reply = hub_request(hc, "load_request", {"targets": None})
    content = dict(reply["content"])
    assert content.pop("status") == "ok"
    assert set(content) == {str(eid) for eid in hc.ids}
    assert all(isinstance(v, int) and v >= 0 for v in content.values())


@by_backend()
def test_result_status_moves_from_pending_to_completed(hc, other, gate):
    ar = hc.load_balanced_view().apply_async(wait_for_gate, str(gate))
    msg_id = ar.msg_ids[0]
    wait_for(lambda: msg_id in other.result_status([msg_id])["pending"], 10, "task pending at the hub")
    gate.open()
    pid = ar.get(timeout=T)
    wait_for(lambda: msg_id in other.result_status([msg_id])["completed"], 10, "task completed at the hub")
    full = other.result_status([msg_id], status_only=False)
    assert full[msg_id] == pid


@by_backend()
def test_result_status_of_unknown_msg_id_is_an_error(other):
    with pytest.raises(error.RemoteError) as info:
        call_with_deadline(other.result_status, ["no-such-msg-interop"], timeout=10, what="result_status")
    assert info.value.ename == "KeyError"


@by_backend()
def test_get_result_of_another_clients_tasks(hc, other):
    lb = hc.load_balanced_view().apply_async(square, 12)
    direct = hc[hc.ids[1]].apply_async(square, 13)
    failing = hc[hc.ids[0]].apply_async(divide, 1, 0)
    executed = hc[hc.ids[0]].execute("print('from the hub record')", block=False)
    assert lb.get(timeout=T) == 144 and direct.get(timeout=T) == 169
    executed.get(timeout=T)
    with pytest.raises(error.RemoteError):
        failing.get(timeout=T)
    wait_for_hub_records(hc, [ar.msg_ids[0] for ar in (lb, direct, failing, executed)])

    theirs = other.get_result(lb.msg_ids[0], block=False)
    assert theirs.get(timeout=T) == 144
    assert theirs.engine_id == lb.engine_id
    assert other.get_result(direct.msg_ids[0], block=False).get(timeout=T) == 169
    with pytest.raises(error.RemoteError) as info:
        other.get_result(failing.msg_ids[0], block=False).get(timeout=T)
    assert info.value.ename == "ZeroDivisionError"
    exec_ar = other.get_result(executed.msg_ids[0], block=False)
    exec_ar.get(timeout=T)
    assert exec_ar.stdout == "from the hub record\n"


@by_backend()
def test_get_result_waits_for_a_running_foreign_task(hc, other, gate):
    ar = hc.load_balanced_view().apply_async(wait_for_gate, str(gate))
    # the hub learns of a submission asynchronously (through the scheduler);
    # asking before it knows the msg_id is a "No such message" error
    wait_for(lambda: ar.msg_ids[0] in other.result_status(ar.msg_ids)["pending"], 10, "pending")
    theirs = other.get_result(ar.msg_ids[0], block=False)
    assert not theirs.ready()
    gate.open()
    assert theirs.get(timeout=T) == ar.get(timeout=T)


@by_backend()
def test_hub_history_lists_submissions_in_order(hc, other):
    mine = run_labelled(hc, f"hist-{uuid.uuid4().hex[:6]}", n=3)
    theirs = other.load_balanced_view().apply_async(square, 3)
    theirs.get(timeout=T)
    wait_for_hub_records(other, theirs.msg_ids)
    history = call_with_deadline(hc.hub_history, timeout=10, what="hub_history")
    positions = [history.index(m) for m in mine]
    assert positions == sorted(positions)
    assert theirs.msg_ids[0] in history
    assert history.index(theirs.msg_ids[0]) > positions[-1]


# ---------------------------------------------------------------------------
# db_query
# ---------------------------------------------------------------------------


@by_backend()
def test_task_records_describe_submission_and_result(hc):
    tag = f"rec-{uuid.uuid4().hex[:6]}"
    lview = hc.load_balanced_view()
    with lview.temp_flags(label=tag):
        lb = lview.apply_async(square, 7)
    a = hc.ids[0]
    direct = hc[a].apply_async(square, 8)
    code = "print('recorded output')"
    executed = hc[a].execute(code, silent=False, block=False)
    lb.get(timeout=T), direct.get(timeout=T), executed.get(timeout=T)
    executed.wait_for_output(T)

    def records():
        recs = hc.db_query({"msg_id": {"$in": [lb.msg_ids[0], direct.msg_ids[0], executed.msg_ids[0]]}})
        recs = {r["msg_id"]: r for r in recs}
        done = len(recs) == 3 and recs[executed.msg_ids[0]]["stdout"]
        return recs if done else None

    recs = wait_for(records, 10, "three complete records (with stdout)")
    rec = recs[lb.msg_ids[0]]
    assert rec["queue"] == "task"
    assert rec["label"] == tag
    assert rec["engine_uuid"] == hc._engines[lb.engine_id]
    assert rec["client_uuid"] == hc.session.session
    assert rec["header"]["msg_id"] == lb.msg_ids[0]
    assert rec["header"]["msg_type"] == "apply_request"
    assert rec["result_header"]["msg_type"] == "apply_reply"
    assert rec["result_content"]["status"] == "ok"
    assert rec["submitted"] <= rec["started"] <= rec["completed"] <= rec["received"]
    assert rec["resubmitted"] is None

    rec = recs[direct.msg_ids[0]]
    assert rec["queue"] == "mux"
    assert rec["engine_uuid"] == hc._engines[a]

    rec = recs[executed.msg_ids[0]]
    assert rec["queue"] == "mux"
    assert rec["execute_input"] == code
    assert rec["stdout"] == "recorded output\n"
    assert rec["result_header"]["msg_type"] == "execute_reply"


@by_backend()
def test_db_query_in_nin_eq_ne_glob(hc):
    tag = f"ops-{uuid.uuid4().hex[:6]}"
    ids = run_labelled(hc, tag)
    mine = {"label": {"$glob": f"{tag}-*"}}
    assert labels(hc.db_query(mine, keys=["label"])) == [f"{tag}-{i}" for i in range(5)]
    assert labels(hc.db_query({"msg_id": {"$in": ids[1:3]}}, keys=["label"])) == [
        f"{tag}-1",
        f"{tag}-2",
    ]
    assert labels(hc.db_query({**mine, "msg_id": {"$nin": ids[:2]}}, keys=["label"])) == [
        f"{tag}-{i}" for i in (2, 3, 4)
    ]
    assert labels(hc.db_query({"label": {"$eq": f"{tag}-3"}}, keys=["label"])) == [f"{tag}-3"]
    assert labels(hc.db_query({"label": f"{tag}-4"}, keys=["label"])) == [f"{tag}-4"]
    assert labels(hc.db_query({**mine, "msg_id": {"$ne": ids[0]}}, keys=["label"])) == [
        f"{tag}-{i}" for i in range(1, 5)
    ]
    assert hc.db_query({"label": {"$glob": f"{tag}-9*"}}, keys=["label"]) == []


@by_backend(ours_only=["dictdb"])
def test_db_query_plain_equality_combines_with_other_keys(hc):
    # the reference DictDB compares every plain-equality key with the *last*
    # value of the query dict (a late-binding closure), so this finds nothing
    tag = f"eqand-{uuid.uuid4().hex[:6]}"
    ids = run_labelled(hc, tag, n=3)
    recs = hc.db_query({"label": f"{tag}-1", "msg_id": {"$in": ids}}, keys=["label"])
    assert labels(recs) == [f"{tag}-1"]
    recs = hc.db_query({"label": f"{tag}-2", "completed": {"$ne": None}}, keys=["label"])
    assert labels(recs) == [f"{tag}-2"]


def _submitted(client, ids):
    recs = client.db_query({"msg_id": {"$in": ids}}, keys=["submitted"])
    when = {r["msg_id"]: r["submitted"] for r in recs}
    return [when[m] for m in ids]


@by_backend()
def test_db_query_lt_lte_gte_on_dates(hc):
    tag = f"dates-{uuid.uuid4().hex[:6]}"
    ids = run_labelled(hc, tag)
    when = _submitted(hc, ids)
    assert when == sorted(when) and len(set(when)) == 5
    mine = {"$glob": f"{tag}-*"}
    pivot = when[2]

    def query(ops):
        return labels(hc.db_query({"label": mine, "submitted": ops}, keys=["label"]))

    assert query({"$lt": pivot}) == [f"{tag}-0", f"{tag}-1"]
    assert query({"$lte": pivot}) == [f"{tag}-0", f"{tag}-1", f"{tag}-2"]
    assert query({"$gte": pivot}) == [f"{tag}-2", f"{tag}-3", f"{tag}-4"]
    assert query({"$gte": when[1], "$lt": when[3]}) == [f"{tag}-1", f"{tag}-2"]
    # dates may also be sent as ISO strings
    assert query({"$lt": pivot.isoformat()}) == [f"{tag}-0", f"{tag}-1"]


@by_backend(ours_only=["dictdb"])
def test_db_query_gt_on_dates(hc):
    tag = f"gt-{uuid.uuid4().hex[:6]}"
    ids = run_labelled(hc, tag)
    when = _submitted(hc, ids)
    recs = hc.db_query({"label": {"$glob": f"{tag}-*"}, "submitted": {"$gt": when[2]}}, keys=["label"])
    assert labels(recs) == [f"{tag}-3", f"{tag}-4"]


@by_backend(ours_only=["sqlitedb"])
def test_db_query_exists(hc):
    tag = f"exists-{uuid.uuid4().hex[:6]}"
    ids = run_labelled(hc, tag, n=2)
    unlabelled = hc.load_balanced_view().apply_async(square, 2)
    unlabelled.get(timeout=T)
    wait_for_hub_records(hc, unlabelled.msg_ids)
    everything = [*ids, unlabelled.msg_ids[0]]
    having = hc.db_query({"msg_id": {"$in": everything}, "label": {"$exists": True}}, keys=["label"])
    assert sorted(r["msg_id"] for r in having) == sorted(ids)
    lacking = hc.db_query({"msg_id": {"$in": everything}, "label": {"$exists": False}}, keys=["label"])
    assert [r["msg_id"] for r in lacking] == [unlabelled.msg_ids[0]]


@by_backend(ours_only=BOTH_DBS)
def test_db_query_all_matches_whole_values_and_skips_nulls(hc):
    tag = f"all-{uuid.uuid4().hex[:6]}"
    run_labelled(hc, tag, n=3)
    unlabelled = hc.load_balanced_view().apply_async(square, 2)  # a record without label
    unlabelled.get(timeout=T)
    wait_for_hub_records(hc, unlabelled.msg_ids)
    recs = hc.db_query({"label": {"$all": [f"{tag}-1"]}}, keys=["label"])
    assert labels(recs) == [f"{tag}-1"]


@by_backend(ours_only=BOTH_DBS)
def test_db_query_mod_never_matches_non_numbers(hc):
    tag = f"mod-{uuid.uuid4().hex[:6]}"
    run_labelled(hc, tag, n=2)
    assert hc.db_query({"label": {"$mod": [2, 0]}}, keys=["label"]) == []


@by_backend()
def test_db_query_keys_select_fields_and_buffers(hc):
    lview = hc.load_balanced_view()
    ars = [lview.apply_async(square, x) for x in (3, 4)]
    expected = {ar.msg_ids[0]: x for ar, x in zip(ars, (3, 4), strict=True)}
    for ar in ars:
        ar.get(timeout=T)
    wait_for_hub_records(hc, expected)

    plain = hc.db_query({"msg_id": {"$in": list(expected)}}, keys=["msg_id", "engine_uuid"])
    assert len(plain) == 2
    for rec in plain:
        assert set(rec) == {"msg_id", "engine_uuid"}

    no_keys = hc.db_query({"msg_id": {"$in": list(expected)}})
    for rec in no_keys:
        assert "buffers" not in rec and "result_buffers" not in rec
        assert rec["result_content"]["status"] == "ok"

    with_bufs = hc.db_query({"msg_id": {"$in": list(expected)}}, keys=["buffers", "result_buffers", "label"])
    assert len(with_bufs) == 2
    for rec in with_bufs:
        assert set(rec) == {"msg_id", "buffers", "result_buffers", "label"}
        x = expected[rec["msg_id"]]
        result, leftover = deserialize_object(rec["result_buffers"])
        assert result == x * x and not leftover
        f, args, kwargs = unpack_apply_message(rec["buffers"], copy=True)
        assert args == [x] or args == (x,)
        assert f(*args) == x * x


# ---------------------------------------------------------------------------
# resubmit
# ---------------------------------------------------------------------------


@by_backend()
def test_resubmit_runs_again_with_new_msg_id_and_same_header(hc, other):
    ar = hc.load_balanced_view().apply_async(square, 9)
    assert ar.get(timeout=T) == 81
    wait_for_hub_records(hc, ar.msg_ids)
    old_id = ar.msg_ids[0]
    again = call_with_deadline(other.resubmit, old_id, block=False, timeout=10, what="resubmit")
    new_id = again.msg_ids[0]
    assert new_id != old_id
    assert again.get(timeout=T) == [81]

    def both_records():
        recs = {r["msg_id"]: r for r in hc.db_query({"msg_id": {"$in": [old_id, new_id]}})}
        if len(recs) == 2 and recs[new_id]["completed"] and recs[old_id]["resubmitted"]:
            return recs
        return None

    recs = wait_for(both_records, 10, "records of the original and the resubmitted task")
    old_header, new_header = recs[old_id]["header"], recs[new_id]["header"]
    assert new_header["msg_id"] == new_id
    for key in set(old_header) | set(new_header):
        if key not in ("msg_id", "date"):
            assert new_header.get(key) == old_header.get(key), f"header {key!r} changed"
    assert recs[old_id]["resubmitted"] == new_id
    assert recs[new_id]["result_content"]["status"] == "ok"


@by_backend()
def test_resubmit_of_a_direct_task(hc):
    ar = hc[hc.ids[0]].apply_async(square, 5)
    assert ar.get(timeout=T) == 25
    wait_for_hub_records(hc, ar.msg_ids)
    again = call_with_deadline(hc.resubmit, ar.msg_ids[0], block=False, timeout=10, what="resubmit")
    assert again.get(timeout=T) == [25]


@by_backend()
def test_resubmit_of_unknown_msg_id_is_an_error(hc):
    with pytest.raises(error.RemoteError) as info:
        call_with_deadline(hc.resubmit, "no-such-msg-interop", timeout=10, what="resubmit")
    assert info.value.ename == "KeyError"


@by_backend(ours_only=BOTH_DBS)
def test_resubmit_keeps_targets_and_label(hc):
    target = hc.ids[1]
    target_pid = hc[target].apply_sync(os.getpid)
    lview = hc.load_balanced_view(targets=[target])
    label = f"keep-{uuid.uuid4().hex[:6]}"
    with lview.temp_flags(label=label):
        ar = lview.apply_async(pause, 0.0)
    assert ar.get(timeout=T) == target_pid
    wait_for_hub_records(hc, ar.msg_ids)
    for _ in range(3):  # without the targets, leastload would move it to the idle engine
        again = call_with_deadline(hc.resubmit, ar.msg_ids[0], block=False, timeout=10, what="resubmit")
        assert again.get(timeout=T) == [target_pid]
        (rec,) = wait_for_hub_records(hc, again.msg_ids)
        assert rec["label"] == label
        assert rec["metadata"].get("label") == label
        assert rec["engine_uuid"] == hc._engines[target]


# ---------------------------------------------------------------------------
# purge
# ---------------------------------------------------------------------------


@by_backend()
def test_purge_by_msg_ids_forgets_only_those(hc, other):
    lview = hc.load_balanced_view()
    gone, kept = lview.apply_async(square, 1), lview.apply_async(square, 2)
    gone.get(timeout=T), kept.get(timeout=T)
    wait_for_hub_records(hc, gone.msg_ids + kept.msg_ids)
    call_with_deadline(hc.purge_results, jobs=[gone], timeout=10, what="purge_results")
    assert hc.db_query({"msg_id": gone.msg_ids[0]}) == []
    assert len(hc.db_query({"msg_id": kept.msg_ids[0]})) == 1
    with pytest.raises(error.RemoteError):
        call_with_deadline(
            lambda: other.get_result(gone.msg_ids[0], block=False).get(timeout=T),
            timeout=T,
            what="get_result of a purged task",
        )
    assert other.get_result(kept.msg_ids[0], block=False).get(timeout=T) == 4


@by_backend()
def test_purge_of_a_pending_task_is_refused(hc, other, gate):
    running = hc.load_balanced_view().apply_async(wait_for_gate, str(gate))
    wait_for(
        lambda: running.msg_ids[0] in other.result_status(running.msg_ids)["pending"],
        10,
        "task pending at the hub",
    )
    with pytest.raises(error.RemoteError) as info:
        call_with_deadline(other.purge_hub_results, jobs=running.msg_ids, timeout=10, what="purge")
    assert info.value.ename == "IndexError"
    gate.open()
    running.get(timeout=T)
    assert len(hc.db_query({"msg_id": running.msg_ids[0]})) == 1


@by_backend(ours_only=BOTH_DBS)
def test_purge_by_engine_drops_that_engines_completed_records(hc):
    # reference: SQLiteDB fails on the empty msg_ids list the client sends
    # ("msg_id IN ()"), DictDB's equality bug makes the engine filter match nothing
    a, b = hc.ids[:2]
    on_a = [hc[a].apply_async(square, i) for i in range(3)]
    on_b = [hc[b].apply_async(square, i) for i in range(3)]
    for ar in on_a + on_b:
        ar.get(timeout=T)
    wait_for_hub_records(hc, [ar.msg_ids[0] for ar in on_a + on_b])
    finished_on_a = [
        r["msg_id"]
        for r in hc.db_query(
            {"engine_uuid": {"$eq": hc._engines[a]}, "completed": {"$ne": None}}, keys=["msg_id"]
        )
    ]
    assert {ar.msg_ids[0] for ar in on_a} <= set(finished_on_a)
    # Client.purge_results(targets=...) trips over its own metadata cache in
    # ipyparallel 9.2, so ask the hub directly
    call_with_deadline(hc.purge_hub_results, targets=[a], timeout=10, what="purge by engine")
    assert hc.db_query({"msg_id": {"$in": finished_on_a}}, keys=["msg_id"]) == []
    left = hc.db_query({"msg_id": {"$in": [ar.msg_ids[0] for ar in on_b]}}, keys=["engine_uuid"])
    assert len(left) == 3


@by_backend()
def test_purge_of_unknown_engine_is_an_error(hc):
    reply = hub_request(hc, "purge_request", {"msg_ids": [], "engine_ids": [999]})
    assert reply["content"]["status"] == "error"


@by_backend()
def test_purge_all_drops_every_completed_record(hc, gate):
    done = hc.load_balanced_view().apply_async(square, 6)
    done.get(timeout=T)
    wait_for_hub_records(hc, done.msg_ids)
    running = hc.load_balanced_view().apply_async(wait_for_gate, str(gate))
    wait_for(
        lambda: running.msg_ids[0] in hc.result_status(running.msg_ids)["pending"],
        10,
        "task pending at the hub",
    )
    finished = [r["msg_id"] for r in hc.db_query({"completed": {"$ne": None}}, keys=["msg_id"])]
    assert done.msg_ids[0] in finished
    reply = hub_request(hc, "purge_request", {"msg_ids": "all", "engine_ids": []})
    assert reply["content"]["status"] == "ok"
    assert hc.db_query({"msg_id": done.msg_ids[0]}) == []
    history = call_with_deadline(hc.hub_history, timeout=10, what="hub_history")
    assert done.msg_ids[0] not in history
    assert hc.db_query({"msg_id": {"$in": finished}}, keys=["msg_id"]) == []
    assert running.msg_ids[0] in history, "a pending record must survive purge 'all'"
    gate.open()
    running.get(timeout=T)


# ---------------------------------------------------------------------------
# shutdown and NoDB
# ---------------------------------------------------------------------------


def test_shutdown_hub_stops_controller_engines_and_notifies_clients(hub_factory):
    hub = hub_factory(n_engines=1)
    client = hub.connect(n_engines=1)
    bystander = hub.connect(n_engines=1)
    assert client[:].apply_sync(square, 2) == [4]

    call_with_deadline(client.shutdown, hub=True, timeout=15, what="shutdown(hub=True)")

    assert hub.controller.wait(timeout=15) == 0
    wait_for(lambda: bystander._closed, 10, "the other client to close on shutdown_notification")
    wait_for(lambda: not any(e.alive() for e in hub.engines), 15, "engines to exit")
    assert not hub.client_file.exists() and not hub.engine_file.exists()


@pytest.fixture(scope="module")
def nodb_hub(tmp_path_factory):
    from .harness import Hub

    hub = Hub(tmp_path_factory.mktemp("nodb"), extra_args=["--nodb"]).start_or_close(n_engines=1)
    yield hub
    hub.close()


def test_nodb_executes_every_kind_of_task(nodb_hub):
    client = nodb_hub.connect(n_engines=1)
    assert client[:].apply_sync(square, 3) == [9]
    assert client.load_balanced_view().apply_sync(square, 4) == 16
    assert client.broadcast_view().apply_sync(square, 5) == [25]
    wait_for(
        lambda: client.queue_status()[client.ids[0]]["completed"] >= 2,
        10,
        "queue_status to count the completed tasks",
    )


def test_nodb_history_and_db_query_fail_without_hanging(nodb_hub):
    client = nodb_hub.connect(n_engines=1)
    client.load_balanced_view().apply_sync(square, 3)
    with pytest.raises(error.RemoteError):
        call_with_deadline(client.hub_history, timeout=10, what="hub_history on NoDB")
    with pytest.raises(error.RemoteError):
        call_with_deadline(client.db_query, {"msg_id": {"$ne": None}}, timeout=10, what="db_query on NoDB")


def test_nodb_foreign_results_and_resubmit_fail_without_hanging(nodb_hub):
    client = nodb_hub.connect(n_engines=1)
    other = nodb_hub.connect(n_engines=1)
    ar = client.load_balanced_view().apply_async(square, 3)
    assert ar.get(timeout=T) == 9
    with pytest.raises(error.RemoteError):
        call_with_deadline(
            lambda: other.get_result(ar.msg_ids[0], block=False).get(timeout=T),
            timeout=T,
            what="get_result on NoDB",
        )
    with pytest.raises(error.RemoteError):
        call_with_deadline(client.resubmit, ar.msg_ids[0], timeout=10, what="resubmit on NoDB")
