"""Functions the tests run on engines.

Engines import this module by name to rebuild these functions, so it uses the
standard library only.
"""

import os
import time

#: An engine never waits for a gate longer than this (seconds).
GATE_LIMIT = 60.0


def wait_for_gate(gate, value=None):
    """Block until the file ``gate`` exists, then return ``value`` (or our pid).

    Lets a test hold tasks "running" for as long as it needs to observe them,
    without guessing durations.
    """
    deadline = time.monotonic() + GATE_LIMIT
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} never opened")
        time.sleep(0.01)
    return os.getpid() if value is None else value


def wait_for_gate_then_fail(gate):
    wait_for_gate(gate)
    raise RuntimeError("failing on purpose after the gate opened")


def wait_for_gate_on(pid, gate):
    """On the engine whose process id is ``pid``: ``wait_for_gate(gate)``; elsewhere return our pid at once."""
    if os.getpid() == pid:
        return wait_for_gate(gate)
    return os.getpid()
