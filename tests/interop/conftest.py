"""Fixtures for the interop suite: real controllers, real ipyparallel engines and clients.

Select the controller under test with ``HUBCTL_INTEROP_CONTROLLER``:

* ``ours`` (default) - ``python -m jupyter_hub_ctl.controller``
* ``ipyparallel`` - ``python -m ipyparallel.controller``, the reference

Tests marked ``ours_only`` check a fix of a reference-controller bug
(PROTOCOL.md §16) and are skipped against the reference; set
``HUBCTL_INTEROP_RUN_OURS_ONLY=1`` to run them there anyway (they should fail).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip(
    "ipyparallel",
    minversion="9",
    reason="the interop suite drives real ipyparallel>=9 clients and engines; ipyparallel is not importable",
)
pytest.importorskip("psutil", reason="the interop suite tracks subprocesses with psutil")

from .harness import ALL_HUBS, CONTROLLER_KIND, IS_REFERENCE, Hub  # noqa: E402

HERE = Path(__file__).resolve().parent


def _is_ours(item) -> bool:
    return HERE in Path(str(item.fspath)).resolve().parents


def pytest_report_header(config):
    return f"interop controller: {CONTROLLER_KIND} (HUBCTL_INTEROP_CONTROLLER)"


def pytest_collection_modifyitems(config, items):
    if not IS_REFERENCE or os.environ.get("HUBCTL_INTEROP_RUN_OURS_ONLY"):
        return
    skip = pytest.mark.skip(
        reason="ours_only: checks a fix of a reference-controller bug (PROTOCOL.md §16); "
        "not expected to pass against ipyparallel.controller"
    )
    for item in items:
        if _is_ours(item) and item.get_closest_marker("ours_only"):
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if _is_ours(item):
        setattr(item, f"_interop_rep_{report.when}", report)
    return report


@pytest.fixture(scope="session", autouse=True)
def _private_ipython_dir(tmp_path_factory):
    """Keep the test process' own IPython/ipyparallel state out of the home dir."""
    saved = {k: os.environ.get(k) for k in ("IPYTHONDIR", "IPP_CONNECTION_INFO")}
    os.environ["IPYTHONDIR"] = str(tmp_path_factory.mktemp("ipython-client"))
    os.environ.pop("IPP_CONNECTION_INFO", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _log_tails_on_failure(request):
    """When a test fails, print the tails of the logs of every hub it used."""
    open_before = [hub for hub in ALL_HUBS if not hub.closed]
    first_new = len(ALL_HUBS)
    yield
    failed = any(
        getattr(getattr(request.node, f"_interop_rep_{when}", None), "failed", False)
        for when in ("setup", "call")
    )
    if failed:
        for hub in open_before + ALL_HUBS[first_new:]:
            print(hub.log_report())


def _new_hub(tmp_path_factory, name: str, args=(), **kwargs) -> Hub:
    base = tmp_path_factory.mktemp(name)
    return Hub(base, extra_args=args, **kwargs)


@pytest.fixture
def hub_factory(tmp_path_factory):
    """Start private hubs: ``hub_factory(n_engines=2, args=["--scheme=lru"])``.

    Each call starts a controller (and waits for its files) plus ``n_engines``
    registered engines; ``start=False`` only prepares the profile dir.
    Everything is stopped, and checked to be gone, after the test.
    """
    hubs: list[Hub] = []

    def make(n_engines: int = 0, args=(), start: bool = True, **kwargs) -> Hub:
        hub = _new_hub(tmp_path_factory, "hub", args, **kwargs)
        hubs.append(hub)
        if start:
            hub.start(n_engines)
        return hub

    yield make
    errors = []
    for hub in reversed(hubs):
        try:
            hub.close()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "; ".join(errors)


@pytest.fixture(scope="package")
def shared_hub(tmp_path_factory):
    """A controller with two engines shared by every non-destructive test of the suite.

    Tests that kill engines, change the scheme or stop the hub use ``hub_factory``.
    """
    hub = _new_hub(tmp_path_factory, "shared").start_or_close(n_engines=2)
    yield hub
    hub.close()


@pytest.fixture
def client(shared_hub):
    """A fresh Client on the module's shared hub, with both engines registered."""
    c = shared_hub.connect(n_engines=2)
    assert len(c.ids) == 2, f"shared hub lost an engine: {c.ids}"
    yield c
    c.close(linger=0)


class Gate:
    """A file that gated remote tasks (``remote.wait_for_gate``) wait for."""

    def __init__(self, path: Path):
        self.path = str(path)

    def open(self) -> None:
        Path(self.path).touch()

    def __str__(self) -> str:
        return self.path


@pytest.fixture
def gate(tmp_path):
    """A closed gate, opened at teardown at the latest so no engine stays blocked."""
    g = Gate(tmp_path / "gate")
    yield g
    g.open()
