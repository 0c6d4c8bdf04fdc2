"""Engine churn: 10,000 short load-balanced tasks with ``retries=3`` while an engine is SIGKILLed and
replaced every 2 s.  Every task ends exactly once (completed or failed), none runs again after it
succeeded, nothing stays pending or unassigned, and the controller's memory stays flat."""

from __future__ import annotations

import collections
import os
import random
import signal
import threading
import time

from support.procs import rss_kb, wait_for

N_TASKS = 10_000
KILL_EVERY = 2.0
N_ENGINES = 3


def _task(logdir: str):
    def run(i):
        import os
        import time

        path = os.path.join(logdir, f"{os.getpid()}.log")
        with open(path, "a") as f:
            f.write(f"S {i} {time.time():.6f}\n")
        time.sleep(0.004)  # the work
        with open(path, "a") as f:
            f.write(f"E {i} {time.time():.6f}\n")
        return i, os.getpid()

    return run


def _runs(logdir: str) -> dict:
    """task index -> [(kind, time, pid)] from every engine's log."""
    runs = collections.defaultdict(list)
    for name in os.listdir(logdir):
        pid = int(name.split(".")[0])
        with open(os.path.join(logdir, name)) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:  # a line cut short by SIGKILL has fewer fields
                    runs[int(parts[1])].append((parts[0], float(parts[2]), pid))
    return runs


def test_ten_thousand_tasks_survive_engines_killed_every_two_seconds(hub_factory, tmp_path):
    h = hub_factory("--sqlitedb", "--HeartMonitor.max_heartmonitor_misses=3", "--TaskScheduler.stranded_delay=0.3",
                    ping=100, n_engines=N_ENGINES)
    rc = h.client()
    rc.wait_for_engines(N_ENGINES, timeout=60)
    logdir = tmp_path / "runs"
    logdir.mkdir()
    lv = rc.load_balanced_view()
    lv.retries = 3
    task = _task(str(logdir))
    ars = [lv.apply_async(task, i) for i in range(N_TASKS)]
    pid = h.controller.proc.pid

    killed, rss = [], []
    finished = threading.Event()
    waiter = threading.Thread(target=lambda: ([ar.wait(300) for ar in ars], finished.set()), daemon=True)
    waiter.start()
    deadline = time.monotonic() + 240
    rng = random.Random(8)
    while not finished.wait(KILL_EVERY):  # the scenario: one engine killed and replaced per period
        assert time.monotonic() < deadline, f"{sum(not a.ready() for a in ars)} tasks unfinished after 240 s"
        alive = [p for p in h.engines.procs if p.poll() is None]
        victim = rng.choice(alive)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        killed.append(victim.pid)
        h.engines.start(1)
        rss.append((sum(a.ready() for a in ars), rss_kb(pid)))
    waiter.join(10)

    # every task ended once: completed or failed
    ok, failed = 0, collections.Counter()
    for i, ar in enumerate(ars):
        err = ar.exception(0)
        if err is None:
            value, _ = ar.get(0)
            assert value == i
            ok += 1
        else:
            failed[getattr(err, "ename", type(err).__name__)] += 1
    assert ok + sum(failed.values()) == N_TASKS
    assert set(failed) <= {"EngineError"}, failed
    assert len(killed) >= 3, "the run ended before three engines were killed; make the tasks longer"

    # nothing pending or unassigned anywhere
    status = rc.result_status([ar.msg_ids[0] for ar in ars])
    assert status["pending"] == [] and len(status["completed"]) == N_TASKS
    queues = rc.queue_status()
    assert queues["unassigned"] == 0
    assert all(q["queue"] == 0 and q["tasks"] == 0 for k, q in queues.items() if isinstance(k, int)), queues

    # no task ran again after it succeeded: every finished run but the last was on an engine later killed
    runs = _runs(str(logdir))
    killed_set = set(killed)
    for i, ar in enumerate(ars):
        ends = sorted((t, p) for kind, t, p in runs.get(i, []) if kind == "E")
        assert all(p in killed_set for _, p in ends[:-1]), f"task {i} ran to the end twice on live engines: {ends}"
        if ar.exception(0) is None:
            assert ends and ends[-1][1] == ar.get(0)[1], f"task {i}: its result came from another run"
            starts_after = [t for kind, t, p in runs[i] if kind == "S" and t > ends[-1][0]]
            assert not starts_after, f"task {i} started again after it succeeded"

    # controller memory flat: from the first fifth of the run to the end
    assert rss, "no memory samples"
    early = next((kb for done, kb in rss if done >= N_TASKS // 5), rss[0][1])
    growth_mb = (rss_kb(pid) - early) / 1024
    assert growth_mb < 25, f"controller RSS grew {growth_mb:.1f} MB during the churn: {rss}"
    print(f"\nchurn: {ok} completed, {dict(failed)} failed, {len(killed)} engines killed, "
          f"{sum(len([r for r in v if r[0] == 'S']) for v in runs.values())} runs started, "
          f"controller RSS {early // 1024} -> {rss_kb(pid) // 1024} MB")
    wait_for(lambda: rc.health()["db"]["pending"] == 0, 20, "every record written")
    assert len(rc.db_query({"completed": {"$ne": None}}, keys=["msg_id"])) >= N_TASKS
