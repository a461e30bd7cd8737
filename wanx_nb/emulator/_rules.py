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

from .._registry import V1_STYLES, ModelSpec
from . import _errors as errors

__all__ = [
    "Generation",
    "MAX_SEED",
    "check_size",
    "parse_generation",
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
    negative = inputs.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise errors.invalid_parameter(f"input.negative_prompt must be a string, got {type(negative).__name__}.")
    params = body.get("parameters")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise errors.invalid_parameter("parameters must be a JSON object.")

    n = _param(params, "n", spec.default_n)
    if not _is_int(n) or not 1 <= n <= spec.max_n:
        raise errors.invalid_parameter(f"The parameter n must be an integer in [1, {spec.max_n}], got {n!r}.")
    seed = params.get("seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed <= MAX_SEED):
        raise errors.invalid_parameter(f"The parameter seed must be an integer in [0, {MAX_SEED}], got {seed!r}.")

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

    takes = spec.params
    watermark = _param(params, "watermark", False) if "watermark" in takes else False
    prompt_extend = _param(params, "prompt_extend", True) if "prompt_extend" in takes else False
    for name, value in (("watermark", watermark), ("prompt_extend", prompt_extend)):
        if not isinstance(value, bool):
            raise errors.invalid_parameter(f"The parameter {name} must be true or false, got {value!r}.")

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
    """(width, height, deferred error): V2 sizes fail on create, V1 sizes fail the task later."""
    match = _SIZE_RE.match(size)
    if spec.sizes is not None:  # V1: a fixed list, checked asynchronously (doc sample v1-query-failed-doc)
        if size in spec.sizes:
            w, h = (int(x) for x in size.split("*"))
            return w, h, None
        w, h = (int(match.group(1)), int(match.group(2))) if match else (1024, 1024)
        return w, h, f"The size is not match the allowed size {list(spec.sizes)}"
    if not match:
        raise errors.invalid_parameter(f"The parameter size must look like 'W*H', e.g. '1024*1024', got {size!r}.")
    w, h = int(match.group(1)), int(match.group(2))
    ok = True
    if spec.side_range is not None:
        lo, hi = spec.side_range
        ok = lo <= w <= hi and lo <= h <= hi
    if spec.pixel_range is not None and spec.aspect_range is not None:
        lo, hi = spec.pixel_range
        a, b = spec.aspect_range
        ok = ok and lo <= w * h <= hi and h > 0 and a <= w / h <= b
    if not ok:
        raise errors.invalid_parameter(f"The size {size} is not supported by {spec.name}: use {spec.size_rule()}.")
    return w, h, None
