"""The job manager task: an ordinary task of its job (listed with the others), created with
the job and placed before the job's other tasks, with these rules of its own:

* ``killJobOnCompletion`` (default true): when it completes, whatever its result, the job
  terminates (``terminateReason`` ``JMComplete``) and its other running tasks are killed;
* ``runExclusive`` (default true): it needs a node with nothing else on it, and while it is
  in flight no other task is offered to that node (core.job_tasks applies this in
  placement);
* ``allowLowPriorityNode`` (default true): false keeps it on dedicated nodes;
* a retry goes to the front of its job's queue, not the back;
* ``authenticationTokenSettings`` (as on any task): core.tasks gives the attempt an
  ``AZ_BATCH_AUTHENTICATION_TOKEN`` (core.tokens).

Imports: core modules, wire models. (core.tasks imports this module: it must not import
core.tasks.)
"""

from __future__ import annotations

from hybatch.core import jobs as job_rules
from hybatch.core.context import Ctx
from hybatch.core.records import JobRecord, TaskRecord
from hybatch.schema import BatchJobManagerTask, BatchTaskCreateOptions

TERMINATE_REASON = "JMComplete"


def is_manager(job: JobRecord, task: TaskRecord) -> bool:
    manager = job.spec.job_manager_task
    return manager is not None and manager.id.lower() == task.id.lower()


def runs_exclusive(job: JobRecord) -> bool:
    manager = job.spec.job_manager_task
    return manager is not None and manager.run_exclusive is not False


def dedicated_only(job: JobRecord) -> bool:
    manager = job.spec.job_manager_task
    return manager is not None and manager.allow_low_priority_node is False


def task_spec(manager: BatchJobManagerTask) -> BatchTaskCreateOptions:
    """The manager's fields an ordinary task has (the rest stay in the job's spec)."""
    return BatchTaskCreateOptions(
        id=manager.id, display_name=manager.display_name, command_line=manager.command_line,
        environment_settings=manager.environment_settings, constraints=manager.constraints,
        required_slots=manager.required_slots, user_identity=manager.user_identity,
        authentication_token_settings=manager.authentication_token_settings)


def on_completed(ctx: Ctx, job: JobRecord, task: TaskRecord) -> None:
    """A task of ``job`` completed: if it is the manager with killJobOnCompletion, end the
    job."""
    manager = job.spec.job_manager_task
    if manager is None or manager.kill_job_on_completion is False:
        return
    if manager.id.lower() != task.id.lower():
        return
    if job.state in ("active", "disabling", "disabled", "enabling"):
        job_rules.begin_termination(ctx, job, TERMINATE_REASON)
