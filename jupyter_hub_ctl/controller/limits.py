"""The controller's file-descriptor budget: every engine costs it about eight.

An ipyparallel-protocol engine holds eight TCP connections to the controller
(registration, mux, task, broadcast, control, iopub, heartbeat ping and pong), each an
open file here.  Python starts with the soft RLIMIT_NOFILE it inherits (often 1024,
room for ~120 engines), so the controller raises it to the hard limit at start, and
refuses registrations beyond what the limit leaves room for with a reason the engine
prints, instead of running out of descriptors (libzmq then stops accepting connections,
and engines, clients and the controller itself hang).
"""

from __future__ import annotations

import os
import resource

FDS_PER_ENGINE = 8
RESERVE = 256  # descriptors kept for clients, the task database, logs and libzmq's own


def fd_limits() -> tuple:
    """(soft, hard) RLIMIT_NOFILE of this process."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (or as far as allowed); return the soft limit."""
    soft, hard = fd_limits()
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64


def engine_capacity() -> int:
    """Engines the current soft limit leaves room for (at least 1)."""
    soft = fd_limits()[0]
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, (soft - open_fds() - RESERVE) // FDS_PER_ENGINE)
