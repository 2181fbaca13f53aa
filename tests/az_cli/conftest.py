"""Registers the ``az_cli`` marker (pytest runs with --strict-markers)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "az_cli: drives `az batch` from the Azure CLI in a separate virtualenv"
    )
