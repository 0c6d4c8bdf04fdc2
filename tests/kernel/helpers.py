"""Helpers shared by the kernel and notebook tests: stray-process checks, stopping every hub."""

from __future__ import annotations

import os

import psutil


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
