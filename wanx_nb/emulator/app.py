"""The emulator as a Starlette app: the routing table, what every route shares (request log, latency,
scripted faults, the emulator header) and the error handlers.

The handlers are in `_views`, the rules in `_backend` and the modules it uses. One exception handler
turns every `EmulatorError` into the real error body (JSON for the API, XML for the object store).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from xml.sax.saxutils import escape

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._version import __version__
from . import _errors as errors
from . import _messages as messages
from . import _views as views
from ._backend import Backend
from ._fault_responses import fault_after, fault_before
from ._routes import (
    API_PREFIX,
    CREATE_PATH,
    IMAGE_GENERATION_PATH,
    IN_PROCESS_HEADER,
    JSON,
    JSON_UTF8,
    MULTIMODAL_PATH,
    RESULTS_PREFIX,
    UPLOAD_PATH,
    json_response,
)
from ._settings import EmulatorSettings

__all__ = [
    "EMULATOR_HEADER",
    "EMULATOR_HEADER_VALUE",
    "TIME_SCALE_HEADER",
    "create_app",
]

EMULATOR_HEADER = "X-Wanx-Emulator"
EMULATOR_HEADER_VALUE = f"wanx_nb-emulator/{__version__}"
# Emulated tasks run at `time_scale` times the real durations; saying so lets a client's poll
# schedule expect the emulated durations rather than the real service's.
TIME_SCALE_HEADER = "X-Wanx-Emulator-Time-Scale"


Handler = Callable[[Request, Backend], Awaitable[Response]]


def create_app(settings: EmulatorSettings | None = None, *, backend: Backend | None = None) -> Starlette:
    """The emulator as an ASGI app, over `backend` (or a new one built from `settings`)."""
    backend = backend or Backend(settings)
    routes = [
        Route(CREATE_PATH, _endpoint("create", views.create_task), methods=["POST"]),
        Route(IMAGE_GENERATION_PATH, _endpoint("create", messages.create_image_task), methods=["POST"]),
        Route(MULTIMODAL_PATH, _endpoint("generate", messages.generate), methods=["POST"]),
        Route(f"{API_PREFIX}/tasks", _endpoint("list", views.list_tasks), methods=["GET"]),
        Route(f"{API_PREFIX}/tasks/{{task_id}}", _endpoint("query", views.query_task), methods=["GET"]),
        Route(f"{API_PREFIX}/tasks/{{task_id}}/cancel", _endpoint("cancel", views.cancel_task), methods=["POST"]),
        Route(f"{API_PREFIX}/uploads", _endpoint("policy", views.upload_policy), methods=["GET"]),
        Route(UPLOAD_PATH, _endpoint("upload", views.upload), methods=["POST"]),
        Route(f"{RESULTS_PREFIX}/{{day}}/{{name}}", _endpoint("image", views.result_image), methods=["GET"]),
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
            await backend.sleep(delay)
        if fault is not None and not fault.after:
            early = fault_before(fault, route, backend.clock())
            if early is not None:
                return early
        request.state.fault = fault
        response = await handler(request, backend)
        if fault is not None and fault.after:
            return fault_after(fault, route, response)
        return response

    return endpoint


def _loggable_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None  # multipart uploads and malformed bodies are logged by their headers only


# Errors ------------------------------------------------------------------------------------------------


async def _on_emulator_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.EmulatorError)
    backend: Backend = request.app.state.backend
    request_id = backend.new_request_id()
    if isinstance(exc, errors.OssError):
        return _oss_error(exc, request_id)
    media_type = JSON_UTF8 if request.url.path.startswith(f"{API_PREFIX}/tasks") else JSON
    return json_response(
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
