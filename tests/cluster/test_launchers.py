"""Launchers: batch job scripts (rendered, dry-run, submitted to a stand-in scheduler), ssh (commands,
and a stand-in ssh that runs the remote side locally), entry-point lookup."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import psutil
import pytest

from jupyter_hub_ctl.cluster import Cluster, EngineStartFailed, LauncherNotFound, launcher_class, launcher_names
from jupyter_hub_ctl.cluster.errors import LaunchFailed
from jupyter_hub_ctl.cluster.launchers.batch import (
    LSFEngineLauncher, PBSEngineLauncher, SGEEngineLauncher, SlurmEngineLauncher,
)
from jupyter_hub_ctl.cluster.launchers.ssh import SSHEngineLauncher

from .conftest import FAST, assert_sigint_interrupts, running_sleeper, wait_for

ENGINE_FILE = "/shared/profile/security/ipcontroller-b1-engine.json"
EXPECTED = {
    SlurmEngineLauncher: ["#SBATCH --ntasks=3", "#SBATCH --partition=gpu", "#SBATCH --account=proj7",
                          "#SBATCH --time=01:30:00", "srun "],
    PBSEngineLauncher: ["#PBS -l select=1:ncpus=3", "#PBS -q gpu", "#PBS -A proj7", "#PBS -l walltime=01:30:00",
                        "seq 1 3"],
    SGEEngineLauncher: ["#$ -pe smp 3", "#$ -q gpu", "#$ -A proj7", "#$ -l h_rt=01:30:00", "seq 1 3"],
    LSFEngineLauncher: ["#BSUB -n 3", "#BSUB -q gpu", "#BSUB -P proj7", "#BSUB -W 01:30:00", "seq 1 3"],
}


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.scheduler)
def test_batch_templates_render_valid_scripts(cls, tmp_path):
    launcher = cls(profile_dir="/shared/profile", cluster_id="b1", queue="gpu", account="proj7", walltime="01:30:00",
                   extra_directives=["# site: extra line"])
    script = launcher.render(3, ENGINE_FILE)
    for piece in EXPECTED[cls] + ["# site: extra line", f"--file={ENGINE_FILE}", "-m jupyter_hub_ctl.engine",
                                  "IPP_CLUSTER_ID=b1", "hubctl-b1"]:
        assert piece in script, f"{piece!r} missing from\n{script}"
    path = tmp_path / "job.sh"
    path.write_text(script)
    check = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_batch_template_is_configurable_and_errors_are_explained():
    launcher = SlurmEngineLauncher(profile_dir="/p", cluster_id="b2",
                                   batch_template="#!/bin/sh\n# {{literal}} n={n}\n{program_and_args}\n")
    assert launcher.render(2, "/p/e.json").startswith("#!/bin/sh\n# {literal} n=2\n")
    launcher.batch_template = "#!/bin/sh\n{no_such_field}\n"
    with pytest.raises(LaunchFailed, match="no_such_field"):
        launcher.render(1, "/p/e.json")


@pytest.mark.parametrize("name", ["slurm", "pbs", "sge", "lsf"])
def test_cli_dry_run_prints_the_job_script_and_starts_nothing(hubenv, name):
    h = hubenv
    res = h.cli("start", "-n", "4", "--launcher", name, "--id", "dry", "--dry-run",
                "--set", f"{launcher_class(name).__name__}.queue=short")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("#!/bin/sh") and "short" in res.stdout
    assert "ipcontroller-dry-engine.json" in res.stdout
    assert not h.state_dir.exists() or not list(h.state_dir.iterdir())
    assert h.processes() == []


def test_dry_run_via_the_api_returns_the_script(hubenv):
    cluster = Cluster(n=2, engine_launcher="pbs", cluster_id="apidry", launcher_options={"dry_run": True})
    cluster.start_sync()
    [script] = cluster.dry_run_scripts
    assert "#PBS -l select=1:ncpus=2" in script
    assert hubenv.processes() == []


def test_launchers_are_found_by_entry_point_name():
    assert {"local", "mpi", "ssh", "slurm", "pbs", "sge", "lsf"} <= set(launcher_names())
    assert launcher_class("ssh") is SSHEngineLauncher
    assert launcher_class("jupyter_hub_ctl.cluster.launchers.batch:SGEEngineLauncher") is SGEEngineLauncher
    with pytest.raises(LauncherNotFound, match="available: .*local"):
        launcher_class("nonesuch")


# ---------------------------------------------------------------- a stand-in scheduler
def _executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch/squeue/scancel that run the job on this machine in its own session (job id = its pid)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "sbatch", '#!/bin/sh\nsetsid sh "$2" </dev/null >/dev/null 2>&1 &\necho "$!"\n')
    _executable(bin_dir / "squeue", '#!/bin/sh\nkill -0 "$3" 2>/dev/null && echo RUNNING\nexit 0\n')
    _executable(bin_dir / "scancel", '#!/bin/sh\nkill -TERM "-$1"\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


JOB = "#!/bin/sh\nexec >> {output} 2>&1\nfor i in $(seq 1 {n}); do\n  {program_and_args} &\ndone\nwait\n"


def test_batch_job_registers_engines_and_is_cancelled_on_stop(hubenv, fake_slurm):
    cluster = Cluster(n=2, engine_launcher="slurm", cluster_id="job", controller_args=[FAST],
                      launcher_options={"batch_template": JOB})
    cluster.start_sync()
    try:
        [job] = cluster.engine_sets
        assert job["job_id"] and job["count"] == 2 and job["pid"] is None
        assert len(cluster.wait_for_engines_sync(2, 10)) == 2
        assert psutil.pid_exists(int(job["job_id"]))
        script = (hubenv.profile_dir / "log" / "hubctl-slurm-job-0.0.sh").read_text()
        assert "--file=" in script and "ipcontroller-job-engine.json" in script
    finally:
        cluster.stop_sync()
    wait_for(lambda: hubenv.processes() == [], 15, "the cancelled job's engines to end")


def test_batch_job_that_ends_at_once_fails_the_start(hubenv, fake_slurm):
    cluster = Cluster(n=1, engine_launcher="slurm", cluster_id="jobfail", controller_args=[FAST],
                      launcher_options={"batch_template": "#!/bin/sh\nexec >> {output} 2>&1\necho job-broke\nexit 3\n"})
    with pytest.raises(EngineStartFailed, match=r"slurm job \d+ ended") as info:
        cluster.start_sync()
    assert "job-broke" in info.value.log_tail
    assert hubenv.processes() == []


def test_a_refused_submission_says_what_the_scheduler_said(hubenv, fake_slurm):
    """The scheduler's own message is in the error's first line (the one the panel, the CLI and
    %hub show), not only 'failed with code 1'."""
    _executable(fake_slurm / "sbatch", '#!/bin/sh\necho "sbatch: error: Batch job submission failed: '
                'Invalid account or account/partition combination specified" >&2\nexit 1\n')
    cluster = Cluster(n=1, engine_launcher="slurm", cluster_id="refused", controller_args=[FAST],
                      launcher_options={"account": "nobody"})
    with pytest.raises(LaunchFailed) as info:
        cluster.start_sync()
    first = str(info.value).splitlines()[0]
    assert "failed with code 1" in first and "Invalid account or account/partition combination" in first, first
    assert hubenv.processes() == []


# ---------------------------------------------------------------- ssh
def test_ssh_commands_keep_the_key_off_the_command_line():
    launcher = SSHEngineLauncher(profile_dir="/p", cluster_id="s1", engines={"alice@node1": 2, "node2": 1},
                                 ssh_args=["-p", "2222"], remote_python="/opt/py/bin/python3",
                                 environment={"OMP_NUM_THREADS": "1"})
    assert [launcher.host_for(i) for i in range(4)] == ["alice@node1", "alice@node1", "node2", "alice@node1"]
    cmd = launcher.command("node2")
    assert cmd[:4] == ["ssh", "-p", "2222", "node2"]
    remote = cmd[4]
    assert remote.startswith("sh -c ") and "/opt/py/bin/python3 -m jupyter_hub_ctl.engine" in remote
    assert "read -r IPP_CONNECTION_INFO" in remote and "OMP_NUM_THREADS=1" in remote
    assert "key" not in remote.replace("BatchMode", "")


def test_cli_dry_run_renders_ssh_and_mpi_commands(hubenv):
    h = hubenv
    ssh = h.cli_json("start", "-n", "2", "--launcher", "ssh", "--dry-run", "--id", "s",
                     "--set", 'SSHEngineLauncher.engines={"nodeA": 1, "nodeB": 1}')
    assert [c[3] for c in ssh["commands"]] == ["nodeA", "nodeB"]
    mpi = h.cli_json("start", "-n", "3", "--launcher", "mpi", "--dry-run", "--id", "m",
                     "--set", 'MPIEngineLauncher.mpi_args=["--oversubscribe"]')
    [cmd] = mpi["commands"]
    assert cmd[:3] == ["mpiexec", "-n", "3"] and "--oversubscribe" in cmd and cmd[-1] == "--mpi"


FAKE_SSH = """
import os, sys
args = sys.argv[1:]
while args and args[0].startswith("-"):
    args = args[2:] if args[0] in ("-o", "-p", "-i") else args[1:]
host, remote = args[0], args[1]
with open(os.environ["FAKE_SSH_LOG"], "a") as f:
    f.write(host + "\\n")
os.execvp("sh", ["sh", "-c", remote])
"""


def test_ssh_engines_register_take_signals_and_stop(hubenv, tmp_path, monkeypatch):
    fake = tmp_path / "fake_ssh.py"
    fake.write_text(FAKE_SSH)
    monkeypatch.setenv("FAKE_SSH_LOG", str(tmp_path / "hosts.log"))
    cluster = Cluster(n=2, engine_launcher="ssh", cluster_id="ssh", controller_args=[FAST],
                      launcher_options={"ssh_cmd": [sys.executable, str(fake)], "remote_python": sys.executable,
                                        "engines": {"hostA": 1, "hostB": 1}})
    cluster.start_sync()
    try:
        assert sorted((tmp_path / "hosts.log").read_text().split()) == ["hostA", "hostB"]
        key = cluster.client_connection_info()["key"]
        for es in cluster.engine_sets:
            assert key not in " ".join(psutil.Process(es["pid"]).cmdline())
        with cluster.connect_client_sync() as client:
            assert_sigint_interrupts(cluster, running_sleeper(client[0]))  # SIGINT relayed over ssh's stdin
    finally:
        cluster.stop_sync()
    wait_for(lambda: hubenv.processes() == [], 15, "the remote engines to end when ssh's stdin closed")


def test_ssh_engine_killed_remotely_is_reported(hubenv, tmp_path, monkeypatch):
    fake = tmp_path / "fake_ssh.py"
    fake.write_text(FAKE_SSH)
    monkeypatch.setenv("FAKE_SSH_LOG", str(tmp_path / "hosts.log"))
    cluster = Cluster(n=1, engine_launcher="ssh", cluster_id="sshk", controller_args=[FAST], restart_engines=True,
                      restart_backoff=0.1, launcher_options={"ssh_cmd": [sys.executable, str(fake)],
                                                             "remote_python": sys.executable,
                                                             "engines": {"hostA": 1}})
    cluster.start_sync()
    try:
        [es] = cluster.engine_sets
        engine = [p for p in psutil.Process(es["pid"]).children(recursive=True)
                  if "jupyter_hub_ctl.engine" in " ".join(p.cmdline())][0]
        engine.kill()
        wait_for(lambda: any(e["restarts"] == 1 and e["status"] == "running" for e in cluster.engine_sets), 30,
                 "the ssh engine to be restarted")
        events = json.load(open(hubenv.state_dir / "hub-sshk.json"))["events"]
        assert any("remote engine on hostA killed by SIGKILL (possibly out of memory)" in e["message"] for e in events)
    finally:
        cluster.stop_sync()
    wait_for(lambda: hubenv.processes() == [], 15, "the hub's processes to end")
