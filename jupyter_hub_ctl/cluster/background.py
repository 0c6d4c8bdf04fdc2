"""Hubs owned by a background daemon: started, scaled and stopped through their state files.

This is how every long-lived tool starts a hub (``jupyter hubctl start``, the server
extension, ``%hub start``): the daemon (``python -m jupyter_hub_ctl.cluster.daemon``) owns
the controller and engines and supervises them, so the hub outlives whichever process
asked for it.  Requests to a running hub go through its state file (``lifecycle``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Optional

from traitlets.config import Config

from ..wire.connection import ensure_profile_dir
from . import state
from .cluster import Cluster
from .lifecycle import request_scale, request_stop, stop  # noqa: F401  (the tools' entry points)


def make_cluster(config: Config) -> Cluster:
    """A configured Cluster with its launcher resolved (raises on bad ids, launchers or traits)."""
    cluster = Cluster(config=config)
    cluster.launcher  # resolve and configure the launcher now, so errors surface here
    return cluster


def start(config: Config, owner_role: str = "cli") -> dict:
    """Claim a state file for a new hub and spawn its daemon.

    Returns ``{"id", "daemon_pid", "log", "record"}``; raises HubExists if a live hub has the id.
    """
    config = Config(config)
    cluster = make_cluster(config)
    hub_id = cluster.cluster_id
    profile_dir = ensure_profile_dir(cluster.profile_dir)
    config.Cluster.cluster_id = hub_id
    config.Cluster.profile_dir = profile_dir
    record = state.new_record(hub_id, profile_dir, owner={**state.process_identity(os.getpid()), "role": owner_role},
                              launcher=cluster.engine_launcher, n=cluster.n, db=cluster.db)
    state.claim(record)
    log = os.path.join(profile_dir, "log", f"hubctl-daemon-{hub_id}.log")
    cmd = [sys.executable, "-m", "jupyter_hub_ctl.cluster.daemon", "--hub-id", hub_id,
           "--config-json", json.dumps(config, default=str)]
    try:
        with open(log, "ab") as f:
            daemon = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                      start_new_session=True, close_fds=True)
    except OSError as e:
        error = f"cannot start the hub daemon: {e}"
        state.update_state(hub_id, lambda r: r.update(state="failed", error=error))
        raise
    record = state.update_state(
        hub_id, lambda r: r.update(owner={**state.process_identity(daemon.pid), "role": "daemon"})) or record
    return {"id": hub_id, "daemon_pid": daemon.pid, "log": log, "record": record, "process": daemon}


def daemon_log(record: dict) -> Optional[str]:
    profile_dir = record.get("profile_dir")
    if not profile_dir:
        return None
    return os.path.join(profile_dir, "log", f"hubctl-daemon-{record['id']}.log")
