"""The resource usage a node measures when it reaps an attempt (for ``$expand=stats``): real
processes reaped by ``try_reap``, and the usage kept in exit records and events."""

from __future__ import annotations

import json
import os
import select
from datetime import UTC, datetime
from pathlib import Path

from hybatch.core.effects import TaskLaunch
from hybatch.core.records import ProcessUsage
from hybatch.node.layout import NodeLayout
from hybatch.node.process import (
    Attempt,
    ExitRecord,
    read_exit_record,
    spawn,
    try_reap,
    write_exit_record,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
T1 = datetime(2024, 5, 1, 12, 0, 3, tzinfo=UTC)
USAGE = ProcessUsage(user_cpu_s=1.25, kernel_cpu_s=0.5, read_bytes=4096, write_bytes=8192)


def _launch(command_line: str) -> TaskLaunch:
    return TaskLaunch(pool_id="pool", node_id="node", job_id="job", task_id="t", attempt=1,
                      command_line=command_line, environment=(), max_wall_clock_s=None)


def _run_to_exit(tmp_path: Path, command_line: str) -> tuple[Attempt, int]:
    """Spawn ``command_line`` and reap it once its pidfd says it exited."""
    paths = NodeLayout(tmp_path).task("job", "t")
    stdin = os.open(os.devnull, os.O_RDONLY)
    try:
        attempt = spawn(_launch(command_line), paths, {"PATH": "/bin:/usr/bin"}, stdin)
    finally:
        os.close(stdin)
    assert isinstance(attempt, Attempt)
    try:
        readable, _, _ = select.select([attempt.pidfd], [], [], 60)  # the pidfd wakes on exit
        assert readable, "the task process did not exit within 60 s"
        code = try_reap(attempt)
    finally:
        os.close(attempt.pidfd)
    assert code is not None
    return attempt, code


def test_reaping_measures_the_cpu_of_the_process_tree(tmp_path: Path) -> None:
    # the shell's child does the work: descendants the shell waited for are counted too
    attempt, code = _run_to_exit(
        tmp_path, "/bin/sh -c 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exit 3'")
    assert code == 3
    usage = attempt.usage
    assert usage is not None
    assert usage.user_cpu_s + usage.kernel_cpu_s > 0
    assert usage.read_bytes >= 0 and usage.write_bytes >= 0


def test_reaping_a_killed_process_keeps_its_signal_code(tmp_path: Path) -> None:
    attempt, code = _run_to_exit(tmp_path, "/bin/sh -c 'kill -9 $$'")
    assert code == 128 + 9
    assert attempt.usage is not None


def test_usage_travels_in_the_exit_record_and_event(tmp_path: Path) -> None:
    record = ExitRecord.of(_launch("/bin/true"), exit_code=0, start_time=T0, end_time=T1,
                           usage=USAGE)
    write_exit_record(tmp_path, record)
    data = json.loads((tmp_path / "exit.json").read_text())
    assert data["usage"] == {"userCpuSeconds": 1.25, "kernelCpuSeconds": 0.5,
                             "readBytes": 4096, "writeBytes": 8192}
    loaded = read_exit_record(tmp_path)
    assert loaded == record
    assert loaded is not None and loaded.to_event().usage == USAGE


def test_exit_records_without_usage_still_load(tmp_path: Path) -> None:
    record = ExitRecord.of(_launch("/bin/true"), exit_code=0, start_time=T0, end_time=T1)
    write_exit_record(tmp_path, record)
    data = json.loads((tmp_path / "exit.json").read_text())
    assert data["usage"] is None
    del data["usage"]  # as written before the field existed
    (tmp_path / "exit.json").write_text(json.dumps(data))
    loaded = read_exit_record(tmp_path)
    assert loaded is not None and loaded.usage is None and loaded.to_event().usage is None
    data["usage"] = {"userCpuSeconds": "lots"}  # damaged: the record is unreadable, no crash
    (tmp_path / "exit.json").write_text(json.dumps(data))
    assert read_exit_record(tmp_path) is None
