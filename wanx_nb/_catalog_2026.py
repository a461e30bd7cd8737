"""The 2026 catalog as data: the models of the messages-based endpoints (2026 spec §14 order).

Facts come from `shared/spec/dashscope-image-generation-2026.md`, cited as "2026 §n". Where the
sources disagree, the entry accepts what any source accepts (the server has the last word) and the
choice is marked "disagreement".
"""

from __future__ import annotations

from ._modelspec import ModelSpec, Protocol

__all__ = ["CATALOG_2026", "QWEN_SIZES"]

# The 2026 catalog (2026 §14 order): the messages-based endpoints. Prices are the Beijing list prices
# of 2026 §8 (CNY per successful image), limits those of 2026 §9, parameters those of 2026 §3.3.
_MESSAGES_PARAMS = frozenset({"prompt", "negative_prompt", "size", "n", "seed", "prompt_extend", "watermark"})
# 2026 §3.3: five fixed sizes, 16:9 default.
QWEN_SIZES: tuple[str, ...] = ("1664*928", "1472*1104", "1328*1328", "1104*1472", "928*1664")
_SINGAPORE_QWEN = ("beijing", "singapore")

CATALOG_2026: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="wan2.6-t2i",
        family="wan2.6",
        description="Wan 2.6: current Wan text-to-image, sizes by area, every region",
        price_yuan=0.20,
        region_prices={"singapore": 0.220177, "virginia": 0.20, "frankfurt": 0.20},
        submit_rps=1,  # Beijing; 5 elsewhere (2026 §9)
        region_submit_rps={"singapore": 5, "virginia": 5, "frankfurt": 5},
        concurrency=5,
        prompt_limit=2100,
        # Disagreement (2026 §13.1): [1280², 1440²] (2026 copies) or [768², 1440²] (an older copy).
        # What any source accepts is accepted (the server has the last word: a size it refuses is a
        # 400 at create, not billed); the emulator serves the same rule.
        pixel_range=(768 * 768, 1440 * 1440),
        aspect_range=(1 / 4, 4.0),
        # The recommended sizes (M3); four of them are a little under 1280² pixels.
        sizes=("1280*1280", "1104*1472", "1472*1104", "960*1696", "1696*960"),
        default_size="1280*1280",
        params=_MESSAGES_PARAMS,
        defaults={"n": 4, "prompt_extend": True, "watermark": False, "size": "1280*1280"},
        max_n=4,
        default_n=4,
        typical_seconds=24.0,  # doc example: 28 s with prompt_extend on
        regions=("beijing", "singapore", "virginia", "frankfurt"),
        protocols=(Protocol.IMG, Protocol.MMG),
        status="current",
    ),
    ModelSpec(
        name="qwen-image-max",
        family="qwen-image",
        description="Qwen-Image max: best text rendering, 2 images per minute",
        price_yuan=0.5,
        region_prices={"singapore": 0.550443},
        submit_rps=2 / 60,
        submits_per_minute=2,
        # Sync calls have no documented concurrency cap (2026 §9); 2/min makes more than 2 moot.
        concurrency=2,
        prompt_limit=800,
        sizes=QWEN_SIZES,
        # Disagreement (2026 §13.3): only the fixed sizes (M1, M9) or also custom 512²..2048² (M2).
        pixel_range=(512 * 512, 2048 * 2048),
        default_size="1664*928",
        params=_MESSAGES_PARAMS,
        defaults={"n": 1, "prompt_extend": True, "watermark": False, "size": "1664*928"},
        max_n=1,
        default_n=1,
        typical_seconds=16.5,  # recorded (2026 §3.4)
        regions=_SINGAPORE_QWEN,
        protocols=(Protocol.MMG,),
        status="current",
    ),
    ModelSpec(
        name="qwen-image-plus",
        family="qwen-image",
        description="Qwen-Image plus: text rendering, also on the legacy task API",
        price_yuan=0.2,
        region_prices={"singapore": 0.220177},
        submit_rps=2,
        concurrency=2,
        prompt_limit=800,
        sizes=QWEN_SIZES,
        default_size="1664*928",
        params=_MESSAGES_PARAMS,
        defaults={"n": 1, "prompt_extend": True, "watermark": False, "size": "1664*928"},
        max_n=1,
        default_n=1,
        typical_seconds=15.0,
        regions=_SINGAPORE_QWEN,
        protocols=(Protocol.T2I, Protocol.MMG),
        # Disagreement (2026 §13.9): Alibaba's CLI and a third party send it to IMG; the docs do not.
        unofficial_protocols=(Protocol.IMG,),
        status="current",
    ),
    ModelSpec(
        name="qwen-image",
        family="qwen-image",
        description="Qwen-Image: the first Qwen image model, also on the legacy task API",
        price_yuan=0.25,
        region_prices={"singapore": 0.256873},
        submit_rps=2,
        concurrency=2,
        prompt_limit=800,
        sizes=QWEN_SIZES,
        default_size="1664*928",
        params=_MESSAGES_PARAMS,
        defaults={"n": 1, "prompt_extend": True, "watermark": False, "size": "1664*928"},
        max_n=1,
        default_n=1,
        typical_seconds=15.0,
        regions=_SINGAPORE_QWEN,
        protocols=(Protocol.T2I, Protocol.MMG),
        unofficial_protocols=(Protocol.IMG,),
        status="current",
    ),
    ModelSpec(
        name="qwen-image-2.0-pro",
        family="qwen-image-2.0",
        description="Qwen-Image 2.0 pro: up to 2048*2048, 2 images per minute",
        price_yuan=0.5,
        region_prices={"singapore": 0.550443},
        submit_rps=2 / 60,
        submits_per_minute=2,
        concurrency=2,
        # Disagreement (2026 §13.5): 1300 tokens (M2); counted here as characters, the server truncates.
        prompt_limit=1300,
        pixel_range=(512 * 512, 2048 * 2048),
        # Disagreement (2026 §13.4): default 2048*2048 (M2) or 1024*1024 (a copied comment).
        default_size="2048*2048",
        params=_MESSAGES_PARAMS,
        defaults={"n": 1, "prompt_extend": True, "watermark": False, "size": "2048*2048"},
        max_n=6,  # disagreement (2026 §13.10): 1-6 in the docs; a third party saw one image per call
        default_n=1,
        typical_seconds=10.0,
        regions=_SINGAPORE_QWEN,
        protocols=(Protocol.MMG,),
        status="current",
    ),
    ModelSpec(
        name="qwen-image-2.0",
        family="qwen-image-2.0",
        description="Qwen-Image 2.0: fast, up to 2048*2048",
        price_yuan=0.2,
        region_prices={"singapore": 0.256873},
        submit_rps=2,
        concurrency=2,
        prompt_limit=1300,
        pixel_range=(512 * 512, 2048 * 2048),
        default_size="2048*2048",
        params=_MESSAGES_PARAMS,
        defaults={"n": 1, "prompt_extend": True, "watermark": False, "size": "2048*2048"},
        max_n=6,
        default_n=1,
        typical_seconds=3.5,  # third-party measurement (2026 §3.4)
        regions=_SINGAPORE_QWEN,
        protocols=(Protocol.MMG,),
        status="current",
    ),
    ModelSpec(
        name="wan2.7-image-pro",
        family="wan2.7",
        description="Wan 2.7 pro: up to 4K, thinking mode",
        price_yuan=0.50,
        region_prices={"singapore": 0.562065},
        submit_rps=5,
        concurrency=5,
        prompt_limit=5000,  # third-party (2026 §13.7)
        # Tiers are official; custom W*H (each side 512-4096, at least 768²) is third-party only
        # (2026 §3.3, §13.7): accepted, the server has the last word.
        tiers=(("1K", "1024*1024"), ("2K", "2048*2048"), ("4K", "4096*4096")),
        side_range=(512, 4096),
        pixel_range=(768 * 768, 4096 * 4096),
        default_size="2K",
        params=_MESSAGES_PARAMS | {"thinking_mode", "enable_sequential", "color_palette"},
        # Disagreement (2026 §13.7): thinking_mode defaults to true or false by source; the docs' examples send true.
        defaults={"n": 1, "watermark": False, "size": "2K", "thinking_mode": True},
        max_n=4,
        # 2026 §3.3, §13.7: "with enable_sequential=true up to 12", third-party documented only; no source
        # refuses it, so it is accepted (the server has the last word).
        sequential_max_n=12,
        default_n=1,
        typical_seconds=13.0,
        prompt_extend_seconds=0.0,
        regions=_SINGAPORE_QWEN,
        protocols=(Protocol.IMG, Protocol.MMG),
        status="current",
    ),
    ModelSpec(
        name="wan2.7-image",
        family="wan2.7",
        description="Wan 2.7: 1K or 2K, thinking mode",
        price_yuan=0.20,
        region_prices={"singapore": 0.220177},
        submit_rps=5,
        concurrency=5,
        prompt_limit=5000,
        tiers=(("1K", "1024*1024"), ("2K", "2048*2048")),
        side_range=(512, 4096),
        pixel_range=(768 * 768, 2048 * 2048),
        default_size="2K",
        params=_MESSAGES_PARAMS | {"thinking_mode", "enable_sequential", "color_palette"},
        defaults={"n": 1, "watermark": False, "size": "2K", "thinking_mode": True},
        max_n=4,
        sequential_max_n=12,  # third-party, as wan2.7-image-pro
        default_n=1,
        typical_seconds=13.0,
        prompt_extend_seconds=0.0,
        regions=_SINGAPORE_QWEN,
        protocols=(Protocol.IMG, Protocol.MMG),
        status="current",
    ),
    ModelSpec(
        name="qwen-image-3.0-pro",
        family="qwen-image-3.0",
        description="Qwen-Image 3.0 pro: newest Qwen, sync or async",
        # Not in the official price list (2026 §8); a gateway's cost map says 0.25 (1K) / 0.5 (2K),
        # likely USD. The 2.0 line's CNY prices are used as the estimate.
        price_yuan=0.5,
        price_note="not in the official price list (2026 §8): an estimate",
        submit_rps=2,  # unverified third-party note (2026 §9)
        concurrency=2,
        prompt_limit=4500,  # tokens, recommended (M2)
        pixel_range=(512 * 512, 2048 * 2048),
        aspect_range=(1 / 8, 8.0),
        default_size="1024*1024",
        size_optional=True,
        params=_MESSAGES_PARAMS | {"prompt_extend_mode"},
        defaults={"n": 1, "prompt_extend": True, "watermark": False, "prompt_extend_mode": "direct"},
        max_n=6,
        default_n=1,
        typical_seconds=19.0,
        regions=("beijing",),
        protocols=(Protocol.IMG, Protocol.MMG),
        status="current",
    ),
    ModelSpec(
        name="qwen-image-3.0",
        family="qwen-image-3.0",
        description="Qwen-Image 3.0: newest Qwen, sync or async",
        price_yuan=0.25,
        price_note="not in the official price list (2026 §8): an estimate",
        submit_rps=2,
        concurrency=2,
        prompt_limit=4500,
        pixel_range=(512 * 512, 2048 * 2048),
        aspect_range=(1 / 8, 8.0),
        default_size="1024*1024",
        size_optional=True,
        params=_MESSAGES_PARAMS | {"prompt_extend_mode"},
        defaults={"n": 1, "prompt_extend": True, "watermark": False, "prompt_extend_mode": "direct"},
        max_n=6,
        default_n=1,
        typical_seconds=19.0,
        regions=("beijing",),
        protocols=(Protocol.IMG, Protocol.MMG),
        status="current",
    ),
    ModelSpec(
        name="z-image-turbo",
        family="z-image",
        description="Z-Image turbo: cheapest, one image per call",
        price_yuan=0.1,
        extend_price_yuan=0.2,
        region_prices={"singapore": 0.110089},
        submit_rps=2,
        concurrency=2,  # sync: no documented cap
        prompt_limit=800,
        pixel_range=(512 * 512, 2048 * 2048),
        default_size="1024*1536",
        # No watermark and no n are documented (2026 §3.3): n is fixed at 1.
        params=frozenset({"prompt", "negative_prompt", "size", "n", "seed", "prompt_extend"}),
        defaults={"n": 1, "prompt_extend": False, "size": "1024*1536"},
        max_n=1,
        default_n=1,
        typical_seconds=3.0,
        regions=_SINGAPORE_QWEN,
        protocols=(Protocol.MMG,),
        status="current",
    ),
)
