"""Fixtures: a private Jupyter runtime dir and IPython dir per test, the CLI as a subprocess,
and a process-table check that nothing a test started outlives it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from support.procs import wait_for

#: controller flags that make registration quick in tests (heartbeat every 250 ms)
FAST = "--ping=250"


class HubEnv:
    def __init__(self, root: Path):
        self.root = root
        self.runtime = root / "runtime"
        self.ipython = root / "ipython"
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("IPP_PROFILE_DIR", "IPP_CLUSTER_ID", "IPP_CONNECTION_INFO")}
        self.env.update(JUPYTER_RUNTIME_DIR=str(self.runtime), IPYTHONDIR=str(self.ipython),
                        PYTHONUNBUFFERED="1")
        self.ignore: set = set()  # pids of long-lived helpers a fixture owns (e.g. a private Slurm)

    @property
    def state_dir(self) -> Path:
        return self.runtime / "hubctl"

    @property
    def profile_dir(self) -> Path:
        return self.ipython / "profile_default"

    def cli(self, *args, timeout: float = 120, input: str = None) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "jupyter_hub_ctl.cli", *[str(a) for a in args]]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout, input=input)

    def cli_json(self, *args, expect: int = 0, timeout: float = 120):
        res = self.cli(*args, "--json", timeout=timeout)
        assert res.returncode == expect, f"exit {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
        return json.loads(res.stdout)

    def state(self, hub_id: str) -> dict:
        with open(self.state_dir / f"hub-{hub_id}.json") as f:
            return json.load(f)

    def processes(self) -> list:
        """Live processes (other than this one) whose command line or environment names this test's dirs."""
        mark = str(self.root)
        found = []
        for proc in psutil.process_iter(["pid", "cmdline", "status"]):
            if proc.pid == os.getpid() or proc.pid in self.ignore or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            try:
                text = " ".join(proc.info["cmdline"] or ())
                if mark not in text:
                    text = " ".join(f"{k}={v}" for k, v in proc.environ().items())
            except psutil.Error:
                continue
            if mark in text:
                found.append(proc)
        return found

    def kill_all(self) -> list:
        procs = self.processes()
        for proc in procs:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=5)
        return procs


@pytest.fixture
def hubenv(tmp_path, monkeypatch):
    """A private runtime + IPython dir (also set in this process's environment for the API)."""
    h = HubEnv(tmp_path)
    for key in ("IPP_PROFILE_DIR", "IPP_CLUSTER_ID", "IPP_CONNECTION_INFO"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(h.runtime))
    monkeypatch.setenv("IPYTHONDIR", str(h.ipython))
    yield h
    if h.state_dir.exists():
        h.cli("stop", "--all", timeout=60)
    leftovers = wait_for_gone(h, 10)
    if leftovers:
        names = [" ".join(p.cmdline()) for p in leftovers if p.is_running()]
        h.kill_all()
        pytest.fail(f"processes outlived the test: {names}")


def running_sleeper(view, seconds: float = 30):
    """A task on ``view`` that sleeps ``seconds``, returned once it runs on its engine (it says so):
    a signal sent before then finds the engine idle, where it is ignored (as by ipyparallel's)."""

    def sleeper(s):
        import time

        print("running", flush=True)
        time.sleep(s)

    ar = view.apply_async(sleeper, seconds)
    wait_for(lambda: "running" in ar.stdout, 20, "the task to start on its engine")
    return ar


def assert_sigint_interrupts(cluster, ar) -> None:
    """SIGINT sent through ``cluster`` to its engines ends the running task ``ar`` with KeyboardInterrupt."""
    cluster.signal_engines_sync(signal.SIGINT)
    with pytest.raises(Exception, match="KeyboardInterrupt"):
        ar.get(20)


def wait_for_gone(h: HubEnv, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while True:
        procs = h.processes()
        if not procs or time.monotonic() > deadline:
            return procs
        time.sleep(0.1)
