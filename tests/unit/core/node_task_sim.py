"""Helpers for core tests of node tasks (start, job preparation and release tasks): find the
RunNodeTask effects the core emitted and report their exits, as a node would."""

from __future__ import annotations

from hybatch.core.effects import KillNodeTask, NodeTaskLaunch, RunNodeTask
from hybatch.core.events import NodeTaskExited
from hybatch.core.records import FailureInfoRecord
from tests.unit.core.core_sim import Sim


def node_tasks(sim: Sim, kind: str | None = None, *, latest: bool = False) -> list[NodeTaskLaunch]:
    """Node task launches of the latest send() (``latest``) or of the whole run."""
    effects = sim.last if latest else sim.effects
    return [e.launch for e in effects if isinstance(e, RunNodeTask)
            and (kind is None or e.launch.kind == kind)]


def last_node_task(sim: Sim, kind: str, node_id: str | None = None) -> NodeTaskLaunch:
    found = [t for t in node_tasks(sim, kind) if node_id is None or t.node_id == node_id]
    assert found, f"no {kind} launched"
    return found[-1]


def node_task_kills(sim: Sim) -> list[KillNodeTask]:
    return [e for e in sim.effects if isinstance(e, KillNodeTask)]


def finish(sim: Sim, launch: NodeTaskLaunch, code: int | None = 0, *,
           failure: FailureInfoRecord | None = None, timed_out: bool = False) -> None:
    """Report the end of a node task's process."""
    sim.send(NodeTaskExited(node_id=launch.node_id, kind=launch.kind, job_id=launch.job_id,
                            attempt=launch.attempt, exit_code=code,
                            start_time=sim.now if code is not None else None,
                            end_time=sim.now, timed_out=timed_out, failure=failure))
