"""Composition root: settings -> store, backend, core, writer loop, service, ASGI app.

Nothing is global: ``build_server`` returns one ``Server``; tests may build several.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from hybatch.api.app import create_app
from hybatch.backends.agent import AgentBackend
from hybatch.backends.local import LocalBackend
from hybatch.backends.router import BackendRouter
from hybatch.core.machine import BatchCore
from hybatch.core.tokens import TaskTokens
from hybatch.ports import ComputeBackend, Store
from hybatch.runtime.clock import RandomNodeIds, SystemClock
from hybatch.runtime.loop import WriterLoop
from hybatch.runtime.recovery import recover
from hybatch.runtime.service import BatchService
from hybatch.settings import Settings
from hybatch.store.sql import SqlStore
from hybatch.vm_sizes import Catalogue, load_catalogue

log = logging.getLogger(__name__)

ACCOUNT_FILE = "account.json"


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    key: str


def load_account(settings: Settings) -> Account:
    """Account name and key: from settings/environment, else generated once and kept in the
    data directory (mode 0600)."""
    path = settings.data_dir / ACCOUNT_FILE
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    name = settings.account_name or stored.get("name") or "hybatch"
    key = settings.account_key or stored.get("key")
    if key is None:
        key = base64.b64encode(secrets.token_bytes(64)).decode()
    if not settings.account_key and stored != {"name": name, "key": key}:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"name": name, "key": key}, handle)
    return Account(name=name, key=key)


@dataclass(slots=True)
class Server:
    settings: Settings
    account: Account
    store: Store
    backend: AgentBackend | LocalBackend
    """The local backend (nodes of ``local`` VM sizes)."""
    compute: ComputeBackend
    """What the loop and the service use: routes each node to its size's backend."""
    catalogue: Catalogue
    core: BatchCore
    loop: WriterLoop
    service: BatchService
    app: Any
    started: bool = False

    def start(self) -> None:
        """Start (or re-attach to) the backend, recover stored state reconciled with what the
        nodes report, start the writer loop."""
        if self.started:
            return
        self.compute.start(self.loop.post)
        for event in recover(self.core, self.store, self.compute):
            self.loop.post(event)
        self.loop.start()
        self.started = True

    def stop(self) -> None:
        """Stop without losing anything: processes are killed unreported (their tasks are
        requeued on the next start) unless the node agent is to outlive the stop, the loop
        commits its last turn."""
        if not self.started:
            return
        self.compute.close()
        self.loop.stop()
        self.store.close()
        self.started = False


def build_server(settings: Settings, *, store: Store | None = None) -> Server:
    """Everything a service needs; ``store`` replaces the configured database (benchmarks,
    tests)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    account = load_account(settings)
    base_url = settings.resolved_public_url()
    if store is None:
        store = SqlStore(settings.resolved_database_url())
    catalogue = load_catalogue(settings.vm_sizes)
    backend: AgentBackend | LocalBackend
    if settings.node_agent:
        backend = AgentBackend(settings.resolved_node_root(), account.name, base_url,
                               outlive_close=settings.agent_outlives_stop)
    else:
        backend = LocalBackend(settings.resolved_node_root(), account.name, base_url)
    backends: dict[str, ComputeBackend] = {"local": backend}
    if catalogue.uses("dask"):
        from hybatch.backends.dask import DaskBackend  # distributed is imported when used

        backends["dask"] = DaskBackend(catalogue, settings.data_dir / "dask", account.name,
                                       base_url)
    compute = BackendRouter(backends, "local", catalogue.backend_of)
    core = BatchCore(RandomNodeIds(), catalogue.offer(),
                     tokens=TaskTokens(account.name, account.key))
    clock = SystemClock()
    loop = WriterLoop(core=core, store=store, backend=compute, clock=clock,
                      tick_seconds=settings.tick_seconds)
    service = BatchService(loop=loop, store=store, backend=compute, clock=clock,
                           base_url=base_url,
                           account_name=account.name, images=catalogue.images)
    server = Server(settings=settings, account=account, store=store, backend=backend,
                    compute=compute, catalogue=catalogue, core=core, loop=loop,
                    service=service, app=None)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        server.start()
        try:
            yield
        finally:
            server.stop()

    server.app = create_app(service, account_name=account.name, account_key=account.key,
                            allow_anonymous=settings.allow_anonymous, lifespan=lifespan)
    return server
