"""The DashScope text-to-image wire format, without I/O (sans-I/O).

Everything here turns our objects into (method, path, headers, params, json) and the server's JSON
back into our objects. Nothing here opens a socket, sleeps or reads a clock; `_client` does the I/O.
Section numbers (§n) refer to `shared/spec/dashscope-t2i-protocol.md`.

- `build_create / build_query / build_cancel` -> `WireRequest`
- `parse_task(body)` -> `Task` (create and query responses; V1 and V2 result items)
- `parse_error(content, headers)` -> `ErrorInfo`; `status_error(...)` -> the typed APIStatusError
- the task list and the upload policy: `_protocol_list`, `_protocol_upload`
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
from ._models import ImageResult, Task, TaskStatus
from ._request import GenerationRequest

__all__ = [
    "CANCEL_PATH",
    "CREATE_PATH",
    "EMULATOR_HEADER",
    "ErrorInfo",
    "LIST_PATH",
    "QUERY_PATH",
    "TIME_SCALE_HEADER",
    "UPLOAD_PATH",
    "WireRequest",
    "build_cancel",
    "build_create",
    "build_query",
    "excerpt",
    "image_results",
    "is_local_path",
    "optional_int",
    "parse_error",
    "parse_json",
    "parse_server_time",
    "parse_size",
    "parse_task",
    "request_headers",
    "says_expired",
    "status_error",
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
        raise APIError(f"unexpected response: no 'output' object in {excerpt(body)}", code="InvalidResponse")
    out = body["output"]
    task_id = out.get("task_id")
    if not task_id:
        raise APIError(f"unexpected response: no task_id in {excerpt(body)}", code="InvalidResponse")
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


def excerpt(body: Any) -> str:
    """A body shown in an error: JSON, at most 200 characters."""
    text = json.dumps(body, ensure_ascii=False) if not isinstance(body, str) else body
    return text if len(text) <= 200 else text[:199] + "…"


def optional_int(value: Any) -> int | None:
    """An integer field that may be absent or malformed: None then."""
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None

