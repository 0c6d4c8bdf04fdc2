"""Hub state files: one JSON file per hub under ``<jupyter runtime dir>/hubctl/``.

A state file is the single source of truth about a hub for every tool (the
``Cluster`` API, ``jupyter hubctl``, the server extension): its id, profile,
the processes that make it up, the launcher and its options, the connection
files, its state and history.  Files are written atomically (temp file and
rename) with mode 0600 in a 0700 directory; read-modify-write updates hold an
advisory lock on the directory so concurrent tools never lose each other's
changes.

A process recorded in a state file is identified by its pid *and* its start
time (``psutil.Process.create_time``).  A pid whose start time differs was
reused by the system for some other process: it is never signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import time
from datetime import datetime, timezone
from typing import Callable, Iterator, Optional

import psutil
from jupyter_core.paths import jupyter_runtime_dir

from ..wire.connection import write_atomic
from .errors import HubExists, HubNotFound, InvalidHubId

STATE_VERSION = 1
STATES = ("starting", "running", "stopping", "stopped", "failed")
LIVE_STATES = ("starting", "running", "stopping")
MAX_EVENTS = 100
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CREATE_TIME_TOLERANCE = 0.05  # seconds


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def validate_hub_id(hub_id: str) -> str:
    """Return ``hub_id`` if it is a usable id (letters, digits, ``_.-``; ≤ 64 chars)."""
    if not isinstance(hub_id, str) or not _ID_RE.match(hub_id):
        raise InvalidHubId(
            f"invalid hub id {hub_id!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return hub_id


# ---------------------------------------------------------------- directory and paths
def state_dir(create: bool = True) -> str:
    """``<jupyter runtime dir>/hubctl``, created with mode 0700."""
    path = os.path.join(jupyter_runtime_dir(), "hubctl")
    if create:
        os.makedirs(path, mode=0o700, exist_ok=True)
        try:
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, 0o700)
        except PermissionError:
            pass
    return path


def state_path(hub_id: str) -> str:
    return os.path.join(state_dir(), f"hub-{validate_hub_id(hub_id)}.json")


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Hold the state directory's advisory lock (serializes read-modify-write updates)."""
    fd = os.open(state_dir(), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# ---------------------------------------------------------------- process identity
def process_identity(pid: int) -> dict:
    """``{"pid", "create_time"}`` for a running process (create_time None if it vanished)."""
    try:
        return {"pid": pid, "create_time": psutil.Process(pid).create_time()}
    except psutil.Error:
        return {"pid": pid, "create_time": None}


def process_status(ident: Optional[dict]) -> str:
    """``alive``, ``gone`` or ``reused`` for a recorded ``{"pid", "create_time"}``."""
    if not ident or not ident.get("pid"):
        return "gone"
    try:
        proc = psutil.Process(int(ident["pid"]))
        created = proc.create_time()
        if proc.status() == psutil.STATUS_ZOMBIE:
            return "gone"
    except psutil.NoSuchProcess:
        return "gone"
    except psutil.Error:
        return "gone"
    recorded = ident.get("create_time")
    if recorded is None or abs(created - float(recorded)) > _CREATE_TIME_TOLERANCE:
        return "reused"
    return "alive"


def proven_process(ident: Optional[dict]) -> Optional[psutil.Process]:
    """The process behind ``ident`` if it is provably the one recorded, else None."""
    if process_status(ident) != "alive":
        return None
    try:
        return psutil.Process(int(ident["pid"]))
    except psutil.Error:
        return None


def signal_proven(ident: Optional[dict], sig: int, group: bool = False) -> bool:
    """Send ``sig`` to a recorded process (and its process group, if it leads one) only if proven ours."""
    proc = proven_process(ident)
    if proc is None:
        return False
    pid = proc.pid
    try:
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def wait_gone(idents: list, timeout: float, interval: float = 0.05) -> list:
    """Wait until every recorded process is gone; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [i for i in idents if process_status(i) == "alive"]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(interval)


def terminate_proven(idents: list, timeout: float) -> list:
    """SIGTERM the proven processes (groups), SIGKILL what remains after ``timeout``; return survivors."""
    idents = [i for i in idents if i]
    for ident in idents:
        signal_proven(ident, signal.SIGTERM, group=True)
    alive = wait_gone(idents, timeout)
    for ident in alive:
        signal_proven(ident, signal.SIGKILL, group=True)
    return wait_gone(alive, 2.0)


async def terminate_proven_async(idents: list, timeout: float, interval: float = 0.05) -> list:
    """``terminate_proven`` for a coroutine: waits without blocking its event loop."""
    import asyncio

    idents = [i for i in idents if i]
    for ident in idents:
        signal_proven(ident, signal.SIGTERM, group=True)
    for wait, sig in ((timeout, signal.SIGKILL), (2.0, None)):
        deadline = time.monotonic() + wait
        alive = [i for i in idents if process_status(i) == "alive"]
        while alive and time.monotonic() < deadline:
            await asyncio.sleep(interval)
            alive = [i for i in alive if process_status(i) == "alive"]
        if sig is None or not alive:
            return alive
        for ident in alive:
            signal_proven(ident, sig, group=True)
        idents = alive
    return []


# ---------------------------------------------------------------- reading and writing
def new_record(hub_id: str, profile_dir: str, **fields) -> dict:
    now = utcnow()
    record = {
        "version": STATE_VERSION,
        "id": validate_hub_id(hub_id),
        "profile_dir": profile_dir,
        "state": "starting",
        "error": None,
        "created": now,
        "updated": now,
        "owner": None,
        "controller": None,
        "engines": [],
        "n": 0,
        "launcher": "local",
        "launcher_options": {},
        "db": None,
        "connection_files": {},
        "stop_requested": False,
        "stop_on_exit": True,
        "events": [],
    }
    record.update(fields)
    return record


def read_state(hub_id: str) -> Optional[dict]:
    """The record of ``hub_id`` or None if no state file exists; ValueError if it is unreadable."""
    path = state_path(hub_id)
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ValueError(f"state file {path} is unreadable: {e}") from None
    if not isinstance(data, dict) or data.get("id") != hub_id:
        raise ValueError(f"state file {path} does not describe hub {hub_id!r}")
    return data


def _write(record: dict) -> None:
    record["updated"] = utcnow()
    if len(record.get("events") or ()) > MAX_EVENTS:
        record["events"] = record["events"][-MAX_EVENTS:]
    data = (json.dumps(record, indent=1, sort_keys=True, default=str) + "\n").encode()
    write_atomic(state_path(record["id"]), data, mode=0o600)


def write_state(record: dict) -> None:
    with locked():
        _write(record)


def update_state(hub_id: str, change: Callable[[dict], None]) -> Optional[dict]:
    """Apply ``change(record)`` under the lock and write; None (and no write) if the file is gone."""
    with locked():
        try:
            record = read_state(hub_id)
        except ValueError:
            return None
        if record is None:
            return None
        change(record)
        _write(record)
        return record


def remove_state(hub_id: str) -> bool:
    with locked():
        try:
            os.unlink(state_path(hub_id))
            return True
        except FileNotFoundError:
            return False


def add_event(record: dict, message: str, **fields) -> dict:
    event = {"time": utcnow(), "message": message, **fields}
    record.setdefault("events", []).append(event)
    return event


# ---------------------------------------------------------------- liveness
def liveness(record: dict) -> dict:
    """Classify a record: ``{"alive": bool, "stale": bool, "reason": str}``.

    Alive means a recorded process of the hub provably still runs: its controller, or,
    while it is starting, the process that owns it.  A record whose processes are all
    gone (or whose pids now belong to other processes) but which does not say it ended
    is stale.
    """
    state = record.get("state")
    ctl = record.get("controller")
    ctl_status = process_status(ctl) if ctl else None
    owner_status = process_status(record.get("owner")) if record.get("owner") else None
    if ctl_status == "alive":
        return {"alive": True, "stale": False, "reason": ""}
    if state == "starting" and ctl is None and owner_status == "alive":
        return {"alive": True, "stale": False, "reason": "starting"}
    if state in ("stopped", "failed"):
        return {"alive": False, "stale": True, "reason": state}
    if ctl_status == "reused":
        reason = f"controller pid {ctl.get('pid')} now belongs to another process"
    elif ctl:
        reason = f"controller pid {ctl.get('pid')} is gone"
    else:
        reason = "no controller was recorded and its owner is gone"
    return {"alive": False, "stale": True, "reason": reason}


def annotate(record: dict) -> dict:
    """A copy of ``record`` with ``alive``, ``stale`` and ``status`` (the state, or ``dead``)."""
    out = dict(record)
    live = liveness(record)
    out.update(alive=live["alive"], stale=live["stale"], stale_reason=live["reason"],
               supervised=live["alive"] and process_status(record.get("owner")) == "alive")
    out["status"] = record.get("state") if live["alive"] or record.get("state") in ("stopped", "failed") else "dead"
    out["state_file"] = state_path(record["id"])
    return out


def list_hubs() -> list:
    """Every hub with a state file, annotated with liveness (see ``annotate``), oldest first.

    Unreadable files appear as ``{"id", "status": "corrupt", "stale": True, "error"}``.
    """
    hubs = []
    directory = state_dir()
    for name in sorted(os.listdir(directory)):
        if not (name.startswith("hub-") and name.endswith(".json")):
            continue
        hub_id = name[4:-5]
        try:
            record = read_state(hub_id)
        except (ValueError, InvalidHubId) as e:
            hubs.append({"id": hub_id, "status": "corrupt", "alive": False, "stale": True, "error": str(e),
                         "stale_reason": "unreadable state file", "state_file": os.path.join(directory, name),
                         "created": ""})
            continue
        if record is not None:
            hubs.append(annotate(record))
    hubs.sort(key=lambda h: (h.get("created") or "", h["id"]))
    return hubs


def not_running(record: dict) -> Optional[str]:
    """Why the hub of an annotated record does not run ("hub X is not running (reason)"); None if it runs."""
    if record.get("alive"):
        return None
    return f"hub {record.get('id')} is not running ({record.get('stale_reason') or record.get('status')})"


def get_hub(hub_id: str) -> dict:
    """The annotated record of ``hub_id``; HubNotFound if it has no state file."""
    record = read_state(hub_id)
    if record is None:
        raise HubNotFound(f"no hub with id {hub_id!r} (state files in {state_dir()})")
    return annotate(record)


def claim(record: dict) -> None:
    """Write a new hub's record unless a live hub with that id exists (HubExists)."""
    with locked():
        try:
            existing = read_state(record["id"])
        except ValueError:
            existing = None
        if existing is not None and liveness(existing)["alive"]:
            ctl = existing.get("controller") or existing.get("owner") or {}
            raise HubExists(f"a hub with id {record['id']!r} is already {existing.get('state')} "
                            f"(pid {ctl.get('pid')}, profile {existing.get('profile_dir')})")
        _write(record)


def connection_file(record: dict, role: str = "client") -> Optional[str]:
    """The path of the hub's ``client`` or ``engine`` connection file its record names; None if it names none."""
    entry = (record.get("connection_files") or {}).get(role)
    return (entry.get("path") or None) if isinstance(entry, dict) else None


def remove_connection_files(record: dict) -> list:
    removed = []
    for entry in (record.get("connection_files") or {}).values():
        if not isinstance(entry, dict) or not entry.get("path"):
            continue
        try:
            st = os.stat(entry["path"])
        except OSError:
            continue
        if entry.get("ino") is not None and st.st_ino != entry["ino"]:
            continue  # a newer controller wrote this file: not ours
        try:
            os.unlink(entry["path"])
            removed.append(entry["path"])
        except OSError:
            pass
    return removed


def clean_stale(stop_leftovers: bool = True) -> list:
    """Remove the state files of hubs that are not alive; return what was removed.

    Connection files the dead controller left behind are removed when they are still
    the ones it wrote (same inode).  With ``stop_leftovers``, engine processes of a dead
    hub that are provably the recorded ones (pid and start time) are terminated; no
    other process is ever signalled.
    """
    removed = []
    for hub in list_hubs():
        if hub.get("alive"):
            continue
        entry = {"id": hub["id"], "status": hub["status"], "reason": hub.get("stale_reason", ""),
                 "state_file": hub["state_file"], "connection_files": [], "stopped_pids": []}
        with locked():
            try:
                record = read_state(hub["id"]) if hub["status"] != "corrupt" else None
            except ValueError:
                record = None
            if record is not None and liveness(record)["alive"]:
                continue  # came back to life (restarted) meanwhile
            leftovers = []
            if record is not None:
                entry["connection_files"] = remove_connection_files(record)
                if stop_leftovers:
                    leftovers = [e for e in record.get("engines") or () if process_status(e) == "alive"]
            try:
                os.unlink(hub["state_file"])
            except FileNotFoundError:
                pass
        if leftovers:
            terminate_proven(leftovers, 3.0)
            entry["stopped_pids"] = [e["pid"] for e in leftovers]
        removed.append(entry)
    return removed
