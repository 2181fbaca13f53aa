"""The environment of a task process: a minimal inherited base, the user's settings and the
AZ_BATCH_* variables (reference §10.1).

Tasks must not see the server's environment (credentials, connection strings), so only a few
variables a program needs to run at all are inherited. The node-level part is computed once per
node; per task only a handful of entries are added (spawning is the hot path).

Imports: standard library, core effects, node.layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hybatch.core.effects import NodeTaskLaunch, TaskLaunch
from hybatch.node.layout import WORKING_DIR, NodeLayout, TaskPaths, check_path_id

INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME")
"""What a task inherits from the server: enough to find programs and pick a locale."""

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""Used when the server itself has no PATH (``os.defpath`` would add the cwd)."""


def minimal_base_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Pick the inherited variables out of ``environ`` (normally the server's ``os.environ``)."""
    base = {name: environ[name] for name in INHERITED_VARIABLES if name in environ}
    base.setdefault("PATH", DEFAULT_PATH)
    return base


@dataclass(frozen=True, slots=True)
class NodeContext:
    """What a node knows about itself; the source of the node-wide AZ_BATCH_* variables."""

    pool_id: str
    node_id: str
    is_dedicated: bool
    layout: NodeLayout
    account_name: str
    account_url: str
    task_user: str
    base_environment: Mapping[str, str] = field(default_factory=dict)


def node_environment(node: NodeContext) -> dict[str, str]:
    """Variables shared by every task on the node, base included (compute once per node)."""
    layout = node.layout
    env = dict(node.base_environment)
    env.update(
        {
            "AZ_BATCH_ACCOUNT_NAME": node.account_name,
            "AZ_BATCH_ACCOUNT_URL": node.account_url,
            "AZ_BATCH_POOL_ID": node.pool_id,
            "AZ_BATCH_NODE_ID": node.node_id,
            "AZ_BATCH_NODE_IS_DEDICATED": "true" if node.is_dedicated else "false",
            "AZ_BATCH_NODE_ROOT_DIR": str(layout.root),
            "AZ_BATCH_NODE_SHARED_DIR": str(layout.shared),
            "AZ_BATCH_NODE_STARTUP_DIR": str(layout.startup),
            "AZ_BATCH_NODE_MOUNTS_DIR": str(layout.mounts),
            "AZ_BATCH_TASK_USER": node.task_user,
        }
    )
    return env


def _with_settings(
    node_env: Mapping[str, str],
    settings: Iterable[tuple[str, str]],
    service: dict[str, str],
) -> dict[str, str]:
    """Layer: node env < user settings < per-task service variables; node-wide AZ_BATCH_*
    names are facts about the node, so a user setting cannot change them either."""
    env = dict(node_env)
    for name, value in settings:
        if not name.startswith("AZ_BATCH_") or name not in node_env:
            env[name] = value
    env.update(service)
    return env


def task_environment(
    node_env: Mapping[str, str], paths: TaskPaths, launch: TaskLaunch
) -> dict[str, str]:
    """The full environment of one attempt of an ordinary task.

    The launch's ``environment`` (job common settings overridden by the task's settings) wins
    over the inherited base; the AZ_BATCH_* variables the service defines win over both.
    A task of a job with a preparation task also gets that task's directories.
    """
    service = {
        "AZ_BATCH_JOB_ID": launch.job_id,
        "AZ_BATCH_TASK_ID": launch.task_id,
        "AZ_BATCH_TASK_DIR": str(paths.task_dir),
        "AZ_BATCH_TASK_WORKING_DIR": str(paths.wd),
    }
    if launch.job_preparation_task_id is not None:
        prep_dir = paths.task_dir.parent / check_path_id(launch.job_preparation_task_id)
        service["AZ_BATCH_JOB_PREP_DIR"] = str(prep_dir)
        service["AZ_BATCH_JOB_PREP_WORKING_DIR"] = str(prep_dir / WORKING_DIR)
    return _with_settings(node_env, launch.environment, service)


def job_task_environment(
    node_env: Mapping[str, str], paths: TaskPaths, launch: NodeTaskLaunch
) -> dict[str, str]:
    """The environment of a job preparation or release task: like a task of the job, with
    its own id and directories."""
    return _with_settings(
        node_env,
        launch.environment,
        {
            "AZ_BATCH_JOB_ID": launch.job_id,
            "AZ_BATCH_TASK_ID": launch.task_id,
            "AZ_BATCH_TASK_DIR": str(paths.task_dir),
            "AZ_BATCH_TASK_WORKING_DIR": str(paths.wd),
        },
    )


def start_task_environment(
    node_env: Mapping[str, str], layout: NodeLayout, settings: Iterable[tuple[str, str]] = ()
) -> dict[str, str]:
    """The environment of the pool's start task: no job or task id, runs in ``startup/wd``."""
    return _with_settings(
        node_env,
        settings,
        {
            "AZ_BATCH_TASK_DIR": str(layout.startup),
            "AZ_BATCH_TASK_WORKING_DIR": str(layout.startup_wd),
        },
    )
