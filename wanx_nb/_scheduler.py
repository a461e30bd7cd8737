"""Client-side limits, so a batch finishes as early as the service allows without ever being throttled.

Three limits, all per account (one `Scheduler` per client, which talks to one region):
- submit rate, per model and region (`_registry.submit_limits`): at most the per-second limit in any
  sliding window of one second, and at most the per-minute limit (qwen-image-max: 2) in any window of
  60 s (each plus a small safety margin for network jitter);
- in flight, per model: at most `spec.concurrency` running tasks plus `queue_ahead(concurrency)`
  queued ones. `AsyncWanxClient.generate()` holds a slot from before the submit until the task ends.
  The service queues a task created above its concurrency as PENDING (§3.5) and starts it the moment
  a slot frees, so keeping a few queued means a freed slot never waits for us to notice the end
  (our detection lag would otherwise become idle server time). Only a few: a request not sent yet
  can still be withdrawn, and a queued task is cancellable (PENDING) like any other;
- query rate, global: at most QUERY_QPS polls per second (the service allows 20 per account).

When the service still answers 429 to a submit, `throttled(model, delay)` pauses that model's
submits; the client retries (bounded) and no error surfaces unless the retries run out.

Rate limits are reservations on a clock: `reserve()` picks the earliest start that keeps the window
rule, records it and returns it, so concurrent callers never race and no lock is needed. The clock
and the sleep are injected (tests drive a fake clock).

A queued task starts when the tasks ahead of it free a slot: `Slot.submitted()` records when each
task is expected to end (first come, first served on `concurrency` slots, as the service runs them)
and `expected_start(task_id)` tells the poll schedule when a task should start running.

`estimate_seconds(requests, region)` is the pre-flight time of a batch under these limits: the
earliest the last request can end if every task takes its model's typical time (a lower bound the
limits allow; a grid with qwen-image-max says it needs minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from ._constants import QUERY_QPS
from ._registry import SubmitLimits, get_model, submit_limits
from ._request import GenerationRequest

__all__ = [
    "SUBMIT_MARGIN",
    "Scheduler",
    "SlidingWindow",
    "Slot",
    "estimate_seconds",
    "in_flight",
    "queue_ahead",
    "submit_windows",
]

# Extra seconds added to the submit window: requests sent exactly one window apart can arrive closer
# together than they left.
SUBMIT_MARGIN = 0.1


def queue_ahead(concurrency: int) -> int:
    """Tasks kept queued at the service beyond its `concurrency`: enough to refill every slot at once
    (tasks often end together), at least two."""
    return max(concurrency, 2)


def in_flight(concurrency: int) -> int:
    """Places one model holds at most (`Scheduler.slot`): its running tasks plus the queued ones."""
    return concurrency + queue_ahead(concurrency)


class SlidingWindow:
    """At most `limit` events in any window of `window` seconds, by reservation.

    `reserve(now)` returns the earliest time >= now (and >= `not_before`) at which one more event
    keeps the rule, and records it. Reservations never go back in time, so the rule also holds for
    reservations made while earlier ones are still waiting.
    """

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1 or window <= 0:
            raise ValueError(f"a window needs limit >= 1 and window > 0, got {limit} per {window}s")
        self.limit, self.window = limit, window
        self._times: deque[float] = deque(maxlen=limit)

    @classmethod
    def per_second(cls, rate: float, margin: float = 0.0) -> SlidingWindow:
        """`rate` events per second: floor(rate) per second, or one per 1/rate seconds below 1."""
        if rate >= 1:
            return cls(int(rate), 1.0 + margin)
        return cls(1, 1.0 / rate + margin)

    def earliest(self, now: float, not_before: float = 0.0) -> float:
        """The time `reserve` would pick, without reserving it."""
        at = max(now, not_before)
        if len(self._times) == self.limit:
            at = max(at, self._times[0] + self.window)
        if self._times and at < self._times[-1]:
            at = self._times[-1]
        return at

    def reserve(self, now: float, not_before: float = 0.0) -> float:
        at = self.earliest(now, not_before)
        self._times.append(at)
        return at


def submit_windows(limits: SubmitLimits, margin: float = SUBMIT_MARGIN) -> list[SlidingWindow]:
    """The sliding windows a submit must keep: per second and per minute, where the limit has one.

    A per-minute cap is kept as such (2 in any 60 s), not as its average rate: the service may
    enforce it either way (2026 §9: "RPM/60" as seconds), and 2 per 60 s window satisfies both if
    the two submits are also spaced by the per-second window when there is one.
    """
    windows: list[SlidingWindow] = []
    if limits.per_second is not None and limits.per_second > 0:
        windows.append(SlidingWindow.per_second(limits.per_second, margin))
    if limits.per_minute is not None and limits.per_minute > 0:
        per_minute = limits.per_minute
        if per_minute >= 1:
            windows.append(SlidingWindow(int(per_minute), 60.0 + margin))
        else:
            windows.append(SlidingWindow(1, 60.0 / per_minute + margin))
    return windows


def _earliest_all(windows: list[SlidingWindow], now: float, not_before: float) -> float:
    """The earliest time every window allows one more event (nothing reserved)."""
    at = max(now, not_before)
    while True:  # a later start in one window can still fit the others: settle on a common time
        latest = max((w.earliest(at) for w in windows), default=at)
        if latest <= at:
            return at
        at = latest


def _reserve_all(windows: list[SlidingWindow], now: float, not_before: float = 0.0) -> float:
    """The earliest time every window allows one more event; reserved in each of them."""
    at = _earliest_all(windows, now, not_before)
    for window in windows:
        window.reserve(at)
    return at


def estimate_seconds(
    requests: Iterable[GenerationRequest], region: str = "beijing", *, time_scale: float = 1.0
) -> float:
    """Seconds a batch needs at least under the submit limits and concurrency of each model in `region`.

    Models run side by side; within one model the submits keep the per-second and per-minute windows,
    and at most `concurrency` tasks run at once (each takes the model's typical time, with prompt
    rewriting where it is on). Pure: the grid helper calls it before anything is sent. A request for
    an unknown model counts 0 (validation refuses it anyway).
    """
    by_model: dict[str, list[float]] = {}
    limits: dict[str, SubmitLimits] = {}
    for request in requests:
        try:
            spec = get_model(request.model)
        except (KeyError, TypeError):
            continue
        limits[spec.name] = submit_limits(spec, region)
        by_model.setdefault(spec.name, []).append(
            spec.expected_seconds(request.effective_prompt_extend) * time_scale
        )
    longest = 0.0
    for model, durations in by_model.items():
        windows = submit_windows(limits[model], margin=0.0)
        running: list[float] = []  # end times of the tasks holding the service's slots
        concurrency = max(limits[model].concurrency, 1)
        end = 0.0
        for duration in durations:
            sent = _reserve_all(windows, 0.0)
            start = sent
            if len(running) >= concurrency:
                start = max(sent, heapq.heappop(running))
            heapq.heappush(running, start + duration)
            end = max(end, start + duration)
        longest = max(longest, end)
    return longest


class Scheduler:
    """Per-model submit rate and concurrency, and a global poll rate, for one account in one region.

    Parameters:
        clock: monotonic seconds (the client passes its own `_clock`, `time.monotonic` by default).
        sleep: an async sleep (the client passes its own `_sleep`, `asyncio.sleep` by default).
        query_qps: polls per second for the whole account.
        region: the region the account's calls go to (limits differ by region: wan2.6-t2i).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        query_qps: float = QUERY_QPS,
        region: str = "beijing",
    ) -> None:
        self._clock, self._sleep = clock, sleep
        self.region = region
        self._submits: dict[str, list[SlidingWindow]] = {}
        self._paused_until: dict[str, float] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._active: dict[str, int] = {}
        self._queues: dict[str, dict[str, tuple[float, float]]] = {}
        self._query = SlidingWindow.per_second(query_qps)

    async def _wait_until(self, at: float) -> None:
        delay = at - self._clock()
        if delay > 0:
            await self._sleep(delay)

    async def submit_turn(self, model: str, limits: SubmitLimits | float) -> float:
        """Wait until one more submit for `model` keeps its limits (per second and per minute; a bare
        number is a per-second rate); returns how long it waited."""
        windows = self._submits.get(model)
        if windows is None:
            if not isinstance(limits, SubmitLimits):
                limits = SubmitLimits(float(limits), None, 1)
            windows = self._submits[model] = submit_windows(limits)
        now = self._clock()
        at = _reserve_all(windows, now, self._paused_until.get(model, 0.0))
        await self._wait_until(at)
        return max(at - now, 0.0)

    def turn_wait(self, model: str) -> float:
        """Seconds until one more submit for `model` would keep its limits (0 before its first submit)."""
        now = self._clock()
        windows = self._submits.get(model, [])
        return max(_earliest_all(windows, now, self._paused_until.get(model, 0.0)) - now, 0.0)

    def estimate(self, requests: Iterable[GenerationRequest], *, time_scale: float = 1.0) -> float:
        """`estimate_seconds` for this scheduler's region."""
        return estimate_seconds(requests, self.region, time_scale=time_scale)

    def throttled(self, model: str, delay: float) -> None:
        """The service answered 429 to a submit: hold this model's submits for `delay` seconds."""
        until = self._clock() + delay
        self._paused_until[model] = max(self._paused_until.get(model, 0.0), until)

    async def query_turn(self) -> None:
        """Wait until one more poll keeps the account's query rate."""
        await self._wait_until(self._query.reserve(self._clock()))

    @contextlib.asynccontextmanager
    async def slot(self, model: str, concurrency: int) -> AsyncIterator[Slot]:
        """Hold one of the `concurrency + queue_ahead(concurrency)` in-flight places of `model`, from
        before the submit until the task ends. Waiting for a place sends nothing (cancel freely)."""
        sem = self._slots.get(model)
        concurrency = max(concurrency, 1)
        if sem is None:
            sem = self._slots[model] = asyncio.Semaphore(in_flight(concurrency))
        async with sem:
            self._active[model] = self._active.get(model, 0) + 1
            held = Slot(self._queues.setdefault(model, {}), concurrency)
            try:
                yield held
            finally:
                self._active[model] -= 1
                held.release()

    def active(self, model: str) -> int:
        """Tasks of `model` holding a slot now (running or queued at the service, or about to be sent)."""
        return self._active.get(model, 0)

    def expected_start(self, task_id: str) -> float | None:
        """When the task should start running, given the tasks ahead of it (None: not one of ours)."""
        for queue in self._queues.values():
            if task_id in queue:
                return queue[task_id][0]
        return None


class Slot:
    """One in-flight place of a model; records the expected start and end of the task it carries.

    `queue` maps task id -> (expected start, expected end) for the model's tasks in submission order,
    shared by all its slots.
    """

    def __init__(self, queue: dict[str, tuple[float, float]], concurrency: int) -> None:
        self._queue, self._concurrency = queue, concurrency
        self._task_id: str | None = None

    def submitted(self, task_id: str, at: float, duration: float) -> float:
        """The task was created at `at` and should run `duration` seconds: returns its expected start.

        First come, first served: it starts when fewer than `concurrency` of the tasks ahead are still
        expected to run, i.e. at the (k - concurrency + 1)-th earliest of their k expected ends.
        """
        ends = sorted(end for _, end in self._queue.values() if end > at)
        start = at if len(ends) < self._concurrency else ends[len(ends) - self._concurrency]
        self._queue[task_id] = (start, start + max(duration, 0.0))
        self._task_id = task_id
        return start

    def release(self) -> None:
        if self._task_id is not None:
            self._queue.pop(self._task_id, None)
