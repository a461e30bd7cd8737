"""Client-side limits: submit rate and concurrency per model, the global poll rate (virtual time)."""

from __future__ import annotations

import asyncio
import heapq
import itertools

import pytest

from wanx_nb._scheduler import SUBMIT_MARGIN, Scheduler, SlidingWindow


class VirtualTime:
    """A clock that jumps to the next sleeper's wake-up time whenever the event loop is idle."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._ids), fut))
        await fut

    async def run(self, coro):  # type: ignore[no-untyped-def]
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        while not task.done():
            for _ in range(1000):  # let everything runnable run
                await asyncio.sleep(0)
                if not loop._ready:  # type: ignore[attr-defined]
                    break
            if self._sleepers and not task.done():
                at, _, fut = heapq.heappop(self._sleepers)
                self.now = max(self.now, at)
                fut.set_result(None)
        return task.result()


def windows_ok(times: list[float], limit: int, window: float) -> bool:
    times = sorted(times)
    return all(times[i + limit] - times[i] >= window - 1e-9 for i in range(len(times) - limit))


def test_sliding_window_reserves_the_earliest_allowed_times():
    w = SlidingWindow(2, 1.0)
    assert [w.reserve(0.0) for _ in range(6)] == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    assert w.reserve(10.0) == 10.0
    assert w.reserve(0.0, not_before=20.0) == 20.0
    assert w.reserve(0.0) == 20.0  # never before an earlier reservation
    slow = SlidingWindow.per_second(0.5)
    assert [slow.reserve(0.0) for _ in range(3)] == [0.0, 2.0, 4.0]
    with pytest.raises(ValueError):
        SlidingWindow(0, 1.0)


async def test_concurrent_submits_keep_the_rate_of_each_model():
    vt = VirtualTime()
    sched = Scheduler(clock=vt.clock, sleep=vt.sleep)
    sent: dict[str, list[float]] = {"a": [], "b": []}

    async def submit(model: str) -> None:
        await sched.submit_turn(model, 2)
        sent[model].append(vt.now)

    await vt.run(asyncio.gather(*(submit(m) for m in "abababab")))
    for times in sent.values():
        assert len(times) == 4 and windows_ok(times, 2, 1.0)
    # Models do not wait for each other, and no submit waits longer than the rule requires.
    assert sorted(sent["a"]) == pytest.approx([0, 0, 1 + SUBMIT_MARGIN, 1 + SUBMIT_MARGIN])
    assert sent["a"] == pytest.approx(sent["b"])


async def test_a_429_pauses_only_that_model():
    vt = VirtualTime()
    sched = Scheduler(clock=vt.clock, sleep=vt.sleep)

    async def scenario() -> tuple[float, float]:
        await sched.submit_turn("a", 2)
        sched.throttled("a", 5.0)
        await sched.submit_turn("b", 2)
        b_at = vt.now
        await sched.submit_turn("a", 2)
        return b_at, vt.now

    b_at, a_at = await vt.run(scenario())
    assert b_at == 0.0 and a_at == 5.0


async def test_slots_bound_concurrency_per_model_and_release_on_error():
    vt = VirtualTime()
    sched = Scheduler(clock=vt.clock, sleep=vt.sleep)
    peak = {"v1": 0, "v2": 0}
    finished: list[tuple[str, float]] = []

    async def task(model: str, limit: int, fail: bool = False) -> None:
        async with sched.slot(model, limit):
            peak[model] = max(peak[model], sched.active(model))
            await vt.sleep(10.0)
            finished.append((model, vt.now))
            if fail:
                raise RuntimeError("boom")

    jobs = [task("v1", 1, fail=True), task("v1", 1), task("v1", 1)] + [task("v2", 2) for _ in range(4)]
    results = await vt.run(asyncio.gather(*jobs, return_exceptions=True))
    assert isinstance(results[0], RuntimeError)
    assert peak == {"v1": 1, "v2": 2}
    assert sorted(t for m, t in finished if m == "v1") == [10.0, 20.0, 30.0]
    assert sorted(t for m, t in finished if m == "v2") == [10.0, 10.0, 20.0, 20.0]
    assert sched.active("v1") == 0 and sched.active("v2") == 0


async def test_polls_keep_the_account_query_rate():
    vt = VirtualTime()
    sched = Scheduler(clock=vt.clock, sleep=vt.sleep, query_qps=10)
    times: list[float] = []

    async def poll() -> None:
        await sched.query_turn()
        times.append(vt.now)

    await vt.run(asyncio.gather(*(poll() for _ in range(35))))
    assert windows_ok(times, 10, 1.0)
    assert max(times) == 3.0  # 35 polls at 10 per second: the last one starts at t=3
