"""Engines on "other hosts": network namespaces joined by a veth pair with private addresses that
exist only inside this test.  The CLI, its daemon and the controller run in namespace A (the
controller bound to A's address); the ssh launcher reaches namespace B through a stand-in ssh
(``ip netns exec B sh -c <remote command>``), and the engines there register over TCP."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from support.netns import ip as _ip, namespace, setup_steps

from .conftest import FAST

FAKE_SSH = """
import os, sys
args = sys.argv[1:]
while args and args[0].startswith("-"):
    args = args[2:] if args[0] in ("-o", "-p", "-i") else args[1:]
host, remote = args[0], args[1]
os.execvp("ip", ["ip", "netns", "exec", host, "sh", "-c", remote])
"""


@pytest.fixture
def netns_pair():
    """Two namespaces joined by veth: A has 10.231.<x>.1/30, B has 10.231.<x>.2/30."""
    with namespace("hubctl-a") as ns_a, namespace("hubctl-b") as ns_b:  # deleting them removes the veth pair
        tag = ns_a[len("hubctl-a"):]
        veth_a, veth_b = f"hc{tag}a", f"hc{tag}b"
        subnet = f"10.231.{random.randrange(256)}"
        setup_steps(("link", "add", veth_a, "type", "veth", "peer", "name", veth_b),
                    ("link", "set", veth_a, "netns", ns_a),
                    ("link", "set", veth_b, "netns", ns_b),
                    ("-n", ns_a, "addr", "add", f"{subnet}.1/30", "dev", veth_a),
                    ("-n", ns_b, "addr", "add", f"{subnet}.2/30", "dev", veth_b),
                    ("-n", ns_a, "link", "set", veth_a, "up"),
                    ("-n", ns_b, "link", "set", veth_b, "up"),
                    ("-n", ns_a, "link", "set", "lo", "up"),
                    ("-n", ns_b, "link", "set", "lo", "up"))
        yield {"a": ns_a, "b": ns_b, "ip_a": f"{subnet}.1", "ip_b": f"{subnet}.2"}


def test_engines_in_another_namespace_reach_the_controller_over_tcp(hubenv, netns_pair, tmp_path):
    h, net = hubenv, netns_pair
    fake_ssh = tmp_path / "netns_ssh.py"
    fake_ssh.write_text(FAKE_SSH)

    def in_a(*args, timeout=180):
        cmd = ["ip", "netns", "exec", net["a"], sys.executable, "-m", "jupyter_hub_ctl.cli", *map(str, args)]
        return subprocess.run(cmd, env=h.env, capture_output=True, text=True, timeout=timeout)

    res = in_a("start", "-n", "2", "--id", "mh", "--launcher", "ssh", "--ip", net["ip_a"], "--json",
               f"--controller-args={FAST}",
               "--set", f'SSHEngineLauncher.ssh_cmd=["{sys.executable}", "{fake_ssh}"]',
               "--set", f'SSHEngineLauncher.engines={{"{net["b"]}": 2}}',
               "--set", f'SSHEngineLauncher.remote_python="{sys.executable}"')
    try:
        assert res.returncode == 0, res.stdout + res.stderr
        probe = tmp_path / "probe.py"
        probe.write_text(
            "import json, os, sys\n"
            "from jupyter_hub_ctl import Client\n"
            "with Client(hub_id='mh') as c:\n"
            "    out = {'ids': c.ids, 'interface': c.info['interface'],\n"
            "           'netns': c[:].apply_sync(lambda: os.readlink('/proc/self/ns/net'))}\n"
            "print(json.dumps(out))\n")
        run = subprocess.run(["ip", "netns", "exec", net["a"], sys.executable, str(probe)], env=h.env,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        seen = json.loads(run.stdout)
        assert seen["ids"] == [0, 1]
        assert seen["interface"] == f"tcp://{net['ip_a']}"
        ns_b_inode = os.stat(f"/var/run/netns/{net['b']}").st_ino
        assert seen["netns"] == [f"net:[{ns_b_inode}]"] * 2, "the engines do not run in namespace B"
        # from the root namespace the controller's address does not exist: only the veth pair carries it
        assert f"{net['ip_a']}/30" not in _ip("-4", "addr").stdout
    finally:
        stop = in_a("stop", "mh")
        assert stop.returncode == 0, stop.stderr
    assert h.processes() == []
