"""The messages-based image endpoints, without I/O: `multimodal-generation` (sync) and `image-generation` (async).

Section numbers ("2026 §n") refer to `shared/spec/dashscope-image-generation-2026.md`. Both endpoints
take the same body (2026 §3.2): the prompt as the one text item of the one user message, every other
field (negative_prompt included) in `parameters`. The async one answers a task polled at
`/tasks/{id}` like the legacy API; its SUCCEEDED output carries `choices` instead of `results`.

- `build_image_create(request, protocol, ...)` -> `WireRequest` (the async header only for IMG)
- `choice_results(output)` -> result items `{url, actual_prompt?}`, one per image, legacy-shaped
- `parse_sync_result(body)` -> a SUCCEEDED `Task` with no task id (a sync call has none)
- `usage_size(usage)` -> "W*H" the service reports it made, from any family's usage fields
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._exceptions import APIError
from ._modelspec import Protocol
from ._models import Task, TaskStatus
from ._protocol import WireRequest, request_headers
from ._request import GenerationRequest

__all__ = ["build_image_create", "choice_results", "parse_sync_result", "usage_size"]

# Fields that are not parameters of the messages body (the prompt travels in the message).
_NOT_PARAMETERS = ("prompt",)


def build_image_create(
    request: GenerationRequest, protocol: Protocol, *, wire_model: str | None = None, workspace: str | None = None
) -> WireRequest:
    """POST a messages-based create: MMG (sync, never the async header: a sync-only model answers 403
    AccessDenied to it, 2026 §3.1) or IMG (async, the header is required, 2026 §4.1)."""
    if not protocol.uses_messages:
        raise ValueError(f"{protocol.name} is not a messages-based endpoint")
    given = request.given()
    # 2026 §3.2: negative_prompt lives in parameters on these endpoints (not in input), and so do wan2.7's
    # thinking_mode and enable_sequential on both (§3.3, §4.1: one body); validate() refuses them elsewhere.
    params = {k: v for k, v in given.items() if k not in _NOT_PARAMETERS}
    body = {
        "model": wire_model or request.model,
        "input": {"messages": [{"role": "user", "content": [{"text": request.prompt}]}]},
        "parameters": params,
    }
    headers = request_headers(workspace)
    headers["Content-Type"] = "application/json"
    if protocol.is_async:
        headers["X-DashScope-Async"] = "enable"
    return WireRequest("POST", protocol.path, headers, None, body)


def choice_results(output: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """One result item per image from `output.choices[].message.content[]` (2026 §3.4).

    Every choice and every content item is walked (one choice per image is documented; several
    images in one content list are seen in third-party fixtures). An item is an image when it has
    `image` (not by `type`, which the qwen answers lack). A text item (z-image-turbo) is the prompt
    the model used: it becomes the `actual_prompt` of the images of that choice.
    """
    items: list[dict[str, Any]] = []
    for choice in output.get("choices") or ():
        message = choice.get("message") if isinstance(choice, Mapping) else None
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            continue
        texts = [c["text"] for c in content if isinstance(c, Mapping) and isinstance(c.get("text"), str) and c["text"]]
        for part in content:
            if isinstance(part, Mapping) and part.get("image"):
                item: dict[str, Any] = {"url": str(part["image"])}
                if texts:
                    item["actual_prompt"] = texts[0]
                items.append(item)
    return tuple(items)


def parse_sync_result(body: Any, *, emulator: bool = False) -> Task:
    """The answer of a sync call as a SUCCEEDED Task with `task_id` None (there is no task to look up).

    A 200 with `code` and no `output` is a business error (2026 §6): it is raised as an APIError with
    the server's code and message. An answer without a readable image list raises APIError too; the
    caller decides what that means for the bill (a sync call cannot be looked up afterwards).
    """
    if not isinstance(body, Mapping):
        raise APIError("unexpected answer to a sync call: not a JSON object", code="InvalidResponse")
    output = body.get("output")
    if not isinstance(output, Mapping):
        if body.get("code"):
            raise APIError(
                f"{body.get('code')}: {body.get('message') or 'no message'}", code=str(body["code"]),
                request_id=body.get("request_id"), sent=True,
            )
        raise APIError("unexpected answer to a sync call: no 'output' object", code="InvalidResponse")
    results = choice_results(output)
    if not results:
        raise APIError("unexpected answer to a sync call: no image in output.choices", code="InvalidResponse")
    usage = body.get("usage")
    metric = output.get("task_metric") or output.get("task_metrics")
    return Task(
        task_id=None,
        status=TaskStatus.SUCCEEDED,
        request_id=body.get("request_id"),
        results=results,
        metrics=dict(metric) if isinstance(metric, Mapping) else None,
        usage=dict(usage) if isinstance(usage, Mapping) else None,
        emulator=emulator,
    )


def usage_size(usage: Mapping[str, Any] | None) -> str | None:
    """The size the service reports it made: `size` (wan), `width`/`height` (qwen, z-image) or
    `output_width`/`output_height` (qwen-image-3.0), 2026 §3.4; None when it says nothing."""
    if not usage:
        return None
    size = usage.get("size")
    if isinstance(size, str) and "*" in size:
        return size
    for w_key, h_key in (("width", "height"), ("output_width", "output_height")):
        w, h = usage.get(w_key), usage.get(h_key)
        if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0:
            return f"{w}*{h}"
    return None
