"""The task stream of each store: records by the Hub's change stamp."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest
from support.records import record

from jupyter_hub_ctl.controller.db import DictDB, NoDB, SQLiteDB
from jupyter_hub_ctl.controller.db.sqlformat import COLUMNS, DECLARED

LOG = logging.getLogger("test_db_stream")
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def open_sqlite(tmp_path):
    return SQLiteDB(location=str(tmp_path), log=LOG, commit_interval=3600.0)


@pytest.fixture(params=["dictdb", "sqlitedb", "nodb"])
def store(request, tmp_path):
    s = {"dictdb": lambda: DictDB(log=LOG), "sqlitedb": lambda: open_sqlite(tmp_path),
         "nodb": lambda: NoDB(log=LOG)}[request.param]()
    yield s
    s.close()


def submit(db, msg_id, changed, **fields):
    db.add_record(msg_id, record(msg_id, submitted=T0, name="f", changed=changed, **fields))


def stream(db, since, until, limit=100):
    rows, truncated = db.task_stream(since, until, limit)
    return [r["msg_id"] for r in rows], truncated


def test_changes_in_a_window_newest_first(store):
    for i in range(5):
        submit(store, f"m{i}", 10.0 + i, label="lbl" if i == 2 else None)
    store.update_record("m1", {"engine_uuid": "e", "changed": 20.0})
    store.update_record("m3", {"completed": T0 + timedelta(seconds=3), "started": T0,
                               "result_content": {"status": "error"}, "changed": 21.0})
    store.update_record("m0", {"stdout": "no stamp: not a change of the stream"})
    assert stream(store, None, 100.0) == (["m3", "m1", "m4", "m2", "m0"], False)
    assert stream(store, 12.0, 100.0) == (["m3", "m1", "m4"], False)
    assert stream(store, 12.0, 20.0) == (["m1", "m4"], False)  # later changes: not yet
    assert stream(store, 21.0, 100.0) == ([], False)
    assert stream(store, None, 100.0, limit=2) == (["m3", "m1"], True)  # no since: the newest
    assert stream(store, 12.0, 100.0, limit=2) == (["m1", "m4"], True)  # after a since: the oldest
    assert stream(store, 20.0, 100.0, limit=2) == (["m3"], False)  # ... and from the last of them on
    assert stream(store, 12.0, 100.0, limit=3) == (["m3", "m1", "m4"], False)
    rows = {r["msg_id"]: r for r in store.task_stream(None, 100.0, 10)[0]}
    assert rows["m3"] == {"msg_id": "m3", "engine_uuid": None, "name": "f", "label": None, "submitted": T0,
                          "started": T0, "completed": T0 + timedelta(seconds=3), "changed": 21.0,
                          "status": "error"}
    assert rows["m1"]["engine_uuid"] == "e" and rows["m1"]["status"] is None
    assert rows["m2"]["label"] == "lbl"


def test_dropped_records_leave_the_stream(store):
    for i in range(4):
        submit(store, f"m{i}", float(i + 1), completed=T0 if i < 2 else None)
    store.drop_record("m3")
    store.drop_matching_records({"completed": {"$ne": None}})
    assert stream(store, None, 10.0) == (["m2"], False)


def test_async_form_gives_the_same(store):
    submit(store, "a", 1.0)
    assert asyncio.run(store.atask_stream(None, 2.0, 5)) == store.task_stream(None, 2.0, 5)


def test_sqlite_stream_is_a_range_scan_of_the_changed_index(tmp_path):
    db = open_sqlite(tmp_path)
    try:
        submit(db, "a", 1.0)
        db.flush()
    finally:
        db.close()
    conn = sqlite3.connect(tmp_path / "tasks.db")
    try:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT msg_id FROM hubctl_tasks WHERE changed <= ? AND changed > ? "
            "ORDER BY changed DESC LIMIT ?", (2.0, 0.0, 10)).fetchall()
    finally:
        conn.close()
    detail = " ".join(row[-1] for row in plan)
    assert "USING INDEX hubctl_tasks_changed_idx (changed>? AND changed<?)" in detail, detail
    assert "TEMP B-TREE" not in detail  # the index gives the order: no sort


def test_sqlite_table_of_an_earlier_layout_gets_the_new_columns(tmp_path):
    old = [(c, k) for c, k in COLUMNS if c not in ("name", "changed")]
    cols = ", ".join(f'"{c}" TEXT PRIMARY KEY' if c == "msg_id" else f'"{c}" {DECLARED[k]}'.rstrip() for c, k in old)
    conn = sqlite3.connect(tmp_path / "tasks.db")
    conn.execute(f"CREATE TABLE hubctl_tasks ({cols})")
    conn.execute("INSERT INTO hubctl_tasks (msg_id, stdout) VALUES ('old', 'kept')")
    conn.commit()
    conn.close()
    db = open_sqlite(tmp_path)
    try:
        assert db.active_table == "hubctl_tasks"
        assert db.get_record("old")["stdout"] == "kept"
        submit(db, "new", 5.0)
        assert stream(db, None, 10.0) == (["new"], False)
        assert db.get_record("new")["name"] == "f"
    finally:
        db.close()


def test_dictdb_stamps_out_of_order_still_give_the_right_window():
    db = DictDB(log=LOG)
    submit(db, "late", 5.0)
    submit(db, "early", 2.0)  # written after a newer stamp: no longer in stamp order
    submit(db, "mid", 3.0)
    assert stream(db, None, 10.0) == (["late", "mid", "early"], False)
    assert stream(db, 2.0, 4.0) == (["mid"], False)
    assert stream(db, None, 10.0, limit=1) == (["late"], True)


def test_nodb_keeps_tasks_in_flight_and_the_last_finished_ones():
    db = NoDB(log=LOG, stream_limit=10)
    submit(db, "running", 0.5)
    for i in range(30):
        submit(db, f"t{i}", 1.0 + i)
        db.update_record(f"t{i}", {"completed": T0, "result_content": {"status": "ok"}, "changed": 1.5 + i})
    rows, truncated = db.task_stream(None, 100.0, 100)
    finished = [r["msg_id"] for r in rows if r["completed"] is not None]
    assert 10 <= len(finished) <= 11 and finished[0] == "t29" and not truncated
    assert [r["msg_id"] for r in rows][-1] == "running"  # oldest change, still in flight: kept
    assert {r["status"] for r in rows if r["completed"] is not None} == {"ok"}
    db.add_record("out", record("out", stdout="output of an unknown task"))  # no stamp: not a task
    assert "out" not in [r["msg_id"] for r in db.task_stream(None, 100.0, 100)[0]]
