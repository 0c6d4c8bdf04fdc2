"""Engines started through a real ``mpiexec`` (Debian: openmpi-bin), registering with their ranks as ids."""

from __future__ import annotations

import json
import shutil

import pytest

from jupyter_hub_ctl import Client

from .conftest import FAST

pytestmark = pytest.mark.skipif(not shutil.which("mpiexec"),
                                reason="mpiexec not found (install an MPI, e.g. Debian's openmpi-bin)")

MPI_ARGS = 'MPIEngineLauncher.mpi_args=["--oversubscribe"]'


def test_mpi_engines_register_with_their_ranks_as_ids(hubenv):
    h = hubenv
    info = h.cli_json("start", "-n", "3", "--launcher", "mpi", "--id", "mpi", f"--controller-args={FAST}",
                      "--set", MPI_ARGS, timeout=180)
    assert info["engines"] == 3
    engines = h.cli_json("engines", "mpi")
    assert engines["registered"] == [0, 1, 2]
    [mpiexec] = engines["processes"]
    assert mpiexec["count"] == 3
    with Client(info["connection_file"]) as client:
        ranks = {eid: client[eid].apply_sync(lambda: __import__("os").environ["OMPI_COMM_WORLD_RANK"])
                 for eid in client.ids}
    assert ranks == {0: "0", 1: "1", 2: "2"}
    log = open(mpiexec["log"]).read()
    assert "mpiexec -n 3" in log and "--mpi" in log
    assert h.cli("stop", "mpi").returncode == 0
    assert h.processes() == []


def test_mpi_engine_failure_is_reported_with_the_mpiexec_log(hubenv):
    h = hubenv
    res = h.cli("start", "-n", "2", "--launcher", "mpi", "--id", "mpibad", f"--controller-args={FAST}",
                "--set", MPI_ARGS, "--set",
                'MPIEngineLauncher.engine_cmd=["python3", "-c", "import sys; print(\\"rank-fail\\"); sys.exit(4)"]',
                "--set", 'MPIEngineLauncher.rank_ids=false', timeout=180)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "engine set of 2, slots 0-1 (pid" in res.stderr and "exited with code 4 before registering" in res.stderr
    assert "rank-fail" in res.stderr
    assert h.processes() == []
    status = json.loads(h.cli("status", "mpibad", "--json").stdout)
    assert status["state"] == "failed"
