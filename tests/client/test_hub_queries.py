"""Hub queries through our client, engine death, serializer mismatch, controller restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from support.procs import wait_for

from jupyter_hub_ctl import Client
from jupyter_hub_ctl.client.errors import EngineError, RemoteError
from jupyter_hub_ctl.client.serialize import SerializerMismatch


def test_queue_status_result_status_history(rc):
    lv = rc.load_balanced_view()
    ar = lv.map(lambda x: x, range(6))
    ar.get(20)
    qs = rc.queue_status()
    assert set(rc.ids) <= set(qs) and qs["unassigned"] == 0
    assert sum(qs[i]["completed"] for i in rc.ids) >= 6
    one = rc.queue_status(rc.ids[0], verbose=True)
    assert isinstance(one["completed"], list)
    status = rc.result_status(ar.msg_ids)
    assert sorted(status["completed"]) == sorted(ar.msg_ids) and status["pending"] == []
    history = rc.hub_history()
    assert set(ar.msg_ids) <= set(history)


def test_get_result_of_another_clients_task(hub, rc):
    ar = rc.load_balanced_view().apply_async(lambda: {"answer": 42})
    ar.get(10)
    other = Client(hub.controller.client_file)
    try:
        assert other.get_result(ar.msg_ids[0]).get(10) == {"answer": 42}
        failed = rc.load_balanced_view().apply_async(lambda: 1 / 0)
        with pytest.raises(RemoteError):
            failed.get(10)
        with pytest.raises(RemoteError, match="ZeroDivisionError"):
            other.get_result(failed.msg_ids[0]).get(10)
    finally:
        other.close()


def test_db_query_resubmit_purge(rc):
    lv = rc.load_balanced_view()
    with lv.temp_flags(label="resub"):
        ar = lv.apply_async(lambda: "again")
    ar.get(10)
    recs = rc.db_query({"msg_id": ar.msg_ids[0]}, keys=["msg_id", "buffers", "result_buffers", "completed"])
    assert len(recs) == 1 and recs[0]["buffers"] and recs[0]["result_buffers"]
    new = rc.resubmit(ar.msg_ids)
    assert new.get(10) == ["again"]  # an AsyncHubResult of the new tasks, in the order given
    new_id = new.msg_ids[0]
    assert new_id != ar.msg_ids[0] and rc.get_result(new_id).get(10) == "again"
    rec = rc.db_query({"msg_id": new_id}, keys=["label", "header"])[0]
    assert rec["label"] == "resub"  # metadata survives resubmission
    rc.purge_results([ar.msg_ids[0]])
    assert rc.db_query({"msg_id": ar.msg_ids[0]}, keys=["msg_id"]) == []
    with pytest.raises(IndexError, match="no engine with id 12345"):
        rc.purge_results([], targets=[12345])
    with pytest.raises(RemoteError):  # the hub refuses unknown engines too
        rc._hub("purge_request", {"msg_ids": [], "engine_ids": [12345]})


def test_engine_killed_mid_task_gives_engine_error_and_retries(fresh_hub):
    h = fresh_hub(n=2, controller_args=["--TaskScheduler.stranded_delay=0.5"])
    rc = h.client
    pids = dict(zip(rc.ids, rc[:].apply_sync(os.getpid)))
    lv = rc.load_balanced_view()

    def nap():
        import time

        time.sleep(3)
        return "done"

    victim = rc.ids[0]
    with lv.temp_flags(targets=[victim]):
        doomed = lv.apply_async(nap)
    direct = rc[victim].apply_async(nap)
    wait_for(lambda: rc.queue_status(victim)["tasks"] >= 1, 10, "task running on the victim")
    os.kill(pids[victim], signal.SIGKILL)
    with pytest.raises(EngineError):
        direct.get(20)
    with pytest.raises(RemoteError):
        doomed.get(20)
    wait_for(lambda: victim not in rc.ids, 20, "victim unregistered")
    qs = rc.queue_status()
    assert qs["unassigned"] == 0
    # the survivor still works; a retried task lands on it
    assert lv.apply_sync(lambda: "alive") == "alive"
    h.add_engines(1)
    rc.wait_for_engines(2, timeout=30)
    pids = dict(zip(rc.ids, rc[:].apply_sync(os.getpid)))
    with lv.temp_flags(retries=1):
        ar = lv.apply_async(nap)
    running_on = wait_for(lambda: [i for i in rc.ids if rc.queue_status(i)["tasks"] >= 1], 10, "task dispatched")
    os.kill(pids[running_on[0]], signal.SIGKILL)
    assert ar.get(30) == "done"  # retried on the other engine
    assert ar.engine_id != running_on[0]


def test_our_client_with_ipyparallel_engine_names_the_mismatch(tmp_path):
    pytest.importorskip("ipyparallel")
    from support.procs import Controller

    c = Controller(tmp_path).start()
    log = open(tmp_path / "ipengine.log", "ab")
    eng = subprocess.Popen([sys.executable, "-m", "ipyparallel.engine", f"--file={c.engine_file}"],
                           stdout=log, stderr=subprocess.STDOUT)
    rc = None
    try:
        rc = Client(c.client_file)
        rc.wait_for_engines(1, timeout=30)
        with pytest.raises(SerializerMismatch, match="not a jupyter_hub_ctl engine"):
            rc.load_balanced_view().apply_sync(lambda: 1)
    finally:
        if rc is not None:
            rc.close()
        eng.terminate()
        eng.wait(10)
        log.close()
        c.stop()


def test_ipyparallel_client_with_our_engine_names_the_mismatch(hub):
    ipp = pytest.importorskip("ipyparallel")
    rc = ipp.Client(hub.controller.client_file)
    try:
        rc.wait_for_engines(2, timeout=10)
        with pytest.raises(ipp.RemoteError) as info:
            rc.load_balanced_view().apply_sync(lambda: 1)
        assert info.value.ename == "SerializerMismatch"
        assert "jupyter_hub_ctl.Client" in info.value.evalue
    finally:
        rc.close()


def test_engine_registers_again_after_controller_restart(tmp_path):
    from support.procs import Controller, Engines

    c = Controller(tmp_path, ["--reuse"]).start()
    engines = Engines(c, str(tmp_path))
    engines.start(1)
    rc = Client(c.client_file)
    try:
        rc.wait_for_engines(1, timeout=30)
        old_id = rc.ids[0]
        rc.close()
        c.stop()
        c.start()  # same ports and key (--reuse)
        rc = Client(c.client_file)
        rc.wait_for_engines(1, timeout=30)
        assert rc.ids == [old_id]
        assert rc[old_id].apply_sync(lambda: "back") == "back"
    finally:
        rc.close()
        engines.stop()
        c.stop()


def test_engine_exits_when_controller_is_gone(tmp_path):
    from support.procs import Controller, Engines

    c = Controller(tmp_path).start()
    engines = Engines(c, str(tmp_path))
    (proc,) = engines.start(1, "--controller-timeout=2")
    rc = Client(c.client_file)
    rc.wait_for_engines(1, timeout=30)
    rc.close()
    c.proc.kill()
    c.proc.wait(5)
    try:
        proc.wait(20)
    finally:
        engines.stop()
    assert proc.returncode == 2
    with open(proc.log_path) as f:
        assert "no heartbeat from the controller" in f.read()


def test_engines_info_reports_host_pid_and_heartbeat(rc):
    import socket

    info = rc.engines_info()
    assert [e["id"] for e in info] == rc.ids
    pids = rc[:].apply_sync(os.getpid)
    assert sorted(e["pid"] for e in info) == sorted(pids)
    assert all(e["host"] == socket.gethostname() for e in info)
    assert all(e["last_heartbeat"] is not None and abs(e["last_heartbeat"] - time.time()) < 30 for e in info)


def test_queries_time_out_and_close_releases_waiters(tmp_path):
    from support.procs import Controller

    c = Controller(tmp_path).start()
    rc = Client(c.client_file, query_timeout=1.0)
    try:
        c.proc.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="did not answer queue_request"):
            rc.queue_status()
        assert time.monotonic() - t0 < 10
        with pytest.raises(TimeoutError, match="no answer from the hub"):
            Client(c.client_file, timeout=1)
    finally:
        c.proc.send_signal(signal.SIGCONT)
        rc.close()
        c.stop()


def test_printed_text_comes_before_the_value(rc):
    ar = rc[rc.ids[0]].execute("print('x')\n5", silent=False)
    ar.get(20)
    assert [o["msg_type"] for o in ar.output_messages] == ["stream", "execute_result"]


def test_registration_callbacks_can_be_unsubscribed(fresh_hub):
    h = fresh_hub(1)
    rc = h.client
    kept, dropped, also_dropped = [], [], []
    rc.on_registration(kept.append)
    unsubscribe = rc.on_registration(dropped.append)
    rc.on_registration(also_dropped.append)
    unsubscribe()
    assert rc.off_registration(also_dropped.append) is True
    assert rc.off_registration(also_dropped.append) is False  # not subscribed any more
    h.add_engines(1)
    wait_for(lambda: any(e.get("event") == "register" for e in kept), 30, "the registration event")
    assert rc.ids == [0, 1]
    assert dropped == [] and also_dropped == []
