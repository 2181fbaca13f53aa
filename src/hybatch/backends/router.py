"""A ComputeBackend that sends each node's effects to the backend its pool's vmSize names.

``ProvisionNode`` carries the pool's vmSize; the router remembers which backend took each node
and sends that node's later effects (tasks, kills, files, release, restart) and reads there.
Nodes of sizes it cannot place (unknown size, backend not configured) go to the default
backend. Recovery provisions every stored node before it collects exits, so the map is whole
again after a restart.

Imports: ports, core effects/events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from hybatch.core.effects import (
    DeleteTaskFiles,
    KillNodeTask,
    KillTask,
    NodeTaskLaunch,
    ProvisionNode,
    ReleaseNode,
    RestartNode,
    TaskLaunch,
)
from hybatch.core.events import Event, TaskExited, TaskLost
from hybatch.ports import AttemptRef, ComputeBackend, EventSink, NodeFiles, Reattaching


class BackendRouter:
    """:class:`hybatch.ports.ComputeBackend` dispatching by node (chosen by vmSize)."""

    def __init__(self, backends: Mapping[str, ComputeBackend], default: str,
                 backend_of_size: Callable[[str], str]) -> None:
        if default not in backends:
            raise ValueError(f"default backend {default!r} is not configured")
        self._backends = dict(backends)
        self._default = backends[default]
        self._backend_of_size = backend_of_size
        self._by_node: dict[str, ComputeBackend] = {}

    def backend(self, name: str) -> ComputeBackend | None:
        return self._backends.get(name)

    def _of(self, node_id: str) -> ComputeBackend:
        return self._by_node.get(node_id.lower(), self._default)

    def start(self, sink: EventSink) -> None:
        for backend in self._backends.values():
            backend.start(sink)

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()

    def provision_node(self, effect: ProvisionNode) -> None:
        backend = self._backends.get(self._backend_of_size(effect.vm_size), self._default)
        self._by_node[effect.node_id.lower()] = backend
        backend.provision_node(effect)

    def release_node(self, effect: ReleaseNode) -> None:
        self._of(effect.node_id).release_node(effect)

    def restart_node(self, effect: RestartNode) -> None:
        self._of(effect.node_id).restart_node(effect)

    def run_node_task(self, launch: NodeTaskLaunch) -> None:
        self._of(launch.node_id).run_node_task(launch)

    def kill_node_task(self, effect: KillNodeTask) -> None:
        self._of(effect.node_id).kill_node_task(effect)

    def reattach(self, attempts: Sequence[AttemptRef]) -> list[Event]:
        """:class:`hybatch.ports.Reattaching` for every backend: attempts on a backend whose
        nodes outlive the service go to its ``reattach``; the others are settled from the
        exit records their nodes kept (or lost). Nodes were provisioned first (recovery), so
        each node's backend is known."""
        groups: dict[int, tuple[ComputeBackend, list[AttemptRef]]] = {}
        for ref in attempts:
            backend = self._of(ref.node_id)
            groups.setdefault(id(backend), (backend, []))[1].append(ref)
        events: list[Event] = []
        for backend, refs in groups.values():
            if isinstance(backend, Reattaching):
                events += backend.reattach(refs)
                continue
            for ref in refs:
                exited = backend.collect_exit(ref.pool_id, ref.node_id, ref.job_id, ref.task_id,
                                              ref.attempt)
                events.append(exited if exited is not None else TaskLost(
                    job_id=ref.job_id, task_id=ref.task_id, attempt=ref.attempt))
        return events

    def start_task(self, launch: TaskLaunch) -> None:
        self._of(launch.node_id).start_task(launch)

    def kill_task(self, effect: KillTask) -> None:
        self._of(effect.node_id).kill_task(effect)

    def delete_task_files(self, effect: DeleteTaskFiles) -> None:
        self._of(effect.node_id).delete_task_files(effect)

    def node_files(self, pool_id: str, node_id: str) -> NodeFiles:
        return self._of(node_id).node_files(pool_id, node_id)

    def collect_exit(self, pool_id: str, node_id: str, job_id: str, task_id: str,
                     attempt: int) -> TaskExited | None:
        return self._of(node_id).collect_exit(pool_id, node_id, job_id, task_id, attempt)
