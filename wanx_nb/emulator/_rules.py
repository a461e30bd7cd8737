"""Request rules: a create body checked against the model's registry entry, as the service checks it.

Each function raises the 4xx `EmulatorError` the service would answer; a model's size rule comes
from `_registry`, so the emulator refuses exactly what the registry says the service refuses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._registry import V1_STYLES, ModelSpec, Protocol, catalog_model
from . import _errors as errors

__all__ = [
    "Generation",
    "MAX_SEED",
    "check_size",
    "parse_generation",
    "parse_messages",
    "served_model",
]

MAX_SEED = 2_147_483_647

_SIZE_RE = re.compile(r"^\s*(\d+)\s*\*\s*(\d+)\s*$")
_REF_MODES = ("repaint", "refonly")


@dataclass
class Generation:
    """A validated create request."""

    spec: ModelSpec
    model_name: str
    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    size_error: str | None
    n: int
    seed: int | None
    style: str | None
    ref_url: str | None
    ref_strength: float
    ref_mode: str
    watermark: bool
    prompt_extend: bool
    # The messages protocols (2026 §3.3): what the usage reports as the size, and model extras.
    size_label: str = ""
    thinking_mode: bool = False
    prompt_extend_mode: str | None = None


def _param(params: Mapping[str, Any], name: str, default: Any) -> Any:
    # JSON null means "not given", as for the Java service behind the API.
    value = params.get(name)
    return default if value is None else value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_generation(spec: ModelSpec, model_name: str, body: dict[str, Any]) -> Generation:
    """Check a create body against the model's rules (§2.2, §2.3); raise the 4xx the service would.

    Parameters a model family does not take (style on V2, watermark on V1, anything unknown) are
    ignored, as the real service does: the official SDK passes extra kwargs straight through.
    """
    inputs = body.get("input")
    if not isinstance(inputs, dict):
        raise errors.bad_request_empty_input()
    prompt = inputs.get("prompt")
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        raise errors.bad_request_empty_input()
    if not isinstance(prompt, str):
        raise errors.invalid_parameter(f"input.prompt must be a string, got {type(prompt).__name__}.")
    params = body.get("parameters")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise errors.invalid_parameter("parameters must be a JSON object.")
    negative = inputs.get("negative_prompt")
    if negative is None and spec.family == "qwen-image":
        # Disagreement (2026 §13.6): the qwen table says input.negative_prompt, its curl sends it in
        # parameters. Both are accepted.
        negative = params.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise errors.invalid_parameter(f"input.negative_prompt must be a string, got {type(negative).__name__}.")

    n, seed = _check_n_and_seed(spec, params)
    size = _param(params, "size", spec.default_size)
    if not isinstance(size, str):
        raise errors.invalid_parameter(f"The parameter size must be a string like '1024*1024', got {size!r}.")
    width, height, size_error = check_size(spec, size)

    v1 = spec.is_v1
    style = _param(params, "style", "<auto>") if v1 else None
    if v1 and style not in V1_STYLES:
        raise errors.invalid_parameter(
            f"The parameter style {style!r} is not supported; use one of {', '.join(V1_STYLES)}."
        )
    ref_strength = _param(params, "ref_strength", 0.5) if v1 else 0.5
    if not _is_number(ref_strength) or not 0.0 <= ref_strength <= 1.0:
        raise errors.invalid_parameter(
            f"The parameter ref_strength must be a number in [0.0, 1.0], got {ref_strength!r}."
        )
    ref_mode = _param(params, "ref_mode", "repaint") if v1 else "repaint"
    if ref_mode not in _REF_MODES:
        raise errors.invalid_parameter(f"The parameter ref_mode must be 'repaint' or 'refonly', got {ref_mode!r}.")
    # The SDKs send input.ref_img; the guide's curl examples send input.ref_image (§6.1). Which the
    # server reads is unknown, so both are accepted, ref_img first.
    ref_url = (inputs.get("ref_img") or inputs.get("ref_image")) if v1 else None
    if ref_url is not None and not isinstance(ref_url, str):
        raise errors.invalid_url(f"the reference image must be a URL string, got {type(ref_url).__name__}.")

    watermark = _flag(spec, params, "watermark")
    prompt_extend = _flag(spec, params, "prompt_extend")

    return Generation(
        spec=spec,
        model_name=model_name,
        prompt=prompt,
        negative_prompt=negative,
        width=width,
        height=height,
        size_error=size_error,
        n=n,
        seed=seed,
        style=style,
        ref_url=ref_url or None,
        ref_strength=float(ref_strength),
        ref_mode=ref_mode,
        watermark=watermark,
        prompt_extend=prompt_extend,
    )


def check_size(spec: ModelSpec, size: str) -> tuple[int, int, str | None]:
    """(width, height, deferred error) of a size under the registry's rule for `spec`.

    A size outside the rule is refused with 400, except for models whose service checks sizes after
    queueing (wanx-v1): those get a deferred error, and the task FAILS with it.
    """
    rule = spec.sizing
    match = _SIZE_RE.match(size)
    tier = rule.dimensions(size) if size.strip().upper() in rule.tier_names else None
    if tier is not None:
        return tier[0], tier[1], None
    if rule.deferred:  # a fixed list, checked asynchronously (doc sample v1-query-failed-doc)
        if size in rule.fixed:
            w, h = (int(x) for x in size.split("*"))
            return w, h, None
        w, h = (int(match.group(1)), int(match.group(2))) if match else (1024, 1024)
        return w, h, f"The size is not match the allowed size {list(rule.fixed)}"
    if not match and rule.tiers:
        raise errors.invalid_parameter(f"The size {size} is not supported by {spec.name}: use {rule.describe()}.")
    if not match:
        # The service wants "W*H" with a star: "1024x1024" is refused here, as by the real service.
        raise errors.invalid_parameter(f"The parameter size must look like 'W*H', e.g. '{rule.default}', got {size!r}.")
    w, h = int(match.group(1)), int(match.group(2))
    if rule.problem(f"{w}*{h}") is not None:
        raise errors.invalid_parameter(f"The size {size} is not supported by {spec.name}: use {rule.describe()}.")
    return w, h, None


def _check_n_and_seed(spec: ModelSpec, params: Mapping[str, Any]) -> tuple[int, int | None]:
    n = _param(params, "n", spec.default_n)
    if spec.max_n == 1 and spec.family in ("qwen-image", "z-image") and n != 1:
        raise errors.invalid_parameter("num_images_per_prompt must be 1")  # verbatim (2026 §6, A7)
    # 2026 §3.3, §13.7: wan2.7 makes 1-4 images, "with enable_sequential=true up to 12" (third parties;
    # no source refuses it): the catalog's rule, which the client reads too.
    max_n = spec.max_n_for(params.get("enable_sequential") is True)
    if not _is_int(n) or not 1 <= n <= max_n:
        raise errors.invalid_parameter(f"The parameter n must be an integer in [1, {max_n}], got {n!r}.")
    seed = params.get("seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed <= MAX_SEED):
        raise errors.invalid_parameter(f"The parameter seed must be an integer in [0, {MAX_SEED}], got {seed!r}.")
    return n, seed


def _flag(spec: ModelSpec, params: Mapping[str, Any], name: str) -> bool:
    """A boolean parameter the model takes (its default when absent); False for one it does not take."""
    if name not in spec.params:
        return False
    value = _param(params, name, spec.defaults.get(name, name == "prompt_extend"))
    if not isinstance(value, bool):
        raise errors.invalid_parameter(f"The parameter {name} must be true or false, got {value!r}.")
    return value


def parse_messages(spec: ModelSpec, model_name: str, body: dict[str, Any]) -> Generation:
    """Check a messages body (2026 §3.2, §3.3) for the MMG and IMG endpoints; raise the 4xx the service would.

    Unknown parameters are ignored, as on the legacy endpoint: the official SDK passes every kwarg
    through (`result_format`, and `is_async` from `ImageGeneration.async_call`, 2026 §10.1), and what
    the service does with others is undocumented (2026 §6): accepting them lets the server have the
    last word. Known parameters with bad values are refused.
    """
    inputs = body.get("input")
    messages = inputs.get("messages") if isinstance(inputs, dict) else None
    if messages is None:
        raise errors.bad_request_empty_input()
    # 2026 §3.2: single turn, one user message, exactly one text item ("不传或传入多个将报错").
    # The error's code and message are undocumented; 400 InvalidParameter is the inferred answer (§11.2).
    if not isinstance(messages, list) or len(messages) != 1 or not isinstance(messages[0], dict):
        raise errors.invalid_parameter("input.messages must hold exactly one message.")
    message = messages[0]
    if message.get("role") != "user":
        raise errors.invalid_parameter(f"The message role must be 'user', got {message.get('role')!r}.")
    content = message.get("content")
    if not isinstance(content, list):
        raise errors.invalid_parameter('The message content must be a list of items such as {"text": "..."}.')
    texts = [item.get("text") for item in content if isinstance(item, dict) and "text" in item]
    if any(isinstance(item, dict) and "image" in item for item in content):
        raise errors.invalid_parameter(f"{spec.name} text-to-image takes no input image in this emulator.")
    if len(texts) != 1:
        raise errors.invalid_parameter(f"The message content must hold exactly one text item, got {len(texts)}.")
    prompt = texts[0]
    if not isinstance(prompt, str) or not prompt.strip():
        raise errors.bad_request_empty_input()

    params = body.get("parameters")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise errors.invalid_parameter("parameters must be a JSON object.")
    # negative_prompt lives in parameters on this protocol (2026 §3.2); input.negative_prompt is accepted too.
    negative = params.get("negative_prompt", inputs.get("negative_prompt") if isinstance(inputs, dict) else None)
    if negative is not None and not isinstance(negative, str):
        raise errors.invalid_parameter(
            f"The parameter negative_prompt must be a string, got {type(negative).__name__}."
        )
    n, seed = _check_n_and_seed(spec, params)
    size = params.get("size")
    if size is None and spec.sizing.optional:
        size = spec.default_size  # "omit -> the model picks a size" (2026 §3.3): the emulator picks its default
    size = spec.default_size if size is None else size
    if not isinstance(size, str):
        raise errors.invalid_parameter(f"The parameter size must be a string like '1024*1024', got {size!r}.")
    width, height, _ = check_size(spec, size)
    mode = _param(params, "prompt_extend_mode", "direct") if "prompt_extend_mode" in spec.params else None
    if mode not in (None, "direct", "agent"):
        raise errors.invalid_parameter(f"The parameter prompt_extend_mode must be 'direct' or 'agent', got {mode!r}.")
    return Generation(
        spec=spec,
        model_name=model_name,
        prompt=prompt,
        negative_prompt=negative or None,
        width=width,
        height=height,
        size_error=None,
        n=n,
        seed=seed,
        style=None,
        ref_url=None,
        ref_strength=0.5,
        ref_mode="repaint",
        watermark=_flag(spec, params, "watermark"),
        prompt_extend=_flag(spec, params, "prompt_extend"),
        size_label=f"{width}*{height}",
        thinking_mode=_flag(spec, params, "thinking_mode"),
        prompt_extend_mode=mode,
    )


def served_model(model_name: Any, protocol: Protocol, region: str) -> ModelSpec:
    """The model a create names, if this endpoint in this region serves it; else the service's error."""
    try:
        spec = catalog_model(model_name) if isinstance(model_name, str) else None
    except KeyError:
        spec = None
    if spec is None or region not in spec.regions:
        raise errors.invalid_parameter("Model not exist.")
    if protocol is Protocol.IMG and not spec.accepts(protocol) and spec.accepts(Protocol.MMG):
        # 2026 §11.3: a sync-only model on the async endpoint (third-party recordings).
        raise errors.access_denied("current user api does not support asynchronous calls")
    if not spec.accepts(protocol):
        # Undocumented (2026 §6): e.g. wan2.6-t2i on the legacy endpoint, wanx2.1 on the messages
        # ones. The gateway resolves models per endpoint, so "Model not exist." is the likely answer.
        raise errors.invalid_parameter("Model not exist.")
    return spec
