"""The writer loop: one thread that owns the core, the store's writes and effect dispatch.

Each turn: wait for messages (or the tick interval), drain what is queued, hand each message
to ``BatchCore.handle``, commit every changed record in one transaction, then execute the
effects and answer the callers. Commit-then-act: nothing reaches a backend or a caller before
the state that caused it is durable.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from hybatch.core.cluster import ChangeSet
from hybatch.core.commands import Command, task_targets
from hybatch.core.dependencies import reactivation_targets
from hybatch.core.effects import (
    DeleteTaskFiles,
    Effect,
    KillNodeTask,
    KillTask,
    ProvisionNode,
    ReleaseNode,
    RestartNode,
    RunNodeTask,
    StartTask,
)
from hybatch.core.errors import DomainError
from hybatch.core.events import Event, Tick
from hybatch.core.machine import BatchCore
from hybatch.core.records import task_key
from hybatch.ports import Changes, Clock, ComputeBackend, Store

log = logging.getLogger(__name__)

MAX_BATCH = 20_000

Reply = Callable[[Any], Any]


@dataclass(slots=True)
class _Item:
    message: Command | Event
    future: Future[Any] | None
    reply: Reply | None


def to_port_changes(changes: ChangeSet) -> Changes:
    return Changes(
        pools=list(changes.pools.values()), nodes=list(changes.nodes.values()),
        jobs=list(changes.jobs.values()), tasks=list(changes.tasks.values()),
        deleted_pools=sorted(changes.deleted_pools), deleted_nodes=sorted(changes.deleted_nodes),
        deleted_jobs=sorted(changes.deleted_jobs), deleted_tasks=sorted(changes.deleted_tasks),
        usage=changes.usage,
        job_schedules=list(changes.job_schedules.values()),
        deleted_job_schedules=sorted(changes.deleted_job_schedules),
    )


class WriterLoop:
    """Runs ``BatchCore`` on its own thread. ``submit`` for commands, ``post`` for events."""

    def __init__(self, *, core: BatchCore, store: Store, backend: ComputeBackend, clock: Clock,
                 tick_seconds: float = 1.0) -> None:
        self._core = core
        self._store = store
        self._backend = backend
        self._clock = clock
        self._tick = tick_seconds
        self._inbox: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="hybatch-writer", daemon=True)
        self._stopping = False
        self.turns = 0

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._inbox.put(_Item(Tick(), None, None))  # its turn saves what waits for a tick
        self._inbox.put(None)
        self._thread.join(timeout=30)

    def submit(self, command: Command, reply: Reply | None = None) -> Future[Any]:
        """Queue a command; the future gets ``reply(result)`` (computed on the writer thread,
        after commit) or the DomainError."""
        future: Future[Any] = Future()
        self._inbox.put(_Item(command, future, reply))
        return future

    def post(self, event: Event) -> None:
        """Queue an event from a backend or timer (thread-safe, never blocks)."""
        self._inbox.put(_Item(event, None, None))

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        """Turn after turn. A Tick goes into the first turn after each ``tick_seconds``
        whether or not other messages keep the loop busy: timers (usage intervals, job
        schedules) must not wait for a quiet moment."""
        next_tick = time.monotonic() + self._tick
        while True:
            try:
                first = self._inbox.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                first = _Item(Tick(), None, None)
                next_tick = time.monotonic() + self._tick
            if first is None:
                if self._stopping:
                    return
                continue
            batch = [first]
            stop_after = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop_after = True
                    break
                batch.append(item)
            if time.monotonic() >= next_tick:
                if not isinstance(first.message, Tick):
                    batch.append(_Item(Tick(), None, None))
                next_tick = time.monotonic() + self._tick
            try:
                self._turn(batch)
            except Exception:  # the loop must survive anything; callers get the error
                log.exception("writer turn failed")
            if stop_after and self._stopping:
                return

    def _turn(self, batch: list[_Item]) -> None:
        now = self._clock.now()
        effects: list[Effect] = []
        answers: list[tuple[_Item, object, BaseException | None]] = []
        for item in batch:
            if item.future is not None:  # commands carry futures, events never do
                self._preload(item.message)
            try:
                outcome = self._core.handle(item.message, now)
            except DomainError as error:
                answers.append((item, None, error))
                continue
            except Exception as error:
                log.exception("core failed on %r", item.message)
                answers.append((item, None, error))
                continue
            effects.extend(outcome.effects)
            answers.append((item, outcome.result, None))
        changes = self._core.take_changes()
        port_changes = to_port_changes(changes)
        try:
            if not port_changes.is_empty():
                self._store.apply(port_changes)
        except Exception as error:
            # the store is the truth: drop this turn's changes (none of its effects ran and
            # every caller in it gets the error) by reloading the core from the store
            log.exception("commit failed; reloading state from the store")
            self._reload_core()
            for item, _, _ in answers:
                if item.future is not None:
                    item.future.set_exception(error)
            return
        self.turns += 1
        for effect in effects:
            self._dispatch(effect)
        for item, result, refusal in answers:
            if item.future is None:
                continue
            if refusal is not None:
                item.future.set_exception(refusal)
                continue
            try:
                value = item.reply(result) if item.reply is not None else result
            except Exception as reply_error:
                log.exception("reply failed")
                item.future.set_exception(reply_error)
                continue
            item.future.set_result(value)

    def _reload_core(self) -> None:
        store = self._store
        self._core.reset()
        self._core.restore(store.load_pools(), store.load_nodes(), store.load_jobs(),
                           store.load_unfinished_tasks(), store.load_job_schedules())

    def _preload(self, command: Command | Event) -> None:
        """Load stored tasks a command targets that are not in memory (completed ones), then
        the stored parents a reactivated task waits for again."""
        self._load_tasks(task_targets(command))
        self._load_tasks(reactivation_targets(command, self._core.state))

    def _load_tasks(self, targets: list[tuple[str, str]]) -> None:
        if not targets:
            return
        known = self._core.state.tasks
        missing = [task_key(j, t) for j, t in targets if task_key(j, t) not in known]
        if not missing:
            return
        job_key = missing[0][0]
        if self._core.state.jobs.get(job_key) is None:
            return
        stored = self._store.get_tasks(job_key, [k[1] for k in missing])
        self._core.adopt(stored)

    def _dispatch(self, effect: Effect) -> None:
        try:
            if isinstance(effect, StartTask):
                self._backend.start_task(effect.launch)
            elif isinstance(effect, KillTask):
                self._backend.kill_task(effect)
            elif isinstance(effect, ProvisionNode):
                self._backend.provision_node(effect)
            elif isinstance(effect, ReleaseNode):
                self._backend.release_node(effect)
            elif isinstance(effect, DeleteTaskFiles):
                self._backend.delete_task_files(effect)
            elif isinstance(effect, RestartNode):
                self._backend.restart_node(effect)
            elif isinstance(effect, RunNodeTask):
                self._backend.run_node_task(effect.launch)
            elif isinstance(effect, KillNodeTask):
                self._backend.kill_node_task(effect)
        except Exception:
            log.exception("effect %r failed", effect)
