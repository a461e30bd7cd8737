"""Client-side limits: submit rate and concurrency per model, the global poll rate (virtual time)."""

from __future__ import annotations

import asyncio
import heapq
import itertools

import pytest

from wanx_nb._registry import SubmitLimits
from wanx_nb._request import GenerationRequest
from wanx_nb._scheduler import SUBMIT_MARGIN, Scheduler, SlidingWindow, Slot, estimate_seconds, queue_ahead


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


async def test_turn_wait_says_how_far_the_next_submit_turn_is_without_taking_it():
    # What a retry of a create that never connected asks before waiting for a turn (2 a minute: far).
    vt = VirtualTime()
    sched = Scheduler(clock=vt.clock, sleep=vt.sleep)
    per_minute = SubmitLimits(None, 2, 1)
    assert sched.turn_wait("qwen-image-max") == 0.0  # before its first submit
    await vt.run(sched.submit_turn("qwen-image-max", per_minute))
    await vt.run(sched.submit_turn("qwen-image-max", per_minute))
    assert sched.turn_wait("qwen-image-max") == pytest.approx(60 + SUBMIT_MARGIN)
    assert sched.turn_wait("qwen-image-max") == pytest.approx(60 + SUBMIT_MARGIN)  # asking took no turn
    assert sched.turn_wait("wanx-v1") == 0.0  # limits are per model
    sched.throttled("wanx-v1", 30.0)  # a 429 pauses the model: its next turn is that far too
    assert sched.turn_wait("wanx-v1") == pytest.approx(30.0)


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


async def test_slots_bound_the_tasks_in_flight_per_model_and_release_on_error():
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

    # In flight per model: its concurrency plus queue_ahead (at least 2) queued at the service.
    assert queue_ahead(1) == 2 and queue_ahead(2) == 2 and queue_ahead(5) == 5
    jobs = [task("v1", 1, fail=True)] + [task("v1", 1) for _ in range(4)] + [task("v2", 2) for _ in range(6)]
    results = await vt.run(asyncio.gather(*jobs, return_exceptions=True))
    assert isinstance(results[0], RuntimeError)
    assert peak == {"v1": 3, "v2": 4}
    assert sorted(t for m, t in finished if m == "v1") == [10.0, 10.0, 10.0, 20.0, 20.0]
    assert sorted(t for m, t in finished if m == "v2") == [10.0] * 4 + [20.0] * 2
    assert sched.active("v1") == 0 and sched.active("v2") == 0


async def test_a_request_waiting_for_a_place_is_withdrawn_by_cancelling_it():
    vt = VirtualTime()
    sched = Scheduler(clock=vt.clock, sleep=vt.sleep)
    sent: list[int] = []

    async def task(i: int) -> None:
        async with sched.slot("v1", 1):
            sent.append(i)
            await vt.sleep(10.0)

    async def scenario() -> None:
        jobs = [asyncio.ensure_future(task(i)) for i in range(4)]
        await vt.sleep(1.0)
        jobs[3].cancel()  # the fourth never got a place: nothing was sent for it
        await asyncio.gather(*jobs, return_exceptions=True)

    await vt.run(scenario())
    assert sent == [0, 1, 2] and sched.active("v1") == 0


def test_a_queued_task_is_expected_to_start_when_the_tasks_ahead_free_a_slot():
    sched = Scheduler(clock=lambda: 0.0, sleep=asyncio.sleep)
    queue: dict[str, tuple[float, float]] = {}
    a, b, c, d = (Slot(queue, concurrency=2) for _ in range(4))
    assert a.submitted("a", 0.0, 10.0) == 0.0  # slots free: starts when submitted
    assert b.submitted("b", 0.5, 4.0) == 0.5
    assert c.submitted("c", 1.0, 10.0) == 4.5  # both slots busy: the earlier end (b at 4.5) frees one
    assert d.submitted("d", 1.5, 10.0) == 10.0  # then a's end at 10.0 (c holds b's slot until 14.5)
    b.release()
    # A task ahead that already ended (expected end before the submit) does not hold a slot.
    late = Slot(queue, concurrency=2)
    assert late.submitted("late", 30.0, 1.0) == 30.0
    assert sched.expected_start("nobody") is None


async def test_the_scheduler_reports_the_expected_start_of_its_tasks_until_they_end():
    vt = VirtualTime()
    sched = Scheduler(clock=vt.clock, sleep=vt.sleep)
    seen: dict[str, float | None] = {}

    async def task(name: str, at: float) -> None:
        await vt.sleep(at)
        async with sched.slot("v1", 1) as slot:
            slot.submitted(name, vt.now, 10.0)
            seen[name] = sched.expected_start(name)
            await vt.sleep(10.0 if name == "first" else 25.0)

    await vt.run(asyncio.gather(task("first", 0.0), task("second", 1.0), task("third", 2.0)))
    assert seen == {"first": 0.0, "second": 10.0, "third": 20.0}
    assert all(sched.expected_start(name) is None for name in seen)  # released with their slots


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


def test_a_window_is_refused_unless_it_can_hold_an_event_and_keeps_its_latest_reservation():
    with pytest.raises(ValueError, match=r"limit >= 1 and window > 0, got 1 per 0s"):
        SlidingWindow(1, 0)
    # After a paused reservation, later callers queue behind it even while the window has room.
    w = SlidingWindow(3, 1.0)
    assert w.reserve(0.0, not_before=5.0) == 5.0
    assert [w.reserve(0.0) for _ in range(3)] == [5.0, 5.0, 6.0]


def test_a_fractional_rate_is_kept_as_its_floor_above_one_and_spaced_with_the_margin_below():
    fast = SlidingWindow.per_second(1.5, margin=0.1)
    assert [fast.reserve(0.0) for _ in range(2)] == pytest.approx([0.0, 1.1])  # 1 per second, not 1.5
    slow = SlidingWindow.per_second(0.5, margin=0.1)
    assert [slow.reserve(0.0) for _ in range(2)] == pytest.approx([0.0, 2.1])  # 1 per 2 s, plus the margin


async def submit_times(limits: SubmitLimits | float, count: int) -> list[float]:
    """When `count` back-to-back submits of one model go out under `limits` (virtual time)."""
    vt = VirtualTime()
    sched = Scheduler(clock=vt.clock, sleep=vt.sleep)

    async def scenario() -> list[float]:
        times = []
        for _ in range(count):
            await sched.submit_turn("m", limits)
            times.append(vt.now)
        return times

    return await vt.run(scenario())


async def test_submits_keep_the_per_minute_cap_of_the_model():
    m = SUBMIT_MARGIN
    assert await submit_times(SubmitLimits(None, 2, 2), 4) == pytest.approx([0, 0, 60 + m, 60 + m])
    assert await submit_times(SubmitLimits(None, 1, 1), 2) == pytest.approx([0, 60 + m])
    assert await submit_times(SubmitLimits(None, 1.5, 1), 2) == pytest.approx([0, 60 + m])  # the floor: 1 a minute
    assert await submit_times(SubmitLimits(None, 0.5, 1), 2) == pytest.approx([0, 120 + m])  # 1 per 2 minutes
    # Both caps at once: the second window holds the third submit although the first would allow it.
    assert await submit_times(SubmitLimits(2, 2, 2), 3) == pytest.approx([0, 0, 60 + m])


async def test_submits_keep_the_per_second_cap_and_a_model_without_caps_is_never_held():
    m = SUBMIT_MARGIN
    assert await submit_times(SubmitLimits(1, None, 1), 3) == pytest.approx([0, 1 + m, 2 + 2 * m])
    assert await submit_times(0.5, 2) == pytest.approx([0, 2 + m])  # a bare rate below one per second
    assert await submit_times(SubmitLimits(None, None, 2), 5) == [0.0] * 5
    assert await submit_times(SubmitLimits(0, 0, 2), 5) == [0.0] * 5  # 0: no such cap


async def test_a_short_429_pause_ends_when_the_service_said():
    vt = VirtualTime()
    sched = Scheduler(clock=vt.clock, sleep=vt.sleep)

    async def scenario() -> float:
        await sched.submit_turn("a", 2)
        sched.throttled("a", 0.5)
        return await sched.submit_turn("a", 2)

    assert await vt.run(scenario()) == 0.5 and vt.now == 0.5


def batch(model: str, count: int, **params: object) -> list[GenerationRequest]:
    return [GenerationRequest(f"prompt {i}", model=model, **params) for i in range(count)]  # type: ignore[arg-type]


def test_the_estimate_runs_each_model_on_its_slots_at_its_submit_rate():
    assert estimate_seconds([]) == 0.0
    # wanx-v1: one task at a time, 30 s each.
    assert estimate_seconds(batch("wanx-v1", 3)) == pytest.approx(90.0)
    # wan2.2-t2i-flash: 2 slots, 2 submits per second, 11.5 s with prompt rewriting (its default), 8 s without.
    assert estimate_seconds(batch("wan2.2-t2i-flash", 5)) == pytest.approx(34.5)  # waves end at 11.5, 23, 34.5
    assert estimate_seconds(batch("wan2.2-t2i-flash", 1, prompt_extend=False)) == pytest.approx(8.0)
    # qwen-image-max: 2 submits a minute, 20 s each: two now, two a minute later.
    assert estimate_seconds(batch("qwen-image-max", 4)) == pytest.approx(80.0)
    # Models run side by side; a request for an unknown model counts nothing, wherever it comes.
    mixed = batch("no-such-model", 1) + batch("qwen-image-max", 4) + batch("wanx-v1", 3)
    assert estimate_seconds(mixed) == pytest.approx(90.0)
    # The typical durations scale with the emulator's time scale; the submit rate does not.
    assert estimate_seconds(batch("z-image-turbo", 1), time_scale=0.1) == pytest.approx(0.3)


def test_the_estimate_follows_the_region_of_the_scheduler():
    wan = batch("wan2.6-t2i", 5)  # 5 slots, 27.5 s each; 1 submit per second in Beijing, 5 elsewhere
    assert estimate_seconds(wan) == pytest.approx(31.5)
    assert estimate_seconds(wan, "singapore") == pytest.approx(27.5)
    assert Scheduler(clock=lambda: 0.0, sleep=asyncio.sleep).estimate(wan) == pytest.approx(31.5)
    singapore = Scheduler(clock=lambda: 0.0, sleep=asyncio.sleep, region="singapore")
    assert singapore.estimate(wan) == pytest.approx(27.5)
    assert singapore.estimate(batch("z-image-turbo", 1), time_scale=0.1) == pytest.approx(0.3)
