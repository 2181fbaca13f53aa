"""Recovery with a backend whose nodes outlived the server: the attempts the store has in
flight go to ``reattach``; those still running stay running (not requeued), those that ended
are settled from what the node kept, the unknown ones are requeued."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from hybatch.backends.fake import FakeBackend
from hybatch.core import commands as cmd
from hybatch.core.effects import StartTask
from hybatch.core.events import Event, NodeReady, TaskExited, TaskLost, TaskStarted
from hybatch.core.machine import BatchCore, Message, Outcome
from hybatch.ports import AttemptRef, Reattaching
from hybatch.runtime.loop import to_port_changes
from hybatch.runtime.recovery import recover
from hybatch.schema import BatchJobCreateOptions, BatchPoolCreateOptions, BatchTaskCreateOptions
from hybatch.store.memory import MemoryStore

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


class Ids:
    def node_id(self, pool_id: str) -> str:
        return "node-1"


class SurvivingNodes(FakeBackend):
    """Nodes that kept running while the server was away: ``held`` still run, ``ended`` have
    an outcome, anything else is unknown."""

    def __init__(self, held: set[str], ended: dict[str, TaskExited]) -> None:
        super().__init__()
        self.held, self.ended = held, ended
        self.asked: list[AttemptRef] = []

    def reattach(self, attempts: Sequence[AttemptRef]) -> list[Event]:
        self.asked.extend(attempts)
        events: list[Event] = []
        for ref in attempts:
            if ref.task_id in self.held:
                continue
            events.append(self.ended.get(ref.task_id)
                          or TaskLost(job_id=ref.job_id, task_id=ref.task_id, attempt=ref.attempt))
        return events


def _commit(core: BatchCore, store: MemoryStore, message: Message) -> Outcome:
    outcome = core.handle(message, NOW)
    store.apply(to_port_changes(core.take_changes()))
    return outcome


def test_attempts_still_running_are_kept_and_the_rest_settled() -> None:
    store = MemoryStore()
    core = BatchCore(Ids())
    _commit(core, store, cmd.CreatePool(BatchPoolCreateOptions.model_validate(
        {"id": "p", "vmSize": "x", "targetDedicatedNodes": 1, "taskSlotsPerNode": 3})))
    _commit(core, store, NodeReady("node-1"))
    _commit(core, store, cmd.CreateJob(BatchJobCreateOptions.model_validate(
        {"id": "j", "poolInfo": {"poolId": "p"}})))
    added = _commit(core, store, cmd.AddTasks("j", tuple(
        BatchTaskCreateOptions.model_validate({"id": f"t{i}", "commandLine": "/bin/true"})
        for i in range(1, 5))))
    offered = sorted(e.launch.task_id for e in added.effects if isinstance(e, StartTask))
    assert offered == ["t1", "t2", "t3"]  # three slots; t4 waits
    _commit(core, store, TaskStarted("j", "t1", 1, NOW))
    # the server dies here; its node keeps going: t1 still runs, t2 ended, t3's offer is lost

    backend = SurvivingNodes(held={"t1"}, ended={"t2": TaskExited(
        "j", "t2", 1, exit_code=0, start_time=NOW, end_time=NOW + timedelta(seconds=1))})
    assert isinstance(backend, Reattaching)
    restarted = BatchCore(Ids())
    events = recover(restarted, store, backend)

    assert sorted((r.task_id, r.attempt, r.node_id) for r in backend.asked) == [
        ("t1", 1, "node-1"), ("t2", 1, "node-1"), ("t3", 1, "node-1")]
    assert [(type(e), e.task_id) for e in events] == [(TaskExited, "t2"), (TaskLost, "t3")]
    again = []
    for event in events:
        again += [e.launch for e in restarted.handle(event, NOW).effects
                  if isinstance(e, StartTask)]
    restarted.take_changes()
    tasks = restarted.state.tasks
    assert tasks[("j", "t1")].state == "running" and tasks[("j", "t1")].attempt == 1
    assert ("j", "t2") not in tasks or tasks[("j", "t2")].state == "completed"
    assert tasks[("j", "t3")].requeue_count == 1
    # t1 keeps its slot: the two free ones go to t4 and to t3's next attempt
    assert sorted((launch.task_id, launch.attempt) for launch in again) == [("t3", 2), ("t4", 1)]
