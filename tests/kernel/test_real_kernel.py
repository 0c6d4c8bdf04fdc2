"""The widgets in a real IPython kernel (ipykernel, over ZeroMQ, as a notebook runs them): comm
messages sent from the updater thread while a cell blocks, no stray value after a wait, and a clean
kernel shutdown while views are still live."""

from __future__ import annotations

import re
import subprocess

import pytest
from jupyter_client.manager import KernelManager

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class Kernel:
    def __init__(self, cwd):
        self.km = KernelManager(kernel_name="python3")
        self.stderr_path = cwd / "kernel.stderr"
        with open(self.stderr_path, "wb") as stderr:  # the kernel keeps its own copy of the fd
            self.km.start_kernel(cwd=str(cwd), stdout=subprocess.DEVNULL, stderr=stderr)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 120) -> list:
        """Run ``code``; every IOPub message it caused, in order."""
        messages = []
        reply = self.kc.execute_interactive(code, output_hook=messages.append, timeout=timeout)
        errors = [m["content"] for m in messages if m["msg_type"] == "error"]
        assert reply["content"]["status"] == "ok", errors or reply["content"]
        return messages

    def shutdown(self) -> tuple:
        """Shut the kernel down politely; (its exit code, its stderr)."""
        process = self.km.provisioner.process
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)
        process.wait(30)
        return process.returncode, self.stderr_path.read_text(errors="replace")


@pytest.fixture
def kernel(hub_dirs):
    k = Kernel(hub_dirs)
    yield k
    if k.km.is_alive():
        k.kc.stop_channels()
        k.km.shutdown_kernel(now=True)


def comm_updates(messages, key="value") -> list:
    return [m["content"]["data"]["state"][key] for m in messages
            if m["msg_type"] == "comm_msg" and key in ((m["content"].get("data") or {}).get("state") or {})]


def test_live_widgets_in_a_real_kernel(kernel):
    kernel.run("%load_ext jupyter_hub_ctl\n"
               "get_ipython().magics_manager.registry['HubMagics'].controller_args = ['--ping=250']")
    started = kernel.run("%hub start -n 2 --id real")
    views = [m for m in started if m["msg_type"] == "display_data" and WIDGET_VIEW in m["content"]["data"]]
    assert views, "the start progress is a widget in a kernel"
    assert any("2/2" in str(v) for v in comm_updates(started))

    # a wait shows progress and echoes nothing (no stray True)
    waited = kernel.run("ar = hub.load_balanced_view().map(lambda x: x, range(10))\nar.wait_interactive()")
    assert not [m for m in waited if m["msg_type"] == "execute_result"]
    shown = [m for m in waited if m["msg_type"] in ("display_data", "update_display_data")]
    assert shown and "10/10" in shown[-1]["content"]["data"]["text/plain"]

    # the status view updates from the updater thread while the cell sleeps
    kernel.run("status = hub.status()\nstatus.update_interval = 0.5\nstatus.widget")
    slept = kernel.run("import time\ntime.sleep(4)")
    clocks = {m.group(1) for v in comm_updates(slept) if (m := re.search(r"updated (\d\d:\d\d:\d\d)", str(v)))}
    assert len(clocks) >= 3, clocks

    # shut down with live views and a running hub: the kernel exits without a traceback
    code, stderr = kernel.shutdown()
    assert code == 0 and not kernel.km.is_alive()
    assert "Traceback" not in stderr and "Exception in thread" not in stderr, stderr
