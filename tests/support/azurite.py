"""A real Azurite blob service for tests (installed from npm by scripts/ensure_azurite.sh).

Azurite's default development account is used; its name and key are the emulator's published
constants, not secrets.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from tests.support.server import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteUnavailable(RuntimeError):
    pass


@dataclass
class Azurite:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"BlobEndpoint={self.blob_endpoint};")

    def container_sas_url(self, container: str, *, write: bool = True) -> str:
        sas = generate_container_sas(
            ACCOUNT, container, account_key=KEY,
            permission=ContainerSasPermissions(read=True, write=write, create=write,
                                               list=True),
            expiry=datetime.now(UTC) + timedelta(hours=1))
        return f"{self.blob_endpoint}/{container}?{sas}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_azurite(location: Path) -> Azurite:
    """Install (once, cached) and start Azurite's blob service on a free loopback port."""
    found = subprocess.run([str(ROOT / "scripts" / "ensure_azurite.sh")], capture_output=True,
                           text=True, timeout=600, check=False)
    if found.returncode != 0:
        raise AzuriteUnavailable(found.stderr.strip() or "ensure_azurite.sh failed")
    binary = found.stdout.strip().splitlines()[-1]
    port = free_port()
    location.mkdir(parents=True, exist_ok=True)
    log = open(location / "azurite.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location",
         str(location), "--skipApiVersionCheck", "--silent"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def up() -> bool:
        if proc.poll() is not None:
            raise AzuriteUnavailable(f"azurite exited with {proc.returncode}: "
                                     f"{(location / 'azurite.log').read_text()[-2000:]}")
        return _listening(port)

    wait_for(up, timeout=60, what=f"azurite on port {port}")
    return Azurite(port=port, proc=proc)
