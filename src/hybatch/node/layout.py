"""The Azure Batch directory layout of one node (reference §10.2).

Every backend lays a node out the same way so that task programs, the node-files API and
recovery find the same paths: ``shared/``, ``startup/wd/``, ``applications/``, ``fsmounts/``,
``volatile/`` (internal state) and ``workitems/<jobId>/job-1/<taskId>/{wd/,stdout.txt,
stderr.txt}``.

Imports: standard library only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SHARED_DIR = "shared"
STARTUP_DIR = "startup"
APPLICATIONS_DIR = "applications"
MOUNTS_DIR = "fsmounts"
WORKITEMS_DIR = "workitems"
VOLATILE_DIR = "volatile"
"""Internal node state (Batch has the same directory for its agent's own files)."""
JOB_DIR_NAME = "job-1"
"""Ordinary jobs live in ``workitems/<jobId>/job-1`` (the name Batch itself uses)."""
WORKING_DIR = "wd"
STDOUT_FILE = "stdout.txt"
STDERR_FILE = "stderr.txt"
EXIT_RECORD_FILE = "exit.json"
SHARED_DIR_MODE = 0o1777
"""``shared/`` is read/write for every task on the node (sticky, as /tmp)."""

_TOP_LEVEL = (SHARED_DIR, STARTUP_DIR, APPLICATIONS_DIR, MOUNTS_DIR, WORKITEMS_DIR, VOLATILE_DIR)


def check_path_id(value: str, what: str = "id") -> str:
    """Reject ids that would not stay one directory level (Batch ids never contain these)."""
    if not value or value in (".", "..") or "/" in value or "\0" in value:
        raise ValueError(f"{what} {value!r} cannot be used as a directory name")
    return value


@dataclass(frozen=True, slots=True)
class TaskPaths:
    """Where one task's files live on its node."""

    task_dir: Path
    wd: Path
    stdout: Path
    stderr: Path
    exit_record: Path

    def create(self) -> None:
        """Make the task and working directories (idempotent; retries reuse them)."""
        os.makedirs(self.wd, exist_ok=True)


def task_paths(task_dir: Path) -> TaskPaths:
    """The files of a task directory, wherever that directory is."""
    return TaskPaths(
        task_dir=task_dir,
        wd=task_dir / WORKING_DIR,
        stdout=task_dir / STDOUT_FILE,
        stderr=task_dir / STDERR_FILE,
        exit_record=task_dir / EXIT_RECORD_FILE,
    )


@dataclass(frozen=True, slots=True)
class NodeLayout:
    """The directory tree under one node root (``AZ_BATCH_NODE_ROOT_DIR``)."""

    root: Path

    @property
    def shared(self) -> Path:
        return self.root / SHARED_DIR

    @property
    def startup(self) -> Path:
        return self.root / STARTUP_DIR

    @property
    def startup_wd(self) -> Path:
        return self.root / STARTUP_DIR / WORKING_DIR

    @property
    def applications(self) -> Path:
        return self.root / APPLICATIONS_DIR

    @property
    def mounts(self) -> Path:
        return self.root / MOUNTS_DIR

    @property
    def workitems(self) -> Path:
        return self.root / WORKITEMS_DIR

    @property
    def volatile(self) -> Path:
        return self.root / VOLATILE_DIR

    def create(self) -> None:
        """Create the node-level directories (idempotent)."""
        for name in _TOP_LEVEL:
            os.makedirs(self.root / name, exist_ok=True)
        os.makedirs(self.startup_wd, exist_ok=True)
        os.chmod(self.shared, SHARED_DIR_MODE)  # every task's account may write there

    def job_dir(self, job_id: str) -> Path:
        return self.root / WORKITEMS_DIR / check_path_id(job_id, "job id") / JOB_DIR_NAME

    def task_dir(self, job_id: str, task_id: str) -> Path:
        return self.job_dir(job_id) / check_path_id(task_id, "task id")

    def task(self, job_id: str, task_id: str) -> TaskPaths:
        return task_paths(self.task_dir(job_id, task_id))

    def startup_task(self) -> TaskPaths:
        """The start task's files: ``startup/`` holds stdout/stderr, ``startup/wd`` is its wd."""
        return task_paths(self.startup)

    def relative(self, path: Path) -> str:
        """A path under the root as the node-files API names it ('/'-separated)."""
        return path.relative_to(self.root).as_posix()


def task_relative_dir(job_id: str, task_id: str) -> str:
    """``nodeInfo.taskRootDirectory``: the task directory relative to the node root."""
    job = check_path_id(job_id, "job id")
    task = check_path_id(task_id, "task id")
    return f"{WORKITEMS_DIR}/{job}/{JOB_DIR_NAME}/{task}"
