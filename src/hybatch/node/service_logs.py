"""A node's own service log, and uploading it to an Azure Blob container.

Each node keeps a small log of its lifecycle (provisioned, rebooted, reimaged, started) in
``volatile/logs/`` under its root, the way a Batch node's agent keeps its logs. The
``uploadbatchservicelogs`` operation sends the log files to a blob container given by a SAS
URL, under ``<poolId>/<nodeId>/<unique id>/``: every file holding a line written in the
asked time range (the whole file, as Batch does). Task output is not part of it.

Imports: standard library, ports, azure-storage-blob (on upload only).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hybatch.ports import FileInfo, NodeFiles

LOG_DIR = "volatile/logs"
"""Where a node's service logs live, relative to its root."""
LOG_FILE = "hybatch-node.log"
MAX_LOG_BYTES = 1024 * 1024
"""Beyond this the log rotates to ``<name>.1`` (one old file kept)."""
_CONNECT_TIMEOUT_S = 10
_READ_TIMEOUT_S = 60


def write_service_log(root: Path, message: str, when: datetime | None = None) -> None:
    """Append one line to the node's service log (best effort: a node never fails for it)."""
    stamp = (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    directory = root / LOG_DIR
    path = directory / LOG_FILE
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > MAX_LOG_BYTES:
            os.replace(path, directory / f"{LOG_FILE}.1")
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {message}\n")
    except OSError:
        pass


def _first_stamp(files: NodeFiles, path: str) -> datetime | None:
    """When the file's first line was written (None when it cannot be told)."""
    try:
        head = files.read(path, 0, 63).decode("ascii", "replace")
        return datetime.strptime(head.split(" ", 1)[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=UTC)
    except (OSError, ValueError):
        return None


def select_log_files(files: NodeFiles, start: datetime,
                     end: datetime | None) -> list[FileInfo]:
    """The node's log files that may hold a line in [start, end]: last written at or after
    ``start`` and, with ``end``, begun at or before it."""
    try:
        listed = files.list(LOG_DIR, recursive=True)
    except OSError:  # no log directory (yet), or not one
        return []
    chosen = []
    for info in listed:
        if info.is_directory or info.last_modified < start:
            continue
        if end is not None:
            first = _first_stamp(files, info.path)
            if first is not None and first > end:
                continue
        chosen.append(info)
    return sorted(chosen, key=lambda i: i.path)


class UploadError(Exception):
    """The container could not be written (bad URL, refused credentials, unreachable)."""


@dataclass(frozen=True, slots=True)
class UploadResult:
    virtual_directory: str
    files: int


def upload_logs(files: NodeFiles, chosen: list[FileInfo], container_url: str, pool_id: str,
                node_id: str) -> UploadResult:
    """Upload ``chosen`` into the container under ``<pool>/<node>/<uuid>/`` (blocking)."""
    from azure.core.exceptions import AzureError
    from azure.storage.blob import ContainerClient

    directory = f"{pool_id}/{node_id}/{uuid.uuid4()}"
    try:
        container = ContainerClient.from_container_url(
            container_url, connection_timeout=_CONNECT_TIMEOUT_S,
            read_timeout=_READ_TIMEOUT_S, retry_total=1)
    except (ValueError, AzureError) as error:
        raise UploadError(f"the container URL cannot be used: {error}") from error
    uploaded = 0
    try:
        with container:
            for info in chosen:
                try:
                    data = files.read(info.path)
                except (FileNotFoundError, IsADirectoryError):
                    continue  # rotated away meanwhile
                name = info.path[len(LOG_DIR):].lstrip("/")
                container.upload_blob(f"{directory}/{name}", data, overwrite=True)
                uploaded += 1
    except (AzureError, ValueError, OSError) as error:  # refused, unreachable, malformed
        code = getattr(error, "error_code", None) or type(error).__name__
        raise UploadError(f"the upload to the container failed: {code}") from error
    return UploadResult(virtual_directory=directory, files=uploaded)
