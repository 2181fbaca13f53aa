"""Node tasks across a node's life: the events that start, restart or end the start task and
the job preparation/release runs of a node.

* NodeReady for a new node, or one back from a reboot/reimage/start: the pool's start task
  runs (core.start_task); job preparation runs there are marked to run again as
  core.job_tasks describes (a reimage also unblocks a node whose preparation failed); a
  release task that was running there ends with failure (its process went with the node).
* NodeReady for a node that was already up: a restarted server adopted it; the start task
  and preparation/release runs that were running when the old server stopped run again.
* NodeLost / NodeReleased: runs still going on that node end with failure
  ``NodeUnavailable`` (a job waiting for a release there may finish).
* NodeTaskExited goes to the start task, job preparation or job release rules.

Imports: core modules.
"""

from __future__ import annotations

from hybatch.core import jobs as job_rules
from hybatch.core import pools, start_task
from hybatch.core.context import Ctx
from hybatch.core.events import NodeLost, NodeReady, NodeReleased, NodeTaskExited
from hybatch.core.job_release import (
    PREPARATION,
    RELEASE,
    UP_STATES,
    find,
    launch,
    stop_preparation,
    stop_release,
)
from hybatch.core.job_tasks import on_preparation_exited, on_release_exited
from hybatch.core.nodes import RESTART_STATES
from hybatch.core.records import JobNodeRecord, JobRecord, NodeRecord


def _entries(ctx: Ctx, node_id: str) -> list[tuple[JobRecord, JobNodeRecord]]:
    """The jobs that ran a preparation (or release) task on the node, with that entry."""
    out: list[tuple[JobRecord, JobNodeRecord]] = []
    for job in list(ctx.state.jobs.values()):
        if job.nodes_run:
            entry = find(job, node_id)
            if entry is not None:
                out.append((job, entry))
    return out


def on_node_ready(ctx: Ctx, event: NodeReady) -> None:
    node = ctx.state.nodes.get(event.node_id.lower())
    before = node.state if node is not None else None
    pools.on_node_ready(ctx, event)
    if node is None or ctx.state.nodes.get(node.key) is not node:
        return
    if before == "creating" and node.state == "idle":
        start_task.begin(ctx, node)
    elif before in RESTART_STATES and node.state in ("idle", "offline"):
        _after_restart(ctx, node, reimaged=before == "reimaging")
        start_task.begin(ctx, node)
    elif before == node.state and before in UP_STATES:
        _adopted(ctx, node)


def _after_restart(ctx: Ctx, node: NodeRecord, *, reimaged: bool) -> None:
    for job, entry in _entries(ctx, node.id):
        prep = job.spec.job_preparation_task
        run = entry.preparation
        if prep is not None and run is not None:
            if run.state == "running":
                stop_preparation(ctx, job, entry, "servererror", "NodeRestarted",
                                 "The node restarted while the job preparation task ran.")
                entry.rerun = True
            elif reimaged or (run.result == "success"
                              and prep.rerun_on_node_reboot_after_success is not False):
                entry.rerun = True
            ctx.state.save_counters(job)
        if entry.release is not None and entry.release.state == "running":
            stop_release(ctx, job, entry, "servererror", "NodeRestarted",
                         "The node restarted while the job release task was running.")
            job_rules.settle(ctx, job)


def _adopted(ctx: Ctx, node: NodeRecord) -> None:
    """A restarted server got the node back: what ran there with the old server runs
    again."""
    start_task.resume(ctx, node)
    for job, entry in _entries(ctx, node.id):
        if entry.preparation is not None and entry.preparation.state == "running" \
                and job.spec.job_preparation_task is not None:
            entry.preparation.start_time = ctx.now
            launch(ctx, job, entry, PREPARATION)
        elif entry.release is not None and entry.release.state == "running" \
                and job.spec.job_release_task is not None:
            entry.release.start_time = ctx.now
            launch(ctx, job, entry, RELEASE)


def _node_gone(ctx: Ctx, node_id: str) -> None:
    for job, entry in _entries(ctx, node_id):
        stop_preparation(ctx, job, entry, "servererror", "NodeUnavailable",
                         "The node became unavailable while the job preparation task ran.")
        if entry.release is not None and entry.release.state == "running":
            stop_release(ctx, job, entry, "servererror", "NodeUnavailable",
                         "The node became unavailable while the job release task ran.")
            job_rules.settle(ctx, job)


def on_node_lost(ctx: Ctx, event: NodeLost) -> None:
    pools.on_node_lost(ctx, event)
    _node_gone(ctx, event.node_id)


def on_node_released(ctx: Ctx, event: NodeReleased) -> None:
    pools.on_node_released(ctx, event)
    _node_gone(ctx, event.node_id)


def on_node_task_exited(ctx: Ctx, event: NodeTaskExited) -> None:
    if event.kind == start_task.KIND:
        start_task.on_exited(ctx, event)
        return
    job = ctx.state.jobs.get(event.job_id.lower())
    entry = find(job, event.node_id) if job is not None else None
    if job is None or entry is None:
        return
    if event.kind == PREPARATION:
        on_preparation_exited(ctx, job, entry, event)
    elif event.kind == RELEASE:
        on_release_exited(ctx, job, entry, event)
