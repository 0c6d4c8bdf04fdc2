"""The engine reads the key, then removes it from its environment: processes user code starts
do not inherit it."""

from __future__ import annotations

import json


def test_subprocesses_of_user_code_do_not_inherit_the_key(hub_factory):
    h = hub_factory()
    c = h.controller
    key = c.engine_info["key"]
    # as launchers (ours and ipyparallel's Cluster) start engines: the connection info in the environment
    h.engines.start(1, env={"IPP_CONNECTION_INFO": json.dumps(c.engine_info), "IPP_SESSION_KEY": key})
    rc = h.client()
    rc.wait_for_engines(1, timeout=30)

    def child_environment():
        import os
        import subprocess
        import sys

        out = subprocess.run([sys.executable, "-c", "import os; print(repr(dict(os.environ)))"],
                             capture_output=True, text=True, check=True).stdout
        return out, dict(os.environ)

    (child, own), = rc[:].apply_sync(child_environment)
    assert key and key not in child and key not in repr(own)
    assert "IPP_CONNECTION_INFO" not in child and "IPP_SESSION_KEY" not in child
    assert "PATH" in child  # the rest of the environment is inherited
