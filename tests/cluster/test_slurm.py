"""Engines as a real Slurm batch job: a private single-node Slurm (Debian's slurm-wlm and munge)
configured and started by the fixture on this machine, with its own munge key and socket, its own
ports and state directories, and nothing written outside the test's temporary directory."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest
from support.procs import end_process, free_port

from jupyter_hub_ctl import Client

from .conftest import FAST, wait_for

NEEDED = ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "scancel", "sinfo")


def _tail(path, n=15) -> str:
    try:
        return "\n".join(open(path, errors="replace").read().splitlines()[-n:])
    except OSError:
        return ""


@pytest.fixture
def slurm(tmp_path, hubenv):
    """A running single-node Slurm; yields the environment its commands need (SLURM_CONF)."""
    missing = [b for b in NEEDED if not shutil.which(b)]
    if missing:
        pytest.skip(f"Slurm is not installed (missing {', '.join(missing)}; Debian: slurm-wlm munge)")
    if os.geteuid() != 0:
        pytest.skip("the private Slurm of this test runs its daemons as root")
    root = tmp_path / "slurm"
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir(parents=True)
    (root / "munge").chmod(0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o400)
    sock = root / "munge" / "sock"
    node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30).stdout.splitlines()
    node_line = next((ln for ln in node if ln.startswith("NodeName=")), None)
    if not node_line:
        pytest.skip("slurmd -C did not describe this node")
    conf = root / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=hubctltest", f"SlurmctldHost={socket.gethostname().split('.')[0]}",
        f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", f"AuthInfo=socket={sock}", "CredType=cred/munge",
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log", f"SlurmdLogFile={root}/log/slurmd.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core", "MpiDefault=none", "ReturnToService=2", "SchedulerType=sched/builtin",
        f"{node_line} State=UNKNOWN", "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", "",
    ]))
    env = dict(os.environ, SLURM_CONF=str(conf))
    procs, logs = [], []
    try:
        procs.append(subprocess.Popen(
            ["munged", "-F", "-f", f"--key-file={key}", f"--socket={sock}", f"--log-file={root}/log/munged.log",
             f"--pid-file={root}/munge/pid", f"--seed-file={root}/munge/seed"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        try:
            wait_for(lambda: sock.exists() or procs[0].poll() is not None, 15, "munged's socket")
        except AssertionError:
            pytest.skip(f"munged did not start: {_tail(root / 'log' / 'munged.log')}")
        if procs[0].poll() is not None:
            pytest.skip(f"munged exited: {_tail(root / 'log' / 'munged.log')}")
        for daemon in ("slurmctld", "slurmd"):
            logs.append(open(root / "log" / f"{daemon}.out", "wb"))
            procs.append(subprocess.Popen([daemon, "-D", "-f", str(conf)], env=env, stdout=logs[-1],
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

        def idle():
            if any(p.poll() is not None for p in procs):
                return "exited"
            res = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=10)
            return res.stdout.strip() == "idle" and "idle"
        try:
            state = wait_for(idle, 45, "the Slurm node to be idle", interval=0.5)
        except AssertionError:
            state = "not idle"
        if state != "idle":
            pytest.skip(f"slurmctld/slurmd cannot start here ({state}):\n{_tail(root / 'log' / 'slurmctld.out')}"
                        f"\n{_tail(root / 'log' / 'slurmd.out')}")
        hubenv.ignore.update(p.pid for p in procs)
        yield env
    finally:
        for proc in reversed(procs):
            end_process(proc, 15)
        for f in logs:
            f.close()


def test_engines_run_as_a_slurm_batch_job(hubenv, slurm):
    h = hubenv
    h.env["SLURM_CONF"] = slurm["SLURM_CONF"]
    info = h.cli_json("start", "-n", "2", "--launcher", "slurm", "--id", "sl", f"--controller-args={FAST}",
                      "--set", f"SlurmEngineLauncher.python={sys.executable}", timeout=180)
    assert info["engines"] == 2
    [job] = h.cli_json("engines", "sl")["processes"]
    job_id = job["job_id"]
    assert job_id and job["count"] == 2
    queue = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], env=h.env, capture_output=True, text=True)
    assert queue.stdout.strip() == "RUNNING"
    with Client(info["connection_file"]) as client:
        assert client.ids == [0, 1]
        seen = client[:].apply_sync(lambda: (__import__("os").environ.get("SLURM_JOB_ID"),
                                             __import__("os").environ.get("SLURM_PROCID")))
    assert sorted(seen) == [(job_id, "0"), (job_id, "1")]
    assert h.cli("stop", "sl").returncode == 0

    def job_gone():
        res = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], env=h.env, capture_output=True, text=True)
        return res.stdout.strip() in ("", "COMPLETED", "CANCELLED")
    wait_for(job_gone, 30, "scancel to end the job", interval=0.5)
    wait_for(lambda: h.processes() == [], 30, "the job's engines to end")


def test_a_refused_job_fails_the_start_with_sbatchs_own_message(hubenv, slurm):
    h = hubenv
    h.env["SLURM_CONF"] = slurm["SLURM_CONF"]
    out = h.cli("start", "-n", "1", "--launcher", "slurm", "--id", "slbad", f"--controller-args={FAST}",
                "--set", "SlurmEngineLauncher.queue=nosuchpartition", timeout=120)
    assert out.returncode != 0
    said = out.stdout + out.stderr
    assert "failed with code" in said and "nvalid partition" in said, said
    wait_for(lambda: h.processes() == [], 30, "the failed hub's processes to end")
