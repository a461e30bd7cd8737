"""Every validation rule of the spec, with the text a user sees. Nothing here sends a request."""

import pytest
from PIL import Image

from wanx_nb._exceptions import ValidationError
from wanx_nb._registry import MODELS, V1_SIZES, V1_STYLES, get_model
from wanx_nb._request import GenerationRequest
from wanx_nb._validation import parse_size, validate

GUIDE_V2 = ["wanx2.1-t2i-plus", "wanx2.1-t2i-turbo", "wanx2.0-t2i-turbo"]


def problems(**kwargs):
    with pytest.raises(ValidationError) as info:
        validate(GenerationRequest(**{"prompt": "a fox", **kwargs}))
    return info.value


def test_valid_requests_pass_for_every_model():
    for name in MODELS:
        assert validate(GenerationRequest("一只狐狸", model=name)) == []


def test_unknown_model_names_suggestions():
    err = problems(model="wanx2.1-t2i-turb")
    assert "model='wanx2.1-t2i-turb'" in str(err)
    assert "did you mean 'wanx2.1-t2i-turbo'" in str(err)


def test_international_names_are_accepted():
    assert get_model("wan2.1-t2i-turbo").name == "wanx2.1-t2i-turbo"
    assert get_model("wanx2.1-t2i-plus").wire_name("singapore") == "wan2.1-t2i-plus"
    assert get_model("wanx2.1-t2i-plus").wire_name("beijing") == "wanx2.1-t2i-plus"


@pytest.mark.parametrize("prompt", ["", "   ", "\u200b\u200b", "\u3000\ufeff\n", "\x00"])
def test_empty_prompt_is_rejected(prompt):
    err = problems(prompt=prompt)
    assert "prompt=" in str(err) and "a non-empty text" in str(err)


def test_long_prompt_warns_that_the_server_truncates():
    warnings = validate(GenerationRequest("字" * 801, model="wanx2.1-t2i-turbo"))
    assert warnings == ["prompt is 801 characters; wanx2.1-t2i-turbo keeps the first 800 and the server truncates the rest"]
    assert validate(GenerationRequest("x" * 2000, model="wan2.5-t2i-preview")) == []


def test_a_prompt_past_the_lower_of_two_documented_limits_is_warned_about_and_sent():
    # Protocol §1: 800 characters kept (S2, S3) or 500 for wan2.1/wan2.2 (S4, S7); truncation is silent.
    (warning,) = validate(GenerationRequest("字" * 501, model="wanx2.1-t2i-turbo"))
    assert warning == ("prompt is 501 characters; the docs give wanx2.1-t2i-turbo a limit of 800, but some say it "
                       "keeps only the first 500: the server may cut the rest silently")
    assert validate(GenerationRequest("字" * 500, model="wanx2.1-t2i-turbo")) == []
    assert validate(GenerationRequest("字" * 700, model="wanx2.0-t2i-turbo")) == []  # 800 by every source


def test_long_negative_prompt_warns():
    (warning,) = validate(GenerationRequest("fox", negative_prompt="n" * 501))
    assert "negative_prompt is 501 characters" in warning


@pytest.mark.parametrize("model", GUIDE_V2)
@pytest.mark.parametrize("size", ["511*1024", "1024*1441", "1441*1441", "300*300"])
def test_v2_sides_outside_512_1440_are_rejected(model, size):
    err = problems(model=model, size=size)
    assert f"size={size!r}: W*H with each side between 512 and 1440 pixels" in str(err)


@pytest.mark.parametrize("size", ["512*1440", "1440*512", "768*1024", "1440*1440", "1024x768"])
def test_v2_accepts_any_size_in_range_including_the_api_reference_512(size):
    # Disagreement: the guide says 768; the API references say 512. We accept what any source accepts.
    assert validate(GenerationRequest("fox", size=size)) == []


def test_size_must_be_w_times_h():
    err = problems(size="big")
    assert "size='big': a size written W*H" in str(err)


@pytest.mark.parametrize("size", V1_SIZES)
def test_v1_accepts_its_four_sizes(size):
    assert validate(GenerationRequest("fox", model="wanx-v1", size=size)) == []


def test_v1_rejects_other_sizes_listing_the_four():
    err = problems(model="wanx-v1", size="1024*768")
    assert "wanx-v1 supports only 1024*1024, 720*1280, 768*1152, 1280*720" in str(err)


def test_wan25_size_is_ruled_by_area_and_aspect():
    assert validate(GenerationRequest("fox", model="wan2.5-t2i-preview", size="1280*1280")) == []
    err = problems(model="wan2.5-t2i-preview", size="600*600")
    assert "between 589824 and 2073600 pixels" in str(err)
    err = problems(model="wan2.5-t2i-preview", size="1440*300")
    assert "aspect ratio between 1:4 and 4:1" in str(err)


@pytest.mark.parametrize("n", [0, 5, -1, 2.0, True])
def test_n_is_an_integer_from_1_to_4(n):
    assert f"n={n!r}: an integer from 1 to 4" in str(problems(n=n))


@pytest.mark.parametrize("seed", [-1, 2147483648, "7"])
def test_seed_range(seed):
    assert f"seed={seed!r}: an integer from 0 to 2147483647" in str(problems(seed=seed))


@pytest.mark.parametrize("param,value", [("style", "<anime>"), ("ref_img", "https://x/a.png"), ("ref_strength", 0.5), ("ref_mode", "repaint")])
@pytest.mark.parametrize("model", GUIDE_V2)
def test_v1_only_parameters_are_errors_on_v2_not_dropped(model, param, value):
    err = problems(model=model, **{param: value})
    assert f"{model} (V2) does not take {param}; it is a V1 parameter" in str(err)


@pytest.mark.parametrize("param", ["prompt_extend", "watermark"])
def test_v2_only_parameters_are_errors_on_v1(param):
    err = problems(model="wanx-v1", **{param: True})
    assert f"wanx-v1 (V1) does not take {param}; it is a V2 parameter" in str(err)


def test_flags_must_be_booleans():
    assert "prompt_extend='yes': true or false" in str(problems(prompt_extend="yes"))


def test_v1_style_must_be_one_of_ten():
    assert len(V1_STYLES) == 10
    err = problems(model="wanx-v1", style="manga")
    assert "style='manga': one of <auto>, <photography>" in str(err)


@pytest.mark.parametrize("typed", ["anime", "<Anime>", " anime ", "<anime>"])
def test_v1_style_without_brackets_is_sent_in_the_service_form(typed):
    request = GenerationRequest("a fox", model="wanx-v1", style=typed)
    assert validate(request) == []
    assert request.to_body()["parameters"]["style"] == "<anime>"


@pytest.mark.parametrize("value", [-0.1, 1.5, "strong"])
def test_ref_strength_range(value):
    assert "a number from 0.0 to 1.0" in str(problems(model="wanx-v1", ref_img="https://x/a.png", ref_strength=value))


def test_ref_mode_values():
    err = problems(model="wanx-v1", ref_img="https://x/a.png", ref_mode="style")
    assert "ref_mode='style': 'repaint' (follow the content) or 'refonly' (follow the style)" in str(err)


def test_ref_img_local_file_must_exist(tmp_path):
    err = problems(model="wanx-v1", ref_img=str(tmp_path / "missing.png"))
    assert "an existing local file" in str(err)
    real = tmp_path / "ref.png"
    Image.new("RGB", (256, 4096)).save(real)  # within the documented sides
    assert validate(GenerationRequest("fox", model="wanx-v1", ref_img=str(real))) == []


def test_a_local_ref_img_that_is_no_image_is_refused_before_the_upload(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    err = problems(model="wanx-v1", ref_img=str(text))
    assert f"ref_img='{text}': a JPEG, PNG, BMP, TIFF or WebP image (this file is not an image)" in str(err)


def test_a_local_ref_img_outside_the_documented_limits_is_a_warning_the_service_decides(tmp_path):
    small, gif = tmp_path / "small.png", tmp_path / "anim.gif"
    Image.new("RGB", (255, 300)).save(small)
    Image.new("RGB", (300, 300)).save(gif)
    (warning,) = validate(GenerationRequest("fox", model="wanx-v1", ref_img=str(small)))
    assert warning == (
        "the reference image is 255x300 px (documented: 256 to 4096 px per side): the service may refuse it (not billed)"
    )
    (warning,) = validate(GenerationRequest("fox", model="wanx-v1", ref_img=f"file://{gif}"))
    assert warning == "the reference image is a GIF image (documented: JPEG, PNG, BMP, TIFF, WebP): the service may refuse it (not billed)"
    heavy = tmp_path / "heavy.png"  # a PNG reader stops at its end: bytes after it only weigh
    Image.new("RGB", (2048, 1024)).save(heavy)
    with heavy.open("ab") as fh:
        fh.truncate(10 * 1024 * 1024)  # exactly the documented 10 MB: still fine
    assert validate(GenerationRequest("fox", model="wanx-v1", ref_img=str(heavy))) == []
    with heavy.open("ab") as fh:
        fh.write(b"\0")
    (warning,) = validate(GenerationRequest("fox", model="wanx-v1", ref_img=str(heavy)))
    assert warning == "the reference image is over the documented 10 MB: the service may refuse it (not billed)"
    two = tmp_path / "two.gif"  # every way outside at once, said in one sentence
    Image.new("RGB", (100, 100)).save(two)
    (warning,) = validate(GenerationRequest("fox", model="wanx-v1", ref_img=str(two)))
    assert warning == ("the reference image is a GIF image (documented: JPEG, PNG, BMP, TIFF, WebP) and is 100x100 px "
                       "(documented: 256 to 4096 px per side): the service may refuse it (not billed)")


def test_ref_img_url_without_chinese_characters():
    err = problems(model="wanx-v1", ref_img="https://example.com/女孩.png")
    assert "without Chinese characters" in str(err)


def test_ref_options_without_ref_img_warn():
    (warning,) = validate(GenerationRequest("fox", model="wanx-v1", ref_strength=0.2))
    assert "no effect without ref_img" in warning


def test_one_error_lists_every_problem():
    err = problems(model="wanx2.1-t2i-turbo", prompt="", size="9*9", n=7, seed=-5, style="<anime>")
    assert len(err.problems) == 5
    assert str(err).startswith("invalid request for model 'wanx2.1-t2i-turbo' (5 problems):")
    assert {p.param for p in err.problems} == {"prompt", "size", "n", "seed", "style"}
    assert isinstance(err, ValueError)


def test_model_outside_its_regions_only_warns():
    (warning,) = validate(GenerationRequest("fox", model="wanx-v1"), region="singapore")
    assert "documented for beijing only" in warning


def test_parse_size():
    assert parse_size("1024*768") == (1024, 768)
    assert parse_size("1024x768") == (1024, 768)
    assert parse_size("1024") is None


def only_problem(request, region="beijing"):
    with pytest.raises(ValidationError) as info:
        validate(request, region=region)
    (problem,) = info.value.problems
    return problem


def test_a_parameter_many_families_take_names_them_all():
    # A 2026 model names every family of the catalog that takes the parameter, not only the legacy V2.
    problem = only_problem(GenerationRequest("fox", model="z-image-turbo", watermark=True))
    assert (problem.param, problem.value) == ("watermark", True)
    assert problem.allowed == (
        "z-image-turbo (z-image) does not take watermark; it is a V2/qwen-image/qwen-image-2.0/qwen-image-3.0/"
        "wan2.6/wan2.7 parameter. It takes: prompt, negative_prompt, size, n, seed, prompt_extend"
    )


@pytest.mark.parametrize("model", ["qwen-image-max", "qwen-image-plus", "z-image-turbo"])
def test_one_image_models_say_they_make_one_image_per_call(model):
    problem = only_problem(GenerationRequest("fox", model=model, n=2))
    assert str(problem) == f"n=2: 1 ({model} makes one image per call)"
    assert validate(GenerationRequest("fox", model=model, n=1)) == []


def test_n_above_a_larger_maximum_names_the_range():
    assert str(only_problem(GenerationRequest("fox", model="qwen-image-2.0", n=7))) == "n=7: an integer from 1 to 6"


@pytest.mark.parametrize("model,size", [("wan2.6-t2i", "1440*1440"), ("wan2.6-t2i", "1296*1296"),
                                        ("qwen-image-max", "1024*1024"), ("qwen-image-max", "2048*1024")])
def test_a_free_size_passes_where_the_rule_also_lists_recommended_sizes(model, size):
    assert validate(GenerationRequest("fox", model=model, size=size)) == []


def test_a_size_outside_a_listed_and_free_rule_is_told_the_whole_rule():
    problem = only_problem(GenerationRequest("fox", model="wan2.6-t2i", size="700*700"))
    assert problem.allowed == (
        "one of 1280*1280, 1104*1472, 1472*1104, 960*1696, 1696*960 or W*H with W*H between 589824 and "
        "2073600 pixels and aspect ratio between 1:4 and 4:1"
    )


@pytest.mark.parametrize("size", ["2K", "2k", " 1k ", "1K"])
def test_size_tiers_pass_in_any_case(size):
    assert validate(GenerationRequest("fox", model="wan2.7-image", size=size)) == []


def test_a_tier_the_model_lacks_is_refused():
    assert "size='4K'" in str(only_problem(GenerationRequest("fox", model="wan2.7-image", size="4K")))


def test_a_current_model_outside_its_regions_is_refused_naming_the_models_served_there():
    problem = only_problem(GenerationRequest("fox", model="qwen-image-max"), region="frankfurt")
    assert (problem.param, problem.value) == ("model", "qwen-image-max")
    assert problem.allowed == (
        "a model the frankfurt region serves: qwen-image-max is offered in beijing, singapore only; "
        "in frankfurt use one of wan2.6-t2i"
    )
    problem = only_problem(GenerationRequest("fox", model="wan2.7-image"), region="virginia")
    assert problem.allowed.endswith(
        "in virginia use one of wan2.2-t2i-flash, wan2.2-t2i-plus, wan2.5-t2i-preview, wan2.6-t2i, "
        "wanx2.1-t2i-plus, wanx2.1-t2i-turbo"
    )


def test_a_region_that_serves_no_model_suggests_none():
    # Tokyo is reachable through a workspace domain only, and no catalog model is documented there.
    problem = only_problem(GenerationRequest("fox", model="qwen-image-3.0"), region="tokyo")
    assert problem.allowed == "a model the tokyo region serves: qwen-image-3.0 is offered in beijing only"


@pytest.mark.parametrize(("field", "text", "why"), [
    ("prompt", "\udcff\udcfe fox", "character 1 is '\\udcff' (the byte 0xff, not UTF-8)"),  # argv read from Latin-1
    ("prompt", "a fox \udc80", "character 7 is '\\udc80' (the byte 0x80, not UTF-8)"),
    ("negative_prompt", "x\ud800", "character 2 is '\\ud800';"),  # a lone high surrogate: no byte to name
    ("prompt", "fox\udfff", "character 4 is '\\udfff';"),  # the last surrogate
])
def test_text_that_cannot_be_sent_as_utf8_is_refused_naming_the_character(field, text, why):
    # It used to pass validation and fail as the journal encoded it: a traceback, from the CLI too.
    request = GenerationRequest("a fox", model="wanx-v1").replace(**{field: text})
    with pytest.raises(ValidationError) as refused:
        validate(request)
    assert f"{field}={text!r}: text in UTF-8: {why}" in str(refused.value)
    assert validate(GenerationRequest("狐狸 🦊 in snow", model="wanx-v1", negative_prompt="模糊")) == []


# ---- wan2.7: thinking mode and image sequences (2026 §3.3; n up to 12 is third-party documented) ----------


def test_wan27_n_above_4_needs_a_sequence_and_the_message_says_how_many_with_it():
    from wanx_nb._params import OPTION_NAMES

    for sequential in (None, False):
        with pytest.raises(ValidationError) as err:
            validate(GenerationRequest("a comic", model="wan2.7-image", n=8, enable_sequential=sequential))
        assert "n=8: 1-4 for wan2.7-image, or up to 12 with enable_sequential=True" in str(err.value)
    with pytest.raises(ValidationError) as err:  # as the magic and the CLI name it
        validate(GenerationRequest("a comic", model="wan2.7-image-pro", n=5), names=OPTION_NAMES)
    assert "-n=5: 1-4 for wan2.7-image-pro, or up to 12 with --sequential" in str(err.value)
    assert "--sequential=" not in str(err.value)  # a flag, as typed: no value
    assert validate(GenerationRequest("a comic", model="wan2.7-image", n=12, enable_sequential=True)) == []
    with pytest.raises(ValidationError) as err:
        validate(GenerationRequest("a comic", model="wan2.7-image", n=13, enable_sequential=True))
    assert "n=13: an integer from 1 to 12 with enable_sequential=True (wan2.7-image)" in str(err.value)
    with pytest.raises(ValidationError) as err:  # other models keep their own rule, sequence or not
        validate(GenerationRequest("a comic", model="wanx2.1-t2i-turbo", n=5))
    assert "n=5: an integer from 1 to 4" in str(err.value)


def test_wan27_switches_are_booleans_and_only_wan27_takes_them():
    for field in ("thinking_mode", "enable_sequential"):
        with pytest.raises(ValidationError) as err:
            validate(GenerationRequest("a fox", model="wan2.7-image", **{field: "yes"}))
        assert f"{field}='yes': true or false" in str(err.value)
        with pytest.raises(ValidationError) as err:
            validate(GenerationRequest("a fox", model="wanx2.1-t2i-turbo", **{field: True}))
        assert f"wanx2.1-t2i-turbo (V2) does not take {field}; it is a wan2.7 parameter" in str(err.value)
    assert validate(GenerationRequest("a fox", model="wan2.7-image", thinking_mode=False, enable_sequential=False)) == []
