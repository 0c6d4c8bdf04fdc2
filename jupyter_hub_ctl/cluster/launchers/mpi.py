"""MPI: one ``mpiexec`` starting a set of engines that take their MPI ranks as engine ids."""

from __future__ import annotations

import os
import shutil

from traitlets import Bool, List, Unicode

from .. import processes
from ..errors import LaunchFailed
from .base import ENGINE_SET_ENV, EngineLauncher, EngineSet

EXPORTED = ("IPP_CONNECTION_INFO", "IPP_PROFILE_DIR", "IPP_CLUSTER_ID", ENGINE_SET_ENV)


class MPIEngineLauncher(EngineLauncher):
    """Engines started by mpiexec; each asks the hub for its MPI rank as id."""

    mpi_cmd = List(Unicode(), default_value=["mpiexec"], config=True,
                   help="The MPI launcher command (e.g. ['mpiexec'] or ['mpirun']).")
    mpi_args = List(Unicode(), config=True,
                    help="Extra arguments for mpiexec, before the engine command "
                         "(e.g. ['--oversubscribe'], ['--hostfile', 'hosts'])."
                    ).tag(basic=True, title="mpiexec arguments", example=["--hostfile", "hosts"])
    export_flag = Unicode(
        "auto", config=True,
        help="mpiexec option that exports one environment variable to every rank, so ranks on other "
             "hosts get the hub's connection info: '-x' (OpenMPI), '' (none: MPICH passes the whole "
             "environment), or 'auto' ('-x' when OpenMPI's ompi_info is on PATH).")
    rank_ids = Bool(True, config=True, help="Engines request their MPI rank as engine id (engine flag --mpi).")
    allow_root = Bool(True, config=True,
                      help="When running as root, tell OpenMPI that this is intended (OMPI_ALLOW_RUN_AS_ROOT), "
                           "as in containers; otherwise its mpiexec refuses to start.")

    def engine_env(self, engine_info: dict) -> dict:
        env = super().engine_env(engine_info)
        if self.allow_root and os.geteuid() == 0:
            env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
            env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        return env

    def _export_flag(self) -> str:
        if self.export_flag == "auto":
            return "-x" if shutil.which("ompi_info") else ""
        return self.export_flag

    def command(self, n: int) -> list:
        cmd = [*self.mpi_cmd, "-n", str(n)]
        flag = self._export_flag()
        if flag:
            for name in EXPORTED:
                cmd.extend([flag, name])
        cmd.extend(self.mpi_args)
        cmd.extend(self.engine_command(("--mpi",) if self.rank_ids else ()))
        return cmd

    async def launch(self, slots: list, engine_info: dict, engine_file: str, generation: int = 0) -> list:
        if not self.mpi_cmd or not shutil.which(self.mpi_cmd[0]):
            raise LaunchFailed(f"MPI launcher: {self.mpi_cmd[0] if self.mpi_cmd else '(empty mpi_cmd)'} "
                               "not found on PATH (install an MPI, e.g. Debian's openmpi-bin)")
        cmd = self.command(len(slots))
        log = self.log_path(slots[0], generation, kind="mpi")
        with open(log, "ab") as f:
            f.write(f"--- hubctl: starting {len(slots)} MPI engines: {' '.join(cmd)}\n".encode())
        tag = self.set_tag(slots[0], generation)
        env = dict(self.engine_env(engine_info), **{ENGINE_SET_ENV: tag})
        proc = processes.spawn(cmd, env, log, cwd=self.work_dir)
        return [EngineSet.from_process(slots[0], proc, log, count=len(slots), generation=generation, tag=tag)]
