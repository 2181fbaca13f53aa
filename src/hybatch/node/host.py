"""The node directories of one host: ``<root>/<poolId>/<nodeId>/``.

What the service may read there without asking a node (it is the same filesystem): file
access and the exit records that settle interrupted attempts after a restart.

Imports: standard library, core events, node runtime.
"""

from __future__ import annotations

from pathlib import Path

from hybatch.core.events import TaskExited
from hybatch.node.files import LocalNodeFiles
from hybatch.node.layout import NodeLayout, check_path_id
from hybatch.node.process import read_exit_record


class HostNodes:
    """Paths and same-host reads for the nodes kept under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    def node_root(self, pool_id: str, node_id: str) -> Path:
        return self.root / check_path_id(pool_id, "pool id") / check_path_id(node_id, "node id")

    def node_files(self, pool_id: str, node_id: str) -> LocalNodeFiles:
        return LocalNodeFiles(self.node_root(pool_id, node_id))

    def collect_exit(self, pool_id: str, node_id: str, job_id: str, task_id: str,
                     attempt: int) -> TaskExited | None:
        """The outcome the node recorded for this attempt, if any (an older attempt's record,
        or none, means the outcome is unknown)."""
        try:
            task_dir = NodeLayout(self.node_root(pool_id, node_id)).task_dir(job_id, task_id)
        except ValueError:
            return None
        record = read_exit_record(task_dir)
        if record is None or record.attempt != attempt:
            return None
        return record.to_event()
