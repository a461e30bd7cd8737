"""A failed request as an output: the error class, its code, the message verbatim, and a next step.

A request that may have been billed is never told to retry: its next step is `%wanx resume`.
`error_fields` is also the provenance a gallery or grid keeps for a failure in place.
"""

from __future__ import annotations

from typing import Any

from ._html_style import S_RESULT
from ._next_steps import next_step
from ._tiles_html import failure_tile_html

__all__ = ["ErrorReport", "error_fields", "error_html", "error_mimebundle", "error_text"]

MetaBundle = tuple[dict[str, Any], dict[str, Any]]

_CLASS_CODES = {
    "ValidationError": "Validation",
    "BudgetExceededError": "Budget",
    "ReplayMissError": "ReplayMiss",
    "WaitTimeoutError": "WaitTimeout",
    "KeyboardInterrupt": "Interrupted",
}


def error_fields(exc: BaseException) -> dict[str, Any]:
    """What is shown of an error: its class, code, message, request and task ids, the next step."""
    name = type(exc).__name__
    code = getattr(exc, "code", None)
    message = getattr(exc, "server_message", None) or str(exc) or name
    return {
        "error": name,
        "code": code,
        "message": message,
        "request_id": getattr(exc, "request_id", None),
        "task_id": getattr(exc, "task_id", None),
        "next_step": _next_step_for(exc, code or _CLASS_CODES.get(name)),
    }


def _next_step_for(exc: BaseException, code: str | None) -> str:
    """The code's next step, unless the request may have been billed: then never "retry", but resume."""
    from ._exceptions import APIConnectionError, TaskUnfinishedError

    if isinstance(exc, TaskUnfinishedError):
        return (
            "run `%wanx resume` (now or within 24 h) to save its images without paying again; "
            "re-running the cell would send (and bill) a new request"
        )
    if isinstance(exc, APIConnectionError) and exc.sent is False and exc.task_id is None:
        return (
            "no connection could be made, so nothing reached the service and nothing was billed: check the "
            "network, a proxy or DASHSCOPE_HTTP_BASE_URL, then run it again"
        )
    return next_step(code)


def error_text(exc: BaseException) -> str:
    """text/plain for a failed request: the error class, the code and the message verbatim, a next step."""
    f = error_fields(exc)
    code = f" {f['code']}" if f["code"] else ""
    return f"wanx error: {f['error']}{code}: {f['message']}\nnext step: {f['next_step']}"


def error_html(exc: BaseException) -> str:
    """The error as a failure tile titled with its class and ids."""
    f = error_fields(exc)
    ids = []
    if f["request_id"]:
        ids.append(f"request_id {f['request_id']}")
    if f["task_id"]:
        ids.append(f"task_id {f['task_id']}")
    title = f["error"] + (" · " + " · ".join(ids) if ids else "")
    return failure_tile_html(title, f["code"], f["message"], f["next_step"])


def error_mimebundle(exc: BaseException) -> MetaBundle:
    """(data, metadata) for a failed request: code, message verbatim, request_id and a next step."""
    f = error_fields(exc)
    data = {
        "text/plain": error_text(exc),
        "text/html": f'<div class="wanx-result" style="{S_RESULT}">{error_html(exc)}</div>',
    }
    return data, {"wanx_nb": {k: v for k, v in f.items() if v is not None}}


class ErrorReport:
    """A failed request, displayable: `ErrorReport(exc)` renders with `error_mimebundle`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __repr__(self) -> str:
        return error_text(self.error)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> MetaBundle:
        return error_mimebundle(self.error)
