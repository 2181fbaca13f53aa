"""The core state machine of test_core_stateful, with pool start tasks, job preparation and
release tasks and job managers in play: random node task exits (successes, failures, stale
reports) among all the other commands and events.

Besides the base machine's checks: an attempt waiting for its job's preparation task is never
reported by a node and is sent only once the preparation succeeded there; an exclusive job
manager shares its node with nothing; a node that is waitingforstarttask or starttaskfailed
takes nothing; a terminating or deleting job waits only for attempts or release tasks.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from hybatch.core import job_tasks
from hybatch.core.commands import AddTasks, CreateJob, CreatePool
from hybatch.core.effects import Effect, NodeTaskLaunch, RunNodeTask, StartTask
from hybatch.core.events import NodeReady, NodeTaskExited
from hybatch.core.job_manager import is_manager, runs_exclusive
from hybatch.core.job_release import preparation_state
from hybatch.core.records import TaskRecord
from tests.unit.core.core_sim import job_spec, pool_spec, task_spec
from tests.unit.core.test_core_stateful import JOB_IDS, POOL_IDS, TASK_IDS, CoreMachine

PREP = {"commandLine": "prep", "constraints": {"maxTaskRetryCount": 1}}
RELEASE = {"commandLine": "release"}


class NodeTaskMachine(CoreMachine):
    def __init__(self) -> None:
        super().__init__()
        self.node_tasks: list[NodeTaskLaunch] = []

    # -------------------------------------------------------------- plumbing

    def _withheld(self, task: TaskRecord) -> bool:
        """Assigned while its job's preparation runs on the node: the node never had it."""
        job = self.core.state.jobs.get(task.key[0])
        return (task.state == "preparing" and task.offered and job is not None
                and preparation_state(job, task.node_id or "") != "ready")

    def check_effects(self, effects: list[Effect], used_before: dict[str, int],
                      attempts_before: dict[tuple[str, str], int]) -> None:
        state = self.core.state
        plain: list[Effect] = []
        for effect in effects:
            if isinstance(effect, RunNodeTask):
                self.node_tasks.append(effect.launch)
                continue
            if isinstance(effect, StartTask):
                launch = effect.launch
                task = state.tasks[(launch.job_id.lower(), launch.task_id.lower())]
                node = state.nodes[launch.node_id.lower()]
                job = state.jobs[task.key[0]]
                assert preparation_state(job, node.id) == "ready", "sent before preparation"
                if job.spec.job_preparation_task is not None:
                    assert launch.job_preparation_task_id is not None
                if task.state == "preparing":  # assigned earlier, sent now
                    assert task.offered and task.attempt == launch.attempt
                    assert key_on(task, node.task_keys)
                    continue
            plain.append(effect)
        super().check_effects(plain, used_before, attempts_before)

    def _running(self) -> list[TaskRecord]:
        return [t for t in super()._running() if not self._withheld(t)]

    def _startable(self) -> list[TaskRecord]:
        return [t for t in super()._startable() if not self._withheld(t)]

    # -------------------------------------------------------------- rules

    @initialize(wait=st.booleans(), exclusive=st.booleans(), start=st.booleans())
    def special_jobs(self, wait: bool, exclusive: bool, start: bool) -> None:
        """Jobs j1 (preparation and release) and j2 (a manager) beside the base machine's j0
        on p0; pool p1 (maybe with a start task) for jobs created later."""
        if "p0" not in self.core.state.pools:  # the base machine's start may come later
            self.apply(CreatePool(pool_spec("p0", nodes=2, slots=2)))
            self.all_nodes_ready()
        self.apply(CreateJob(job_spec("j1", "p0", jobPreparationTask={
            **PREP, "waitForSuccess": wait}, jobReleaseTask=RELEASE)))
        self.apply(CreateJob(job_spec("j2", "p0", jobManagerTask={
            "id": "jm", "commandLine": "manage", "runExclusive": exclusive})))
        extra = {"startTask": {"commandLine": "start", "maxTaskRetryCount": 1}} if start else {}
        self.apply(CreatePool(pool_spec("p1", nodes=2, slots=2, **extra)))

    @rule(pid=POOL_IDS, nodes=st.integers(1, 3), slots=st.integers(1, 2),
          wait=st.sampled_from([None, True, False]), retries=st.sampled_from([0, 1, -1]))
    def create_pool_with_start_task(self, pid: str, nodes: int, slots: int,
                                    wait: bool | None, retries: int) -> None:
        start: dict[str, object] = {"commandLine": "start", "maxTaskRetryCount": retries}
        if wait is not None:
            start["waitForSuccess"] = wait
        self.apply(CreatePool(pool_spec(pid, nodes=nodes, slots=slots, startTask=start)))

    @rule(jid=JOB_IDS, pid=POOL_IDS, prep=st.sampled_from([None, True, False]),
          release=st.booleans(), manager=st.sampled_from([None, "exclusive", "shared"]),
          on_all=st.sampled_from(["noaction", "terminatejob"]))
    def create_special_job(self, jid: str, pid: str, prep: bool | None, release: bool,
                           manager: str | None, on_all: str) -> None:
        extra: dict[str, object] = {"onAllTasksComplete": on_all}
        if prep is not None:
            extra["jobPreparationTask"] = {**PREP, "waitForSuccess": prep}
            if release:
                extra["jobReleaseTask"] = RELEASE
        if manager is not None:
            extra["jobManagerTask"] = {"id": "jm", "commandLine": "manage",
                                       "runExclusive": manager == "exclusive",
                                       "constraints": {"maxTaskRetryCount": 1}}
        self.apply(CreateJob(job_spec(jid, pid, **extra)))

    @rule(jid=st.sampled_from(["j1", "j2"]), ids=st.lists(TASK_IDS, min_size=1, max_size=3))
    def add_special_tasks(self, jid: str, ids: list[str]) -> None:
        """Tasks for the jobs with node tasks (the base rules mostly feed j0)."""
        self.apply(AddTasks(jid, tuple(task_spec(t) for t in ids)))

    @rule(jid=st.sampled_from(["j1", "j2"]), ids=st.lists(TASK_IDS, min_size=1, max_size=3))
    def add_more_special_tasks(self, jid: str, ids: list[str]) -> None:
        self.add_special_tasks(jid, ids)

    @precondition(lambda self: [t for t in self.node_tasks if t.kind != "starttask"])
    @rule(data=st.data(), code=st.sampled_from([0, 0, 1]))
    def job_node_task_exit(self, data: st.DataObject, code: int) -> None:
        """The latest preparation or release task somewhere ends."""
        launch = data.draw(st.sampled_from(
            [t for t in self.node_tasks if t.kind != "starttask"][-4:]))
        self.apply(NodeTaskExited(node_id=launch.node_id, kind=launch.kind,
                                  job_id=launch.job_id, attempt=launch.attempt,
                                  exit_code=code, start_time=None, end_time=self.sim.now))

    @precondition(lambda self: [t for t in self.node_tasks if t.kind != "starttask"])
    @rule(data=st.data())
    def job_node_task_succeeded(self, data: st.DataObject) -> None:
        self.job_node_task_exit(data, 0)

    @precondition(lambda self: self._startable())
    @rule(data=st.data())
    def special_task_started(self, data: st.DataObject) -> None:
        """Starts and exits of attempts are what moves tasks through preparation: weigh them
        as much as the extra rules above."""
        self.task_started(data)

    @precondition(lambda self: self._running())
    @rule(data=st.data(), code=st.sampled_from([0, 0, 1]))
    def special_task_exit(self, data: st.DataObject, code: int) -> None:
        self.task_exit(data, code, "normal")

    @precondition(lambda self: self.node_tasks)
    @rule(data=st.data(), code=st.sampled_from([0, 0, 0, 1, None]))
    def node_task_exit(self, data: st.DataObject, code: int | None) -> None:
        """A node task ends (or a stale report of an earlier one arrives)."""
        latest = data.draw(st.booleans())
        pool = self.node_tasks[-3:] if latest else self.node_tasks
        launch = data.draw(st.sampled_from(pool))
        self.apply(NodeTaskExited(node_id=launch.node_id, kind=launch.kind,
                                  job_id=launch.job_id, attempt=launch.attempt,
                                  exit_code=code, start_time=None, end_time=self.sim.now))

    @precondition(lambda self: self.node_tasks)
    @rule(data=st.data())
    def another_node_task_exit(self, data: st.DataObject) -> None:
        self.node_task_exit(data, 0)

    @precondition(lambda self: self.core.state.nodes)
    @rule(data=st.data())
    def node_adopted(self, data: st.DataObject) -> None:
        """A restarted server adopts a node (NodeReady for a node already up)."""
        node = data.draw(st.sampled_from(sorted(self.core.state.nodes)))
        self.apply(NodeReady(node))

    # -------------------------------------------------------------- invariants

    @invariant()
    def stats_follow_running_attempts(self) -> None:
        """Only started attempts count as running in statistics (a task waiting in
        ``preparing`` has not started)."""
        state = self.core.state
        for job in state.jobs.values():
            running = [t for t in state.tasks_of(job.key) if t.state == "running"]
            assert job.stats.running_attempts == len(running), job.id

    @invariant()
    def active_work_is_queued_and_placed(self) -> None:
        """Every active task of an active job is queued once; a queue head waits only when
        no node it may use has room."""
        state = self.core.state
        for job in state.jobs.values():
            queue = list(state.ready.get(job.key, ()))
            if job.state != "active":
                continue
            for task in state.tasks_of(job.key):
                if task.state == "active" and not task.offered and not task.waiting_on_parents:
                    assert queue.count(task.key) == 1, f"{task.key} queued {queue}"
            pool = state.pools.get(job.pool_id.lower())
            if pool is None or pool.state != "active":
                continue
            cap = job.spec.max_parallel_tasks
            if cap is not None and cap != -1 and len(state.running[job.key]) >= cap:
                continue
            heads = [state.tasks[k] for k in queue if k in state.tasks
                     and state.tasks[k].state == "active" and not state.tasks[k].offered][:1]
            exclusive = job_tasks.exclusive_nodes(ctx_free(self), state.jobs_on(pool.key))
            usable = [n for n in state.nodes_of(pool.key)
                      if n.state in ("idle", "running") and not n.removing
                      and n.scheduling_state == "enabled" and n.key not in exclusive]
            for head in heads:
                nodes = job_tasks.candidates(job, head, usable)
                assert not any(n.free_slots >= head.required_slots for n in nodes), (
                    f"{head.key} waits while a node of {pool.id} has room")

    @invariant()
    def jobs_settle(self) -> None:
        """A terminating or deleting job waits for an attempt or a release task."""
        state = self.core.state
        for job in state.jobs.values():
            if job.state in ("terminating", "deleting"):
                releasing = any(e.release is not None and e.release.state == "running"
                                for e in job.nodes_run)
                assert state.running.get(job.key) or releasing, f"{job.id} stuck"

    @invariant()
    def node_tasks_gate_nodes(self) -> None:
        state = self.core.state
        for node in state.nodes.values():
            if node.state in ("waitingforstarttask", "starttaskfailed"):
                assert not node.task_keys, f"{node.id} {node.state} with tasks"
                assert node.start_task is not None
            info = node.start_task_info
            if node.state == "waitingforstarttask":
                assert info is not None and info.state == "running"
            if node.state == "starttaskfailed":
                assert info is not None and info.result == "failure"

    @invariant()
    def exclusive_managers_are_alone(self) -> None:
        state = self.core.state
        for job in state.jobs.values():
            manager = job.spec.job_manager_task
            if manager is None or not runs_exclusive(job):
                continue
            for task in state.tasks_of(job.key):
                if is_manager(job, task) and task.in_flight:
                    node = state.nodes[(task.node_id or "").lower()]
                    assert node.task_keys == [task.key], f"{node.id} shared: {node.task_keys}"

    @invariant()
    def waiting_tasks_wait_for_a_preparation(self) -> None:
        """A task is preparing only on a node where its job's preparation runs or ran."""
        state = self.core.state
        for task in state.tasks.values():
            if task.state != "preparing":
                continue
            job = state.jobs[task.key[0]]
            assert task.offered and job.spec.job_preparation_task is not None
            assert preparation_state(job, task.node_id or "") in ("running", "ready")
        assert not state.withheld_kills


def key_on(task: TaskRecord, keys: list[tuple[str, str]]) -> bool:
    return task.key in keys


def ctx_free(machine: NodeTaskMachine) -> object:
    """exclusive_nodes reads only ``ctx.state``: a stand-in context for invariants."""

    class _Ctx:
        state = machine.core.state

    return _Ctx()


NodeTaskMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=60, derandomize=True, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestNodeTaskStateMachine = NodeTaskMachine.TestCase
