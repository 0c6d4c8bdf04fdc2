"""Fault scenarios: a real controller, real engines and our client, torn apart on purpose."""

from __future__ import annotations

import pytest
from support.hubs import hub_fixture


@pytest.fixture
def hub_factory(tmp_path):
    yield from hub_fixture(tmp_path)
