"""Client-side limits, so a batch finishes as early as the service allows without ever being throttled.

Three limits, all per account (one `Scheduler` per client):
- submit rate, per model: at most `spec.submit_rps` creates in any sliding window of one second
  (plus a small safety margin for network jitter);
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
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from ._constants import QUERY_QPS

__all__ = ["SUBMIT_MARGIN", "Scheduler", "SlidingWindow", "Slot", "queue_ahead"]

# Extra seconds added to the submit window: requests sent exactly one window apart can arrive closer
# together than they left.
SUBMIT_MARGIN = 0.1


def queue_ahead(concurrency: int) -> int:
    """Tasks kept queued at the service beyond its `concurrency`: enough to refill every slot at once
    (tasks often end together), at least two."""
    return max(concurrency, 2)


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

    def reserve(self, now: float, not_before: float = 0.0) -> float:
        at = max(now, not_before)
        if len(self._times) == self.limit:
            at = max(at, self._times[0] + self.window)
        if self._times and at < self._times[-1]:
            at = self._times[-1]
        self._times.append(at)
        return at


class Scheduler:
    """Per-model submit rate and concurrency, and a global poll rate, for one account.

    Parameters:
        clock: monotonic seconds (the client passes its own `_clock`, `time.monotonic` by default).
        sleep: an async sleep (the client passes its own `_sleep`, `asyncio.sleep` by default).
        query_qps: polls per second for the whole account.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        query_qps: float = QUERY_QPS,
    ) -> None:
        self._clock, self._sleep = clock, sleep
        self._submits: dict[str, SlidingWindow] = {}
        self._paused_until: dict[str, float] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._active: dict[str, int] = {}
        self._queues: dict[str, dict[str, tuple[float, float]]] = {}
        self._query = SlidingWindow.per_second(query_qps)

    async def _wait_until(self, at: float) -> None:
        delay = at - self._clock()
        if delay > 0:
            await self._sleep(delay)

    async def submit_turn(self, model: str, rps: float) -> float:
        """Wait until one more submit for `model` keeps the rate; returns how long it waited."""
        window = self._submits.get(model)
        if window is None:
            window = self._submits[model] = SlidingWindow.per_second(rps, SUBMIT_MARGIN)
        now = self._clock()
        at = window.reserve(now, self._paused_until.get(model, 0.0))
        await self._wait_until(at)
        return max(at - now, 0.0)

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
            sem = self._slots[model] = asyncio.Semaphore(concurrency + queue_ahead(concurrency))
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
