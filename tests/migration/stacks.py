"""The two stacks the migration suite and the probe run on (see conftest.py)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
KINDS = ("ours", "ipyparallel")


class Stack:
    """One hub with two engines and a connected Client of one kind (``ipp`` is that kind's package)."""

    def __init__(self, kind: str, root: Path):
        self.kind = kind
        self.root = root
        self.ipp = importlib.import_module("jupyter_hub_ctl" if kind == "ours" else "ipyparallel")
        self._hub = self._controller = self._engines = None
        self.rc = None

    @property
    def ours(self) -> bool:
        return self.kind == "ours"

    def start(self, n: int = 2) -> "Stack":
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), str(REPO), os.environ.get("PYTHONPATH")]))}
        if self.ours:
            from support.procs import Controller, Engines

            self._controller = Controller(self.root, ["--HubFactory.ip=127.0.0.1"]).start()
            self._engines = Engines(self._controller, str(self.root))
            self._engines.start(n, env=env)
            self.client_file = self._controller.client_file
        else:
            from interop.harness import Hub

            self._hub = Hub(self.root).start_or_close(n)
            self.client_file = str(self._hub.client_file)
        self.rc = self.connect()
        self.rc.wait_for_engines(n, timeout=60)
        if not self.ours:  # IOPub is PUB/SUB: wait until this client's subscription delivers output
            from interop.harness import wait_for_iopub

            wait_for_iopub(self.rc)
        return self

    def connect(self):
        return self.ipp.Client(self.client_file)

    def stop(self) -> None:
        """Close the client, then stop every process, even if closing the client fails."""
        try:
            if self.rc is not None:
                self.rc.close()
        finally:
            if self._hub is not None:
                self._hub.close()
            if self._engines is not None:
                self._engines.stop()
            if self._controller is not None:
                self._controller.stop()
