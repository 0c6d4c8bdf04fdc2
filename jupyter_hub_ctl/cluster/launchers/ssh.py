"""SSH: engines on other hosts, each started by an ``ssh`` process on this machine.

The hub's engine connection info (which holds its key) travels over ssh's stdin, never on a
command line.  A small POSIX ``sh`` wrapper on the remote side starts the engine, relays
signal names written to stdin (``INT``, ``TERM``...), and terminates the engine when stdin
closes, so ending the local ``ssh`` process (or its owner dying) never strands a remote engine.
The engines reach the controller at the address in the connection info: start the hub with
``controller_ip`` set to an address those hosts can reach.
"""

from __future__ import annotations

import json
import os
import shlex
import signal as _signal
from typing import Optional

from traitlets import Dict, Integer, List, Unicode, default

from .. import processes
from ..errors import LaunchFailed
from .base import ENGINE_SET_ENV, EngineLauncher, EngineSet

# Background jobs of a non-interactive shell read /dev/null unless redirected (the relay reads
# ssh's stdin through fd 3) and ignore SIGINT/SIGQUIT (the engine is started through a Python
# one-liner that restores their default handling, so interrupts reach user code).
RESTORE_SIGNALS = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                   "signal.signal(signal.SIGQUIT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])")
REMOTE_WRAPPER = r"""read -r IPP_CONNECTION_INFO || exit 97
export IPP_CONNECTION_INFO
exec 3<&0
{exports}{cd}{engine} 3<&- &
pid=$!
( while read -r sig; do kill -s "$sig" "$pid" 2>/dev/null; done; kill -s TERM "$pid" 2>/dev/null ) <&3 &
exec 3<&-
wait "$pid"
exit $?
"""


class SSHEngineLauncher(EngineLauncher):
    """Engines on other hosts over ssh (connection info sent on stdin)."""

    restartable = True

    ssh_cmd = List(Unicode(), default_value=["ssh"], config=True, help="The ssh command.")
    ssh_args = List(Unicode(), default_value=["-o", "BatchMode=yes"], config=True,
                    help="Arguments for ssh before the host name (e.g. ['-p', '2222', '-i', 'key']).")
    engines = Dict(value_trait=Integer(), config=True,
                   help="Engines per host, e.g. {'node1': 4, 'user@node2': 2}; slots fill hosts in this order "
                        "and wrap around when more engines are asked for."
                   ).tag(basic=True, title="Engines per host", example={"node1": 4, "user@node2": 2})
    remote_python = Unicode("python3", config=True,
                            help="Python interpreter on the remote hosts (with jupyter_hub_ctl installed)."
                            ).tag(basic=True, title="Python on the hosts")
    remote_work_dir = Unicode("", config=True, help="Directory the remote engines start in.")
    remote_shell = Unicode("sh", config=True, help="POSIX shell that runs the remote wrapper.")

    @default("engine_cmd")
    def _default_engine_cmd(self):
        return [self.remote_python, "-m", "jupyter_hub_ctl.engine"]

    def hosts(self) -> list:
        out = []
        for host, count in self.engines.items():
            out.extend([host] * max(0, int(count)))
        return out

    def host_for(self, slot: int) -> str:
        hosts = self.hosts()
        if not hosts:
            raise LaunchFailed("ssh launcher: no hosts configured (set SSHEngineLauncher.engines = {host: n})")
        return hosts[slot % len(hosts)]

    def remote_script(self, tag: str = "") -> str:
        env = {"IPP_CLUSTER_ID": self.cluster_id, **self.environment}
        if tag:
            env[ENGINE_SET_ENV] = tag
        exports = "".join(f"{name}={shlex.quote(value)}; export {name}\n" for name, value in sorted(env.items()))
        cd = f"cd {shlex.quote(self.remote_work_dir)} || exit 98\n" if self.remote_work_dir else ""
        engine = " ".join(shlex.quote(a) for a in [self.remote_python, "-c", RESTORE_SIGNALS, *self.engine_command()])
        return REMOTE_WRAPPER.format(exports=exports, cd=cd, engine=engine)

    def command(self, host: str, tag: str = "") -> list:
        remote = f"{shlex.quote(self.remote_shell)} -c {shlex.quote(self.remote_script(tag))}"
        return [*self.ssh_cmd, *self.ssh_args, host, remote]

    async def launch(self, slots: list, engine_info: dict, engine_file: str, generation: int = 0) -> list:
        payload = (json.dumps(engine_info, sort_keys=True) + "\n").encode()
        env = dict(os.environ)
        sets = []
        for slot in slots:
            host = self.host_for(slot)
            tag = self.set_tag(slot, generation)
            cmd = self.command(host, tag)
            log = self.log_path(slot, generation, kind="ssh-engine")
            with open(log, "ab") as f:
                f.write(f"--- hubctl: starting engine slot {slot} on {host}\n".encode())
            proc = processes.spawn(cmd, env, log, stdin_data=payload, keep_stdin=True)
            sets.append(EngineSet.from_process(slot, proc, log, host=host, generation=generation, tag=tag))
        return sets

    def signal(self, es: EngineSet, sig: int) -> bool:
        proc = es.proc
        if proc is None or proc.poll() is not None or proc.stdin is None or proc.stdin.closed:
            return False
        try:
            proc.stdin.write(f"{_signal.Signals(sig).name[3:]}\n".encode())
            proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    async def stop(self, es: EngineSet, timeout: float) -> None:
        proc = es.proc
        if proc is not None and proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.close()  # the remote wrapper terminates the engine and exits
            except OSError:
                pass
            if await processes.wait_exit(proc, timeout) is not None:
                return
        await super().stop(es, timeout)

    def describe(self, es: EngineSet, returncode: Optional[int]) -> dict:
        info = super().describe(es, returncode)
        if returncode == 255:
            info["reason"] = (f"ssh to {es.host} ended with code 255: the connection or authentication failed, "
                              "or the engine could not register")
        elif returncode is not None and returncode > 128:
            try:
                name = _signal.Signals(returncode - 128).name
            except ValueError:
                name = ""
            if name:
                info["signal"] = name
                info["reason"] = f"remote engine on {es.host} killed by {name}" + (
                    " (possibly out of memory)" if name == "SIGKILL" else "")
            else:
                info["reason"] = f"on {es.host}: {info['reason']}"
        else:
            info["reason"] = f"on {es.host}: {info['reason']}"
        return info
