"""The Dask backend at the port (ComputeBackend), against a real scheduler process and one
real worker process (never an in-process cluster): the cases of the local backend's contract
that the SDK scenarios do not reach. One cluster and one node for the whole module; each
test uses its own task ids.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hybatch.backends.dask import DaskBackend
from hybatch.core.effects import (
    DeleteTaskFiles,
    KillTask,
    ProvisionNode,
    ReleaseNode,
    TaskLaunch,
)
from hybatch.core.events import NodeReady, NodeReleased, TaskExited, TaskStarted
from hybatch.node.process import (
    CODE_KILLED_BEFORE_START,
    CODE_PROGRAM_NOT_FOUND,
    CODE_WALL_CLOCK_EXCEEDED,
)
from hybatch.ports import ComputeBackend
from hybatch.vm_sizes import parse_catalogue
from tests.contract.test_backends import Events, poll
from tests.support.dask_hosts import (
    spawn_logged,
    start_scheduler,
    stop_process,
    wait_for_workers,
    worker_argv,
)

POOL, NODE, JOB = "dpool", "dnode-1", "djob"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("dask-contract")
    scheduler, address = start_scheduler("127.0.0.1", work)
    worker = spawn_logged(worker_argv(address, "contract-worker", 1, str(work / "worker")),
                    work / "worker.log")
    try:
        wait_for_workers(address, 1)
        yield address
    finally:
        stop_process(worker)
        stop_process(scheduler)


@pytest.fixture(scope="module")
def node(cluster: str, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[DaskBackend, Events]]:
    catalogue = parse_catalogue({"sizes": {"ext": {"backend": "dask", "scheduler": cluster,
                                                   "slots": 1}}})
    backend = DaskBackend(catalogue, tmp_path_factory.mktemp("dask-state"), "acct",
                          "https://acct.example.test")
    events = Events()
    port: ComputeBackend = backend  # the adapter satisfies the port
    port.start(events)
    try:
        port.provision_node(ProvisionNode(POOL, NODE, 1, True, vm_size="EXT"))
        events.wait_for(lambda e: e == NodeReady(NODE), timeout=60)
        yield backend, events
    finally:
        port.close()


def _launch(task_id: str, command_line: str, wall_clock: float | None = None) -> TaskLaunch:
    return TaskLaunch(POOL, NODE, JOB, task_id, 1, command_line, (), wall_clock)


def test_exit_code_output_and_exit_record_through_the_worker(
        node: tuple[DaskBackend, Events]) -> None:
    backend, events = node
    backend.start_task(_launch("Out", "/bin/sh -c 'echo hello; echo oops >&2; exit 3'"))
    exited = events.exited("Out")
    assert exited.exit_code == 3 and exited.usage is not None
    files = backend.node_files(POOL, NODE)
    task_dir = f"workitems/{JOB}/job-1/Out"
    assert files.read(f"{task_dir}/stdout.txt") == b"hello\n"
    assert files.read(f"{task_dir}/stderr.txt", 1, 2) == b"op"
    assert files.stat(f"{task_dir}/stdout.txt").size == 6
    names = {f.path for f in files.list(task_dir, recursive=False)}
    assert {f"{task_dir}/stdout.txt", f"{task_dir}/exit.json", f"{task_dir}/wd"} <= names
    collected = backend.collect_exit(POOL, NODE, JOB, "Out", 1)
    assert collected == exited
    assert backend.collect_exit(POOL, NODE, JOB, "Out", 2) is None
    with pytest.raises(FileNotFoundError):
        files.read("workitems/nothing-here.txt")
    with pytest.raises(PermissionError):
        files.list("../..", recursive=False)


def test_program_not_found_and_wall_clock(node: tuple[DaskBackend, Events]) -> None:
    backend, events = node
    backend.start_task(_launch("missing", "/no/such/program"))
    missing = events.exited("missing")
    assert missing.exit_code is None and missing.failure is not None
    assert missing.failure.code == CODE_PROGRAM_NOT_FOUND
    backend.start_task(_launch("slow", "/bin/sleep 30", wall_clock=0.5))
    slow = events.exited("slow")
    assert slow.timed_out and slow.failure is not None
    assert slow.failure.code == CODE_WALL_CLOCK_EXCEEDED
    assert events.count(lambda e: isinstance(e, TaskStarted) and e.task_id == "slow") == 1


def test_kill_queued_and_running_attempts(node: tuple[DaskBackend, Events]) -> None:
    backend, events = node
    backend.start_task(_launch("running", "/bin/sleep 60"))  # the node's one slot
    events.wait_for(lambda e: isinstance(e, TaskStarted) and e.task_id == "running",
                    timeout=30)
    backend.start_task(_launch("queued", "/bin/sleep 60"))  # waits in the worker's queue
    backend.kill_task(KillTask(POOL, NODE, JOB, "QUEUED", 1))
    backend.kill_task(KillTask(POOL, NODE, JOB, "running", 1))
    running, queued = events.exited("running"), events.exited("queued")
    assert running.exit_code is not None and running.exit_code != 0
    assert queued.exit_code is None and queued.failure is not None
    assert queued.failure.code == CODE_KILLED_BEFORE_START


def test_delete_task_files_on_the_worker(node: tuple[DaskBackend, Events]) -> None:
    backend, events = node
    backend.start_task(_launch("doomed", "/bin/true"))
    events.exited("doomed")
    files = backend.node_files(POOL, NODE)
    files.stat(f"workitems/{JOB}/job-1/doomed/stdout.txt")
    backend.delete_task_files(DeleteTaskFiles(POOL, NODE, JOB, "doomed"))

    def gone() -> bool:
        try:
            files.stat(f"workitems/{JOB}/job-1/doomed")
        except FileNotFoundError:
            return True
        return False

    poll(gone, what="the task directory removed on the worker")


def test_release_reports_released_then_refuses_attempts(
        node: tuple[DaskBackend, Events]) -> None:
    backend, events = node
    backend.start_task(_launch("cut-short", "/bin/sleep 60"))
    events.wait_for(lambda e: isinstance(e, TaskStarted) and e.task_id == "cut-short",
                    timeout=30)
    backend.release_node(ReleaseNode(POOL, NODE))
    events.wait_for(lambda e: e == NodeReleased(NODE), timeout=60)
    killed = events.exited("cut-short")
    assert killed.exit_code is not None and killed.exit_code != 0
    released_at = events.items.index(NodeReleased(NODE))
    assert events.items.index(killed) < released_at  # its exit first
    backend.start_task(_launch("too-late", "/bin/true"))
    late = events.exited("too-late")
    assert late.exit_code is None and late.failure is not None
    assert isinstance(late, TaskExited)
