"""The paths of the emulated service, the route names used by faults and the request log, and the
JSON response shape every API route shares."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from starlette.requests import Request
from starlette.responses import Response

__all__ = [
    "API_PREFIX",
    "CREATE_PATH",
    "IMAGE_GENERATION_PATH",
    "IN_PROCESS_HEADER",
    "JSON",
    "JSON_UTF8",
    "LoggedRequest",
    "MULTIMODAL_PATH",
    "RESULTS_PREFIX",
    "ROUTES",
    "UPLOAD_PATH",
    "json_response",
    "origin_of",
    "route_of",
]

# The route names used by fault knobs, `Emulator.script` and `LoggedRequest.route`.
# "create" is either async create (legacy text2image or image-generation); "generate" the sync call.
ROUTES: tuple[str, ...] = ("create", "generate", "query", "cancel", "list", "policy", "upload", "image")

API_PREFIX = "/api/v1"
CREATE_PATH = f"{API_PREFIX}/services/aigc/text2image/image-synthesis"
IMAGE_GENERATION_PATH = f"{API_PREFIX}/services/aigc/image-generation/generation"
MULTIMODAL_PATH = f"{API_PREFIX}/services/aigc/multimodal-generation/generation"
UPLOAD_PATH = "/emulator-oss"
RESULTS_PREFIX = "/emulator-results"
# Marks requests that came through EmulatorTransport, so the app leaves scripted drops to it.
IN_PROCESS_HEADER = "X-Wanx-Emulator-Transport"


def route_of(method: str, path: str) -> str | None:
    """The route name ("create", "query", ...) of a request, or None for paths the emulator lacks."""
    if path in (CREATE_PATH, IMAGE_GENERATION_PATH) and method == "POST":
        return "create"
    if path == MULTIMODAL_PATH and method == "POST":
        return "generate"
    if path == f"{API_PREFIX}/tasks" and method == "GET":
        return "list"
    if path.startswith(f"{API_PREFIX}/tasks/"):
        rest = path[len(f"{API_PREFIX}/tasks/") :]
        if method == "POST" and rest.endswith("/cancel") and rest.count("/") == 1:
            return "cancel"
        if method == "GET" and "/" not in rest:
            return "query"
    if path == f"{API_PREFIX}/uploads" and method == "GET":
        return "policy"
    if path == UPLOAD_PATH and method == "POST":
        return "upload"
    if path.startswith(f"{RESULTS_PREFIX}/") and method in ("GET", "HEAD"):
        return "image"
    return None


class LoggedRequest(NamedTuple):
    """A request as the server saw it; the Authorization value is masked to its last 4 characters."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any

    @property
    def route(self) -> str | None:
        return route_of(self.method, self.path.split("?", 1)[0])


# Recorded content types (§1.4): the service endpoints say plain application/json, /tasks adds a charset.
JSON = "application/json"
JSON_UTF8 = "application/json;charset=UTF-8"


def json_response(
    body: dict[str, Any], *, status: int = 200, media_type: str = JSON, headers: dict[str, str] | None = None
) -> Response:
    # Compact and UTF-8, like the service; ensure_ascii=False keeps Chinese prompts readable.
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(content, status_code=status, media_type=media_type, headers=headers)


def origin_of(request: Request) -> str:
    # From the request itself, so URLs work in-process (EmulatorTransport) and over loopback alike.
    return f"{request.url.scheme}://{request.url.netloc}"
