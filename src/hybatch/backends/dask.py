"""Dask compute backend: a node is one Dask worker; its threads are the node's task slots.

The service is a client of one or more schedulers (one per cluster named in the VM size
catalogue). A node of a size backed by

* ``cluster = "local"``: a worker process this backend starts on this host, named after the
  node, beside a scheduler process it also starts (both detached: they outlive the service);
* ``cluster = "slurm"``: a Slurm job running one worker (dask-jobqueue's SLURMJob script);
* ``scheduler = "<address>"``: a worker already connected to that scheduler, claimed when the
  node is provisioned (nodes are the workers present; a pool cannot grow past them).

Every worker runs the node runtime through :class:`hybatch.node.dask_plugin.HybatchNodePlugin`
(registered by this client). An attempt is a Dask task pinned to its node's worker that takes
``requiredSlots`` of the worker's ``hybatch-slots`` resource (when the worker has one); it
runs the process through the node's supervisor, which writes the exit record on the worker and
publishes the outcome as a Dask event on this service's topic. Starts and exits come back as
events; files, exit records (recovery), kills, restarts and releases go through functions run
on the worker: nothing reads the worker's disk from here.

A worker that leaves the cluster (crash, kill, lost connection) makes its node ``NodeLost``:
the core requeues what ran there. A restarted service reconnects to the schedulers, asks every
worker which of its nodes it holds, and settles interrupted attempts from their exit records.

Imports: ports, core effects/events/records, node runtime (plugin functions), vm_sizes,
distributed.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from hybatch.backends.dask_cluster import (
    ClusterStartError,
    LocalWorkers,
    ManagedScheduler,
    SlurmWorkers,
)
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
from hybatch.core.events import (
    Event,
    NodeLost,
    NodeReady,
    NodeReleased,
    NodeTaskExited,
    TaskExited,
    TaskStarted,
)
from hybatch.core.records import FailureInfoRecord
from hybatch.node.dask_protocol import (
    BATCH,
    EXIT,
    PLUGIN_NAME,
    SLOTS_RESOURCE,
    START,
    record_from_message,
)
from hybatch.node.process import ExitRecord
from hybatch.ports import EventSink, FileInfo, NodeFiles
from hybatch.vm_sizes import MANAGED_LOCAL, MANAGED_SLURM, Catalogue, DaskTarget, VmSize

_log = logging.getLogger(__name__)

CODE_NODE_UNAVAILABLE = "NodeUnavailable"
CODE_RUNTIME_FAILED = "NodeRuntimeError"
SERVER_ID_FILE = "server-id"
LINGER_S = 0.02
"""While every node of a batch still has two rounds of its slots queued in Dask, offers wait
this long for more to go in the same graph update: one update per task cost the scheduler
about twice its CPU per task (bench/README.md); a node with less queued gets its offers at
once (an idle pool's latency is untouched)."""


def _attempt_key(server: str, node_id: str, job_id: str, task_id: str, attempt: int) -> str:
    """The Dask key of one attempt (Batch ids are case-insensitive; keys are not)."""
    return f"hybatch-{server}-{node_id}-{job_id.lower()}-{task_id.lower()}-{attempt}"


@dataclass(eq=False, slots=True)
class _Cluster:
    name: str
    target: DaskTarget
    lock: threading.RLock = field(default_factory=threading.RLock)
    client: Any = None
    scheduler: ManagedScheduler | None = None
    bound: dict[str, str] = field(default_factory=dict)
    """Worker address -> node id, for nodes of this service."""
    adopted: dict[str, str] = field(default_factory=dict)
    """Node id -> worker address found holding it when (re)connecting."""
    pending: list[_Node] = field(default_factory=list)
    """Nodes waiting for a free worker (external scheduler)."""


@dataclass(eq=False, slots=True)
class _Node:
    pool_id: str
    node_id: str
    slots: int
    is_dedicated: bool
    size: VmSize
    cluster: _Cluster
    address: str | None = None
    use_resources: bool = False
    releasing: bool = False
    lost: bool = False
    waiting: list[str] = field(default_factory=list)
    """Attempts offered before the node's worker answered (just after a restart)."""
    in_dask: int = 0
    """Attempts handed to Dask whose exit has not come back."""


@dataclass(eq=False, slots=True)
class _Attempt:
    launch: TaskLaunch
    node: _Node
    future: Any = None
    started: bool = False


class DaskBackend:
    """:class:`hybatch.ports.ComputeBackend` whose nodes are Dask workers."""

    def __init__(self, catalogue: Catalogue, state_dir: Path, account_name: str,
                 account_url: str, *, connect_timeout_s: float = 30.0,
                 worker_start_timeout_s: float = 120.0, monitor_interval_s: float = 1.0
                 ) -> None:
        self._catalogue = catalogue
        self._state_dir = Path(state_dir).absolute()
        self._account_name = account_name
        self._account_url = account_url
        self._connect_timeout = connect_timeout_s
        self._worker_timeout = worker_start_timeout_s
        self._interval = monitor_interval_s
        self._server = self._server_id()
        self.topic = f"hybatch-{self._server}"
        self._lock = threading.Lock()
        self._clusters: dict[str, _Cluster] = {}
        self._nodes: dict[str, _Node] = {}
        self._attempts: dict[str, _Attempt] = {}
        self._sink: EventSink | None = None
        self._control = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hybatch-dask")
        self._launches: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def _remote(self) -> Any:
        """The worker-side functions (imports distributed: only once a cluster is used)."""
        return importlib.import_module("hybatch.node.dask_plugin")

    def _server_id(self) -> str:
        """Stable across restarts (the topic and keys of this service's nodes)."""
        path = self._state_dir / SERVER_ID_FILE
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            self._state_dir.mkdir(parents=True, exist_ok=True)
            value = uuid.uuid4().hex[:12]
            path.write_text(value)
            return value

    # ------------------------------------------------------------------ lifecycle

    def start(self, sink: EventSink) -> None:
        if self._sink is not None:
            raise RuntimeError("DaskBackend already started")
        self._sink = sink
        for target, name in ((self._submit_loop, "hybatch-dask-submit"),
                             (self._monitor_loop, "hybatch-dask-monitor")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        """Disconnect. Workers and managed schedulers keep running (a restarted service
        reconnects); attempts still running finish on their own and are settled from their
        exit records, or killed and requeued, on the next start."""
        self._stop.set()
        self._launches.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        self._control.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._attempts.clear()
        for cluster in list(self._clusters.values()):
            if cluster.client is not None:
                try:
                    cluster.client.close(timeout=10)
                except Exception:
                    _log.debug("closing the Dask client of %s failed", cluster.name,
                               exc_info=True)
                cluster.client = None
        self._sink = None

    def _emit(self, event: Event) -> None:
        sink = self._sink
        if sink is None:
            return
        try:
            sink(event)
        except Exception:
            _log.exception("event sink failed for %r", event)

    def _later(self, work: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                work()
            except Exception:
                _log.exception("Dask backend work item failed")
        with contextlib.suppress(RuntimeError):  # closing
            self._control.submit(guarded)

    # ------------------------------------------------------------------ clusters

    def _cluster_for(self, size: VmSize) -> _Cluster:
        target = size.dask or DaskTarget(cluster=MANAGED_LOCAL)
        name = target.scheduler or f"managed-{target.cluster}"
        with self._lock:
            cluster = self._clusters.get(name)
            if cluster is None:
                cluster = self._clusters[name] = _Cluster(name=name, target=target)
                if target.managed:
                    cluster.scheduler = ManagedScheduler(
                        self._state_dir / str(target.cluster),
                        host=str(target.slurm.get("scheduler_host", "127.0.0.1")))
            return cluster

    def _connected(self, cluster: _Cluster) -> Any:
        """The cluster's client, connecting (and starting a managed scheduler) if needed."""
        with cluster.lock:
            client = cluster.client
            if client is not None and client.status == "running":
                return client
            if client is not None:
                cluster.client = None
                try:
                    client.close(timeout=5)
                except Exception:
                    _log.debug("closing a broken client failed", exc_info=True)
            cluster.client = client = self._connect(cluster)
            return client

    def _connect(self, cluster: _Cluster) -> Any:
        import distributed

        client_class: Any = distributed.Client
        address = cluster.target.scheduler
        if cluster.scheduler is not None:
            address = cluster.scheduler.address()
            if address is None:
                address = cluster.scheduler.start()
        assert address is not None
        try:
            client = client_class(address, timeout=self._connect_timeout, set_as_default=False,
                            name=f"hybatch-{self._server}")
        except (OSError, TimeoutError) as exc:
            if cluster.scheduler is None:
                raise
            _log.warning("managed scheduler at %s unreachable (%s); starting a new one",
                         address, exc)
            address = cluster.scheduler.start()
            client = client_class(address, timeout=self._connect_timeout, set_as_default=False,
                            name=f"hybatch-{self._server}")
        client.register_plugin(self._remote.HybatchNodePlugin(), name=PLUGIN_NAME)
        client.subscribe_topic(self.topic, self._on_event)
        client.subscribe_topic("all", partial(self._on_cluster_event, cluster))
        held = client.run(self._remote.identify_nodes)
        for address_, described in held.items():
            for node in described:
                if node.get("topic") == self.topic:
                    cluster.adopted[str(node["nodeId"])] = address_
        return client

    def _workers(self, client: Any) -> dict[str, dict[str, Any]]:
        info = client.scheduler_info(n_workers=-1)
        workers: dict[str, dict[str, Any]] = info.get("workers", {})
        return workers

    # ------------------------------------------------------------------ nodes

    def provision_node(self, effect: ProvisionNode) -> None:
        size = self._catalogue.get(effect.vm_size)
        if size is None or size.backend != "dask":
            lost = NodeLost(effect.node_id, f"the VM size {effect.vm_size!r} is not a Dask size")
            self._later(lambda: self._emit(lost))
            return
        node = _Node(pool_id=effect.pool_id, node_id=effect.node_id, slots=effect.slots,
                     is_dedicated=effect.is_dedicated, size=size,
                     cluster=self._cluster_for(size))
        with self._lock:
            existing = self._nodes.get(effect.node_id)
            if existing is not None and not existing.lost and existing.address is not None:
                self._later(lambda: self._emit(NodeReady(effect.node_id)))
                return
            self._nodes[effect.node_id] = node
        self._later(lambda: self._provision(node))

    def _provision(self, node: _Node) -> None:
        cluster = node.cluster
        try:
            client = self._connected(cluster)
            with cluster.lock:
                address = self._claim_worker(client, node)
                if address is None and not cluster.target.managed:
                    if node not in cluster.pending:
                        cluster.pending.append(node)
                    return
                if node in cluster.pending:
                    cluster.pending.remove(node)
            if address is None:
                address = self._start_worker(client, node)
            with cluster.lock:
                cluster.bound[address] = node.node_id
            info = self._workers(client).get(address, {})
            node.use_resources = SLOTS_RESOURCE in (info.get("resources") or {})
            spec = {"poolId": node.pool_id, "nodeId": node.node_id,
                    "isDedicated": node.is_dedicated, "slots": node.slots,
                    "nodeRoot": self._node_root(node),
                    "accountName": self._account_name, "accountUrl": self._account_url,
                    "topic": self.topic}
            client.run(self._remote.provision_node, spec, workers=[address])
        except Exception as exc:
            _log.warning("could not provision Dask node %s: %s", node.node_id, exc)
            with cluster.lock:
                if node.address is None:
                    for addr, node_id in list(cluster.bound.items()):
                        if node_id == node.node_id:
                            del cluster.bound[addr]
            if not node.releasing:
                node.lost = True
                self._emit(NodeLost(node.node_id, f"the Dask worker could not be started "
                                                  f"or reached: {exc}"))
            return
        if node.releasing:
            return  # release_node is taking it down
        with self._lock:
            node.address = address
            waiting, node.waiting = node.waiting, []
        for key in waiting:
            self._launches.put(key)
        self._emit(NodeReady(node.node_id))

    @staticmethod
    def _node_root(node: _Node) -> str | None:
        """Where the worker keeps its nodes: the size's ``node_root``; for workers this host
        starts, ``<state>/nodes``; otherwise the worker's local directory (plugin default)."""
        target = node.cluster.target
        if target.node_root is not None:
            return target.node_root
        scheduler = node.cluster.scheduler
        if scheduler is not None and target.cluster == MANAGED_LOCAL:
            return str(scheduler.state_dir / "nodes")
        return None

    def _claim_worker(self, client: Any, node: _Node) -> str | None:
        """Under the cluster lock: the worker present that is (or becomes) this node; None
        when a managed cluster must start one (or an external one has none free)."""
        cluster = node.cluster
        workers = self._workers(client)
        adopted = cluster.adopted.pop(node.node_id, None)
        if adopted is not None and adopted in workers:
            return adopted
        target = cluster.target
        if not target.managed:
            taken = set(cluster.bound) | set(cluster.adopted.values())
            free = sorted(a for a in workers if a not in taken)
            for address in free:
                held = client.run(self._remote.identify_nodes, workers=[address]).get(address)
                if held == []:  # holds no node of any service
                    return address
            return None
        for address, info in workers.items():  # started earlier, not yet provisioned
            if info.get("name") == node.node_id:
                return address
        return None

    def _start_worker(self, client: Any, node: _Node) -> str:
        """A managed cluster's new worker for the node (a process or a Slurm job)."""
        cluster = node.cluster
        target = cluster.target
        memory = node.size.memory_gib
        if target.cluster == MANAGED_SLURM:
            assert cluster.scheduler is not None
            SlurmWorkers(cluster.scheduler.state_dir, target.slurm_job_settings()).start(
                client.scheduler.address, node.node_id, node.slots, memory)
        else:
            assert cluster.scheduler is not None
            workers_ = LocalWorkers(cluster.scheduler.state_dir)
            if workers_.pid(node.node_id) is not None and not workers_.alive(node.node_id):
                # this node had a worker and it died (while the service was away): the
                # node is lost, as it would be on a real host
                raise ClusterStartError(f"the worker process of node {node.node_id} is gone")
            if not workers_.alive(node.node_id):
                workers_.start(client.scheduler.address, node.node_id, node.slots, memory)
        return self._wait_for_worker(client, node)

    def _wait_for_worker(self, client: Any, node: _Node) -> str:
        """Poll the scheduler (deadline: the worker start timeout) for the node's worker."""
        deadline = time.monotonic() + self._worker_timeout
        scheduler = node.cluster.scheduler
        local = (LocalWorkers(scheduler.state_dir)
                 if scheduler is not None and node.cluster.target.cluster == MANAGED_LOCAL
                 else None)
        while not self._stop.is_set() and not node.releasing:
            for address, info in self._workers(client).items():
                if info.get("name") == node.node_id:
                    return address
            if local is not None and not local.alive(node.node_id):
                raise ClusterStartError(f"the worker process of node {node.node_id} exited")
            if time.monotonic() > deadline:
                break
            self._stop.wait(0.1)
        raise ClusterStartError(f"no worker named {node.node_id} joined the cluster")

    def release_node(self, effect: ReleaseNode) -> None:
        with self._lock:
            node = self._nodes.get(effect.node_id)
        if node is None:
            self._later(lambda: self._emit(NodeReleased(effect.node_id)))
            return
        node.releasing = True
        self._later(lambda: self._release(node))

    def _release(self, node: _Node) -> None:
        cluster = node.cluster
        with cluster.lock:
            if node in cluster.pending:
                cluster.pending.remove(node)
        address = node.address
        if address is not None and not node.lost and cluster.client is not None:
            try:
                records = cluster.client.run(self._remote.release_node, node.node_id,
                                             workers=[address]).get(address, [])
                for data in records:
                    self._deliver_exit(ExitRecord.from_json(data))
            except Exception as exc:
                _log.warning("releasing node %s on %s: %s", node.node_id, address, exc)
            if cluster.target.managed:
                self._stop_worker(cluster, node, address)
        with cluster.lock:
            if address is not None and cluster.bound.get(address) == node.node_id:
                del cluster.bound[address]
        self._drop_attempts(node)
        with self._lock:
            if self._nodes.get(node.node_id) is node:
                del self._nodes[node.node_id]
        self._emit(NodeReleased(node.node_id))

    def _stop_worker(self, cluster: _Cluster, node: _Node, address: str) -> None:
        try:
            cluster.client.retire_workers(workers=[address], close_workers=True, remove=True)
        except Exception as exc:
            _log.warning("retiring worker %s: %s", address, exc)
        assert cluster.scheduler is not None
        state = cluster.scheduler.state_dir
        if cluster.target.cluster == MANAGED_SLURM:
            SlurmWorkers(state, cluster.target.slurm_job_settings()).cancel(node.node_id)
        else:
            LocalWorkers(state).forget(node.node_id)

    def restart_node(self, effect: RestartNode) -> None:
        self._later(lambda: self._restart(effect))

    def run_node_task(self, launch: NodeTaskLaunch) -> None:
        """Start, job preparation and job release tasks do not run on Dask nodes yet: the
        node answers at once that it could not run one (documented in docs/dask.md)."""
        failure = FailureInfoRecord(
            category="servererror", code="NodeTaskNotSupported",
            message="Start, job preparation and job release tasks do not run on Dask nodes yet")
        event = NodeTaskExited(node_id=launch.node_id, kind=launch.kind, job_id=launch.job_id,
                               attempt=launch.attempt, exit_code=None, start_time=None,
                               end_time=datetime.now(UTC), failure=failure)
        self._later(lambda: self._emit(event))

    def kill_node_task(self, effect: KillNodeTask) -> None:
        """Nothing runs (see run_node_task)."""

    def _restart(self, effect: RestartNode) -> None:
        with self._lock:
            node = self._nodes.get(effect.node_id)
        if node is None or node.address is None or node.lost:
            self._emit(NodeLost(effect.node_id, "the node to restart is not on a Dask worker"))
            return
        if node.releasing:
            return
        try:
            self._on_node(node, self._remote.restart_node, node.node_id, effect.reimage)
        except Exception as exc:
            self._lose(node, f"could not restart the node: {exc}")
            return
        self._emit(NodeReady(effect.node_id))

    def _lose(self, node: _Node, reason: str) -> None:
        with self._lock:
            if node.lost:
                return
            node.lost = True
        cluster = node.cluster
        with cluster.lock:
            if node.address is not None and cluster.bound.get(node.address) == node.node_id:
                del cluster.bound[node.address]
        self._drop_attempts(node)
        if node.releasing:
            return  # _release reports it released
        self._emit(NodeLost(node.node_id, reason))

    def _drop_attempts(self, node: _Node) -> None:
        with self._lock:
            keys = [k for k, a in self._attempts.items() if a.node is node]
            for key in keys:
                self._pop_attempt(key)

    # ------------------------------------------------------------------ tasks

    def start_task(self, launch: TaskLaunch) -> None:
        with self._lock:
            node = self._nodes.get(launch.node_id)
            usable = node is not None and not node.lost and not node.releasing
            held = False
            if usable:
                assert node is not None
                key = _attempt_key(self._server, launch.node_id, launch.job_id,
                                   launch.task_id, launch.attempt)
                if key not in self._attempts:
                    self._attempts[key] = _Attempt(launch, node)
                if node.address is None:  # reconnecting after a restart: submit once back
                    node.waiting.append(key)
                    held = True
        if held:
            return
        if not usable:
            self._later(lambda: self._never_started(launch, CODE_NODE_UNAVAILABLE,
                                                    f"The node {launch.node_id!r} is not "
                                                    "available to run tasks"))
            return
        self._launches.put(key)

    def _never_started(self, launch: TaskLaunch, code: str, message: str) -> None:
        failure = FailureInfoRecord(category="servererror", code=code, message=message)
        self._emit(ExitRecord.never_started(launch, failure).to_event())

    def _submit_loop(self) -> None:
        """Hand offered attempts to Dask, a batch per node at a time (one graph update)."""
        while True:
            first = self._launches.get()
            if first is None:
                return
            keys = [first]
            deadline: float | None = None
            while True:
                try:
                    if deadline is None:
                        more = self._launches.get_nowait()
                    else:
                        more = self._launches.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    if deadline is None and self._busy(keys):
                        deadline = time.monotonic() + LINGER_S
                        continue
                    break
                if more is None:
                    return
                keys.append(more)
            try:
                self._submit(keys)
            except Exception:
                _log.exception("submitting %d attempts to Dask failed", len(keys))

    def _busy(self, keys: list[str]) -> bool:
        """Whether every node these attempts go to has two rounds of slots queued in Dask."""
        with self._lock:
            nodes = {id(a.node): a.node for k in keys if (a := self._attempts.get(k))}
        return bool(nodes) and all(n.in_dask >= 2 * n.slots for n in nodes.values())

    def _submit(self, keys: list[str]) -> None:
        groups: dict[tuple[int, int], list[tuple[str, _Attempt]]] = {}
        with self._lock:
            for key in keys:
                attempt = self._attempts.get(key)
                if attempt is not None and attempt.future is None:
                    group = (id(attempt.node), attempt.launch.required_slots)
                    groups.setdefault(group, []).append((key, attempt))
        for batch in groups.values():
            node = batch[0][1].node
            client = node.cluster.client
            if client is None or node.address is None:
                continue
            launches = [a.launch for _, a in batch]
            slots = launches[0].required_slots
            futures = client.map(self._remote.run_attempt, launches, [self.topic] * len(launches),
                                 key=[k for k, _ in batch], workers=[node.address],
                                 allow_other_workers=False, pure=False,
                                 resources={SLOTS_RESOURCE: slots} if node.use_resources
                                 else None)
            with self._lock:
                for (key, attempt), future in zip(batch, futures, strict=True):
                    attempt.future = future
                    if self._attempts.get(key) is attempt:
                        node.in_dask += 1

    def kill_task(self, effect: KillTask) -> None:
        key = _attempt_key(self._server, effect.node_id, effect.job_id, effect.task_id,
                           effect.attempt)
        with self._lock:
            attempt = self._attempts.get(key)
        if attempt is None:
            return
        node = attempt.node
        self._later(lambda: self._try_on_node(node, self._remote.kill_attempt, effect.node_id,
                                              effect.job_id, effect.task_id, effect.attempt))

    def delete_task_files(self, effect: DeleteTaskFiles) -> None:
        with self._lock:
            node = self._nodes.get(effect.node_id)
        if node is None or node.lost:
            return
        self._later(lambda: self._try_on_node(node, self._remote.delete_task_files,
                                              effect.node_id, effect.job_id, effect.task_id))

    def _try_on_node(self, node: _Node, function: Callable[..., Any], *args: Any) -> None:
        """Best effort (a kill or a clean-up on a node that may be gone meanwhile)."""
        try:
            self._on_node(node, function, *args)
        except Exception as exc:
            _log.info("%s on node %s: %s", function.__name__, node.node_id, exc)

    def _on_node(self, node: _Node, function: Callable[..., Any], *args: Any) -> Any:
        """Run a plugin function on the node's worker and return its result."""
        address = node.address or node.cluster.adopted.get(node.node_id)
        if address is None or node.lost:
            raise FileNotFoundError(f"node {node.node_id} has no Dask worker")
        client = self._connected(node.cluster)
        results = client.run(function, *args, workers=[address])
        if address not in results:
            raise FileNotFoundError(f"the Dask worker of node {node.node_id} did not answer")
        return results[address]

    # ------------------------------------------------------------------ reads through the worker

    def node_files(self, pool_id: str, node_id: str) -> NodeFiles:
        return DaskNodeFiles(self, node_id)

    def _files_call(self, node_id: str, operation: str, args: tuple[Any, ...]) -> Any:
        with self._lock:
            node = self._nodes.get(node_id)
        if node is None:
            raise FileNotFoundError(f"node {node_id} is not a Dask node of this service")
        return self._on_node(node, self._remote.node_files, node_id, operation, args)

    def collect_exit(self, pool_id: str, node_id: str, job_id: str, task_id: str,
                     attempt: int) -> TaskExited | None:
        with self._lock:
            node = self._nodes.get(node_id)
        if node is None:
            return None
        try:
            self._connected(node.cluster)
            data = self._on_node(node, self._remote.collect_exit, node_id, job_id, task_id, attempt)
        except Exception as exc:
            _log.warning("no exit record of %s/%s attempt %d from node %s: %s", job_id,
                         task_id, attempt, node_id, exc)
            return None
        return ExitRecord.from_json(data).to_event() if data is not None else None

    # ------------------------------------------------------------------ events (client loop)

    def _on_event(self, event: tuple[float, Any]) -> None:
        _, received = event
        for message in received[1] if received and received[0] == BATCH else (received,):
            try:
                kind = message[0]
                if kind == EXIT:
                    self._deliver_exit(record_from_message(message))
                elif kind == START:
                    self._deliver_start(message)
            except Exception:
                _log.exception("bad event from a Dask node: %r", message)

    def _pop_attempt(self, key: str) -> _Attempt | None:
        """Under the lock: forget an attempt (dropping its future releases the Dask task)."""
        attempt = self._attempts.pop(key, None)
        if attempt is not None and attempt.future is not None:
            attempt.node.in_dask -= 1
        return attempt

    def _deliver_exit(self, record: ExitRecord) -> None:
        key = _attempt_key(self._server, record.node_id, record.job_id, record.task_id,
                           record.attempt)
        with self._lock:
            attempt = self._pop_attempt(key)
        if attempt is not None:
            self._emit(record.to_event())

    def _deliver_start(self, message: list[Any]) -> None:
        _, node_id, job_id, task_id, number, start = message
        key = _attempt_key(self._server, node_id, job_id, task_id, int(number))
        with self._lock:
            attempt = self._attempts.get(key)
            if attempt is None or attempt.started:
                return
            attempt.started = True
        self._emit(TaskStarted(job_id=job_id, task_id=task_id, attempt=int(number),
                               start_time=datetime.fromisoformat(start)))

    def _on_cluster_event(self, cluster: _Cluster, event: tuple[float, Any]) -> None:
        _, message = event
        if not isinstance(message, dict):
            return
        action = message.get("action")
        if action == "remove-worker":
            node_id = cluster.bound.get(str(message.get("worker")))
            if node_id is not None:
                with self._lock:
                    node = self._nodes.get(node_id)
                if node is not None:
                    self._later(lambda: self._lose(node, "the node's Dask worker left the "
                                                         "cluster"))
        elif action == "add-worker" and cluster.pending:
            self._later(lambda: self._retry_pending(cluster))

    def _retry_pending(self, cluster: _Cluster) -> None:
        with cluster.lock:
            waiting = list(cluster.pending)
        for node in waiting:
            if not node.releasing:
                self._provision(node)

    # ------------------------------------------------------------------ monitor

    def _monitor_loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._check_attempts()
                self._check_workers()
            except Exception:
                _log.exception("Dask backend monitor failed")

    def _check_attempts(self) -> None:
        """Attempts whose Dask task failed outside the node runtime (or was cancelled)."""
        with self._lock:
            failed = [(k, a) for k, a in self._attempts.items()
                      if a.future is not None and a.future.status in ("error", "cancelled")]
            for key, _ in failed:
                self._pop_attempt(key)
        for _, attempt in failed:
            launch = attempt.launch
            failure = FailureInfoRecord(
                category="servererror", code=CODE_RUNTIME_FAILED,
                message=f"The Dask task running the attempt ended as {attempt.future.status}")
            record = ExitRecord.of(launch, exit_code=None, start_time=None,
                                   end_time=datetime.now(UTC), failure=failure)
            self._emit(record.to_event())

    def _check_workers(self) -> None:
        for cluster in list(self._clusters.values()):
            client = cluster.client
            if client is None:
                continue
            try:
                present = set(self._workers(client))
            except Exception:
                continue  # reconnecting; its nodes are checked once it answers
            with cluster.lock:
                gone = [n for a, n in cluster.bound.items() if a not in present]
                retry = bool(cluster.pending)
            for node_id in gone:
                with self._lock:
                    node = self._nodes.get(node_id)
                if node is not None and node.address is not None:
                    self._lose(node, "the node's Dask worker left the cluster")
            if retry:
                self._later(partial(self._retry_pending, cluster))

    # ------------------------------------------------------------------ introspection

    def node_address(self, node_id: str) -> str | None:
        """The worker address of a node (tests, diagnostics)."""
        with self._lock:
            node = self._nodes.get(node_id)
        return node.address if node is not None else None


class DaskNodeFiles:
    """:class:`hybatch.ports.NodeFiles` of a node on a Dask worker: every call runs there."""

    def __init__(self, backend: DaskBackend, node_id: str) -> None:
        self._backend = backend
        self._node_id = node_id

    def list(self, path: str, recursive: bool) -> list[FileInfo]:
        result: list[FileInfo] = self._backend._files_call(self._node_id, "list",
                                                           (path, recursive))
        return result

    def stat(self, path: str) -> FileInfo:
        result: FileInfo = self._backend._files_call(self._node_id, "stat", (path,))
        return result

    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        result: bytes = self._backend._files_call(self._node_id, "read", (path, start, end))
        return result

    def delete(self, path: str, recursive: bool) -> None:
        self._backend._files_call(self._node_id, "delete", (path, recursive))
