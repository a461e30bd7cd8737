"""Starlette routes: parse HTTP, call `Backend`, serialise the answer in the service's wire shapes.

The rules live in `_backend`; this module only knows paths, headers, query strings and JSON layout
(spec §1-§3). One exception handler turns every `EmulatorError` into the real error body.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any
from xml.sax.saxutils import escape

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._version import __version__
from . import _errors as errors
from ._backend import (
    UPLOAD_ACCESS_KEY_ID,
    UTC8,
    Backend,
    Task,
    epoch_ms,
    format_time,
)
from ._faults import AFTER_KINDS, Fault, corrupt_bytes, decompression_bomb_png
from ._routes import API_PREFIX, CREATE_PATH, IN_PROCESS_HEADER, RESULTS_PREFIX, UPLOAD_PATH
from ._settings import EmulatorSettings

__all__ = ["EMULATOR_HEADER", "EMULATOR_HEADER_VALUE", "TIME_SCALE_HEADER", "create_app"]

EMULATOR_HEADER = "X-Wanx-Emulator"
EMULATOR_HEADER_VALUE = f"wanx_nb-emulator/{__version__}"
# Emulated tasks run at `time_scale` times the real durations; saying so lets a client's poll
# schedule expect the emulated durations rather than the real service's.
TIME_SCALE_HEADER = "X-Wanx-Emulator-Time-Scale"

# Recorded content types (§1.4): the service endpoints say plain application/json, /tasks adds a charset.
JSON = "application/json"
JSON_UTF8 = "application/json;charset=UTF-8"
_STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED")
_OSS_ROUTES = ("upload", "image")

Handler = Callable[[Request, Backend], Awaitable[Response]]


def create_app(settings: EmulatorSettings | None = None, *, backend: Backend | None = None) -> Starlette:
    """The emulator as an ASGI app, over `backend` (or a new one built from `settings`)."""
    backend = backend or Backend(settings)
    routes = [
        Route(CREATE_PATH, _endpoint("create", _create_task), methods=["POST"]),
        Route(f"{API_PREFIX}/tasks", _endpoint("list", _list_tasks), methods=["GET"]),
        Route(f"{API_PREFIX}/tasks/{{task_id}}", _endpoint("query", _query_task), methods=["GET"]),
        Route(f"{API_PREFIX}/tasks/{{task_id}}/cancel", _endpoint("cancel", _cancel_task), methods=["POST"]),
        Route(f"{API_PREFIX}/uploads", _endpoint("policy", _upload_policy), methods=["GET"]),
        Route(UPLOAD_PATH, _endpoint("upload", _upload), methods=["POST"]),
        Route(f"{RESULTS_PREFIX}/{{day}}/{{name}}", _endpoint("image", _result_image), methods=["GET"]),
    ]
    app = _EmulatorApp(
        routes=routes,
        exception_handlers={errors.EmulatorError: _on_emulator_error, HTTPException: _on_http_exception},
    )
    app.state.backend = backend
    return app


class _EmulatorApp(Starlette):
    """Starlette with the emulator header added outside every other layer, error pages included."""

    def build_middleware_stack(self) -> ASGIApp:
        return _EmulatorHeader(super().build_middleware_stack(), self.state.backend.settings.time_scale)


class _EmulatorHeader:
    """Marks every response so clients (and people) can tell results came from the emulator."""

    def __init__(self, app: ASGIApp, time_scale: float) -> None:
        self.app = app
        self.marks = [
            (EMULATOR_HEADER.lower().encode(), EMULATOR_HEADER_VALUE.encode()),
            (TIME_SCALE_HEADER.lower().encode(), repr(time_scale).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(self.marks)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_marked)


def _endpoint(route: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler with what every route shares: the request log, latency and scripted faults.

    A fault acts before the handler (nothing happens on the server) or after it (the side effect,
    e.g. a created task, is real and only the answer is spoiled); see `Fault`.
    """

    async def endpoint(request: Request) -> Response:
        backend: Backend = request.app.state.backend
        raw = await request.body()
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        backend.log_request(request.method, path, request.headers, _loggable_json(raw))
        fault = backend.take_fault(route, in_process=IN_PROCESS_HEADER.lower() in request.headers)
        delay = backend.settings.latency + (fault.seconds if fault is not None and fault.kind == "delay" else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        if fault is not None and not fault.after:
            early = _fault_before(fault, route, backend)
            if early is not None:
                return early
        request.state.fault = fault
        response = await handler(request, backend)
        if fault is not None and (fault.after or fault.kind in AFTER_KINDS):
            return _fault_after(fault, route, response)
        return response

    return endpoint


def _fault_before(fault: Fault, route: str, backend: Backend) -> Response | None:
    """The answer of a fault that strikes before the handler runs, or None to let it run."""
    if fault.kind == "status":
        raise fault.to_error(oss=route in _OSS_ROUTES)
    if fault.kind == "body":
        return Response(fault.content, status_code=fault.http_status or 200, media_type=fault.content_type)
    if fault.kind == "drop_before":  # over real HTTP: the connection closes before any answer
        return _cut(Response(b"{}", media_type=JSON), 0.0, honest_length=False)
    if fault.kind == "url_expired":
        now = backend.clock()
        raise errors.oss_access_denied(
            "Request has expired.",
            Expires=_oss_time(now - 60),
            ServerTime=_oss_time(now),
        )
    return None  # delay, outcome (read by the create handlers)


def _fault_after(fault: Fault, route: str, response: Response) -> Response:
    """Spoil the answer of a request that was processed (the task exists, the image was made)."""
    if fault.kind == "status":
        raise fault.to_error(oss=route in _OSS_ROUTES)
    if fault.kind == "body":
        return Response(fault.content, status_code=fault.http_status or 200, media_type=fault.content_type)
    if fault.kind == "drop_after":  # over real HTTP: the connection closes before the answer is sent
        return _cut(response, 0.0, honest_length=False)
    if fault.kind == "truncated":
        return _cut(response, fault.keep, honest_length=fault.honest_length)
    if fault.kind == "corrupt":
        return _replace_body(response, corrupt_bytes(bytes(response.body)))
    if fault.kind == "bomb":
        return _replace_body(response, decompression_bomb_png(fault.width, fault.height), media_type="image/png")
    if fault.kind == "task_status" and response.status_code == 200:
        body = json.loads(response.body)
        if fault.value == "UNKNOWN":  # what the service says of a task it no longer knows (§3.2)
            body["output"] = {"task_id": body["output"].get("task_id"), "task_status": "UNKNOWN"}
            body.pop("usage", None)
        else:
            body["output"]["task_status"] = fault.value
        return _json(body, media_type=JSON_UTF8)
    return response


def _replace_body(response: Response, content: bytes, *, media_type: str | None = None) -> Response:
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
    return Response(
        content,
        status_code=response.status_code,
        media_type=media_type or response.headers.get("content-type"),
        headers=headers,
    )


def _cut(response: Response, keep: float, *, honest_length: bool) -> Response:
    """The first `keep` of the body; a dishonest Content-Length still announces the whole body."""
    full = bytes(response.body)
    cut = _replace_body(response, full[: int(len(full) * keep)])
    if not honest_length:
        # Over real HTTP the server then closes the connection early; EmulatorTransport raises as httpx would.
        cut.headers["content-length"] = str(max(len(full), 1))
    return cut


def _oss_time(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _loggable_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None  # multipart uploads and malformed bodies are logged by their headers only


def _json(
    body: dict[str, Any], *, status: int = 200, media_type: str = JSON, headers: dict[str, str] | None = None
) -> Response:
    # Compact and UTF-8, like the service; ensure_ascii=False keeps Chinese prompts readable.
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(content, status_code=status, media_type=media_type, headers=headers)


def _origin(request: Request) -> str:
    # From the request itself, so URLs work in-process (EmulatorTransport) and over loopback alike.
    return f"{request.url.scheme}://{request.url.netloc}"


# DashScope API routes --------------------------------------------------------------------------------


async def _create_task(request: Request, backend: Backend) -> Response:
    account = backend.authenticate(request.headers.get("authorization"))
    if request.headers.get("x-dashscope-async", "").strip().lower() != "enable":
        # §6.6: only the message is documented. 403 AccessDenied mirrors the recorded answer to the
        # opposite mistake ("...does not support asynchronous calls"). The real service allows
        # sync calls for wan2.2-t2i-flash/plus; the emulator does not emulate that mode.
        raise errors.access_denied("current user api does not support synchronous calls")
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise errors.invalid_parameter("The request body is not valid JSON.") from None
    oss_resolve = request.headers.get("x-dashscope-ossresourceresolve", "").strip().lower() == "enable"
    task = backend.create_task(account, body, oss_resolve=oss_resolve, outcome=_outcome_of(request))
    return _json({"output": {"task_status": "PENDING", "task_id": task.task_id}, "request_id": task.request_id})


def _outcome_of(request: Request) -> Fault | None:
    fault = getattr(request.state, "fault", None)
    return fault if fault is not None and fault.kind == "outcome" else None


async def _query_task(request: Request, backend: Backend) -> Response:
    account = backend.authenticate(request.headers.get("authorization"))
    backend.check_query_rate(account)
    task_id = request.path_params["task_id"]
    request_id = backend.new_request_id()
    found = backend.get_task(account, task_id)
    if found is None:  # unknown, expired, or another account's: the service says UNKNOWN (§3.2)
        return _json(
            {"request_id": request_id, "output": {"task_id": task_id, "task_status": "UNKNOWN"}}, media_type=JSON_UTF8
        )
    output, usage = _task_output(backend, *found, _origin(request))
    body: dict[str, Any] = {"request_id": request_id, "output": output}
    if usage is not None:
        body["usage"] = usage
    return _json(body, media_type=JSON_UTF8)


def _task_output(backend: Backend, task: Task, now: float, origin: str) -> tuple[dict[str, Any], dict[str, int] | None]:
    """The `output` (and `usage`) of a task as GET /tasks/{id} shows it at `now` (§3.2, §3.3)."""
    status = task.status_at(now)
    out: dict[str, Any] = {"task_id": task.task_id, "task_status": status, "submit_time": format_time(task.submit_time)}
    if status == "PENDING":
        return out, None
    if status == "CANCELED":
        assert task.cancel_time is not None
        out["end_time"] = format_time(task.cancel_time)
        return out, None
    assert task.start_time is not None and task.end_time is not None
    out["scheduled_time"] = format_time(task.start_time)
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


async def _cancel_task(request: Request, backend: Backend) -> Response:
    account = backend.authenticate(request.headers.get("authorization"))
    backend.cancel_task(account, request.path_params["task_id"])
    # The success body is undocumented (§6.8); the request id alone is the likely answer.
    return _json({"request_id": backend.new_request_id()}, media_type=JSON_UTF8)


async def _list_tasks(request: Request, backend: Backend) -> Response:
    account = backend.authenticate(request.headers.get("authorization"))
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
    return _json(
        {
            "total": len(found),
            "data": [_list_item(task, status, info) for task, status in page],
            "total_page": math.ceil(len(found) / page_size),
            "page_no": page_no,
            "request_id": backend.new_request_id(),
            "page_size": page_size,
        },
        media_type=JSON_UTF8,
    )


def _list_item(task: Task, status: str, info: dict[str, str]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "api_key_id": info["api_key_id"],
        "caller_parent_id": info["caller_parent_id"],
        "caller_uid": info["caller_uid"],
        "gmt_create": epoch_ms(task.submit_time),
        "model_name": task.model_name,
        "region": "cn-beijing",
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


async def _upload_policy(request: Request, backend: Backend) -> Response:
    account = backend.authenticate(request.headers.get("authorization"))
    query = request.query_params
    if query.get("action") != "getPolicy":
        raise errors.invalid_parameter(f"The parameter action must be getPolicy, got {query.get('action')!r}.")
    policy = backend.issue_policy(account, query.get("model"))
    data = {
        "policy": policy.policy,
        "signature": policy.signature,
        "upload_dir": policy.upload_dir,
        "upload_host": _origin(request) + UPLOAD_PATH,
        "expire_in_seconds": 300,
        "max_file_size_mb": 1024,
        "capacity_limit_mb": 999999999,
        "oss_access_key_id": UPLOAD_ACCESS_KEY_ID,
        "x_oss_object_acl": "private",
        "x_oss_forbid_overwrite": "true",
    }
    return _json({"data": data, "request_id": backend.new_request_id()})


# Object store (OSS) routes ---------------------------------------------------------------------------


async def _upload(request: Request, backend: Backend) -> Response:
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


async def _result_image(request: Request, backend: Backend) -> Response:
    data = await run_in_threadpool(
        backend.result_image,
        request.url.path,
        dict(request.query_params),
        has_authorization="authorization" in request.headers,
    )
    headers = {"x-oss-request-id": backend.new_request_id().replace("-", "").upper()[:24]}
    return Response(data, media_type="image/png", headers=headers)


# Errors ------------------------------------------------------------------------------------------------


async def _on_emulator_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.EmulatorError)
    backend: Backend = request.app.state.backend
    request_id = backend.new_request_id()
    if isinstance(exc, errors.OssError):
        return _oss_error(exc, request_id)
    media_type = JSON_UTF8 if request.url.path.startswith(f"{API_PREFIX}/tasks") else JSON
    return _json(
        {"code": exc.code, "message": exc.message, "request_id": request_id},
        status=exc.status,
        media_type=media_type,
        headers={"X-Request-ID": request_id, **exc.headers},
    )


def _oss_error(exc: errors.OssError, request_id: str) -> Response:
    oss_id = request_id.replace("-", "").upper()[:24]
    parts = [f"<Code>{escape(exc.code)}</Code>", f"<Message>{escape(exc.message)}</Message>"]
    parts += [f"<{k}>{escape(v)}</{k}>" for k, v in exc.extra.items()]
    parts += [f"<RequestId>{oss_id}</RequestId>", "<HostId>emulator-oss.wanx-nb.invalid</HostId>"]
    xml = '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n  ' + "\n  ".join(parts) + "\n</Error>\n"
    return Response(
        xml.encode(),
        status_code=exc.status,
        media_type="application/xml",
        headers={"x-oss-request-id": oss_id, **exc.headers},
    )


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error = errors.not_found(request.method, request.url.path)
    else:
        error = errors.EmulatorError(
            exc.status_code, "MethodNotAllowed" if exc.status_code == 405 else "BadRequest", str(exc.detail)
        )
    return await _on_emulator_error(request, error)
