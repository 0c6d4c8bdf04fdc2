"""Running ``ip`` for tests that build network namespaces (root only)."""

from __future__ import annotations

import subprocess


def ip(*args):
    """``ip <args>``, output captured (the tests read ``returncode`` and ``stderr``)."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
