"""Waiting for a task: when to poll (`poll_until_done`), how long tasks take (`Expectations`), and
what its end means (`raise_unless_succeeded`).

A task is expected to take the registry's duration for its model (times the emulator's time scale),
corrected by what the client saw finished tasks take (`_backoff.DurationModel`); the delays between
polls follow `_backoff.next_poll_delay`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ._backoff import DurationModel, next_poll_delay
from ._client_types import Clocks, OnStatus, call_back, task_id_of
from ._exceptions import TaskCanceledError, TaskFailedError, TaskUnknownError, WaitTimeoutError
from ._models import Task, TaskStatus
from ._protocol import parse_server_time
from ._registry import ModelSpec, get_model
from ._request import GenerationRequest
from ._scheduler import Scheduler

__all__ = ["Expectation", "Expectations", "poll_until_done", "raise_unless_succeeded"]

_DEFAULT_EXPECTED = 15.0  # seconds, for a task whose model we do not know (resumed by id)
_MAX_REMEMBERED = 1000  # tasks whose expectation is kept; the oldest is dropped past this


@dataclass
class Expectation:
    model: str
    base: float  # seconds the registry (times the emulator's time scale) expects
    submitted_at: float  # client clock
    resumed: bool = False  # submitted earlier (another process): when it started is not known


class Expectations:
    """How long each task this client knows should take, learned from the tasks that finished.

    `time_scale`: a served emulator runs tasks at this fraction of the real durations (1 otherwise).
    """

    def __init__(self, time_scale: float = 1.0) -> None:
        self.time_scale = time_scale
        self.durations = DurationModel()
        self.tasks: dict[str, Expectation] = {}

    def created(self, task_id: str, spec: ModelSpec, request: GenerationRequest, submitted_at: float) -> None:
        """A task this client just created."""
        base = spec.expected_seconds(request.effective_prompt_extend) * self.time_scale
        if len(self.tasks) > _MAX_REMEMBERED:
            self.tasks.pop(next(iter(self.tasks)))
        self.tasks[task_id] = Expectation(spec.name, base, submitted_at)

    def resumed(self, task_id: str, request: GenerationRequest, now: float) -> None:
        """A task created earlier (e.g. before a restart), unless this client knows it already."""
        if task_id in self.tasks:
            return
        with contextlib.suppress(KeyError):
            spec = get_model(request.model)
            base = spec.expected_seconds(request.effective_prompt_extend) * self.time_scale
            self.tasks[task_id] = Expectation(spec.name, base, now, resumed=True)

    def expected(self, expectation: Expectation) -> float:
        """Seconds the task should take, as learned so far for its model."""
        return self.durations.expected(expectation.model, expectation.base)

    def learn(self, task_id: str, task: Task, origin: float, clock: Callable[[], float]) -> None:
        """Forget the task and, when it succeeded, learn how long it took."""
        expectation = self.tasks.pop(task_id, None)
        if expectation is None or task.status is not TaskStatus.SUCCEEDED:
            return
        started, ended = parse_server_time(task.scheduled_time), parse_server_time(task.end_time)
        if started is not None and ended is not None:
            observed = (ended - started).total_seconds()  # both on the server's clock
        elif not expectation.resumed:
            observed = clock() - origin  # an upper bound: includes our polling lag
        else:
            return
        self.durations.observe(expectation.model, expectation.base, observed)


async def poll_until_done(
    task: Task | str,
    task_id: str,
    *,
    get_task: Callable[[str], Awaitable[Task]],
    expectations: Expectations,
    scheduler: Scheduler,
    clocks: Clocks,
    limit: float | None,
    on_status: OnStatus | None,
) -> Task:
    """Poll `task_id` until it is terminal and return it; WaitTimeoutError once `limit` seconds passed."""
    expectation = expectations.tasks.get(task_id)
    start = clocks.clock()
    deadline = start + limit if limit is not None and math.isfinite(limit) else None
    if expectation is not None:
        expected = expectations.expected(expectation)
    else:
        expected = _DEFAULT_EXPECTED * expectations.time_scale
    fresh = expectation is not None and not expectation.resumed
    # A task we did not just submit is looked at at once; if it runs, assume it is near its end.
    if fresh:  # from when it should start running: its submit, or when the tasks ahead end
        queued_until = scheduler.expected_start(task_id)
        origin = expectation.submitted_at if queued_until is None else queued_until  # type: ignore[union-attr]
    else:
        origin = start - expected
    status = task.status.value if isinstance(task, Task) else "PENDING"
    polls = 0
    queued_since: float | None = None  # when we first saw it PENDING after the lead
    while True:
        if polls or fresh:
            now = clocks.clock()
            queued = now - queued_since if queued_since is not None else 0.0
            delay = next_poll_delay(now - origin, expected, polls, queued=queued, rng=clocks.random)
            if deadline is not None:
                delay = min(delay, max(deadline - now, 0.0))
            await clocks.sleep(delay)
        sent_at = clocks.clock()
        current = await get_task(task_id)
        polls += 1
        status = current.status.value
        await call_back(on_status, current)
        match current.status:
            case TaskStatus.PENDING:
                # Not started yet: it cannot end before sent_at (or the tasks ahead of it) + its duration.
                origin = max(sent_at, scheduler.expected_start(task_id) or sent_at)
                if queued_since is None:
                    queued_since = sent_at
            case TaskStatus.RUNNING | TaskStatus.SUSPENDED:
                queued_since = None
            case TaskStatus.SUCCEEDED | TaskStatus.FAILED | TaskStatus.CANCELED | TaskStatus.UNKNOWN:
                expectations.learn(task_id, current, origin, clocks.clock)
                return current
            case _ as unreachable:  # pragma: no cover - TaskStatus is exhaustive above
                raise AssertionError(f"unhandled task status {unreachable!r}")
        if deadline is not None and clocks.clock() >= deadline:
            raise WaitTimeoutError(task_id, clocks.clock() - start, status)


def raise_unless_succeeded(final: Task) -> None:
    """The error a terminal task that made no images stands for (FAILED, CANCELED, UNKNOWN)."""
    match final.status:
        case TaskStatus.SUCCEEDED:
            pass
        case TaskStatus.FAILED:
            raise TaskFailedError(task_id_of(final), "FAILED", final.code, final.message or "", final.request_id)
        case TaskStatus.CANCELED:
            raise TaskCanceledError(task_id_of(final), "CANCELED", final.code, final.message or "", final.request_id)
        case TaskStatus.UNKNOWN:
            raise TaskUnknownError(
                task_id_of(final),
                "UNKNOWN",
                None,
                "the service does not know this task: the id is wrong, or it is older than 24 h",
                final.request_id,
            )
        case TaskStatus.PENDING | TaskStatus.RUNNING | TaskStatus.SUSPENDED:  # pragma: no cover
            raise AssertionError(f"task {final.task_id} is not finished ({final.status.value})")
