"""Multi-instance (MPI-style gang) tasks: ``multiInstanceSettings``.

Batch's rules (wire reference §4.6, "Multi-instance tasks"):

* The task runs on ``numberOfInstances`` nodes at once, all or none (gang placement): only
  on a pool with ``enableInterNodeCommunication`` and ``taskSlotsPerNode`` 1, so every
  instance holds a whole node; elsewhere the task stays active. ``requiredSlots`` must be
  absent or 1. A gang at the head of its job's queue holds the tasks behind it (as any task
  that does not fit), so it is not starved by smaller ones.
* Instance 0 is the primary (the task's ``nodeInfo``), 1..N-1 the subtasks
  (Tasks_ListSubTasks). Every instance downloads ``commonResourceFiles`` into its task
  directory (``AZ_BATCH_TASK_SHARED_DIR``) and runs ``coordinationCommandLine``; once all of
  them exited 0, the primary alone runs the task's ``commandLine``. Its exit is the task's.
* A coordination command that fails (non-zero exit, cannot start, its files cannot be
  downloaded) ends the attempt with that outcome: the other instances are killed and the task
  is retried or completed as for any attempt. Subtasks hold their nodes until the task's
  attempt ends; then they are completed with their coordination command's exit code.
* Every instance sees ``AZ_BATCH_HOST_LIST`` (``ip,ip,...``), ``AZ_BATCH_NODE_LIST``
  (``ip;ip;...``), ``AZ_BATCH_MASTER_NODE`` (``ip:port`` of the primary; the port is reserved
  and nothing listens on it), ``AZ_BATCH_IS_CURRENT_NODE_MASTER`` and ``CCP_NODES``
  (``N ip slots ...``); the node adds ``AZ_BATCH_TASK_SHARED_DIR``.

The core drives the phases: coordination launches are StartTask effects whose launch names
its ``instance``; nodes report them as InstanceStarted/InstanceExited; the application command
is an ordinary launch on the primary whose TaskExited goes through ``core.tasks``. Node
accounting: each instance holds one slot on its node (offered, then running) until the
attempt ends (``release_gang``, called where an ordinary task frees its slot).

Imports: standard library, core modules, wire models.
"""

from __future__ import annotations

from datetime import datetime
from posixpath import normpath
from urllib.parse import urlsplit

from hybatch.core import nodes as node_rules
from hybatch.core import stats, user_identity
from hybatch.core.cluster import ClusterState
from hybatch.core.context import Ctx
from hybatch.core.effects import KillTask, ReleaseNode, StartTask, TaskLaunch
from hybatch.core.errors import DomainError, invalid_property
from hybatch.core.events import InstanceExited, InstanceStarted, TaskExited
from hybatch.core.records import (
    FailureInfoRecord,
    InstanceRecord,
    JobRecord,
    NodeRecord,
    PoolRecord,
    TaskRecord,
    task_key,
)
from hybatch.core.validation import check_range, unsupported
from hybatch.schema import BatchTaskCreateOptions, MultiInstanceSettings

MAX_INSTANCES = 100
MASTER_PORT = 6000
"""The port named in AZ_BATCH_MASTER_NODE (reserved for the service on Batch; unused here)."""


# ------------------------------------------------------------------ validation


def validate(spec: BatchTaskCreateOptions) -> None:
    """Refuse a multi-instance task Batch would refuse, or whose files cannot be fetched."""
    settings = spec.multi_instance_settings
    if settings is None:
        return
    prop = "multiInstanceSettings"
    count = settings.number_of_instances
    if count is not None:
        check_range(f"{prop}.numberOfInstances", count, 1, MAX_INSTANCES)
    if spec.required_slots not in (None, 1):
        raise invalid_property("requiredSlots", spec.required_slots,
                               "A multi-instance task must require 1 slot.")
    if not settings.coordination_command_line.strip():
        raise invalid_property(f"{prop}.coordinationCommandLine", "",
                               "The coordination command line must not be empty.")
    for i, resource in enumerate(settings.common_resource_files or []):
        where = f"{prop}.commonResourceFiles[{i}]"
        if resource.http_url is None:
            raise unsupported("Resource files from storage containers (only httpUrl)",
                              f"{where}.storageContainerUrl")
        if resource.identity_reference is not None:
            raise unsupported("Resource file identity references",
                              f"{where}.identityReference")
        scheme = urlsplit(resource.http_url).scheme.lower()
        if scheme not in ("http", "https"):
            raise invalid_property(f"{where}.httpUrl", resource.http_url,
                                   "The URL must be http or https.")
        path = resource.file_path
        if not path:
            raise DomainError("MissingRequiredProperty", "A resource file with an httpUrl "
                              "must name its filePath.", details={
                                  "PropertyName": f"{where}.filePath"})
        clean = normpath(path.replace("\\", "/"))
        if clean.startswith(("/", "..")) or clean == ".":
            raise invalid_property(f"{where}.filePath", path,
                                   "The path must stay inside the task directory.")
        if resource.file_mode is not None:
            try:
                mode = int(resource.file_mode, 8)
            except ValueError:
                mode = -1
            if not 0 <= mode <= 0o7777:
                raise invalid_property(f"{where}.fileMode", resource.file_mode,
                                       "The file mode must be an octal number.")


def instance_count(task: TaskRecord) -> int:
    settings = task.spec.multi_instance_settings
    assert settings is not None
    return settings.number_of_instances or 1


# ------------------------------------------------------------------ placement


def pool_takes_gangs(pool: PoolRecord) -> bool:
    """Batch schedules multi-instance tasks only on inter-node-communication pools with one
    slot per node."""
    return bool(pool.spec.enable_inter_node_communication) and pool.task_slots_per_node == 1


def choose_gang(ctx: Ctx, task: TaskRecord, nodes: list[NodeRecord]) -> list[NodeRecord] | None:
    """``numberOfInstances`` whole idle nodes of the task's pool, or None (all or none)."""
    if not nodes:
        return None
    pool = ctx.state.pools.get(nodes[0].pool_id.lower())
    if pool is None or not pool_takes_gangs(pool):
        return None
    idle = sorted((n for n in nodes if n.free_slots >= n.slots and not n.task_keys),
                  key=lambda n: n.id)
    count = instance_count(task)
    return idle[:count] if len(idle) >= count else None


def _environment(job: JobRecord, task: TaskRecord, gang: list[NodeRecord],
                 instance: int) -> list[tuple[str, str]]:
    env: list[tuple[str, str]] = []
    for setting in job.spec.common_environment_settings or []:
        env.append((setting.name, setting.value or ""))
    for setting in task.spec.environment_settings or []:
        env.append((setting.name, setting.value or ""))
    hosts = [n.ip_address for n in gang]
    env += [
        ("AZ_BATCH_HOST_LIST", ",".join(hosts)),
        ("AZ_BATCH_NODE_LIST", ";".join(hosts)),
        ("AZ_BATCH_MASTER_NODE", f"{hosts[0]}:{MASTER_PORT}"),
        ("AZ_BATCH_IS_CURRENT_NODE_MASTER", "true" if instance == 0 else "false"),
        ("CCP_NODES", " ".join([str(len(gang))] + [f"{n.ip_address} {n.slots}" for n in gang])),
    ]
    return env


def _resource_files(settings: MultiInstanceSettings) -> tuple[tuple[str, str, str | None], ...]:
    return tuple((r.http_url or "", normpath((r.file_path or "").replace("\\", "/")),
                  r.file_mode) for r in settings.common_resource_files or [])


def offer_gang(ctx: Ctx, job: JobRecord, task: TaskRecord, gang: list[NodeRecord]) -> None:
    """Offer one attempt to every node of the gang: each queues the coordination command of
    its instance. The task stays active until the first instance starts."""
    settings = task.spec.multi_instance_settings
    assert settings is not None
    primary = gang[0]
    task.attempt += 1
    task.offered = True
    task.node_id = primary.id
    task.pool_id = primary.pool_id
    task.end_time = None
    task.exit_code = None
    task.kill_requested = None
    task.instances = [InstanceRecord(id=i, node_id=n.id, pool_id=n.pool_id,
                                     state_transition_time=ctx.now)
                      for i, n in enumerate(gang)]
    ctx.state.touch(task, ctx.now)
    ctx.state.running.setdefault(job.key, set()).add(task.key)
    files = _resource_files(settings)
    code = user_identity.launch_code(task.spec.user_identity)
    for i, node in enumerate(gang):
        node.offered_slots += 1
        node.task_keys.append(task.key)
        node.held_by_gang = True
        ctx.state.touch(node, ctx.now)
        ctx.effects.append(StartTask(TaskLaunch(
            pool_id=node.pool_id, node_id=node.id, job_id=job.id, task_id=task.id,
            attempt=task.attempt, command_line=settings.coordination_command_line,
            environment=tuple(_environment(job, task, gang, i)),
            max_wall_clock_s=task.max_wall_clock_s, user_identity=code,
            multi_instance=True, instance=i, resource_files=files)))


# ------------------------------------------------------------------ instance events


def _set_state(ctx: Ctx, instance: InstanceRecord, state: str) -> None:
    if instance.state == state:
        return
    instance.previous_state = instance.state
    instance.previous_state_transition_time = instance.state_transition_time
    instance.state = state
    instance.state_transition_time = ctx.now


def _current(ctx: Ctx, job_id: str, task_id: str, attempt: int,
             index: int) -> tuple[JobRecord, TaskRecord, InstanceRecord] | None:
    task = ctx.state.tasks.get(task_key(job_id, task_id))
    if task is None or task.instances is None or task.attempt != attempt:
        return None
    if not task.in_flight or not 0 <= index < len(task.instances):
        return None
    instance = task.instances[index]
    if instance.state == "completed":
        return None
    return ctx.state.jobs[task.key[0]], task, instance


def on_instance_started(ctx: Ctx, event: InstanceStarted) -> None:
    found = _current(ctx, event.job_id, event.task_id, event.attempt, event.instance)
    if found is not None:
        _started(ctx, *found, event.start_time)


def _started(ctx: Ctx, job: JobRecord, task: TaskRecord, instance: InstanceRecord,
             start_time: datetime) -> None:
    """An offered instance runs: its node's slot moves from offered to running; the first
    instance to start makes the task running."""
    from hybatch.core import tasks as task_rules  # tasks imports this module

    if instance.state != "offered":
        return
    instance.start_time = start_time
    _set_state(ctx, instance, "running")
    node = ctx.state.nodes.get(instance.node_id.lower())
    if node is not None:
        node.offered_slots -= 1
        node.running_tasks += 1
        node.running_task_slots += 1
        if instance.id == 0:
            node.total_tasks_run += 1
        if node.state in ("idle", "offline"):
            node.state = "running"
            node.state_transition_time = ctx.now
        ctx.state.touch(node, ctx.now)
    if task.offered:
        task.offered = False
        task.start_time = start_time
        stats.attempt_started(job, task, start_time)
        task_rules.set_task_state(ctx, job, task, "running")
    else:
        ctx.state.touch(task, ctx.now)


def on_instance_exited(ctx: Ctx, event: InstanceExited) -> None:
    """A coordination command ended: wait for the others, start the application command on
    the primary once all succeeded, or end the attempt with a failure (or a pending kill)."""
    from hybatch.core import tasks as task_rules  # tasks imports this module

    found = _current(ctx, event.job_id, event.task_id, event.attempt, event.instance)
    if found is None:
        return
    job, task, instance = found
    if event.start_time is not None:
        _started(ctx, job, task, instance, event.start_time)  # a short one: start with exit
    instance.end_time = event.end_time
    instance.exit_code = event.exit_code
    instances = task.instances
    assert instances is not None
    succeeded = event.exit_code == 0 and event.failure is None
    if succeeded and task.kill_requested is None:
        _set_state(ctx, instance, "coordinated")
        ctx.state.touch(task, ctx.now)
        if all(i.state == "coordinated" for i in instances):
            _start_application(ctx, job, task)
        return
    # the attempt ends here: this instance's outcome is the attempt's (release_gang completes
    # the instances, this one with its own failure)
    instance.failure_info = event.failure or FailureInfoRecord(
        category="usererror", code="FailureExitCode",
        message="The coordination command exited with an unexpected exit code",
        details=[("Message", f"The coordination command exited with an unexpected exit "
                             f"code: {event.exit_code}")])
    _set_state(ctx, instance, "exited")  # not killed again; release_gang completes it
    task_rules.on_task_exited(ctx, TaskExited(
        job_id=task.job_id, task_id=task.id, attempt=task.attempt, exit_code=event.exit_code,
        start_time=event.start_time, end_time=event.end_time, failure=event.failure))


def _start_application(ctx: Ctx, job: JobRecord, task: TaskRecord) -> None:
    instances = task.instances
    assert instances is not None
    primary = instances[0]
    _set_state(ctx, primary, "running")
    gang = [ctx.state.nodes[i.node_id.lower()] for i in instances
            if i.node_id.lower() in ctx.state.nodes]
    ctx.effects.append(StartTask(TaskLaunch(
        pool_id=primary.pool_id, node_id=primary.node_id, job_id=job.id, task_id=task.id,
        attempt=task.attempt, command_line=task.spec.command_line,
        environment=tuple(_environment(job, task, gang, 0)),
        max_wall_clock_s=task.max_wall_clock_s,
        user_identity=user_identity.launch_code(task.spec.user_identity),
        multi_instance=True)))


# ------------------------------------------------------------------ ending an attempt


def kill_instances(ctx: Ctx, task: TaskRecord) -> None:
    """Ask every node with a live instance of the attempt to kill it (core.attempts)."""
    for instance in task.instances or []:
        if instance.state in ("offered", "running"):
            ctx.effects.append(KillTask(pool_id=instance.pool_id, node_id=instance.node_id,
                                        job_id=task.job_id, task_id=task.id,
                                        attempt=task.attempt))


def release_gang(ctx: Ctx, task: TaskRecord) -> NodeRecord | None:
    """The attempt ended: free every instance's node, kill instances still running there,
    complete the subtasks. Returns the primary's node (if it still exists)."""
    ctx.state.running.get(task.job_id.lower(), set()).discard(task.key)
    kill_instances(ctx, task)
    primary: NodeRecord | None = None
    for instance in task.instances or []:
        node = ctx.state.nodes.get(instance.node_id.lower())
        if instance.state != "completed":
            was_offered = instance.state == "offered"
            _finish_instance(ctx, instance)
            if node is not None and task.key in node.task_keys:
                node.task_keys.remove(task.key)
                node.held_by_gang = False
                if was_offered:
                    node.offered_slots -= 1
                else:
                    node.running_tasks -= 1
                    node.running_task_slots -= 1
        if node is None:
            continue
        if instance.id == 0:
            primary = node
        node_rules.settle(ctx, node)
        if node.removing and not node.task_keys:
            ctx.effects.append(ReleaseNode(pool_id=node.pool_id, node_id=node.id))
        ctx.state.touch(node, ctx.now)
        ctx.state.pools_to_place.add(node.pool_id.lower())
    return primary


def _finish_instance(ctx: Ctx, instance: InstanceRecord) -> None:
    """Complete an instance whose attempt ended: a coordinated one succeeded (its exit code
    is its coordination command's); one still offered or running its coordination command
    was ended with the task. The primary running the application command ends with the task
    (its outcome is the task's own)."""
    if instance.end_time is None or instance.state == "running":
        instance.end_time = ctx.now
    if instance.state == "coordinated":
        instance.result = "success"
    elif not (instance.id == 0 and instance.previous_state == "coordinated"):
        instance.result = "failure"
        instance.failure_info = instance.failure_info or FailureInfoRecord(
            category="usererror", code="TaskEnded",
            message="The instance was ended with its multi-instance task.")
    _set_state(ctx, instance, "completed")


# ------------------------------------------------------------------ restore


def restore_accounting(state: ClusterState, task: TaskRecord) -> None:
    """After a restart: the nodes of an in-flight gang count its instances again."""
    for instance in task.instances or []:
        if instance.state == "completed":
            continue
        node = state.nodes.get(instance.node_id.lower())
        if node is None:
            continue
        node.task_keys.append(task.key)
        node.held_by_gang = True
        if instance.state == "offered":
            node.offered_slots += 1
        else:
            node.running_tasks += 1
            node.running_task_slots += 1
