"""Placement: match active tasks to free node slots.

Order: jobs by priority (higher first), then by creation; within a job, tasks in submission
order (retries and requeues go to the back). A job's ``maxParallelTasks`` caps its tasks in
flight. A placement is an *offer*: the node queues the attempt and starts it when it has the
slots. Free slots are offered first (``nodeFillType`` spread: the node with the most free
slots; pack: the fewest that still fit). For jobs whose tasks are short (their mean run time
is under ``LOOKAHEAD_MAX_TASK_SECONDS``), one round of look-ahead beyond each node's slots is
offered too (to the node with the most room), so a node starts its next task the moment one
ends, without a round trip through the service; long tasks never queue behind each other,
so no node idles while another holds queued work for long. Only nodes that are idle/running,
enabled and not leaving take offers. Jobs with a preparation or manager task go through
core.job_tasks (nodes a failed preparation blocks, exclusive managers, preparation first).

Imports: core modules.
"""

from __future__ import annotations

from hybatch.core import job_tasks, multi_instance
from hybatch.core import tasks as task_rules
from hybatch.core.context import Ctx
from hybatch.core.records import JobRecord, NodeRecord, PoolRecord

LOOKAHEAD_MAX_TASK_SECONDS = 1.0


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
            and not node.removing and node.queue_room > 0)


def _place_on_pool(ctx: Ctx, pool: PoolRecord) -> None:
    nodes = [n for n in ctx.state.nodes_of(pool.key) if _usable(n) and not n.held_by_gang]
    if not nodes:
        return
    on_pool = ctx.state.jobs_on(pool.key)
    exclusive = job_tasks.exclusive_nodes(ctx, on_pool)
    if exclusive:
        nodes = [n for n in nodes if n.key not in exclusive]
        if not nodes:
            return
    jobs = sorted((j for j in on_pool
                   if j.state == "active" and ctx.state.ready.get(j.key)),
                  key=lambda j: (-j.priority, j.seq))
    waiting_above = False
    for job in jobs:
        # no look-ahead for a job while one of higher priority still waits for a slot: a
        # queued offer would start before it
        lookahead = _looks_ahead(job) and not waiting_above
        if not _place_job(ctx, job, nodes, pool.node_fill_type == "pack", lookahead):
            return  # no slot left in the pool
        waiting_above = waiting_above or bool(ctx.state.ready.get(job.key))


def _place_job(ctx: Ctx, job: JobRecord, nodes: list[NodeRecord], pack: bool,
               lookahead: bool) -> bool:
    """Place this job's ready tasks; False when the pool has no room left at all."""
    ready = ctx.state.ready[job.key]
    cap = job.spec.max_parallel_tasks
    running = ctx.state.running.setdefault(job.key, set())
    special = job_tasks.has_rules(job)
    while ready:
        if cap is not None and cap != -1 and len(running) >= cap:
            return True
        key = ready[0]
        task = ctx.state.tasks.get(key)
        if task is None or task.state != "active" or task.offered:
            ready.popleft()
            continue
        if task.spec.multi_instance_settings is not None:
            gang = multi_instance.choose_gang(ctx, task, nodes)
            if gang is None:
                return True  # all or none: it waits at the head of its job's queue
            ready.popleft()
            multi_instance.offer_gang(ctx, job, task, gang)
            for held in gang:
                nodes.remove(held)
            if not nodes:
                return False
            continue
        choices = job_tasks.candidates(job, task, nodes) if special else nodes
        node = _choose(choices, task.required_slots, pack, lookahead)
        if node is None:
            return any(n.queue_room > 0 for n in nodes)
        ready.popleft()
        closed = False
        if special:
            closed = job_tasks.offer(ctx, job, task, node)
        else:
            task_rules.offer_to_node(ctx, job, task, node)
        if closed or node.queue_room <= 0:
            nodes.remove(node)
            if not nodes:
                return False
    return True


def _looks_ahead(job: JobRecord) -> bool:
    mean = job.mean_task_seconds
    return mean is not None and mean < LOOKAHEAD_MAX_TASK_SECONDS


def _choose(nodes: list[NodeRecord], slots: int, pack: bool,
            lookahead: bool) -> NodeRecord | None:
    free = [n for n in nodes if n.free_slots >= slots]
    if free:
        if pack:
            return min(free, key=lambda n: (n.free_slots, n.id))
        return max(free, key=lambda n: (n.free_slots, -n.running_tasks, n.id))
    if not lookahead:
        return None
    # look-ahead: a task that fits a node's slots at all may queue behind its current work
    room = [n for n in nodes if n.queue_room >= slots and n.slots >= slots]
    if not room:
        return None
    return max(room, key=lambda n: (n.queue_room, n.id))
