"""A controller killed with SIGKILL and restarted (--restore, SQLite): nothing committed is lost,
and tasks that were in flight are marked lost instead of staying pending forever."""

from __future__ import annotations

import signal
import time

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
            rc.get_result(stuck.msg_ids[0]).get(10)
        except RemoteError as e:
            assert e.ename == "TaskLost"
        else:
            raise AssertionError("a lost task returned a result")
        assert "TaskLost" in c.log_tail(200) or "marked lost" in c.log_tail(200)
    finally:
        rc.close()
        engines.stop()
        c.stop()


def _gate_task(gate: str):
    def wait_for_gate(i):
        import os
        import time

        while not os.path.exists(gate):
            time.sleep(0.01)  # the task's own work: wait for the test to open its gate
        return ("finished", i)

    return wait_for_gate


def _count_ready(c: Controller) -> int:
    with open(c.log_path, encoding="utf8", errors="replace") as f:
        return f.read().count("controller ready")


def test_durability_window_reregistration_reconnect_and_lost_tasks(tmp_path):
    """Measured: records lost to a SIGKILL are only those finished in the last commit interval
    (target <= 0.5 s); engines are back under their ids within two heartbeat periods; the same
    client object carries on; in-flight tasks end as TaskLost (resubmittable) instead of hanging,
    and a lost task that still finishes on its engine has its real result recorded."""
    ping = 500
    c = Controller(tmp_path, ["--sqlitedb", "--restore"], ping=ping, log_level=20).start()
    engines = Engines(c, str(tmp_path))
    engines.start(3)
    rc = Client(c.client_file)
    try:
        rc.wait_for_engines(3, timeout=30)
        ids_before = {e["id"]: e["uuid"] for e in rc.engines_info()}
        # the restarted controller cannot know that an engine still runs a lost task (it may
        # queue new work behind it), so the held tasks and the stream use separate engines
        busy_ids, free_ids = sorted(ids_before)[:2], sorted(ids_before)[2:]
        lv = rc.load_balanced_view(targets=free_ids)
        gate = str(tmp_path / "gate")
        held_view = rc.load_balanced_view(targets=busy_ids)
        held = [held_view.apply_async(_gate_task(gate), i) for i in range(2)]  # one per busy engine (hwm 1)
        def held_running():
            try:
                pending = rc.result_status([h.msg_ids[0] for h in held])["pending"]
            except RemoteError:  # a query can overtake the submission it asks about: not recorded yet
                return False
            return len(pending) == 2 and sum(e["tasks"] for e in rc.engines_info()) == 2

        wait_for(held_running, 10, "held tasks running")
        received: dict = {}
        start = time.monotonic()
        while len(received) < 300 or time.monotonic() - start < 1.5:
            assert time.monotonic() - start < 60, "tasks too slow to build a stream"
            batch = [lv.apply_async(abs, -i) for i in range(10)]
            for ar in batch:
                ar.get(30)
                received[ar.msg_ids[0]] = time.time()
        in_flight = [lv.apply_async(abs, -i) for i in range(20)]  # some will not finish before the kill
        t_kill = time.time()
        c.proc.send_signal(signal.SIGKILL)
        c.proc.wait(10)

        ready_before = _count_ready(c)
        c.start()
        wait_for(lambda: _count_ready(c) > ready_before, 30, "the restarted controller to be ready")
        t_ready = time.time()
        wait_for(lambda: {e["id"]: e["uuid"] for e in rc.engines_info()} == ids_before, 10,
                 "engines back under their old ids")
        t_back = time.time()

        stored = {r["msg_id"] for r in rc.db_query({"msg_id": {"$in": list(received)}, "completed": {"$ne": None}},
                                                   keys=["completed"])}
        missing = {m: t_kill - t for m, t in received.items() if m not in stored}
        newest_lost_age = max(missing.values(), default=0.0)
        print(f"\nrestart: {len(received)} results received before the kill, {len(missing)} not on disk "
              f"(oldest of those finished {newest_lost_age * 1000:.0f} ms before the kill); engines back "
              f"{(t_back - t_ready) * 1000:.0f} ms after the controller was ready (ping {ping} ms)")
        assert newest_lost_age <= 0.5, f"records finished {newest_lost_age:.3f}s before the kill were lost"
        assert t_back - t_ready <= 2 * ping / 1000, f"engines took {t_back - t_ready:.2f}s to come back"

        # the same client object: everything it was waiting for ends, nothing hangs
        outstanding = held + in_flight
        wait_for(lambda: all(ar.ready() for ar in outstanding), 15, "in-flight tasks to end after the restart")
        lost = []
        for ar in outstanding:
            err = ar.exception(0)
            if err is not None:
                assert getattr(err, "ename", None) == "TaskLost", err
                lost.append(ar.msg_ids[0])
        assert {h.msg_ids[0] for h in held} <= set(lost)
        # a lost task that still finishes on its engine: its real result replaces TaskLost in the store
        # (until then that engine is busy: the restarted controller cannot know what it runs)
        open(gate, "w").close()
        for h in held:
            wait_for(lambda h=h: (rc.db_query({"msg_id": h.msg_ids[0]}, keys=["result_content"])[0]
                                  ["result_content"] or {}).get("status") == "ok", 15, "the late real result")
        assert rc.get_result(held[0].msg_ids[0]).get(10) == ("finished", 0)
        assert lv.apply_sync(abs, -7) == 7  # new work through the same client
        # a lost task the store knew of is resubmittable
        again = rc.resubmit([held[1].msg_ids[0]])  # (its targets come with it)
        assert again.get(15) == [("finished", 1)]
    finally:
        rc.close()
        engines.stop()
        c.stop()
