"""Task-record stores: DictDB, SQLiteDB and NoDB."""

import asyncio
import gc
import logging
import sqlite3
import threading
import weakref
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import zmq
from support.procs import wait_for
from support.records import record
from traitlets.utils.importstring import import_item

from jupyter_hub_ctl.controller.db import (
    DB_CLASSES,
    BaseDB,
    DictDB,
    NoData,
    NoDB,
    SQLiteDB,
)
from jupyter_hub_ctl.controller.db.base import RECORD_KEYS, DBOpenError

UTC = timezone.utc
T0 = datetime(2024, 1, 1, tzinfo=UTC)
PLUS5 = timezone(timedelta(hours=5))
LOG = logging.getLogger("test_db")


def hours(n):
    return T0 + timedelta(hours=n)


def open_sqlite(tmp_path, **kwargs):
    kwargs.setdefault("commit_interval", 3600.0)
    return SQLiteDB(location=str(tmp_path), log=LOG, **kwargs)


@pytest.fixture(params=["dictdb", "sqlitedb"])
def db(request, tmp_path):
    if request.param == "dictdb":
        store = DictDB(log=LOG)
    else:
        store = open_sqlite(tmp_path)
    yield store
    store.close()


@pytest.fixture
def sdb(tmp_path):
    store = open_sqlite(tmp_path)
    yield store
    store.close()


def ids(records):
    return sorted(r["msg_id"] for r in records)


# -- shared behaviour ----------------------------------------------------------


def test_add_get_roundtrip(db):
    rec = record(
        "a",
        header={"msg_id": "a", "date": hours(1), "session": "s"},
        metadata={"label": "x"},
        content={"code": "1+1"},
        buffers=[
            b"one",
            bytearray(b"two"),
            memoryview(b"three"),
            zmq.Frame(b"four"),
            b"",
        ],
        submitted=datetime(2024, 1, 1, 6, tzinfo=PLUS5),
        client_uuid="c1",
        engine_uuid="e1",
        result_header={"msg_id": "r", "date": hours(2)},
        result_buffers=[np.arange(4, dtype="u1")],
        queue="task",
        execute_result={"data": {"text/plain": "2"}, "execution_count": 1},
        error={"ename": "E", "evalue": "v", "traceback": []},
        stdout="out",
        label="lbl",
        display_data=[{"data": {"text/plain": "d"}}],
    )
    db.add_record("a", rec)
    got = db.get_record("a")
    assert got["buffers"] == [b"one", b"two", b"three", b"four", b""]
    assert all(type(b) is bytes for b in got["buffers"] + got["result_buffers"])
    assert got["result_buffers"] == [bytes([0, 1, 2, 3])]
    assert got["submitted"] == hours(1)
    assert got["submitted"].utcoffset() == timedelta(0)
    assert got["header"] == {"msg_id": "a", "date": hours(1), "session": "s"}
    assert got["result_header"]["date"] == hours(2)
    assert got["execute_result"] == rec["execute_result"]
    assert got["error"] == rec["error"]
    assert got["display_data"] == rec["display_data"]
    for key in (
        "client_uuid",
        "engine_uuid",
        "queue",
        "stdout",
        "label",
        "content",
        "metadata",
    ):
        assert got[key] == rec[key], key
    assert got["completed"] is None and got["started"] is None


def test_missing_record_raises_keyerror(db):
    with pytest.raises(KeyError, match="nope"):
        db.get_record("nope")


def test_update_merges_fields(db):
    db.add_record("a", record("a", engine_uuid="e1", stdout="x"))
    db.update_record(
        "a", {"completed": hours(3), "stdout": "xy", "result_buffers": [b"r"]}
    )
    got = db.get_record("a")
    assert got["completed"] == hours(3)
    assert got["stdout"] == "xy"
    assert got["engine_uuid"] == "e1"
    assert got["result_buffers"] == [b"r"]


def test_add_replaces_existing(db):
    db.add_record("a", record("a", label="first", engine_uuid="e1"))
    db.add_record("a", record("a", label="second"))
    got = db.get_record("a")
    assert got["label"] == "second" and got["engine_uuid"] is None


def test_drop_record_then_update_raises(db):
    db.add_record("a", record("a"))
    db.add_record("b", record("b"))
    db.drop_record("a")
    with pytest.raises(KeyError):
        db.update_record("a", {"stdout": "late"})
    db.drop_record("never-existed")
    assert ids(db.find_records({})) == ["b"]
    with pytest.raises(KeyError):
        db.get_record("a")


def test_update_missing_dictdb_raises():
    db = DictDB()
    with pytest.raises(KeyError, match="zzz"):
        db.update_record("zzz", {"stdout": "x"})


def test_find_with_keys(db):
    db.add_record(
        "a", record("a", engine_uuid="e1", buffers=[b"x"], submitted=hours(1))
    )
    db.add_record("b", record("b", engine_uuid="e2"))
    found = db.find_records({"engine_uuid": "e1"}, keys=["submitted", "buffers"])
    assert found == [{"msg_id": "a", "submitted": hours(1), "buffers": [b"x"]}]
    only_ids = db.find_records({}, keys=["msg_id"])
    assert sorted(only_ids, key=lambda r: r["msg_id"]) == [
        {"msg_id": "a"},
        {"msg_id": "b"},
    ]
    assert sorted(r["msg_id"] for r in db.find_records({}, keys=[])) == ["a", "b"]


def test_find_unknown_key_in_keys_raises(db):
    db.add_record("a", record("a"))
    with pytest.raises(KeyError, match="bogus"):
        db.find_records({}, keys=["msg_id", "bogus"])


def test_history_ordered_by_submitted(db):
    db.add_record("late", record("late", submitted=hours(5)))
    db.add_record("none", record("none", submitted=None))
    db.add_record(
        "early", record("early", submitted=datetime(2024, 1, 1, 5, tzinfo=PLUS5))
    )
    db.add_record("mid", record("mid", submitted=hours(2)))
    assert db.get_history() == ["early", "mid", "late"]


def test_returned_records_are_copies(db):
    db.add_record("a", record("a", header={"k": 1}, buffers=[b"x"]))
    got = db.get_record("a")
    got["header"]["k"] = 2
    got["buffers"].append(b"y")
    got["stdout"] = "mutated"
    found = db.find_records({}, keys=["header"])[0]
    found["header"]["k"] = 3
    again = db.get_record("a")
    assert again["header"] == {"k": 1}
    assert again["buffers"] == [b"x"]
    assert again["stdout"] == ""


def test_stored_record_independent_of_caller_dict(db):
    rec = record("a", header={"k": 1})
    db.add_record("a", rec)
    rec["header"]["k"] = 99
    rec["stdout"] = "changed"
    got = db.get_record("a")
    assert got["header"] == {"k": 1} and got["stdout"] == ""


# -- query operators -------------------------------------------------------------

DATASET = {
    "a": dict(
        submitted=hours(1),
        completed=hours(2),
        engine_uuid="e1",
        label="alpha",
        buffers=[b"x", b"y"],
        queue="task",
        content={"code": "x"},
        stdout="hello world",
        execute_result={"data": {}},
    ),
    "b": dict(
        submitted=hours(2),
        engine_uuid="e2",
        label="beta",
        buffers=[b"x"],
        queue="mux",
        content={"code": "y"},
    ),
    "c": dict(
        submitted=hours(3),
        completed=hours(4),
        engine_uuid=None,
        label=None,
        queue="task",
    ),
    "d": dict(submitted=None, engine_uuid="e1", label="alphabet", buffers=[b"z"]),
    "e": dict(submitted=hours(4), engine_uuid="", label=7),
}
ALL = sorted(DATASET)
MANY_IDS = [f"other-{i}" for i in range(500)]

QUERIES = [
    ({}, ALL),
    ({"engine_uuid": "e1"}, ["a", "d"]),
    ({"engine_uuid": None}, ["c"]),
    ({"submitted": None}, ["d"]),
    ({"submitted": hours(2)}, ["b"]),
    ({"submitted": datetime(2024, 1, 1, 7, tzinfo=PLUS5)}, ["b"]),
    ({"content": {"code": "x"}}, ["a"]),
    ({"label": 7}, ["e"]),
    ({"queue": "task", "engine_uuid": "e1"}, ["a"]),
    # ordering
    ({"submitted": {"$gt": hours(2)}}, ["c", "e"]),
    ({"submitted": {"$gt": hours(4)}}, []),
    ({"submitted": {"$gte": hours(2)}}, ["b", "c", "e"]),
    ({"submitted": {"$lt": hours(2)}}, ["a"]),
    ({"submitted": {"$lt": hours(1)}}, []),
    ({"submitted": {"$lte": hours(2)}}, ["a", "b"]),
    ({"submitted": {"$gt": hours(1), "$lt": hours(4)}}, ["b", "c"]),
    (
        {"submitted": {"$gt": datetime(2024, 1, 1, 6, 30, tzinfo=PLUS5)}},
        ["b", "c", "e"],
    ),
    ({"completed": {"$gt": T0}}, ["a", "c"]),
    ({"submitted": {"$gt": None}}, []),
    ({"engine_uuid": {"$gt": "e1"}}, ["b"]),
    ({"engine_uuid": {"$lt": "e2"}}, ["a", "d", "e"]),
    ({"label": {"$gt": "b"}}, ["b"]),
    ({"label": {"$lt": "b"}}, ["a", "d"]),
    # equality operators
    ({"engine_uuid": {"$eq": "e2"}}, ["b"]),
    ({"engine_uuid": {"$eq": None}}, ["c"]),
    ({"engine_uuid": {"$ne": "e1"}}, ["b", "c", "e"]),
    ({"engine_uuid": {"$ne": None}}, ["a", "b", "d", "e"]),
    ({"submitted": {"$ne": hours(1)}}, ["b", "c", "d", "e"]),
    # membership
    ({"engine_uuid": {"$in": ["e2", ""]}}, ["b", "e"]),
    ({"engine_uuid": {"$in": ["e2", None]}}, ["b", "c"]),
    ({"engine_uuid": {"$in": [None]}}, ["c"]),
    ({"engine_uuid": {"$in": []}}, []),
    ({"engine_uuid": {"$nin": ["e1"]}}, ["b", "c", "e"]),
    ({"engine_uuid": {"$nin": ["e1", None]}}, ["b", "e"]),
    ({"engine_uuid": {"$nin": []}}, ALL),
    ({"submitted": {"$in": [hours(1), hours(4)]}}, ["a", "e"]),
    ({"submitted": {"$nin": [hours(1), None]}}, ["b", "c", "e"]),
    ({"msg_id": {"$in": MANY_IDS + ["a", "b"]}}, ["a", "b"]),
    ({"msg_id": {"$nin": MANY_IDS + ["a"]}}, ["b", "c", "d", "e"]),
    ({"label": {"$in": [7, "beta"]}}, ["b", "e"]),
    # $all
    ({"buffers": {"$all": [b"x", b"y"]}}, ["a"]),
    ({"buffers": {"$all": [b"x"]}}, ["a", "b"]),
    ({"buffers": {"$all": [b"x", b"q"]}}, []),
    ({"buffers": {"$all": []}}, []),
    ({"label": {"$all": ["beta"]}}, ["b"]),
    ({"label": {"$all": ["beta", "alpha"]}}, []),
    # $mod
    ({"label": {"$mod": [5, 2]}}, ["e"]),
    ({"label": {"$mod": [5, 3]}}, []),
    # $exists
    ({"completed": {"$exists": True}}, ["a", "c"]),
    ({"completed": {"$exists": False}}, ["b", "d", "e"]),
    ({"execute_result": {"$exists": True}}, ["a"]),
    # $glob
    ({"label": {"$glob": "alpha*"}}, ["a", "d"]),
    ({"label": {"$glob": "?eta"}}, ["b"]),
    ({"label": {"$glob": "[ab]*"}}, ["a", "b", "d"]),
    ({"label": {"$glob": "[!a]*"}}, ["b"]),
    ({"label": {"$glob": "*"}}, ["a", "b", "d"]),
    ({"label": {"$glob": "ALPHA*"}}, []),
    ({"stdout": {"$glob": "*world"}}, ["a"]),
    ({"engine_uuid": {"$glob": "e?", "$ne": "e2"}}, ["a", "d"]),
]


@pytest.fixture
def loaded(db):
    for msg_id, fields in DATASET.items():
        db.add_record(msg_id, record(msg_id, **fields))
    return db


@pytest.mark.parametrize(
    "query, expected", QUERIES, ids=[repr(q)[:60] for q, _ in QUERIES]
)
def test_query_operators(loaded, query, expected):
    assert ids(loaded.find_records(query)) == expected
    assert ids(loaded.find_records(query, keys=["msg_id"])) == expected


def test_unsupported_operator(loaded):
    with pytest.raises(ValueError, match=r"Unsupported operator \$xyz"):
        loaded.find_records({"label": {"$xyz": 1}})
    with pytest.raises(ValueError, match=r"Unsupported operator \$le"):
        loaded.drop_matching_records({"submitted": {"$le": T0}})
    assert ids(loaded.find_records({})) == ALL


@pytest.mark.parametrize(
    "query",
    [
        {"label": {"$in": "abc"}},
        {"label": {"$mod": [0, 1]}},
        {"label": {"$mod": [2]}},
        {"label": {"$glob": 5}},
        {"label": {"$eq": 1, "plain": 2}},
    ],
)
def test_malformed_operator_argument(loaded, query):
    with pytest.raises(ValueError):
        loaded.find_records(query)


def test_drop_matching_records(loaded):
    loaded.drop_matching_records({"completed": {"$ne": None}})
    assert ids(loaded.find_records({})) == ["b", "d", "e"]
    loaded.drop_matching_records({"buffers": {"$all": [b"x"]}})
    assert ids(loaded.find_records({})) == ["d", "e"]
    loaded.drop_matching_records({"label": "nothing"})
    assert ids(loaded.find_records({})) == ["d", "e"]
    loaded.drop_matching_records({})
    assert loaded.find_records({}) == []


def test_unknown_query_key_dictdb_matches_as_none():
    db = DictDB()
    db.add_record("a", record("a"))
    assert ids(db.find_records({"nope": None})) == ["a"]
    assert db.find_records({"nope": 1}) == []
    assert db.find_records({"nope": {"$exists": True}}) == []


def test_unknown_query_key_sqlite_raises(sdb):
    sdb.add_record("a", record("a"))
    with pytest.raises(KeyError, match="nope"):
        sdb.find_records({"nope": None})
    with pytest.raises(KeyError, match="nope"):
        sdb.drop_matching_records({"nope": {"$gt": 1}})
    assert ids(sdb.find_records({})) == ["a"]


@pytest.mark.asyncio
async def test_async_twins(loaded):
    assert ids(await loaded.afind_records({"engine_uuid": "e1"})) == ["a", "d"]
    found = await loaded.afind_records({"submitted": {"$gt": hours(3)}}, keys=["label"])
    assert found == [{"msg_id": "e", "label": 7}]
    assert (await loaded.aget_record("b"))["label"] == "beta"
    with pytest.raises(KeyError):
        await loaded.aget_record("zzz")
    assert await loaded.aget_history() == ["a", "b", "c", "e"]
    await loaded.adrop_matching_records({"label": {"$glob": "alpha*"}})
    assert await loaded.aflush() is True
    assert ids(await loaded.afind_records({})) == ["b", "c", "e"]


def test_health_ok(db):
    health = db.health()
    assert health["ok"] is True and health["error"] is None
    assert health["backend"] == {DictDB: "dictdb", SQLiteDB: "sqlitedb"}[type(db)]
    assert db.flush() is True


# -- DictDB ------------------------------------------------------------------------


def test_dictdb_culls_oldest_by_count():
    db = DictDB(record_limit=10, cull_fraction=0.2)
    for i in [3, 7, 0, 9, 1, 5, 8, 2, 6, 4]:
        db.add_record(f"r{i}", record(f"r{i}", submitted=hours(i)))
    assert len(db.find_records({})) == 10
    db.add_record("n", record("n", submitted=None))
    assert ids(db.find_records({})) == [f"r{i}" for i in range(1, 10)]
    with pytest.raises(KeyError, match="culled"):
        db.get_record("r0")
    with pytest.raises(KeyError, match="culled"):
        db.get_record("n")
    with pytest.raises(KeyError, match="culled"):
        db.update_record("r0", {"stdout": "x"})
    with pytest.raises(KeyError) as info:
        db.get_record("never")
    assert "culled" not in str(info.value)
    db.add_record("r0", record("r0", submitted=hours(20)))
    assert db.get_record("r0")["submitted"] == hours(20)


def test_dictdb_culls_by_bytes():
    db = DictDB(size_limit=1000, cull_fraction=0.5)
    for i in range(5):
        db.add_record(
            f"r{i}", record(f"r{i}", submitted=hours(i), buffers=[b"x" * 200])
        )
    assert db.nbytes == 1000 and len(db.find_records({})) == 5
    db.add_record(
        "r5", record("r5", submitted=hours(5), buffers=[b"x" * 100, b"y" * 100])
    )
    assert ids(db.find_records({})) == ["r4", "r5"]
    assert db.nbytes == 400 == db.health()["bytes"]
    with pytest.raises(KeyError, match="culled"):
        db.get_record("r0")


def test_dictdb_byte_total_follows_updates_and_drops():
    db = DictDB(size_limit=10_000)
    db.add_record("a", record("a", submitted=hours(1), buffers=[b"12345"]))
    db.add_record("b", record("b", submitted=hours(2), buffers=[b"1"]))
    db.update_record("a", {"result_buffers": [b"x" * 100]})
    assert db.nbytes == 106
    db.update_record("a", {"buffers": []})
    assert db.nbytes == 101
    db.drop_record("b")
    assert db.nbytes == 100
    db.drop_matching_records({})
    assert db.nbytes == 0
    db.add_record("c", record("c", submitted=hours(3), buffers=[b"1"]))
    db.update_record("c", {"result_buffers": [b"x" * 20_000]})
    assert db.nbytes == 0
    with pytest.raises(KeyError, match="culled"):
        db.get_record("c")


def test_dictdb_copies_share_buffer_bytes():
    db = DictDB()
    db.add_record("a", record("a", buffers=[b"x" * 1000]))
    first, second = db.get_record("a"), db.get_record("a")
    assert first["buffers"] is not second["buffers"]
    assert first["buffers"][0] is second["buffers"][0]


def test_dictdb_naive_datetimes_compare_with_aware():
    db = DictDB()
    naive = datetime(2024, 1, 1, 12, 0)
    db.add_record("a", record("a", submitted=naive))
    got = db.get_record("a")["submitted"]
    assert got.tzinfo is not None and got == naive.astimezone(UTC)
    assert ids(db.find_records({"submitted": {"$gt": naive - timedelta(1)}})) == ["a"]


# -- SQLiteDB -----------------------------------------------------------------------


def test_sqlite_coalesces_writes(sdb):
    sdb.add_record("a", record("a", stdout=""))
    sdb.update_record("a", {"stdout": "1"})
    sdb.update_record("a", {"engine_uuid": "e1"})
    sdb.update_record("a", {"stdout": "12", "completed": hours(1)})
    assert sdb.health()["pending"] == 1
    assert sdb.flush() is True
    assert sdb.stats["inserts"] == 1 and sdb.stats["updates"] == 0
    assert sdb.stats["commits"] == 1
    got = sdb.get_record("a")
    assert (got["stdout"], got["engine_uuid"], got["completed"]) == (
        "12",
        "e1",
        hours(1),
    )

    sdb.add_record("b", record("b"))
    sdb.flush()
    commits = sdb.stats["commits"]
    for n in range(5):
        sdb.update_record("a", {"stderr": str(n)})
        sdb.update_record("b", {"stderr": str(n), "label": "L"})
    sdb.flush()
    assert sdb.stats["updates"] == 2
    assert sdb.stats["commits"] == commits + 1
    assert sdb.get_record("a")["stderr"] == "4"
    assert sdb.get_record("b")["label"] == "L"


def test_sqlite_read_sees_unflushed_write(sdb):
    assert sdb.stats["commits"] == 0
    sdb.add_record("a", record("a", label="x"))
    assert sdb.health()["pending"] == 1
    assert sdb.get_record("a")["label"] == "x"
    assert sdb.stats["commits"] == 1
    sdb.update_record("a", {"label": "y"})
    assert sdb.find_records({"label": "y"}, keys=["label"]) == [
        {"msg_id": "a", "label": "y"}
    ]
    sdb.add_record("b", record("b", submitted=hours(1)))
    assert sdb.get_history() == ["b"]


def test_sqlite_commits_on_interval(tmp_path):
    db = open_sqlite(tmp_path, commit_interval=0.02)
    try:
        db.add_record("a", record("a"))
        wait_for(lambda: db.stats["commits"] == 1 and db.health()["pending"] == 0, 10, "one commit, nothing pending", 0.005)
    finally:
        db.close()
    with sqlite3.connect(db.path) as conn:
        assert conn.execute("SELECT msg_id FROM hubctl_tasks").fetchall() == [("a",)]


def test_sqlite_max_batch_starts_commit_and_splits_transactions(tmp_path):
    db = open_sqlite(tmp_path, max_batch=5)
    try:
        for i in range(5):
            db.add_record(f"r{i}", record(f"r{i}"))
        wait_for(lambda: db.stats["commits"] >= 1, 10, "a commit", 0.005)
        for i in range(5, 17):
            db.add_record(f"r{i}", record(f"r{i}"))
        assert db.flush() is True
        assert db.stats["inserts"] == 17
        assert db.stats["commits"] >= 4
        assert len(db.find_records({}, keys=[])) == 17
    finally:
        db.close()


def test_sqlite_drop_matching_keeps_write_order(sdb):
    sdb.add_record("a", record("a", label="first"))
    sdb.drop_matching_records({"label": "first"})
    sdb.add_record("a", record("a", label="second"))
    sdb.add_record("b", record("b", label="first"))
    sdb.drop_matching_records({"label": {"$all": ["first"]}})
    assert ids(sdb.find_records({})) == ["a"]
    assert sdb.get_record("a")["label"] == "second"


def test_sqlite_update_of_absent_record_is_counted(sdb):
    sdb.update_record("ghost", {"stdout": "x"})
    assert sdb.flush() is True
    assert sdb.stats["missed_updates"] == 1
    with pytest.raises(KeyError):
        sdb.get_record("ghost")


def test_sqlite_persists_across_reopen(tmp_path):
    db = open_sqlite(tmp_path)
    rec = record(
        "a",
        header={"date": hours(1), "msg_id": "a"},
        submitted=hours(1),
        buffers=[b"\x00\xff" * 10, b""],
        execute_result={"data": {"text/plain": "1"}},
    )
    db.add_record("a", rec)
    db.add_record("b", record("b", submitted=hours(0)))
    db.update_record("b", {"completed": hours(2)})
    path = db.path
    db.close()
    assert not db.health()["pending"]
    again = open_sqlite(tmp_path)
    try:
        assert again.path == path
        got = again.get_record("a")
        for key in RECORD_KEYS:
            assert got[key] == rec[key], key
        assert again.get_history() == ["b", "a"]
        assert again.get_record("b")["completed"] == hours(2)
    finally:
        again.close()


def test_sqlite_stores_dates_as_sortable_utc_text(sdb):
    sdb.add_record("a", record("a", submitted=datetime(2024, 1, 1, 6, tzinfo=PLUS5)))
    sdb.flush()
    with sqlite3.connect(sdb.path) as conn:
        (text,) = conn.execute("SELECT submitted FROM hubctl_tasks").fetchone()
    assert text == "2024-01-01T01:00:00.000000+00:00"


def test_sqlite_buffers_are_framed_not_pickled(sdb):
    sdb.add_record("a", record("a", buffers=[b"ab", b"c"]))
    sdb.flush()
    with sqlite3.connect(sdb.path) as conn:
        (blob,) = conn.execute("SELECT buffers FROM hubctl_tasks").fetchone()
    assert (
        blob
        == b"\x02\x00\x00\x00"
        + b"\x02"
        + b"\x00" * 7
        + b"ab"
        + b"\x01"
        + b"\x00" * 7
        + b"c"
    )


def test_sqlite_schema_mismatch_uses_numbered_table(tmp_path, caplog):
    path = tmp_path / "tasks.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE hubctl_tasks (msg_id text PRIMARY KEY, foo text)")
        conn.execute("INSERT INTO hubctl_tasks VALUES ('old', 'bar')")
    conn.close()
    with caplog.at_level(logging.WARNING, logger="test_db"):
        db = open_sqlite(tmp_path)
    try:
        assert db.active_table == "hubctl_tasks_1"
        assert "hubctl_tasks_1" in caplog.text
        db.add_record("new", record("new"))
    finally:
        db.close()
    again = open_sqlite(tmp_path)
    try:
        assert again.active_table == "hubctl_tasks_1"
        assert ids(again.find_records({})) == ["new"]
    finally:
        again.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT * FROM hubctl_tasks").fetchall() == [("old", "bar")]
    conn.close()


def test_sqlite_corrupt_file_names_the_file(tmp_path):
    path = tmp_path / "tasks.db"
    path.write_bytes(b"this is certainly not an sqlite database " * 200)
    before = threading.active_count()
    with pytest.raises(DBOpenError, match="tasks.db") as info:
        open_sqlite(tmp_path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    assert threading.active_count() == before


def test_sqlite_disk_full_keeps_records_and_recovers(tmp_path):
    db = open_sqlite(tmp_path, max_page_count=12)
    try:
        payload = [bytes([i]) * 8000 for i in range(3)]
        for i in range(10):
            db.add_record(f"r{i}", record(f"r{i}", submitted=hours(i), buffers=payload))
        assert db.flush() is False
        health = db.health()
        assert health["ok"] is False
        assert "full" in health["error"]
        assert health["pending"] == 10
        assert db.stats["failed_flushes"] >= 1

        db.update_record("r0", {"stdout": "written while full"})
        assert db.flush() is False
        assert db.health()["pending"] == 10

        db.max_page_count = 0
        assert db.flush() is True
        assert db.health() == {**db.health(), "ok": True, "error": None, "pending": 0}
        found = db.find_records({}, keys=["buffers", "stdout"])
        assert ids(found) == [f"r{i}" for i in range(10)]
        assert all(r["buffers"] == payload for r in found)
        assert db.get_record("r0")["stdout"] == "written while full"
    finally:
        db.close()


def test_sqlite_failed_writes_are_retried_in_the_background(tmp_path):
    db = open_sqlite(tmp_path, max_page_count=12, commit_interval=0.01)
    try:
        for i in range(10):
            db.add_record(f"r{i}", record(f"r{i}", buffers=[b"x" * 8000]))
        wait_for(lambda: db.health()["ok"] is False, 10, "the store to report its failure", 0.005)
        assert db.health()["pending"] == 10
        db.max_page_count = 0
        wait_for(lambda: db.health()["ok"] and db.health()["pending"] == 0, 10, "the store to recover with nothing pending", 0.005)
        assert db.stats["inserts"] == 10
    finally:
        db.close()
    with sqlite3.connect(db.path) as conn:
        assert conn.execute("SELECT count(*) FROM hubctl_tasks").fetchone() == (10,)
    conn.close()


def test_sqlite_concurrent_writers_and_readers(tmp_path):
    db = open_sqlite(tmp_path, commit_interval=0.001, max_batch=50)
    errors = []

    def writer(n):
        try:
            for i in range(300):
                msg_id = f"w{n}-{i}"
                db.add_record(msg_id, record(msg_id, submitted=hours(i), stdout=""))
                db.update_record(msg_id, {"stdout": "a"})
                if i % 50 == 0:
                    db.find_records({"msg_id": msg_id}, keys=["stdout"])
                db.update_record(msg_id, {"stdout": "ab", "engine_uuid": f"e{n}"})
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        found = db.find_records({"stdout": "ab"}, keys=["engine_uuid"])
        assert len(found) == 1200
        assert all(r["engine_uuid"] == "e" + r["msg_id"][1] for r in found)
        assert db.health()["ok"] is True
    finally:
        db.close()


def test_sqlite_flushed_buffers_leave_memory(sdb):
    array = np.arange(1000, dtype="u1")
    ref = weakref.ref(array)
    sdb.add_record("a", record("a", buffers=[array]))
    del array
    gc.collect()
    assert ref() is not None  # still queued
    assert sdb.flush() is True
    gc.collect()
    assert ref() is None
    assert sdb.get_record("a")["buffers"] == [bytes(np.arange(1000, dtype="u1"))]


def test_sqlite_ten_thousand_msg_ids(sdb):
    all_ids = [f"msg-{i:05d}" for i in range(10_000)]
    for msg_id in all_ids:
        sdb.add_record(msg_id, record(msg_id, buffers=[b"x" * 100], submitted=T0))
    found = sdb.find_records({}, keys=["msg_id"])
    assert len(found) == 10_000
    assert sorted(r["msg_id"] for r in found) == all_ids
    assert all(r.keys() == {"msg_id"} for r in found)
    subset = sdb.find_records({"msg_id": {"$in": all_ids[::2]}}, keys=["msg_id"])
    assert len(subset) == 5_000


def test_sqlite_unknown_record_key_is_dropped_not_fatal(sdb, caplog):
    with caplog.at_level(logging.WARNING, logger="test_db"):
        sdb.add_record("a", {**record("a"), "weird": 1})
    assert "weird" in caplog.text
    assert sdb.get_record("a")["msg_id"] == "a"


def test_sqlite_close_stops_thread_and_rejects_use(tmp_path):
    before = threading.active_count()
    db = open_sqlite(tmp_path)
    assert threading.active_count() == before + 1
    db.add_record("a", record("a"))
    db.close()
    assert threading.active_count() == before
    db.close()
    assert db.health()["closed"] is True
    with pytest.raises(RuntimeError, match="closed"):
        db.add_record("b", record("b"))
    with pytest.raises(RuntimeError, match="closed"):
        db.find_records({})


@pytest.mark.asyncio
async def test_sqlite_async_reads_wait_without_blocking_loop(sdb):
    sdb.add_record("a", record("a", submitted=T0))
    release = threading.Event()
    blocker = sdb._submit(release.wait)
    task = asyncio.ensure_future(sdb.aget_history())
    ticks = 0
    while ticks < 20:
        await asyncio.sleep(0)
        ticks += 1
    assert not task.done()
    release.set()
    assert await task == ["a"]
    assert blocker.result() is True


# -- NoDB and registry ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_nodb_keeps_nothing():
    db = NoDB()
    db.add_record("a", record("a"))
    db.update_record("a", {"stdout": "x"})
    db.drop_record("a")
    db.drop_matching_records({})
    assert db.flush() is True and db.health()["ok"] is True
    for call in (
        lambda: db.get_record("a"),
        lambda: db.find_records({}),
        db.get_history,
    ):
        with pytest.raises(NoData, match="NoDB"):
            call()
    with pytest.raises(KeyError):
        db.get_record("a")
    with pytest.raises(NoData):
        await db.afind_records({})
    with pytest.raises(NoData):
        await db.aget_record("a")
    with pytest.raises(NoData):
        await db.aget_history()
    db.close()


def test_db_classes_resolve():
    assert set(DB_CLASSES) == {"dictdb", "sqlitedb", "nodb"}
    resolved = {name: import_item(path) for name, path in DB_CLASSES.items()}
    assert resolved == {"dictdb": DictDB, "sqlitedb": SQLiteDB, "nodb": NoDB}
    assert all(issubclass(cls, BaseDB) for cls in resolved.values())


@pytest.mark.parametrize("cls", [DictDB, SQLiteDB])
def test_every_trait_is_configurable_with_help(cls):
    own = set(cls.class_own_traits()) - {"log", "parent", "config"}
    assert own
    for name in own:
        trait = cls.class_traits()[name]
        assert trait.metadata.get("config") is True, name
        assert trait.help, name


def test_sql_translation_covers_what_sql_can_express():
    from jupyter_hub_ctl.controller.db.query import parse_query, to_sql
    from jupyter_hub_ctl.controller.db.sqlformat import KINDS

    in_sql = {
        "submitted": {"$gt": T0, "$lte": T0, "$in": [T0, None], "$ne": None},
        "engine_uuid": {"$eq": "e", "$nin": ["a"], "$glob": "e*", "$lt": "z"},
        "msg_id": {"$in": MANY_IDS},
        "completed": {"$exists": False},
        "header": None,
    }
    where, params, rest = to_sql(parse_query(in_sql), KINDS)
    assert rest == [] and where.count("?") == len(params)
    assert params[0] == "2024-01-01T00:00:00.000000+00:00"
    in_python = {
        "buffers": {"$all": [b"x"]},
        "label": {"$mod": [2, 0], "$glob": "[ab]*"},
        "content": {"code": "x"},
    }
    where, params, rest = to_sql(parse_query(in_python), KINDS)
    assert where == "1" and params == []
    assert [c.op for c in rest] == ["$all", "$mod", "$glob", "$eq"]
