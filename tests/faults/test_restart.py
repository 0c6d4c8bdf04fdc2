"""A controller killed with SIGKILL and restarted (--restore, SQLite): nothing committed is lost,
and tasks that were in flight are marked lost instead of staying pending forever."""

from __future__ import annotations

import signal

from support.procs import Controller, Engines, wait_for

from jupyter_hub_ctl import Client
from jupyter_hub_ctl.client.errors import RemoteError


def test_sigkill_then_restore_keeps_records_and_marks_in_flight_tasks_lost(tmp_path):
    c = Controller(tmp_path, ["--sqlitedb", "--restore"]).start()
    engines = Engines(c, str(tmp_path))
    engines.start(1)
    rc = Client(c.client_file)
    try:
        rc.wait_for_engines(1, timeout=30)
        lv = rc.load_balanced_view()
        done = lv.map(lambda x: x * 10, range(20))
        assert done.get(30) == [x * 10 for x in range(20)]
        wait_for(lambda: len(rc.db_query({"completed": {"$ne": None}}, keys=["msg_id"])) >= 20, 10,
                 "results committed")

        def forever():
            import time

            time.sleep(60)

        stuck = lv.apply_async(forever)
        wait_for(lambda: rc.result_status(stuck.msg_ids)["pending"], 10, "task in flight")
        wait_for(lambda: rc.db_query({"msg_id": stuck.msg_ids[0]}, keys=["msg_id"]), 10, "submission committed")
        rc.close()
        c.proc.send_signal(signal.SIGKILL)
        c.proc.wait(10)
        engines.stop()
        c.start()
        rc = Client(c.client_file)
        records = rc.db_query({"msg_id": {"$in": done.msg_ids}}, keys=["msg_id", "completed"])
        assert len(records) == 20 and all(r["completed"] for r in records)
        assert rc.result_status(stuck.msg_ids) == {"pending": [], "completed": stuck.msg_ids}
        try:
            rc.get_result(stuck.msg_ids[0], timeout=10)
        except RemoteError as e:
            assert e.ename == "TaskLost"
        else:
            raise AssertionError("a lost task returned a result")
        assert "TaskLost" in c.log_tail(200) or "marked lost" in c.log_tail(200)
    finally:
        rc.close()
        engines.stop()
        c.stop()
