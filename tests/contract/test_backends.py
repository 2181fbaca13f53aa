"""Contract tests for compute backends, run for real: real processes, real files, no mocks.

Every wait is a poll against a deadline (an event arriving, a file appearing, a process
disappearing); nothing relies on a fixed sleep.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hybatch.backends.local import LocalBackend
from hybatch.core.effects import DeleteTaskFiles, KillTask, ProvisionNode, ReleaseNode, TaskLaunch
from hybatch.core.events import Event, NodeReady, NodeReleased, TaskExited
from hybatch.node.layout import NodeLayout
from hybatch.node.process import (
    CODE_COMMAND_LINE_INVALID,
    CODE_KILLED_BEFORE_START,
    CODE_PROGRAM_NOT_EXECUTABLE,
    CODE_PROGRAM_NOT_FOUND,
    CODE_WALL_CLOCK_EXCEEDED,
    ExitRecord,
    read_exit_record,
)
from hybatch.ports import ComputeBackend

POOL = "pool-1"
NODE = "node-1"
JOB = "job-1"
ACCOUNT = "acct"
ACCOUNT_URL = "https://acct.example.test"
WAIT_S = 20.0


def poll(predicate: Callable[[], bool], timeout: float = WAIT_S, what: str = "condition") -> None:
    """Re-check ``predicate`` until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        pause.wait(0.01)


class Events:
    """Thread-safe sink that lets a test wait for the event it expects."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.items: list[Event] = []
        self.records_at_exit: dict[tuple[str, int], ExitRecord | None] = {}
        self.task_dirs: dict[str, Path] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, TaskExited) and event.task_id in self.task_dirs:
            # Read on the reporting thread, at the moment of reporting.
            record = read_exit_record(self.task_dirs[event.task_id])
            self.records_at_exit[(event.task_id, event.attempt)] = record
        with self._cond:
            self.items.append(event)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float = WAIT_S) -> Event:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.items:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching event; got {self.items!r}")
                self._cond.wait(remaining)

    def exited(self, task_id: str, attempt: int = 1, timeout: float = WAIT_S) -> TaskExited:
        event = self.wait_for(
            lambda e: isinstance(e, TaskExited) and e.task_id == task_id and e.attempt == attempt,
            timeout,
        )
        assert isinstance(event, TaskExited)
        return event

    def count(self, predicate: Callable[[Event], bool]) -> int:
        with self._cond:
            return sum(1 for event in self.items if predicate(event))


@dataclass
class Node:
    backend: LocalBackend
    events: Events
    layout: NodeLayout

    def run(
        self,
        task_id: str,
        command_line: str,
        *,
        attempt: int = 1,
        environment: tuple[tuple[str, str], ...] = (),
        max_wall_clock_s: float | None = None,
        node_id: str = NODE,
    ) -> TaskLaunch:
        self.events.task_dirs[task_id] = self.layout.task_dir(JOB, task_id)
        launch = TaskLaunch(
            POOL, node_id, JOB, task_id, attempt, command_line, environment, max_wall_clock_s
        )
        self.backend.start_task(launch)
        return launch

    def wd(self, task_id: str) -> Path:
        return self.layout.task(JOB, task_id).wd

    def task_dir(self, task_id: str) -> Path:
        return self.layout.task_dir(JOB, task_id)


def _start_node(root: Path, spawn_inline: bool) -> Generator[Node, None, None]:
    events = Events()
    backend = LocalBackend(root, ACCOUNT, ACCOUNT_URL, spawners=0 if spawn_inline else 4)
    port: ComputeBackend = backend  # the adapter satisfies the port
    port.start(events)
    try:
        port.provision_node(ProvisionNode(POOL, NODE, 2, True))
        events.wait_for(lambda e: e == NodeReady(NODE))
        yield Node(backend, events, NodeLayout(backend.node_root(POOL, NODE)))
    finally:
        port.close()


@pytest.fixture(params=["handoff", "inline"])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Node]:
    """A started local backend with one provisioned 2-slot node, in both spawn modes."""
    yield from _start_node(tmp_path / "nodes", spawn_inline=request.param == "inline")


@pytest.fixture
def handoff_node(tmp_path: Path) -> Iterator[Node]:
    yield from _start_node(tmp_path / "nodes", spawn_inline=False)


def process_gone(pid: int) -> bool:
    """Dead or a zombie (the reaper of orphans may be slow or absent in a container)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return True
    return fields[0] in ("Z", "X")


# --------------------------------------------------------------------------- layout, env


def test_provision_creates_the_node_layout(node: Node) -> None:
    root = node.layout.root
    assert root == node.backend.root / POOL / NODE
    for name in (
        "shared",
        "startup",
        "startup/wd",
        "applications",
        "fsmounts",
        "workitems",
        "volatile",
    ):
        assert (root / name).is_dir(), name


def test_task_environment(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    launch = node.run(
        "env-task",
        "/bin/sh -c 'env > env.txt'",
        environment=(("MY_SETTING", "a value"), ("LANG", "C"), ("AZ_BATCH_TASK_ID", "spoof")),
    )
    exited = node.events.exited("env-task")
    assert exited.exit_code == 0
    lines = (node.wd("env-task") / "env.txt").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if "=" in line)
    task_dir = node.task_dir("env-task")
    expected = {
        "AZ_BATCH_ACCOUNT_NAME": ACCOUNT,
        "AZ_BATCH_ACCOUNT_URL": ACCOUNT_URL,
        "AZ_BATCH_POOL_ID": POOL,
        "AZ_BATCH_NODE_ID": NODE,
        "AZ_BATCH_NODE_IS_DEDICATED": "true",
        "AZ_BATCH_NODE_ROOT_DIR": str(node.layout.root),
        "AZ_BATCH_NODE_SHARED_DIR": str(node.layout.root / "shared"),
        "AZ_BATCH_NODE_STARTUP_DIR": str(node.layout.root / "startup"),
        "AZ_BATCH_NODE_MOUNTS_DIR": str(node.layout.root / "fsmounts"),
        "AZ_BATCH_JOB_ID": launch.job_id,
        "AZ_BATCH_TASK_ID": "env-task",
        "AZ_BATCH_TASK_DIR": str(task_dir),
        "AZ_BATCH_TASK_WORKING_DIR": str(task_dir / "wd"),
        "MY_SETTING": "a value",
        "LANG": "C",
    }
    for name, value in expected.items():
        assert env.get(name) == value, name
    assert env["AZ_BATCH_TASK_USER"]
    assert env["PATH"]
    # Only a minimal base is inherited: none of the server's other variables leak in.
    leaked = set(env) - set(expected) - {"AZ_BATCH_TASK_USER", "PATH", "HOME", "PWD", "SHLVL"}
    leaked -= {"LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME", "_"}
    assert not leaked


def test_server_environment_is_not_inherited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYBATCH_TEST_SECRET", "do-not-leak")
    nodes = _start_node(tmp_path / "nodes", spawn_inline=False)
    node = next(nodes)
    try:
        node.run("secret", "/bin/sh -c 'env > env.txt'")
        assert node.events.exited("secret").exit_code == 0
        assert "HYBATCH_TEST_SECRET" not in (node.wd("secret") / "env.txt").read_text()
    finally:
        nodes.close()


# --------------------------------------------------------------------------- running


def test_exit_codes_and_output_files(node: Node) -> None:
    node.run("ok", "/bin/true")
    node.run("three", "/bin/sh -c 'echo to-out; echo to-err >&2; exit 3'")
    ok = node.events.exited("ok")
    three = node.events.exited("three")
    assert (ok.exit_code, ok.timed_out, ok.failure) == (0, False, None)
    assert (three.exit_code, three.timed_out, three.failure) == (3, False, None)
    assert three.start_time is not None and three.start_time <= three.end_time
    task_dir = node.task_dir("three")
    assert (task_dir / "stdout.txt").read_text() == "to-out\n"
    assert (task_dir / "stderr.txt").read_text() == "to-err\n"
    assert (node.task_dir("ok") / "stdout.txt").read_bytes() == b""


def test_retry_appends_output_and_replaces_exit_record(node: Node) -> None:
    node.run("retry", "/bin/sh -c 'echo run; exit 1'")
    assert node.events.exited("retry").exit_code == 1
    node.run("retry", "/bin/sh -c 'echo run; exit 0'", attempt=2)
    assert node.events.exited("retry", attempt=2).exit_code == 0
    assert (node.task_dir("retry") / "stdout.txt").read_text() == "run\nrun\n"
    record = read_exit_record(node.task_dir("retry"))
    assert record is not None and (record.attempt, record.exit_code) == (2, 0)


def test_working_directory_and_no_shell(node: Node) -> None:
    node.run("cwd", "/bin/sh -c 'pwd -P > where.txt'")
    assert node.events.exited("cwd").exit_code == 0
    where = (node.wd("cwd") / "where.txt").read_text().strip()
    assert where == os.path.realpath(node.wd("cwd"))
    # No shell is added: '$HOME' reaches echo unexpanded, quotes are honoured by shlex.
    node.run("literal", "echo '$HOME' \"two words\"")
    assert node.events.exited("literal").exit_code == 0
    assert (node.task_dir("literal") / "stdout.txt").read_text() == "$HOME two words\n"


def test_stdin_is_dev_null(node: Node) -> None:
    node.run("stdin", "/bin/sh -c 'cat; echo done'")
    assert node.events.exited("stdin").exit_code == 0
    assert (node.task_dir("stdin") / "stdout.txt").read_text() == "done\n"


def test_exit_record_is_written_before_the_event(node: Node) -> None:
    node.run("recorded", "/bin/sh -c 'exit 5'")
    exited = node.events.exited("recorded")
    at_report = node.events.records_at_exit[("recorded", 1)]
    assert at_report is not None, "exit.json was missing when TaskExited was reported"
    assert at_report.to_event() == exited
    assert (at_report.pool_id, at_report.node_id) == (POOL, NODE)
    assert not [p.name for p in node.task_dir("recorded").iterdir() if p.name.endswith(".tmp")]


def test_own_process_group(node: Node) -> None:
    node.run("pgid", "/bin/sh -c 'ps -o pgid= -p $$ > pg.txt; echo $$ > pid.txt'")
    assert node.events.exited("pgid").exit_code == 0
    pgid = int((node.wd("pgid") / "pg.txt").read_text())
    assert pgid == int((node.wd("pgid") / "pid.txt").read_text())
    assert pgid != os.getpgid(0)


def test_wall_clock_kills_the_whole_process_group(node: Node) -> None:
    node.run(
        "slow",
        "/bin/sh -c 'sleep 60 & echo $! > grandchild.pid; wait'",
        max_wall_clock_s=1.0,
    )
    exited = node.events.exited("slow")
    assert exited.timed_out is True
    assert exited.exit_code == 137
    assert exited.failure is not None
    assert (exited.failure.category, exited.failure.code) == ("usererror", CODE_WALL_CLOCK_EXCEEDED)
    assert exited.start_time is not None
    assert (exited.end_time - exited.start_time).total_seconds() >= 0.99
    grandchild = int((node.wd("slow") / "grandchild.pid").read_text())
    poll(lambda: process_gone(grandchild), what="the grandchild to be killed")
    record = read_exit_record(node.task_dir("slow"))
    assert record is not None and record.timed_out and record.exit_code == 137


def test_wall_clock_not_hit(node: Node) -> None:
    node.run("quick", "/bin/true", max_wall_clock_s=30.0)
    exited = node.events.exited("quick")
    assert (exited.exit_code, exited.timed_out, exited.failure) == (0, False, None)


def test_wall_clock_sigterm_grace(tmp_path: Path) -> None:
    events = Events()
    backend = LocalBackend(tmp_path / "nodes", ACCOUNT, ACCOUNT_URL, timeout_grace_s=5.0)
    backend.start(events)
    try:
        backend.provision_node(ProvisionNode(POOL, NODE, 1, True))
        events.wait_for(lambda e: e == NodeReady(NODE))
        backend.start_task(TaskLaunch(POOL, NODE, JOB, "term", 1, "sleep 60", (), 0.5))
        exited = events.exited("term")
        assert exited.timed_out and exited.exit_code == 128 + 15  # SIGTERM was enough
    finally:
        backend.close()


# --------------------------------------------------------------------------- cannot start


@pytest.mark.parametrize(
    ("command_line", "code"),
    [
        ("/nonexistent/program --flag", CODE_PROGRAM_NOT_FOUND),
        ("no-such-program-on-path-hybatch", CODE_PROGRAM_NOT_FOUND),
        ("", CODE_PROGRAM_NOT_FOUND),
        ("   ", CODE_PROGRAM_NOT_FOUND),
        ("echo 'unbalanced", CODE_COMMAND_LINE_INVALID),
        ("/dev/null", CODE_PROGRAM_NOT_EXECUTABLE),
    ],
)
def test_command_that_cannot_start(node: Node, command_line: str, code: str) -> None:
    node.run("bad", command_line)
    exited = node.events.exited("bad")
    assert exited.exit_code is None
    assert exited.start_time is None
    assert exited.failure is not None
    assert (exited.failure.category, exited.failure.code) == ("usererror", code)
    assert exited.failure.message
    assert node.events.records_at_exit[("bad", 1)] is not None


def test_not_executable_file(node: Node) -> None:
    script = node.layout.shared / "script.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    node.run("noexec", str(script))
    exited = node.events.exited("noexec")
    assert exited.failure is not None and exited.failure.code == CODE_PROGRAM_NOT_EXECUTABLE
    script.chmod(0o755)
    node.run("exec", str(script))
    assert node.events.exited("exec").exit_code == 0


def test_unknown_node_reports_a_failed_attempt(node: Node) -> None:
    node.run("lost", "/bin/true", node_id="node-unknown")
    exited = node.events.exited("lost")
    assert exited.exit_code is None
    assert exited.failure is not None and exited.failure.category == "servererror"


# --------------------------------------------------------------------------- kill, release


def test_kill_task_reports_the_real_exit_status(node: Node) -> None:
    launch = node.run("victim", "/bin/sh -c 'echo started; exec sleep 60'")
    stdout = node.task_dir("victim") / "stdout.txt"
    poll(lambda: stdout.exists() and stdout.read_text() == "started\n", what="task start")
    node.backend.kill_task(KillTask(POOL, NODE, JOB, "VICTIM", launch.attempt))  # any case
    exited = node.events.exited("victim")
    assert (exited.exit_code, exited.timed_out, exited.failure) == (137, False, None)
    # Killing an attempt that already ended, or never existed, is a no-op.
    node.backend.kill_task(KillTask(POOL, NODE, JOB, "victim", launch.attempt))
    node.backend.kill_task(KillTask(POOL, NODE, JOB, "nobody", 1))
    node.run("after", "/bin/true")
    node.events.exited("after")
    assert node.events.count(lambda e: isinstance(e, TaskExited) and e.task_id == "victim") == 1


def test_kill_racing_with_start_reports_each_attempt_once(handoff_node: Node) -> None:
    node = handoff_node
    ids = [f"race-{i}" for i in range(20)]
    for task_id in ids:
        node.run(task_id, "sleep 60")
        node.backend.kill_task(KillTask(POOL, NODE, JOB, task_id, 1))
    for task_id in ids:
        exited = node.events.exited(task_id)
        if exited.exit_code is None:  # cancelled before its process started
            assert exited.failure is not None and exited.failure.code == CODE_KILLED_BEFORE_START
        else:
            assert exited.exit_code == 137
    assert node.events.count(lambda e: isinstance(e, TaskExited)) == len(ids)


def test_release_node_kills_tasks_then_reports_released(node: Node) -> None:
    node.run("long", "/bin/sh -c 'echo started; exec sleep 60'")
    stdout = node.task_dir("long") / "stdout.txt"
    poll(lambda: stdout.exists() and stdout.read_text() == "started\n", what="task start")
    node.backend.release_node(ReleaseNode(POOL, NODE))
    node.events.wait_for(lambda e: e == NodeReleased(NODE))
    order = [e for e in node.events.items if isinstance(e, (TaskExited, NodeReleased))]
    assert isinstance(order[0], TaskExited) and order[0].exit_code == 137
    assert order[-1] == NodeReleased(NODE)
    assert node.layout.root.is_dir()  # nothing removed yet
    node.run("too-late", "/bin/true")
    refused = node.events.exited("too-late")
    assert refused.exit_code is None and refused.failure is not None


def test_release_idle_node(node: Node) -> None:
    node.backend.release_node(ReleaseNode(POOL, NODE))
    node.events.wait_for(lambda e: e == NodeReleased(NODE))


def test_delete_task_files(node: Node) -> None:
    node.run("doomed", "/bin/sh -c 'echo x > out.txt'")
    assert node.events.exited("doomed").exit_code == 0
    assert node.task_dir("doomed").is_dir()
    node.backend.delete_task_files(DeleteTaskFiles(POOL, NODE, JOB, "doomed"))
    assert not node.task_dir("doomed").exists()
    trash = node.backend.root / ".trash"
    poll(lambda: not any(trash.iterdir()), what="the trash to be emptied")
    node.backend.delete_task_files(DeleteTaskFiles(POOL, NODE, JOB, "doomed"))  # idempotent


# --------------------------------------------------------------------------- node files


def test_node_files_list_stat_read(node: Node) -> None:
    node.run("filer", "/bin/sh -c 'printf 0123456789 > data.bin; echo hi'")
    assert node.events.exited("filer").exit_code == 0
    files = node.backend.node_files(POOL, NODE)

    top = {info.path: info for info in files.list("", recursive=False)}
    assert set(top) == {"shared", "startup", "applications", "fsmounts", "workitems", "volatile"}
    assert all(info.is_directory for info in top.values())

    prefix = f"workitems/{JOB}/job-1/filer"
    everything = {info.path: info for info in files.list("", recursive=True)}
    assert f"{prefix}/stdout.txt" in everything
    assert everything[f"{prefix}/wd"].is_directory
    assert everything[f"{prefix}/wd/data.bin"].size == 10
    under = [info.path for info in files.list(f"{prefix}/", recursive=False)]
    assert under == sorted(under)
    assert f"{prefix}/wd" in under and f"{prefix}/wd/data.bin" not in under

    info = files.stat(f"{prefix}/wd/data.bin")
    assert (info.path, info.is_directory, info.size) == (f"{prefix}/wd/data.bin", False, 10)
    assert stat.S_ISREG(int(info.mode, 8))
    assert info.last_modified.tzinfo is not None
    assert files.stat(f"/{prefix}/stdout.txt").size == 3  # a leading '/' is tolerated

    assert files.read(f"{prefix}/wd/data.bin") == b"0123456789"
    assert files.read(f"{prefix}/wd/data.bin", 2, 4) == b"234"  # end is inclusive
    assert files.read(f"{prefix}/wd/data.bin", 7) == b"789"
    assert files.read(f"{prefix}/wd/data.bin", 8, 100) == b"89"
    assert files.read(f"{prefix}/wd/data.bin", 10) == b""


def test_node_files_delete(node: Node) -> None:
    files = node.backend.node_files(POOL, NODE)
    shared = node.layout.shared
    (shared / "dir" / "sub").mkdir(parents=True)
    (shared / "dir" / "sub" / "f.txt").write_text("x")
    (shared / "lone.txt").write_text("y")
    files.delete("shared/lone.txt", recursive=False)
    assert not (shared / "lone.txt").exists()
    with pytest.raises(OSError):
        files.delete("shared/dir", recursive=False)  # not empty
    files.delete("shared/dir", recursive=True)
    assert not (shared / "dir").exists()
    with pytest.raises(PermissionError):
        files.delete("", recursive=True)


def test_node_files_missing(node: Node) -> None:
    files = node.backend.node_files(POOL, NODE)
    with pytest.raises(FileNotFoundError):
        files.stat("shared/nope.txt")
    with pytest.raises(FileNotFoundError):
        files.read("shared/nope.txt")
    with pytest.raises(FileNotFoundError):
        files.delete("shared/nope.txt", recursive=False)
    with pytest.raises(FileNotFoundError):
        files.list("workitems/nope", recursive=True)


def test_node_files_refuse_escapes(node: Node, tmp_path: Path) -> None:
    files = node.backend.node_files(POOL, NODE)
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    shared = node.layout.shared
    (shared / "out-link").symlink_to(outside)
    (shared / "out-dir").symlink_to(tmp_path)
    (shared / "in-link").symlink_to(node.layout.root / "startup")
    for path in (
        "../outside.txt",
        "shared/../../../outside.txt",
        "shared/../..",
        "shared/out-link",
        "shared/out-dir/outside.txt",
    ):
        with pytest.raises(PermissionError):
            files.read(path)
        with pytest.raises(PermissionError):
            files.stat(path)
        with pytest.raises(PermissionError):
            files.delete(path, recursive=True)
    with pytest.raises(PermissionError):
        files.list("shared/out-dir", recursive=True)
    assert outside.read_text() == "secret"
    listed = {info.path for info in files.list("shared", recursive=True)}
    assert "shared/in-link" in listed
    assert not listed & {"shared/out-link", "shared/out-dir"}
    assert files.stat("shared/in-link").is_directory


# --------------------------------------------------------------------------- restart


def test_collect_exit_reads_the_exit_record(node: Node) -> None:
    node.run("done", "/bin/sh -c 'exit 4'")
    exited = node.events.exited("done")
    collected = node.backend.collect_exit(POOL, NODE, JOB, "done", 1)
    assert collected == exited
    assert node.backend.collect_exit(POOL, NODE, JOB, "done", 2) is None  # not this attempt
    assert node.backend.collect_exit(POOL, NODE, JOB, "never-ran", 1) is None
    assert node.backend.collect_exit(POOL, "node-x", JOB, "done", 1) is None


def test_a_restarted_backend_adopts_its_nodes(tmp_path: Path) -> None:
    root = tmp_path / "nodes"
    first = _start_node(root, spawn_inline=False)
    node = next(first)
    node.run("before", "/bin/sh -c 'exit 2'")
    before = node.events.exited("before")
    first.close()

    events = Events()
    backend = LocalBackend(root, ACCOUNT, ACCOUNT_URL)
    backend.start(events)
    try:
        assert backend.collect_exit(POOL, NODE, JOB, "before", 1) == before
        # Not provisioned in this run: the node is adopted from its node.json.
        backend.start_task(TaskLaunch(POOL, NODE, JOB, "after", 1, "/bin/true", (), None))
        assert events.exited("after").exit_code == 0
        backend.release_node(ReleaseNode(POOL, NODE))
        events.wait_for(lambda e: e == NodeReleased(NODE))
    finally:
        backend.close()

    events = Events()
    backend = LocalBackend(root, ACCOUNT, ACCOUNT_URL)
    backend.start(events)
    try:  # a released node is not adopted again
        backend.start_task(TaskLaunch(POOL, NODE, JOB, "late", 1, "/bin/true", (), None))
        late = events.exited("late")
        assert late.exit_code is None and late.failure is not None
    finally:
        backend.close()
