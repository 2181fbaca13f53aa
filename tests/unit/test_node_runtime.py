"""Unit tests of the node runtime pieces (layout, environment, exit records, failure
classification) and of the fake backend other unit tests drive."""

from __future__ import annotations

import errno
import json
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hybatch.backends.fake import FakeBackend, FakeNodeFiles
from hybatch.core.effects import DeleteTaskFiles, KillTask, ProvisionNode, ReleaseNode, TaskLaunch
from hybatch.core.events import Event, NodeLost, NodeReady, NodeReleased, TaskExited
from hybatch.core.records import FailureInfoRecord
from hybatch.node.environment import (
    DEFAULT_PATH,
    NodeContext,
    minimal_base_environment,
    node_environment,
    start_task_environment,
    task_environment,
)
from hybatch.node.layout import NodeLayout, check_path_id, task_relative_dir
from hybatch.node.process import (
    CODE_COMMAND_LINE_INVALID,
    CODE_PROCESS_START_FAILED,
    CODE_PROGRAM_NOT_EXECUTABLE,
    CODE_PROGRAM_NOT_FOUND,
    CODE_WALL_CLOCK_EXCEEDED,
    ExitRecord,
    LaunchFailed,
    exit_code_from_status,
    launch_failure,
    prepare_task_dir,
    read_exit_record,
    spawn,
    wall_clock_failure,
    write_exit_record,
)
from hybatch.ports import ComputeBackend

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
T1 = datetime(2024, 5, 1, 12, 0, 3, 250000, tzinfo=UTC)


def launch(task_id: str = "task-1", **changes: object) -> TaskLaunch:
    values: dict[str, object] = {
        "pool_id": "pool",
        "node_id": "node",
        "job_id": "job",
        "task_id": task_id,
        "attempt": 1,
        "command_line": "/bin/true",
        "environment": (),
        "max_wall_clock_s": None,
    }
    values.update(changes)
    return TaskLaunch(**values)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- layout


def test_layout_paths(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path)
    assert layout.shared == tmp_path / "shared"
    assert layout.startup_wd == tmp_path / "startup" / "wd"
    assert layout.mounts == tmp_path / "fsmounts"
    paths = layout.task("MyJob", "Task_01")
    assert paths.task_dir == tmp_path / "workitems" / "MyJob" / "job-1" / "Task_01"
    assert paths.wd == paths.task_dir / "wd"
    assert paths.stdout == paths.task_dir / "stdout.txt"
    assert paths.stderr == paths.task_dir / "stderr.txt"
    assert paths.exit_record == paths.task_dir / "exit.json"
    assert layout.relative(paths.stdout) == "workitems/MyJob/job-1/Task_01/stdout.txt"
    assert task_relative_dir("MyJob", "Task_01") == "workitems/MyJob/job-1/Task_01"
    assert layout.startup_task().stdout == tmp_path / "startup" / "stdout.txt"
    assert layout.startup_task().wd == layout.startup_wd


def test_layout_create_is_idempotent(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path / "node")
    layout.create()
    layout.create()
    for name in (
        "shared",
        "startup",
        "startup/wd",
        "applications",
        "fsmounts",
        "workitems",
        "volatile",
    ):
        assert (layout.root / name).is_dir()
    paths = layout.task("j", "t")
    paths.create()
    paths.create()
    assert paths.wd.is_dir()


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "../x", "x\0y"])
def test_ids_that_are_not_one_directory_level_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        check_path_id(bad)
    with pytest.raises(ValueError):
        NodeLayout(tmp_path).task_dir("job", bad)
    with pytest.raises(ValueError):
        NodeLayout(tmp_path).task_dir(bad, "task")


def test_prepare_task_dir_new_and_retry(tmp_path: Path) -> None:
    paths = NodeLayout(tmp_path).task("job", "t")
    prepare_task_dir(paths)  # job directory does not exist yet
    assert paths.wd.is_dir()
    paths.exit_record.write_text("{}")
    (paths.wd / "keep.txt").write_text("kept")
    prepare_task_dir(paths)  # a retry: stale record gone, files kept
    assert not paths.exit_record.exists()
    assert (paths.wd / "keep.txt").read_text() == "kept"


# --------------------------------------------------------------------------- environment


def _context(tmp_path: Path, dedicated: bool = True) -> NodeContext:
    return NodeContext(
        pool_id="pool",
        node_id="node",
        is_dedicated=dedicated,
        layout=NodeLayout(tmp_path),
        account_name="acct",
        account_url="https://acct.example",
        task_user="runner",
        base_environment={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/home/r"},
    )


def test_minimal_base_environment() -> None:
    server = {"PATH": "/opt/bin", "HOME": "/h", "LANG": "en_US.UTF-8", "AWS_SECRET": "x"}
    assert minimal_base_environment(server) == {
        "PATH": "/opt/bin",
        "HOME": "/h",
        "LANG": "en_US.UTF-8",
    }
    assert minimal_base_environment({}) == {"PATH": DEFAULT_PATH}


def test_task_environment(tmp_path: Path) -> None:
    ctx = _context(tmp_path, dedicated=False)
    node_env = node_environment(ctx)
    one = launch(
        "t1",
        environment=(
            ("LANG", "C"),
            ("USER_VAR", "v"),
            ("AZ_BATCH_NODE_ID", "spoofed"),
            ("AZ_BATCH_TASK_DIR", "spoofed"),
            ("AZ_BATCH_CUSTOM", "mine"),
        ),
    )
    paths = ctx.layout.task("job", "t1")
    env = task_environment(node_env, paths, one)
    assert env["LANG"] == "C"  # a task setting wins over the inherited base
    assert env["USER_VAR"] == "v"
    assert env["AZ_BATCH_CUSTOM"] == "mine"
    assert env["AZ_BATCH_NODE_ID"] == "node"  # service-defined facts cannot be overridden
    assert env["AZ_BATCH_TASK_DIR"] == str(paths.task_dir)
    assert env["AZ_BATCH_TASK_WORKING_DIR"] == str(paths.wd)
    assert env["AZ_BATCH_JOB_ID"] == "job"
    assert env["AZ_BATCH_TASK_ID"] == "t1"
    assert env["AZ_BATCH_POOL_ID"] == "pool"
    assert env["AZ_BATCH_NODE_IS_DEDICATED"] == "false"
    assert env["AZ_BATCH_ACCOUNT_NAME"] == "acct"
    assert env["AZ_BATCH_ACCOUNT_URL"] == "https://acct.example"
    assert env["AZ_BATCH_NODE_ROOT_DIR"] == str(tmp_path)
    assert env["AZ_BATCH_NODE_SHARED_DIR"] == str(tmp_path / "shared")
    assert env["AZ_BATCH_NODE_STARTUP_DIR"] == str(tmp_path / "startup")
    assert env["AZ_BATCH_TASK_USER"] == "runner"
    assert env["PATH"] == "/usr/bin:/bin"
    assert node_env["LANG"] == "C.UTF-8"  # the shared node environment is not mutated


def test_start_task_environment(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    env = start_task_environment(node_environment(ctx), ctx.layout, [("X", "1")])
    assert "AZ_BATCH_JOB_ID" not in env and "AZ_BATCH_TASK_ID" not in env
    assert env["AZ_BATCH_TASK_WORKING_DIR"] == str(tmp_path / "startup" / "wd")
    assert env["AZ_BATCH_TASK_DIR"] == str(tmp_path / "startup")
    assert env["X"] == "1"
    assert env["AZ_BATCH_NODE_IS_DEDICATED"] == "true"


# --------------------------------------------------------------------------- exit status


def _status(code: int, status: int) -> os.waitid_result:
    return os.waitid_result((1234, 0, signal.SIGCHLD, status, code))


def test_exit_code_from_status() -> None:
    assert exit_code_from_status(_status(os.CLD_EXITED, 0)) == 0
    assert exit_code_from_status(_status(os.CLD_EXITED, 3)) == 3
    assert exit_code_from_status(_status(os.CLD_KILLED, signal.SIGKILL)) == 137
    assert exit_code_from_status(_status(os.CLD_DUMPED, signal.SIGSEGV)) == 139


@pytest.mark.parametrize(
    ("error", "category", "code"),
    [
        (FileNotFoundError(errno.ENOENT, "No such file"), "usererror", CODE_PROGRAM_NOT_FOUND),
        (NotADirectoryError(errno.ENOTDIR, "Not a dir"), "usererror", CODE_PROGRAM_NOT_FOUND),
        (PermissionError(errno.EACCES, "Denied"), "usererror", CODE_PROGRAM_NOT_EXECUTABLE),
        (OSError(errno.ENOEXEC, "Exec format"), "usererror", CODE_PROGRAM_NOT_EXECUTABLE),
        (OSError(errno.EMFILE, "Too many files"), "servererror", CODE_PROCESS_START_FAILED),
        (ValueError("No closing quotation"), "usererror", CODE_COMMAND_LINE_INVALID),
    ],
)
def test_launch_failure_classification(
    error: OSError | ValueError, category: str, code: str
) -> None:
    failure = launch_failure(error, "prog")
    assert (failure.category, failure.code) == (category, code)
    assert failure.message


def test_wall_clock_failure() -> None:
    failure = wall_clock_failure()
    assert (failure.category, failure.code) == ("usererror", CODE_WALL_CLOCK_EXCEEDED)
    assert "maximum wall clock time" in failure.message


@pytest.mark.parametrize(
    ("command_line", "code"),
    [
        ("", CODE_PROGRAM_NOT_FOUND),
        ("'open", CODE_COMMAND_LINE_INVALID),
        ("/nonexistent/hybatch-prog", CODE_PROGRAM_NOT_FOUND),
    ],
)
def test_spawn_reports_a_launch_failure_instead_of_raising(
    tmp_path: Path, command_line: str, code: str
) -> None:
    paths = NodeLayout(tmp_path).task("job", "t")
    stdin = os.open(os.devnull, os.O_RDONLY)
    try:
        outcome = spawn(launch("t", command_line=command_line), paths, {"PATH": "/bin"}, stdin)
    finally:
        os.close(stdin)
    assert isinstance(outcome, LaunchFailed)
    assert outcome.failure.code == code
    assert paths.task_dir.is_dir()  # the exit record will have somewhere to go


# --------------------------------------------------------------------------- exit records


def test_exit_record_round_trip(tmp_path: Path) -> None:
    record = ExitRecord(
        pool_id="pool",
        node_id="node",
        job_id="job",
        task_id="t",
        attempt=2,
        exit_code=137,
        start_time=T0,
        end_time=T1,
        timed_out=True,
        failure=FailureInfoRecord("usererror", "X", "msg", [("k", "v")]),
    )
    write_exit_record(tmp_path, record)
    assert read_exit_record(tmp_path) == record
    assert [p.name for p in tmp_path.iterdir()] == ["exit.json"]  # no temp file left
    data = json.loads((tmp_path / "exit.json").read_text())
    assert data["startTime"] == "2024-05-01T12:00:00+00:00"
    assert data["exitCode"] == 137 and data["timedOut"] is True and data["attempt"] == 2
    event = record.to_event()
    assert event == TaskExited("job", "t", 2, 137, T0, T1, True, record.failure)


def test_exit_record_of_a_launch_failure(tmp_path: Path) -> None:
    record = ExitRecord("p", "n", "j", "t", 1, None, None, T1, False, wall_clock_failure())
    write_exit_record(tmp_path, record)
    loaded = read_exit_record(tmp_path)
    assert loaded == record
    assert loaded is not None and loaded.to_event().exit_code is None


def test_read_exit_record_missing_or_damaged(tmp_path: Path) -> None:
    assert read_exit_record(tmp_path) is None
    assert read_exit_record(tmp_path / "no-such-dir") is None
    (tmp_path / "exit.json").write_text('{"attempt": 1, "exitC')
    assert read_exit_record(tmp_path) is None
    (tmp_path / "exit.json").write_text("[]")
    assert read_exit_record(tmp_path) is None
    (tmp_path / "exit.json").write_text('{"attempt": "one"}')
    assert read_exit_record(tmp_path) is None


# --------------------------------------------------------------------------- fake backend


def test_fake_backend_records_and_emits() -> None:
    events: list[Event] = []
    fake = FakeBackend()
    backend: ComputeBackend = fake
    backend.start(events.append)
    backend.provision_node(ProvisionNode("pool", "n1", 2, True))
    first = launch("a")
    backend.start_task(first)
    backend.kill_task(KillTask("pool", "node", "job", "a", 1))
    backend.delete_task_files(DeleteTaskFiles("pool", "node", "job", "a"))
    backend.release_node(ReleaseNode("pool", "n1"))
    assert [type(c).__name__ for c in fake.calls] == [
        "ProvisionNode",
        "TaskLaunch",
        "KillTask",
        "DeleteTaskFiles",
        "ReleaseNode",
    ]
    assert events == []  # nothing happens until the test says so
    assert fake.running == {("job", "a", 1): first}

    fake.ready("n1")
    exited = fake.exit(first, 3, start_time=T0, end_time=T1)
    fake.lose("n2", "gone")
    fake.finish_release("n1")
    assert events == [
        NodeReady("n1"),
        TaskExited("job", "a", 1, 3, T0, T1),
        NodeLost("n2", "gone"),
        NodeReleased("n1"),
    ]
    assert exited == events[1]
    assert fake.running == {}
    backend.close()
    assert fake.closed


def test_fake_backend_auto_events_and_exit_task() -> None:
    events: list[Event] = []
    fake = FakeBackend(auto_ready=True, auto_release=True)
    fake.start(events.append)
    fake.provision_node(ProvisionNode("pool", "n1", 1, False))
    fake.start_task(launch("a"))
    fake.start_task(launch("a", attempt=2))
    failure = FailureInfoRecord("usererror", "CommandProgramNotFound", "nope")
    fake.exit(fake.last_launch("job", "a"), None, failure=failure)
    fake.release_node(ReleaseNode("pool", "n1"))
    assert events[0] == NodeReady("n1")
    not_started = events[1]
    assert isinstance(not_started, TaskExited)
    assert (not_started.attempt, not_started.exit_code, not_started.start_time) == (2, None, None)
    assert not_started.failure == failure
    assert events[2] == NodeReleased("n1")
    assert fake.exit_task("job", "a", 0).exit_code == 0
    with pytest.raises(KeyError):
        fake.last_launch("job", "other")


def test_fake_backend_requires_start() -> None:
    with pytest.raises(RuntimeError):
        FakeBackend().ready("n1")


def test_fake_node_files() -> None:
    files = FakeNodeFiles({"shared/a.txt": b"0123456789", "shared/d/b.txt": b"b"})
    assert [i.path for i in files.list("", recursive=False)] == ["shared"]
    assert [i.path for i in files.list("shared", recursive=False)] == ["shared/a.txt", "shared/d"]
    assert [i.path for i in files.list("shared", recursive=True)] == [
        "shared/a.txt",
        "shared/d",
        "shared/d/b.txt",
    ]
    assert files.read("shared/a.txt", 2, 4) == b"234"
    assert files.read("shared/a.txt", 8) == b"89"
    assert files.stat("shared/d").is_directory
    assert files.stat("shared/a.txt").size == 10
    with pytest.raises(FileNotFoundError):
        files.stat("nope")
    with pytest.raises(PermissionError):
        files.read("../etc/passwd")
    with pytest.raises(OSError):
        files.delete("shared/d", recursive=False)
    files.delete("shared/d", recursive=True)
    files.delete("shared/a.txt", recursive=False)
    assert files.files == {}


def test_fake_backend_collect_exit() -> None:
    fake = FakeBackend()
    event = TaskExited("job", "a", 2, 0, T0, T1)
    assert fake.collect_exit("pool", "node", "job", "a", 2) is None
    fake.record_exit(event)
    assert fake.collect_exit("pool", "node", "job", "a", 2) == event
    assert fake.collect_exit("pool", "node", "job", "a", 1) is None
