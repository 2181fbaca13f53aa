"""Task lifecycle: creation, state changes with job counters, exits, retries, terminate,
reactivate, delete and constraint updates.

States (BatchTaskState): ``active`` waits for a slot; ``preparing`` has an attempt assigned
to a node where the job preparation task runs first (core.job_tasks); ``running`` has an
attempt on a node; ``completed`` is final unless
reactivated. Every state change goes through ``set_task_state`` so job counters stay exact.

Imports: standard library, core modules, wire models.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime

from hybatch.core import dependencies, job_manager, multi_instance, stats, user_identity
from hybatch.core import jobs as job_rules
from hybatch.core import nodes as node_rules
from hybatch.core.attempts import (
    KILL_DELETE,
    KILL_JOB_TERMINATE,
    KILL_REQUEUE,
    KILL_TERMINATE,
    kill_attempt,
)
from hybatch.core.commands import (
    AddTasks,
    DeleteTask,
    DisableJob,
    ReactivateTask,
    TerminateTask,
    UpdateTaskConstraints,
)
from hybatch.core.context import Ctx, check_precondition, seconds
from hybatch.core.effects import DeleteTaskFiles, ReleaseNode, StartTask, TaskLaunch
from hybatch.core.errors import DomainError, conflict, exists, not_found
from hybatch.core.events import TaskExited, TaskLost, TaskStarted
from hybatch.core.exit_conditions import (
    ENDED,
    PERFORM_JOB_ACTION,
    ExitDecision,
    decide,
)
from hybatch.core.exit_conditions import validate as validate_exit_conditions
from hybatch.core.job_specs import check_environment, preparation_task_id, release_task_id
from hybatch.core.records import (
    FailureInfoRecord,
    JobRecord,
    NodeRecord,
    TaskRecord,
    task_key,
)
from hybatch.core.tokens import token_lifetime
from hybatch.core.validation import check_id, check_range, unsupported
from hybatch.schema import BatchTaskConstraints, BatchTaskCreateOptions

DEFAULT_RETENTION_S = 7 * 24 * 3600.0
MAX_TASKS_PER_COLLECTION = 100



# ------------------------------------------------------------------ state and counters


def _bucket(state: str) -> str:
    return "running" if state == "preparing" else state


def set_task_state(ctx: Ctx, job: JobRecord, task: TaskRecord, new_state: str) -> None:
    """Move a task to ``new_state``, keeping the job's task and slot counters exact."""
    old = task.state
    if old == new_state:
        return
    counts = job.counts
    slots = task.required_slots
    old_b, new_b = _bucket(old), _bucket(new_state)
    if old_b != new_b:
        if old_b == "active":
            counts.active -= 1
            counts.active_slots -= slots
        elif old_b == "running":
            counts.running -= 1
            counts.running_slots -= slots
        elif old_b == "completed":
            _count_completed(job, task, -1)
        if new_b == "active":
            counts.active += 1
            counts.active_slots += slots
        elif new_b == "running":
            counts.running += 1
            counts.running_slots += slots
    task.previous_state = old
    task.previous_state_transition_time = task.state_transition_time
    task.state = new_state
    task.state_transition_time = ctx.now
    if new_b == "completed":
        _count_completed(job, task, +1)
    ctx.state.touch(task, ctx.now)
    ctx.state.save_counters(job)


def _count_completed(job: JobRecord, task: TaskRecord, sign: int) -> None:
    counts = job.counts
    slots = task.required_slots
    counts.completed += sign
    counts.completed_slots += sign * slots
    if task.result == "success":
        counts.succeeded += sign
        counts.succeeded_slots += sign * slots
    else:
        counts.failed += sign
        counts.failed_slots += sign * slots


def make_ready(ctx: Ctx, job: JobRecord, task: TaskRecord) -> None:
    """Queue an active task for placement on its job's pool (a job manager goes first)."""
    if job.spec.job_manager_task is not None and job_manager.is_manager(job, task):
        ctx.state.ready.setdefault(job.key, deque()).appendleft(task.key)
    else:
        ctx.state.ready.setdefault(job.key, deque()).append(task.key)
    if job.pool_id:
        ctx.state.pools_to_place.add(job.pool_id.lower())


# ------------------------------------------------------------------ creation


def resolve_constraints(task: TaskRecord) -> None:
    """Copy the spec's constraints into the record's resolved numeric fields."""
    c = task.spec.constraints
    task.max_wall_clock_s = seconds(c.max_wall_clock_time) if c else None
    retention = seconds(c.retention_time) if c else None
    task.retention_s = retention if retention is not None else DEFAULT_RETENTION_S
    task.max_task_retry_count = (c.max_task_retry_count or 0) if c else 0


def validate_task_spec(spec: BatchTaskCreateOptions, job: JobRecord) -> None:
    """Reject what this server cannot run faithfully, with Batch error codes."""
    check_id(spec.id)
    if not spec.command_line.strip():
        raise DomainError("InvalidPropertyValue", "The command line must not be empty.",
                          details={"PropertyName": "commandLine"})
    if spec.required_slots is not None:
        check_range("requiredSlots", spec.required_slots, 1, 256)
    if spec.constraints is not None and spec.constraints.max_task_retry_count is not None:
        check_range("constraints.maxTaskRetryCount", spec.constraints.max_task_retry_count,
                    -1, 100)
    dependencies.validate(spec, job)
    validate_exit_conditions(spec.exit_conditions, job)
    multi_instance.validate(spec)
    if spec.resource_files:
        raise unsupported("Resource files", "resourceFiles")
    if spec.output_files:
        raise unsupported("Output files", "outputFiles")
    if spec.container_settings is not None:
        raise unsupported("Container tasks", "containerSettings")
    if spec.application_package_references:
        raise unsupported("Application packages", "applicationPackageReferences")
    user_identity.validate(spec.user_identity)
    check_environment("environmentSettings", spec.environment_settings)
    prep, release = job.spec.job_preparation_task, job.spec.job_release_task
    if prep is not None and preparation_task_id(prep).lower() == spec.id.lower():
        raise conflict("TaskIdSameAsJobPreparationTask", "The task id is the id of the job's "
                       "preparation task.")
    if release is not None and release_task_id(release).lower() == spec.id.lower():
        raise conflict("TaskIdSameAsJobReleaseTask", "The task id is the id of the job's "
                       "release task.")


def add_tasks(ctx: Ctx, cmd: AddTasks) -> list[DomainError | TaskRecord]:
    """Create tasks; per task either the new record or the error (collections report each)."""
    job = ctx.state.jobs.get(cmd.job_id.lower())
    if job is None:
        raise not_found("Job", cmd.job_id)
    if job.state == "completed":
        raise conflict("JobCompleted", "The specified job is already in a completed state.")
    if job.state in ("terminating", "deleting"):
        code = "JobBeingTerminated" if job.state == "terminating" else "JobBeingDeleted"
        raise conflict(code, f"The specified job is {job.state}.")
    if len(cmd.specs) > MAX_TASKS_PER_COLLECTION:
        raise DomainError(
            "InvalidPropertyValue",
            f"A task collection may hold at most {MAX_TASKS_PER_COLLECTION} tasks.",
            details={"PropertyName": "value", "Reason": "TooManyTasks"},
        )
    results: list[DomainError | TaskRecord] = []
    for spec in cmd.specs:
        try:
            results.append(_add_one(ctx, job, spec))
        except DomainError as error:
            if cmd.single:
                raise
            results.append(error)
    return results


def create_task(ctx: Ctx, job: JobRecord, spec: BatchTaskCreateOptions) -> TaskRecord:
    """Add one task to ``job`` (a job's manager task at its creation: core.job_tasks)."""
    return _add_one(ctx, job, spec)


def _add_one(ctx: Ctx, job: JobRecord, spec: BatchTaskCreateOptions) -> TaskRecord:
    validate_task_spec(spec, job)
    key = task_key(job.id, spec.id)
    if key in ctx.state.tasks:
        raise exists("Task", spec.id)
    job.next_task_seq += 1
    task = TaskRecord(job_id=job.id, id=spec.id, spec=spec, creation_time=ctx.now,
                      seq=job.next_task_seq, state="active", state_transition_time=ctx.now)
    resolve_constraints(task)
    ctx.state.add_task(task, ctx.now)
    job.counts.active += 1
    job.counts.active_slots += task.required_slots
    ctx.state.save_counters(job)
    if dependencies.on_added(ctx, job, task, DEPENDENCY_HOOKS):
        make_ready(ctx, job, task)
    return task


# ------------------------------------------------------------------ running


def offer_to_node(ctx: Ctx, job: JobRecord, task: TaskRecord, node: NodeRecord, *,
                  send: bool = True) -> None:
    """Offer one attempt of ``task`` to ``node``: the node queues it and starts it when it has
    the slots; the task stays active until the node reports it started. ``send=False``
    assigns the attempt without telling the node yet (core.job_tasks: the job's preparation
    task runs there first; ``send_offer`` follows)."""
    task.attempt += 1
    task.offered = True
    task.node_id = node.id
    task.pool_id = node.pool_id
    task.end_time = None
    task.exit_code = None
    task.kill_requested = None
    ctx.state.touch(task, ctx.now)
    ctx.state.running.setdefault(job.key, set()).add(task.key)
    node.offered_slots += task.required_slots
    node.task_keys.append(task.key)
    ctx.state.touch(node, ctx.now)
    if send:
        send_offer(ctx, job, task)


def send_offer(ctx: Ctx, job: JobRecord, task: TaskRecord) -> None:
    """Tell the task's node about its assigned attempt."""
    env: list[tuple[str, str]] = []
    for setting in job.spec.common_environment_settings or []:
        env.append((setting.name, setting.value or ""))
    for setting in task.spec.environment_settings or []:
        env.append((setting.name, setting.value or ""))
    token = task.spec.authentication_token_settings
    if token is not None and token.access and ctx.tokens is not None:
        expires = ctx.now + token_lifetime(task.max_wall_clock_s)
        env.append(("AZ_BATCH_AUTHENTICATION_TOKEN",
                    ctx.tokens.mint(job.id, task.id, expires,
                                    tuple(str(a) for a in token.access))))
    prep = job.spec.job_preparation_task
    ctx.effects.append(StartTask(TaskLaunch(
        pool_id=task.pool_id or "", node_id=task.node_id or "", job_id=job.id, task_id=task.id,
        attempt=task.attempt, command_line=task.spec.command_line, environment=tuple(env),
        max_wall_clock_s=task.max_wall_clock_s, required_slots=task.required_slots,
        user_identity=user_identity.launch_code(task.spec.user_identity),
        job_preparation_task_id=preparation_task_id(prep) if prep is not None else None,
    )))


def on_task_started(ctx: Ctx, event: TaskStarted) -> None:
    """The node started an offered attempt: the task is running from the node's clock."""
    task = ctx.state.tasks.get(task_key(event.job_id, event.task_id))
    if task is None or not task.offered or task.attempt != event.attempt:
        return
    _mark_started(ctx, ctx.state.jobs[task.key[0]], task, event.start_time)


def _mark_started(ctx: Ctx, job: JobRecord, task: TaskRecord, start_time: datetime) -> None:
    node = ctx.state.nodes.get((task.node_id or "").lower())
    task.offered = False
    task.start_time = start_time
    stats.attempt_started(job, task, start_time)
    if node is not None:
        node.offered_slots -= task.required_slots
        node.running_tasks += 1
        node.running_task_slots += task.required_slots
        node.total_tasks_run += 1
        if node.state in ("idle", "offline"):
            node.state = "running"
            node.state_transition_time = ctx.now
        ctx.state.touch(node, ctx.now)
    set_task_state(ctx, job, task, "running")


def _release_slot(ctx: Ctx, task: TaskRecord) -> NodeRecord | None:
    """Free the task's slots on its node; returns the node (if it still exists)."""
    if task.instances is not None:  # a multi-instance task holds several nodes
        return multi_instance.release_gang(ctx, task)
    ctx.state.running.get(task.job_id.lower(), set()).discard(task.key)
    node = ctx.state.nodes.get((task.node_id or "").lower())
    if node is None:
        return None
    if task.key in node.task_keys:
        node.task_keys.remove(task.key)
        if task.offered:
            node.offered_slots -= task.required_slots
        else:
            node.running_tasks -= 1
            node.running_task_slots -= task.required_slots
    node_rules.settle(ctx, node)  # idle/offline, or a pending reboot/reimage starts
    if node.removing and not node.task_keys:
        ctx.effects.append(ReleaseNode(pool_id=node.pool_id, node_id=node.id))
    ctx.state.touch(node, ctx.now)
    ctx.state.pools_to_place.add(node.pool_id.lower())
    return node


def on_task_exited(ctx: Ctx, event: TaskExited) -> None:
    """Apply one attempt's end: retry, requeue or complete, then job-level consequences."""
    key = task_key(event.job_id, event.task_id)
    task = ctx.state.tasks.get(key)
    if task is None or not task.in_flight or task.attempt != event.attempt:
        return
    job = ctx.state.jobs[key[0]]
    if task.offered and event.start_time is not None:
        # a short attempt: the node reports its start only with its exit
        _mark_started(ctx, job, task, event.start_time)
    if not task.offered and event.start_time is not None:
        _learn_run_time(job, (event.end_time - event.start_time).total_seconds())
    never_started = task.offered
    if task.state in ("running", "preparing"):
        stats.attempt_ended(ctx, job, task, event.end_time, event.usage)
    node = _release_slot(ctx, task)
    task.offered = False
    task.end_time = event.end_time
    task.exit_code = event.exit_code
    reason = task.kill_requested
    task.kill_requested = None
    if reason == KILL_REQUEUE:
        if not never_started:  # an offer taken back before it ran was never requeued
            task.requeue_count += 1
            task.last_requeue_time = ctx.now
        _back_to_active(ctx, job, task)
        return
    if reason in (KILL_TERMINATE, KILL_JOB_TERMINATE):
        _complete(ctx, job, task, "failure", FailureInfoRecord(
            category="usererror", code="TaskEnded",
            message="The task was terminated" + (" with its job." if reason ==
                                                 KILL_JOB_TERMINATE else "."),
        ))
        return
    conditions = task.spec.exit_conditions
    if event.failure is not None and event.exit_code is None:
        _complete(ctx, job, task, "failure", event.failure,
                  decide(conditions, None, failed=True, pre_processing=True))
        return
    if event.exit_code == 0 and not event.timed_out:
        if node is not None:
            node.total_tasks_succeeded += 1
        _complete(ctx, job, task, "success", None, decide(conditions, 0, failed=False))
        return
    limit = task.max_task_retry_count
    if limit == -1 or task.retry_count < limit:
        task.retry_count += 1
        task.last_retry_time = ctx.now
        stats.task_retried(job)
        _back_to_active(ctx, job, task)
        return
    failure = event.failure or FailureInfoRecord(
        category="usererror", code="FailureExitCode",
        message="The task process exited with an unexpected exit code",
        details=[("Message", f"The task process exited with an unexpected exit code: "
                             f"{event.exit_code}")],
    )
    _complete(ctx, job, task, "failure", failure,
              decide(conditions, event.exit_code, failed=True))


def _learn_run_time(job: JobRecord, seconds: float) -> None:
    """Exponential moving average of attempt run times (weight 0.2 for the newest)."""
    seconds = max(seconds, 0.0)
    previous = job.mean_task_seconds
    job.mean_task_seconds = seconds if previous is None else 0.8 * previous + 0.2 * seconds


def on_task_lost(ctx: Ctx, event: TaskLost) -> None:
    task = ctx.state.tasks.get(task_key(event.job_id, event.task_id))
    if task is not None and task.attempt == event.attempt:
        requeue_lost(ctx, task)


def requeue_lost(ctx: Ctx, task: TaskRecord) -> None:
    """The task's node is gone: no exit will come. Requeue, or finish a pending kill."""
    if not task.in_flight:
        return
    job = ctx.state.jobs[task.job_id.lower()]
    if task.state in ("running", "preparing"):
        stats.attempt_ended(ctx, job, task, ctx.now, None)
    _release_slot(ctx, task)
    task.offered = False
    reason = task.kill_requested
    task.kill_requested = None
    task.end_time = ctx.now
    if reason in (KILL_TERMINATE, KILL_JOB_TERMINATE):
        _complete(ctx, job, task, "failure", FailureInfoRecord(
            category="usererror", code="TaskEnded", message="The task was terminated."))
        return
    task.requeue_count += 1
    task.last_requeue_time = ctx.now
    _back_to_active(ctx, job, task)


def _unqueue(ctx: Ctx, job: JobRecord, task: TaskRecord) -> None:
    """Take an active task out of its job's queue; the tasks behind it may now fit."""
    ready = ctx.state.ready.get(job.key)
    if ready is not None and task.key in ready:
        ready.remove(task.key)  # a reactivate must not find it queued twice
    if job.pool_id:
        ctx.state.pools_to_place.add(job.pool_id.lower())


def _back_to_active(ctx: Ctx, job: JobRecord, task: TaskRecord) -> None:
    set_task_state(ctx, job, task, "active")
    if job.state == "active":
        make_ready(ctx, job, task)
    else:
        job_rules.on_task_completed(ctx, job)  # a terminating/deleting job may now settle


def _complete(ctx: Ctx, job: JobRecord, task: TaskRecord, result: str,
              failure: FailureInfoRecord | None, decision: ExitDecision = ENDED) -> None:
    """Complete a task. ``decision``: the ExitOptions that apply (core.exit_conditions);
    the default, for terminated tasks, blocks dependents and takes no job action."""
    task.result = result
    task.failure_info = failure
    if task.end_time is None:
        task.end_time = ctx.now
    stats.task_completed(job, result)
    set_task_state(ctx, job, task, "completed")
    dependencies.on_completed(ctx, job, task, decision.dependency_action, DEPENDENCY_HOOKS)
    _job_action(ctx, job, decision)
    if job.spec.job_manager_task is not None:
        job_manager.on_completed(ctx, job, task)
    job_rules.on_task_completed(ctx, job)


def _job_action(ctx: Ctx, job: JobRecord, decision: ExitDecision) -> None:
    """The ExitOptions jobAction, performed only when the job's onTaskFailure is
    performexitoptionsjobaction: ``disable`` disables the job (running tasks requeued),
    ``terminate`` terminates it with terminateReason ``TaskFailed``."""
    if decision.job_action == "none":
        return
    if str(job.spec.on_task_failure or "noaction") != PERFORM_JOB_ACTION:
        return
    if decision.job_action == "disable":
        if job.state == "active":
            job_rules.disable_job(ctx, DisableJob(job.id, "requeue"))
    elif job.state in ("active", "disabling", "disabled"):
        job_rules.begin_termination(ctx, job, "TaskFailed")


def _fail_dependent(ctx: Ctx, job: JobRecord, task: TaskRecord,
                    failure: FailureInfoRecord) -> None:
    """A waiting task whose parent blocked, in a job that opted in to failing those."""
    _complete(ctx, job, task, "failure", failure)


DEPENDENCY_HOOKS = dependencies.Hooks(release=make_ready, fail=_fail_dependent)


def files_expired(task: TaskRecord, now: datetime) -> bool:
    """retentionTime has passed since the task completed: its directory may be deleted
    (checked lazily, from stored timestamps, when the files are asked for)."""
    if task.state != "completed" or task.end_time is None:
        return False
    return (now - task.end_time).total_seconds() > task.retention_s


# ------------------------------------------------------------------ commands


def _get(ctx: Ctx, job_id: str, task_id: str) -> tuple[JobRecord, TaskRecord]:
    job = ctx.state.jobs.get(job_id.lower())
    if job is None:
        raise not_found("Job", job_id)
    task = ctx.state.tasks.get(task_key(job_id, task_id))
    if task is None:
        raise not_found("Task", task_id)
    return job, task


def terminate_task(ctx: Ctx, cmd: TerminateTask) -> TaskRecord:
    job, task = _get(ctx, cmd.job_id, cmd.task_id)
    check_precondition(task.etag, task.last_modified, cmd.precondition)
    if task.state == "completed":
        raise conflict("TaskCompleted", "The specified task is already completed.")
    if task.in_flight:
        kill_attempt(ctx, task, KILL_TERMINATE)  # its exit report completes it
    else:
        _unqueue(ctx, job, task)
        _complete(ctx, job, task, "failure", FailureInfoRecord(
            category="usererror", code="TaskEnded", message="The task was terminated."))
    return task


def reactivate_task(ctx: Ctx, cmd: ReactivateTask) -> TaskRecord:
    job, task = _get(ctx, cmd.job_id, cmd.task_id)
    check_precondition(task.etag, task.last_modified, cmd.precondition)
    if task.state != "completed":
        raise conflict("TaskNotCompleted", "The specified task is not completed.")
    if task.result == "success":
        raise conflict("TaskSucceeded", "The specified task completed successfully and "
                       "cannot be reactivated.")
    if job.state in ("completed", "terminating", "deleting"):
        raise conflict("JobCompleted" if job.state == "completed" else "JobNotActive",
                       "The task's job no longer accepts work.")
    dependencies.on_reactivated(ctx, job, task, DEPENDENCY_HOOKS)
    task.retry_count = 0
    task.requeue_count = 0
    task.exit_code = None
    task.failure_info = None
    task.start_time = None
    task.end_time = None
    set_task_state(ctx, job, task, "active")
    task.result = None
    if dependencies.on_reactivated_task(ctx, job, task, DEPENDENCY_HOOKS) and (
            job.state == "active"):
        make_ready(ctx, job, task)
    return task


def delete_task(ctx: Ctx, cmd: DeleteTask) -> None:
    job, task = _get(ctx, cmd.job_id, cmd.task_id)
    check_precondition(task.etag, task.last_modified, cmd.precondition)
    remove_task(ctx, job, task)


def remove_task(ctx: Ctx, job: JobRecord, task: TaskRecord) -> None:
    """Forget a task: kill a running attempt, drop counters and its files."""
    dependencies.on_removed(ctx, job, task)
    counts = job.counts
    slots = task.required_slots
    bucket = _bucket(task.state)
    if bucket == "running":
        stats.attempt_ended(ctx, job, task, ctx.now, None)
    if task.in_flight:
        kill_attempt(ctx, task, KILL_DELETE)
        _release_slot(ctx, task)
    if bucket == "active":
        counts.active -= 1
        counts.active_slots -= slots
    elif bucket == "running":
        counts.running -= 1
        counts.running_slots -= slots
    else:
        _count_completed(job, task, -1)
    if task.node_id is not None:
        ctx.effects.append(DeleteTaskFiles(pool_id=task.pool_id or "", node_id=task.node_id,
                                           job_id=task.job_id, task_id=task.id))
    if bucket == "active" and not task.offered:
        _unqueue(ctx, job, task)
    ctx.state.drop_task(task)
    ctx.state.save_counters(job)
    job_rules.on_task_completed(ctx, job)


def update_constraints(ctx: Ctx, cmd: UpdateTaskConstraints) -> TaskRecord:
    _, task = _get(ctx, cmd.job_id, cmd.task_id)
    check_precondition(task.etag, task.last_modified, cmd.precondition)
    if task.state == "completed":
        raise conflict("TaskCompleted", "The specified task is already completed.")
    if cmd.max_task_retry_count is not None:
        check_range("constraints.maxTaskRetryCount", cmd.max_task_retry_count, -1, 100)
    constraints = task.spec.constraints
    update = {
        "max_wall_clock_time": cmd.max_wall_clock_time,
        "retention_time": cmd.retention_time,
        "max_task_retry_count": cmd.max_task_retry_count,
    }
    if constraints is None:
        constraints = BatchTaskConstraints()
    task.spec = task.spec.model_copy(update={"constraints": constraints.model_copy(
        update={k: v for k, v in update.items() if v is not None})})
    resolve_constraints(task)
    ctx.state.touch(task, ctx.now)
    return task
