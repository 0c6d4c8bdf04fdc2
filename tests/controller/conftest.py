"""Fixtures: a real controller subprocess and raw ZeroMQ peers speaking to it."""

from __future__ import annotations

import uuid as _uuid

import pytest
from support.procs import Controller


@pytest.fixture
def controller_factory(tmp_path):
    started = []

    def make(*args, cluster_id=None):
        c = Controller(tmp_path / f"c{len(started)}", args, cluster_id=cluster_id or f"t{len(started)}")
        started.append(c)
        return c.start()

    yield make
    for c in started:
        c.stop()
        assert c.proc is None or c.proc.poll() is not None


@pytest.fixture
def controller(controller_factory):
    return controller_factory()


def fake_engine_uuid():
    h = _uuid.uuid4().hex
    return f"{h[:8]}-{h[8:]}"
