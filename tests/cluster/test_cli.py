"""``jupyter hubctl`` as a user runs it: a subprocess, its output, its exit code, the process table."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest
from support.procs import end_process

from .conftest import FAST, wait_for


def start(h, hub_id, n=2, *extra, expect=0):
    return h.cli_json("start", "-n", n, "--id", hub_id, f"--controller-args={FAST}", *extra, expect=expect)


def test_start_list_status_stop_round_trip(hubenv):
    h = hubenv
    info = start(h, "rt", 2)
    assert info["id"] == "rt" and info["state"] == "running" and info["engines"] == 2
    conn = info["connection_file"]
    assert os.path.exists(conn)
    assert oct(os.stat(h.state_dir / "hub-rt.json").st_mode & 0o777) == "0o600"
    assert oct(os.stat(h.state_dir).st_mode & 0o777) == "0o700"

    hubs = h.cli_json("list")
    assert [(x["id"], x["status"], x["alive"], x["engine_processes"]) for x in hubs] == [("rt", "running", True, 2)]

    status = h.cli_json("status", "rt")
    assert status["registered"] == [0, 1]
    assert status["controller"]["pid"] == info["controller_pid"]
    assert set(status["queue"]) == {"0", "1", "unassigned"}
    assert status["encrypted"] is False  # a hub on loopback only: CurveZMQ off by default

    engines = h.cli_json("engines", "rt")
    assert engines["registered"] == [0, 1]
    pids = [p["pid"] for p in engines["processes"]]
    assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)

    queue = h.cli_json("queue", "rt")
    assert queue["0"] == {"queue": 0, "completed": 0, "tasks": 0}

    text = h.cli("status", "rt")
    assert text.returncode == 0 and "hub rt: running" in text.stdout and "registered engines: [0, 1]" in text.stdout
    assert "encryption: none (plaintext" in text.stdout

    stopped = h.cli_json("stop", "rt")
    assert stopped == [{"id": "rt", "stopped": True, "was_running": True}]
    assert h.cli_json("list") == []
    assert not os.path.exists(conn)
    gone = h.cli("status", "rt")
    assert gone.returncode == 3 and "no hub with id 'rt'" in gone.stderr and "Traceback" not in gone.stderr
    assert h.processes() == []


def test_second_start_with_the_same_id_is_refused(hubenv):
    h = hubenv
    first = start(h, "dup", 1)
    again = h.cli("start", "-n", "1", "--id", "dup", f"--controller-args={FAST}")
    assert again.returncode == 1
    assert "already running" in again.stderr and "Traceback" not in again.stderr
    assert h.cli_json("status", "dup")["controller"]["pid"] == first["controller_pid"]  # untouched
    assert h.cli("stop", "dup").returncode == 0


def test_no_engines_starts_the_controller_alone_and_fewer_is_a_usage_error(hubenv):
    """-n 0 is allowed, as in %hub start, the REST API and the panel (cluster.lifecycle.MIN_ENGINES)."""
    h = hubenv
    info = start(h, "bare", 0)
    assert info["state"] == "running" and info["engines"] == 0
    assert h.cli_json("status", "bare")["registered"] == []
    negative = h.cli("start", "-n", "-1", "--id", "neg")
    assert negative.returncode == 2 and "-n must be 0 or more" in negative.stderr
    assert [x["id"] for x in h.cli_json("list")] == ["bare"]
    assert h.cli("stop", "bare").returncode == 0


def test_stop_all_stops_every_hub(hubenv):
    h = hubenv
    start(h, "a", 1)
    start(h, "b", 1)
    assert sorted(x["id"] for x in h.cli_json("list")) == ["a", "b"]
    res = h.cli_json("stop", "--all")
    assert sorted(r["id"] for r in res) == ["a", "b"] and all(r["stopped"] for r in res)
    assert h.cli_json("list") == []
    assert h.processes() == []


def _dead_identity():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    created = psutil.Process(proc.pid).create_time()
    proc.wait()
    return {"pid": proc.pid, "create_time": created}


def _fabricate(h, hub_id, controller, engines=(), state="running"):
    record = {"version": 1, "id": hub_id, "profile_dir": str(h.profile_dir), "state": state, "error": None,
              "created": "2020-01-01T00:00:00+00:00", "updated": "2020-01-01T00:00:00+00:00", "owner": None,
              "controller": controller, "engines": list(engines), "n": len(engines), "launcher": "local",
              "launcher_options": {}, "db": "sqlitedb", "connection_files": {}, "stop_requested": False,
              "events": []}
    h.state_dir.mkdir(parents=True, exist_ok=True)
    path = h.state_dir / f"hub-{hub_id}.json"
    path.write_text(json.dumps(record))
    path.chmod(0o600)
    return path


def test_clean_removes_only_stale_files_and_never_kills_a_reused_pid(hubenv):
    h = hubenv
    start(h, "live", 1)
    dead = _fabricate(h, "dead", _dead_identity())
    # a pid that is alive but belongs to another process than recorded (pid reuse): never signalled
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=h.env)
    try:
        wrong_time = {"pid": bystander.pid, "create_time": psutil.Process(bystander.pid).create_time() - 1000}
        reused = _fabricate(h, "reused", wrong_time,
                            engines=[{**wrong_time, "slot": 0, "count": 1, "status": "running"}])
        corrupt = h.state_dir / "hub-corrupt.json"
        corrupt.write_text("{not json")

        listing = {x["id"]: x for x in h.cli_json("list")}
        assert listing["live"]["alive"] and not listing["live"]["stale"]
        assert listing["dead"]["status"] == "dead" and "is gone" in listing["dead"]["stale_reason"]
        assert listing["reused"]["status"] == "dead" and "another process" in listing["reused"]["stale_reason"]
        assert listing["corrupt"]["status"] == "corrupt"

        removed = h.cli_json("clean")
        assert sorted(r["id"] for r in removed) == ["corrupt", "dead", "reused"]
        assert all(r["stopped_pids"] == [] for r in removed)
        assert not dead.exists() and not reused.exists() and not corrupt.exists()
        assert bystander.poll() is None, "clean signalled a process it could not prove was the hub's"
        assert [x["id"] for x in h.cli_json("list")] == ["live"]
        assert h.cli("status", "live").returncode == 0
    finally:
        bystander.kill()
        bystander.wait()


def test_broken_engine_command_fails_fast_with_its_error_and_leaves_nothing(hubenv):
    h = hubenv
    broken = f"{sys.executable} -c 'import sys; sys.stderr.write(\"engine-boom\\n\"); sys.exit(3)'"
    t0 = time.monotonic()
    res = h.cli("start", "-n", "2", "--id", "broken", "--timeout", "60", f"--controller-args={FAST}",
                "--engine-cmd", broken)
    elapsed = time.monotonic() - t0
    assert res.returncode == 1, res.stdout + res.stderr
    assert elapsed < 30, f"failure took {elapsed:.1f}s (the registration deadline was 60s)"
    assert "exited with code 3 before registering" in res.stderr
    assert "engine-boom" in res.stderr and "Traceback" not in res.stderr
    assert h.processes() == []
    status = h.cli_json("status", "broken", expect=1)
    assert status["state"] == "failed" and "exited with code 3" in status["error"]
    assert [r["id"] for r in h.cli_json("clean")] == ["broken"]


def test_controller_that_exits_is_reported_with_its_log(hubenv):
    h = hubenv
    res = h.cli("start", "-n", "1", "--id", "noctl", "--controller-args=--no-such-flag=1")
    assert res.returncode == 1
    assert "controller exited with code" in res.stderr and "before writing its connection files" in res.stderr
    assert "no-such-flag" in res.stderr
    assert h.processes() == []


def test_registration_timeout_names_the_deadline_and_stops_the_engines(hubenv):
    h = hubenv
    res = h.cli("start", "-n", "1", "--id", "slow", "--timeout", "2", f"--controller-args={FAST}",
                "--engine-cmd", f"{sys.executable} -c 'import time; time.sleep(120)'")
    assert res.returncode == 1
    assert "only 0 of 1 engines registered within 2s" in res.stderr
    assert h.processes() == []


def test_usage_errors_and_not_found(hubenv):
    h = hubenv
    assert h.cli("stop").returncode == 2
    bad_launcher = h.cli("start", "--launcher", "nope")
    assert bad_launcher.returncode == 2 and "unknown launcher 'nope'" in bad_launcher.stderr
    bad_id = h.cli("start", "--id", "../x")
    assert bad_id.returncode == 2 and "invalid hub id" in bad_id.stderr
    assert h.cli("status", "nosuch").returncode == 3
    assert h.cli("queue", "nosuch").returncode == 3
    assert h.cli("stop", "nosuch").returncode == 3
    assert h.cli("frobnicate").returncode == 2
    assert h.cli_json("list") == []
    assert h.cli_json("clean") == []


def test_engine_sigkill_is_reported_and_replaced(hubenv):
    h = hubenv
    start(h, "sup", 2, "--restart-engines", "--set", "Cluster.restart_backoff=0.2")
    victim = h.state("sup")["engines"][0]
    os.kill(victim["pid"], signal.SIGKILL)

    def replaced():
        slot = [e for e in h.state("sup")["engines"] if e["slot"] == victim["slot"]]
        return slot and slot[0]["pid"] != victim["pid"] and slot[0]["restarts"] == 1 and slot[0]
    new = wait_for(replaced, 30, "the killed engine's replacement")
    assert psutil.pid_exists(new["pid"])
    events = [e["message"] for e in h.state("sup")["events"]]
    assert any(f"pid {victim['pid']}) killed by SIGKILL (possibly out of memory)" in m
               or f"pid {victim['pid']}) killed by SIGKILL: killed by the kernel's out-of-memory" in m for m in events), events
    assert any("restarted" in m for m in events)
    # the hub drops the dead engine and registers the replacement: two engines again, one of them new
    wait_for(lambda: (lambda r: len(r) == 2 and max(r) >= 2)(h.cli_json("engines", "sup")["registered"]), 30,
             "the replacement to register")
    status = h.cli("status", "sup")
    assert "killed by SIGKILL" in status.stdout
    assert h.cli("stop", "sup").returncode == 0
    assert h.processes() == []


def test_task_queries_history_results_resubmit_purge(hubenv):
    from jupyter_hub_ctl import Client

    h = hubenv
    info = start(h, "q", 1)
    client = Client(info["connection_file"])
    try:
        ar = client.load_balanced_view().apply_async(lambda x: x * 2, 21)
        assert ar.get(30) == 42
        msg_id = ar.msg_ids[0]
    finally:
        client.close()
    assert msg_id in h.cli_json("history", "q")
    results = h.cli_json("results", "q", msg_id)
    assert results["completed"][msg_id] == {"value": "42"} and results["pending"] == []
    resubmitted = h.cli_json("resubmit", "q", msg_id)
    assert list(resubmitted) == [msg_id] and resubmitted[msg_id] != msg_id
    new_id = resubmitted[msg_id]
    wait_for(lambda: h.cli_json("results", "q", new_id)["completed"], 30, "the resubmitted task")
    assert h.cli_json("purge", "q", msg_id)["purged"] == [msg_id]
    assert msg_id not in h.cli_json("history", "q")
    assert new_id in h.cli_json("history", "q")
    assert h.cli("stop", "q").returncode == 0
    # another hub in the same profile keeps its own task records (its own sqlite table)
    start(h, "q2", 0)
    assert h.cli_json("history", "q2") == []
    assert h.cli("stop", "q2").returncode == 0


def test_no_wait_returns_while_starting_and_the_hub_comes_up(hubenv):
    h = hubenv
    res = h.cli_json("start", "-n", "1", "--id", "bg", f"--controller-args={FAST}", "--no-wait")
    assert res["state"] == "starting"
    wait_for(lambda: h.state("bg")["state"] == "running", 60, "the background hub to run")
    assert h.cli_json("status", "bg")["registered"] == [0]
    assert h.cli("stop", "bg").returncode == 0


def test_controller_and_engine_subcommands_run_in_the_foreground(hubenv):
    h = hubenv
    prof = h.root / "fg-profile"
    ctl = subprocess.Popen([sys.executable, "-m", "jupyter_hub_ctl.cli", "controller", f"--profile-dir={prof}",
                            "--cluster-id=fg", FAST], env=h.env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    eng = None
    try:
        efile = prof / "security" / "ipcontroller-fg-engine.json"
        wait_for(lambda: efile.exists() or ctl.poll() is not None, 30, "the controller's files")
        assert ctl.poll() is None
        eng = subprocess.Popen([sys.executable, "-m", "jupyter_hub_ctl.cli", "engine", f"--file={efile}"],
                               env=h.env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        line = eng.stderr.readline()
        assert "registered" in line, line
    finally:
        for p in (eng, ctl):
            if p is not None:
                end_process(p, 10)


@pytest.mark.skipif(not shutil.which("jupyter"), reason="the jupyter command is not on PATH")
def test_jupyter_hubctl_entry_point(hubenv):
    res = subprocess.run(["jupyter", "hubctl", "list", "--json"], env=hubenv.env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == []
