"""Timers must not wait for a quiet moment: under a steady stream of messages the writer still
hands the core a Tick every ``tick_seconds``."""

from __future__ import annotations

import threading
import time
from typing import Any

from hybatch.backends.fake import FakeBackend
from hybatch.core.events import NodeLost, Tick
from hybatch.core.machine import BatchCore
from hybatch.runtime.clock import FakeClock
from hybatch.runtime.loop import WriterLoop
from hybatch.store.memory import MemoryStore


class Ids:
    def node_id(self, pool_id: str) -> str:
        return "node-1"


class CountingCore(BatchCore):
    """A real core that counts the ticks it is handed."""

    def __init__(self) -> None:
        super().__init__(Ids())
        self.ticks = 0

    def handle(self, message: Any, now: Any) -> Any:
        if isinstance(message, Tick):
            self.ticks += 1
        return super().handle(message, now)


def test_ticks_arrive_while_events_keep_the_loop_busy() -> None:
    core = CountingCore()
    loop = WriterLoop(core=core, store=MemoryStore(), backend=FakeBackend(), clock=FakeClock(),
                      tick_seconds=0.05)
    loop.start()
    stop = threading.Event()

    def flood() -> None:  # an event every millisecond: never 50 ms of quiet
        while not stop.is_set():
            loop.post(NodeLost("no-such-node", "flood"))
            stop.wait(0.001)

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    try:
        deadline = time.monotonic() + 10
        while core.ticks < 3 and time.monotonic() < deadline:
            stop.wait(0.01)
        assert core.ticks >= 3
    finally:
        stop.set()
        flooder.join()
        loop.stop()
