"""Stacks for the migration suite: ipyparallel's tutorial patterns run on our Client and on ipyparallel's.

Both stacks use our controller.  ``ours``: our engines and ``jupyter_hub_ctl.Client``;
``ipyparallel``: ipyparallel's engines and ``ipyparallel.Client`` (the same code, imported as
``ipp`` from either package).  Tests take the ``stack`` fixture and assert the same results.
"""

from __future__ import annotations

import pytest

pytest.importorskip("ipyparallel", minversion="9", reason="the migration suite compares with ipyparallel>=9's Client")
pytest.importorskip("psutil", reason="the ipyparallel stack's processes are tracked with psutil")

from .stacks import KINDS, Stack


@pytest.fixture(scope="module", params=KINDS)
def stack(request, tmp_path_factory):
    """A running stack of each kind (the module's tests run on one, then on the other)."""
    s = Stack(request.param, tmp_path_factory.mktemp(f"migration-{request.param}"))
    try:
        s.start()
    except BaseException:
        s.stop()
        raise
    yield s
    s.stop()


@pytest.fixture
def rc(stack):
    return stack.rc


@pytest.fixture
def ipp(stack):
    return stack.ipp
