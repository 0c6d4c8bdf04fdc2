"""A full disk under a running hub: tasks keep running, the hub says it is degraded, and when space
returns every record written meanwhile reaches the database (nothing lost)."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest
from support.procs import wait_for


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs of our own, so "disk full" is real and touches nothing else."""
    where = tmp_path / "disk"
    where.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(where)],
                         capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs CAP_SYS_ADMIN): {res.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def _fill(path) -> int:
    """Write ``path`` until the file system refuses; return the bytes written."""
    written = 0
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        for _ in range(10_000):  # bounded: 640 MB at most, the disk is 16 MB
            try:
                written += f.write(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
    return written


def _payload():
    return lambda i: (i, b"r" * 10_000)  # built here: sent by value (engines cannot import tests)


def test_full_disk_degrades_the_hub_keeps_scheduling_and_loses_nothing(hub_factory, small_disk):
    h = hub_factory("--sqlitedb", f"--SQLiteDB.location={small_disk}", "--SQLiteDB.max_retry_interval=1",
                    n_engines=2)
    rc = h.client()
    rc.wait_for_engines(2, timeout=30)
    lv = rc.load_balanced_view()
    before = lv.map_async(_payload(), range(20), chunksize=1)
    before.get(30)
    wait_for(lambda: len(rc.db_query({"completed": {"$ne": None}}, keys=["msg_id"])) == 20, 20, "first records")
    assert rc.health()["state"] == "ok"

    filler = small_disk / "filler"
    assert _fill(filler) > 0
    # 300 results of 10 kB each: far more than the disk has left
    during = lv.map_async(_payload(), range(300), chunksize=1)
    assert [r[0] for r in during.get(60)] == list(range(300)), "tasks stopped running on a full disk"
    health = wait_for(lambda: (lambda hl: hl if hl["state"] == "degraded" else None)(rc.health()), 20,
                      "the hub to report degraded")
    assert not health["ok"] and health["degraded_since"]
    assert any("full" in r for r in health["reasons"]), health["reasons"]
    assert health["db"]["pending"] > 0
    # still degraded, still serving: another batch runs
    assert lv.map_async(abs, range(-10, 0), chunksize=1).get(30) == list(range(10, 0, -1))

    os.unlink(filler)
    wait_for(lambda: rc.health()["state"] == "ok", 30, "the hub to recover once space returned")
    assert rc.health()["db"]["pending"] == 0
    stored = rc.db_query({"msg_id": {"$in": during.msg_ids}}, keys=["completed"])
    assert len(stored) == 300 and all(r["completed"] for r in stored)
    # a result written during the outage reads back intact
    assert rc.get_result(during.msg_ids[123]).get(10) == [(123, b"r" * 10_000)]  # one map chunk
    log = h.log()
    assert "disk is full" in log and "written to" in log and "again" in log
    assert not [line for line in h.log_errors() if "Traceback" in line]


def test_purge_on_a_full_store_frees_room_for_the_waiting_records(hub_factory):
    # 100 pages of 4 kB: the store fills up as if the disk were full
    h = hub_factory("--sqlitedb", "--SQLiteDB.max_page_count=100", "--SQLiteDB.max_retry_interval=1", n_engines=1)
    rc = h.client()
    rc.wait_for_engines(1, timeout=30)
    lv = rc.load_balanced_view()
    first = lv.map_async(_payload(), range(25), chunksize=1)  # ~250 kB: fits
    first.get(30)
    wait_for(lambda: rc.health()["db"]["pending"] == 0, 20, "the first records written")
    second = lv.map_async(_payload(), range(20), chunksize=1)  # ~200 kB more: does not
    second.get(30)
    wait_for(lambda: rc.health()["state"] == "degraded", 20, "the full store to degrade the hub")
    rc.purge_results(first.msg_ids)
    wait_for(lambda: rc.health()["state"] == "ok", 20, "the purge to make room")
    assert rc.health()["db"]["pending"] == 0
    assert rc.db_query({"msg_id": {"$in": first.msg_ids}}, keys=["msg_id"]) == []
    stored = rc.db_query({"msg_id": {"$in": second.msg_ids}}, keys=["completed"])
    assert len(stored) == 20 and all(r["completed"] for r in stored)
