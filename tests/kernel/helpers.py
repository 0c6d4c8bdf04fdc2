"""Helpers shared by the kernel and notebook tests: polling with deadlines, stray-process checks."""

from __future__ import annotations

import asyncio
import os
import time

import psutil
from support.procs import wait_for  # noqa: F401  (re-exported for the kernel tests)


async def until(cond, timeout: float, what: str, interval: float = 0.02):
    """``wait_for`` for coroutines: the event loop keeps running while we poll."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def processes_marked(mark: str) -> list:
    """Live processes other than this one whose command line or environment mention ``mark``."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            text = " ".join(proc.info["cmdline"] or ())
            if mark not in text:
                text = " ".join(f"{k}={v}" for k, v in proc.environ().items() if k in ("IPYTHONDIR", "JUPYTER_RUNTIME_DIR"))
        except psutil.Error:
            continue
        if mark in text:
            found.append(proc)
    return found


def stop_all_hubs() -> None:
    """Stop every hub of the current runtime dir, then make sure their recorded processes are gone."""
    from jupyter_hub_ctl.cluster import find_hub, list_hubs, state

    for record in list_hubs():
        if record.get("alive"):
            try:
                find_hub(record["id"]).stop_sync()
            except Exception:
                pass
        idents = [e for e in record.get("engines") or () if e.get("pid")]
        idents += [record[k] for k in ("controller", "owner") if record.get(k)]
        state.terminate_proven(idents, 5)
