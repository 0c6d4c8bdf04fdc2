"""Stop and scale requests to a hub through its state file, and what they guarantee.

Whoever owns a hub (the daemon of ``jupyter hubctl start``, the server extension and
``%hub start``, or a process running ``Cluster``) watches its state file and carries out
the requests other tools write there, at any moment of the hub's life:

- **Stop always wins.**  A stop request during start-up cancels the start and stops
  everything launched so far; during a scale it cancels the scale; during a stop it waits
  for that stop.  ``stop`` returns once the hub's processes are gone: when the owner does
  not finish in time, or is gone itself, the recorded processes are ended here.
- **Scaling needs a hub that is starting or running.**  A request while the hub starts is
  carried out once it runs; a newer request replaces one not yet taken up.  A hub that is
  stopping refuses with ``HubStopping``, one that ended with ``HubNotRunning``.
"""

from __future__ import annotations

import time
from typing import Optional

from . import state
from .errors import HubNotFound, HubNotRunning, HubStopping

#: the fewest engines a hub may be started or scaled with, everywhere (Cluster, REST and panel,
#: ``%hub start``, ``jupyter hubctl start``): 0 runs the controller alone, and engines come later
#: by scaling or are started elsewhere
MIN_ENGINES = 0


def request_stop(hub_id: str) -> Optional[dict]:
    """Ask the hub's owner to stop it; the record as written, None if the hub has no state file."""
    def change(record):
        if not record.get("stop_requested"):
            record["stop_requested"] = True
            state.add_event(record, "stop requested", kind="stop_requested")

    return state.update_state(hub_id, change)


def scale_refusal(record: dict) -> Optional[HubNotRunning]:
    """Why the hub of ``record`` cannot be scaled now (an error to raise), or None if it can."""
    hub_id = record.get("id")
    if record.get("stop_requested") or record.get("state") == "stopping":
        return HubStopping(f"hub {hub_id} is stopping; it cannot be scaled")
    live = state.liveness(record)
    if record.get("state") not in ("starting", "running") or not live["alive"]:
        return HubNotRunning(f"hub {hub_id} is not running ({live['reason'] or record.get('state')}); "
                             "it cannot be scaled")
    return None


def request_scale(hub_id: str, n: int) -> dict:
    """Ask the hub's owner to run ``n`` engines; the record as written.

    HubNotFound without a state file; HubStopping or HubNotRunning when the hub cannot be scaled.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < MIN_ENGINES:
        raise ValueError(f"n must be an int, {MIN_ENGINES} or more")

    def change(record):
        refusal = scale_refusal(record)
        if refusal is not None:
            raise refusal  # nothing is written
        record["scale_requested"] = n

    record = state.update_state(hub_id, change)
    if record is None:
        raise HubNotFound(f"no hub with id {hub_id!r}")
    return record


def _owner_at_work(record: dict) -> bool:
    """Whether the hub's owner is alive and has not finished with the hub (stopped or failed it)."""
    return state.process_status(record.get("owner")) == "alive" and record.get("state") not in ("stopped", "failed")


def stop(hub_id: str, wait: float = 20.0, kill_timeout: float = 5.0, interval: float = 0.05) -> bool:
    """Stop the hub and return once its processes are gone; False if it had no state file.

    The owner is asked first and given ``wait`` seconds; then whatever the state file still
    names (the owner if it is the hub's daemon, the controller, the engines) is terminated,
    and the connection and state files are removed.
    """
    record = request_stop(hub_id)
    if record is None:
        return False
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        latest = _read(hub_id)
        if latest is None:  # the owner stopped everything and removed the file; a daemon exits next
            daemon = record.get("owner") if (record.get("owner") or {}).get("role") == "daemon" else None
            if not daemon or not state.wait_gone([daemon], max(0.0, deadline - time.monotonic()), interval):
                return True
            break
        record = latest
        if not _owner_at_work(record):
            break
        time.sleep(interval)
    end_recorded(hub_id, kill_timeout, record)
    return True


def _read(hub_id: str) -> Optional[dict]:
    try:
        return state.read_state(hub_id)
    except ValueError:  # unreadable: nothing in it can be trusted
        return None


def end_recorded(hub_id: str, kill_timeout: float = 5.0, last: Optional[dict] = None) -> None:
    """Terminate the processes the hub's state file (or ``last``, its last version) names, then remove
    its connection and state files."""
    record = _read(hub_id) or last
    if record is None:
        state.remove_state(hub_id)
        return
    owner = record.get("owner") or {}
    if owner.get("role") == "daemon":  # a process that exists only for this hub
        state.terminate_proven([owner], kill_timeout)
        record = _read(hub_id) or record  # what it recorded until it ended
    idents = [e for e in record.get("engines") or () if e.get("pid")]
    if record.get("controller"):
        idents.append(record["controller"])
    state.terminate_proven(idents, kill_timeout)
    state.remove_connection_files(record)
    state.remove_state(hub_id)
