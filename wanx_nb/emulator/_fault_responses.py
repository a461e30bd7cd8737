"""How scripted faults spoil an answer: before the handler runs, or after it did its work.

`Fault` (in `_faults`) is the data; this module turns it into HTTP: error bodies, raw pages, cut or
garbled bodies, a decompression-bomb PNG, a rewritten task status.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from starlette.responses import Response

from . import _errors as errors
from ._faults import Fault, corrupt_bytes, decompression_bomb_png
from ._routes import JSON, JSON_UTF8, json_response

__all__ = ["fault_after", "fault_before"]

_OSS_ROUTES = ("upload", "image")


def fault_before(fault: Fault, route: str, now: float) -> Response | None:
    """The answer of a fault that strikes before the handler runs, or None to let it run."""
    if fault.kind == "status":
        raise fault.to_error(oss=route in _OSS_ROUTES)
    if fault.kind == "body":
        return Response(fault.content, status_code=fault.http_status or 200, media_type=fault.content_type)
    if fault.kind == "drop_before":  # over real HTTP: the connection closes before any answer
        return _cut(Response(b"{}", media_type=JSON), 0.0, honest_length=False)
    if fault.kind == "url_expired":
        raise errors.oss_access_denied(
            "Request has expired.",
            Expires=_oss_time(now - 60),
            ServerTime=_oss_time(now),
        )
    return None  # delay, outcome (read by the create handlers)


def fault_after(fault: Fault, route: str, response: Response) -> Response:
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
        body = json.loads(bytes(response.body))
        if fault.value == "UNKNOWN":  # what the service says of a task it no longer knows (§3.2)
            body["output"] = {"task_id": body["output"].get("task_id"), "task_status": "UNKNOWN"}
            body.pop("usage", None)
        else:
            body["output"]["task_status"] = fault.value
        return json_response(body, media_type=JSON_UTF8)
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
