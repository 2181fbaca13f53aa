"""Shared fixtures: a real server process and official SDK clients for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential

from tests.support.azurite import Azurite, AzuriteUnavailable, start_azurite
from tests.support.server import ACCOUNT, KEY, ServerProcess


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("server") / "data").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> BatchClient:
    return BatchClient(server.endpoint, AzureNamedKeyCredential(ACCOUNT, KEY))


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data").start()
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """A real Azurite blob service, started when a test first asks for it."""
    try:
        service = start_azurite(tmp_path_factory.mktemp("azurite"))
    except AzuriteUnavailable as exc:
        pytest.fail(f"Azurite is required for this test and could not be started: {exc}")
    yield service
    service.stop()
