"""The registry against the 2026 wire spec's tables (shared/spec/dashscope-image-generation-2026.md).

The expected values below are transcribed from the spec (section in each comment), not from the
registry, so a registry edit that drifts from the spec fails here.
"""

from __future__ import annotations

import pytest

from wanx_nb._registry import (
    CATALOG,
    MODELS,
    Protocol,
    adapt_size,
    catalog_model,
    check_size,
    get_model,
    preferred_protocol,
    price_yuan,
    submit_limits,
    workspace_base_url,
)

MMG, IMG, T2I = Protocol.MMG, Protocol.IMG, Protocol.T2I

# §1.1: documented endpoints, async first.
ENDPOINTS = {
    "wan2.6-t2i": (IMG, MMG),
    "qwen-image-max": (MMG,),
    "qwen-image-plus": (T2I, MMG),
    "qwen-image": (T2I, MMG),
    "qwen-image-2.0": (MMG,),
    "qwen-image-2.0-pro": (MMG,),
    "wan2.7-image": (IMG, MMG),
    "wan2.7-image-pro": (IMG, MMG),
    "qwen-image-3.0": (IMG, MMG),
    "qwen-image-3.0-pro": (IMG, MMG),
    "z-image-turbo": (MMG,),
}
# §2.2
BOTH = ("beijing", "singapore")
REGIONS = {
    "wan2.6-t2i": ("beijing", "singapore", "virginia", "frankfurt"),
    "qwen-image-max": BOTH,
    "qwen-image-plus": BOTH,
    "qwen-image": BOTH,
    "qwen-image-2.0": BOTH,
    "qwen-image-2.0-pro": BOTH,
    "wan2.7-image": BOTH,
    "wan2.7-image-pro": BOTH,
    "z-image-turbo": BOTH,
}
# §8: (Beijing, Singapore) CNY per image.
PRICES = {
    "qwen-image-2.0-pro": (0.5, 0.550443),
    "qwen-image-2.0": (0.2, 0.256873),
    "qwen-image-max": (0.5, 0.550443),
    "qwen-image-plus": (0.2, 0.220177),
    "qwen-image": (0.25, 0.256873),
    "z-image-turbo": (0.1, 0.110089),
    "wan2.6-t2i": (0.20, 0.220177),
    "wan2.7-image": (0.20, 0.220177),
    "wan2.7-image-pro": (0.50, 0.562065),
}
# §9: (per second in Beijing, per minute, concurrency where documented).
LIMITS = {
    "qwen-image-2.0-pro": (None, 2),
    "qwen-image-max": (None, 2),
    "qwen-image-2.0": (2, None),
    "qwen-image-plus": (2, None),
    "qwen-image": (2, None),
    "z-image-turbo": (2, None),
    "wan2.7-image": (5, None),
    "wan2.7-image-pro": (5, None),
    "wan2.6-t2i": (1, None),
}
# §3.3: (n max, n default, default size, prompt length).
N_AND_DEFAULTS = {
    "wan2.6-t2i": (4, 4, "1280*1280", 2100),
    "qwen-image-max": (1, 1, "1664*928", 800),
    "qwen-image-plus": (1, 1, "1664*928", 800),
    "qwen-image": (1, 1, "1664*928", 800),
    "qwen-image-2.0": (6, 1, "2048*2048", 1300),
    "qwen-image-2.0-pro": (6, 1, "2048*2048", 1300),
    "wan2.7-image": (4, 1, "2K", 5000),
    "wan2.7-image-pro": (4, 1, "2K", 5000),
    "qwen-image-3.0": (6, 1, "1024*1024", 4500),
    "qwen-image-3.0-pro": (6, 1, "1024*1024", 4500),
    "z-image-turbo": (1, 1, "1024*1536", 800),
}
QWEN_FIXED = ("1664*928", "1472*1104", "1328*1328", "1104*1472", "928*1664")
LEGACY = ["wanx2.1-t2i-plus", "wanx2.1-t2i-turbo", "wanx2.0-t2i-turbo", "wanx-v1", "wan2.2-t2i-flash",
          "wan2.2-t2i-plus", "wan2.5-t2i-preview"]  # fmt: skip


def test_the_catalog_adds_the_2026_models_in_the_recommended_order_after_the_legacy_ones():
    assert list(MODELS) == LEGACY  # what every surface offers today is unchanged
    assert list(CATALOG) == LEGACY + [
        "wan2.6-t2i", "qwen-image-max", "qwen-image-plus", "qwen-image", "qwen-image-2.0-pro", "qwen-image-2.0",
        "wan2.7-image-pro", "wan2.7-image", "qwen-image-3.0-pro", "qwen-image-3.0", "z-image-turbo",
    ]  # fmt: skip
    assert {spec.status for spec in MODELS.values()} == {"legacy"}
    assert {CATALOG[name].status for name in ENDPOINTS} == {"current"}


def test_get_model_and_catalog_model_see_the_whole_catalog():
    # The client speaks every protocol, so every surface resolves every catalog model.
    assert get_model("wan2.6-t2i") is catalog_model("wan2.6-t2i")
    with pytest.raises(KeyError, match="unknown model 'wan9-t2i'"):
        get_model("wan9-t2i")
    assert catalog_model("wan2.1-t2i-plus") is get_model("wanx2.1-t2i-plus")  # aliases still resolve
    with pytest.raises(KeyError, match="did you mean 'qwen-image-max'"):
        catalog_model("qwen-image-mx")


@pytest.mark.parametrize("name", ENDPOINTS)
def test_endpoints(name):
    spec = catalog_model(name)
    assert spec.protocols == ENDPOINTS[name]
    assert preferred_protocol(spec) == ENDPOINTS[name][0]
    assert spec.sync_only == (ENDPOINTS[name] == (MMG,))


def test_legacy_models_speak_the_legacy_task_api_only():
    for spec in MODELS.values():
        assert spec.protocols == (T2I,) and preferred_protocol(spec) is T2I and not spec.accepts(MMG)


def test_qwen_plus_on_the_async_messages_endpoint_is_accepted_but_not_chosen():
    spec = catalog_model("qwen-image-plus")
    assert spec.accepts(IMG) and IMG not in spec.protocols
    assert not catalog_model("qwen-image-max").accepts(IMG)


def test_protocol_paths_and_modes():
    assert MMG.path == "/services/aigc/multimodal-generation/generation" and not MMG.is_async
    assert IMG.path == "/services/aigc/image-generation/generation" and IMG.is_async and IMG.uses_messages
    assert T2I.path == "/services/aigc/text2image/image-synthesis" and T2I.is_async and not T2I.uses_messages


@pytest.mark.parametrize("name", REGIONS)
def test_regions(name):
    assert catalog_model(name).regions == REGIONS[name]


@pytest.mark.parametrize("name", PRICES)
def test_prices(name):
    beijing, singapore = PRICES[name]
    spec = catalog_model(name)
    assert price_yuan(spec) == beijing and spec.price_yuan == beijing
    assert price_yuan(spec, "singapore") == singapore


def test_z_image_costs_more_with_prompt_rewriting():
    spec = catalog_model("z-image-turbo")
    assert price_yuan(spec, prompt_extend=True) == 0.2
    assert price_yuan(spec, "singapore", prompt_extend=True) == pytest.approx(0.220177, abs=1e-5)


def test_qwen_3_prices_are_marked_as_estimates():
    for name in ("qwen-image-3.0", "qwen-image-3.0-pro"):
        assert "estimate" in (catalog_model(name).price_note or "")


@pytest.mark.parametrize("name", LIMITS)
def test_limits(name):
    per_second, per_minute = LIMITS[name]
    limits = submit_limits(catalog_model(name), "beijing")
    assert (limits.per_second, limits.per_minute) == (per_second, per_minute)


def test_wan26_allows_one_submit_per_second_in_beijing_and_five_elsewhere():
    spec = catalog_model("wan2.6-t2i")
    assert [submit_limits(spec, r).per_second for r in ("beijing", "singapore", "virginia", "frankfurt")] == [
        1,
        5,
        5,
        5,
    ]
    assert spec.concurrency == 5


def test_per_minute_models_keep_their_average_rate_in_submit_rps():
    # Existing readers of submit_rps (the scheduler) see the long-run rate a 2/min cap allows.
    assert catalog_model("qwen-image-max").submit_rps == pytest.approx(2 / 60)


@pytest.mark.parametrize("name", N_AND_DEFAULTS)
def test_n_range_defaults_and_prompt_limit(name):
    max_n, default_n, default_size, prompt_limit = N_AND_DEFAULTS[name]
    spec = catalog_model(name)
    assert spec.n_range == (1, max_n) and spec.default_n == default_n
    assert spec.default_size == default_size and spec.prompt_limit == prompt_limit
    assert spec.defaults.get("n") == default_n


def test_parameter_defaults():
    assert catalog_model("z-image-turbo").defaults["prompt_extend"] is False  # §3.3: default false
    assert "watermark" not in catalog_model("z-image-turbo").params  # not documented
    assert catalog_model("wan2.6-t2i").defaults["prompt_extend"] is True
    assert "thinking_mode" in catalog_model("wan2.7-image").params
    assert "prompt_extend_mode" in catalog_model("qwen-image-3.0").params
    assert get_model("wanx-v1").defaults["style"] == "<auto>"


# ---- size rules (§3.3) --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("qwen-image-plus", "1328*1328"),
        ("qwen-image-max", "1024*1024"),  # custom sizes per M2 (disagreement §13.3: accepted)
        ("wan2.6-t2i", "1280*1280"),
        ("wan2.6-t2i", "960*1696"),  # recommended, though under 1280² (accepted)
        ("wan2.6-t2i", "1440*1440"),
        ("wan2.6-t2i", "1024*1024"),  # disagreement (2026 §13.1): an older copy takes from 768² pixels
        ("wan2.7-image", "2K"),
        ("wan2.7-image-pro", "4K"),
        ("qwen-image-2.0", "2048*2048"),
        ("qwen-image-3.0", "512*4096"),  # 1:8 exactly, 2048² pixels
        ("z-image-turbo", "1024*1536"),
        ("wanx2.1-t2i-turbo", "1024X1024"),  # the validator's spellings stay accepted
        ("wan2.5-t2i-preview", "1280*1280"),
    ],
)
def test_sizes_the_service_takes(name, size):
    assert check_size(catalog_model(name), size) is None


@pytest.mark.parametrize(
    ("name", "size", "says"),
    [
        ("qwen-image-plus", "1024*1024", "one of 1664*928, 1472*1104, 1328*1328, 1104*1472, 928*1664"),
        ("wan2.6-t2i", "700*700", "W*H between 589824 and 2073600 pixels and aspect ratio between 1:4 and 4:1"),
        ("wan2.7-image", "4K", "1K / 2K"),
        ("qwen-image-2.0", "2049*2048", "W*H between 262144 and 4194304 pixels"),
        ("qwen-image-3.0", "256*2304", "aspect ratio between 1:8 and 8:1"),
        ("wanx2.1-t2i-turbo", "2000*1000", "W*H with each side between 512 and 1440 pixels"),
        ("wan2.6-t2i", "big", "a size written W*H, e.g. 1280*1280"),
    ],
)
def test_sizes_the_service_refuses_say_what_it_takes(name, size, says):
    problem = check_size(catalog_model(name), size)
    assert problem is not None and says in problem


def test_legacy_size_wording_is_unchanged():
    assert get_model("wan2.5-t2i-preview").size_rule() == (
        "W*H with W*H between 589824 and 2073600 pixels and aspect ratio between 1:4 and 4:1"
    )
    assert get_model("wanx-v1").size_rule() == "one of 1024*1024, 720*1280, 768*1152, 1280*720"
    assert get_model("wanx-v1").sizing.deferred and not catalog_model("qwen-image").sizing.deferred
    assert catalog_model("qwen-image-3.0").sizing.optional


@pytest.mark.parametrize(
    ("name", "size", "adapted"),
    [
        ("qwen-image-plus", "1024*1024", "1328*1328"),
        ("qwen-image-plus", "1280*720", "1664*928"),
        ("qwen-image-plus", "720*1280", "928*1664"),
        ("wan2.6-t2i", "700*700", "768*768"),
        ("wanx-v1", "1000*1000", "1024*1024"),
        ("wanx-v1", "1920*1080", "1280*720"),
        ("wanx2.1-t2i-turbo", "1328*1328", "1328*1328"),  # allowed: unchanged
        ("wanx2.1-t2i-turbo", "2048*2048", "1440*1440"),
        ("wan2.7-image", "2k", "2K"),
        ("qwen-image-2.0", "4096*4096", "2048*2048"),
    ],
)
def test_adapt_size_picks_the_closest_allowed_size(name, size, adapted):
    assert adapt_size(catalog_model(name), size) == adapted


@pytest.mark.parametrize("name", list(CATALOG))
@pytest.mark.parametrize("size", ["1024*1024", "1280*720", "720*1280", "512*512", "4096*1024", "1664*928", "3000*3000"])
def test_adapted_sizes_always_pass_the_rule(name, size):
    spec = catalog_model(name)
    adapted = adapt_size(spec, size)
    assert check_size(spec, adapted) is None, (name, size, adapted)
    assert adapt_size(spec, adapted) == adapted  # adapting twice changes nothing


def test_workspace_gateways():
    assert workspace_base_url("frankfurt", "ws-1a2b") == "https://ws-1a2b.eu-central-1.maas.aliyuncs.com/api/v1"
    assert workspace_base_url("cn-beijing", "ws9") == "https://ws9.cn-beijing.maas.aliyuncs.com/api/v1"
    with pytest.raises(ValueError, match="workspace_id"):
        workspace_base_url("beijing", "evil.example.com/")
    with pytest.raises(KeyError, match="unknown region 'mars'"):
        workspace_base_url("mars", "ws1")
