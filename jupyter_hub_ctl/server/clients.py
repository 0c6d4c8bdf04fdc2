"""Which processes are connected to a hub as clients (so the panel can ask before stopping it).

The hub cannot tell: clients say nothing when they leave, and libzmq reports connections
without their identity.  The operating system can: every client (ours and ipyparallel's)
subscribes to the hub's ``notification`` port, which engines never use, so the TCP
connections to that port are the clients.  Processes of this machine are named by pid (and,
when a kernel of this Jupyter server is one of them or their parent, by its notebook);
clients on other machines by address.  The caller leaves out the processes that are not
clients anyone would lose (the Jupyter server's own monitor, the daemon that runs the hub).
"""

from __future__ import annotations

import json
import os
from typing import Optional

import psutil

from ..cluster.state import connection_file

#: how many ancestors of a client process are checked for a kernel of this server
KERNEL_DEPTH = 4


def notification_endpoint(record: dict) -> Optional[tuple]:
    """``(host, port)`` of a hub's notification socket from its client connection file; None for
    a hub that does not listen on TCP (ipc transport) or has no readable file."""
    path = connection_file(record)
    if not path:
        return None
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    interface, port = str(info.get("interface") or ""), info.get("notification")
    if not interface.startswith("tcp://") or not isinstance(port, int):
        return None
    return interface[len("tcp://"):], port


def _local_addresses() -> set:
    addresses = {"127.0.0.1", "::1", "0.0.0.0", "::"}
    for entries in psutil.net_if_addrs().values():
        addresses.update(entry.address.split("%")[0] for entry in entries)
    return addresses


def connected(endpoint: tuple, exclude_pids: set) -> list:
    """Clients connected to ``endpoint``: ``[{"pid", "host"}]``, one per process or remote address."""
    _host, port = endpoint
    local = _local_addresses()
    seen_pids, remote = set(), set()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_ESTABLISHED or not conn.raddr or not conn.laddr:
            continue
        if conn.raddr.port == port and conn.raddr.ip in local and conn.pid:
            seen_pids.add(conn.pid)  # a process of this machine, at the client's end
        elif conn.laddr.port == port and conn.raddr.ip not in local:
            remote.add(conn.raddr.ip)  # the hub's end of a client elsewhere
    hostname = os.uname().nodename
    clients = [{"pid": pid, "host": hostname} for pid in sorted(seen_pids - exclude_pids)]
    clients += [{"pid": None, "host": ip} for ip in sorted(remote)]
    return clients


def kernel_of(pid: Optional[int], kernel_pids: dict) -> Optional[str]:
    """The id of the kernel (of ``kernel_pids``: pid -> kernel id) that is ``pid`` or one of its
    parents, if any."""
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        chain = [proc] + proc.parents()[:KERNEL_DEPTH - 1]
    except psutil.Error:
        return None
    for p in chain:
        if p.pid in kernel_pids:
            return kernel_pids[p.pid]
    return None
