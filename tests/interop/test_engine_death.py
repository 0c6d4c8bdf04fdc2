"""Engine death and departure: nanny, heartbeat and clean shutdown paths (PROTOCOL.md §5.2, §6, §11.3)."""

import os
import signal
import time

import pytest
from ipyparallel import error

from .harness import call_with_deadline, scaled, wait_for, wait_for_hub_records

pytestmark = pytest.mark.timeout(180)

T = scaled(30)

#: With --ping=250 a dead engine is noticed in well under this (heartbeat:
#: ~11 periods ≈ 3 s; nanny: immediately), plus the scheduler's 5 s grace
#: before it fails the tasks stranded on a dead engine.
DEATH_BOUND = 20


def announce_and_sleep(marker, seconds):
    """Write our pid to ``marker``, then sleep; returns the pid if it survives."""
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def whoami():
    return os.getpid()


def _started_on(hub, marker):
    pid = int(wait_for(lambda: marker.exists() and marker.read_text(), 20, "the task to start"))
    return next(p for p in hub.engines if p.pid == pid)


#: How an engine death reaches the client: the client itself raises EngineError
#: for direct tasks; the scheduler's EngineError reply arrives as a RemoteError.
ENGINE_ERRORS = (error.EngineError, error.RemoteError)


def _is_engine_error(exc) -> bool:
    return isinstance(exc, error.EngineError) or getattr(exc, "ename", None) == "EngineError"


def _assert_survivors_have_nothing_outstanding(client):
    # (the reference keeps listing a dead engine in queue_status with its stale
    # queue/tasks; see the ours_only test below for what a correct hub reports)
    status = client.queue_status()
    assert status["unassigned"] == 0, status
    for eid in client.ids:
        assert status[eid]["tasks"] == 0 and status[eid]["queue"] == 0, status


def test_sigkill_during_balanced_task_fails_it_with_engine_error(hub_factory, tmp_path):
    hub = hub_factory(n_engines=2)
    client = hub.connect(n_engines=2)
    lview = client.load_balanced_view()
    marker = tmp_path / "started"
    ar = lview.apply_async(announce_and_sleep, str(marker), 30)
    victim = _started_on(hub, marker)
    survivor = next(p for p in hub.engines if p is not victim)

    killed_at = time.monotonic()
    victim.send_signal(signal.SIGKILL)
    with pytest.raises(ENGINE_ERRORS) as info:
        ar.get(timeout=scaled(DEATH_BOUND))
    elapsed = time.monotonic() - killed_at
    assert _is_engine_error(info.value), f"expected EngineError, got {info.value!r}"
    assert elapsed < scaled(DEATH_BOUND)

    wait_for(lambda: client.ids == [survivor.engine_id], 10, "the dead engine to leave client.ids")
    _assert_survivors_have_nothing_outstanding(client)
    assert lview.apply_sync(whoami) == survivor.pid
    assert client[:].apply_sync(whoami) == [survivor.pid]

    (rec,) = wait_for_hub_records(client, ar.msg_ids)
    assert rec["result_content"]["status"] == "error"
    assert rec["result_content"]["ename"] == "EngineError"
    assert rec["completed"] is not None


def test_sigkill_during_direct_task_fails_it_with_engine_error(hub_factory, tmp_path):
    hub = hub_factory(n_engines=2)
    client = hub.connect(n_engines=2)
    victim_id, survivor_id = client.ids[:2]
    marker = tmp_path / "started"
    ar = client[victim_id].apply_async(announce_and_sleep, str(marker), 30)
    victim = _started_on(hub, marker)
    assert victim.engine_id == victim_id

    killed_at = time.monotonic()
    assert hub.kill_engine(victim_id) is victim
    with pytest.raises(ENGINE_ERRORS) as info:
        ar.get(timeout=scaled(DEATH_BOUND))
    assert _is_engine_error(info.value), f"expected EngineError, got {info.value!r}"
    assert time.monotonic() - killed_at < scaled(DEATH_BOUND)

    wait_for(lambda: client.ids == [survivor_id], 10, "the dead engine to leave client.ids")
    _assert_survivors_have_nothing_outstanding(client)
    assert client[survivor_id].apply_sync(whoami) == hub.engine_process(survivor_id).pid
    assert client.load_balanced_view().apply_sync(whoami) == hub.engine_process(survivor_id).pid


def test_engine_without_nanny_is_dropped_by_heartbeat(hub_factory):
    hub = hub_factory(n_engines=1)
    (lonely,) = hub.start_engines(1, extra_args=["--IPEngine.enable_nanny=False"])
    assert not lonely.remember_descendants(), "engine started a nanny despite enable_nanny=False"
    client = hub.connect(n_engines=2)
    survivor_id = next(eid for eid in client.ids if eid != lonely.engine_id)

    lonely.send_signal(signal.SIGKILL)
    # no nanny to report the exit: only the heartbeat (>10 missed pings) can tell
    wait_for(lambda: client.ids == [survivor_id], 10, "heartbeat failure to unregister the engine")
    assert client[:].apply_sync(whoami) == [hub.engine_process(survivor_id).pid]


def test_stopped_engine_is_dropped_by_heartbeat(hub_factory):
    hub = hub_factory(n_engines=2)
    client = hub.connect(n_engines=2)
    frozen_id, survivor_id = client.ids[:2]
    frozen = hub.engine_process(frozen_id)
    frozen.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: client.ids == [survivor_id], 10, "heartbeat failure to unregister a stopped engine")
        assert client.load_balanced_view().apply_sync(whoami) == hub.engine_process(survivor_id).pid
    finally:
        frozen.kill()


def test_clean_engine_shutdown_unregisters_it(hub_factory):
    hub = hub_factory(n_engines=2)
    client = hub.connect(n_engines=2)
    leaving_id, staying_id = client.ids[:2]
    leaving = hub.engine_process(leaving_id)

    call_with_deadline(client.shutdown, targets=[leaving_id], block=True, timeout=15, what="shutdown")

    wait_for(lambda: client.ids == [staying_id], 10, "the engine to unregister after shutdown")
    leaving.wait(timeout=15)
    assert client[:].apply_sync(whoami) == [hub.engine_process(staying_id).pid]
    other = hub.connect()
    assert other.ids == [staying_id], "a new client still sees the departed engine"


@pytest.mark.ours_only
def test_dead_engine_has_nothing_outstanding_in_queue_status(hub_factory, tmp_path):
    hub = hub_factory(n_engines=2)
    client = hub.connect(n_engines=2)
    victim_id = client.ids[0]
    marker = tmp_path / "started"
    direct = client[victim_id].apply_async(announce_and_sleep, str(marker), 30)
    balanced = client.load_balanced_view(targets=[victim_id]).apply_async(whoami)
    victim = _started_on(hub, marker)

    def both_outstanding():
        status = client.queue_status(verbose=True)[victim_id]
        return direct.msg_ids[0] in status["queue"] and balanced.msg_ids[0] in status["tasks"]

    wait_for(both_outstanding, 10, "both tasks outstanding on the victim")
    victim.send_signal(signal.SIGKILL)
    for ar in (direct, balanced):
        with pytest.raises(ENGINE_ERRORS) as info:
            ar.get(timeout=scaled(DEATH_BOUND))
        assert _is_engine_error(info.value), repr(info.value)

    def nothing_outstanding():
        status = client.queue_status()
        entry = status.get(victim_id, {"queue": 0, "tasks": 0})
        return status["unassigned"] == 0 and entry["queue"] == 0 and entry["tasks"] == 0

    # a hub may keep MUX work of a dead engine until its registration timeout (30 s)
    wait_for(nothing_outstanding, 45, "queue_status to show nothing outstanding on the dead engine")


@pytest.mark.ours_only
def test_stranded_direct_task_record_gets_engine_error_and_metadata(hub_factory, tmp_path):
    # registration_timeout bounds when the hub gives up on MUX tasks of a dead engine
    hub = hub_factory(n_engines=2, args=["--IPController.registration_timeout=2"])
    client = hub.connect(n_engines=2)
    other = hub.connect(n_engines=2)
    victim_id = client.ids[0]
    marker = tmp_path / "started"
    ar = client[victim_id].apply_async(announce_and_sleep, str(marker), 30)
    victim = _started_on(hub, marker)
    msg_id = ar.msg_ids[0]
    victim.send_signal(signal.SIGKILL)
    with pytest.raises(ENGINE_ERRORS) as info:
        ar.get(timeout=scaled(DEATH_BOUND))
    assert _is_engine_error(info.value), repr(info.value)

    wait_for(
        lambda: msg_id in other.result_status([msg_id])["completed"],
        45,
        "the hub to complete the stranded task",
    )
    rec = other.db_query({"msg_id": msg_id}, keys=["result_content", "result_metadata", "completed"])[0]
    assert rec["result_content"]["ename"] == "EngineError"
    assert isinstance(rec["result_metadata"], dict)
    assert rec["completed"] is not None
    with pytest.raises(error.RemoteError) as info:
        other.result_status([msg_id], status_only=False)
    assert info.value.ename == "EngineError"
    assert info.value.render_traceback()[0] == f"[{victim_id}:apply]"  # ipyparallel's rendering works


@pytest.mark.ours_only
def test_nanny_report_fails_a_balanced_task_within_seconds(hub_factory, tmp_path):
    # the nanny's unregistration_request says the engine's process is gone: no reply can come any
    # more, so the task fails at once (the reference waits 5 s; the heartbeat alone would take
    # ~11 periods and those 5 s)
    hub = hub_factory(n_engines=2)
    client = hub.connect(n_engines=2)
    marker = tmp_path / "started"
    ar = client.load_balanced_view().apply_async(announce_and_sleep, str(marker), 30)
    victim = _started_on(hub, marker)

    killed_at = time.monotonic()
    victim.send_signal(signal.SIGKILL)
    with pytest.raises(ENGINE_ERRORS) as info:
        ar.get(timeout=scaled(DEATH_BOUND))
    took = time.monotonic() - killed_at
    assert _is_engine_error(info.value), repr(info.value)
    assert took < scaled(2.5), f"the task failed {took:.1f}s after the kill"
    assert info.value.render_traceback()[0] == f"[{victim.engine_id}:apply]"


@pytest.mark.ours_only
def test_engine_death_under_coalescing_broadcast_renders_as_ipyparallel_error(hub_factory, tmp_path):
    # the reference never answers a coalescing broadcast one of whose engines died; we answer with
    # an EngineError whose engine_info carries what ipyparallel renders ([engine_id:method])
    from .remote import wait_for_gate_on

    hub = hub_factory(n_engines=2)
    client = hub.connect(n_engines=2)
    victim_id, survivor_id = client.ids[:2]
    victim = hub.engine_process(victim_id)
    gate = tmp_path / "gate"  # never opened: the victim's part never ends
    ar = client.broadcast_view(is_coalescing=True).apply_async(wait_for_gate_on, victim.pid, str(gate))
    survivor_part = f"{ar.msg_ids[0]}_{client._engines[survivor_id]}"
    wait_for(lambda: client.db_query({"msg_id": survivor_part, "completed": {"$ne": None}}, ["msg_id"]), 10,
             "the survivor's part of the broadcast to finish")

    victim_uuid = client._engines[victim_id]  # (the client forgets it once the death is announced)
    victim.send_signal(signal.SIGKILL)  # its nanny reports it: the coalesced reply comes at once
    with pytest.raises(error.RemoteError) as info:
        ar.get(timeout=scaled(DEATH_BOUND))
    err = info.value
    assert err.ename == "EngineError"
    assert err.engine_info == {"engine_uuid": victim_uuid, "engine_id": victim_id, "method": "apply"}
    assert err.render_traceback()[0] == f"[{victim_id}:apply]"
    assert str(err).startswith(f"[{victim_id}:apply] EngineError: Engine {victim_id} died")
