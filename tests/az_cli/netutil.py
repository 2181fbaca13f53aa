"""Two small sockets for the ``az`` tests.

``WireTap`` sits between ``az`` and the server and copies bytes verbatim both ways, keeping a
transcript, so a failing command can show the exact request and response it exchanged (the
signature covers headers and path, so the relay never parses or rewrites anything).

``OutboundTrap`` is the HTTP(S) proxy ``az`` is given for everything that is not local: it lets
nothing through and records who asked, so the tests can assert that ``az`` tried to reach no
one but our server.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Self

_CHUNK_LIMIT = 3000  # characters of one recv() kept in the transcript


class _Listener(ABC):
    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()

    def start(self) -> Self:
        self._spawn(self._accept_loop)
        return self

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._server.close()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._spawn(self._handle, conn)

    @abstractmethod
    def _handle(self, conn: socket.socket) -> None:
        """Serve one accepted connection (each subclass's protocol)."""


class WireTap(_Listener):
    """A transparent TCP relay to ``127.0.0.1:upstream_port`` that keeps a transcript."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__()
        self.upstream_port = upstream_port
        self._lock = threading.Lock()
        self._transcript: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def mark(self) -> int:
        with self._lock:
            return len(self._transcript)

    def since(self, mark: int, limit: int = 8000) -> str:
        with self._lock:
            text = "".join(self._transcript[mark:])
        return text if len(text) <= limit else "...\n" + text[-limit:]

    def _record(self, arrow: str, data: bytes) -> None:
        text = data.decode("utf-8", errors="replace")
        if len(text) > _CHUNK_LIMIT:
            text = text[:_CHUNK_LIMIT] + f"... [{len(data)} bytes]"
        with self._lock:
            self._transcript.append(f"{arrow}\n{text}\n")

    def _handle(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        except OSError as exc:
            self._record("!!! upstream connect failed", str(exc).encode())
            conn.close()
            return
        upstream.settimeout(None)
        back = threading.Thread(
            target=self._pump, args=(upstream, conn, "<<< response"), daemon=True
        )
        back.start()
        self._pump(conn, upstream, ">>> request")
        back.join(timeout=30)
        for sock in (conn, upstream):
            with contextlib.suppress(OSError):
                sock.close()

    def _pump(self, src: socket.socket, dst: socket.socket, arrow: str) -> None:
        try:
            while data := src.recv(65536):
                self._record(arrow, data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


class OutboundTrap(_Listener):
    """An HTTP proxy that refuses everything and remembers the first line of each request."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._attempts: list[str] = []

    @property
    def attempts(self) -> list[str]:
        with self._lock:
            return list(self._attempts)

    def proxy_env(self) -> dict[str, str]:
        """Environment routing every non-local HTTP(S) request of a Python client here."""
        url = f"http://127.0.0.1:{self.port}"
        local = "127.0.0.1,localhost"
        env = {}
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            env[name] = env[name.lower()] = url
        env["NO_PROXY"] = env["no_proxy"] = local
        return env

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        data = b""
        try:
            while b"\r\n" not in data and len(data) < 8192:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        first_line = data.split(b"\r\n", 1)[0].decode("latin-1", errors="replace")
        with self._lock:
            self._attempts.append(first_line or "<connection without a request line>")
        with contextlib.suppress(OSError):
            conn.sendall(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        with contextlib.suppress(OSError):
            conn.close()
