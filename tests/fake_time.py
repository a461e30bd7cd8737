"""Virtual time for async tests: sleeps on an emulator's fake clock, advanced whenever the loop is idle
and no work is out in a thread (the emulator renders images in starlette's thread pool: fake time
passing while it renders would make real slowness look like a late poll).

Give a client `client._clock = time.now`, `client._wall = time.now` and `client._sleep = time.sleep`, and
run `time.drive()` as a task beside the code under test: nothing then waits in real time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

import anyio.to_thread

from wanx_nb.emulator import Emulator


class FakeTime:
    """Sleeps on the emulator's fake clock; `drive()` advances it whenever the loop is idle."""

    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()

    def now(self) -> float:
        return self.emu.now()

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now() + seconds, next(self._ids), fut))
        await fut

    async def drive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            for _ in range(10_000):
                await asyncio.sleep(0)
                if not loop._ready:  # type: ignore[attr-defined]  # nothing else can run now
                    break
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)  # cancelled sleeps
            if self._sleepers and not _threads_busy():
                at, _, fut = heapq.heappop(self._sleepers)
                if at > self.now():
                    self.emu.advance(at - self.now())
                fut.set_result(None)
            else:
                await asyncio.sleep(0.001)  # waiting on a thread (image rendering): let it finish


def _threads_busy() -> bool:
    """Whether starlette's `run_in_threadpool` (anyio's worker threads) has work out on this loop."""
    return anyio.to_thread.current_default_thread_limiter().borrowed_tokens > 0
