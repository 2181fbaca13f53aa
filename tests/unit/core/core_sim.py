"""A small driver around ``BatchCore`` for unit tests of the pure core.

``Sim`` feeds messages to the core at an explicit ``now`` it advances itself, records the
effects, and (when ``auto_nodes`` is on) feeds node effects straight back: ``ProvisionNode`` ->
``NodeReady`` and ``ReleaseNode`` -> ``NodeReleased``. ``StartTask`` launches are remembered so
a test can report the attempt's exit with a chosen code (``sim.exit``). After every message it
calls ``take_changes`` like the runtime does and keeps the changed task records in a tiny
in-memory "store", so completed tasks leave the core's memory and are adopted back before a
command that targets them (as ``runtime`` does with ``commands.task_targets``).
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hybatch.core.commands import (
    AddTasks,
    Command,
    CreateJob,
    CreatePool,
    task_targets,
)
from hybatch.core.dependencies import reactivation_targets
from hybatch.core.effects import (
    DeleteTaskFiles,
    Effect,
    KillTask,
    ProvisionNode,
    ReleaseNode,
    RestartNode,
    StartTask,
    TaskLaunch,
)
from hybatch.core.errors import DomainError
from hybatch.core.events import (
    InstanceStarted,
    NodeLost,
    NodeReady,
    NodeReleased,
    TaskExited,
    TaskLost,
    TaskStarted,
)
from hybatch.core.machine import BatchCore, Message
from hybatch.core.records import (
    FailureInfoRecord,
    JobRecord,
    NodeRecord,
    PoolRecord,
    ProcessUsage,
    TaskRecord,
    UsageRecord,
    task_key,
)
from hybatch.schema import (
    BatchJobCreateOptions,
    BatchPoolCreateOptions,
    BatchTaskCreateOptions,
)

T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
BASE_URL = "https://acct.local.batch.example"

TaskKey = tuple[str, str]


class SeqIds:
    """Deterministic node ids, unique across pools: ``tvmps_0001``, ``tvmps_0002``, ..."""

    def __init__(self) -> None:
        self.count = 0

    def node_id(self, pool_id: str) -> str:
        self.count += 1
        return f"tvmps_{self.count:04d}"


# ------------------------------------------------------------------ wire bodies


def pool_spec(pool_id: str = "p", *, nodes: int = 1, low: int = 0, slots: int = 1,
              fill: str | None = None, **extra: Any) -> BatchPoolCreateOptions:
    body: dict[str, Any] = {"id": pool_id, "vmSize": "standard_d2s_v3",
                            "targetDedicatedNodes": nodes, "taskSlotsPerNode": slots}
    if low:
        body["targetLowPriorityNodes"] = low
    if fill is not None:
        body["taskSchedulingPolicy"] = {"nodeFillType": fill}
    body.update(extra)
    return BatchPoolCreateOptions.model_validate(body)


def job_spec(job_id: str = "j", pool_id: str = "p", **extra: Any) -> BatchJobCreateOptions:
    body: dict[str, Any] = {"id": job_id, "poolInfo": {"poolId": pool_id}}
    body.update(extra)
    return BatchJobCreateOptions.model_validate(body)


def task_spec(task_id: str, *, retries: int | None = None, slots: int | None = None,
              command: str = "/bin/true", **extra: Any) -> BatchTaskCreateOptions:
    body: dict[str, Any] = {"id": task_id, "commandLine": command}
    if retries is not None:
        body["constraints"] = {"maxTaskRetryCount": retries}
    if slots is not None:
        body["requiredSlots"] = slots
    body.update(extra)
    return BatchTaskCreateOptions.model_validate(body)


# ------------------------------------------------------------------ snapshots


def snapshot(core: BatchCore) -> dict[str, object]:
    """Everything a failed command must leave alone: record versions, counters, queues."""
    s = core.state
    return {
        "pools": {k: (p.version, p.allocation_state, p.state) for k, p in s.pools.items()},
        "nodes": {k: (n.version, n.running_task_slots) for k, n in s.nodes.items()},
        "jobs": {k: (j.version, j.state, _counts(j)) for k, j in s.jobs.items()},
        "tasks": {k: (t.version, t.state) for k, t in s.tasks.items()},
        "ready": {k: tuple(q) for k, q in s.ready.items()},
        "running": {k: frozenset(v) for k, v in s.running.items()},
        "job_seq": s.job_seq,
    }


def _counts(job: JobRecord) -> tuple[int, ...]:
    c = job.counts
    return (c.active, c.running, c.completed, c.succeeded, c.failed, c.active_slots,
            c.running_slots, c.completed_slots, c.succeeded_slots, c.failed_slots)


# ------------------------------------------------------------------ the driver


@dataclass
class Sim:
    auto_nodes: bool = True
    evict: bool = True
    core: BatchCore = field(default_factory=lambda: BatchCore(SeqIds()))
    now: datetime = T0
    effects: list[Effect] = field(default_factory=list)  # every effect, in order
    last: list[Effect] = field(default_factory=list)  # effects of the latest send()
    launches: dict[TaskKey, TaskLaunch] = field(default_factory=dict)  # latest per task
    provisioning: list[ProvisionNode] = field(default_factory=list)  # not yet reported
    releasing: list[ReleaseNode] = field(default_factory=list)  # not yet reported
    restarting: list[RestartNode] = field(default_factory=list)  # not yet reported back
    usage: list[UsageRecord] = field(default_factory=list)  # closed usage intervals written
    store: dict[TaskKey, TaskRecord] = field(default_factory=dict)  # the "store" of tasks
    auto_start: bool = True  # nodes start offered attempts when they have the slots
    queued: dict[str, list[TaskLaunch]] = field(default_factory=dict)  # offered, not started
    busy: dict[str, int] = field(default_factory=dict)  # slots of started attempts per node
    last_started: list[TaskLaunch] = field(default_factory=list)  # started by latest send()

    # -------------------------------------------------------------- time and messages

    def advance(self, seconds: float = 1.0) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def send(self, message: Message) -> Any:
        """Handle one message (plus node feedback when ``auto_nodes``); return its result."""
        self.last = []
        self.last_started = []
        result = self._handle(message)
        while True:
            if self.auto_nodes and self.provisioning:
                effect = self.provisioning.pop(0)
                self._handle(NodeReady(effect.node_id))
            elif self.auto_nodes and self.releasing:
                release = self.releasing.pop(0)
                self._handle(NodeReleased(release.node_id))
            elif self.auto_nodes and self.restarting:
                restart = self.restarting.pop(0)
                self._handle(NodeReady(restart.node_id))
            elif not (self.auto_start and self._start_next()):
                return result

    def _start_next(self) -> bool:
        """Like a node: start the first queued attempt that fits its free slots."""
        for node_id, queue in self.queued.items():
            node = self.core.state.nodes.get(node_id.lower())
            if not queue or node is None:
                continue
            launch = queue[0]
            if self.busy.get(node_id, 0) + launch.required_slots > node.slots:
                continue
            queue.pop(0)
            self.last_started.append(launch)
            self.busy[node_id] = self.busy.get(node_id, 0) + launch.required_slots
            if launch.instance is not None:  # a multi-instance task's coordination command
                self._handle(InstanceStarted(job_id=launch.job_id, task_id=launch.task_id,
                                             attempt=launch.attempt, instance=launch.instance,
                                             start_time=self.now))
                return True
            self._handle(TaskStarted(job_id=launch.job_id, task_id=launch.task_id,
                                     attempt=launch.attempt, start_time=self.now))
            return True
        return False

    def _forget_launch(self, launch: TaskLaunch) -> None:
        """An attempt ended: free its slots, or drop it from its node's queue."""
        queue = self.queued.get(launch.node_id, [])
        if launch in queue:
            queue.remove(launch)
        else:
            self.busy[launch.node_id] = self.busy.get(launch.node_id, 0) - launch.required_slots

    def adopt_targets(self, message: Message) -> None:
        """Load the stored tasks a command targets, as the runtime does before handling it."""
        if isinstance(message, Command):
            self._adopt(task_targets(message))
            self._adopt(reactivation_targets(message, self.core.state))

    def _adopt(self, targets: list[tuple[str, str]]) -> None:
        for job_id, task_id in targets:
            stored = self.store.get(task_key(job_id, task_id))
            if (stored is not None and stored.key not in self.core.state.tasks
                    and stored.key[0] in self.core.state.jobs):
                self.core.adopt([copy.copy(stored)])  # a fresh record, as a store read

    def _handle(self, message: Message) -> Any:
        if isinstance(message, TaskLost):  # the node no longer holds that attempt
            launch = self.launches.get(task_key(message.job_id, message.task_id))
            if launch is not None and launch.attempt == message.attempt:
                self._forget_launch(launch)
        elif isinstance(message, NodeLost):
            self.queued.pop(message.node_id, None)
            self.busy.pop(message.node_id, None)
        self.adopt_targets(message)
        out = self.core.handle(message, self.now)
        self.absorb(out.effects)
        if self.evict:
            self.commit()
        return out.result

    def absorb(self, effects: list[Effect]) -> None:
        self.effects.extend(effects)
        self.last.extend(effects)
        for effect in effects:
            if isinstance(effect, StartTask):
                launch = effect.launch
                self.launches[task_key(launch.job_id, launch.task_id)] = launch
                self.queued.setdefault(launch.node_id, []).append(launch)
            elif isinstance(effect, ProvisionNode):
                self.provisioning.append(effect)
            elif isinstance(effect, RestartNode):
                self.restarting.append(effect)
            elif isinstance(effect, ReleaseNode) and all(
                    r.node_id != effect.node_id for r in self.releasing):
                self.releasing.append(effect)

    def commit(self) -> None:
        """``take_changes`` and apply them as the stores do: deletions first, then upserts."""
        changes = self.core.take_changes()
        self.usage.extend(changes.usage)
        for key in changes.deleted_tasks:
            self.store.pop(key, None)
        for job_key in changes.deleted_jobs:
            for key in [k for k in self.store if k[0] == job_key]:
                del self.store[key]
        self.store.update({k: copy.copy(t) for k, t in changes.tasks.items()})
        assert not any(t.state == "completed" for t in self.core.state.tasks.values())

    def fails(self, message: Message, code: str) -> DomainError:
        """Send a command that must raise ``code`` and must change nothing."""
        self.adopt_targets(message)
        before = snapshot(self.core)
        with pytest.raises(DomainError) as info:
            self.send(message)
        assert info.value.code == code, info.value.message
        assert snapshot(self.core) == before
        return info.value

    # -------------------------------------------------------------- node feedback

    def ready_nodes(self, count: int | None = None) -> list[str]:
        """Report ``count`` (default: all) provisioned nodes ready, oldest first."""
        todo = self.provisioning[: count if count is not None else len(self.provisioning)]
        del self.provisioning[: len(todo)]
        for effect in todo:
            self.send(NodeReady(effect.node_id))
        return [e.node_id for e in todo]

    def restart_nodes(self) -> list[str]:
        """Report every restarted (rebooted, reimaged, started) node back (NodeReady)."""
        todo, self.restarting = self.restarting, []
        for effect in todo:
            self.send(NodeReady(effect.node_id))
        return [e.node_id for e in todo]

    def release_nodes(self) -> list[str]:
        todo, self.releasing = self.releasing, []
        for effect in todo:
            self.send(NodeReleased(effect.node_id))
        return [e.node_id for e in todo]

    # -------------------------------------------------------------- task exits

    def launch(self, job_id: str, task_id: str) -> TaskLaunch:
        return self.launches[task_key(job_id, task_id)]

    def exit(self, job_id: str, task_id: str, code: int | None = 0, *,
             attempt: int | None = None, timed_out: bool = False,
             failure: FailureInfoRecord | None = None,
             usage: ProcessUsage | None = None) -> None:
        """Report the end of the task's latest (or the given) attempt."""
        launch = self.launch(job_id, task_id)
        if attempt is None or attempt == launch.attempt:
            self._forget_launch(launch)
        self.send(TaskExited(job_id=job_id, task_id=task_id,
                             attempt=launch.attempt if attempt is None else attempt,
                             exit_code=code, start_time=self.now, end_time=self.now,
                             timed_out=timed_out, failure=failure, usage=usage))

    def exit_killed(self, code: int = -9) -> list[KillTask]:
        """Report an exit for every attempt killed by the latest send()."""
        kills = [e for e in self.last if isinstance(e, KillTask)]
        for kill in kills:
            self.exit(kill.job_id, kill.task_id, code, attempt=kill.attempt)
        return kills

    # -------------------------------------------------------------- setup shortcuts

    def pool(self, pool_id: str = "p", **kwargs: Any) -> PoolRecord:
        result = self.send(CreatePool(pool_spec(pool_id, **kwargs)))
        assert isinstance(result, PoolRecord)
        return result

    def job(self, job_id: str = "j", pool_id: str = "p", **kwargs: Any) -> JobRecord:
        result = self.send(CreateJob(job_spec(job_id, pool_id, **kwargs)))
        assert isinstance(result, JobRecord)
        return result

    def tasks(self, job_id: str, *specs: BatchTaskCreateOptions | str) -> list[TaskRecord]:
        """Add tasks (ids or specs) as one collection; every one must succeed."""
        bodies = tuple(task_spec(s) if isinstance(s, str) else s for s in specs)
        results = self.send(AddTasks(job_id, bodies))
        assert all(isinstance(r, TaskRecord) for r in results), results
        return list(results)

    # -------------------------------------------------------------- lookups

    def get_pool(self, pool_id: str = "p") -> PoolRecord | None:
        return self.core.state.pools.get(pool_id.lower())

    def get_job(self, job_id: str = "j") -> JobRecord | None:
        return self.core.state.jobs.get(job_id.lower())

    def pool_rec(self, pool_id: str = "p") -> PoolRecord:
        pool = self.get_pool(pool_id)
        assert pool is not None, f"no pool {pool_id}"
        return pool

    def job_rec(self, job_id: str = "j") -> JobRecord:
        job = self.get_job(job_id)
        assert job is not None, f"no job {job_id}"
        return job

    def get_node(self, node_id: str) -> NodeRecord:
        return self.core.state.nodes[node_id.lower()]

    def nodes(self, pool_id: str = "p") -> list[NodeRecord]:
        return sorted(self.core.state.nodes_of(pool_id.lower()), key=lambda n: n.id)

    def task(self, job_id: str, task_id: str) -> TaskRecord:
        key = task_key(job_id, task_id)
        found = self.core.state.tasks.get(key) or self.store.get(key)
        assert found is not None, f"no task {key}"
        return found

    def placement(self, pool_id: str = "p") -> dict[str, list[str]]:
        """node id -> ids of the tasks running on it."""
        return {n.id: [k[1] for k in n.task_keys] for n in self.nodes(pool_id)}

    def running_ids(self, job_id: str = "j") -> set[str]:
        return {k[1] for k in self.core.state.running.get(job_id.lower(), set())}

    def counts(self, job_id: str = "j") -> dict[str, int]:
        job = self.get_job(job_id)
        assert job is not None
        c = job.counts
        return {"active": c.active, "running": c.running, "completed": c.completed,
                "succeeded": c.succeeded, "failed": c.failed}

    def slot_counts(self, job_id: str = "j") -> dict[str, int]:
        job = self.get_job(job_id)
        assert job is not None
        c = job.counts
        return {"active": c.active_slots, "running": c.running_slots,
                "completed": c.completed_slots, "succeeded": c.succeeded_slots,
                "failed": c.failed_slots}

    def started(self) -> list[TaskLaunch]:
        """Attempts whose process a node started during the latest send()."""
        return list(self.last_started)

    def offered(self) -> list[TaskLaunch]:
        """Attempts offered to nodes (StartTask effects) by the latest send()."""
        return [e.launch for e in self.last if isinstance(e, StartTask)]

    def kinds(self) -> Counter[str]:
        return Counter(type(e).__name__ for e in self.last)

    def deleted_files(self) -> list[DeleteTaskFiles]:
        return [e for e in self.last if isinstance(e, DeleteTaskFiles)]

    def check(self) -> None:
        problems = self.core.state.validate()
        assert not problems, problems


def started_in(effects: list[Effect]) -> list[TaskLaunch]:
    return [e.launch for e in effects if isinstance(e, StartTask)]
