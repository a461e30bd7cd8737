"""The models and regions of the DashScope text-to-image API, as data, and the pure rules over them.

Adding a model is one `ModelSpec` entry. Facts come from the user guide and the protocol specs
(`shared/spec/dashscope-t2i-protocol.md`, cited as §n, and `shared/spec/dashscope-image-generation-2026.md`,
cited as "2026 §n"). Where the sources disagree we accept what any source accepts and let the server
have the last word; each such choice is marked "disagreement".

- `MODELS`: the models of the legacy task API (`Protocol.T2I`) that every surface offers today.
- `CATALOG`: `MODELS` plus the 2026 catalog (wan2.6-t2i, qwen-image-*, wan2.7-image-*, z-image-turbo),
  which speak the messages-based endpoints (`Protocol.MMG` sync, `Protocol.IMG` async). `get_model()` and
  `catalog_model()` both look names up here (the client speaks every protocol).
- Pure functions: `check_size(spec, size)`, `adapt_size(spec, size)`, `preferred_protocol(spec)`,
  `submit_limits(spec, region)`, `price_yuan(spec, region, prompt_extend)`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from ._catalog_2026 import CATALOG_2026
from ._modelspec import V2_PARAMS, ModelSpec, Protocol
from ._sizes import SizeRule, parse_wh

__all__ = [
    "CATALOG",
    "MODELS",
    "ModelSpec",
    "Protocol",
    "REGIONS",
    "Region",
    "SizeRule",
    "SubmitLimits",
    "V1_SIZES",
    "V1_STYLES",
    "WORKSPACE_REGIONS",
    "adapt_size",
    "catalog_model",
    "check_size",
    "get_model",
    "get_region",
    "parse_wh",
    "preferred_protocol",
    "price_yuan",
    "submit_limits",
    "workspace_base_url",
]


V1_STYLES: tuple[str, ...] = (
    "<auto>",
    "<photography>",
    "<portrait>",
    "<3d cartoon>",
    "<anime>",
    "<oil painting>",
    "<watercolor>",
    "<sketch>",
    "<chinese painting>",
    "<flat illustration>",
)
# Disagreement (§6.3): the V1 reference lists four sizes but its own error example lists three.
# We accept all four; the server may still fail the task asynchronously.
V1_SIZES: tuple[str, ...] = ("1024*1024", "720*1280", "768*1152", "1280*720")

_V1_PARAMS = frozenset(
    {"prompt", "negative_prompt", "size", "n", "seed", "style", "ref_img", "ref_strength", "ref_mode"}
)

_V2_DEFAULTS: dict[str, Any] = dict(
    family="V2",
    submit_rps=2,
    concurrency=2,
    # Disagreement (§6.2): the user guide says each side is in [768, 1440]; every API reference says
    # [512, 1440]. We accept 512.
    side_range=(512, 1440),
    params=V2_PARAMS,
    default_n=4,
    defaults={"n": 4, "prompt_extend": True, "watermark": False, "size": "1024*1024"},
)

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="wanx2.1-t2i-plus",
            description="Wan 2.1 professional: richest detail, a little slower",
            price_yuan=0.20,
            # Disagreement (§6.4): 800 characters (S2, S3) or 500 (S4, S7); the server truncates.
            prompt_limit=800,
            prompt_limit_low=500,  # disagreement (protocol §1, S4, S7 for wan2.1/wan2.2): 500 kept, not 800
            typical_seconds=25.0,
            regions=("beijing", "singapore", "virginia"),
            intl_name="wan2.1-t2i-plus",
            **_V2_DEFAULTS,
        ),
        ModelSpec(
            name="wanx2.1-t2i-turbo",
            description="Wan 2.1 fast: quick, all-round, the best value",
            price_yuan=0.14,
            prompt_limit=800,
            prompt_limit_low=500,  # disagreement (protocol §1, S4, S7 for wan2.1/wan2.2): 500 kept, not 800
            typical_seconds=12.0,
            regions=("beijing", "singapore", "virginia"),
            intl_name="wan2.1-t2i-turbo",
            **_V2_DEFAULTS,
        ),
        ModelSpec(
            name="wanx2.0-t2i-turbo",
            description="Wan 2.0 fast: textured portraits, medium speed, low cost",
            price_yuan=0.04,
            prompt_limit=800,
            typical_seconds=15.0,
            **_V2_DEFAULTS,
        ),
        ModelSpec(
            name="wanx-v1",
            family="V1",
            description="Wan 1.0: styles and reference images",
            price_yuan=0.16,
            submit_rps=2,
            concurrency=1,
            # Disagreement (§6.4): 800 (V1 reference) or 500 (a third-party SDK comment).
            prompt_limit=800,
            prompt_limit_low=500,  # disagreement (protocol §1, S12, a source comment): 500 kept, not 800
            sizes=V1_SIZES,
            # The V1 service checks the size after queueing: the task FAILS (doc sample v1-query-failed-doc).
            size_deferred=True,
            params=_V1_PARAMS,
            defaults={"n": 4, "size": "1024*1024", "style": "<auto>", "ref_strength": 0.5, "ref_mode": "repaint"},
            typical_seconds=30.0,
            prompt_extend_seconds=0.0,
        ),
        # Later models on the same endpoint and body (§2.1). Prices are not in the user guide; these
        # are the Beijing list prices of the API reference at the time of writing.
        ModelSpec(
            name="wan2.2-t2i-flash",
            description="Wan 2.2 flash: fastest of the 2.2 line",
            price_yuan=0.14,
            prompt_limit=800,
            prompt_limit_low=500,  # disagreement (protocol §1, S4, S7 for wan2.1/wan2.2): 500 kept, not 800
            typical_seconds=8.0,
            regions=("beijing", "singapore", "virginia"),
            **_V2_DEFAULTS,
        ),
        ModelSpec(
            name="wan2.2-t2i-plus",
            description="Wan 2.2 professional: richer detail than flash",
            price_yuan=0.20,
            prompt_limit=800,
            prompt_limit_low=500,  # disagreement (protocol §1, S4, S7 for wan2.1/wan2.2): 500 kept, not 800
            typical_seconds=20.0,
            regions=("beijing", "singapore", "virginia"),
            **_V2_DEFAULTS,
        ),
        ModelSpec(
            name="wan2.5-t2i-preview",
            family="V2",
            description="Wan 2.5 preview: sizes by area, long prompts",
            price_yuan=0.20,
            submit_rps=5,
            concurrency=5,
            prompt_limit=2000,
            # Disagreement (§2.2): [1280*1280, 1440*1440] (S3, S4, S7) or [768*768, 1440*1440] (S6).
            pixel_range=(768 * 768, 1440 * 1440),
            aspect_range=(1 / 4, 4.0),
            default_size="1280*1280",
            params=V2_PARAMS,
            defaults={"n": 4, "prompt_extend": True, "watermark": False, "size": "1280*1280"},
            typical_seconds=20.0,
            regions=("beijing", "singapore", "virginia"),
        ),
    )
}
# Every model, the legacy ones first: what `catalog_model` resolves and the emulator serves.
CATALOG: dict[str, ModelSpec] = {**MODELS, **{spec.name: spec for spec in CATALOG_2026}}

# International names resolve to the same spec.
_ALIASES: dict[str, str] = {spec.intl_name: name for name, spec in MODELS.items() if spec.intl_name}


def get_model(name: str) -> ModelSpec:
    """The spec of `name` (a Beijing or an international model id, any catalog model), or a KeyError
    with suggestions. The same as `catalog_model`: every surface offers the whole catalog."""
    return catalog_model(name)


def catalog_model(name: str) -> ModelSpec:
    """The spec of `name` in the whole catalog (legacy and 2026 models), or a KeyError with suggestions."""
    spec = CATALOG.get(name) or CATALOG.get(_ALIASES.get(name, ""))
    if spec is not None:
        return spec
    close = difflib.get_close_matches(name, list(CATALOG) + list(_ALIASES), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
    raise KeyError(f"unknown model {name!r}{hint} Known models: {', '.join(CATALOG)}")


def check_size(spec: ModelSpec, size: str) -> str | None:
    """None when `spec`'s model takes `size`, else what it takes instead (words for an error message).

    Example: `check_size(catalog_model("qwen-image-plus"), "1328*1328")` is None.
    """
    return spec.sizing.problem(size)


def adapt_size(spec: ModelSpec, size: str) -> str:
    """`size` itself when `spec`'s model takes it, else the allowed size closest in aspect ratio, then area.

    Example: `adapt_size(catalog_model("qwen-image-plus"), "1024*1024")` is "1328*1328".
    """
    return spec.sizing.adapt(size)


def preferred_protocol(spec: ModelSpec) -> Protocol:
    """The endpoint a client should use: an async one where the docs give one (a task id can be
    journalled, resumed and replayed), the sync one where it is the only way."""
    return spec.protocols[0]


@dataclass(frozen=True)
class SubmitLimits:
    """How fast an account may submit to a model in a region (2026 §9)."""

    per_second: float | None
    per_minute: float | None
    concurrency: int


def submit_limits(spec: ModelSpec, region: str = "beijing") -> SubmitLimits:
    """The model's submit limits in `region`: per second, per minute (None: no such cap), concurrency."""
    if spec.submits_per_minute is not None:
        return SubmitLimits(None, spec.submits_per_minute, spec.concurrency)
    return SubmitLimits(spec.region_submit_rps.get(region, spec.submit_rps), None, spec.concurrency)


def price_yuan(spec: ModelSpec, region: str = "beijing", *, prompt_extend: bool = False) -> float:
    """The price per successful image (CNY) in `region`, with prompt rewriting on or off."""
    if prompt_extend and spec.extend_price_yuan is not None:
        if region == "beijing":
            return spec.extend_price_yuan
        return round(spec.region_prices.get(region, spec.price_yuan) * spec.extend_price_yuan / spec.price_yuan, 6)
    return spec.region_prices.get(region, spec.price_yuan)


@dataclass(frozen=True)
class Region:
    """A DashScope region: its HTTP base URL, the name the docs use, and its region id."""

    name: str
    base_url: str
    label: str
    supports_upload: bool = False
    region_id: str = ""


REGIONS: dict[str, Region] = {
    r.name: r
    for r in (
        Region(
            "beijing",
            "https://dashscope.aliyuncs.com/api/v1",
            "China (Beijing)",
            supports_upload=True,
            region_id="cn-beijing",
        ),
        Region(
            "singapore",
            "https://dashscope-intl.aliyuncs.com/api/v1",
            "Singapore (international)",
            region_id="ap-southeast-1",
        ),
        Region("virginia", "https://dashscope-us.aliyuncs.com/api/v1", "US (Virginia)", region_id="us-east-1"),
    )
}
_REGION_ALIASES = {"cn-beijing": "beijing", "ap-southeast-1": "singapore", "intl": "singapore", "us-east-1": "virginia"}


def get_region(name: str) -> Region:
    """The region called `name` ("beijing", "singapore", "virginia" or their DashScope ids)."""
    key = _REGION_ALIASES.get(name.lower(), name.lower())
    if key not in REGIONS:
        raise KeyError(f"unknown region {name!r}; use one of {', '.join(REGIONS)}")
    return REGIONS[key]


# Workspace-dedicated gateways (2026 §2.1): same paths, the workspace in the host. Frankfurt has no
# shared host at all (third-party fact), so it is reachable only this way and is not in REGIONS.
_WORKSPACE_REGION_IDS = {
    "beijing": "cn-beijing",
    "singapore": "ap-southeast-1",
    "virginia": "us-east-1",
    "frankfurt": "eu-central-1",
    "hongkong": "cn-hongkong",
    "tokyo": "ap-northeast-1",
}
# Region names a workspace-dedicated domain can be built for (frankfurt, hongkong, tokyo have no shared host).
WORKSPACE_REGIONS: tuple[str, ...] = tuple(_WORKSPACE_REGION_IDS)


def workspace_base_url(region: str, workspace_id: str) -> str:
    """`https://{workspace_id}.{region id}.maas.aliyuncs.com/api/v1` for a region name or region id."""
    key = _REGION_ALIASES.get(region.lower(), region.lower())
    region_id = _WORKSPACE_REGION_IDS.get(key) or (key if key in _WORKSPACE_REGION_IDS.values() else None)
    if region_id is None:
        raise KeyError(f"unknown region {region!r}; use one of {', '.join(_WORKSPACE_REGION_IDS)}")
    if not workspace_id or not workspace_id.replace("-", "").isalnum():
        raise ValueError(f"workspace_id must be a workspace id such as 'ws-1a2b3c', got {workspace_id!r}")
    return f"https://{workspace_id}.{region_id}.maas.aliyuncs.com/api/v1"
