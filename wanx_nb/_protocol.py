"""The DashScope text-to-image wire format, without I/O (sans-I/O).

Everything here turns our objects into (method, path, headers, params, json) and the server's JSON
back into our objects. Nothing here opens a socket, sleeps or reads a clock; `_client` does the I/O.
Section numbers (§n) refer to `shared/spec/dashscope-t2i-protocol.md`.

- `build_create / build_query / build_cancel / build_list / build_policy` -> `WireRequest`
- `parse_task(body)` -> `Task` (create and query responses; V1 and V2 result items)
- `parse_error(content, headers)` -> `ErrorInfo`; `status_error(...)` -> the typed APIStatusError
- `parse_task_page(body)` -> `TaskPage` (the flat list response, §1.5 and §6.9)
- `parse_policy(body)` -> `UploadPolicy`; `upload_form(policy, filename, content_type)` (§1.6)
- `image_results(task, request)` -> one `ImageResult` per image, seed + i and the effective size
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._exceptions import APIError, APIStatusError, make_status_error
from ._models import ImageResult, ListedTask, Task, TaskStatus
from ._request import GenerationRequest

__all__ = [
    "CANCEL_PATH",
    "CREATE_PATH",
    "EMULATOR_HEADER",
    "ErrorInfo",
    "LIST_PATH",
    "QUERY_PATH",
    "TIME_SCALE_HEADER",
    "TaskPage",
    "UPLOAD_PATH",
    "UploadPolicy",
    "WireRequest",
    "build_cancel",
    "build_create",
    "build_list",
    "build_policy",
    "build_query",
    "format_list_time",
    "image_results",
    "is_local_path",
    "parse_error",
    "parse_json",
    "parse_policy",
    "parse_server_time",
    "parse_size",
    "parse_task",
    "parse_task_page",
    "request_headers",
    "says_expired",
    "status_error",
    "upload_form",
]

CREATE_PATH = "/services/aigc/text2image/image-synthesis"
QUERY_PATH = "/tasks/{task_id}"
CANCEL_PATH = "/tasks/{task_id}/cancel"
LIST_PATH = "/tasks"
UPLOAD_PATH = "/uploads"

# Every response of wanx_nb's emulator carries this header (any value); tasks read from such a
# response are marked `emulator=True`, even when the emulator is reached over a real socket.
EMULATOR_HEADER = "X-Wanx-Emulator"
TIME_SCALE_HEADER = "X-Wanx-Emulator-Time-Scale"

# Server timestamps ("2025-01-08 16:03:59.840") are China wall-clock time, UTC+8 (§3.2, inferred
# from one recording; §6.13). The list filters use the same clock (inferred, §6.9).
SERVER_TZ = dt.timezone(dt.timedelta(hours=8))


@dataclass(frozen=True)
class WireRequest:
    """One HTTP request to the API: method, path (relative to the base URL), headers, query, JSON body.

    It never carries the API key: the client's `httpx.Auth` adds `Authorization` at send time.
    """

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] | None = None
    json: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"<WireRequest {self.method} {self.path}>"


def request_headers(workspace: str | None) -> dict[str, str]:
    # No Authorization here: `_auth.APIKeyAuth` adds it when the request is sent, so no header dict
    # (or frame local) on the way holds the key.
    headers = {"Accept": "application/json"}
    if workspace:
        headers["X-DashScope-WorkSpace"] = workspace
    return headers


def is_local_path(value: str) -> bool:
    """True when an input URL field names a local file to upload first (the SDK's rule, §1.6)."""
    return value.startswith("file://") or not value.startswith(("http://", "https://", "oss://"))


def build_create(
    request: GenerationRequest, *, wire_model: str | None = None, workspace: str | None = None
) -> WireRequest:
    """POST the create-task call (§1.2, §1.3). Local files must already be uploaded (oss:// URLs)."""
    body = request.to_body(wire_model)
    headers = request_headers(workspace)
    headers["Content-Type"] = "application/json"
    headers["X-DashScope-Async"] = "enable"
    if any(isinstance(v, str) and v.startswith("oss://") for v in body["input"].values()):
        headers["X-DashScope-OssResourceResolve"] = "enable"
    return WireRequest("POST", CREATE_PATH, headers, None, body)


def build_query(task_id: str, *, workspace: str | None = None) -> WireRequest:
    """GET one task (no body, no Content-Type, §1.3)."""
    return WireRequest("GET", QUERY_PATH.format(task_id=_id(task_id)), request_headers(workspace))


def build_cancel(task_id: str, *, workspace: str | None = None) -> WireRequest:
    """POST the cancel call with an empty body (§1.2). Only PENDING tasks can be cancelled."""
    return WireRequest("POST", CANCEL_PATH.format(task_id=_id(task_id)), request_headers(workspace))


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


def build_policy(model: str, *, workspace: str | None = None) -> WireRequest:
    """GET the temporary-upload policy for files used with `model` (§1.6, Beijing only)."""
    return WireRequest("GET", UPLOAD_PATH, request_headers(workspace), {"action": "getPolicy", "model": model})


def _id(task_id: str) -> str:
    # Task ids are UUIDs; refuse anything that would change the path.
    if not task_id or not re.fullmatch(r"[A-Za-z0-9._\-]+", task_id):
        raise ValueError(f"task_id {task_id!r} is not a task id (letters, digits, '-', '_', '.')")
    return task_id


# ---- responses ---------------------------------------------------------------------------------


def parse_json(content: bytes | str) -> Any:
    """The JSON of a body, or None when it is not JSON."""
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None


def parse_task(body: Any, *, emulator: bool = False) -> Task:
    """A Task from a create or query response `{"output": {...}, "usage": ..., "request_id": ...}`.

    Result items are kept as dicts: V1 `{url}`, V2 `{orig_prompt, actual_prompt?, url}`, a failed
    image `{code, message}` (§3.2). A missing `task_status` is UNKNOWN (terminal, as the service
    means it); a status this client does not know is an APIError carrying the task id: the task may
    still be running and billed, so it must not end as UNKNOWN (the journal keeps it for resume).
    """
    if not isinstance(body, Mapping) or not isinstance(body.get("output"), Mapping):
        raise APIError(f"unexpected response: no 'output' object in {_excerpt(body)}", code="InvalidResponse")
    out = body["output"]
    task_id = out.get("task_id")
    if not task_id:
        raise APIError(f"unexpected response: no task_id in {_excerpt(body)}", code="InvalidResponse")
    raw_status = out.get("task_status")
    if raw_status and raw_status not in TaskStatus.__members__:
        raise APIError(
            f"the service answered task status {str(raw_status)[:40]!r}, which this client does not know; "
            "the task is kept and `%wanx resume` looks at it again",
            code="UnrecognisedStatus", task_id=str(task_id), request_id=body.get("request_id"),
        )
    results = out.get("results") or ()
    if not results and out.get("choices"):
        # The async image-generation endpoint answers the same task shape with `choices` (2026 §4.2).
        from ._protocol_image import choice_results

        results = choice_results(out)
    metrics = out.get("task_metrics")
    usage = body.get("usage")
    return Task(
        task_id=sys.intern(str(task_id)),  # every poll's answer repeats it: one string per task
        status=TaskStatus.parse(out.get("task_status")),
        request_id=body.get("request_id"),
        submit_time=out.get("submit_time"),
        scheduled_time=out.get("scheduled_time"),
        end_time=out.get("end_time"),
        results=tuple(_kept(item) for item in results if isinstance(item, Mapping)),
        metrics=_kept(metrics) if isinstance(metrics, Mapping) else None,
        code=out.get("code") or None,
        message=out.get("message") or None,
        usage=_kept(usage) if isinstance(usage, Mapping) else None,
        emulator=emulator,
    )


# Each response's JSON has its own copy of every string. What a batch repeats (keys like "url", prompts:
# a grid sends one prompt many times) is kept once between its results.
_REPEATED = frozenset({"orig_prompt", "actual_prompt"})


def _kept(item: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with the keys, and the values that repeat across a batch, interned."""
    return {
        (sys.intern(k) if isinstance(k, str) else k): (sys.intern(v) if k in _REPEATED and type(v) is str else v)
        for k, v in item.items()
    }


def parse_server_time(value: str | None) -> dt.datetime | None:
    """A server timestamp (`YYYY-MM-DD HH:mm:ss.SSS`, UTC+8) as an aware datetime, or None."""
    if not value:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return dt.datetime.strptime(value, fmt).replace(tzinfo=SERVER_TZ)
        except ValueError:
            continue
    return None


def image_results(task: Task, request: GenerationRequest) -> list[ImageResult]:
    """One ImageResult per result item: image i has seed + i and the request's effective size.

    When fewer items came back than images were asked for, and none of them is a reported failure,
    the service left some out (the `choices` answers list only images made, 2026 §4.2) and which ones
    is not said: no image is given a seed then, rather than a wrong one in its provenance.
    """
    seeds = request.seeds
    first = request.seed
    if len(task.results) < request.effective_n and not any(item.get("code") for item in task.results):
        seeds, first = (), None
    size = sys.intern(request.effective_size.replace("x", "*"))  # one string for a batch's images
    if parse_size(size) is None or request.size is None:
        # A tier ("2K") or a size the model chose: the service's usage says what it made (2026 §3.4).
        from ._protocol_image import usage_size

        size = usage_size(task.usage) or size
    images = []
    for i, item in enumerate(task.results):
        images.append(
            ImageResult(
                index=i,
                seed=seeds[i] if i < len(seeds) else (first + i if first is not None else None),
                size=size,
                url=item.get("url") or None,
                orig_prompt=item.get("orig_prompt"),
                actual_prompt=item.get("actual_prompt"),
                code=item.get("code") or (None if item.get("url") else "NoImage"),
                message=item.get("message") or (None if item.get("url") else "the result item has no url"),
            )
        )
    return images


@dataclass(frozen=True)
class ErrorInfo:
    """The fields of an error body: `code`, the server's message verbatim and `request_id`."""

    code: str | None
    message: str
    request_id: str | None = None


_XML_FIELD = re.compile(r"<(Code|Message|RequestId)>(.*?)</\1>", re.S)


def parse_error(content: bytes | str, headers: Mapping[str, str] | None = None) -> ErrorInfo:
    """Read `{"code", "message" | "msg", "request_id"}` (§3.4).

    A non-JSON body gives code None and the raw text as the message. OSS answers (image and upload
    hosts) are XML `<Error><Code>..</Code><Message>..</Message>`; their code and message are read too.
    """
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    header_rid = None
    if headers is not None:
        header_rid = headers.get("x-request-id") or headers.get("x-oss-request-id")
    body = parse_json(text)
    if isinstance(body, Mapping):
        message = body.get("message")
        if message is None:
            message = body.get("msg")
        code = body.get("code")
        return ErrorInfo(
            code=str(code) if code not in (None, "") else None,
            message=str(message) if message is not None else text.strip(),
            request_id=body.get("request_id") or header_rid,
        )
    if text.lstrip().startswith("<"):
        found = dict((k, v.strip()) for k, v in _XML_FIELD.findall(text))
        if "Code" in found:
            return ErrorInfo(found["Code"], found.get("Message", ""), found.get("RequestId") or header_rid)
    return ErrorInfo(None, text.strip(), header_rid)


def status_error(
    status_code: int,
    content: bytes | str,
    headers: Mapping[str, str] | None = None,
    *,
    method: str | None = None,
    url: str | None = None,
    task_id: str | None = None,
    retry_after: float | None = None,
) -> APIStatusError:
    """The typed APIStatusError for an error response (by code, then by status; `make_status_error`)."""
    info = parse_error(content, headers)
    message = info.message or _REASONS.get(status_code, "no message")
    return make_status_error(
        status_code,
        info.code,
        message,
        request_id=info.request_id,
        task_id=task_id,
        method=method,
        url=url,
        retry_after=retry_after,
        headers=dict(headers or {}),
        body=_text(content),
    )


def says_expired(status_code: int, content: bytes | str) -> bool:
    """True for an object store's 403/404 saying the signed URL expired ("Request has expired").

    Object storage (OSS) answers an expired signed URL with 403 AccessDenied "Request has expired."
    (inferred from OSS; the emulator does the same); a 404
    whose message says so is read the same way. Other 403/404 answers are not expiry.
    """
    if status_code not in (403, 404):
        return False
    info = parse_error(content)
    text = f"{info.code or ''} {info.message}".lower()
    return "expired" in text


def parse_size(size: str) -> tuple[int, int] | None:
    """`"1024*1024"` (or `x`) as (width, height); None when it is not such a size."""
    match = re.fullmatch(r"\s*(\d+)\s*[*x]\s*(\d+)\s*", size or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _text(content: bytes | str, limit: int = 4000) -> str:
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    return text if len(text) <= limit else text[:limit] + "…"


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


# ---- list --------------------------------------------------------------------------------------


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
        raise APIError(f"unexpected list response: {_excerpt(body)}", code="InvalidResponse")
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
        gmt_create=_opt_int(row.get("gmt_create")),
        start_time=_opt_int(row.get("start_time")),
        end_time=_opt_int(row.get("end_time")),
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


def _opt_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


# ---- upload ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadPolicy:
    """The temporary-upload policy (`GET /uploads?action=getPolicy`, the `data` object, §1.6)."""

    upload_host: str
    upload_dir: str
    policy: str
    signature: str
    oss_access_key_id: str
    x_oss_object_acl: str = "private"
    x_oss_forbid_overwrite: str = "true"
    expire_in_seconds: int | None = None
    max_file_size_mb: float | None = None

    def __repr__(self) -> str:
        return f"<UploadPolicy {self.upload_host} {self.upload_dir}>"


def parse_policy(body: Any) -> UploadPolicy:
    """The policy from `{"data": {...}, "request_id": ...}` (an `output` wrapper is accepted too)."""
    data = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(data, Mapping) and isinstance(body, Mapping):
        data = body.get("output")
    if not isinstance(data, Mapping):
        raise APIError(f"unexpected upload-policy response: {_excerpt(body)}", code="InvalidResponse")
    try:
        return UploadPolicy(
            upload_host=str(data["upload_host"]),
            upload_dir=str(data["upload_dir"]).rstrip("/"),
            policy=str(data["policy"]),
            signature=str(data["signature"]),
            oss_access_key_id=str(data["oss_access_key_id"]),
            x_oss_object_acl=str(data.get("x_oss_object_acl", "private")),
            x_oss_forbid_overwrite=str(data.get("x_oss_forbid_overwrite", "true")),
            expire_in_seconds=_opt_int(data.get("expire_in_seconds")),
            max_file_size_mb=data.get("max_file_size_mb"),
        )
    except KeyError as exc:
        raise APIError(f"upload policy lacks {exc.args[0]!r}", code="InvalidResponse") from None


def upload_form(policy: UploadPolicy, filename: str, content_type: str | None) -> tuple[str, dict[str, str]]:
    """(object key, form fields in the SDK's order) for the multipart POST to `upload_host` (§1.6).

    The file itself goes last, as the field `file`. The API key is never part of this form.
    """
    key = f"{policy.upload_dir}/{filename}"
    fields = {
        "OSSAccessKeyId": policy.oss_access_key_id,
        "Signature": policy.signature,
        "policy": policy.policy,
        "key": key,
        "x-oss-object-acl": policy.x_oss_object_acl,
        "x-oss-forbid-overwrite": policy.x_oss_forbid_overwrite,
        "success_action_status": "200",
        "x-oss-content-type": content_type or "application/octet-stream",
    }
    return key, fields


def _excerpt(body: Any) -> str:
    text = json.dumps(body, ensure_ascii=False) if not isinstance(body, str) else body
    return text if len(text) <= 200 else text[:199] + "…"
