"""Retention: finished records beyond an age or a size are purged by the hub on its own, tasks still
running are never purged, and purging gives the disk space back."""

from __future__ import annotations

import os

import pytest
from support.procs import wait_for

from jupyter_hub_ctl.client.errors import RemoteError


def _db_files_size(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def _blob():
    return lambda n: b"x" * n  # made inside a function: sent by value, the engines cannot import tests


def _hold():
    def hold(path):
        import os
        import time

        while not os.path.exists(path):
            time.sleep(0.01)  # the task itself waits for the test's gate file
        return "released"

    return hold


def test_record_count_limit_purges_oldest_finished_records_but_never_running_ones(hub_factory, tmp_path):
    h = hub_factory("--sqlitedb", "--retention-records=100", "--Hub.retention_interval=0.2", n_engines=2)
    rc = h.client()
    rc.wait_for_engines(2, timeout=30)
    lv = rc.load_balanced_view()
    gate = str(tmp_path / "gate")
    held = lv.apply_async(_hold(), gate)  # first submitted, still running while the limit is enforced
    first = lv.map_async(abs, range(150), chunksize=1)
    first.get(60)
    second = lv.map_async(abs, range(150), chunksize=1)
    second.get(60)
    wait_for(lambda: len(rc.db_query({}, keys=["msg_id"])) <= 100, 20, "the store to shrink to the record limit")
    kept = {r["msg_id"] for r in rc.db_query({}, keys=["msg_id"])}
    assert not held.ready()
    assert held.msg_ids[0] in kept, "a running task's record was purged"
    # oldest finished records go first: the whole first batch finished before any of the second
    assert not set(first.msg_ids) & kept and len(kept & set(second.msg_ids)) >= 80
    assert rc.health()["retention"]["purged"] >= 200
    open(gate, "w").close()
    assert held.get(30) == "released"
    rec = rc.db_query({"msg_id": held.msg_ids[0]}, keys=["completed", "result_content"])[0]
    assert rec["completed"] is not None


def test_age_limit_purges_finished_records_automatically(hub_factory):
    h = hub_factory("--sqlitedb", "--retention-age=1", "--Hub.retention_interval=0.2", n_engines=1)
    rc = h.client()
    rc.wait_for_engines(1, timeout=30)
    ar = rc.load_balanced_view().map_async(abs, range(30), chunksize=1)
    ar.get(30)
    wait_for(lambda: rc.db_query({"completed": {"$ne": None}}, keys=["msg_id"]), 10, "records stored")
    wait_for(lambda: not rc.db_query({"msg_id": {"$in": ar.msg_ids}}, keys=["msg_id"]), 20,
             "records older than 1 s to be purged")
    with pytest.raises(RemoteError, match="No such message"):  # purged records are forgotten, as after purge
        rc.result_status(ar.msg_ids[:1])


def test_size_limit_keeps_the_database_file_bounded(hub_factory):
    h = hub_factory("--sqlitedb", f"--retention-bytes={3 * 2**20}", "--Hub.retention_interval=0.2", n_engines=1)
    rc = h.client()
    rc.wait_for_engines(1, timeout=30)
    path = rc.health()["db"]["path"]
    lv = rc.load_balanced_view()
    for _ in range(4):  # 4 x 40 results of 100 kB = 16 MB through a 3 MB store
        lv.map_async(_blob(), [100_000] * 40, chunksize=1).get(60)
    wait_for(lambda: rc.health()["retention"]["purged"] > 0, 20, "the size limit to purge records")
    wait_for(lambda: _db_files_size(path) <= 4 * 2**20, 20, "the database file to stay near 3 MB")


def test_purge_gives_disk_space_back(hub_factory):
    h = hub_factory("--sqlitedb", n_engines=1)
    rc = h.client()
    rc.wait_for_engines(1, timeout=30)
    path = rc.health()["db"]["path"]
    rc.load_balanced_view().map_async(_blob(), [200_000] * 50, chunksize=1).get(60)  # 10 MB of results
    wait_for(lambda: len(rc.db_query({"completed": {"$ne": None}}, keys=["msg_id"])) == 50, 20, "records stored")
    full = _db_files_size(path)
    assert full > 9 * 2**20
    rc.purge_results("all")
    assert rc.db_query({}, keys=["msg_id"]) == []
    assert _db_files_size(path) < 2**20, f"{_db_files_size(path)} bytes left on disk after purge (was {full})"
