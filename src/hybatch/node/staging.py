"""Download a launch's resource files (http/https URLs) into its task directory before the
process starts. Used for multi-instance ``commonResourceFiles``; other resource files
(``resourceFiles``, storage containers) are not supported yet (docs/coverage.md).

A file is written to a temporary name and renamed into place, with its ``fileMode`` (octal)
when one is given. Any failure is the task's pre-processing error (``FailureInfoRecord``
with code ``ResourceFileDownloadError``, category ``usererror``): not retried, as on Batch.

Imports: standard library, core records, node.layout.
"""

from __future__ import annotations

import contextlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from hybatch.core.records import FailureInfoRecord
from hybatch.node.layout import TaskPaths

CODE_DOWNLOAD_FAILED = "ResourceFileDownloadError"
TIMEOUT_S = 60.0
MAX_BYTES = 10 * 1024**3


class StagingError(Exception):
    def __init__(self, failure: FailureInfoRecord) -> None:
        super().__init__(failure.message)
        self.failure = failure


def _failure(url: str, why: str) -> StagingError:
    return StagingError(FailureInfoRecord(
        category="usererror", code=CODE_DOWNLOAD_FAILED,
        message=f"A resource file could not be downloaded: {why}",
        details=[("FilePath", url)]))


def target_path(task_dir: Path, relative: str) -> Path:
    """Where a resource file lands; refuses paths that leave the task directory."""
    root = task_dir.resolve()
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        raise _failure(relative, "the file path leaves the task directory")
    return target


def stage(files: tuple[tuple[str, str, str | None], ...], paths: TaskPaths,
          timeout_s: float = TIMEOUT_S) -> None:
    """Download every (url, relative path, mode) into the task directory (which exists)."""
    for url, relative, mode in files:
        target = target_path(paths.task_dir, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.download")
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "hybatch-node"})
            with urllib.request.urlopen(request, timeout=timeout_s) as response, \
                    open(temp, "wb") as out:
                copied = 0
                while chunk := response.read(1 << 20):
                    copied += len(chunk)
                    if copied > MAX_BYTES:
                        raise _failure(url, "the file is larger than 10 GiB")
                    out.write(chunk)
            if mode is not None:
                os.chmod(temp, int(mode, 8))
            os.replace(temp, target)
        except urllib.error.HTTPError as exc:
            raise _failure(url, f"HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise _failure(url, str(getattr(exc, "reason", exc))) from exc
        finally:
            with contextlib.suppress(OSError):
                if temp.exists():
                    os.unlink(temp)
