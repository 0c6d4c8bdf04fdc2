"""A real hub for client tests: our controller and our engines as processes."""

from __future__ import annotations

import pytest
from support.procs import Controller, Engines

from jupyter_hub_ctl import Client


class Hub:
    def __init__(self, root, n=2, controller_args=()):
        self.controller = Controller(root, ["--HubFactory.ip=127.0.0.1", *controller_args])
        self.root = str(root)
        self.n = n

    def start(self):
        self.controller.start()
        self.engines = Engines(self.controller, self.root)
        self.engines.start(self.n)
        self.client = Client(self.controller.client_file)
        self.client.wait_for_engines(self.n, timeout=30)
        return self

    def add_engines(self, k, *args):
        return self.engines.start(k, *args)

    def stop(self):
        try:
            self.client.close()
        finally:
            self.engines.stop()
            self.controller.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    h = Hub(tmp_path_factory.mktemp("hub")).start()
    yield h
    h.stop()


@pytest.fixture(scope="module")
def live_hub(tmp_path_factory):
    """Two engines reporting metrics every 0.2 s (the hub keeps 8 each), records in SQLite."""
    h = Hub(tmp_path_factory.mktemp("live"), 2,
            ["--Hub.metrics_interval=0.2", "--Hub.metrics_history=8", "--sqlitedb"]).start()
    yield h
    h.stop()


@pytest.fixture
def fresh_hub(tmp_path):
    """A hub of its own, for tests that kill engines or stop the hub."""
    hubs = []

    def make(n=2, controller_args=()):
        h = Hub(tmp_path / f"h{len(hubs)}", n, controller_args)
        hubs.append(h)
        return h.start()

    yield make
    for h in hubs:
        h.stop()


@pytest.fixture
def rc(hub):
    return hub.client
