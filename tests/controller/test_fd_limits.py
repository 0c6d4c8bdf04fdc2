"""The controller's open-file limit: raised as far as the process is allowed, hard limit included."""

import json
import os
import subprocess
import sys

import pytest

from jupyter_hub_ctl.controller import limits

# Runs in a child process (limits are per process): lower the hard limit, optionally drop root,
# then raise as the controller does and report the limits.
CHILD = """
import json, os, resource, sys
from jupyter_hub_ctl.controller import limits
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 4096))
if sys.argv[1] == "unprivileged":
    os.setgid(65534)
    os.setuid(65534)
soft = limits.raise_fd_limit(limits.wanted_fds())
print(json.dumps({"soft": soft, "limits": resource.getrlimit(resource.RLIMIT_NOFILE),
                  "capacity": limits.engine_capacity()}))
"""


def run_child(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


CAP_SYS_RESOURCE = 24


def has_capability(bit: int) -> bool:
    with open("/proc/self/status") as f:
        eff = next(line for line in f if line.startswith("CapEff:"))
    return bool(int(eff.split()[1], 16) >> bit & 1)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping to an unprivileged user needs root")
needs_sys_resource = pytest.mark.skipif(
    not os.path.exists("/proc/self/status") or not has_capability(CAP_SYS_RESOURCE),
    reason="raising a hard limit needs CAP_SYS_RESOURCE, which this process does not have "
           "(root in a container often lacks it)")


@needs_sys_resource
def test_a_privileged_controller_raises_the_hard_limit_to_room_for_the_wanted_engines():
    got = run_child("root")
    want = min(limits.wanted_fds(), limits.nr_open())
    assert got["limits"] == [want, want]
    assert got["soft"] == want
    assert got["capacity"] >= min(limits.WANTED_ENGINES, (want - limits.RESERVE) // limits.FDS_PER_ENGINE) - 10


@needs_root
def test_an_unprivileged_controller_keeps_the_hard_limit_and_raises_the_soft_one_to_it():
    got = run_child("unprivileged")
    assert got["limits"] == [4096, 4096]
    assert got["soft"] == 4096
    assert got["capacity"] < limits.WANTED_ENGINES


def test_the_hint_names_the_number_of_files_to_ask_for():
    text = limits.RAISE_HINT.format(n=limits.wanted_fds())
    assert f"ulimit -Hn {limits.wanted_fds()}" in text and "LimitNOFILE" in text
