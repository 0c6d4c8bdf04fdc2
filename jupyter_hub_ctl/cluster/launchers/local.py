"""Local processes: the controller, and engines as child processes of this machine."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Optional

from traitlets import Dict, List, Unicode
from traitlets.config import LoggingConfigurable

from .. import processes
from .base import ENGINE_SET_ENV, EngineLauncher, EngineSet

#: Config sections of the controller's classes that are handed to the controller it starts
#: (``--Class.trait=value``): settings in a Cluster's config (``--set SQLiteDB.max_page_count=30``,
#: the server's config) reach the hub's controller.
CONTROLLER_SECTIONS = ("HubFactory", "Hub", "EngineConnector", "HeartMonitor", "TaskScheduler",
                       "BroadcastScheduler", "DaskSupport", "SQLiteDB", "DictDB")

log = logging.getLogger("jupyter_hub_ctl.cluster")


def controller_config_args(config, sections=CONTROLLER_SECTIONS) -> list:
    """The controller-class settings of ``config`` as controller arguments (strings as given, the rest as JSON)."""
    args = []
    for name in sections:
        section = config.get(name) if hasattr(config, "get") else None
        for trait, value in (section or {}).items():
            if isinstance(value, str):
                text = value
            else:
                try:
                    text = json.dumps(value)
                except (TypeError, ValueError):
                    log.warning("controller setting %s.%s=%r cannot be passed on; ignored", name, trait, value)
                    continue
            args.append(f"--{name}.{trait}={text}")
    return args


class LocalControllerLauncher(LoggingConfigurable):
    """Runs the controller as a detached local process logging to ``<profile>/log/``."""

    controller_cmd = List(
        Unicode(), default_value=[sys.executable, "-m", "jupyter_hub_ctl.controller"], config=True,
        help="Command that runs the controller (program and leading arguments).")
    environment = Dict(value_trait=Unicode(), config=True,
                       help="Extra environment variables for the controller.")
    work_dir = Unicode("", config=True, help="Working directory of the controller (default: the current one).")

    def command(self, profile_dir: str, cluster_id: str, db: str = "", ip: str = "", location: str = "",
                extra_args: Optional[list] = None) -> list:
        cmd = [*self.controller_cmd, f"--profile-dir={profile_dir}", f"--cluster-id={cluster_id}"]
        if db:
            cmd.append(f"--{db}")
        if ip:
            cmd.append(f"--ip={ip}")
        if location:
            cmd.append(f"--location={location}")
        cmd.extend(extra_args or ())
        return cmd

    def log_path(self, profile_dir: str, cluster_id: str) -> str:
        return os.path.join(profile_dir, "log", f"hubctl-controller-{cluster_id}.log")

    def start(self, profile_dir: str, cluster_id: str, **kw):
        """Start the controller; return ``(Popen, log_path, command)``."""
        cmd = self.command(profile_dir, cluster_id, **kw)
        env = dict(os.environ)
        env.update(self.environment)
        env["IPP_PROFILE_DIR"] = profile_dir
        env["IPP_CLUSTER_ID"] = cluster_id
        log = self.log_path(profile_dir, cluster_id)
        with open(log, "ab") as f:
            f.write(f"--- hubctl: starting controller: {' '.join(cmd)}\n".encode())
        return processes.spawn(cmd, env, log, cwd=self.work_dir), log, cmd


class LocalEngineLauncher(EngineLauncher):
    """Engines as local processes, one per engine, each logging to ``<profile>/log/``."""

    restartable = True

    async def launch(self, slots: list, engine_info: dict, engine_file: str, generation: int = 0) -> list:
        env = self.engine_env(engine_info)
        cmd = self.engine_command()
        sets = []
        for slot in slots:
            log = self.log_path(slot, generation)
            with open(log, "ab") as f:
                f.write(f"--- hubctl: starting engine slot {slot}: {' '.join(cmd)}\n".encode())
            tag = self.set_tag(slot, generation)
            proc = processes.spawn(cmd, dict(env, **{ENGINE_SET_ENV: tag}), log, cwd=self.work_dir)
            sets.append(EngineSet.from_process(slot, proc, log, generation=generation, tag=tag))
        return sets
