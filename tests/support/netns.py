"""Running ``ip`` for tests that build network namespaces (root only)."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess

import pytest


def ip(*args):
    """``ip <args>``, output captured (the tests read ``returncode`` and ``stderr``)."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def namespace(prefix: str):
    """A new network namespace (its name), deleted at the end; the test is skipped where one cannot be made."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CAP_SYS_ADMIN, CAP_NET_ADMIN)")
    name = f"{prefix}{os.getpid() % 10000:04d}{random.randrange(100):02d}"
    res = ip("netns", "add", name)
    if res.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {res.stderr.strip()}")
    try:
        yield name
    finally:
        ip("netns", "del", name)


def setup_steps(*steps) -> None:
    """Run ``ip`` steps in order; the test is skipped at the first that fails (with its error)."""
    for step in steps:
        res = ip(*step)
        if res.returncode != 0:
            pytest.skip(f"cannot set up the network (ip {' '.join(step)}): {res.stderr.strip()}")
