"""Makes tests/support importable as ``support`` from every test directory; fixtures all directories use."""

import os
import sys

import pytest
import zmq

sys.path.insert(0, os.path.dirname(__file__))

# pytest-jupyter's fixtures (jp_fetch, jp_serverapp, ...) for tests/server; plugins may only be
# declared here, at the top of the test tree.
pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def zctx():
    """A ZeroMQ context for raw peers, destroyed (sockets unlingered) after the test."""
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(0)
