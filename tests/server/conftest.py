"""A real Jupyter server (pytest-jupyter) with the extension, hubs as real processes."""

from __future__ import annotations

import json
import os
import time

import pytest

@pytest.fixture(autouse=True)
def hub_dirs(tmp_path, monkeypatch):
    """Every test sees only its own hubs: its own runtime and IPython dirs."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    yield
    from jupyter_hub_ctl.cluster import list_hubs, state

    for record in list_hubs():  # stop anything a failed test left running
        idents = [e for e in record.get("engines") or () if e.get("pid")]
        for key in ("controller", "owner"):
            if record.get(key):
                idents.append(record[key])
        state.terminate_proven(idents, 5)


@pytest.fixture
def jp_server_config(jp_server_config):
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_hub_ctl": True},
            "allow_unauthenticated_access": False,
        },
        "HubCtlExtension": {"poll_interval": 0.5, "default_n": 2, "max_engines": 8},
    }


@pytest.fixture
def jp_base_url():
    return "/a%40b/"  # an awkward prefix, as hosted deployments have


async def wait_api(jp_fetch, path, cond, timeout=60.0, what="", **fetch):
    """Poll a GET (``fetch``: more arguments of jp_fetch, e.g. ``params``) until ``cond(json)`` is truthy."""
    import asyncio

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        resp = await jp_fetch(*path, method="GET", raise_error=False, **fetch)
        if resp.code == 200:
            last = json.loads(resp.body)
            if cond(last):
                return last
        await asyncio.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what or path}; last: {last}")


@pytest.fixture
def api(jp_fetch):
    async def call(method, *path, body=None, raw=None, **kw):
        kwargs = {"method": method, "raise_error": False, **kw}
        if raw is not None:
            kwargs["body"] = raw
        elif body is not None:
            kwargs["body"] = json.dumps(body)
        elif method in ("POST", "PATCH"):
            kwargs["body"] = "{}"
        return await jp_fetch("hubctl", "api", *path, **kwargs)

    return call


def env_dirs():
    return {k: os.environ[k] for k in ("JUPYTER_RUNTIME_DIR", "IPYTHONDIR")}
