"""A real ``hybatch serve`` process for tests: free port, own data directory, known key."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")

ACCOUNT = "testacct"
KEY = base64.b64encode(b"hybatch-test-key-0123456789abcdef" * 2).decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    check: Callable[[], T | None],
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class ServerProcess:
    """Start/stop a server subprocess; restartable on the same data directory and port."""

    def __init__(
        self, data_dir: Path, port: int | None = None, database_url: str | None = None,
        vm_sizes: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.database_url = database_url
        self.vm_sizes = vm_sizes
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{data_dir.name}-server.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, HYBATCH_ACCOUNT_NAME=ACCOUNT, HYBATCH_ACCOUNT_KEY=KEY)
        cmd = [
            sys.executable,
            "-m",
            "hybatch.cli.main",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        if self.vm_sizes:
            cmd += ["--vm-sizes", str(self.vm_sizes)]
        log = open(self.log, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._ready, timeout=60, what=f"server on {self.endpoint}")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"server exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}"
            )
        try:
            # unauthenticated: any Batch-shaped answer (401) means it is up
            response = httpx.get(f"{self.endpoint}/pools?api-version=2025-06-01", timeout=1)
        except httpx.HTTPError:
            return False
        return response.status_code in (200, 401)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
