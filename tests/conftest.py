"""Makes tests/support importable as ``support`` from every test directory."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

# pytest-jupyter's fixtures (jp_fetch, jp_serverapp, ...) for tests/server; plugins may only be
# declared here, at the top of the test tree.
pytest_plugins = ["pytest_jupyter.jupyter_server"]
