"""What the client's parts share: `Submission`, the callback types, a task's id, the clocks.

`_client` re-exports the public names (Submission, On*), which are imported from there.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ._models import Task, TaskStatus
from ._request import GenerationRequest

__all__ = ["BeforeDownload", "Clocks", "OnSending", "OnStatus", "OnSubmitted", "Submission", "call_back", "task_id_of"]

OnStatus = Callable[[Task], Any]
OnSubmitted = Callable[[Task, GenerationRequest], Any]
OnSending = Callable[[GenerationRequest], Any]
BeforeDownload = Callable[[Task], Any]


@dataclass(frozen=True)
class Clocks:
    """The client's sense of time and chance: a monotonic clock, an async sleep, wall time, randomness."""

    clock: Callable[[], float]
    wall: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    random: Callable[[], float]


@dataclass(frozen=True)
class Submission:
    """The Task a submit created, the request exactly as it was sent, and the validation warnings.

    `request` has the seed filled in (image i has seed + i) and local reference images replaced by
    their oss:// URLs.
    """

    task: Task
    request: GenerationRequest
    warnings: tuple[str, ...] = ()

    @property
    def task_id(self) -> str:
        # A submit always creates a task: `parse_task` refuses an answer without its id.
        return task_id_of(self.task)

    @property
    def status(self) -> TaskStatus:
        return self.task.status

    @property
    def request_id(self) -> str | None:
        """The create call's request id (the one to quote to support about this submit)."""
        return self.task.request_id

    def __repr__(self) -> str:
        return f"<Submission {self.task_id!r} [{self.status.value}]>"


def task_id_of(task: Task | Submission | str) -> str:
    """The id of a task that has one. A sync call's answer has none, and as it is terminal and
    SUCCEEDED it is never polled, looked up or failed: reaching here with one is a bug."""
    if isinstance(task, Submission):
        task = task.task
    task_id = task if isinstance(task, str) else task.task_id
    if task_id is None:
        raise ValueError(f"{task!r} has no task id: a synchronous call's answer cannot be polled")
    return task_id


async def call_back(callback: Callable[..., Any] | None, *args: Any) -> None:
    """Run one of the caller's callbacks, plain or async."""
    if callback is None:
        return
    result = callback(*args)
    if inspect.isawaitable(result):
        await result
