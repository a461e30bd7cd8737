"""Task state and limits: one task's life on the clock, the FIFO slots of a model's concurrency,
the sliding windows of the rate limits, and the endings faults script.

Time only moves through the injected clock, and state is computed lazily: each task's start and end
are scheduled when the task is created (or when a cancellation frees a slot), and a task's status is
a function of the clock reading. Nothing runs in the background, so a fake clock gives exact,
repeatable histories.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from .._registry import SubmitLimits
from . import _errors as errors
from ._faults import Fault
from ._images import render_png

__all__ = [
    "RateWindows",
    "Task",
    "apply_outcome",
    "schedule",
]


@dataclass
class Task:
    """One image-synthesis task and everything decided about it at creation."""

    task_id: str
    request_id: str
    account: str
    model: str  # the registry name
    model_name: str  # the name the client sent (may be an international alias)
    family: str
    prompt: str  # as sent: what orig_prompt reports
    effective_prompt: str  # truncated to the model's limit: what the image is made from
    negative_prompt: str | None
    width: int
    height: int
    n: int
    seed: int
    style: str | None
    ref: bytes | str | None
    ref_strength: float
    ref_mode: str
    watermark: bool
    prompt_extend: bool
    actual_prompt: str | None
    submit_time: float
    duration: float
    failure: tuple[str, str] | None = None  # task-level (code, message)
    failed_items: frozenset[int] = frozenset()  # 0-based indices of images that failed
    item_failure: tuple[str, str] = ("InternalError.Timeout", errors.TIMEOUT_ITEM_MESSAGE)  # their (code, message)
    lost: bool = False  # the service lost the task (Fault.outcome("UNKNOWN")): queries say UNKNOWN
    protocol: str = "T2I"  # the endpoint it came to: a `Protocol` name (T2I, IMG, MMG)
    size_label: str = ""  # the size the usage reports ("2048*2048" for a "2K" tier)
    thinking_mode: bool = False
    corrupt: bool = False
    grain: bool = False  # served at the service's weight (EmulatorSettings.image_weight)
    start_time: float | None = None
    cancel_time: float | None = None

    @property
    def end_time(self) -> float | None:
        if self.cancel_time is not None:
            return self.cancel_time
        return None if self.start_time is None else self.start_time + self.duration

    def status_at(self, now: float) -> str:
        if self.cancel_time is not None:
            return "CANCELED"
        if self.start_time is None or now < self.start_time:
            return "PENDING"
        if now < self.start_time + self.duration:
            return "RUNNING"
        if self.failure is not None or len(self.failed_items) >= self.n:
            return "FAILED"
        return "SUCCEEDED"

    @property
    def succeeded_items(self) -> list[int]:
        return [i for i in range(self.n) if i not in self.failed_items]

    def render(self, index: int) -> bytes:
        """The PNG of image `index` (0-based); image i uses seed + i (§2.2)."""
        data = render_png(
            model=self.model,
            prompt=self.effective_prompt,
            negative_prompt=self.negative_prompt,
            width=self.width,
            height=self.height,
            seed=self.seed + index,
            style=self.style,
            ref=self.ref,
            ref_strength=self.ref_strength,
            ref_mode=self.ref_mode,
            watermark=self.watermark,
            grain=self.grain,
        )
        # A corrupt image is cut short, as a broken transfer or a bad object would be.
        return data[: len(data) // 2] if self.corrupt else data

    def __repr__(self) -> str:
        return f"<Task {self.task_id} {self.model_name} n={self.n} seed={self.seed}>"


def schedule(group: list[Task], concurrency: int, *, floor: float, pending_seconds: float) -> None:
    """Place the group's not-yet-started tasks on `concurrency` slots, first come first served.

    Tasks that started by `floor` (the moment of the change) keep their history; the rest start
    when they are ready and a slot is free, never before `floor`. Replaying in submission order
    with a heap of slot end times gives exactly the times a real FIFO queue would produce.
    """
    slots: list[float] = []  # end times of the tasks holding the slots
    for task in group:
        if task.cancel_time is not None:
            continue
        if task.start_time is not None and task.start_time <= floor:
            start = task.start_time
            if len(slots) >= concurrency:
                heapq.heappop(slots)
        else:
            ready = max(task.submit_time + pending_seconds, floor)
            free = heapq.heappop(slots) if len(slots) >= concurrency else ready
            start = max(ready, free)
            task.start_time = start
        heapq.heappush(slots, start + task.duration)


class RateWindows:
    """Sliding windows of request times, one per key (e.g. ("create", account, model))."""

    def __init__(self) -> None:
        self._windows: dict[tuple[str, ...], deque[float]] = {}

    def window(self, key: tuple[str, ...], now: float, length: float) -> deque[float]:
        """The times of the requests counted under `key` in the last `length` seconds."""
        window = self._windows.setdefault(key, deque())
        while window and window[0] <= now - length:
            window.popleft()
        return window

    def submit_windows(
        self,
        key: tuple[str, ...],
        limits: SubmitLimits,
        now: float,
        rate_window: float,
        *,
        error: errors.EmulatorError | None,
    ) -> list[deque[float]]:
        """The windows a submit counts in (per second, per minute), or `error` when one is full.

        The caller appends the submit's time to each window once the submit is accepted, so a refused
        or invalid request does not use up the rate. `error=None`: count but never refuse.
        """
        counted = [
            (key, limits.per_second, rate_window),
            # Per-minute caps (qwen-image-max: 2) count over 60 window lengths: 60 s by default.
            ((*key, "per-minute"), limits.per_minute, 60 * rate_window),
        ]
        windows = []
        for window_key, limit, length in counted:
            if limit is None:
                continue
            window = self.window(window_key, now, length)
            if error is not None and len(window) >= limit:
                raise error
            windows.append(window)
        return windows

    def count(self, key: tuple[str, ...], limit: float, now: float, length: float, error: errors.EmulatorError) -> None:
        """Count one request under `key`, or raise `error` when `limit` are already in the window."""
        window = self.window(key, now, length)
        if len(window) >= limit:
            raise error
        window.append(now)


def apply_outcome(task: Task, fault: Fault) -> None:
    """Make a freshly created task end as `Fault.outcome` says."""
    if fault.value == "FAILED":
        task.failure = (fault.code or "InternalError", fault.message or errors.INTERNAL_ERROR_MESSAGE)
    elif fault.value == "PARTIAL":
        failed = frozenset(i for i in (fault.failed or (task.n - 1,)) if 0 <= i < task.n)
        task.failed_items = failed
        task.item_failure = (fault.code or "InternalError.Timeout", fault.message or errors.TIMEOUT_ITEM_MESSAGE)
        if len(failed) >= task.n:
            task.failure = task.item_failure
    elif fault.value == "UNKNOWN":
        task.lost = True
