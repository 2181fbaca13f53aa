"""Effects: what the core asks the outside world to do, after the state that caused them is
committed. Imperative names, frozen values. Executing an effect must be idempotent or be
reconciled on restart (runtime.recovery).

Imports: standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TaskLaunch:
    """Everything a node needs to run one attempt of a task, with no access to the store."""

    pool_id: str
    node_id: str
    job_id: str
    task_id: str
    attempt: int
    command_line: str
    environment: tuple[tuple[str, str], ...]
    max_wall_clock_s: float | None
    required_slots: int = 1
    user_identity: str = ""
    """"" runs as the service's own user; else ``"<scope>:<elevation>"`` of the task's
    ``userIdentity.autoUser`` (core.user_identity)."""
    run_as: tuple[int, int, str] | None = None
    """Set by the node, never by the core: the OS account (uid, gid, name) it resolved for
    ``user_identity`` (None: the node's own user)."""
    multi_instance: bool = False
    """The launch belongs to a multi-instance task (the node sets AZ_BATCH_TASK_SHARED_DIR)."""
    instance: int | None = None
    """Set on the coordination launches of a multi-instance task: which instance (0 is the
    primary). The node reports them as InstanceStarted/InstanceExited."""
    resource_files: tuple[tuple[str, str, str | None], ...] = ()
    """(http(s) URL, path relative to the task directory, fileMode) to download before the
    process starts (multi-instance ``commonResourceFiles``)."""
    job_preparation_task_id: str | None = None
    """The id of the job's preparation task when it has one: the node points the task at
    that task's directory (``AZ_BATCH_JOB_PREP_DIR``, ``AZ_BATCH_JOB_PREP_WORKING_DIR``)."""


@dataclass(frozen=True, slots=True)
class ProvisionNode:
    pool_id: str
    node_id: str
    slots: int
    is_dedicated: bool
    vm_size: str = ""
    """The pool's vmSize: which backend (and cluster) runs the node."""


@dataclass(frozen=True, slots=True)
class ReleaseNode:
    pool_id: str
    node_id: str


@dataclass(frozen=True, slots=True)
class StartTask:
    """Offer an attempt to a node: the node queues it and starts it as soon as it has the
    slots (reporting TaskStarted), in the order offered."""

    launch: TaskLaunch


@dataclass(frozen=True, slots=True)
class KillTask:
    pool_id: str
    node_id: str
    job_id: str
    task_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class DeleteTaskFiles:
    """Remove a task's directory on its node (task deleted, job deleted, retention expired)."""

    pool_id: str
    node_id: str
    job_id: str
    task_id: str


@dataclass(frozen=True, slots=True)
class RestartNode:
    """Restart a drained node (reboot, or start after deallocation); ``reimage`` also wipes
    its directories (task, shared, startup, application files). The node reports NodeReady
    when it is back."""

    pool_id: str
    node_id: str
    reimage: bool = False


NODE_TASK_KINDS = ("starttask", "jobpreparation", "jobrelease")


@dataclass(frozen=True, slots=True)
class NodeTaskLaunch:
    """One run of a node task: a pool's start task (``kind`` ``starttask``, ``job_id`` and
    ``task_id`` empty; it runs in ``startup/``) or a job's preparation or release task
    (``jobpreparation`` / ``jobrelease``; it runs in the job's directory under its task id).
    Node tasks take no task slot and are not tasks of the job; their outcome comes back as
    NodeTaskExited with the same ``kind``, ``job_id`` and ``attempt``."""

    pool_id: str
    node_id: str
    kind: str
    job_id: str
    task_id: str
    attempt: int
    command_line: str
    environment: tuple[tuple[str, str], ...]
    max_wall_clock_s: float | None


@dataclass(frozen=True, slots=True)
class RunNodeTask:
    """Start a node task process now (it does not wait for slots)."""

    launch: NodeTaskLaunch


@dataclass(frozen=True, slots=True)
class KillNodeTask:
    """Kill a node task process if it still runs (its exit is still reported)."""

    pool_id: str
    node_id: str
    kind: str
    job_id: str
    attempt: int


Effect = (ProvisionNode | ReleaseNode | StartTask | KillTask | DeleteTaskFiles | RestartNode
          | RunNodeTask | KillNodeTask)
