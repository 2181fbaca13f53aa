"""Find and kill task processes a dead node agent left behind.

Task processes run in their own process groups, so they outlive an agent killed with SIGKILL.
Nobody can collect their exit status any more (they are not the new agent's children), so the
service treats their attempts as lost and runs them again; the stray processes must not keep
running beside the new attempts. Every task process (and every descendant that kept its
environment) carries ``AZ_BATCH_NODE_ROOT_DIR`` under the host's node root, which is how they
are recognised. Only a fresh agent calls this, while it holds the node root's agent lock, so
no live agent's processes can match.

Imports: standard library.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

MARKER = b"AZ_BATCH_NODE_ROOT_DIR="


def _environ_has_root(pid: str, prefix: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            environ = handle.read()
    except OSError:  # gone, or not ours to read
        return False
    return any(entry.startswith(prefix) for entry in environ.split(b"\0"))


def find_strays(root: Path) -> list[int]:
    """Pids of processes whose node root lies under ``root`` (this process excluded)."""
    prefix = MARKER + os.fsencode(str(Path(root).absolute())) + b"/"
    me = os.getpid()
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if entry.isdigit() and int(entry) != me and _environ_has_root(entry, prefix):
            found.append(int(entry))
    return found


def kill_strays(root: Path) -> int:
    """SIGKILL the stray task processes under ``root`` and their process groups; returns how
    many processes matched."""
    pids = find_strays(root)
    for pid in pids:
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)
