"""The controller's file-descriptor budget: every engine costs it about eight.

An ipyparallel-protocol engine holds eight TCP connections to the controller
(registration, mux, task, broadcast, control, iopub, heartbeat ping and pong), each an
open file here.  Python starts with the soft RLIMIT_NOFILE it inherits (often 1024,
room for ~120 engines), so the controller raises it to the hard limit at start, and
refuses registrations beyond what the limit leaves room for with a reason the engine
prints, instead of running out of descriptors (libzmq then stops accepting connections,
and engines, clients and the controller itself hang).

Only a privileged process (root, or CAP_SYS_RESOURCE) may raise the hard limit itself; the
controller tries, up to room for `WANTED_ENGINES` engines (never past the kernel's
``/proc/sys/fs/nr_open``).  Anyone else needs the hard limit raised for them (`RAISE_HINT`).
"""

from __future__ import annotations

import os
import resource

FDS_PER_ENGINE = 8
RESERVE = 256  # descriptors kept for clients, the task database, logs and libzmq's own


def fd_limits() -> tuple:
    """(soft, hard) RLIMIT_NOFILE of this process."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)


WANTED_ENGINES = 16384  # the hard limit a privileged controller raises itself to leaves room for these
RAISE_HINT = ("only root can raise the hard limit: start the controller from a shell where root ran "
              "'ulimit -Hn {n}', or set 'nofile' in /etc/security/limits.conf, or LimitNOFILE={n} in a "
              "systemd unit (or the batch system's equivalent)")


def wanted_fds(engines: int = WANTED_ENGINES) -> int:
    """Open files a controller needs for ``engines`` engines."""
    return engines * FDS_PER_ENGINE + RESERVE


def nr_open() -> int:
    """The kernel's ceiling for any process's RLIMIT_NOFILE (``/proc/sys/fs/nr_open``)."""
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def raise_hard_limit(want: int) -> bool:
    """Raise the hard (and soft) RLIMIT_NOFILE to ``want`` (at most nr_open) if it is lower.

    True if the hard limit is now at least that; False where the process may not raise it
    (an unprivileged user: see `RAISE_HINT`)."""
    soft, hard = fd_limits()
    want = min(want, nr_open())
    if hard == resource.RLIM_INFINITY or hard >= want:
        return True
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        return False
    return True


def raise_fd_limit(want: int = 0) -> int:
    """Raise the hard limit to ``want`` open files where allowed, then the soft limit to the
    hard one (or as far as allowed); return the soft limit."""
    if want:
        raise_hard_limit(want)
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
