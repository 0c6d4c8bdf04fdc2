"""A controller with our engines and clients, all stopped at the end by pid (fault and security tests)."""

from __future__ import annotations

import re

from support.procs import Controller, Engines, wait_for

from jupyter_hub_ctl import Client


class Hub:
    """One controller + engines + a client, all stopped at the end by pid."""

    def __init__(self, root, args=(), ping=200, cluster_id="f"):
        self.root = root
        self.controller = Controller(root, list(args), cluster_id=cluster_id, ping=ping, log_level=20)
        self.engines = None
        self.clients = []

    def start(self, n_engines=0, *engine_args):
        self.controller.start()
        self.engines = Engines(self.controller, str(self.root))
        if n_engines:
            self.engines.start(n_engines, *engine_args)
        return self

    def client(self, **kw):
        rc = Client(self.controller.client_file, **kw)
        self.clients.append(rc)
        return rc

    def log(self) -> str:
        try:
            with open(self.controller.log_path, encoding="utf8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_errors(self) -> list:
        """Lines of the controller log at ERROR/CRITICAL level, or carrying a traceback."""
        return [line for line in self.log().splitlines()
                if re.search(r"\b(ERROR|CRITICAL)\b|Traceback", line)]

    def wait_log(self, text: str, count: int, timeout: float = 30):
        return wait_for(lambda: self.log().count(text) >= count, timeout, f"{count}x {text!r} in the controller log")

    def stop(self):
        for rc in self.clients:
            try:
                rc.close()
            except Exception:
                pass
        if self.engines is not None:
            self.engines.stop()
        self.controller.stop()


def hub_fixture(tmp_path):
    """The body of a ``hub_factory`` fixture: ``make(*controller_args, ping=, n_engines=, name=)``."""
    hubs = []

    def make(*args, ping=200, n_engines=0, name=None):
        h = Hub(tmp_path / (name or f"h{len(hubs)}"), args, ping=ping)
        hubs.append(h)
        return h.start(n_engines)

    yield make
    for h in hubs:
        h.stop()
        for p in h.engines.procs if h.engines else ():
            assert p.poll() is not None, f"engine pid {p.pid} still running"
