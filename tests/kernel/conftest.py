"""Fixtures for the kernel-side tests: private hub dirs, a real IPython shell with the extension,
real hubs (stopped after each test, with a check that no process outlives it), and a comm
that records what widgets send to a frontend."""

from __future__ import annotations

import signal
import threading
import time

import psutil
import pytest

from .helpers import processes_marked, stop_all_hubs

#: controller flags that make engine registration and death detection quick
FAST = ["--ping=250"]


@pytest.fixture
def hub_dirs(tmp_path, monkeypatch):
    """A private Jupyter runtime dir and IPython dir; afterwards every hub is stopped and
    the test fails if any process it started is still alive."""
    for key in ("IPP_PROFILE_DIR", "IPP_CLUSTER_ID", "IPP_CONNECTION_INFO"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    yield tmp_path
    stop_all_hubs()
    deadline = time.monotonic() + 10
    while True:
        left = processes_marked(str(tmp_path))
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if left:
        names = []
        for proc in left:
            try:
                names.append(" ".join(proc.cmdline()))
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        pytest.fail(f"processes outlived the test: {names}")


@pytest.fixture
def ip(hub_dirs):
    """The IPython shell with the extension loaded; hubs start fast and report progress as text."""
    from IPython.core.interactiveshell import InteractiveShell

    from jupyter_hub_ctl.kernel.magics import registry_of

    shell = InteractiveShell.instance()
    if "jupyter_hub_ctl" not in shell.extension_manager.loaded:
        shell.run_line_magic("load_ext", "jupyter_hub_ctl")
    hub_magics = shell.magics_manager.registry["HubMagics"]
    hub_magics.controller_args = list(FAST)
    hub_magics.progress = "text"
    px_magics = shell.magics_manager.registry["PxMagics"]
    px_magics.last_result = None
    registry = registry_of(shell)
    yield shell
    for conn in list(registry.connections.values()):
        conn.close()
        registry.forget(conn.id)
    registry.current = None
    for name in ("hub", "h2", "ar"):
        shell.user_ns.pop(name, None)


@pytest.fixture
def start_hub(hub_dirs):
    """Start hubs (owned by background daemons, as %hub start does); returns HubConnections."""
    from traitlets.config import Config

    from jupyter_hub_ctl.kernel import hubs
    from jupyter_hub_ctl.kernel.widgets import EngineProgress

    started = []

    def start(n: int = 2, hub_id: str = None, **cluster):
        cfg = Config()
        cfg.Cluster.n = n
        cfg.Cluster.controller_args = list(FAST)
        if hub_id:
            cfg.Cluster.cluster_id = hub_id
        for k, v in cluster.items():
            cfg.Cluster[k] = v
        conn = hubs.start(cfg, EngineProgress(n), timeout=90)
        started.append(conn)
        return conn

    yield start
    for conn in started:
        if not conn.stopped:
            conn.stop()


class Recorded:
    """Messages widgets sent through their comms, and the thread each was sent from."""

    def __init__(self):
        self.messages: list = []

    def state(self, model_id: str) -> dict:
        """The widget model's state as a frontend would have it: its open state plus every update."""
        state: dict = {}
        for m in self.messages:
            if m["comm_id"] != model_id or not m["data"]:
                continue
            if m["msg_type"] == "comm_open":
                state.update(m["data"].get("state") or {})
            elif m["data"].get("method") == "update":
                state.update(m["data"].get("state") or {})
        return state

    def closed(self, model_id: str) -> bool:
        return any(m["comm_id"] == model_id and m["msg_type"] == "comm_close" for m in self.messages)

    def threads(self) -> set:
        return {m["thread"] for m in self.messages}

    def updates(self, model_id: str) -> int:
        return sum(1 for m in self.messages if m["comm_id"] == model_id and m["msg_type"] == "comm_msg")

    def values(self, model_id: str, key: str = "value", since: float = float("-inf")) -> list:
        """(time, value) of every update of ``key`` sent for the model after monotonic time ``since``."""
        out = []
        for m in list(self.messages):
            state = (m["data"] or {}).get("state") or {}
            if m["comm_id"] == model_id and m["time"] >= since and key in state:
                out.append((m["time"], state[key]))
        return out


@pytest.fixture
def comms(monkeypatch):
    """Widgets get comms that record every message instead of sending it to a frontend."""
    import comm
    from comm.base_comm import BaseComm

    recorded = Recorded()

    class RecordingComm(BaseComm):
        def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
            recorded.messages.append({"msg_type": msg_type, "comm_id": self.comm_id, "data": data,
                                      "thread": threading.get_ident(), "time": time.monotonic()})

    monkeypatch.setattr(comm, "create_comm", lambda *a, **kw: RecordingComm(*a, **kw))
    return recorded
