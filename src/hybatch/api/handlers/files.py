"""Task files and node files: list, get (with ocp-range), properties (HEAD), delete.

A task's files live under its directory on the node (``workitems/<job>/job-1/<task>``); the
task-file API names them relative to that directory, the node-file API relative to the node
root. Ranged reads answer 200 (the SDKs accept nothing else).
"""

from __future__ import annotations

import errno
import mimetypes
import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

from starlette.responses import Response

from hybatch.api.handlers.common import conditional, endpoint
from hybatch.api.wire import Call, bad_query, http_date
from hybatch.core.errors import DomainError
from hybatch.core.present import iso
from hybatch.ports import FileInfo, NodeFiles
from hybatch.runtime.service import BatchService, Listing

_RANGE = re.compile(r"^bytes=([0-9]{1,19})-([0-9]{0,19})$")


def _file_not_found(path: str) -> DomainError:
    return DomainError("FileNotFound", "The specified file does not exist.",
                       details={"FilePath": path})


def _not_allowed(path: str) -> DomainError:
    return DomainError("InvalidUri", "The file path is not allowed.",
                       details={"FilePath": path})


# a path that cannot name a file: too long, a file used as a directory, a symlink loop
_NO_SUCH_PATH = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP,
                           errno.EINVAL})


@contextmanager
def _file_errors(shown: str) -> Iterator[None]:
    """Filesystem errors of a user-supplied path as Batch errors; others stay server errors."""
    try:
        yield
    except PermissionError as error:
        raise _not_allowed(shown) from error
    except OSError as error:
        if isinstance(error, FileNotFoundError) or error.errno in _NO_SUCH_PATH:
            raise _file_not_found(shown) from error
        raise


def _entry(info: FileInfo, name: str, url: str) -> dict[str, object]:
    props: dict[str, object] = {
        "creationTime": iso(info.creation_time),
        "lastModified": iso(info.last_modified),
        "contentLength": str(info.size),  # int64: a string on the wire (spec, examples)
        "contentType": _content_type(name) if not info.is_directory else None,
        "fileMode": info.mode,
    }
    return {"name": name, "url": url, "isDirectory": info.is_directory,
            "properties": {k: v for k, v in props.items() if v is not None}}


def _content_type(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


def _list(call: Call, files: NodeFiles, prefix: str, owner_url: str) -> Response:
    recursive = call.flag("recursive")
    with _file_errors(prefix):
        infos = files.list(prefix, recursive)
    cut = len(prefix) + 1 if prefix else 0
    flt = call.filter("files")
    entries = []
    for info in infos:
        name = info.path[cut:]
        entry = _entry(info, name, f"{owner_url}/files/{quote(name, safe='')}")
        if flt is None or flt.matches(entry):
            entries.append(entry)
    limit = call.max_results()
    skip = call.token() or "0"
    if not (skip.isascii() and skip.isdigit() and len(skip) <= 18):
        raise bad_query("$skiptoken", skip, "not a continuation token of this listing")
    start = int(skip)
    page = entries[start:start + limit]
    token = str(start + limit) if start + limit < len(entries) else None
    return call.listing(Listing(page, token), "files")


def _stat(files: NodeFiles, full: str, shown: str) -> FileInfo:
    with _file_errors(shown):
        return files.stat(full)


def _etag(info: FileInfo) -> str:
    return f"0x{int(info.last_modified.timestamp() * 1e6):X}"


def _file_headers(call: Call, info: FileInfo, url: str, name: str) -> dict[str, str]:
    headers = call.headers(_etag(info), info.last_modified)
    headers.update({
        "ocp-creation-time": http_date(info.creation_time),
        "ocp-batch-file-isdirectory": "true" if info.is_directory else "false",
        "ocp-batch-file-url": url,
        "ocp-batch-file-mode": info.mode,
    })
    headers["Content-Type"] = _content_type(name)
    return headers


def _get(call: Call, files: NodeFiles, full: str, shown: str, url: str) -> Response:
    info = _stat(files, full, shown)
    if info.is_directory:
        raise DomainError("OperationInvalidForCurrentState", "The path is a directory.")
    unmet = conditional(call, _etag(info), info.last_modified)  # before reading the file
    if unmet is not None:
        return unmet
    start, end = 0, None
    header = call.request.headers.get("ocp-range")
    if header:
        match = _RANGE.match(header.strip())
        if match is None:
            raise DomainError("InvalidHeaderValue", "The ocp-range header is malformed.",
                              details={"HeaderName": "ocp-range", "HeaderValue": header})
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else None
        if end is not None and end < start:
            raise DomainError("InvalidHeaderValue", "The ocp-range header is malformed: the "
                              "range ends before it starts.",
                              details={"HeaderName": "ocp-range", "HeaderValue": header})
        if start >= max(info.size, 1) and not (info.size == 0 and start == 0):
            raise DomainError("InvalidRange", "The range specified is invalid for the current "
                              "size of the resource.")
        if end is not None:
            end = min(end, max(info.size - 1, 0))  # past the end reads what exists
    with _file_errors(shown):
        data = files.read(full, start, end)
    return Response(data, 200, headers=_file_headers(call, info, url, shown))


def _head(call: Call, files: NodeFiles, full: str, shown: str, url: str) -> Response:
    info = _stat(files, full, shown)
    headers = _file_headers(call, info, url, shown)
    headers["Content-Length"] = str(info.size)
    return Response(None, 200, headers=headers)


def _delete(call: Call, files: NodeFiles, full: str, shown: str) -> Response:
    try:
        with _file_errors(shown):
            files.delete(full, call.flag("recursive"))
    except OSError as error:
        raise DomainError("OperationInvalidForCurrentState",
                          "The directory is not empty; use recursive=true.") from error
    return call.empty(200)


def _task_path(prefix: str, file_path: str) -> str:
    return f"{prefix}/{file_path.strip('/')}"


# ------------------------------------------------------------------ task files


@endpoint
async def list_task_files(call: Call, service: BatchService, jobId: str, taskId: str
                          ) -> Response:
    files, prefix, url = service.task_files(jobId, taskId)
    return _list(call, files, prefix, url)


@endpoint
async def get_task_file(call: Call, service: BatchService, jobId: str, taskId: str,
                        filePath: str) -> Response:
    files, prefix, url = service.task_files(jobId, taskId)
    return _get(call, files, _task_path(prefix, filePath), filePath,
                f"{url}/files/{quote(filePath, safe='')}")


@endpoint
async def head_task_file(call: Call, service: BatchService, jobId: str, taskId: str,
                         filePath: str) -> Response:
    files, prefix, url = service.task_files(jobId, taskId)
    return _head(call, files, _task_path(prefix, filePath), filePath,
                 f"{url}/files/{quote(filePath, safe='')}")


@endpoint
async def delete_task_file(call: Call, service: BatchService, jobId: str, taskId: str,
                           filePath: str) -> Response:
    files, prefix, _ = service.task_files(jobId, taskId)
    return _delete(call, files, _task_path(prefix, filePath), filePath)


# ------------------------------------------------------------------ node files


@endpoint
async def list_node_files(call: Call, service: BatchService, poolId: str, nodeId: str
                          ) -> Response:
    files, url = service.node_files(poolId, nodeId)
    return _list(call, files, "", url)


@endpoint
async def get_node_file(call: Call, service: BatchService, poolId: str, nodeId: str,
                        filePath: str) -> Response:
    files, url = service.node_files(poolId, nodeId)
    return _get(call, files, filePath, filePath, f"{url}/files/{quote(filePath, safe='')}")


@endpoint
async def head_node_file(call: Call, service: BatchService, poolId: str, nodeId: str,
                         filePath: str) -> Response:
    files, url = service.node_files(poolId, nodeId)
    return _head(call, files, filePath, filePath, f"{url}/files/{quote(filePath, safe='')}")


@endpoint
async def delete_node_file(call: Call, service: BatchService, poolId: str, nodeId: str,
                           filePath: str) -> Response:
    files, _ = service.node_files(poolId, nodeId)
    return _delete(call, files, filePath, filePath)
