"""Supervise the task attempts of one host: spawn, watch, time out, kill, record, report.

One reaper thread watches every running attempt through a pidfd in one epoll set (no thread per
process) and also enforces wall-clock deadlines. When an attempt ends it writes the exit record
and only then hands the outcome to ``on_exit``. Whatever hosts the node runtime (the local
backend, a Dask worker plugin) owns one supervisor.

Imports: standard library, core effects/records, node.process, node.layout.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import queue
import select
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime

from hybatch.core.effects import TaskLaunch
from hybatch.core.records import FailureInfoRecord
from hybatch.node.layout import TaskPaths
from hybatch.node.process import (
    CODE_EXIT_STATUS_LOST,
    CODE_KILLED_BEFORE_START,
    Attempt,
    ExitRecord,
    LaunchFailed,
    kill_group,
    spawn,
    try_reap,
    utc_now,
    wall_clock_failure,
    write_exit_record,
)

AttemptKey = tuple[str, str, str, int]
"""(node id, lower-cased job id, lower-cased task id, attempt): Batch ids are case-insensitive."""

ExitCallback = Callable[[ExitRecord], None]
StartCallback = Callable[[TaskLaunch, datetime], None]
"""Called when an attempt's process has started (from a spawner thread)."""

_log = logging.getLogger(__name__)

MAX_WAIT_S = 3600.0
_DEADLINE = 0
_FORCE_KILL = 1
_REPORT_START = 2


def attempt_key(node_id: str, job_id: str, task_id: str, attempt: int) -> AttemptKey:
    return (node_id, job_id.lower(), task_id.lower(), attempt)


def launch_key(launch: TaskLaunch) -> AttemptKey:
    return attempt_key(launch.node_id, launch.job_id, launch.task_id, launch.attempt)


class TaskSupervisor:
    """Runs attempts as process groups and reports each exactly once through ``on_exit``.

    ``launch`` spawns in the calling thread (0.1 to 0.2 ms, far more on a loaded disk);
    ``submit`` hands the spawn to the reaper thread and returns in microseconds. Both are safe
    from any thread; every outcome, launch failures and cancelled submissions included, is
    delivered on the reaper thread.
    ``timeout_grace_s`` > 0 sends SIGTERM to a timed-out group first and SIGKILL after the
    grace; 0 kills at once.

    ``spawners=0`` starts no spawner threads (``submit`` is then unavailable): a host that
    drives everything from the reaper thread (``watch`` an fd, ``launch`` from its callback)
    runs the whole node in one thread, with no hand-offs and no GIL contention.
    ``after_poll`` runs on the reaper thread after each batch of wake-ups (to flush reports
    buffered during it).
    """

    def __init__(self, on_exit: ExitCallback, *, timeout_grace_s: float = 0.0,
                 spawners: int = 4, on_start: StartCallback | None = None,
                 start_report_delay_s: float = 0.0,
                 after_poll: Callable[[], None] | None = None) -> None:
        self._on_exit = on_exit
        self._on_start = on_start
        self._start_delay = start_report_delay_s
        """> 0: report a start only if the attempt still runs after this long; a shorter one
        is reported once, by its exit record (which carries the start time)."""
        self._grace = timeout_grace_s
        self._lock = threading.Lock()
        self._by_key: dict[AttemptKey, Attempt] = {}
        self._by_fd: dict[int, Attempt] = {}
        self._per_node: dict[str, set[AttemptKey]] = {}
        self._deadlines: list[tuple[float, int, int, AttemptKey]] = []
        self._seq = itertools.count()
        self._failed: list[LaunchFailed] = []
        self._queued: dict[AttemptKey, bool] = {}
        """Submitted, not yet spawned attempts -> whether a kill cancelled them."""
        self._next_wake = float("inf")
        self._after_poll = after_poll
        self._watched: dict[int, Callable[[], bool]] = {}
        self._epoll = select.epoll()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake_fd, select.EPOLLIN)
        self._stdin_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="hybatch-reaper", daemon=True)
        self._thread.start()
        # Spawning releases the GIL while the child execs, so a few spawner threads overlap
        # process creation (directory set-up, vfork, exec) as a thread pool of peers would.
        self._spawn_queue: queue.SimpleQueue[tuple[TaskLaunch, TaskPaths, dict[str, str]] | None]
        self._spawn_queue = queue.SimpleQueue()
        self._spawners = [threading.Thread(target=self._spawn_loop, name=f"hybatch-spawn-{i}",
                                           daemon=True) for i in range(max(0, spawners))]
        for thread in self._spawners:
            thread.start()

    # ------------------------------------------------------------------ commands

    def submit(self, launch: TaskLaunch, paths: TaskPaths, env: dict[str, str]) -> None:
        """Queue one attempt for a spawner thread to start (the caller does no process work)."""
        if not self._spawners:
            raise RuntimeError("this supervisor has no spawner threads: use launch()")
        with self._lock:
            self._queued[launch_key(launch)] = False
        self._spawn_queue.put((launch, paths, env))

    def _spawn_loop(self) -> None:
        while True:
            item = self._spawn_queue.get()
            if item is None:
                return
            self._start_submitted(*item)

    def launch(self, launch: TaskLaunch, paths: TaskPaths, env: dict[str, str]) -> None:
        """Start one attempt now; its outcome (even 'could not start') arrives via on_exit."""
        self._spawn(launch, paths, env, queued=False)

    def _spawn(
        self, launch: TaskLaunch, paths: TaskPaths, env: dict[str, str], queued: bool
    ) -> None:
        outcome = spawn(launch, paths, env, self._stdin_fd)
        key = launch_key(launch)
        if isinstance(outcome, LaunchFailed):
            if queued:
                with self._lock:
                    self._queued.pop(key, None)
            self.report_failure(outcome)
            return
        with self._lock:
            self._by_key[key] = outcome
            self._by_fd[outcome.pidfd] = outcome
            self._per_node.setdefault(launch.node_id, set()).add(key)
            if queued and self._queued.pop(key, False):
                outcome.kill_requested = True  # killed while it was being spawned
                kill_group(outcome.pid)
            wake = False
            if outcome.deadline is not None:
                self._push(outcome.deadline, _DEADLINE, key)
                wake = outcome.deadline < self._next_wake
        if self._on_start is not None and self._start_delay <= 0:
            # reported before the pidfd is watched, so a start always precedes its exit
            self._report_start(launch, outcome.start_time)
        elif self._on_start is not None:
            with self._lock:  # the reaper reports it later, if the attempt still runs then
                when = time.monotonic() + self._start_delay
                self._push(when, _REPORT_START, key)
                wake = wake or when < self._next_wake
        # epoll_ctl is thread-safe; the dict entry exists before the fd can fire.
        self._epoll.register(outcome.pidfd, select.EPOLLIN)
        if wake:
            self._wake()

    def watch(self, fd: int, on_ready: Callable[[], bool]) -> None:
        """Call ``on_ready`` on the reaper thread whenever ``fd`` is readable, until it
        returns False (or ``unwatch``). Watching a watched fd again replaces its callback."""
        if fd in self._watched:
            self._watched[fd] = on_ready
            return
        self._watched[fd] = on_ready
        self._epoll.register(fd, select.EPOLLIN)

    def unwatch(self, fd: int) -> None:
        """Stop watching ``fd`` (call before closing it; from the reaper thread)."""
        if self._watched.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    def launches(self) -> list[TaskLaunch]:
        """The attempts handed over whose outcome has not been delivered yet: running, or
        failed to start and about to be reported (queued submissions are not included)."""
        with self._lock:
            return ([a.launch for a in self._by_key.values()]
                    + [f.launch for f in self._failed])

    def in_reaper_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _report_start(self, launch: TaskLaunch, start_time: datetime) -> None:
        assert self._on_start is not None
        try:
            self._on_start(launch, start_time)
        except Exception:
            _log.exception("start callback failed for %s/%s", launch.job_id, launch.task_id)

    def report_failure(self, failed: LaunchFailed) -> None:
        """Deliver an attempt that never ran, in order with the others, on the reaper thread."""
        with self._lock:
            self._failed.append(failed)
        self._wake()

    def kill(self, key: AttemptKey) -> bool:
        """SIGKILL the attempt's whole group; False when it is not (or no longer) running."""
        with self._lock:
            attempt = self._by_key.get(key)
            if attempt is None:
                if key in self._queued:
                    self._queued[key] = True  # never spawned; reported as killed
                    return True
                return False
            attempt.kill_requested = True
            # Under the lock: the reaper cannot collect the leader (freeing its pid) meanwhile.
            kill_group(attempt.pid)
        return True

    def kill_node(self, node_id: str) -> int:
        """SIGKILL every attempt running on a node; returns how many were signalled."""
        with self._lock:
            attempts = [self._by_key[k] for k in self._per_node.get(node_id, ())]
            for attempt in attempts:
                attempt.kill_requested = True
                kill_group(attempt.pid)
            queued = [k for k in self._queued if k[0] == node_id]
            for key in queued:
                self._queued[key] = True
        return len(attempts) + len(queued)

    def running(self, node_id: str | None = None) -> int:
        with self._lock:
            if node_id is None:
                return len(self._by_key) + len(self._queued)
            queued = sum(1 for k in self._queued if k[0] == node_id)
            return len(self._per_node.get(node_id, ())) + queued

    def is_running(self, key: AttemptKey) -> bool:
        with self._lock:
            return key in self._by_key or key in self._queued

    def close(self) -> None:
        """Stop the reaper, kill and reap what still runs; no further outcomes are reported
        (a shutdown is not the task's failure: recovery requeues those attempts)."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self._wake()
        self._thread.join()
        for _ in self._spawners:
            self._spawn_queue.put(None)
        for thread in self._spawners:
            thread.join()
        with self._lock:
            attempts = list(self._by_key.values())
            self._by_key.clear()
            self._by_fd.clear()
            self._per_node.clear()
        for attempt in attempts:
            kill_group(attempt.pid)
        for attempt in attempts:
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PIDFD, attempt.pidfd, os.WEXITED)
                attempt.popen.returncode = -signal.SIGKILL
            os.close(attempt.pidfd)
        self._epoll.close()
        os.close(self._wake_fd)
        os.close(self._stdin_fd)

    # ------------------------------------------------------------------ reaper thread

    def _push(self, when: float, kind: int, key: AttemptKey) -> None:
        heapq.heappush(self._deadlines, (when, next(self._seq), kind, key))

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_write(self._wake_fd, 1)

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                failed, self._failed = self._failed, []
                self._next_wake = self._deadlines[0][0] if self._deadlines else float("inf")
                next_wake = self._next_wake
            for item in failed:
                self._finish_failed(item)
            timeout = -1.0
            if next_wake != float("inf"):
                # capped: a far deadline (huge maxWallClockTime) must not overflow epoll's
                # timeout; waking once an hour and re-checking costs nothing
                timeout = min(max(0.0, next_wake - time.monotonic()), MAX_WAIT_S)
            for fd, _ in self._epoll.poll(timeout):
                if fd == self._wake_fd:
                    with contextlib.suppress(BlockingIOError):
                        os.eventfd_read(self._wake_fd)
                    continue
                watched = self._watched.get(fd)
                if watched is not None:
                    self._call_watched(fd, watched)
                    continue
                with self._lock:
                    attempt = self._by_fd.get(fd)
                if attempt is not None:
                    self._collect(attempt)
            self._expire(time.monotonic())
            if self._after_poll is not None:
                try:
                    self._after_poll()
                except Exception:
                    _log.exception("after-poll callback failed")

    def _call_watched(self, fd: int, on_ready: Callable[[], bool]) -> None:
        try:
            keep = on_ready()
        except Exception:
            _log.exception("callback for watched fd %d failed; no longer watched", fd)
            keep = False
        if not keep:
            self._watched.pop(fd, None)
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    def _start_submitted(self, launch: TaskLaunch, paths: TaskPaths, env: dict[str, str]) -> None:
        key = launch_key(launch)
        with self._lock:
            if self._stopping:
                return  # shutting down: not started, not reported (recovery requeues it)
            cancelled = self._queued.get(key, False)
            if cancelled:
                del self._queued[key]
        if not cancelled:
            self._spawn(launch, paths, env, queued=True)
            return
        failure = FailureInfoRecord(
            category="usererror",
            code=CODE_KILLED_BEFORE_START,
            message="The task was killed before its process started",
        )
        self.report_failure(LaunchFailed(launch, paths, failure))

    def _expire(self, now: float) -> None:
        """Act on due deadlines: report starts of attempts still running, time out (SIGTERM
        or SIGKILL), then force-kill after grace."""
        while True:
            with self._lock:
                if not self._deadlines or self._deadlines[0][0] > now:
                    return
                _, _, kind, key = heapq.heappop(self._deadlines)
                attempt = self._by_key.get(key)
                if attempt is None:
                    continue
                if kind == _REPORT_START:
                    launch, started = attempt.launch, attempt.start_time
                else:
                    launch = None
            if launch is not None:
                self._report_start(launch, started)  # outside the lock; reaper thread
                continue
            with self._lock:
                if kind == _DEADLINE:
                    attempt.timed_out = True
                    if self._grace > 0:
                        self._push(now + self._grace, _FORCE_KILL, key)
                        kill_group(attempt.pid, signal.SIGTERM)
                        continue
                kill_group(attempt.pid, signal.SIGKILL)

    def _collect(self, attempt: Attempt) -> None:
        lost = False
        key = launch_key(attempt.launch)
        with self._lock:
            # Reaping under the lock keeps kill() from signalling a pid that was just freed.
            try:
                code = try_reap(attempt)
            except ChildProcessError:
                code, lost = None, True
            if code is None and not lost:
                return  # spurious wake-up
            self._by_fd.pop(attempt.pidfd, None)
            if self._by_key.get(key) is attempt:  # not a duplicate launch of the same attempt
                del self._by_key[key]
                node_keys = self._per_node.get(attempt.launch.node_id)
                if node_keys is not None:
                    node_keys.discard(key)
                    if not node_keys:
                        del self._per_node[attempt.launch.node_id]
        end_time = utc_now()
        self._epoll.unregister(attempt.pidfd)
        os.close(attempt.pidfd)
        if attempt.timed_out or attempt.kill_requested:
            kill_group(attempt.pid)  # descendants that outlived the leader go too
        failure: FailureInfoRecord | None = None
        if attempt.timed_out:
            failure = wall_clock_failure()
        elif lost:
            failure = FailureInfoRecord(
                category="servererror",
                code=CODE_EXIT_STATUS_LOST,
                message="The task process ended but its exit status could not be collected",
            )
        self._finish(
            ExitRecord.of(attempt.launch, exit_code=code, start_time=attempt.start_time,
                          end_time=end_time, timed_out=attempt.timed_out, failure=failure,
                          usage=attempt.usage),
            attempt.paths,
        )

    def _finish_failed(self, failed: LaunchFailed) -> None:
        self._finish(ExitRecord.never_started(failed.launch, failed.failure), failed.paths)

    def _finish(self, record: ExitRecord, paths: TaskPaths) -> None:
        # The record goes to disk first: a crash between the two loses nothing.
        try:
            write_exit_record(paths.task_dir, record)
        except OSError:
            _log.exception("could not write the exit record in %s", paths.task_dir)
        try:
            self._on_exit(record)
        except Exception:
            _log.exception("exit callback failed for %s/%s", record.job_id, record.task_id)
