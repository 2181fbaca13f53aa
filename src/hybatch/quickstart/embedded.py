"""An embedded hybatch service on a free loopback port, in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn

from hybatch.composition import Server, build_server
from hybatch.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedService:
    """``with EmbeddedService(data_dir) as svc:`` gives ``svc.endpoint``/``account``/``key``."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.settings = Settings(host="127.0.0.1", port=self.port, data_dir=data_dir)
        self.server: Server = build_server(self.settings)
        config = uvicorn.Config(self.server.app, host="127.0.0.1", port=self.port,
                                log_level="warning", access_log=False, lifespan="on")
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._uvicorn.run, daemon=True)

    @property
    def endpoint(self) -> str:
        return self.settings.resolved_public_url()

    def __enter__(self) -> EmbeddedService:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._uvicorn.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the embedded service did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(timeout=30)
