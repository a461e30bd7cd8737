"""The DashScope API and object-store routes: parse the request, call `Backend`, serialise the answer
in the service's wire shapes (spec §1-§3). The rules live in `Backend` and the modules it uses.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from . import _errors as errors
from ._backend import API_KEY_HEADER, Backend
from ._clock import UTC8, FakeClock, epoch_ms, format_time
from ._faults import Fault
from ._oss import UPLOAD_ACCESS_KEY_ID
from ._routes import JSON_UTF8, UPLOAD_PATH, json_response, origin_of
from ._tasks import Task

__all__ = [
    "account_of",
    "cancel_task",
    "create_task",
    "list_tasks",
    "outcome_of",
    "query_task",
    "result_image",
    "task_output",
    "upload",
    "upload_policy",
]

_STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED")


def account_of(request: Request, backend: Backend) -> str:
    """The account a request authenticates as (`Authorization: Bearer`, or `X-DashScope-ApiKey`), or 401."""
    return backend.authenticate(request.headers.get("authorization"), request.headers.get(API_KEY_HEADER))


async def create_task(request: Request, backend: Backend) -> Response:
    account = account_of(request, backend)
    is_async = request.headers.get("x-dashscope-async", "").strip().lower() == "enable"
    body = await _json_body(request)
    if not is_async and not _takes_sync_calls(body):  # the model decides whether a sync call is allowed
        # §6.6: only the message is documented. 403 AccessDenied mirrors the recorded answer to the
        # opposite mistake ("...does not support asynchronous calls").
        raise errors.access_denied("current user api does not support synchronous calls")
    if body is None:
        raise errors.invalid_parameter("The request body is not valid JSON.")
    oss_resolve = request.headers.get("x-dashscope-ossresourceresolve", "").strip().lower() == "enable"
    task = backend.create_task(
        account, body, oss_resolve=oss_resolve, outcome=outcome_of(request), blocking=not is_async
    )
    if is_async:
        return json_response(
            {"output": {"task_status": "PENDING", "task_id": task.task_id}, "request_id": task.request_id}
        )
    # A sync call blocks until the task has ended and answers it. The shape is undocumented; the
    # official SDK's `ImageSynthesis.sync_call` reads it as a task answer (output.task_id,
    # task_status, results; usage), so the finished task is answered as GET /tasks/{id} shows it.
    assert task.end_time is not None
    if not isinstance(backend.clock, FakeClock):
        await asyncio.sleep(max(0.0, task.end_time - backend.clock()))
    output, usage = task_output(backend, task, max(task.end_time, backend.clock()), origin_of(request))
    answer: dict[str, Any] = {"output": output}
    if usage is not None:
        answer["usage"] = usage
    answer["request_id"] = task.request_id
    return json_response(answer, headers={"X-Request-ID": task.request_id})


# §1.2: "The 2.0.2 SDK has ImageSynthesis.sync_call, which posts to the same path *without* the async
# header. It says only wan2.2-t2i-flash and wan2.2-t2i-plus support this [S13]."
_SYNC_T2I_MODELS = frozenset({"wan2.2-t2i-flash", "wan2.2-t2i-plus"})


def _takes_sync_calls(body: Any) -> bool:
    return isinstance(body, dict) and body.get("model") in _SYNC_T2I_MODELS


async def _json_body(request: Request) -> Any:
    """The JSON body, or None when it is not JSON (a create then answers 400 InvalidParameter)."""
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return None


def outcome_of(request: Request) -> Fault | None:
    fault = getattr(request.state, "fault", None)
    return fault if fault is not None and fault.kind == "outcome" else None


async def query_task(request: Request, backend: Backend) -> Response:
    account = account_of(request, backend)
    backend.check_query_rate(account)
    task_id = request.path_params["task_id"]
    request_id = backend.new_request_id()
    found = backend.get_task(account, task_id)
    if found is None:  # unknown, expired, or another account's: the service says UNKNOWN (§3.2)
        return json_response(
            {"request_id": request_id, "output": {"task_id": task_id, "task_status": "UNKNOWN"}}, media_type=JSON_UTF8
        )
    output, usage = task_output(backend, *found, origin_of(request))
    body: dict[str, Any] = {"request_id": request_id, "output": output}
    if usage is not None:
        body["usage"] = usage
    return json_response(body, media_type=JSON_UTF8)


def task_head(task: Task, now: float) -> tuple[str, dict[str, Any], bool]:
    """(status, the output's first fields, whether that is all of it): what every protocol's task shows
    while PENDING or CANCELED, and the times it shows once it has started."""
    status = task.status_at(now)
    out: dict[str, Any] = {"task_id": task.task_id, "task_status": status, "submit_time": format_time(task.submit_time)}
    if status == "PENDING":
        return status, out, True
    if status == "CANCELED":
        assert task.cancel_time is not None
        out["end_time"] = format_time(task.cancel_time)
        return status, out, True
    assert task.start_time is not None
    out["scheduled_time"] = format_time(task.start_time)
    return status, out, False


def task_output(backend: Backend, task: Task, now: float, origin: str) -> tuple[dict[str, Any], Any]:
    """The `output` (and `usage`) of a task as GET /tasks/{id} shows it at `now` (§3.2, §3.3)."""
    if task.protocol == "IMG":
        from ._messages import task_status_output  # the messages shapes; _messages imports this module's peers

        return task_status_output(backend, task, now, origin)
    status, out, settled = task_head(task, now)
    if settled:
        return out, None
    assert task.end_time is not None
    if status == "RUNNING":
        out["task_metrics"] = {"TOTAL": task.n, "SUCCEEDED": 0, "FAILED": 0}
        return out, None
    out["end_time"] = format_time(task.end_time)
    if status == "FAILED":
        assert task.failure is not None  # the backend sets a task-level reason whenever all images fail
        code, message = task.failure
        out.update(code=code, message=message, task_metrics={"TOTAL": task.n, "SUCCEEDED": 0, "FAILED": task.n})
        return out, None
    results: list[dict[str, str]] = []
    for i in range(task.n):
        if i in task.failed_items:
            code, message = task.item_failure
            results.append({"code": code, "message": message})
            continue
        url = origin + backend.result_path(task, i)
        if task.family == "V1":
            results.append({"url": url})
        elif task.actual_prompt is not None:
            results.append({"orig_prompt": task.prompt, "actual_prompt": task.actual_prompt, "url": url})
        else:  # prompt_extend off: no actual_prompt (§2.2)
            results.append({"orig_prompt": task.prompt, "url": url})
    ok = task.n - len(task.failed_items)
    out["results"] = results
    out["task_metrics"] = {"TOTAL": task.n, "SUCCEEDED": ok, "FAILED": task.n - ok}
    return out, {"image_count": ok}


async def cancel_task(request: Request, backend: Backend) -> Response:
    account = account_of(request, backend)
    backend.cancel_task(account, request.path_params["task_id"])
    # The success body is undocumented (§6.8); the request id alone is the likely answer.
    return json_response({"request_id": backend.new_request_id()}, media_type=JSON_UTF8)


async def list_tasks(request: Request, backend: Backend) -> Response:
    account = account_of(request, backend)
    query = request.query_params
    page_no = _int_query(query.get("page_no"), "page_no", 1, 1, 10**6)
    page_size = _int_query(query.get("page_size"), "page_size", 10, 1, 100)
    status = query.get("status") or None
    if status is not None and status not in _STATUSES:
        raise errors.invalid_parameter(f"The parameter status must be one of {', '.join(_STATUSES)}, got {status!r}.")
    found, _ = backend.list_tasks(
        account,
        start=_time_query(query.get("start_time"), "start_time"),
        end=_time_query(query.get("end_time"), "end_time"),
        model_name=query.get("model_name") or None,
        status=status,
        api_key_id=query.get("api_key_id") or None,
        region=query.get("region") or None,
    )
    info = backend.account_info(account)
    page = found[(page_no - 1) * page_size : page_no * page_size]
    # Flat, no `output` wrapper, in the recorded key order (§1.5).
    return json_response(
        {
            "total": len(found),
            "data": [_list_item(task, status, info, backend.region_id) for task, status in page],
            "total_page": math.ceil(len(found) / page_size),
            "page_no": page_no,
            "request_id": backend.new_request_id(),
            "page_size": page_size,
        },
        media_type=JSON_UTF8,
    )


def _list_item(task: Task, status: str, info: dict[str, str], region_id: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "api_key_id": info["api_key_id"],
        "caller_parent_id": info["caller_parent_id"],
        "caller_uid": info["caller_uid"],
        "gmt_create": epoch_ms(task.submit_time),
        "model_name": task.model_name,
        "region": region_id,
        "request_id": task.request_id,
        "status": status,
        "task_id": task.task_id,
        "user_api_unique_key": info["user_api_unique_key"],
    }
    # Times exist only once they happened: start when it ran, end when it is over.
    if status not in ("PENDING", "CANCELED") and task.start_time is not None:
        item["start_time"] = epoch_ms(task.start_time)
    if status not in ("PENDING", "RUNNING") and task.end_time is not None:
        item["end_time"] = epoch_ms(task.end_time)
    return dict(sorted(item.items()))  # alphabetical: the spec does not record the real order


def _int_query(value: str | None, name: str, default: int, lo: int, hi: int) -> int:
    if value is None or value == "":
        return default
    if not value.strip().isdigit() or not lo <= int(value) <= hi:
        raise errors.invalid_parameter(f"The parameter {name} must be an integer in [{lo}, {hi}], got {value!r}.")
    return int(value)


def _time_query(value: str | None, name: str) -> float | None:
    """YYYYMMDDhhmmss in UTC+8 (the SDK docstring's format, §1.5) -> epoch seconds."""
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=UTC8).timestamp()
    except ValueError:
        raise errors.invalid_parameter(
            f"The parameter {name} must look like 20250108160000 (YYYYMMDDhhmmss), got {value!r}."
        ) from None


async def upload_policy(request: Request, backend: Backend) -> Response:
    if backend.settings.region != "beijing":
        # "The temporary-file upload exists only in Beijing" (§1.2, §1.6, S9): other hosts do not
        # serve the route. What they answer is undocumented; the emulator's unknown-path answer is used.
        raise errors.not_found(request.method, request.url.path)
    account = account_of(request, backend)
    query = request.query_params
    if query.get("action") != "getPolicy":
        raise errors.invalid_parameter(f"The parameter action must be getPolicy, got {query.get('action')!r}.")
    policy = backend.issue_policy(account, query.get("model"))
    data = {
        "policy": policy.policy,
        "signature": policy.signature,
        "upload_dir": policy.upload_dir,
        "upload_host": origin_of(request) + UPLOAD_PATH,
        "expire_in_seconds": 300,
        "max_file_size_mb": 1024,
        "capacity_limit_mb": 999999999,
        "oss_access_key_id": UPLOAD_ACCESS_KEY_ID,
        "x_oss_object_acl": "private",
        "x_oss_forbid_overwrite": "true",
    }
    return json_response({"data": data, "request_id": backend.new_request_id()})


# Object store (OSS) routes ----------------------------------------------------------------------------


async def upload(request: Request, backend: Backend) -> Response:
    async with request.form() as form:
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        file = form.get("file")
        data = await file.read() if isinstance(file, UploadFile) else None
        content_type = file.content_type if isinstance(file, UploadFile) else None
    upload = backend.store_upload(fields, data, content_type)
    status = fields.get("success_action_status", "")
    headers = {
        "x-oss-request-id": backend.new_request_id().replace("-", "").upper()[:24],
        "ETag": f'"{hashlib.md5(upload.data).hexdigest().upper()}"',
    }
    # OSS answers 204 unless the form asks for 200 or 201.
    return Response(b"", status_code=int(status) if status in ("200", "201") else 204, headers=headers)


async def result_image(request: Request, backend: Backend) -> Response:
    data = await run_in_threadpool(
        backend.result_image,
        request.url.path,
        dict(request.query_params),
        has_authorization="authorization" in request.headers,
    )
    headers = {"x-oss-request-id": backend.new_request_id().replace("-", "").upper()[:24]}
    return Response(data, media_type="image/png", headers=headers)
