"""Task dependencies: when a task with ``dependsOn`` may run.

A job opts in with ``usesTaskDependencies``. A task names its parents by id
(``dependsOn.taskIds``) and by inclusive integer ranges (``dependsOn.taskIdRanges``). It stays
``active`` but unscheduled (``TaskRecord.waiting_on_parents``) until every parent has
*satisfied* it: completed with the ExitOptions ``dependencyAction`` ``satisfy`` (the default
for exit code 0; see core.exit_conditions). Then it is released to its job's ready queue in
the same core call as the parent's completion, so the hop costs no timer and no extra turn.

Rules (Azure's, with the choices hybatch makes where Azure documents none):

* An explicit parent that does not exist (yet) is unsatisfied: parents may be added after
  their dependents. Ids compare case-insensitively; a repeated id counts once; a task may not
  name itself.
* A range ``[start, end]`` requires *every integer value* in it: the value ``v`` is satisfied
  once a task whose id denotes ``v`` (``7``, ``07``: leading zeros are ignored, non-integer
  ids never match) has completed with satisfy. Values no task holds yet are waited for, so
  the order in which parents and dependents are submitted never matters (the 15.x SDK sends
  ``create_tasks`` chunks last-first). A range never waits for the task itself.
* A parent that completed with ``block`` leaves its dependents waiting (Batch does not fail
  them) until it is reactivated and completes with satisfy. Reactivating a parent that had
  satisfied makes the tasks still waiting on it wait for its new completion. Deleting a parent
  does not take back a satisfaction its waiting dependents already had; a deleted parent that
  had not satisfied them leaves them waiting for a task of that id.
* Beyond Azure: job metadata ``hybatch.failBlockedDependents`` = ``true`` (any case) fails,
  instead of leaving active, every waiting task with a parent that blocked, with failureInfo
  ``usererror`` / ``DependencyFailed`` naming the parent; those failures block in turn, so a
  whole subtree fails at once. It applies when a parent blocks, when a task is added under a
  blocked parent, and when the metadata is set on a job that already has blocked tasks.

Completed tasks are not in memory (ADR 0003). What readiness needs of them is kept small and
stored with the job (``JobRecord.dependency_book``): explicit ids named by waiting tasks that
are absent, blocked or deleted after satisfying; and the integer values satisfied or blocked
as runs. A task's own completion records its ``dependency_action``; the writer loads the
completed explicit parents a new task names before it is added (``commands.task_targets``).

The in-memory index (core.dependency_index) counts, per waiting task, the requirements not
yet met; a parent's change adjusts the counters of the tasks watching its id and of those
whose ranges hold its value, found in O(33) block lookups whatever the ranges' widths. After
a restart :func:`rebuild` recomputes the counters from the records; :func:`problems` checks
that the counters equal such a recomputation (used by tests).

Imports: standard library, core modules, wire models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hybatch.core.cluster import ClusterState
from hybatch.core.commands import ReactivateTask
from hybatch.core.context import Ctx
from hybatch.core.dependency_index import (
    INT32_MAX,
    INT32_MIN,
    JobDependencies,
    Key,
    int_value,
    runs_add,
    runs_count,
    runs_first_missing,
    runs_has,
    runs_remove,
    runs_spans,
)
from hybatch.core.errors import DomainError, invalid_property
from hybatch.core.records import DependencyBookRecord, FailureInfoRecord, JobRecord, TaskRecord
from hybatch.core.validation import check_id
from hybatch.schema import BatchTaskCreateOptions

MAX_TASK_IDS_CHARS = 64_000
"""Batch's limit on the combined length of ``dependsOn.taskIds``."""
MAX_TASK_ID_RANGES = 100
"""hybatch's limit on ``dependsOn.taskIdRanges`` per task (Batch's own is not documented)."""
FAIL_BLOCKED_KEY = "hybatch.failBlockedDependents"
"""Job metadata name of the opt-in that fails blocked dependents (value ``true``)."""
SATISFY = "satisfy"
BLOCK = "block"


@dataclass(frozen=True, slots=True)
class Hooks:
    """What the task rules do for dependencies: queue a released task; fail a blocked one
    (completing it, which reports back through :func:`on_completed`)."""

    release: Callable[[Ctx, JobRecord, TaskRecord], None]
    fail: Callable[[Ctx, JobRecord, TaskRecord, FailureInfoRecord], None]


# ------------------------------------------------------------------ reading a spec


def uses_dependencies(job: JobRecord) -> bool:
    return bool(job.spec.uses_task_dependencies)


def explicit_parents(spec: BatchTaskCreateOptions) -> list[str]:
    """The lower-cased parent ids of ``dependsOn.taskIds``, each once, in order."""
    deps = spec.depends_on
    if deps is None or not deps.task_ids:
        return []
    return list(dict.fromkeys(i.lower() for i in deps.task_ids))


def parent_ranges(spec: BatchTaskCreateOptions) -> list[tuple[int, int]]:
    """``dependsOn.taskIdRanges`` as (start, end); an empty range (start after end) selects
    nothing and is left out."""
    deps = spec.depends_on
    if deps is None or not deps.task_id_ranges:
        return []
    return [(r.start, r.end) for r in deps.task_id_ranges if r.start <= r.end]


def _has_parents(spec: BatchTaskCreateOptions) -> bool:
    deps = spec.depends_on
    return deps is not None and bool(deps.task_ids or deps.task_id_ranges)


def fails_blocked(job: JobRecord) -> bool:
    """The job opted in to failing blocked dependents (metadata, value ``true``)."""
    for item in job.spec.metadata or ():
        if item.name.lower() == FAIL_BLOCKED_KEY.lower():
            return (item.value or "").strip().lower() == "true"
    return False


# ------------------------------------------------------------------ validation


def validate(spec: BatchTaskCreateOptions, job: JobRecord) -> None:
    """Batch's errors for ``dependsOn``: the job must use task dependencies
    (TaskDependenciesNotSpecifiedOnJob), ids are at most 64000 characters together
    (TaskDependencyListTooLong), ranges are limited (TaskDependencyRangesTooLong); ids must
    be valid task ids other than the task's own, range bounds 32-bit integers."""
    deps = spec.depends_on
    if deps is None or not _has_parents(spec):
        return
    if not uses_dependencies(job):
        raise DomainError(
            "TaskDependenciesNotSpecifiedOnJob",
            "The task depends on other tasks, but its job does not use task dependencies "
            "(usesTaskDependencies).",
            details={"PropertyName": "dependsOn", "JobId": job.id})
    ids = deps.task_ids or []
    if sum(len(i) for i in ids) > MAX_TASK_IDS_CHARS:
        raise DomainError(
            "TaskDependencyListTooLong",
            f"The task ids in dependsOn.taskIds exceed {MAX_TASK_IDS_CHARS} characters "
            "together; use taskIdRanges.",
            details={"PropertyName": "dependsOn.taskIds"})
    for parent in ids:
        check_id(parent, "dependsOn.taskIds")
        if parent.lower() == spec.id.lower():
            raise invalid_property("dependsOn.taskIds", parent, "A task cannot depend on "
                                   "itself.")
    ranges = deps.task_id_ranges or []
    if len(ranges) > MAX_TASK_ID_RANGES:
        raise DomainError(
            "TaskDependencyRangesTooLong",
            f"dependsOn.taskIdRanges holds more than {MAX_TASK_ID_RANGES} ranges.",
            details={"PropertyName": "dependsOn.taskIdRanges"})
    for i, span in enumerate(ranges):
        for name, value in (("start", span.start), ("end", span.end)):
            if not INT32_MIN <= value <= INT32_MAX:
                raise invalid_property(f"dependsOn.taskIdRanges[{i}].{name}", value,
                                       "The value must be a 32-bit integer.")


# ------------------------------------------------------------------ state access


def _book(job: JobRecord) -> DependencyBookRecord:
    if job.dependency_book is None:
        job.dependency_book = DependencyBookRecord()
    return job.dependency_book


def _index(state: ClusterState, job: JobRecord) -> JobDependencies:
    found = state.dependencies.get(job.key)
    if found is None:
        found = state.dependencies[job.key] = JobDependencies()
    return found


def _unmet_range_values(book: DependencyBookRecord, low: int, high: int,
                        own: int | None) -> int:
    """Values in ``[low, high]`` no task has satisfied yet (not counting the task's own)."""
    unmet = (high - low + 1) - runs_count(book.satisfied_runs, low, high)
    if own is not None and low <= own <= high and not runs_has(book.satisfied_runs, own):
        unmet -= 1
    return unmet


def _explicit_pending(state: ClusterState, job: JobRecord, book: DependencyBookRecord,
                      parent_id: str) -> bool:
    """Whether an explicit parent leaves its dependents waiting, from the records alone:
    in memory and not completed with satisfy, or out of memory and noted absent/blocked."""
    parent = state.tasks.get((job.key, parent_id))
    if parent is not None:
        return parent.state != "completed" or parent.dependency_action != SATISFY
    return parent_id in book.absent or parent_id in book.blocked


def _recount(state: ClusterState, job: JobRecord, book: DependencyBookRecord,
             task: TaskRecord) -> int:
    pending = sum(1 for p in explicit_parents(task.spec)
                  if _explicit_pending(state, job, book, p))
    own = int_value(task.id)
    for low, high in parent_ranges(task.spec):
        pending += _unmet_range_values(book, low, high, own)
    return pending


def _register(idx: JobDependencies, task: TaskRecord, pending: int) -> None:
    key = task.key
    idx.waiting[key] = pending
    task.waiting_on_parents = True
    for parent in explicit_parents(task.spec):
        idx.watchers.setdefault(parent, set()).add(key)
    ranges = parent_ranges(task.spec)
    if ranges:
        idx.add_ranges(key, ranges)
        own = int_value(task.id)
        if own is not None:
            idx.own_value[key] = own


def _unregister(ctx: Ctx, job: JobRecord, idx: JobDependencies, task: TaskRecord) -> None:
    """Forget a waiting task: released, completed or deleted while waiting."""
    key = task.key
    idx.waiting.pop(key, None)
    task.waiting_on_parents = False
    book = _book(job)
    for parent in explicit_parents(task.spec):
        watchers = idx.watchers.get(parent)
        if watchers is None:
            continue
        watchers.discard(key)
        if not watchers:
            del idx.watchers[parent]
            book.absent.pop(parent, None)
            book.blocked.pop(parent, None)
            book.ghosts.pop(parent, None)
    ranges = parent_ranges(task.spec)
    if ranges:
        idx.remove_ranges(key, ranges)
        idx.own_value.pop(key, None)
    ctx.state.save_counters(job)


# ------------------------------------------------------------------ counters


def _adjust(ctx: Ctx, job: JobRecord, idx: JobDependencies, key: Key, delta: int,
            hooks: Hooks) -> None:
    pending = idx.waiting.get(key)
    if pending is None:
        return
    pending += delta
    idx.waiting[key] = pending
    if pending > 0:
        return
    task = ctx.state.tasks[key]
    _unregister(ctx, job, idx, task)
    ctx.state.save_quietly(task)  # the release survives a restart; no new eTag
    hooks.release(ctx, job, task)


def _explicit_change(ctx: Ctx, job: JobRecord, idx: JobDependencies, parent_id: str,
                     delta: int, hooks: Hooks) -> None:
    for key in list(idx.watchers.get(parent_id, ())):
        _adjust(ctx, job, idx, key, delta, hooks)


def _value_change(ctx: Ctx, job: JobRecord, idx: JobDependencies, value: int, delta: int,
                  hooks: Hooks) -> None:
    if not idx.stab:
        return  # no waiting task has a range
    for key, count in idx.covering(value):
        _adjust(ctx, job, idx, key, delta * count, hooks)


# ------------------------------------------------------------------ events from task rules


def on_added(ctx: Ctx, job: JobRecord, task: TaskRecord, hooks: Hooks) -> bool:
    """A task was created. As a parent: waiting tasks naming its id now wait for it. As a
    dependent: count its unsatisfied parents. True when it may be queued now."""
    if not uses_dependencies(job):
        return True
    idx = _index(ctx.state, job)
    book = _book(job)
    name = task.id.lower()
    changed = book.absent.pop(name, None) is not None
    if book.ghosts.pop(name, None) is not None:
        changed = True
        _explicit_change(ctx, job, idx, name, +1, hooks)
    if not _has_parents(task.spec):
        if changed:
            ctx.state.save_counters(job)
        return True
    return _gate(ctx, job, idx, book, task, hooks)


def _gate(ctx: Ctx, job: JobRecord, idx: JobDependencies, book: DependencyBookRecord,
          task: TaskRecord, hooks: Hooks) -> bool:
    """Count a task's unmet parents (stored explicit parents were loaded before the
    command); register it as waiting unless there are none. True when it may be queued."""
    pending = 0
    blocked_by: str | None = None
    for parent_id in explicit_parents(task.spec):
        parent = ctx.state.tasks.get((job.key, parent_id))
        if parent is None:  # stored parents were loaded before the command (task_targets)
            if parent_id not in book.ghosts:
                pending += 1
                book.absent[parent_id] = 1
        elif parent.state != "completed":
            pending += 1
        elif parent.dependency_action != SATISFY:
            pending += 1
            book.blocked[parent_id] = 1
            blocked_by = blocked_by or parent.id
    own = int_value(task.id)
    for low, high in parent_ranges(task.spec):
        pending += _unmet_range_values(book, low, high, own)
        if blocked_by is None:
            blocked_by = _blocked_value_in(book, low, high, own)
    ctx.state.save_counters(job)
    if pending <= 0:
        return True
    _register(idx, task, pending)
    if blocked_by is not None and fails_blocked(job):
        idx.failures.append((task.key, blocked_by))
        _drain(ctx, job, idx, hooks)
    return False


def _blocked_value_in(book: DependencyBookRecord, low: int, high: int,
                      own: int | None) -> str | None:
    """An integer value in ``[low, high]`` held by a blocked parent and satisfied by none."""
    for first, last in runs_spans(book.blocked_runs, low, high):
        value = runs_first_missing(book.satisfied_runs, first, last)
        while value is not None and value == own:
            value = runs_first_missing(book.satisfied_runs, value + 1, last)
        if value is not None:
            return str(value)
    return None


def on_completed(ctx: Ctx, job: JobRecord, task: TaskRecord, action: str,
                 hooks: Hooks) -> None:
    """``task`` completed with dependencyAction ``action``: release the tasks it was the
    last unsatisfied parent of, or (opt-in) fail those it blocks."""
    if not uses_dependencies(job):
        return
    idx = _index(ctx.state, job)
    book = _book(job)
    if task.key in idx.waiting:
        _unregister(ctx, job, idx, task)
    task.dependency_action = action
    name = task.id.lower()
    value = int_value(task.id)
    if action == SATISFY:
        _explicit_change(ctx, job, idx, name, -1, hooks)
        if value is not None and runs_add(book.satisfied_runs, book.satisfied_extra, value):
            _value_change(ctx, job, idx, value, -1, hooks)
    else:
        if name in idx.watchers:
            book.blocked[name] = 1
        if value is not None:
            runs_add(book.blocked_runs, book.blocked_extra, value)
        if fails_blocked(job):
            for key in sorted(idx.watchers.get(name, ())):
                idx.failures.append((key, task.id))
            if value is not None and not runs_has(book.satisfied_runs, value):
                for key, _ in sorted(idx.covering(value)):
                    idx.failures.append((key, task.id))
    ctx.state.save_counters(job)
    _drain(ctx, job, idx, hooks)


def on_reactivated(ctx: Ctx, job: JobRecord, task: TaskRecord, hooks: Hooks) -> None:
    """A completed task is about to go back to active. As a parent: if it had satisfied, the
    tasks still waiting on it wait for its next completion; if it had blocked, it no longer
    counts as blocked. (Its own parents are checked by :func:`on_reactivated_task` once it
    is active.)"""
    if not uses_dependencies(job):
        return
    idx = _index(ctx.state, job)
    book = _book(job)
    name = task.id.lower()
    value = int_value(task.id)
    if task.dependency_action == SATISFY:
        _explicit_change(ctx, job, idx, name, +1, hooks)
        if value is not None and runs_remove(book.satisfied_runs, book.satisfied_extra, value):
            _value_change(ctx, job, idx, value, +1, hooks)
    elif task.dependency_action == BLOCK:
        book.blocked.pop(name, None)
        if value is not None:
            runs_remove(book.blocked_runs, book.blocked_extra, value)
    task.dependency_action = None
    ctx.state.save_counters(job)


def on_reactivated_task(ctx: Ctx, job: JobRecord, task: TaskRecord, hooks: Hooks) -> bool:
    """A reactivated task (now active) waits for its parents again, as when it was added:
    one that completed while waiting (terminated) must not run before them, and one that ran
    waits for a parent that has been reactivated meanwhile. True when it may be queued."""
    if not uses_dependencies(job) or not _has_parents(task.spec):
        return True
    return _gate(ctx, job, _index(ctx.state, job), _book(job), task, hooks)


def reactivation_targets(command: object, state: ClusterState) -> list[tuple[str, str]]:
    """Stored tasks to load before a command, once its own targets are loaded: the explicit
    parents of a task being reactivated (it waits for them again)."""
    if not isinstance(command, ReactivateTask):
        return []
    task = state.tasks.get((command.job_id.lower(), command.task_id.lower()))
    if task is None or task.spec.depends_on is None or not task.spec.depends_on.task_ids:
        return []
    return [(command.job_id, parent) for parent in task.spec.depends_on.task_ids]


def on_removed(ctx: Ctx, job: JobRecord, task: TaskRecord) -> None:
    """A task is deleted: as a waiting task it is forgotten; as a parent, tasks waiting on its
    id keep what it gave them (a satisfaction stays, see the module rules)."""
    if not uses_dependencies(job):
        return
    idx = _index(ctx.state, job)
    book = _book(job)
    if task.key in idx.waiting:
        _unregister(ctx, job, idx, task)
    name = task.id.lower()
    watched = name in idx.watchers
    if task.state == "completed" and task.dependency_action == SATISFY:
        if watched:
            book.ghosts[name] = 1
    else:
        if task.state == "completed":
            book.blocked.pop(name, None)
            value = int_value(task.id)
            if value is not None:
                runs_remove(book.blocked_runs, book.blocked_extra, value)
        if watched:
            book.absent[name] = 1
    ctx.state.save_counters(job)


def fail_blocked(ctx: Ctx, job: JobRecord, hooks: Hooks) -> None:
    """After a job update: with the opt-in set, fail every waiting task that has a parent
    that blocked."""
    if not uses_dependencies(job) or not fails_blocked(job):
        return
    idx = _index(ctx.state, job)
    book = _book(job)
    for key in sorted(idx.waiting):
        task = ctx.state.tasks.get(key)
        if task is None:
            continue
        parent = _blocking_parent(ctx.state, job, book, task)
        if parent is not None:
            idx.failures.append((key, parent))
    _drain(ctx, job, idx, hooks)


def _blocking_parent(state: ClusterState, job: JobRecord, book: DependencyBookRecord,
                     task: TaskRecord) -> str | None:
    for parent_id in explicit_parents(task.spec):
        parent = state.tasks.get((job.key, parent_id))
        if parent is not None:
            if parent.state == "completed" and parent.dependency_action == BLOCK:
                return parent.id
        elif parent_id in book.blocked:
            return parent_id
    own = int_value(task.id)
    for low, high in parent_ranges(task.spec):
        found = _blocked_value_in(book, low, high, own)
        if found is not None:
            return found
    return None


def _drain(ctx: Ctx, job: JobRecord, idx: JobDependencies, hooks: Hooks) -> None:
    """Fail the queued blocked tasks. Failing one completes it, which queues its own waiting
    dependents here: a loop, not a recursion, however deep the subtree."""
    if idx.draining:
        return
    idx.draining = True
    try:
        while idx.failures:
            key, parent = idx.failures.popleft()
            task = ctx.state.tasks.get(key)
            if task is None or key not in idx.waiting or task.state != "active":
                continue
            hooks.fail(ctx, job, task, FailureInfoRecord(
                category="usererror", code="DependencyFailed",
                message=f"Task {parent}, which this task depends on, completed with "
                        f"dependencyAction block; the job's metadata sets "
                        f"{FAIL_BLOCKED_KEY}=true.",
                details=[("ParentTaskId", parent)],
            ))
    finally:
        idx.draining = False


# ------------------------------------------------------------------ start-up and checks


def rebuild(state: ClusterState) -> None:
    """After loading the records at start-up: recount every waiting task and take it out of
    its job's ready queue (one pass over the tasks in memory)."""
    state.dependencies = {}
    waiting: dict[str, set[Key]] = {}
    for task in state.tasks.values():
        if not task.waiting_on_parents:
            continue
        job = state.jobs.get(task.key[0])
        if job is None or not uses_dependencies(job) or task.state != "active":
            task.waiting_on_parents = False
            continue
        pending = _recount(state, job, _book(job), task)
        if pending > 0:
            _register(_index(state, job), task, pending)
            waiting.setdefault(job.key, set()).add(task.key)
        else:
            task.waiting_on_parents = False
    for job_key, keys in waiting.items():
        ready = state.ready.get(job_key)
        if ready:
            kept = [k for k in ready if k not in keys]
            ready.clear()
            ready.extend(kept)


def problems(state: ClusterState) -> list[str]:
    """Inconsistencies between the index and the records (empty when consistent): every
    waiting task's counter equals a recount, no task waits with nothing unmet, the flag and
    the index agree, and the index holds no stale entries."""
    found: list[str] = []
    for job in state.jobs.values():
        idx = state.dependencies.get(job.key)
        flagged = {t.key for t in state.tasks_of(job.key) if t.waiting_on_parents}
        if not uses_dependencies(job):
            if flagged or (idx is not None and idx.waiting):
                found.append(f"job {job.id} does not use dependencies but has waiting tasks")
            continue
        waiting = dict(idx.waiting) if idx is not None else {}
        if set(waiting) != flagged:
            found.append(f"job {job.id}: waiting index {sorted(waiting)} != flags "
                         f"{sorted(flagged)}")
        book = _book(job)
        for key, pending in waiting.items():
            task = state.tasks.get(key)
            if task is None or task.state != "active":
                found.append(f"{key} waits but is {task.state if task else 'gone'}")
                continue
            recount = _recount(state, job, book, task)
            if recount != pending or pending <= 0:
                found.append(f"{key} counts {pending} unmet parents, records say {recount}")
        if idx is not None:
            for parent, keys in idx.watchers.items():
                if not keys or not keys <= set(waiting):
                    found.append(f"job {job.id}: stale watchers of {parent}")
            for holders in idx.stab.values():
                if not holders or not set(holders) <= set(waiting):
                    found.append(f"job {job.id}: stale range entries")
                    break
    return found

