"""The store's schema: one MetaData, the single definition future Alembic migrations start from.

Column values come from :mod:`hybatch.store.codec` (a test checks both agree). Every list is
a keyset scan in key order within its parent, so each parent/key pair is indexed (jobs also by
the schedule that created them, for Jobs_ListJobsFromSchedule); tasks also
have a (job, state, task) index for ``state eq '...'`` pages and a partial index over
unfinished tasks, so start-up does not read the (possibly millions of) completed ones.
"""

from __future__ import annotations

import sqlalchemy as sa

from hybatch.store.dialects import json_type, key_type, partial_index

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_KEY = key_type()
_JSON = json_type()


def _time(name: str) -> sa.Column[int]:
    """A timestamp as microseconds since the epoch (exact, orderable, dialect-neutral)."""
    return sa.Column(name, sa.BigInteger, nullable=True)


pools = sa.Table(
    "pools",
    metadata,
    sa.Column("pool_key", _KEY, primary_key=True),
    sa.Column("state", _KEY, nullable=False),
    sa.Column("allocation_state", _KEY, nullable=False),
    sa.Column("vm_size", _KEY, nullable=True),
    _time("creation_us"),
    _time("state_transition_us"),
    _time("allocation_state_transition_us"),
    _time("last_modified_us"),
    sa.Column("data", _JSON, nullable=False),
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("node_key", _KEY, primary_key=True),
    sa.Column("pool_key", _KEY, nullable=False),
    sa.Column("state", _KEY, nullable=False),
    sa.Column("scheduling_state", _KEY, nullable=False),
    sa.Column("is_dedicated", sa.Boolean, nullable=False),
    _time("state_transition_us"),
    _time("allocation_us"),
    _time("last_boot_us"),
    sa.Column("data", _JSON, nullable=False),
    sa.Index(None, "pool_key", "node_key"),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("job_key", _KEY, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("state", _KEY, nullable=False),
    sa.Column("pool_key", _KEY, nullable=False),
    sa.Column("priority", sa.BigInteger, nullable=False),
    _time("creation_us"),
    _time("state_transition_us"),
    _time("last_modified_us"),
    _time("start_us"),
    _time("end_us"),
    sa.Column("data", _JSON, nullable=False),
    sa.Column("schedule_key", _KEY, nullable=True),
    sa.Index(None, "schedule_key", "job_key"),
)

job_schedules = sa.Table(
    "job_schedules",
    metadata,
    sa.Column("schedule_key", _KEY, primary_key=True),
    sa.Column("state", _KEY, nullable=False),
    _time("creation_us"),
    _time("state_transition_us"),
    _time("last_modified_us"),
    _time("end_us"),
    _time("do_not_run_until_us"),
    _time("do_not_run_after_us"),
    sa.Column("data", _JSON, nullable=False),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("job_key", _KEY, primary_key=True),
    sa.Column("task_key", _KEY, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("state", _KEY, nullable=False),
    sa.Column("exit_code", sa.BigInteger, nullable=True),
    sa.Column("result", _KEY, nullable=True),
    sa.Column("node_key", _KEY, nullable=True),
    _time("creation_us"),
    _time("state_transition_us"),
    _time("last_modified_us"),
    _time("start_us"),
    _time("end_us"),
    sa.Column("data", _JSON, nullable=False),
)
sa.Index(None, tasks.c.job_key, tasks.c.state, tasks.c.task_key)
UNFINISHED = tasks.c.state != sa.literal_column("'completed'")
"""The partial index's predicate, spelled the same in queries so planners can use it."""
sa.Index(
    "ix_tasks_unfinished",
    tasks.c.job_key,
    tasks.c.seq,
    tasks.c.task_key,
    **partial_index(UNFINISHED),
)

pool_usage = sa.Table(
    "pool_usage",
    metadata,
    sa.Column("pool_key", _KEY, primary_key=True),
    sa.Column("interval_start_us", sa.BigInteger, primary_key=True),
    sa.Column("pool_creation_us", sa.BigInteger, primary_key=True),
    sa.Column("data", _JSON, nullable=False),
    sa.Index(None, "interval_start_us", "pool_key"),
)
"""Closed usage intervals per pool (core.usage): insert-only; they outlive their pools."""

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
