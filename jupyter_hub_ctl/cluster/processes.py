"""Starting, watching and ending local processes: detached spawns, exit descriptions, log tails."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from typing import Optional

SIGNAL_NAMES = {int(s): s.name for s in signal.Signals}


def spawn(cmd: list, env: dict, log_path: str, cwd: Optional[str] = None, stdin_data: Optional[bytes] = None,
          keep_stdin: bool = False) -> subprocess.Popen:
    """Start ``cmd`` in a new session (its own process group) with stdout/stderr appended to ``log_path``.

    ``stdin_data`` is written to the child's stdin, which is then closed unless ``keep_stdin``;
    without it stdin is /dev/null.
    """
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(c) for c in cmd], env=env, cwd=cwd or None, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL, start_new_session=True,
            close_fds=True,
        )
    if stdin_data is not None:
        try:
            proc.stdin.write(stdin_data)
            proc.stdin.flush()
            if not keep_stdin:
                proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
    return proc


def log_tail(path: Optional[str], lines: int = 20, max_chars: int = 4000) -> str:
    """The last ``lines`` lines of a log file ('' if it does not exist)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf8", "replace")
    tail = "\n".join(text.splitlines()[-lines:])
    return tail[-max_chars:]


def _oom_counter_files(pid: int) -> list:
    """Files with an ``oom_kill N`` line for the memory cgroup of ``pid`` (cgroup v2 or v1), best first."""
    candidates = []
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        rel = parts[2].lstrip("/")
        if parts[0] == "0" and parts[1] == "":  # cgroup v2
            candidates += [os.path.join("/sys/fs/cgroup", rel, "memory.events"),
                           os.path.join("/sys/fs/cgroup/unified", rel, "memory.events")]
        elif "memory" in parts[1].split(","):  # cgroup v1 memory controller
            candidates += [os.path.join("/sys/fs/cgroup/memory", rel, "memory.oom_control"),
                           "/sys/fs/cgroup/memory/memory.oom_control"]
    return candidates


def oom_kill_count(pid: int) -> Optional[dict]:
    """``{"path", "oom_kill"}``: the OOM-kill counter of ``pid``'s memory cgroup, or None when unavailable."""
    for path in _oom_counter_files(pid):
        count = read_oom_kills(path)
        if count is not None:
            return {"path": path, "oom_kill": count}
    return None


def read_oom_kills(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        return None
    return None


def describe_exit(returncode: Optional[int], oom_baseline: Optional[dict] = None) -> dict:
    """``{"code", "signal", "reason"}`` for a finished process.

    For SIGKILL the reason says whether the kernel's out-of-memory killer struck the process's
    cgroup since it started (its ``oom_kill`` counter grew), or that it possibly did.
    """
    if returncode is None:
        return {"code": None, "signal": None, "reason": "exited (status unknown: not a child of this process)"}
    if returncode >= 0:
        return {"code": returncode, "signal": None, "reason": f"exited with code {returncode}"}
    signum = -returncode
    name = SIGNAL_NAMES.get(signum, f"signal {signum}")
    if signum == signal.SIGKILL:
        grew = None
        if oom_baseline and oom_baseline.get("path"):
            now = read_oom_kills(oom_baseline["path"])
            if now is not None:
                grew = now > oom_baseline.get("oom_kill", 0)
        if grew:
            reason = "killed by SIGKILL: killed by the kernel's out-of-memory killer (its cgroup recorded an OOM kill)"
        else:
            reason = "killed by SIGKILL (possibly out of memory)"
        return {"code": None, "signal": name, "reason": reason}
    return {"code": None, "signal": name, "reason": f"killed by {name}"}


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal the process group ``proc`` leads (it was started in its own session)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


async def wait_exit(proc: subprocess.Popen, timeout: float, interval: float = 0.05) -> Optional[int]:
    """Poll ``proc`` until it exits or ``timeout`` passes; its return code or None."""
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None or time.monotonic() >= deadline:
            return code
        await asyncio.sleep(interval)


async def terminate(proc: subprocess.Popen, timeout: float) -> Optional[int]:
    """SIGTERM the process group, SIGKILL it after ``timeout``; return the exit code."""
    if proc.poll() is not None:
        return proc.returncode
    signal_group(proc, signal.SIGTERM)
    code = await wait_exit(proc, timeout)
    if code is None:
        signal_group(proc, signal.SIGKILL)
        code = await wait_exit(proc, 5.0)
    _reap_group(proc)
    return code


def _reap_group(proc: subprocess.Popen) -> None:
    """Kill what is left of a just-finished leader's process group (children it left behind).

    Linux does not hand out a pid while a process group of that id still has members,
    so right after the leader exits the group id can only name its own descendants.
    """
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
