"""The one request type for every parameter of both model families."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields, replace
from typing import Any

from ._params import canonical_size, canonical_style
from ._registry import get_model, price_yuan

__all__ = [
    "DEFAULT_MODEL",
    "GenerationRequest",
    "MAX_SEED",
    "PARAMETERS",
    "excerpt",
]

DEFAULT_MODEL = "wanx2.1-t2i-turbo"
MAX_SEED = 2147483647

# Where each field goes in the wire body.
_INPUT_FIELDS = ("prompt", "negative_prompt", "ref_img")
PARAMETERS = (
    "prompt",
    "negative_prompt",
    "size",
    "n",
    "seed",
    "prompt_extend",
    "watermark",
    "style",
    "ref_img",
    "ref_strength",
    "ref_mode",
    "thinking_mode",
    "enable_sequential",
)


@dataclass(frozen=True)
class GenerationRequest:
    """A text-to-image request. `None` means "not given": the server's default applies.

    Parameters:
        prompt: what to draw (Chinese or English).
        model: a model id from the registry (`wanx_nb.MODELS`).
        negative_prompt: what not to draw.
        size: "W*H" (V2: any size within the model's rule; V1: one of four). "WxH", "W×H", spaces and
            full-width digits are read too, and stored as "W*H".
        n: images per task, 1-4 (server default 4); wan2.7 up to 12 with enable_sequential.
        seed: seed of the first image; image i uses seed + i. The client picks one when omitted.
        prompt_extend: V2 only: let the server rewrite the prompt (server default on).
        watermark: V2 only: draw "AI生成" bottom right (server default off).
        style: V1 only: one of the ten styles, e.g. "<watercolor>" ("watercolor" is stored as "<watercolor>").
        ref_img: V1 only: reference image as an http(s) URL, an oss:// URL or a local path.
        ref_strength: V1 only: 0.0-1.0, closeness to the reference (server default 0.5).
        ref_mode: V1 only: "repaint" (follow content) or "refonly" (follow style).
        thinking_mode: wan2.7 only: let the model reason about the prompt first (the server's default is
            disputed; the docs' examples send true).
        enable_sequential: wan2.7 only: a coherent sequence of images; n may then be up to 12.

    Example:
        >>> GenerationRequest("a red fox in snow", model="wanx2.1-t2i-plus", n=2, seed=7).seeds
        (7, 8)
    """

    prompt: str
    model: str = DEFAULT_MODEL
    negative_prompt: str | None = None
    size: str | None = None
    n: int | None = None
    seed: int | None = None
    prompt_extend: bool | None = None
    watermark: bool | None = None
    style: str | None = None
    ref_img: str | None = None
    ref_strength: float | None = None
    ref_mode: str | None = None
    # Last, so positional construction of the fields above keeps working.
    thinking_mode: bool | None = None
    enable_sequential: bool | None = None

    def __post_init__(self) -> None:
        # The client sends what it is given: whatever the validator accepts is stored in the
        # service's form here ("1024X1024" -> "1024*1024", "anime" -> "<anime>"), wherever it came from.
        object.__setattr__(self, "size", canonical_size(self.size))
        object.__setattr__(self, "style", canonical_style(self.style))

    def given(self) -> dict[str, Any]:
        """The parameters that were set (model excluded)."""
        return {name: getattr(self, name) for name in _FIELD_NAMES if name != "model" and getattr(self, name) is not None}

    def replace(self, **changes: Any) -> GenerationRequest:
        return replace(self, **changes)

    @property
    def effective_n(self) -> int:
        return self.n if self.n is not None else get_model(self.model).default_n

    @property
    def effective_size(self) -> str:
        return self.size or get_model(self.model).default_size

    @property
    def effective_prompt_extend(self) -> bool:
        spec = get_model(self.model)
        if "prompt_extend" not in spec.params:
            return False
        # The service's default: on for most models, off for z-image-turbo (2026 §3.3).
        default = bool(spec.defaults.get("prompt_extend", True))
        return default if self.prompt_extend is None else self.prompt_extend

    @property
    def price_per_image(self) -> float:
        """CNY per successful image, as billed: z-image-turbo costs more with prompt rewriting on (2026 §8)."""
        return price_yuan(get_model(self.model), prompt_extend=self.effective_prompt_extend)

    @property
    def seeds(self) -> tuple[int | None, ...]:
        """The seed of each image (seed + i), or None when the seed is not known yet."""
        if self.seed is None:
            return (None,) * self.effective_n
        return tuple(self.seed + i for i in range(self.effective_n))

    def canonical(self) -> dict[str, Any]:
        """Model and every parameter with the server defaults filled in: equal requests, equal dicts."""
        spec = get_model(self.model)
        out: dict[str, Any] = {"model": spec.name, **self.given()}
        out["n"] = self.effective_n
        out["size"] = self.effective_size
        if "prompt_extend" in spec.params:
            out["prompt_extend"] = self.effective_prompt_extend
            out.setdefault("watermark", False)
        # thinking_mode and enable_sequential are not filled in: thinking_mode's default is disputed (2026
        # §13.7), and a request that leaves them out keeps the key it had before they existed.
        if spec.is_v1:
            out.setdefault("style", "<auto>")
            if "ref_img" in out:
                out.setdefault("ref_mode", "repaint")
                out.setdefault("ref_strength", 0.5)
        return dict(sorted(out.items()))

    def key(self) -> str:
        """A stable hash of `canonical()`: the replay and cache key."""
        blob = json.dumps(self.canonical(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def to_body(self, wire_model: str | None = None) -> dict[str, Any]:
        """The create-task JSON body. Sends only what was given (the server fills its defaults)."""
        given = self.given()
        inputs = {k: given[k] for k in _INPUT_FIELDS if k in given}
        # Disagreement (§6.1): the guide's curl examples send "ref_image"; the parameter table and both
        # official SDKs send "ref_img". We send ref_img; the emulator accepts both.
        params = {k: v for k, v in given.items() if k not in _INPUT_FIELDS}
        # The SDK always sends "parameters", even empty; so do we.
        return {"model": wire_model or self.model, "input": inputs, "parameters": params}

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELD_NAMES if getattr(self, name) is not None}  # all scalars

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationRequest:
        return cls(**{k: v for k, v in data.items() if k in _FIELD_NAMES})

    def summary(self) -> str:
        """A short description for messages: model, n, size, seed and a prompt excerpt."""
        prompt = excerpt(self.prompt, 40)
        return f"{self.model}, n={self.effective_n}, size={self.effective_size}, seed={self.seed}, prompt={prompt!r}"


# Read once: `fields()` builds a new tuple per call, and the journal reads requests back on every write
# (Python then keeps each freed tuple on a free list: memory that grows with the batch).
_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(GenerationRequest))


def excerpt(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, the last one an ellipsis where it was cut (prompts in messages)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
