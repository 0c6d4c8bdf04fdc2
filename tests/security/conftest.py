"""Attacks on a hub over loopback: real controllers, engines and clients, and raw peers playing
the attacker (with or without the key)."""

from __future__ import annotations

import pytest
from support.hubs import hub_fixture


@pytest.fixture
def hub_factory(tmp_path):
    yield from hub_fixture(tmp_path)
