"""The controller's per-task shortcuts keep the stores' and relays' documented behaviour.

Records handed over to a store (adopt/merge), DictDB culling without sorting, shallow
records for db_query replies, the IOPub monitor's status filter, the app's logger level
and the SQLite JSON encoder.
"""

import json
import logging
import random
import time
from datetime import datetime, timedelta, timezone

import pytest
import zmq
from support.records import record

from jupyter_hub_ctl.controller import relays
from jupyter_hub_ctl.controller.app import ControllerApp
from jupyter_hub_ctl.controller.db import DictDB, NoDB, SQLiteDB
from jupyter_hub_ctl.controller.db.sqlformat import _json_default, encode_value

UTC = timezone.utc
T0 = datetime(2024, 1, 1, tzinfo=UTC)
LOG = logging.getLogger("test_hot_path")


def at(n):
    return T0 + timedelta(seconds=n)


@pytest.fixture(params=["dictdb", "sqlitedb", "nodb"])
def store(request, tmp_path):
    if request.param == "dictdb":
        db = DictDB(log=LOG)
    elif request.param == "sqlitedb":
        db = SQLiteDB(location=str(tmp_path), commit_interval=3600.0, log=LOG)
    else:
        db = NoDB(log=LOG)
    yield db
    db.close()


# -- adopt_record / merge_record ------------------------------------------------------


def test_adopt_and_merge_store_like_add_and_update(store):
    store.adopt_record("a", record("a", submitted=at(1), header={"msg_id": "a"}, buffers=[b"req"]))
    assert store.merge_record("a", {"engine_uuid": "e1"}) is True
    assert store.merge_record("a", {"completed": at(2), "result_content": {"status": "ok"},
                                    "result_buffers": [memoryview(b"rep")]}) is True
    if isinstance(store, NoDB):
        return
    rec = store.get_record("a")
    assert rec["engine_uuid"] == "e1"
    assert rec["submitted"] == at(1) and rec["completed"] == at(2)
    assert rec["header"] == {"msg_id": "a"}
    assert rec["result_content"] == {"status": "ok"}
    assert [bytes(b) for b in rec["buffers"]] == [b"req"]
    assert [bytes(b) for b in rec["result_buffers"]] == [b"rep"]
    assert all(type(b) is bytes for b in rec["result_buffers"])


def test_records_read_back_are_copies_after_adopt(store):
    if isinstance(store, NoDB):
        return
    store.adopt_record("a", record("a", submitted=at(1), metadata={"k": 1}))
    got = store.get_record("a")
    got["metadata"]["k"] = 2
    got["stdout"] = "changed"
    again = store.get_record("a")
    assert again["metadata"] == {"k": 1} and again["stdout"] == ""


def test_merge_of_a_missing_record_is_no_exception():
    db = DictDB(record_limit=2, cull_fraction=0.5, log=LOG)
    assert db.merge_record("never", {"stdout": "x"}) is False
    for i in range(3):
        db.adopt_record(f"r{i}", record(f"r{i}", submitted=at(i)))
    assert db.merge_record("r0", {"stdout": "x"}) is False  # culled
    with pytest.raises(KeyError, match="culled"):
        db.update_record("r0", {"stdout": "x"})


def test_naive_and_offset_datetimes_are_normalised_on_adopt():
    db = DictDB(log=LOG)
    plus5 = timezone(timedelta(hours=5))
    db.adopt_record("a", record("a", submitted=datetime(2024, 1, 1, 5, tzinfo=plus5)))
    db.merge_record("a", {"completed": datetime(2024, 1, 1, 6, tzinfo=plus5)})
    rec = db.get_record("a")
    assert rec["submitted"] == T0 and rec["submitted"].tzinfo is UTC
    assert rec["completed"].tzinfo is UTC


# -- DictDB culling -------------------------------------------------------------------


def _reference_survivors(events, limit, fraction):
    """What the culling rule of PROTOCOL.md §9 keeps, computed the slow way: after each
    add, when over the limit, drop the max(excess, int(fraction*limit)) oldest by
    ``submitted`` (None oldest), ties in the order the records were first added."""
    records = {}  # msg_id -> submitted, in first-insertion order
    for msg_id, submitted in events:
        records[msg_id] = submitted
        excess = len(records) - limit
        if excess > 0:
            count = max(excess, 1, int(fraction * limit))
            order = sorted(records, key=lambda m: (0, 0.0) if records[m] is None else (1, records[m].timestamp()))
            for m in order[:count]:
                del records[m]
    return records


@pytest.mark.parametrize("seed", range(6))
def test_dictdb_culling_matches_the_rule(seed):
    rng = random.Random(seed)
    limit, fraction = 20, 0.25
    events = []
    for i in range(200):
        kind = rng.random()
        if kind < 0.7:  # in order, the usual case
            events.append((f"t{i}", at(i)))
        elif kind < 0.8:  # out of order
            events.append((f"t{i}", at(i - rng.randrange(1, 40))))
        elif kind < 0.85:  # no submitted time (an output record made before its request)
            events.append((f"t{i}", None))
        elif kind < 0.9:  # equal times
            events.append((f"t{i}", at(i - 1)))
        elif events:  # a replacement of a live or culled record
            old = rng.choice(events)[0]
            events.append((old, at(i)))
    db = DictDB(record_limit=limit, cull_fraction=fraction, log=LOG)
    for msg_id, submitted in events:
        db.adopt_record(msg_id, record(msg_id, submitted=submitted))
    expected = _reference_survivors(events, limit, fraction)
    assert sorted(r["msg_id"] for r in db.find_records({})) == sorted(expected)
    # iteration (and so query) order stays the order of first insertion
    assert [r["msg_id"] for r in db.find_records({})] == list(expected)


def test_dictdb_culls_after_submitted_is_updated():
    db = DictDB(record_limit=4, cull_fraction=0.25, log=LOG)
    db.adopt_record("late", record("late", submitted=None))  # output before its request
    for i in range(1, 4):
        db.adopt_record(f"r{i}", record(f"r{i}", submitted=at(i)))
    db.merge_record("late", {"submitted": at(10)})  # the request arrives: now the youngest
    db.adopt_record("r4", record("r4", submitted=at(4)))
    assert sorted(r["msg_id"] for r in db.find_records({})) == ["late", "r2", "r3", "r4"]


def test_dictdb_limits_changed_at_runtime_apply():
    db = DictDB(record_limit=100, log=LOG)
    for i in range(10):
        db.adopt_record(f"r{i}", record(f"r{i}", submitted=at(i)))
    db.record_limit = 5
    db.cull_fraction = 0.0
    db.adopt_record("r10", record("r10", submitted=at(10)))
    assert sorted(r["msg_id"] for r in db.find_records({})) == sorted(f"r{i}" for i in range(6, 11))


# -- db_query records -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_query_records_match_find_records(tmp_path):
    for db in (DictDB(log=LOG), SQLiteDB(location=str(tmp_path), log=LOG)):
        try:
            for i in range(5):
                db.adopt_record(f"r{i}", record(f"r{i}", submitted=at(i), header={"msg_id": f"r{i}", "date": at(i)},
                                                result_buffers=[b"x" * i]))
            for keys in (None, ["submitted", "header"], ["result_buffers"]):
                query = {"submitted": {"$gte": at(2)}}
                shallow = await db.aquery_records(query, keys)
                full = await db.afind_records(query, keys)
                assert sorted(shallow, key=lambda r: r["msg_id"]) == sorted(full, key=lambda r: r["msg_id"])
                for rec in shallow:  # callers may drop top-level keys without touching the store
                    rec.pop("result_buffers", None)
                    rec.pop("header", None)
            assert db.get_record("r3")["header"] == {"msg_id": "r3", "date": at(3)}
            assert db.get_record("r3")["result_buffers"] == [b"xxx"]
        finally:
            db.close()


# -- IOPub monitor filter ----------------------------------------------------------------


def _recv(sock, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not sock.poll(50):
        assert time.monotonic() < deadline, "no message"
    return sock.recv_multipart()


def test_inverted_monitor_drops_only_muted_status_topics():
    ctx = zmq.Context()
    try:
        pub = relays.monitor_pub(ctx, "inproc://test-iopub-mon")
        sub = relays.monitor_sub(ctx, "inproc://test-iopub-mon")
        # with nothing muted, everything passes (once the connection is up)
        deadline = time.monotonic() + 10
        while True:
            pub.send_multipart([b"engine.1.status", b"probe"])
            if sub.poll(50):
                assert sub.recv_multipart() == [b"engine.1.status", b"probe"]
                break
            assert time.monotonic() < deadline
        while sub.poll(0):
            sub.recv_multipart()
        sub.setsockopt(zmq.SUBSCRIBE, b"engine.1.status")
        # the subscription reaches the PUB asynchronously: wait until a muted message is
        # overtaken by an unmuted one sent after it (messages keep their order)
        deadline = time.monotonic() + 10
        while True:
            pub.send_multipart([b"engine.1.status", b"muted?"])
            pub.send_multipart([b"engine.1.stdout", b"marker"])
            first = _recv(sub)
            if first == [b"engine.1.stdout", b"marker"]:
                break
            assert first == [b"engine.1.status", b"muted?"]
            assert _recv(sub) == [b"engine.1.stdout", b"marker"]
            assert time.monotonic() < deadline
        sent = [
            [b"engine.1.status", b"a"],  # muted
            [b"engine.10.status", b"b"],  # another engine: passes
            [b"engine.1.stdout", b"c"],
            [b"engine.1.shutdown", b"d"],
            [b"engine.2.status", b"e"],
            [b"", b"f"],
            [b"engine.1.status", b"g"],  # muted
            [b"end", b"h"],
        ]
        for msg in sent:
            pub.send_multipart(msg)
        got = []
        while not got or got[-1] != [b"end", b"h"]:
            got.append(_recv(sub))
        assert got == [m for m in sent if m[0] != b"engine.1.status"]
    finally:
        ctx.destroy(0)


# -- logging, SQLite encoding -------------------------------------------------------------


def test_app_logger_filters_below_log_level(tmp_path):
    app = ControllerApp()
    app.initialize(["--log-level=WARN", f"--profile-dir={tmp_path}"])
    assert not app.log.isEnabledFor(logging.INFO)
    assert app.log.isEnabledFor(logging.WARNING)
    app.log_level = logging.DEBUG
    assert app.log.isEnabledFor(logging.DEBUG)
    app.log_level = logging.ERROR
    assert not app.log.isEnabledFor(logging.WARNING)


def test_sqlite_json_columns_encode_as_json_dumps():
    value = {"msg_id": "x", "date": at(1), "ids": ("a", "b"), "s": {"z"}, "n": 1.5, "u": "é\u2028",
             "nested": [{"d": at(2)}]}
    assert encode_value("header", "json", value, LOG) == json.dumps(value, default=_json_default)
