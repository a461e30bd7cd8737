"""The messages-based endpoints (2026 spec): the sync `multimodal-generation` call, the async
`image-generation` create, and the `choices` answer shape per model family (2026 §3.4, §4.2).

The bodies are checked by `_rules.parse_messages` and run as tasks by `Backend`, like legacy tasks;
this module only knows the headers and the answer shapes.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .._registry import Protocol, catalog_model
from . import _errors as errors
from ._backend import Backend
from ._clock import FakeClock, format_time
from ._routes import json_response, origin_of
from ._tasks import Task
from ._views import account_of, task_head

__all__ = ["create_image_task", "generate", "messages_output", "task_status_output"]

_WAN = ("wan2.6", "wan2.7")
# 2026 §3.4: qwen-image-3.0 bills output images by area tier.
_QIMA_2K_ABOVE = 2_250_000


def _async_header(request: Request) -> bool:
    return request.headers.get("x-dashscope-async", "").strip().lower() == "enable"


async def _body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise errors.invalid_parameter("The request body is not valid JSON.") from None


def _oss_resolve(request: Request) -> bool:
    return request.headers.get("x-dashscope-ossresourceresolve", "").strip().lower() == "enable"


async def generate(request: Request, backend: Backend) -> Response:
    """POST /services/aigc/multimodal-generation/generation: the image in the answer (2026 §3)."""
    account = account_of(request, backend)
    if _async_header(request):
        # Recorded third-party body (2026 §1.1, A7): 403 AccessDenied.
        raise errors.access_denied("current user api does not support asynchronous calls")
    body = await _body(request)
    fault = getattr(request.state, "fault", None)
    outcome = fault if fault is not None and fault.kind == "outcome" else None
    task = backend.create_task(account, body, oss_resolve=_oss_resolve(request), outcome=outcome, protocol=Protocol.MMG)
    assert task.end_time is not None
    if not isinstance(backend.clock, FakeClock):
        await asyncio.sleep(max(0.0, task.end_time - backend.clock()))  # the call blocks while the image is made
    if task.failure is not None or len(task.failed_items) >= task.n:
        code, message = task.failure or task.item_failure
        # A sync call that made nothing answers the error envelope (2026 §6); nothing is billed.
        raise errors.EmulatorError(
            400 if code.startswith(("DataInspection", "InvalidParameter")) else 500, code, message
        )
    output, usage = messages_output(backend, task, origin_of(request), sync=True)
    headers = {"X-Request-ID": task.request_id}
    per_minute = catalog_model(task.model).submits_per_minute
    if per_minute is not None:  # the recorded answer names the per-minute cap (2026 §3.4, A1)
        meta = {"model": task.model, "user_spec": {"count_limit": per_minute, "count_limit_period": 60}}
        headers["x-dashscope-inner-flow-control-meta"] = json.dumps(meta, separators=(",", ":"))
    return json_response({"output": output, "usage": usage, "request_id": task.request_id}, headers=headers)


async def create_image_task(request: Request, backend: Backend) -> Response:
    """POST /services/aigc/image-generation/generation: a task polled at /tasks/{id} (2026 §4.1)."""
    account = account_of(request, backend)
    if not _async_header(request):
        # The message is documented (2026 §4.1); its status and code are inferred (403 AccessDenied).
        raise errors.access_denied("current user api does not support synchronous calls")
    body = await _body(request)
    fault = getattr(request.state, "fault", None)
    outcome = fault if fault is not None and fault.kind == "outcome" else None
    task = backend.create_task(account, body, oss_resolve=_oss_resolve(request), outcome=outcome, protocol=Protocol.IMG)
    return json_response({"output": {"task_status": "PENDING", "task_id": task.task_id}, "request_id": task.request_id})


def task_status_output(backend: Backend, task: Task, now: float, origin: str) -> tuple[dict[str, Any], Any]:
    """GET /tasks/{id} for an image-generation task (2026 §4.2): legacy times, `choices` results."""
    status, out, settled = task_head(task, now)
    if settled:
        return out, None
    assert task.end_time is not None
    if status == "RUNNING":  # undocumented for IMG: the legacy shape without metrics (2026 §4.2, inferred)
        return out, None
    out["end_time"] = format_time(task.end_time)
    if status == "FAILED":
        code, message = task.failure or task.item_failure
        out.update(code=code, message=message)
        return out, None
    output, usage = messages_output(backend, task, origin, sync=False)
    return {**out, **output}, usage


def messages_output(backend: Backend, task: Task, origin: str, *, sync: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `output` extras with `choices` (one per image) and the `usage` of a finished task, per family."""
    family = task.family
    ok = [i for i in range(task.n) if i not in task.failed_items]
    choices = [_choice(task, origin + backend.result_path(task, i)) for i in ok]
    output: dict[str, Any] = {}
    if family in _WAN:
        output["finished"] = True
    output["choices"] = choices
    if family == "qwen-image":  # singular task_metric, recorded on the sync answer (2026 §3.4, §13.18)
        output["task_metric"] = {"FAILED": task.n - len(ok), "SUCCEEDED": len(ok), "TOTAL": task.n}
    elif family == "qwen-image-3.0":
        output["rewrite_status"] = "not_use"  # the only documented value (A4), even with prompt_extend on
    if task.failed_items and not sync and family != "qwen-image":
        # Partial failures are undocumented for IMG; the legacy counts are the best guide (inferred).
        output["task_metrics"] = {"TOTAL": task.n, "SUCCEEDED": len(ok), "FAILED": task.n - len(ok)}
    return output, _usage(task, len(ok))


def _choice(task: Task, url: str) -> dict[str, Any]:
    if task.family == "z-image":
        # The image, then the prompt as used (rewritten when prompt_extend is on) (2026 §3.4, A5).
        text = task.actual_prompt or task.prompt
        content: list[dict[str, str]] = [{"image": url}, {"text": text}]
        reasoning = f"Rewriting the prompt: {text}" if task.actual_prompt else ""
        return {
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": content, "reasoning_content": reasoning},
        }
    if task.family in (*_WAN, "qwen-image-3.0"):
        return {"finish_reason": "stop", "message": {"role": "assistant", "content": [{"image": url, "type": "image"}]}}
    # qwen-image max/plus and 2.0: no `type`, content before role as recorded (A1).
    return {"finish_reason": "stop", "message": {"content": [{"image": url}], "role": "assistant"}}


def _usage(task: Task, images: int) -> dict[str, Any]:
    """The usage keys of each family, in the order the spec shows them (2026 §3.4)."""
    family, w, h = task.family, task.width, task.height
    if family == "qwen-image":
        return {"height": h, "image_count": images, "width": w}
    if family == "qwen-image-2.0":
        return {"width": w, "height": h, "image_count": images}
    if family == "qwen-image-3.0":
        return {
            "output_height": h,
            "output_width": w,
            "input_image_count": 0,
            "input_image_type": "qima_input_1k",
            "output_image_count": images,
            "output_image_type": "qima_output_1k" if w * h <= _QIMA_2K_ABOVE else "qima_output_2k",
        }
    if family == "z-image":
        usage: dict[str, Any] = {"width": w, "height": h, "image_count": images}
        rewritten = task.actual_prompt is not None
        tokens = (len(task.prompt) + 200, len(task.actual_prompt or "") + 100) if rewritten else (0, 0)
        usage.update(input_tokens=tokens[0], output_tokens=tokens[1], total_tokens=sum(tokens))
        if rewritten:
            usage["output_tokens_details"] = {"reasoning_tokens": 100}
        return usage
    # wan2.6 has zero tokens; wan2.7 counts real ones (18790 in for a short prompt with thinking, A6).
    tokens = (0, 0)
    if family == "wan2.7":
        tokens = ((18750 if task.thinking_mode else 250) + len(task.prompt) // 4, 2 * images)
    return {
        "image_count": images,
        "input_tokens": tokens[0],
        "output_tokens": tokens[1],
        "size": task.size_label or f"{w}*{h}",
        "total_tokens": sum(tokens),
    }
