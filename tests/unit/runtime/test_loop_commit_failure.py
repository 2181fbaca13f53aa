"""A turn whose commit fails leaves no trace: the writer reloads the core from the store, the
callers get the error, nothing runs, and the next commands work."""

from __future__ import annotations

import pytest

from hybatch.backends.fake import FakeBackend
from hybatch.core import commands as cmd
from hybatch.core.machine import BatchCore
from hybatch.ports import Changes
from hybatch.runtime.clock import FakeClock
from hybatch.runtime.loop import WriterLoop
from hybatch.schema import BatchJobCreateOptions, BatchPoolCreateOptions
from hybatch.store.memory import MemoryStore


class FlakyStore(MemoryStore):
    """A memory store whose next ``apply`` fails once when armed."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = False

    def apply(self, changes: Changes) -> None:
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk full")
        super().apply(changes)


class Ids:
    def __init__(self) -> None:
        self.n = 0

    def node_id(self, pool_id: str) -> str:
        self.n += 1
        return f"node-{self.n}"


def test_failed_commit_is_dropped_and_the_loop_goes_on() -> None:
    store = FlakyStore()
    backend = FakeBackend()
    core = BatchCore(Ids())
    loop = WriterLoop(core=core, store=store, backend=backend, clock=FakeClock(),
                      tick_seconds=60)
    backend.start(loop.post)
    loop.start()
    try:
        pool = BatchPoolCreateOptions.model_validate({"id": "p", "vmSize": "x"})
        loop.submit(cmd.CreatePool(pool)).result(timeout=10)
        store.fail_next = True
        job = BatchJobCreateOptions.model_validate({"id": "j", "poolInfo": {"poolId": "p"}})
        with pytest.raises(OSError, match="disk full"):
            loop.submit(cmd.CreateJob(job)).result(timeout=10)
        # not in memory either: creating it again works (no phantom JobExists)
        loop.submit(cmd.CreateJob(job)).result(timeout=10)
        assert store.get_job("j") is not None
        assert set(core.state.pools) == {"p"} and set(core.state.jobs) == {"j"}
    finally:
        loop.stop()
        backend.close()
