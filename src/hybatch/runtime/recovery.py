"""Start-up recovery: load the store into the core and reconcile with the nodes.

Nodes are provisioned again (a backend adopts a node it still has, or recreates it). Each
attempt that was in flight when the server stopped is reconciled with what the nodes report: a
backend whose nodes outlive the server (``ports.Reattaching``: the detached node agent) keeps
the attempts still running and settles the rest; otherwise an attempt is settled from its exit
record if the node wrote one, and requeued when not (its outcome is unknowable). Nothing
completed is run again: completed tasks are never loaded.
"""

from __future__ import annotations

import gc
import logging
import time

from hybatch.core.effects import ProvisionNode, ReleaseNode
from hybatch.core.events import Event, TaskLost
from hybatch.core.machine import BatchCore
from hybatch.ports import AttemptRef, ComputeBackend, Reattaching, Store

log = logging.getLogger(__name__)


def recover(core: BatchCore, store: Store, backend: ComputeBackend) -> list[Event]:
    """Restore state; return the events that settle interrupted attempts (to be posted)."""
    began = time.perf_counter()
    # Loading creates a few objects per unfinished task and frees none: the cyclic collector
    # would only rescan the growing heap (measured on 100,000 tasks: the load takes half as
    # long without it). Reference counting still frees everything meanwhile.
    collecting = gc.isenabled()
    gc.disable()
    try:
        pools = store.load_pools()
        nodes = store.load_nodes()
        jobs = store.load_jobs()
        tasks = store.load_unfinished_tasks()
        schedules = store.load_job_schedules()
        loaded = time.perf_counter()
        core.restore(pools, nodes, jobs, tasks, schedules)
    finally:
        if collecting:
            gc.enable()
    sizes = {pool.key: pool.spec.vm_size for pool in pools}
    for node in nodes:
        if node.removing:
            backend.release_node(ReleaseNode(pool_id=node.pool_id, node_id=node.id))
        else:
            backend.provision_node(ProvisionNode(pool_id=node.pool_id, node_id=node.id,
                                                 slots=node.slots, is_dedicated=node.is_dedicated,
                                                 vm_size=sizes.get(node.pool_id.lower(), "")))
    events: list[Event] = []
    in_flight: list[AttemptRef] = []
    for task in tasks:
        if not task.in_flight or task.node_id is None:
            continue
        if task.instances is not None:  # a gang's phases are not recorded: run it again
            events.append(TaskLost(job_id=task.job_id, task_id=task.id, attempt=task.attempt))
            continue
        in_flight.append(AttemptRef(task.pool_id or "", task.node_id, task.job_id, task.id,
                                    task.attempt))
    if isinstance(backend, Reattaching):
        events += backend.reattach(in_flight)
    else:
        for ref in in_flight:
            exited = backend.collect_exit(ref.pool_id, ref.node_id, ref.job_id, ref.task_id,
                                          ref.attempt)
            events.append(exited if exited is not None
                          else TaskLost(job_id=ref.job_id, task_id=ref.task_id,
                                        attempt=ref.attempt))
    log.info("recovered %d pools, %d nodes, %d jobs, %d unfinished tasks in %.3f s (load "
             "%.3f s); %d attempts in flight, %d settled (ended or lost), the rest still run",
             len(pools), len(nodes), len(jobs), len(tasks), time.perf_counter() - began,
             loaded - began, len(in_flight), len(events))
    return events
