"""The parameter table: every surface derives from it, requests round-trip through each, values go out canonical.

Round trips run over generated requests (hypothesis): request -> `%%wanx` cell -> request, request -> CLI
argv -> request, and the panel's equivalent cell. Nothing here sends a request.
"""

from __future__ import annotations

import argparse
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wanx_nb import cli
from wanx_nb._exceptions import ValidationError
from wanx_nb._magic_args import cell_parser, interpolate, parse_cell_line
from wanx_nb._params import (
    OPTION_NAMES,
    PARAMS,
    add_request_options,
    canonical_size,
    canonical_style,
    option_line,
    option_tokens,
    parse_size,
)
from wanx_nb._registry import MODELS, V1_STYLES
from wanx_nb._request import MAX_SEED, GenerationRequest
from wanx_nb._validation import validate
from wanx_nb.panel import Panel, magic_cell

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- the table ----------------------------------------------------------------------------------


def test_every_request_field_is_in_the_table_once():
    fields = {f for f in GenerationRequest.__dataclass_fields__ if f != "prompt"}
    names = [p.name for p in PARAMS]
    assert sorted(names) == sorted(fields)
    spellings = [flag for p in PARAMS for flag in (*p.flags, p.off_flag) if flag]
    assert len(spellings) == len(set(spellings))


def test_magic_and_cli_take_the_same_option_spellings():
    cli_generate = cli._parser()._subparsers._group_actions[0].choices["generate"]  # type: ignore[union-attr]
    for p in PARAMS:
        for flag in (*p.flags, p.off_flag):
            if flag:
                assert flag in cell_parser._option_string_actions, flag
                assert flag in cli_generate._option_string_actions, flag


def test_help_of_every_option_states_its_default():
    parser = argparse.ArgumentParser()
    add_request_options(parser)
    text = " ".join(parser.format_help().split())
    for p in PARAMS:
        assert f"(default: {p.default})" in text, p.name


@pytest.mark.parametrize(
    "typed, sent",
    [
        ("1024*768", "1024*768"),
        ("1024x768", "1024*768"),
        ("1024X768", "1024*768"),
        ("1024×768", "1024*768"),
        (" 1024 * 768 ", "1024*768"),
        ("１０２４＊７６８", "1024*768"),  # full-width digits and star
        ("１０２４ x ７６８", "1024*768"),
    ],
)
def test_every_size_the_validator_reads_is_sent_as_w_star_h(typed, sent):
    request = GenerationRequest("a fox", size=typed)
    assert request.size == sent
    assert validate(request) == []
    assert request.to_body()["parameters"]["size"] == sent


@pytest.mark.parametrize("typed", ["0*0", "0x1024", "1024", "1024*", "-1024*1024", "1024*1024*1", "1234567*1"])
def test_sizes_that_are_not_w_star_h_are_refused_not_sent(typed):
    assert parse_size(typed) is None
    assert canonical_size(typed) == typed  # left as typed, so the error shows it
    with pytest.raises(ValidationError) as info:
        validate(GenerationRequest("a fox", size=typed))
    assert f"size={typed!r}: a size written W*H" in str(info.value)


def test_styles_are_sent_in_brackets_and_unknown_ones_are_left_as_typed():
    assert canonical_style("3d-cartoon") == "<3d cartoon>"
    assert canonical_style("Oil_Painting") == "<oil painting>"
    assert canonical_style("manga") == "manga"
    assert GenerationRequest("x", model="wanx-v1", style="watercolor").to_body()["parameters"]["style"] == "<watercolor>"


@pytest.mark.parametrize("n, seed, ok", [(4, MAX_SEED - 3, True), (4, MAX_SEED - 2, False), (1, MAX_SEED, True)])
def test_every_images_seed_stays_in_range(n, seed, ok):
    request = GenerationRequest("a fox", n=n, seed=seed)
    if ok:
        assert validate(request) == []
        assert max(request.seeds) <= MAX_SEED  # type: ignore[type-var]
    else:
        with pytest.raises(ValidationError, match=f"seed must be at most {MAX_SEED - n + 1}"):
            validate(request)


def test_problems_name_the_option_typed_on_the_magic_and_cli_and_the_field_in_python():
    request = GenerationRequest("a fox", model="wanx-v1", prompt_extend=True, ref_strength=2.0, ref_img="https://x/a.png")
    with pytest.raises(ValidationError) as python:
        validate(request)
    with pytest.raises(ValidationError) as typed:
        validate(request, names=OPTION_NAMES)
    assert "prompt_extend=True: wanx-v1 (V1) does not take prompt_extend" in str(python.value)
    assert "--extend=True: wanx-v1 (V1) does not take --extend" in str(typed.value)
    assert "--ref-strength=2.0: a number from 0.0 to 1.0" in str(typed.value)
    assert "prompt_extend" not in str(typed.value)


# ---- generated requests -------------------------------------------------------------------------

# Text a user might type: any letters, digits, punctuation and spaces (CJK included), no control characters,
# with the pieces that trip option lines and prompt filling mixed in.
_TRICKY = ["{name}", "{{", "}}", "{", "}", '"', "'", "\\", "#", "$HOME", "`", " -n 4", "--seed", "=", "<anime>", "\t"]
_TEXT = st.lists(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")) | st.sampled_from(_TRICKY), max_size=20
).map("".join)
_SEPARATORS = ["*", "x", "X", "×", " * ", " x "]


def _written(size: str, sep: str, wide: bool) -> str:
    w, h = size.split("*")
    text = f"{w}{sep}{h}"
    return text.translate(str.maketrans("0123456789", "０１２３４５６７８９")) if wide else text


@st.composite
def requests(draw: st.DrawFn) -> GenerationRequest:
    model = draw(st.sampled_from(sorted(MODELS)))
    spec = MODELS[model]
    first = draw(_TEXT.filter(lambda t: any(unicodedata.category(c)[0] in "LNPS" for c in t)))  # something shows
    second = draw(st.none() | _TEXT)
    prompt = (first if second is None else f"{first}\n{second}").strip()
    fields: dict = {}
    n = draw(st.none() | st.integers(1, spec.max_n))
    fields["n"] = n
    effective_n = n if n is not None else spec.default_n
    fields["seed"] = draw(st.none() | st.integers(0, MAX_SEED - effective_n + 1))
    fields["negative_prompt"] = draw(st.none() | _TEXT | st.sampled_from(["-blurry", "--no-text", "-", "-n 4"]))
    if spec.sizes is not None:
        size = draw(st.sampled_from(spec.sizes))
    elif spec.side_range is not None:
        lo, hi = spec.side_range
        size = f"{draw(st.integers(lo, hi))}*{draw(st.integers(lo, hi))}"
    else:
        size = spec.default_size
    fields["size"] = draw(st.none() | st.just(_written(size, draw(st.sampled_from(_SEPARATORS)), draw(st.booleans()))))
    if "prompt_extend" in spec.params:
        fields["prompt_extend"] = draw(st.none() | st.booleans())
        fields["watermark"] = draw(st.none() | st.booleans())
    if spec.is_v1:
        style = draw(st.none() | st.sampled_from(V1_STYLES))
        if style is not None and draw(st.booleans()):
            style = style.strip("<>").replace(" ", draw(st.sampled_from([" ", "-", "_"]))).upper()
        fields["style"] = style
        if draw(st.booleans()):
            fields["ref_img"] = draw(st.sampled_from(["https://example.com/ref.png", "oss://bucket/a b.png"]))
            fields["ref_strength"] = draw(st.none() | st.floats(0.0, 1.0))
            fields["ref_mode"] = draw(st.none() | st.sampled_from(["repaint", "refonly"]))
    request = GenerationRequest(prompt, model=model, **fields)
    validate(request)  # every generated request is one the service accepts
    return request


def _via_magic(cell: str) -> GenerationRequest:
    """What `%%wanx` makes of a cell: the option line parsed, the body filled and stripped."""
    line, body = cell.split("\n", 1)
    assert line.startswith("%%wanx ")
    args = parse_cell_line(line[len("%%wanx "):])
    return args.to_request(interpolate(body.strip(), {}).strip(), default_model="wanx2.1-t2i-turbo", default_n=1)


@SETTINGS
@given(requests())
def test_request_to_magic_cell_and_back(request):
    again = _via_magic(magic_cell(request))
    assert again.canonical() == request.canonical()
    assert again.to_body() == request.replace(n=request.effective_n, size=request.effective_size).to_body()


@SETTINGS
@given(requests())
def test_request_to_cli_arguments_and_back(request):
    args = cli._parser().parse_args(["generate", *option_tokens(request), "--", request.prompt])
    again = cli.request_from_args(args)
    assert again.canonical() == request.canonical()
    assert again.to_body() == request.replace(n=request.effective_n, size=request.effective_size).to_body()


@SETTINGS
@given(requests())
def test_option_line_is_one_line_of_canonical_values(request):
    line = option_line(request)
    assert "\n" not in line
    assert f"--size {request.effective_size}" in line


def test_the_panels_equivalent_cell_parses_back_with_a_dash_negative_prompt(session):
    panel = Panel(session=session, model="wanx2.1-t2i-plus", prompt="a fox {not a name}", static_output=False)
    panel._negative.value = "-blurry, \"text\"\nwatermark"
    panel._seed_fixed.value = True
    panel._seed.value = 2147483644
    panel._n.value = 4
    panel._width.value, panel._height.value = 1280, 720
    request = panel.request()
    assert request.negative_prompt == '-blurry, "text" watermark'  # one line: the option line holds it
    panel._set_code(request)
    again = _via_magic(panel.code_text)
    assert again.canonical() == request.canonical()
    assert again.prompt == "a fox {not a name}"


def test_panel_labels_come_from_the_table(session):
    panel = Panel(session=session, model="wanx-v1", static_output=False)
    assert panel._style.description == "Style" and panel._ref_mode.description == "Ref. mode"
    assert panel._seed.description == "Seed" and panel._seed_fixed.description == "keep this seed"
    assert panel._ref_mode.style.button_width == "auto"  # "repaint (follow content)" is not cut
    assert "--ref-strength" in panel._ref_strength.tooltip


# ---- wherever the request is made, the service gets the canonical form ------------------------


def test_python_api_sends_sizes_and_styles_in_the_service_form(session, emulator):
    session.generate(GenerationRequest("a fox", size="１０２４ X ７６８", n=1, seed=1))
    session.generate(GenerationRequest("a fox", model="wanx-v1", size="720x1280", style="oil-painting", n=1, seed=1))
    bodies = [r.json for r in emulator.requests("create")]
    assert [b["parameters"]["size"] for b in bodies] == ["1024*768", "720*1280"]
    assert bodies[1]["parameters"]["style"] == "<oil painting>"


def test_compare_with_a_zero_size_is_a_validation_error_not_a_crash(session, emulator):
    from wanx_nb.comparison import compare

    with pytest.raises(ValidationError, match="a size written W\\*H"):
        compare(["a fox"], size="0*0", session=session, display=False)
    assert emulator.request_log == []


def test_values_typed_for_a_grid_axis_are_read_by_the_table():
    from wanx_nb._params import param_for, read_value

    assert param_for("extend").name == param_for("--extend").name == param_for("prompt_extend").name == "prompt_extend"
    assert read_value("seed", "７") == 7
    assert read_value("size", "1024x768") == "1024*768"
    assert read_value("style", "oil painting") == "<oil painting>"
    assert read_value("extend", "off") is False
    with pytest.raises(ValueError, match="--seed 'x' is not allowed; use a whole number"):
        read_value("seed", "x")
    with pytest.raises(ValueError, match="--ref-strength 'inf' is not allowed; use a finite number"):
        read_value("ref-strength", "inf")
    with pytest.raises(KeyError, match="'colour' is not a request parameter; use one of model, n, size"):
        param_for("colour")


def test_the_tables_families_agree_with_what_each_model_takes():
    from wanx_nb._registry import CATALOG

    for spec in CATALOG.values():
        for p in PARAMS:
            if p.name != "model":
                assert (p.name in spec.params) == (spec.family in p.families), (spec.name, p.name)
