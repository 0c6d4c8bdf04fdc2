"""``python -m jupyter_hub_ctl.engine``: one engine process."""

from __future__ import annotations

import json
import os
import sys
import time

from traitlets import Bool, Float, Integer, Unicode
from traitlets.config import Application

from .._version import __version__
from ..wire.connection import connection_file_paths, ipython_dir, profile_dir_for, read_connection_file

MPI_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK", "SLURM_PROCID")


class EngineApp(Application):
    """Run one engine: register with a controller and serve its requests."""

    name = "hubctl-engine"
    version = __version__
    description = "Start a jupyter_hub_ctl engine."

    url_file = Unicode("", config=True, help="Engine connection file (ipcontroller-<id>-engine.json).")
    profile = Unicode("default", config=True, help="Profile whose security dir holds the connection file.")
    profile_dir = Unicode("", config=True, help="Profile directory (overrides --profile); env IPP_PROFILE_DIR.")
    cluster_id = Unicode("", config=True, help="Cluster id in the connection file name; env IPP_CLUSTER_ID.")
    engine_id = Integer(-1, config=True, help="Ask the controller for this engine id (-1: any).")
    use_mpi_rank = Bool(False, config=True, help="Ask for the MPI rank (from the MPI launcher's environment) as id.")
    wait_for_url_file = Float(10.0, config=True, help="Seconds to wait for the connection file to appear.")
    timeout = Float(5.0, config=True, help="Seconds to wait for the controller's registration reply.")
    controller_timeout = Float(
        60.0, config=True,
        help="Seconds without a heartbeat from the controller after which the engine exits.")
    ident = Unicode("", config=True, help="Engine uuid (default: a new random id).")
    metrics_interval = Float(
        -1.0, config=True,
        help="Seconds between this engine's reports of its CPU, memory, threads and running task to "
        "the hub (0: none; -1: as the hub says in its registration reply, Hub.metrics_interval). "
        "A hub that does not take reports (ipcontroller) gets none.")

    aliases = {
        "file": "EngineApp.url_file",
        "f": "EngineApp.url_file",
        "profile": "EngineApp.profile",
        "profile-dir": "EngineApp.profile_dir",
        "cluster-id": "EngineApp.cluster_id",
        "id": "EngineApp.engine_id",
        "timeout": "EngineApp.timeout",
        "controller-timeout": "EngineApp.controller_timeout",
        "ident": "EngineApp.ident",
        "metrics-interval": "EngineApp.metrics_interval",
        "log-level": "Application.log_level",
    }
    flags = {
        "mpi": ({"EngineApp": {"use_mpi_rank": True}}, "Request the MPI rank as engine id."),
    }

    def connection_info(self) -> dict:
        env = os.environ.get("IPP_CONNECTION_INFO")
        if env:
            return json.loads(env)
        path = self.url_file
        if not path:
            profile_dir = self.profile_dir or os.environ.get("IPP_PROFILE_DIR") or \
                profile_dir_for(self.profile, ipython_dir())
            cluster_id = self.cluster_id or os.environ.get("IPP_CLUSTER_ID", "")
            path = connection_file_paths(profile_dir, cluster_id)[1]
        deadline = time.monotonic() + self.wait_for_url_file
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise SystemExit(f"engine: connection file {path} not found after {self.wait_for_url_file:g}s")
            time.sleep(0.1)
        return read_connection_file(path)

    def requested_id(self):
        if self.use_mpi_rank:
            for var in MPI_RANK_VARS:
                if os.environ.get(var, "").isdigit():
                    return int(os.environ[var])
            try:
                from mpi4py import MPI  # optional

                return MPI.COMM_WORLD.Get_rank()
            except ImportError:
                raise SystemExit("engine: --mpi given but no MPI rank found in the environment") from None
        return self.engine_id if self.engine_id >= 0 else None

    def start(self) -> int:
        from .kernel import Engine, RegistrationError, make_session

        info = self.connection_info()
        session = make_session(info, self.ident or None)
        engine = Engine(info, session, self.requested_id(), self.timeout, self.controller_timeout,
                        self.metrics_interval)
        try:
            engine.register()
        except RegistrationError as e:
            sys.stderr.write(f"engine: {e}\n")
            return 255
        engine.connect()
        sys.__stderr__.write(f"engine {engine.id} ({engine.uuid}) registered\n")
        code = 0
        try:
            code = engine.run()
        except (KeyboardInterrupt, SystemExit):
            code = 0
        finally:
            engine.close()
        return code


def main(argv=None) -> None:
    app = EngineApp()
    app.initialize(argv)
    code = app.start()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    main()
