"""Connection files: names, atomic 0600 writing, reading, profile directories."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Optional

CLIENT_KEYS = (
    "key", "signature_scheme", "pack", "unpack", "location", "curve_serverkey", "ssh",
    "interface", "registration", "control", "mux", "task", "task_scheme", "iopub",
    "notification", "broadcast",
)
ENGINE_KEYS = (
    "key", "signature_scheme", "pack", "unpack", "location", "curve_serverkey", "ssh",
    "interface", "registration", "control", "mux", "task", "iopub", "hb_ping", "hb_pong",
    "broadcast",
)

#: environment variable naming the launched set an engine belongs to (``cluster`` launchers set
#: it); the engine names the set when it registers, and the set's supervisor names it in the
#: ``unregistration_request`` it sends when it sees the set's process exit
ENGINE_SET_ENV = "HUBCTL_ENGINE_SET"


def ipython_dir() -> str:
    return os.path.expanduser(os.environ.get("IPYTHONDIR") or os.path.join("~", ".ipython"))


def profile_dir_for(profile: str = "default", base: Optional[str] = None) -> str:
    if not profile or "/" in profile or os.sep in profile or profile in (".", ".."):
        raise ValueError(f"invalid profile name {profile!r}")
    return os.path.join(base or ipython_dir(), f"profile_{profile}")


def ensure_profile_dir(path: str) -> str:
    path = os.path.abspath(os.path.expanduser(path))
    for sub in ("", "security", "log", "pid"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    os.chmod(os.path.join(path, "security"), 0o700)
    return path


def connection_file_names(cluster_id: str = "") -> tuple:
    suffix = f"-{cluster_id}" if cluster_id else ""
    return f"ipcontroller{suffix}-client.json", f"ipcontroller{suffix}-engine.json"


def connection_file_paths(profile_dir: str, cluster_id: str = "") -> tuple:
    sec = os.path.join(profile_dir, "security")
    c, e = connection_file_names(cluster_id)
    return os.path.join(sec, c), os.path.join(sec, e)


def curve_key_path(profile_dir: str, cluster_id: str = "") -> str:
    """Where a controller keeps its CurveZMQ key pair between runs (--reuse): 0600, never sent to peers."""
    suffix = f"-{cluster_id}" if cluster_id else ""
    return os.path.join(profile_dir, "security", f"ipcontroller{suffix}-curve.json")


def write_atomic(path: str, data: bytes, mode: int = 0o600, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically; the file has ``mode`` from its first byte.

    ``fsync=False`` still survives the writer being killed (the page cache is the kernel's),
    just not a crash of the machine.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)  # mkstemp creates 0600
    try:
        if mode != 0o600:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_connection_file(path: str, info: dict) -> None:
    write_atomic(path, (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())


def read_connection_file(path: str) -> dict:
    with open(path, "rb") as f:
        info = json.load(f)
    if not isinstance(info, dict):
        raise ValueError(f"{path}: not a JSON object")
    return info


def url(interface: str, port: int) -> str:
    return f"{interface}:{port}"
