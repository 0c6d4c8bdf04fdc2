"""What every engine launcher provides, the engine-set record, and launcher lookup by name.

A launcher turns "start these engine slots" into processes or batch jobs on some
backend.  It returns ``EngineSet`` records (one per process or job; a set may hold
several engines, as an ``mpiexec`` does), and later polls, signals and stops them.
Launchers are found by name in the ``jupyter_hub_ctl.launchers`` entry-point group,
so other packages can add their own.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from subprocess import Popen
from typing import Optional

from traitlets import Dict, List, Unicode
from traitlets.config import LoggingConfigurable
from traitlets.utils.importstring import import_item

from ...wire.connection import ENGINE_SET_ENV
from .. import processes
from ..errors import LauncherNotFound
from ..state import process_identity, process_status, signal_proven, terminate_proven_async

ENTRY_POINT_GROUP = "jupyter_hub_ctl.launchers"

#: Launchers shipped with this package (also declared as entry points in pyproject.toml;
#: listed here too so a source checkout works before its metadata is rebuilt).
BUILTIN_LAUNCHERS = {
    "local": "jupyter_hub_ctl.cluster.launchers.local:LocalEngineLauncher",
    "mpi": "jupyter_hub_ctl.cluster.launchers.mpi:MPIEngineLauncher",
    "ssh": "jupyter_hub_ctl.cluster.launchers.ssh:SSHEngineLauncher",
    "slurm": "jupyter_hub_ctl.cluster.launchers.batch:SlurmEngineLauncher",
    "pbs": "jupyter_hub_ctl.cluster.launchers.batch:PBSEngineLauncher",
    "sge": "jupyter_hub_ctl.cluster.launchers.batch:SGEEngineLauncher",
    "lsf": "jupyter_hub_ctl.cluster.launchers.batch:LSFEngineLauncher",
}


def _load(spec: str):
    module, _, attr = spec.partition(":")
    obj = import_item(module) if not attr else getattr(import_item(module), attr)
    return obj


def launcher_names() -> list:
    names = set(BUILTIN_LAUNCHERS)
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def launcher_class(name: str):
    """The launcher class registered as ``name``, or named by an import string (``pkg.mod:Class``)."""
    if not name:
        raise LauncherNotFound("no launcher name given")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    if name in BUILTIN_LAUNCHERS:
        return _load(BUILTIN_LAUNCHERS[name])
    if ":" in name or "." in name:
        try:
            cls = _load(name)
        except (ImportError, AttributeError) as e:
            raise LauncherNotFound(f"cannot import launcher {name!r}: {e}") from None
        if not (isinstance(cls, type) and issubclass(cls, EngineLauncher)):
            raise LauncherNotFound(f"{name!r} is not an EngineLauncher subclass")
        return cls
    raise LauncherNotFound(f"unknown launcher {name!r}; available: {', '.join(launcher_names())}")


def describe_launchers() -> dict:
    """``{name: first line of the launcher's docstring}`` for every registered launcher."""
    out = {}
    for name in launcher_names():
        try:
            doc = (launcher_class(name).__doc__ or "").strip().splitlines()
            out[name] = doc[0] if doc else ""
        except Exception as e:  # a broken third-party entry point must not break listing
            out[name] = f"(unavailable: {e})"
    return out


@dataclass
class EngineSet:
    """One launched unit: a process (local, ssh, mpiexec) or a batch job, holding ``count`` engines."""

    slot: int
    count: int = 1
    pid: Optional[int] = None
    create_time: Optional[float] = None
    log: str = ""
    job_id: Optional[str] = None
    host: str = ""
    generation: int = 0
    restarts: int = 0
    status: str = "starting"  # starting | running | exited | stopped
    exit: Optional[dict] = None
    started: float = field(default_factory=time.time)
    owner_pid: int = field(default_factory=os.getpid)
    owner: str = ""  # token of the Cluster object that launched it
    streak: int = 0  # consecutive quick deaths (restart backoff)
    oom_baseline: Optional[dict] = None
    tag: str = ""  # the set's name for the hub (ENGINE_SET_ENV); empty: the hub is not told of its exit
    proc: Optional[Popen] = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "proc"}

    @classmethod
    def from_dict(cls, d: dict) -> "EngineSet":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "proc"}
        return cls(**known)

    @property
    def label(self) -> str:
        """``engine slot 3 (pid 123)``, ``engine set of 4, slots 0-3 (pid 77)``, ``... (job 991)``."""
        where = f"pid {self.pid}" if self.pid else f"job {self.job_id}"
        if self.count == 1:
            return f"engine slot {self.slot} ({where})"
        return f"engine set of {self.count}, slots {self.slot}-{self.slot + self.count - 1} ({where})"

    @property
    def identity(self) -> Optional[dict]:
        return {"pid": self.pid, "create_time": self.create_time} if self.pid else None

    @classmethod
    def from_process(cls, slot: int, proc: Popen, log: str, count: int = 1, **kw) -> "EngineSet":
        ident = process_identity(proc.pid)
        return cls(slot=slot, count=count, pid=proc.pid, create_time=ident["create_time"], log=log, proc=proc,
                   oom_baseline=processes.oom_kill_count(proc.pid), **kw)


class EngineLauncher(LoggingConfigurable):
    """Base class of engine launchers (not usable on its own)."""

    #: can one engine slot be relaunched on its own (supervised restarts)?
    restartable = False
    #: minimum seconds between two polls of one set (batch schedulers are slow to ask)
    poll_interval = 0.0

    engine_cmd = List(
        Unicode(), default_value=[sys.executable, "-m", "jupyter_hub_ctl.engine"], config=True,
        help="Command that runs one engine (program and leading arguments).")
    engine_args = List(Unicode(), config=True, help="Extra arguments appended to every engine command.")
    environment = Dict(value_trait=Unicode(), config=True,
                       help="Extra environment variables for the engines.").tag(
        basic=True, title="Environment variables", example={"OMP_NUM_THREADS": "1"})
    work_dir = Unicode("", config=True, help="Working directory of the engines (default: the current one)."
                       ).tag(basic=True, title="Working directory")

    # context, set by the Cluster that owns the launcher
    profile_dir = Unicode("", help="Profile directory of the hub (set by the Cluster).")
    cluster_id = Unicode("", help="Id of the hub (set by the Cluster).")

    @property
    def log_dir(self) -> str:
        return os.path.join(self.profile_dir, "log")

    def log_path(self, slot: int, generation: int = 0, kind: str = "engine") -> str:
        return os.path.join(self.log_dir, f"hubctl-{kind}-{self.cluster_id}-{slot}.{generation}.log")

    def options(self) -> dict:
        """The launcher's configurable values, for the hub's state file."""
        return {name: getattr(self, name) for name in sorted(self.trait_names(config=True))}

    def engine_env(self, engine_info: dict) -> dict:
        env = dict(os.environ)
        env.update(self.environment)
        env["IPP_PROFILE_DIR"] = self.profile_dir
        env["IPP_CLUSTER_ID"] = self.cluster_id
        env["IPP_CONNECTION_INFO"] = json.dumps(engine_info, sort_keys=True)
        return env

    def set_tag(self, slot: int, generation: int) -> str:
        """A name, unique in this hub, for the set launched at ``slot``; its engines get it in
        ``ENGINE_SET_ENV`` and name it when they register."""
        return f"{self.cluster_id}/{slot}.{generation}/{secrets.token_hex(4)}"

    def engine_command(self, extra: tuple = ()) -> list:
        return [*self.engine_cmd, *extra, *self.engine_args]

    # ---------------------------------------------------------------- the backend's part
    async def launch(self, slots: list, engine_info: dict, engine_file: str, generation: int = 0) -> list:
        """Start engines for ``slots``; return the EngineSets started."""
        raise NotImplementedError

    def poll(self, es: EngineSet) -> tuple:
        """``(finished, returncode)``; returncode None when the set is not our child."""
        if es.proc is not None:
            code = es.proc.poll()
            return (code is not None, code)
        if es.pid:
            return (process_status(es.identity) != "alive", None)
        return (False, None)

    def can_signal(self, es: EngineSet) -> bool:
        """Can ``signal`` reach this set's engines directly (else signals go through the hub)?"""
        return es.proc is not None or bool(es.pid)

    def signal(self, es: EngineSet, sig: int) -> bool:
        if es.proc is not None:
            if es.proc.poll() is None:
                processes.signal_group(es.proc, sig)
                return True
            return False
        return signal_proven(es.identity, sig, group=True)

    async def stop(self, es: EngineSet, timeout: float) -> None:
        if es.proc is not None:
            await processes.terminate(es.proc, timeout)
            return
        if es.pid:
            await terminate_proven_async([es.identity], timeout)

    def describe(self, es: EngineSet, returncode: Optional[int]) -> dict:
        return processes.describe_exit(returncode, es.oom_baseline)

