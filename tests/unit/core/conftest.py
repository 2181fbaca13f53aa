"""Fixtures for the pure-core unit tests (the driver itself lives in ``core_sim``)."""

from __future__ import annotations

import pytest

from tests.unit.core.core_sim import Sim


@pytest.fixture
def sim() -> Sim:
    """A core whose provisioned nodes become ready (and released nodes go) at once."""
    return Sim()


@pytest.fixture
def manual() -> Sim:
    """A core whose node effects are reported only when the test says so."""
    return Sim(auto_nodes=False)
