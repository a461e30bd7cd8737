"""The models and regions of the DashScope text-to-image API, as data.

Adding a model is one `ModelSpec` entry in `MODELS`. Facts come from the user guide and the protocol
spec (`shared/spec/dashscope-t2i-protocol.md`, cited below as §n). Where the sources disagree we accept
what any source accepts and let the server have the last word; each such choice is marked "disagreement".
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

__all__ = [
    "MODELS",
    "ModelSpec",
    "REGIONS",
    "Region",
    "V1_SIZES",
    "V1_STYLES",
    "get_model",
    "get_region",
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

_V2_PARAMS = frozenset({"prompt", "negative_prompt", "size", "n", "seed", "prompt_extend", "watermark"})
_V1_PARAMS = frozenset(
    {"prompt", "negative_prompt", "size", "n", "seed", "style", "ref_img", "ref_strength", "ref_mode"}
)


@dataclass(frozen=True)
class ModelSpec:
    """What one model accepts, costs and allows.

    Parameters:
        name: the model id sent on the wire in Beijing.
        family: "V2" or "V1": which request fields the model takes.
        description: one line for pickers and tables.
        price_yuan: price per successful image in the China (Beijing) region.
        submit_rps: task submissions per second per account (shared with RAM sub-accounts).
        concurrency: tasks the account may have running at once; the rest wait PENDING.
        prompt_limit: characters the server keeps; longer prompts are truncated, not rejected.
        sizes: the fixed list of sizes (V1), or None when any size within the rules is allowed.
        side_range: (min, max) pixels per side, for free sizes.
        pixel_range: (min, max) total pixels, for models ruled by area (wan2.5).
        aspect_range: (min, max) of width / height, for models ruled by area.
        default_size: the server's default size.
        params: request fields the model takes; anything else is rejected before sending.
        typical_seconds: a typical task duration on the real service (prompt_extend off);
            the emulator scales it and the poll schedule starts from it.
        regions: the regions that list the model.
        intl_name: the name the international (Singapore, Virginia) regions use, when it differs.
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
    params: frozenset[str] = _V2_PARAMS
    typical_seconds: float = 15.0
    regions: tuple[str, ...] = ("beijing",)
    intl_name: str | None = None
    negative_prompt_limit: int = 500
    max_n: int = 4
    default_n: int = 4
    # Seconds prompt rewriting adds ("3-4 s", user guide).
    prompt_extend_seconds: float = 3.5
    aliases: tuple[str, ...] = field(default=())

    @property
    def is_v1(self) -> bool:
        return self.family == "V1"

    def wire_name(self, region: str) -> str:
        """The model id to send in `region` (the international regions drop the "x")."""
        if region != "beijing" and self.intl_name:
            return self.intl_name
        return self.name

    def size_rule(self) -> str:
        """The size rule in words, for errors, tables and pickers."""
        if self.sizes is not None:
            return "one of " + ", ".join(self.sizes)
        if self.pixel_range is not None and self.aspect_range is not None:
            lo, hi = self.pixel_range
            a, b = self.aspect_range
            return (
                f"W*H with W*H between {lo} and {hi} pixels and aspect ratio between "
                f"1:{round(1 / a)} and {round(b)}:1"
            )
        assert self.side_range is not None
        lo, hi = self.side_range
        return f"W*H with each side between {lo} and {hi} pixels"

    def expected_seconds(self, prompt_extend: bool) -> float:
        extend = prompt_extend and "prompt_extend" in self.params
        return self.typical_seconds + (self.prompt_extend_seconds if extend else 0.0)


_V2_DEFAULTS = dict(
    family="V2",
    submit_rps=2,
    concurrency=2,
    # Disagreement (§6.2): the user guide says each side is in [768, 1440]; every API reference says
    # [512, 1440]. We accept 512.
    side_range=(512, 1440),
    params=_V2_PARAMS,
    default_n=4,
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
            sizes=V1_SIZES,
            params=_V1_PARAMS,
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
            typical_seconds=8.0,
            regions=("beijing", "singapore", "virginia"),
            **_V2_DEFAULTS,
        ),
        ModelSpec(
            name="wan2.2-t2i-plus",
            description="Wan 2.2 professional: richer detail than flash",
            price_yuan=0.20,
            prompt_limit=800,
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
            params=_V2_PARAMS,
            typical_seconds=20.0,
            regions=("beijing", "singapore", "virginia"),
        ),
    )
}

# International names resolve to the same spec.
_ALIASES: dict[str, str] = {spec.intl_name: name for name, spec in MODELS.items() if spec.intl_name}


def get_model(name: str) -> ModelSpec:
    """The spec of `name` (a Beijing or an international model id), or a KeyError with suggestions."""
    spec = MODELS.get(name) or MODELS.get(_ALIASES.get(name, ""))
    if spec is not None:
        return spec
    known = list(MODELS) + list(_ALIASES)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise KeyError(f"unknown model {name!r}{hint} Known models: {', '.join(MODELS)}")


@dataclass(frozen=True)
class Region:
    """A DashScope region: its HTTP base URL and the name the docs use."""

    name: str
    base_url: str
    label: str
    supports_upload: bool = False


REGIONS: dict[str, Region] = {
    r.name: r
    for r in (
        Region("beijing", "https://dashscope.aliyuncs.com/api/v1", "China (Beijing)", supports_upload=True),
        Region("singapore", "https://dashscope-intl.aliyuncs.com/api/v1", "Singapore (international)"),
        Region("virginia", "https://dashscope-us.aliyuncs.com/api/v1", "US (Virginia)"),
    )
}
_REGION_ALIASES = {"cn-beijing": "beijing", "ap-southeast-1": "singapore", "intl": "singapore", "us-east-1": "virginia"}


def get_region(name: str) -> Region:
    """The region called `name` ("beijing", "singapore", "virginia" or their DashScope ids)."""
    key = _REGION_ALIASES.get(name.lower(), name.lower())
    if key not in REGIONS:
        raise KeyError(f"unknown region {name!r}; use one of {', '.join(REGIONS)}")
    return REGIONS[key]
