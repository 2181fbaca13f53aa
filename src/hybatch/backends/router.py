"""A ComputeBackend that sends each node's effects to the backend its pool's vmSize names.

``ProvisionNode`` carries the pool's vmSize; the router remembers which backend took each node
and sends that node's later effects (tasks, kills, files, release, restart) and reads there.
Nodes of sizes it cannot place (unknown size, backend not configured) go to the default
backend. Recovery provisions every stored node before it collects exits, so the map is whole
again after a restart.

Imports: ports, core effects/events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

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
from hybatch.core.events import TaskExited
from hybatch.ports import ComputeBackend, EventSink, NodeFiles


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
