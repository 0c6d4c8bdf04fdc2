"""Task-scheduler dependencies, timeouts, retries and targets (PROTOCOL.md §11.3)."""

import os
import time

import ipyparallel as ipp
import pytest
from ipyparallel import error

from .harness import scaled, wait_for, wait_for_hub_records
from .remote import wait_for_gate, wait_for_gate_then_fail

pytestmark = pytest.mark.timeout(120)

T = scaled(30)


def double(x):
    return 2 * x


def pause(seconds):
    time.sleep(seconds)
    return os.getpid()


def pause_then_fail(seconds):
    time.sleep(seconds)
    raise RuntimeError("failing on purpose")


def log_pid_and_fail(logfile):
    with open(logfile, "a") as f:
        f.write(f"{os.getpid()}\n")
    raise RuntimeError("failing on purpose")


def whoami():
    return os.getpid()


def running_in(pid):
    return os.getpid() == pid


def fail_on_first_engine(marker):
    """Raise on the first engine that runs this (recorded in ``marker``) and
    on that engine only; return the pid anywhere else."""
    pid = os.getpid()
    try:
        with open(marker, "x") as f:
            f.write(str(pid))
    except FileExistsError:
        pass
    with open(marker) as f:
        first = int(f.read())
    if first == pid:
        raise RuntimeError(f"refusing to run on the first engine ({pid})")
    return pid


def remote_ename(ar, timeout=T):
    with pytest.raises(error.RemoteError) as info:
        ar.get(timeout=timeout)
    err = info.value
    assert err.render_traceback() and str(err)  # ipyparallel's own rendering of the error works
    return err.ename


@pytest.fixture
def lview(client):
    return client.load_balanced_view()


def test_after_starts_only_once_the_dependency_completed(lview):
    first = lview.apply_async(pause, 0.5)
    with lview.temp_flags(after=first):
        second = lview.apply_async(whoami)
    second.get(timeout=T)
    first.get(timeout=T)
    assert second.metadata["started"] >= first.metadata["completed"]


def test_follow_runs_on_the_engine_of_the_followed_task(lview):
    first = lview.apply_async(pause, 0.1)
    first.get(timeout=T)
    with lview.temp_flags(follow=first):
        followers = [lview.apply_async(pause, 0.05) for _ in range(4)]
    for ar in followers:
        assert ar.get(timeout=T) == first.get()
        assert ar.engine_id == first.engine_id


def test_any_dependency_is_met_by_the_first_success(lview, gate):
    blocked = lview.apply_async(wait_for_gate, str(gate))
    fast = lview.apply_async(pause, 0.01)
    with lview.temp_flags(after=ipp.Dependency([blocked, fast], all=False)):
        dependent = lview.apply_async(whoami)
    dependent.get(timeout=T)  # while ``blocked`` still waits for the gate
    assert not blocked.ready()
    assert dependent.metadata["started"] >= fast.metadata["completed"]
    gate.open()
    blocked.get(timeout=T)


def test_all_dependency_waits_for_every_task(lview, gate):
    blocked = lview.apply_async(wait_for_gate, str(gate))
    fast = lview.apply_async(pause, 0.01)
    with lview.temp_flags(after=ipp.Dependency([blocked, fast], all=True)):
        dependent = lview.apply_async(whoami)
    fast.get(timeout=T)
    with pytest.raises(TimeoutError):
        dependent.get(timeout=0.5)
    gate.open()
    dependent.get(timeout=T)
    assert dependent.metadata["started"] >= blocked.metadata["completed"]


def test_failure_only_dependency_runs_after_a_failure(lview):
    failing = lview.apply_async(pause_then_fail, 0.05)
    with lview.temp_flags(after=ipp.Dependency([failing], success=False, failure=True)):
        dependent = lview.apply_async(double, 5)
    assert dependent.get(timeout=T) == 10
    assert remote_ename(failing) == "RuntimeError"


def test_failure_only_dependency_on_a_success_is_impossible(lview):
    succeeding = lview.apply_async(double, 1)
    succeeding.get(timeout=T)
    with lview.temp_flags(after=ipp.Dependency([succeeding], success=False, failure=True)):
        dependent = lview.apply_async(double, 5)
    assert remote_ename(dependent) == "ImpossibleDependency"


def test_success_only_dependency_on_a_finished_failure_is_impossible(lview):
    failing = lview.apply_async(pause_then_fail, 0.0)
    assert remote_ename(failing) == "RuntimeError"
    with lview.temp_flags(after=failing):
        dependent = lview.apply_async(double, 5)
    assert remote_ename(dependent) == "ImpossibleDependency"


def test_waiting_dependent_becomes_impossible_when_its_dependency_fails(lview, gate):
    failing = lview.apply_async(wait_for_gate_then_fail, str(gate))
    with lview.temp_flags(after=failing):
        dependent = lview.apply_async(double, 5)
    with pytest.raises(TimeoutError):
        dependent.get(timeout=0.3)  # still waiting: the dependency has not failed yet
    gate.open()
    assert remote_ename(dependent) == "ImpossibleDependency"
    assert remote_ename(failing) == "RuntimeError"


def test_following_tasks_on_two_engines_is_impossible(lview, client):
    a, b = client.ids[:2]
    with lview.temp_flags(targets=[a]):
        on_a = lview.apply_async(whoami)
    with lview.temp_flags(targets=[b]):
        on_b = lview.apply_async(whoami)
    on_a.get(timeout=T)
    on_b.get(timeout=T)
    assert on_a.engine_id != on_b.engine_id
    with lview.temp_flags(follow=ipp.Dependency([on_a, on_b], all=True)):
        dependent = lview.apply_async(whoami)
    assert remote_ename(dependent) == "ImpossibleDependency"
    with lview.temp_flags(follow=ipp.Dependency([on_a, on_b], all=False)):
        either = lview.apply_async(whoami)
    assert either.get(timeout=T) in (on_a.get(), on_b.get())


def test_unmet_dependency_times_out(lview, gate):
    blocker = lview.apply_async(wait_for_gate, str(gate))
    with lview.temp_flags(after=blocker, timeout=0.5):
        dependent = lview.apply_async(double, 3)
    assert remote_ename(dependent) == "TaskTimeout"
    assert not blocker.ready(), "the dependency finished; the timeout proved nothing"
    gate.open()
    blocker.get(timeout=T)


def test_dependency_on_unknown_msg_id_is_invalid(lview):
    with lview.temp_flags(after=["no-such-msg-id-interop"]):
        dependent = lview.apply_async(double, 3)
    assert remote_ename(dependent) == "InvalidDependency"


def test_dependency_on_a_direct_task_is_invalid(lview, client):
    direct = client[client.ids[0]].apply_async(double, 1)
    assert direct.get(timeout=T) == 2
    with lview.temp_flags(follow=direct):
        dependent = lview.apply_async(double, 3)
    assert remote_ename(dependent) == "InvalidDependency"


def test_retry_runs_on_another_engine_and_hides_the_first_failure(lview, client, tmp_path):
    marker = tmp_path / "first-engine"
    with lview.temp_flags(retries=1):
        ar = lview.apply_async(fail_on_first_engine, str(marker))
    pid = ar.get(timeout=T)
    first_pid = int(marker.read_text())
    assert pid != first_pid
    assert ar.metadata["status"] == "ok"
    assert client[ar.engine_id].apply_sync(os.getpid) == pid
    (record,) = wait_for_hub_records(client, ar.msg_ids)
    assert record["result_content"]["status"] == "ok"
    assert record["engine_uuid"] == client._engines[ar.engine_id]


@pytest.mark.ours_only
def test_retried_task_leaves_no_stale_entry_in_queue_status(lview, client, tmp_path):
    # the reference leaves the msg_id in the first engine's ``tasks`` forever
    marker = tmp_path / "first-engine"
    with lview.temp_flags(retries=1):
        ar = lview.apply_async(fail_on_first_engine, str(marker))
    ar.get(timeout=T)
    msg_id = ar.msg_ids[0]

    def cleared():
        status = client.queue_status(verbose=True)
        return all(msg_id not in status[eid]["tasks"] for eid in client.ids)

    wait_for(cleared, 10, "the retried task to leave every engine's tasks")


def test_without_retries_the_first_failure_is_reported(lview, tmp_path):
    marker = tmp_path / "first-engine"
    ar = lview.apply_async(fail_on_first_engine, str(marker))
    assert remote_ename(ar) == "RuntimeError"


def test_retries_exhausted_reports_the_last_failure(lview, client, tmp_path):
    # one retry on two engines: it fails on both and the second failure is forwarded
    attempts = tmp_path / "attempts"
    with lview.temp_flags(retries=1):
        ar = lview.apply_async(log_pid_and_fail, str(attempts))
    assert remote_ename(ar) == "RuntimeError"
    pids = attempts.read_text().split()
    assert len(pids) == 2 and len(set(pids)) == 2, f"attempts ran on {pids}"


def test_retries_beyond_every_target_engine_is_impossible(lview, client, tmp_path):
    # more retries than targets: once every target is blacklisted the task can
    # never run (without targets the reference keeps it queued until a new
    # engine registers)
    attempts = tmp_path / "attempts"
    with lview.temp_flags(retries=5, targets=list(client.ids)):
        ar = lview.apply_async(log_pid_and_fail, str(attempts))
    assert remote_ename(ar) == "ImpossibleDependency"
    assert len(set(attempts.read_text().split())) == 2


def test_engine_side_unmet_dependency_reschedules_on_another_engine(lview, client):
    target = client.ids[1]
    target_pid = client[target].apply_sync(os.getpid)
    picky = ipp.depend(running_in, target_pid)(whoami)
    ars = [lview.apply_async(picky) for _ in range(4)]
    assert [ar.get(timeout=T) for ar in ars] == [target_pid] * 4
    assert {ar.engine_id for ar in ars} == {target}


def test_targets_restrict_load_balancing(client):
    target = client.ids[1]
    lview = client.load_balanced_view(targets=[target])
    ars = [lview.apply_async(pause, 0.02) for _ in range(6)]
    for ar in ars:
        ar.get(timeout=T)
    assert {ar.engine_id for ar in ars} == {target}
