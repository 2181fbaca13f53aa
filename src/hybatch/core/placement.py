"""Placement: match active tasks to free node slots.

Order: jobs by priority (higher first), then by creation; within a job, tasks in submission
order (retries and requeues go to the back). A job's ``maxParallelTasks`` caps its running
tasks. ``nodeFillType`` spread picks the node with the most free slots, pack the one with the
fewest that still fits. Only nodes that are idle/running, enabled and not leaving take tasks.

Imports: core modules.
"""

from __future__ import annotations

from hybatch.core import tasks as task_rules
from hybatch.core.context import Ctx
from hybatch.core.records import JobRecord, NodeRecord, PoolRecord


def place_tasks(ctx: Ctx) -> None:
    """Place ready tasks on every pool whose capacity or demand changed this call."""
    pools = ctx.state.pools_to_place
    ctx.state.pools_to_place = set()
    for pool_key in sorted(pools):
        pool = ctx.state.pools.get(pool_key)
        if pool is not None and pool.state == "active":
            _place_on_pool(ctx, pool)


def _usable(node: NodeRecord) -> bool:
    return (node.state in ("idle", "running") and node.scheduling_state == "enabled"
            and not node.removing and node.free_slots > 0)


def _place_on_pool(ctx: Ctx, pool: PoolRecord) -> None:
    nodes = [n for n in ctx.state.nodes_of(pool.key) if _usable(n)]
    if not nodes:
        return
    jobs = sorted((j for j in ctx.state.jobs_on(pool.key)
                   if j.state == "active" and ctx.state.ready.get(j.key)),
                  key=lambda j: (-j.priority, j.seq))
    for job in jobs:
        if not _place_job(ctx, job, nodes, pool.node_fill_type == "pack"):
            return  # no slot left in the pool


def _place_job(ctx: Ctx, job: JobRecord, nodes: list[NodeRecord], pack: bool) -> bool:
    """Place this job's ready tasks; False when the pool has no free slot left."""
    ready = ctx.state.ready[job.key]
    cap = job.spec.max_parallel_tasks
    running = ctx.state.running.setdefault(job.key, set())
    while ready:
        if cap is not None and cap != -1 and len(running) >= cap:
            return True
        key = ready[0]
        task = ctx.state.tasks.get(key)
        if task is None or task.state != "active":
            ready.popleft()
            continue
        node = _choose(nodes, task.required_slots, pack)
        if node is None:
            return any(n.free_slots > 0 for n in nodes)
        ready.popleft()
        task_rules.start_on_node(ctx, job, task, node)
        if node.free_slots == 0:
            nodes.remove(node)
            if not nodes:
                return False
    return True


def _choose(nodes: list[NodeRecord], slots: int, pack: bool) -> NodeRecord | None:
    fitting = [n for n in nodes if n.free_slots >= slots]
    if not fitting:
        return None
    if pack:
        return min(fitting, key=lambda n: (n.free_slots, n.id))
    return max(fitting, key=lambda n: (n.free_slots, -n.running_tasks, n.id))
