"""The paths of the emulated service and the route names used by faults and the request log."""

from __future__ import annotations

__all__ = ["API_PREFIX", "CREATE_PATH", "IN_PROCESS_HEADER", "RESULTS_PREFIX", "ROUTES", "UPLOAD_PATH", "route_of"]

# The route names used by fault knobs, `Emulator.script` and `LoggedRequest.route`.
ROUTES: tuple[str, ...] = ("create", "query", "cancel", "list", "policy", "upload", "image")

API_PREFIX = "/api/v1"
CREATE_PATH = f"{API_PREFIX}/services/aigc/text2image/image-synthesis"
UPLOAD_PATH = "/emulator-oss"
RESULTS_PREFIX = "/emulator-results"
# Marks requests that came through EmulatorTransport, so the app leaves scripted drops to it.
IN_PROCESS_HEADER = "X-Wanx-Emulator-Transport"


def route_of(method: str, path: str) -> str | None:
    """The route name ("create", "query", ...) of a request, or None for paths the emulator lacks."""
    if path == CREATE_PATH and method == "POST":
        return "create"
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
