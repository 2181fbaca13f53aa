"""File access under one node root (the node-files API and, through a task's directory, the
task-files API).

Paths come from API clients, so every path is confined to the root: ``..`` segments and
symlinks leading outside are refused with PermissionError before anything is touched.

Imports: standard library, ports (FileInfo).
"""

from __future__ import annotations

import builtins
import os
import shutil
import stat as stat_module
from datetime import UTC, datetime
from pathlib import Path

from hybatch.ports import FileInfo


def _info(rel: str, st: os.stat_result) -> FileInfo:
    is_dir = stat_module.S_ISDIR(st.st_mode)
    # Linux exposes no birth time through os.stat; the inode change time is the closest.
    return FileInfo(
        path=rel,
        is_directory=is_dir,
        size=0 if is_dir else st.st_size,
        creation_time=datetime.fromtimestamp(st.st_ctime, UTC),
        last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
        mode=oct(st.st_mode),
    )


class LocalNodeFiles:
    """:class:`hybatch.ports.NodeFiles` over a directory on this host."""

    def __init__(self, root: Path) -> None:
        self._root = os.path.realpath(root)

    @property
    def root(self) -> Path:
        return Path(self._root)

    # ------------------------------------------------------------------ confinement

    def _split(self, path: str) -> list[str]:
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise PermissionError(f"path {path!r} leaves the node root")
        if any("\0" in p for p in parts):
            raise FileNotFoundError(path)
        return parts

    def _inside(self, real: str) -> bool:
        return real == self._root or real.startswith(self._root + os.sep)

    def _resolve(self, path: str) -> tuple[str, str]:
        """(absolute real path, normalised relative path); refuses escapes, not absence."""
        parts = self._split(path)
        rel = "/".join(parts)
        full = os.path.join(self._root, *parts)
        if not self._inside(os.path.realpath(full)):
            raise PermissionError(f"path {path!r} leaves the node root")
        return full, rel

    # ------------------------------------------------------------------ NodeFiles

    def stat(self, path: str) -> FileInfo:
        full, rel = self._resolve(path)
        return _info(rel, os.stat(full))

    def list(self, path: str, recursive: bool) -> builtins.list[FileInfo]:
        """Entries under a directory, named relative to the node root, in name order.

        Symlinks are reported as what they point to when that stays inside the root and are
        left out otherwise; symlinked directories are not descended into.
        """
        full, rel = self._resolve(path)
        st = os.stat(full)
        if not stat_module.S_ISDIR(st.st_mode):
            return [_info(rel, st)]
        out: builtins.list[FileInfo] = []
        self._walk(full, rel, recursive, out)
        out.sort(key=lambda info: info.path)
        return out

    def _walk(self, full: str, rel: str, recursive: bool, out: builtins.list[FileInfo]) -> None:
        try:
            entries = builtins.list(os.scandir(full))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            try:
                if entry.is_symlink():
                    if not self._inside(os.path.realpath(entry.path)):
                        continue
                    out.append(_info(child_rel, os.stat(entry.path)))
                    continue
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while listing
            out.append(_info(child_rel, st))
            if recursive and stat_module.S_ISDIR(st.st_mode):
                self._walk(entry.path, child_rel, recursive, out)

    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``start..end`` with ``end`` inclusive (HTTP range style); None reads to EOF.

        A range past the end of the file yields what exists (possibly nothing); the caller
        decides whether that is an invalid range.
        """
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid range {start}-{end}")
        full, _ = self._resolve(path)
        with open(full, "rb") as handle:
            handle.seek(start)
            if end is None:
                return handle.read()
            return handle.read(end - start + 1)

    def delete(self, path: str, recursive: bool) -> None:
        """Delete a file, or a directory (non-empty only with ``recursive``; else OSError)."""
        full, rel = self._resolve(path)
        if not rel:
            raise PermissionError("the node root itself cannot be deleted")
        st = os.lstat(full)
        if stat_module.S_ISDIR(st.st_mode):
            if recursive:
                shutil.rmtree(full)
            else:
                os.rmdir(full)
        else:
            os.unlink(full)
