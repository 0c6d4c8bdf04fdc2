"""File-backed task stores: one controller per database, damaged files set aside."""

from __future__ import annotations

import glob
import os

import pytest
from support.procs import Controller


def test_second_controller_on_the_same_database_refuses_naming_the_first(tmp_path):
    first = Controller(tmp_path / "a", ["--sqlitedb", "--SQLiteDB.table=shared"], cluster_id="one").start()
    try:
        second = Controller(tmp_path / "a", ["--sqlitedb", "--SQLiteDB.table=shared"], cluster_id="two")
        second.log_path = str(tmp_path / "second.log")
        with pytest.raises(RuntimeError, match="exited"):
            second.start()
        assert f"in use by another controller (pid {first.proc.pid})" in second.log_tail()
    finally:
        first.stop()
    # once the first is gone, the database is free again
    third = Controller(tmp_path / "a", ["--sqlitedb", "--SQLiteDB.table=shared"], cluster_id="three").start()
    third.stop()


def test_controllers_with_different_cluster_ids_share_a_profile(tmp_path):
    a = Controller(tmp_path / "p", ["--sqlitedb"], cluster_id="x").start()
    b = Controller(tmp_path / "p", ["--sqlitedb"], cluster_id="y").start()
    a.stop()
    b.stop()


def test_damaged_database_is_moved_aside_not_overwritten(tmp_path):
    profile = tmp_path / "c" / "profile"
    profile.mkdir(parents=True)
    garbage = b"this is not an sqlite database " * 100
    (profile / "tasks.db").write_bytes(garbage)
    c = Controller(tmp_path / "c", ["--sqlitedb"]).start()
    try:
        moved = glob.glob(str(profile / "tasks.db.corrupt-*"))
        assert len(moved) == 1
        with open(moved[0], "rb") as f:
            assert f.read() == garbage
        assert os.path.basename(moved[0]) in c.log_tail(80)
        assert "damaged" in c.log_tail(80)
    finally:
        c.stop()
