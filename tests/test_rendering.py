"""rendering: what a notebook shows for results, failures, errors and status (no IPython needed)."""

import base64
import io
import json
import random
import re

import pytest
from PIL import Image

from wanx_nb import _preview, rendering
from wanx_nb._exceptions import APIStatusError, TaskFailedError, ValidationError, Problem
from wanx_nb._models import GenerationResult, ImageResult, Task, TaskStatus
from wanx_nb._request import GenerationRequest
from wanx_nb._session import Progress

TASK_ID = "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"
REQUEST_ID = "req-7a6b5c4d-3e2f-1a0b"


def png(width=64, height=64, *, noisy=False, seed=0, color=(200, 60, 40)):
    if noisy:
        rng = random.Random(seed)
        img = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    else:
        img = Image.new("RGB", (width, height), color)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_result(
    prompt="a red fox in snow",
    *,
    n=2,
    seed=7,
    backend="emulator",
    size="1024*1024",
    failed=(),
    actual_prompt=None,
    data=None,
    width=64,
):
    request = GenerationRequest(prompt, model="wanx2.1-t2i-turbo", n=n, seed=seed, size=size)
    images = []
    for i in range(n):
        if i in failed:
            code, message = failed[i]
            images.append(ImageResult(i, seed + i, size, code=code, message=message))
        else:
            images.append(
                ImageResult(
                    i,
                    seed + i,
                    size,
                    url=f"https://dashscope-result.example/{TASK_ID}/{i}.png?Signature=abc",
                    orig_prompt=prompt,
                    actual_prompt=actual_prompt,
                    data=data if data is not None else png(width, width, seed=i, color=(10 * i, 100, 150)),
                    path=f"wanx_store/images/{i:064d}.png",
                )
            )
    ok = sum(1 for im in images if im.code is None)
    task = Task(TASK_ID, TaskStatus.SUCCEEDED, request_id=REQUEST_ID, usage={"image_count": ok},
                submit_time="2025-01-08 16:00:00.000", end_time="2025-01-08 16:00:09.000")
    return GenerationResult(request=request, task=task, images=images, backend=backend, elapsed=9.25,
                            created_at="2025-01-08T08:00:09.500+00:00")


def decode_uri(uri):
    head, b64 = uri.split(",", 1)
    return head, Image.open(io.BytesIO(base64.b64decode(b64)))


# ---- text/plain ---------------------------------------------------------------------------------


def test_text_plain_summarises_model_counts_size_seeds_cost_and_emulator():
    data, _ = rendering.result_mimebundle(make_result())
    assert data["text/plain"] == "<wanx wanx2.1-t2i-turbo: 2/2 images 1024*1024 seeds 7-8 ¥0.28 [emulator]>"


def test_text_plain_has_no_task_id_request_id_url_path_or_time():
    result = make_result(failed={1: ("InternalError.Timeout", "An internal timeout error has occured")})
    result.warnings.append("prompt is 900 characters; the server truncates the rest")
    text = rendering.result_mimebundle(result)[0]["text/plain"]
    for volatile in (TASK_ID, TASK_ID[:8], REQUEST_ID, "https://", "wanx_store", "9.2", "2025-01-08"):
        assert volatile not in text


def test_a_replayed_result_renders_exactly_as_recorded():
    live = make_result(backend="emulator")
    replayed = make_result(backend="emulator")
    replayed.replayed = True
    assert rendering.result_mimebundle(live)[0] == rendering.result_mimebundle(replayed)[0]
    assert rendering.result_mimebundle(replayed)[1]["wanx_nb"]["replayed"] is True
    assert "[emulator]" not in rendering.result_text(make_result(backend="dashscope"))


# ---- HTML ---------------------------------------------------------------------------------------


def test_html_escapes_prompt_rewritten_prompt_and_messages():
    evil = "<script>alert(1)</script>"
    result = make_result(
        prompt=f"fox {evil}", actual_prompt=f"rewritten {evil} & more",
        failed={1: ("InternalError.Timeout", f"boom {evil}")},
    )
    html = rendering.result_mimebundle(result)[0]["text/html"]
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&amp; more" in html


def test_html_is_identical_for_equal_results_rendered_twice():
    first = rendering.result_mimebundle(make_result())
    _preview._cache.clear()  # the second render must not depend on a cache hit
    second = rendering.result_mimebundle(make_result())
    assert first == second


def test_tiles_show_model_size_seed_cost_time_prompt_and_path():
    result = make_result(actual_prompt="a red fox in fresh snow, soft light")
    result.images[0].export_path = "wanx_output/wanx2.1-t2i-turbo_7.png"
    html = rendering.result_mimebundle(result)[0]["text/html"]
    for piece in ("wanx2.1-t2i-turbo", "1024*1024", "seed 7", "seed 8", "¥0.14", "9.2 s",
                  "rewritten prompt:", "a red fox in fresh snow, soft light",
                  "wanx_output/wanx2.1-t2i-turbo_7.png", "wanx_store/images/"):
        assert piece in html


def test_long_prompt_is_folded_into_details():
    long_prompt = "a very detailed scene of " + "foxes and snowy pines, " * 10
    html = rendering.result_html(make_result(prompt=long_prompt, n=1))
    assert "<details><summary" in html and "foxes and snowy pines" in html
    assert "<details>" not in rendering.result_html(make_result(prompt="short", n=1))


def test_emulator_badge_only_on_emulator_results():
    assert "emulator: not the real service" in rendering.result_html(make_result(backend="emulator"))
    assert "emulator: not the real service" not in rendering.result_html(make_result(backend="dashscope"))


def test_no_stylesheet_and_classes_keep_the_wanx_prefix():
    html = rendering.result_html(make_result())
    assert "<style" not in html
    classes = set(re.findall(r'class="([^"]+)"', html))
    assert classes and all(c.startswith("wanx-") for cls in classes for c in cls.split())


def test_provenance_under_wanx_nb_metadata_and_never_the_key(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-secretkey1234567890")
    result = make_result()
    data, metadata = rendering.result_mimebundle(result)
    assert metadata == {"wanx_nb": result.metadata()}
    prov = metadata["wanx_nb"]
    assert prov["model"] == "wanx2.1-t2i-turbo" and prov["task_id"] == TASK_ID
    assert [im["seed"] for im in prov["images"]] == [7, 8]
    assert "sk-secretkey" not in json.dumps([data, metadata], ensure_ascii=False)


def test_result_repr_mimebundle_uses_rendering():
    result = make_result()
    assert result._repr_mimebundle_() == rendering.result_mimebundle(result)


# ---- previews -----------------------------------------------------------------------------------


def test_preview_of_a_1024_image_is_at_most_a_tenth_of_the_png():
    full = png(1024, 1024, noisy=True, seed=3)
    uri = rendering.preview_data_uri(full)
    assert len(uri) <= 0.10 * len(full)
    html = rendering.result_html(make_result(n=1, data=full))
    assert len(html) <= 0.10 * len(full) + 8000  # the preview plus captions and the stylesheet


def test_preview_is_bounded_and_keeps_the_aspect_ratio():
    _, img = decode_uri(rendering.preview_data_uri(png(1280, 720, noisy=True, seed=1)))
    assert img.size == (384, 216)
    _, img = decode_uri(rendering.preview_data_uri(png(1024, 1024, seed=2), max_px=128))
    assert img.size == (128, 128)
    _, img = decode_uri(rendering.preview_data_uri(png(100, 50)))
    assert img.size == (100, 50)  # never upscaled


def test_preview_is_a_deterministic_function_of_the_bytes():
    full = png(512, 512, noisy=True, seed=9)
    first = rendering.preview_data_uri(full)
    _preview._cache.clear()
    assert rendering.preview_data_uri(bytes(bytearray(full))) == first
    assert rendering.preview_data_uri(png(512, 512, noisy=True, seed=10)) != first


def test_preview_picks_png_when_it_is_smaller():
    head, _ = decode_uri(rendering.preview_data_uri(png(600, 600)))  # one flat colour
    assert head == "data:image/png;base64"
    head, _ = decode_uri(rendering.preview_data_uri(png(600, 600, noisy=True)))
    assert head == "data:image/jpeg;base64"


def test_undecodable_bytes_become_a_labelled_tile_not_an_exception():
    with pytest.raises(ValueError):
        rendering.preview_data_uri(b"\x89PNG\r\n\x1a\ntruncated")
    html = rendering.result_html(make_result(n=1, data=b"\x89PNG\r\n\x1a\ntruncated"))
    assert "cannot decode the image" in html and "wanx-failed" in html


# ---- failures and errors ------------------------------------------------------------------------


def test_failed_image_is_a_tile_with_code_message_and_next_step():
    message = "An internal timeout error has occured during execution, please try again later."
    result = make_result(failed={1: ("InternalError.Timeout", message)})
    data, _ = rendering.result_mimebundle(result)
    html = data["text/html"]
    assert "wanx-failed" in html and "InternalError.Timeout" in html and message in html
    assert "retry this seed" in html and "seed 8" in html
    assert data["text/plain"].startswith("<wanx wanx2.1-t2i-turbo: 1/2 images 1024*1024 seeds 7-8 ¥0.14 [emulator]>")
    assert "image 2 (seed 8) failed: InternalError.Timeout" in data["text/plain"]


@pytest.mark.parametrize(
    "code, words",
    [
        ("InternalError.Timeout", "retry this seed"),
        ("DataInspectionFailed", "rephrase the prompt"),
        ("IPInfringementSuspect", "rephrase the prompt"),
        ("InvalidApiKey", "DASHSCOPE_API_KEY"),
        ("Throttling.RateQuota", "wait a few seconds"),
        ("Throttling.AllocationQuota", "quota"),
        ("InternalError.Algo", "retry"),
        ("Arrearage", "top up"),
        ("SubmitOutcomeUnknown", "%wanx resume"),
        (None, "retry"),
        ("SomethingNew", "read the message"),
    ],
)
def test_next_step_is_plain_and_specific(code, words):
    assert words in rendering.next_step(code)


def test_no_error_that_may_have_been_billed_is_told_to_retry():
    # A plain retry pays again: where the first request may be billed, the step is resume (or says
    # why nothing can be saved), whichever of our errors it is.
    import wanx_nb._exceptions as errors

    maybe_billed = [cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.WanxError)
                    and isinstance(cls.__dict__.get("code"), str) and getattr(cls, "billed", False) is not False]  # fmt: skip
    assert {"DownloadFailed", "SyncOutcomeUnknown", "SubmitOutcomeUnknown", "WaitTimeout"} <= {c.code for c in maybe_billed}
    for cls in maybe_billed:
        step = rendering.next_step(cls.code)
        assert "retry" not in step and "read the message above" not in step, (cls.code, step)
    for code in ("ReuseUnfinished", "InvalidImage"):  # billed False as errors, but about billed work
        assert "%wanx resume" in rendering.next_step(code), code


def test_failure_tile_escapes_and_uses_the_given_hint():
    html = rendering.failure_tile_html("<b>t</b>", "Code<1>", "msg <i>", hint="do <this>")
    assert "<b>t</b>" not in html and "&lt;b&gt;t&lt;/b&gt;" in html
    assert "Code&lt;1&gt;" in html and "msg &lt;i&gt;" in html and "do &lt;this&gt;" in html
    assert "rephrase the prompt" in rendering.failure_tile_html("x", "DataInspectionFailed", "m")


def test_error_mimebundle_keeps_the_server_message_verbatim_with_request_id_and_next_step():
    exc = TaskFailedError(TASK_ID, "FAILED", "DataInspectionFailed", "输入数据可能包含不适当的内容。", REQUEST_ID)
    data, metadata = rendering.error_mimebundle(exc)
    assert "DataInspectionFailed: 输入数据可能包含不适当的内容。" in data["text/plain"]
    assert "rephrase the prompt" in data["text/plain"]
    assert TASK_ID not in data["text/plain"]
    assert REQUEST_ID in data["text/html"] and "输入数据可能包含不适当的内容。" in data["text/html"]
    assert metadata["wanx_nb"]["request_id"] == REQUEST_ID and metadata["wanx_nb"]["code"] == "DataInspectionFailed"


def test_error_mimebundle_for_status_and_validation_errors():
    exc = APIStatusError(429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later.",
                         request_id="r-1")
    data, _ = rendering.error_mimebundle(exc)
    assert "Requests rate limit exceeded, please try again later." in data["text/plain"]
    assert "wait a few seconds" in data["text/plain"]
    verr = ValidationError("wanx-v1", [Problem("size", "999*999", "one of 1024*1024"), Problem("n", 9, "1 to 4")])
    text = rendering.error_mimebundle(verr)[0]["text/plain"]
    assert "size='999*999'" in text and "n=9" in text and "%wanx models" in text


# ---- several results, status, tables ------------------------------------------------------------


def test_gallery_shows_results_and_errors_in_order():
    err = TaskFailedError("t-2", "FAILED", "InternalError", "An internal error has occured")
    gallery = rendering.Gallery([make_result(), err, make_result(seed=20, n=1)], title="three runs")
    data, metadata = gallery._repr_mimebundle_()
    lines = data["text/plain"].splitlines()
    assert lines[0] == "three runs"
    assert lines[1] == "<wanx gallery: 3 result(s) ¥0.42>"
    # Each result is labelled with what sets it apart from the others (here seed and n).
    assert lines[2].startswith("seed 7 · n 2: <wanx wanx2.1-t2i-turbo: 2/2") and "InternalError" in lines[3]
    assert lines[5].startswith("seed 20 · n 1: <wanx")
    assert "<style" not in data["text/html"] and data["text/html"].count('class="wanx-tile wanx-failed"') == 1
    assert [m.get("task_id") for m in metadata["wanx_nb"]] == [TASK_ID, "t-2", TASK_ID]
    assert rendering.ResultList is rendering.Gallery and len(gallery) == 3


def test_status_html_lists_each_task_phase_and_elapsed():
    progress = [
        Progress(1, "wanx-v1", "running", "task-b", 3.25),
        Progress(0, "wanx2.1-t2i-turbo", "queued", None, 0.5),
        Progress(2, "wanx2.1-t2i-plus", "downloading", "task-<c>", 12.0),
    ]
    html = rendering.status_html(progress)
    assert html.index("wanx2.1-t2i-turbo") < html.index("wanx-v1") < html.index("wanx2.1-t2i-plus")
    for piece in ("queued", "running", "downloading", "3.2 s", "12.0 s", "task-&lt;c&gt;"):
        assert piece in html
    assert rendering.status_text(progress).splitlines()[0] == "#0 wanx2.1-t2i-turbo: queued 0.5s"
    assert "starting" in rendering.status_html([])


def test_models_table_lists_every_model_with_price_and_backend_but_no_key():
    from wanx_nb._registry import MODELS

    data, _ = rendering.models_mimebundle(MODELS, backend="emulator", has_key=False)
    for name, price in [("wanx2.1-t2i-plus", "0.20"), ("wanx2.1-t2i-turbo", "0.14"),
                        ("wanx2.0-t2i-turbo", "0.04"), ("wanx-v1", "0.16")]:
        row = next(line for line in data["text/plain"].splitlines() if line.startswith(name + " "))
        assert price in row
        assert name in data["text/html"]
    assert "emulator" in data["text/plain"] and "no DASHSCOPE_API_KEY" in data["text/plain"]
    assert "ref_img" in data["text/html"] and "prompt_extend" in data["text/html"]


# ---- untrusted notebooks, dark theme, narrow output areas ---------------------------------------

# What JupyterLab's sanitizer keeps in an untrusted output (@jupyterlab/apputils `Sanitizer`, 4.x,
# read from the bundled jlab_core: `allowedTags`, and `allowedStyles` with one value pattern per
# property). The properties below are the ones wanx_nb uses; a property missing from the whitelist,
# or a value its patterns do not match, is silently dropped.
KEPT_TAGS = {
    "a", "b", "br", "code", "details", "div", "figcaption", "figure", "img", "li", "span", "summary",
    "table", "td", "th", "tr", "ul",
}
KEPT_PROPERTIES = {
    "align-items", "background-color", "border", "border-bottom", "border-collapse", "border-radius",
    "border-style", "box-sizing", "cursor", "display", "flex", "flex-wrap", "font-family", "font-size",
    "font-style", "font-weight", "gap", "height", "line-height", "margin", "margin-left", "margin-top",
    "max-width", "min-height", "min-width", "opacity", "overflow-wrap", "padding", "padding-left",
    "table-layout", "text-align", "vertical-align", "white-space", "width", "word-break",
}
# Value forms no pattern of the whitelist matches (colours are hex, rgb(), rgba() or names only).
DROPPED_VALUES = re.compile(r"var\(|calc\(|inherit|currentcolor|sticky|!important|hsl", re.I)
KEPT_ENUMS = {"word-break": {"normal", "keep-all", "break-all"}, "overflow-wrap": {"normal", "break-word"},
              "display": {"block", "inline-block", "flex", "inline", "inline-flex", "table"}}


class _Elements(__import__("html.parser").parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.elements = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))


def elements(html_text):
    parser = _Elements()
    parser.feed(html_text)
    return parser.elements


def styles(style):
    out = {}
    for decl in filter(None, (d.strip() for d in style.split(";"))):
        prop, _, value = decl.partition(":")
        out[prop.strip()] = value.strip()
    return out


def assert_survives_the_sanitizer(html_text):
    assert "<style" not in html_text and "<script" not in html_text
    for tag, attrs in elements(html_text):
        assert tag in KEPT_TAGS, tag
        for prop, value in styles(attrs.get("style", "")).items():
            assert prop in KEPT_PROPERTIES, (tag, prop, value)
            assert not DROPPED_VALUES.search(value), (tag, prop, value)
            if prop in KEPT_ENUMS:
                assert value in KEPT_ENUMS[prop], (tag, prop, value)
            if prop in ("color", "background-color"):
                assert value.startswith(("rgba(", "#", "rgb(")), (prop, value)


def all_outputs(session):
    """One of every HTML output rendering makes, from real emulator results."""
    from wanx_nb._registry import MODELS
    from wanx_nb.comparison import compare

    grid = compare(["a fox", "一只猫"], models=["wanx2.1-t2i-turbo", "wanx-v1"], style="<watercolor>", seed=5,
                   session=session, display=False)
    result = grid[0, "wanx-v1"]
    err = TaskFailedError("t-2", "FAILED", "InternalError", "An internal error has occured")
    progress = [Progress(0, "wanx-v1", "running", "task-b", 3.25), Progress(1, "wanx-v1", "failed", None, 1.0)]
    rows = session.store.history()
    thumbnails = {rendering.row_id(r): session.store.read_image(r.thumbnail) for r in rows}
    return {
        "result": rendering.result_mimebundle(result)[0]["text/html"],
        "failed image": rendering.result_html(make_result(failed={1: ("InternalError.Timeout", "timeout")})),
        "error": rendering.error_mimebundle(err)[0]["text/html"],
        "gallery": rendering.Gallery([result, err, grid[1, "wanx-v1"]])._repr_mimebundle_()[0]["text/html"],
        "status": rendering.status_html(progress),
        "models": rendering.models_mimebundle(MODELS, backend="emulator", has_key=False)[0]["text/html"],
        "grid": grid.html(),
        "dry run": compare("a fox", dry_run=True, session=session).html(),
        "interrupt": rendering.interrupt_mimebundle(canceled=["t-1"], running=["t-2"], unsent=1)[0]["text/html"],
        "history": rendering.history_mimebundle(rows, thumbnails=thumbnails)[0]["text/html"],
    }


def test_every_html_output_is_inline_styled_with_what_jupyterlab_keeps_untrusted(session):
    for name, html_text in all_outputs(session).items():
        try:
            assert_survives_the_sanitizer(html_text)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


def test_no_hard_coded_text_colour_so_dark_and_light_themes_both_read(session):
    # Text inherits the theme's colour; tints are semi-transparent, so no white-on-white or
    # light-on-light in either theme.
    for name, html_text in all_outputs(session).items():
        for tag, attrs in elements(html_text):
            decls = styles(attrs.get("style", ""))
            assert "color" not in decls, (name, tag, decls)
            if "background-color" in decls:
                assert decls["background-color"].startswith("rgba("), (name, tag, decls)
                alpha = float(decls["background-color"].rstrip(")").split(",")[-1])
                assert alpha <= 0.3, (name, tag, decls)


def test_the_emulator_badge_is_its_own_tinted_element_apart_from_the_text():
    html_text = rendering.result_html(make_result(backend="emulator"))
    badges = [(tag, attrs) for tag, attrs in elements(html_text) if "wanx-badge" in attrs.get("class", "")]
    assert len(badges) == 1
    decls = styles(badges[0][1]["style"])
    assert decls["display"] == "inline-block" and decls["margin-left"] == "6px"
    assert "background-color" in decls and "border" in decls
    assert re.search(r'9\.2 s <span class="wanx-badge[^>]*>emulator: not the real service</span>', html_text)


def test_the_badge_stays_apart_from_the_text_where_styles_are_stripped(session):
    # GitHub's notebook view drops style attributes: the badge's margin goes, a space must remain.
    for name, html_text in all_outputs(session).items():
        for before in re.findall(r'(.)<span class="wanx-badge', html_text):
            assert before.isspace(), (name, before)
    assert "9.2 s emulator: not the real service" in text_of(rendering.result_html(make_result(backend="emulator")))


def text_of(html_text):
    """The text a reader sees with every tag (and so every style) gone, spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", "", html_text).split())


def test_galleries_lay_tiles_out_in_a_wrapping_row():
    html_text = rendering.result_html(make_result(n=3))
    gallery = next(attrs for tag, attrs in elements(html_text) if attrs.get("class") == "wanx-gallery")
    decls = styles(gallery["style"])
    assert (decls["display"], decls["flex-wrap"]) == ("flex", "wrap")
    for tag, attrs in elements(html_text):
        if tag == "img":
            assert styles(attrs["style"])["max-width"] == "100%"


def test_thumbnails_link_to_the_stored_png_relative_to_the_working_directory(tmp_path, monkeypatch):
    result = make_result(n=1)
    result.images[0].path = str(tmp_path / "wanx_store" / "images" / "ab cd.png")
    monkeypatch.setattr(rendering.options, "link_base", str(tmp_path))
    anchors = [attrs for tag, attrs in elements(rendering.result_html(result)) if tag == "a"]
    assert anchors == [{"href": "wanx_store/images/ab%20cd.png", "target": "_blank", "title": "open the full image"}]
    monkeypatch.setattr(rendering.options, "link_base", str(tmp_path / "notebooks"))
    href = next(attrs["href"] for tag, attrs in elements(rendering.result_html(result)) if tag == "a")
    assert href == "../wanx_store/images/ab%20cd.png"


def test_thumbnails_without_a_stored_file_have_no_link():
    result = make_result(n=1)
    result.images[0].path = None
    assert not [tag for tag, _ in elements(rendering.result_html(result)) if tag == "a"]


# ---- captions and labels ------------------------------------------------------------------------


def test_captions_list_every_parameter_that_differs_from_the_model_defaults():
    v1 = GenerationRequest("a cat", model="wanx-v1", size="720*1280", style="<watercolor>",
                           ref_img="https://example.com/refs/cat.png", ref_strength=0.7, ref_mode="refonly",
                           negative_prompt="blurry, text")
    assert rendering.changed_params(v1) == [
        ("size", "720*1280"), ("style", "<watercolor>"), ("reference", "cat.png"), ("strength", "0.7"),
        ("mode", "refonly"), ("negative", '"blurry, text"'),
    ]
    v2 = GenerationRequest("a cat", model="wanx2.1-t2i-plus", size="1024*768", seed=3, prompt_extend=False,
                           watermark=True)
    assert rendering.changed_params(v2) == [("size", "1024*768"), ("extend", "off"), ("watermark", "on")]


def test_parameters_set_to_their_defaults_are_not_listed():
    same = GenerationRequest("a cat", model="wanx-v1", size="1024*1024", style="<auto>",
                             ref_img="cat.png", ref_strength=0.5, ref_mode="repaint")
    assert rendering.changed_params(same) == [("reference", "cat.png")]
    assert rendering.changed_params(GenerationRequest("a cat", model="wanx2.1-t2i-turbo", prompt_extend=True,
                                                      watermark=False)) == []


def test_result_card_and_grid_cells_show_the_changed_parameters(session):
    from wanx_nb.comparison import compare

    grid = compare("a fox", models=["wanx2.1-t2i-turbo", "wanx-v1"], style="<flat illustration>",
                   negative_prompt="text", seed=5, session=session, display=False)
    card = rendering.result_html(grid[0, "wanx-v1"])
    assert "style &lt;flat illustration&gt; · negative &quot;text&quot;" in card
    cell = rendering.compare_cell_html(grid.cell(0, "wanx-v1"))
    assert "seed <span style=\"white-space:nowrap\">5</span> · style &lt;flat illustration&gt; · negative &quot;text&quot;" in cell
    v2_cell = rendering.compare_cell_html(grid.cell(0, "wanx2.1-t2i-turbo"))
    assert "flat illustration" not in v2_cell.split("⚠")[0]  # V2 is not sent a style (a note says so)


def test_a_style_sweep_is_labelled_with_each_style(session):
    styles_ = ["<watercolor>", "<anime>", "<sketch>"]
    results = session.generate_many(
        [GenerationRequest("a lighthouse", model="wanx-v1", n=1, seed=4, style=s) for s in styles_]
    )
    assert rendering.sweep_labels(results) == [f"style {s}" for s in styles_]
    data, _ = rendering.Gallery(results)._repr_mimebundle_()
    labels = re.findall(r'class="wanx-label"[^>]*>([^<]*)<', data["text/html"])
    assert labels == [f"style &lt;{s[1:-1]}&gt;" for s in styles_]
    assert [line.split(":")[0] for line in data["text/plain"].splitlines()[1:]] == [f"style {s}" for s in styles_]
    assert rendering.sweep_labels(results[:1]) == [""]  # one result: nothing sets it apart


# ---- the compare grid ---------------------------------------------------------------------------


def test_a_four_model_grid_is_a_fixed_layout_table_whose_thumbnails_scale(session):
    from wanx_nb.comparison import GUIDE_MODELS, compare

    grid = compare(["a fox", "a cat"], seed=1, session=session, display=False)
    html_text = grid.html()
    table = next(attrs for tag, attrs in elements(html_text) if tag == "table")
    decls = styles(table["style"])
    assert (decls["table-layout"], decls["width"]) == ("fixed", "100%")
    assert [html_text.count(f">{m}<br>") for m in GUIDE_MODELS] == [1, 1, 1, 1]
    imgs = [attrs for tag, attrs in elements(html_text) if tag == "img"]
    assert len(imgs) == 8 and all(styles(a["style"])["max-width"] == "100%" for a in imgs)
    assert all(styles(a["style"])["height"] == "auto" for a in imgs)


def test_the_plan_line_is_in_the_html_of_a_dry_run_only(session):
    from wanx_nb.comparison import compare

    dry = compare("a fox", dry_run=True, session=session)
    assert dry.html().count(str(dry.plan)) == 1
    run = compare("a fox", seed=1, session=session, display=False)
    assert str(run.plan) not in run.html() and "done · actual cost" in run.html()


# ---- interrupt ----------------------------------------------------------------------------------


def test_interrupt_card_says_what_was_canceled_what_still_runs_and_how_to_save_it():
    data, metadata = rendering.interrupt_mimebundle(canceled=["t-1", "t-2"], running=["t-3"], unsent=2)
    assert data["text/plain"] == (
        "wanx: interrupted\n"
        "  canceled before they ran (not billed): 2 tasks\n"
        "  still running on the service (billed when they finish): 1 task\n"
        "  never sent (not billed): 2 requests\n"
        "next step: run `%wanx resume` (now or within 24 h) to save every image of the running tasks; "
        "nothing is paid twice"
    )
    for task_id in ("t-1", "t-2", "t-3"):
        assert task_id in data["text/html"] and task_id not in data["text/plain"]
    assert metadata == {"wanx_nb": {"interrupted": {"canceled": ["t-1", "t-2"], "running": ["t-3"], "unsent": 2}}}


def test_interrupt_card_with_nothing_running_does_not_send_anyone_to_resume():
    text = rendering.interrupt_mimebundle(canceled=["t-1"])[0]["text/plain"]
    assert "resume" not in text and "not billed" in text
    assert "nothing was sent or billed" in rendering.interrupt_mimebundle()[0]["text/plain"]


def test_an_unfinished_request_never_suggests_a_retry():
    from wanx_nb._exceptions import TaskUnfinishedError

    error = TaskUnfinishedError("t-1", "500 InternalError on GET /api/v1/tasks/t-1", code="InternalError")
    data, _ = rendering.error_mimebundle(error)
    for text in (data["text/plain"], data["text/html"]):
        step = text.split("next step")[1]
        assert "%wanx resume" in step and "retry" not in step.lower()


@pytest.mark.parametrize("bad", [0, -5, 5000, 2.5, True, "384"])
def test_a_preview_size_that_cannot_be_drawn_is_refused_when_set(bad):
    before = rendering.options.preview_px
    with pytest.raises(ValueError, match=re.escape(f"preview_px={bad!r}: a whole number of pixels from 16 to 4096")):
        rendering.options.preview_px = bad
    assert rendering.options.preview_px == before
