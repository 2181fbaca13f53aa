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


Effect = ProvisionNode | ReleaseNode | StartTask | KillTask | DeleteTaskFiles | RestartNode
