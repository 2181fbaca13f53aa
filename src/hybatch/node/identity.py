"""The OS account a task runs as, from its ``userIdentity`` (a launch's ``user_identity``).

Only a node running as root can start processes as another account. Then:

* ``admin`` (either scope) runs as root, the node's own account.
* ``pool`` + ``nonadmin`` runs as the shared unprivileged account ``_azbatch`` (Batch's name
  for its Linux auto-user), created with ``useradd --system`` the first time it is needed
  (no home directory, no login shell); when it cannot be created, ``nobody``.
* ``task`` + ``nonadmin`` runs as an account of the task's own: a uid (and gid) from a
  reserved range, ``TASK_UID_BASE + n``, with no passwd entry (its name, for
  ``AZ_BATCH_TASK_USER``, is ``_azbatch_<n>``). ``n`` comes from a counter kept in the host's
  node root (``.task-uids``), so a uid is never handed to a second task, even after a
  restart; the retries of a task keep the uid that owns its directory.

Non-admin processes get no supplementary groups. Every task directory is created ``0700``
(stdout/stderr ``0600``), whoever runs in it (that costs nothing: it is the mode ``mkdir`` is
given), and a non-admin task's directory, ``wd``, stdout and stderr are handed to its account,
so tasks of other accounts cannot read them. The node's ``shared`` directory is ``1777``.

A node running as a normal user runs every task as that user whatever the identity asks
(there is no account to switch to); the directory modes still keep other users out.

Imports: standard library, core effects, node.layout.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import threading
from pathlib import Path

from hybatch.node.layout import TaskPaths

POOL_ACCOUNT = "_azbatch"
FALLBACK_ACCOUNT = "nobody"
TASK_UID_BASE = 1_500_000_000
"""First uid of task-scoped auto-users: far above the ranges distributions hand out."""
TASK_UID_COUNT = 500_000_000
COUNTER_FILE = ".task-uids"

Account = tuple[int, int, str]
"""(uid, gid, name) as TaskLaunch.run_as carries it."""


class IdentityError(Exception):
    """No account could be provided for an identity."""


class TaskAccounts:
    """Resolves launch identities to OS accounts for the nodes under one root (thread-safe)."""

    def __init__(self, root: Path, *, as_root: bool | None = None) -> None:
        self._root = Path(root)
        self._as_root = os.geteuid() == 0 if as_root is None else as_root
        self._lock = threading.Lock()
        self._pool_account: Account | None = None

    @property
    def switches_users(self) -> bool:
        return self._as_root

    def resolve(self, code: str, paths: TaskPaths) -> Account | None:
        """The account for a launch's ``user_identity`` code; None: the node's own user."""
        if not code or not self._as_root:
            return None
        scope, _, elevation = code.partition(":")
        if elevation == "admin":
            return None  # root: the node's own account
        if scope == "pool":
            return self._shared_account()
        return self._task_account(paths)

    # ------------------------------------------------------------------ pool scope

    def _shared_account(self) -> Account:
        with self._lock:
            if self._pool_account is None:
                self._pool_account = _ensure_account(POOL_ACCOUNT)
            return self._pool_account

    # ------------------------------------------------------------------ task scope

    def _task_account(self, paths: TaskPaths) -> Account:
        with contextlib.suppress(OSError):
            owner = os.stat(paths.task_dir).st_uid
            if TASK_UID_BASE <= owner < TASK_UID_BASE + TASK_UID_COUNT:
                return _task_account_of(owner)  # a retry keeps its account
        with self._lock:
            counter = self._root / COUNTER_FILE
            try:
                n = int(counter.read_text().strip() or "0")
            except FileNotFoundError:
                n = 0
            except (OSError, ValueError) as exc:
                raise IdentityError(f"cannot read {counter}: {exc}") from exc
            if n >= TASK_UID_COUNT:
                raise IdentityError("the range of task user ids is exhausted")
            temp = counter.with_name(f"{COUNTER_FILE}.tmp")
            try:
                temp.write_text(str(n + 1))
                os.replace(temp, counter)
            except OSError as exc:
                raise IdentityError(f"cannot write {counter}: {exc}") from exc
        return _task_account_of(TASK_UID_BASE + n)


def _task_account_of(uid: int) -> Account:
    return (uid, uid, f"_azbatch_{uid - TASK_UID_BASE}")


def _ensure_account(name: str) -> Account:
    """An existing account, or one created as an unprivileged system user; ``nobody`` when
    it cannot be created."""
    try:
        entry = pwd.getpwnam(name)
        return (entry.pw_uid, entry.pw_gid, name)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    nologin = shutil.which("nologin") or "/usr/sbin/nologin"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run([useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", nologin, "--user-group", name],
                       check=False, capture_output=True, timeout=30)
    try:
        entry = pwd.getpwnam(name)
        return (entry.pw_uid, entry.pw_gid, name)
    except KeyError:
        pass
    try:
        entry = pwd.getpwnam(FALLBACK_ACCOUNT)
    except KeyError as exc:
        raise IdentityError(f"no account {name!r} (useradd failed) and no "
                            f"{FALLBACK_ACCOUNT!r}") from exc
    return (entry.pw_uid, entry.pw_gid, FALLBACK_ACCOUNT)


def hand_over(paths: TaskPaths, account: Account) -> None:
    """Give a prepared task directory (and its wd, stdout, stderr) to ``account``."""
    uid, gid, _ = account
    for path in (paths.task_dir, paths.wd, paths.stdout, paths.stderr):
        os.chown(path, uid, gid)


def account_environment(env: dict[str, str], account: Account, paths: TaskPaths) -> None:
    """Who the process is, for programs that ask: USER, LOGNAME, HOME (the task directory:
    the account may have no home) and AZ_BATCH_TASK_USER."""
    name = account[2]
    env["USER"] = env["LOGNAME"] = env["AZ_BATCH_TASK_USER"] = name
    env["HOME"] = str(paths.task_dir)
