"""The task list on the wire (`GET /tasks`, §1.5 and §6.9), without I/O: the request and its pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._exceptions import APIError
from ._models import ListedTask, Task, TaskStatus
from ._protocol import LIST_PATH, SERVER_TZ, WireRequest, excerpt, optional_int, request_headers

__all__ = ["TaskPage", "build_list", "format_list_time", "parse_task_page"]


def format_list_time(value: dt.datetime | dt.date | str) -> str:
    """A list filter time as `YYYYMMDDhhmmss` (§1.5). Aware datetimes are converted to UTC+8.

    Strings pass through unchanged, so `"20250108160000"` works as is.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(SERVER_TZ)
        return value.strftime("%Y%m%d%H%M%S")
    return value.strftime("%Y%m%d") + "000000"


def build_list(
    *,
    workspace: str | None = None,
    page_no: int = 1,
    page_size: int = 10,
    start_time: dt.datetime | dt.date | str | None = None,
    end_time: dt.datetime | dt.date | str | None = None,
    model_name: str | None = None,
    api_key_id: str | None = None,
    region: str | None = None,
    status: TaskStatus | str | None = None,
) -> WireRequest:
    """GET /tasks with the SDK's parameter order (§1.5): page_no and page_size are always sent."""
    params: dict[str, str] = {"page_no": str(page_no), "page_size": str(page_size)}
    if start_time is not None:
        params["start_time"] = format_list_time(start_time)
    if end_time is not None:
        params["end_time"] = format_list_time(end_time)
    if model_name:
        params["model_name"] = model_name
    if api_key_id:
        params["api_key_id"] = api_key_id
    if region:
        params["region"] = region
    if status is not None:
        params["status"] = status.value if isinstance(status, TaskStatus) else str(status).upper()
    return WireRequest("GET", LIST_PATH, request_headers(workspace), params)


@dataclass(frozen=True)
class TaskPage:
    """One page of `GET /tasks`: `items` plus the paging fields."""

    items: tuple[Task, ...]  # each with `listed` set
    total: int
    page_no: int
    page_size: int
    total_page: int
    request_id: str | None = None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"<TaskPage {self.page_no}/{self.total_page} {len(self.items)} of {self.total} tasks>"


def parse_task_page(body: Any) -> TaskPage:
    """The flat list response `{total, data: [...], total_page, page_no, page_size, request_id}`.

    The recorded wire key is `data`; the 2.0.2 SDK reads `tasks` (§6.9), so both are accepted, as
    is an `output` wrapper around either.
    """
    if not isinstance(body, Mapping):
        raise APIError(f"unexpected list response: {excerpt(body)}", code="InvalidResponse")
    page: Mapping[str, Any] = body
    if isinstance(body.get("output"), Mapping) and not any(k in body for k in ("data", "tasks")):
        page = body["output"]
    rows = page.get("data")
    if rows is None:
        rows = page.get("tasks")
    if not isinstance(rows, list):
        rows = []
    items = tuple(_listed(r) for r in rows if isinstance(r, Mapping))
    page_size = _int(page.get("page_size"), len(items) or 10)
    total = _int(page.get("total"), len(items))
    default_pages = (total + page_size - 1) // page_size if page_size else 1
    return TaskPage(
        items=items,
        total=total,
        page_no=_int(page.get("page_no"), 1),
        page_size=page_size,
        total_page=_int(page.get("total_page"), default_pages),
        request_id=body.get("request_id"),
    )


def _listed(row: Mapping[str, Any]) -> Task:
    listed = ListedTask(
        model_name=row.get("model_name"),
        gmt_create=optional_int(row.get("gmt_create")),
        start_time=optional_int(row.get("start_time")),
        end_time=optional_int(row.get("end_time")),
        region=row.get("region"),
    )
    return Task(
        task_id=str(row.get("task_id", "")),
        status=TaskStatus.parse(row.get("status") or row.get("task_status")),
        request_id=row.get("request_id"),
        listed=listed,
    )


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
