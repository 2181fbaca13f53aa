"""Start-up recovery: load the store into the core and reconcile with the nodes.

Nodes are provisioned again (a backend adopts a node it still has, or recreates it); an
attempt that was running when the server stopped is settled from its exit record if the node
wrote one, and requeued otherwise (its outcome is unknowable). Nothing completed is run again:
completed tasks are never loaded.
"""

from __future__ import annotations

import logging

from hybatch.core.effects import ProvisionNode, ReleaseNode
from hybatch.core.events import Event, TaskLost
from hybatch.core.machine import BatchCore
from hybatch.ports import ComputeBackend, Store

log = logging.getLogger(__name__)


def recover(core: BatchCore, store: Store, backend: ComputeBackend) -> list[Event]:
    """Restore state; return the events that settle interrupted attempts (to be posted)."""
    pools = store.load_pools()
    nodes = store.load_nodes()
    jobs = store.load_jobs()
    tasks = store.load_unfinished_tasks()
    schedules = store.load_job_schedules()
    core.restore(pools, nodes, jobs, tasks, schedules)
    sizes = {pool.key: pool.spec.vm_size for pool in pools}
    for node in nodes:
        if node.removing:
            backend.release_node(ReleaseNode(pool_id=node.pool_id, node_id=node.id))
        else:
            backend.provision_node(ProvisionNode(pool_id=node.pool_id, node_id=node.id,
                                                 slots=node.slots, is_dedicated=node.is_dedicated,
                                                 vm_size=sizes.get(node.pool_id.lower(), "")))
    events: list[Event] = []
    for task in tasks:
        if not task.in_flight or task.node_id is None:
            continue
        if task.instances is not None:  # a gang's phases are not recorded: run it again
            events.append(TaskLost(job_id=task.job_id, task_id=task.id, attempt=task.attempt))
            continue
        exited = backend.collect_exit(task.pool_id or "", task.node_id, task.job_id, task.id,
                                      task.attempt)
        events.append(exited if exited is not None
                      else TaskLost(job_id=task.job_id, task_id=task.id, attempt=task.attempt))
    log.info("recovered %d pools, %d nodes, %d jobs, %d unfinished tasks (%d interrupted)",
             len(pools), len(nodes), len(jobs), len(tasks), len(events))
    return events
