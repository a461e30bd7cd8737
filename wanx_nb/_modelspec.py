"""The types of the model registry: the request shapes (`Protocol`) and what one model accepts (`ModelSpec`).

The data is in `_registry` (the legacy task-API models) and `_catalog_2026` (the messages-based
models); the size rule object is in `_sizes`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from ._sizes import SizeRule

__all__ = ["ModelSpec", "Protocol", "V2_PARAMS"]

V2_PARAMS = frozenset({"prompt", "negative_prompt", "size", "n", "seed", "prompt_extend", "watermark"})


class Protocol(enum.Enum):
    """The three request shapes of the image APIs (2026 §1). The value is the path under /api/v1."""

    T2I = "/services/aigc/text2image/image-synthesis"  # legacy async task: input.prompt
    MMG = "/services/aigc/multimodal-generation/generation"  # sync: input.messages, result in the answer
    IMG = "/services/aigc/image-generation/generation"  # async task, same body as MMG, polled at /tasks/{id}

    @property
    def path(self) -> str:
        return self.value

    @property
    def is_async(self) -> bool:
        """Whether it needs `X-DashScope-Async: enable` and answers a task to poll."""
        return self is not Protocol.MMG

    @property
    def uses_messages(self) -> bool:
        """Whether the prompt travels as `input.messages[0].content[0].text` (else `input.prompt`)."""
        return self is not Protocol.T2I


@dataclass(frozen=True)
class ModelSpec:
    """What one model accepts, costs and allows.

    Parameters:
        name: the model id sent on the wire in Beijing.
        family: which request fields and answer shapes the model has: "V2", "V1" (the legacy task API),
            "wan2.6", "wan2.7", "qwen-image", "qwen-image-2.0", "qwen-image-3.0", "z-image".
        description: one line for pickers and tables.
        price_yuan: price per successful image in the China (Beijing) region.
        submit_rps: task submissions per second per account (shared with RAM sub-accounts).
        concurrency: tasks the account may have running at once; the rest wait PENDING.
        prompt_limit: characters the server keeps; longer prompts are truncated, not rejected.
        prompt_limit_low: a lower limit other sources give (a warning from there: the cut may come sooner).
        sizes: the fixed list of sizes (V1, qwen-image), or None when only the free rules apply.
        side_range: (min, max) pixels per side, for free sizes.
        pixel_range: (min, max) total pixels, for models ruled by area (wan2.5).
        aspect_range: (min, max) of width / height, for models ruled by area.
        default_size: the server's default size.
        params: request fields the model takes; anything else is rejected before sending.
        typical_seconds: a typical task duration on the real service (prompt_extend off);
            the emulator scales it and the poll schedule starts from it.
        regions: the regions that list the model.
        intl_name: the name the international (Singapore, Virginia) regions use, when it differs.
        negative_prompt_limit, max_n, default_n, prompt_extend_seconds: as named.
        sequential_max_n: images per call with `enable_sequential` on (wan2.7: 12), where that raises `max_n`.
        protocols: the endpoints the documentation gives the model, async first (2026 §1.1).
        unofficial_protocols: endpoints only third parties report working; the emulator accepts them,
            a client should not choose them.
        status: "current" or "legacy" (the oldest, cheapest tier of the catalog).
        submits_per_minute: a per-minute submit cap (qwen-image-max: 2); `submit_rps` is then its
            average rate (per minute / 60), which is what a scheduler can keep.
        region_submit_rps: per-region overrides of `submit_rps` (wan2.6-t2i: 1 in Beijing, 5 elsewhere).
        region_prices: per-region prices per image (CNY), where they differ from `price_yuan`.
        extend_price_yuan: the price per image with prompt_extend on, where it differs (z-image-turbo).
        price_note: a caveat on the price (e.g. not in the official price list).
        defaults: the server's default for each parameter the model takes.
        tiers / size_optional / size_deferred: size tiers ("1K"...), sizes the model may choose
            itself, and fixed-size lists checked only after queueing (see `SizeRule`).
    """

    name: str
    family: str
    description: str
    price_yuan: float
    submit_rps: float
    concurrency: int
    prompt_limit: int
    sizes: tuple[str, ...] | None = None
    side_range: tuple[int, int] | None = None
    pixel_range: tuple[int, int] | None = None
    aspect_range: tuple[float, float] | None = None
    default_size: str = "1024*1024"
    params: frozenset[str] = V2_PARAMS
    typical_seconds: float = 15.0
    regions: tuple[str, ...] = ("beijing",)
    intl_name: str | None = None
    negative_prompt_limit: int = 500
    prompt_limit_low: int | None = None
    max_n: int = 4
    default_n: int = 4
    sequential_max_n: int | None = None
    # Seconds prompt rewriting adds ("3-4 s", user guide).
    prompt_extend_seconds: float = 3.5
    aliases: tuple[str, ...] = field(default=())
    protocols: tuple[Protocol, ...] = (Protocol.T2I,)
    unofficial_protocols: tuple[Protocol, ...] = ()
    status: Literal["current", "legacy"] = "legacy"
    submits_per_minute: float | None = None
    region_submit_rps: Mapping[str, float] = field(default_factory=dict)
    region_prices: Mapping[str, float] = field(default_factory=dict)
    extend_price_yuan: float | None = None
    price_note: str | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    tiers: tuple[tuple[str, str], ...] = ()
    size_optional: bool = False
    size_deferred: bool = False

    def __post_init__(self) -> None:
        for name in ("region_submit_rps", "region_prices", "defaults"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    @property
    def is_v1(self) -> bool:
        return self.family == "V1"

    @property
    def sizing(self) -> SizeRule:
        """The model's size rule as one object (see `check_size` and `adapt_size`)."""
        return SizeRule(
            fixed=self.sizes or (),
            side_range=self.side_range,
            pixel_range=self.pixel_range,
            aspect_range=self.aspect_range,
            tiers=self.tiers,
            default=self.default_size,
            optional=self.size_optional,
            deferred=self.size_deferred,
        )

    @property
    def n_range(self) -> tuple[int, int]:
        return (1, self.max_n)

    def max_n_for(self, sequential: bool) -> int:
        """The most images one call may ask for, with `enable_sequential` on or off."""
        if sequential and self.sequential_max_n is not None and "enable_sequential" in self.params:
            return max(self.max_n, self.sequential_max_n)
        return self.max_n

    @property
    def sync_only(self) -> bool:
        """Only the synchronous endpoint serves it: no task id, nothing to poll or resume."""
        return all(not p.is_async for p in self.protocols)

    def accepts(self, protocol: Protocol) -> bool:
        """Whether a server may answer this model on `protocol` (documented or reported)."""
        return protocol in self.protocols or protocol in self.unofficial_protocols

    def wire_name(self, region: str) -> str:
        """The model id to send in `region` (the international regions drop the "x")."""
        if region != "beijing" and self.intl_name:
            return self.intl_name
        return self.name

    def size_rule(self) -> str:
        """The size rule in words, for errors, tables and pickers."""
        return self.sizing.describe()

    def expected_seconds(self, prompt_extend: bool) -> float:
        extend = prompt_extend and "prompt_extend" in self.params
        return self.typical_seconds + (self.prompt_extend_seconds if extend else 0.0)
