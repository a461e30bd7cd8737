"""Finding the task an unknown create made: list the window's tasks, look the few candidates up.

The matching itself is `_reconcile` (no I/O); this module pages through the account's tasks with the
client's own `list_tasks` and `get_task`. Nothing is created or cancelled.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Collection
from typing import Protocol as Structural  # `Protocol` in the client's modules is the wire protocol

from ._constants import TASK_TTL_SECONDS
from ._exceptions import WanxError
from ._models import Task
from ._protocol_list import TaskPage
from ._reconcile import Reconciliation, decide, in_window, list_window
from ._registry import get_model
from ._request import GenerationRequest

__all__ = ["ListTasks", "find_created"]

# List pages of this size, at most this many, and look each candidate up only when there are few
# (the window is seconds wide; more means several processes at once).
_PAGE_SIZE = 50
_MAX_PAGES = 20
_MAX_CANDIDATES = 10


class ListTasks(Structural):
    """`AsyncWanxClient.list_tasks`, as far as reconciling uses it."""

    def __call__(
        self, *, page_no: int, page_size: int, start_time: dt.datetime, end_time: dt.datetime, model_name: str
    ) -> Awaitable[TaskPage]: ...


async def find_created(
    request: GenerationRequest,
    *,
    sent_after: dt.datetime,
    sent_before: dt.datetime,
    exclude: Collection[str],
    now: dt.datetime,
    list_tasks: ListTasks,
    get_task: Callable[[str], Awaitable[Task]],
    wait: Callable[[Task], Awaitable[Task]],
) -> Reconciliation:
    """See `AsyncWanxClient.reconcile`; `now` is the client's wall time, aware. `wait` polls a task until
    it ends: a running candidate's record names neither its prompt nor its images yet."""
    for name, value in (("sent_after", sent_after), ("sent_before", sent_before)):
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise ValueError(f"{name} must be an aware datetime (e.g. in UTC), got {value!r}")
    model = get_model(request.model).name
    after, before = sent_after.astimezone(dt.timezone.utc), sent_before.astimezone(dt.timezone.utc)
    window = f"between {after:%Y-%m-%d %H:%M:%S} and {before:%H:%M:%S} UTC"
    if (now - sent_before).total_seconds() > TASK_TTL_SECONDS:
        return Reconciliation(
            None, False, (), f"the create was sent {window}, over 24 h ago: the service no longer lists its tasks"
        )
    start, end = list_window(sent_after, sent_before)
    rows: list[Task] = []
    try:
        for page_no in range(1, _MAX_PAGES + 1):
            page = await list_tasks(
                page_no=page_no, page_size=_PAGE_SIZE, start_time=start, end_time=end, model_name=model
            )
            rows.extend(page.items)
            if not page.items or page_no >= page.total_page:
                break
        ids = in_window(rows, model, sent_after=sent_after, sent_before=sent_before, exclude=exclude)
        if len(ids) > _MAX_CANDIDATES:
            return Reconciliation(None, False, tuple(ids), f"{len(ids)} tasks of {model} were created {window}")
        tasks = []
        for task_id in ids:  # one after another: while one is waited for, the others run on
            task = await get_task(task_id)
            tasks.append(task if task.status.is_terminal else await wait(task))
    except WanxError as exc:
        return Reconciliation(None, False, (), f"the account's tasks could not be read ({exc.message}); try later")
    return decide(request, tasks, window=window)
