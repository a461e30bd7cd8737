"""rendering: what a notebook shows for results, failures, errors and status (no IPython needed)."""

import base64
import io
import json
import random

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
    assert "<details><summary>" in html and "foxes and snowy pines" in html
    assert "<details>" not in rendering.result_html(make_result(prompt="short", n=1))


def test_emulator_badge_only_on_emulator_results():
    assert "emulator: not the real service" in rendering.result_html(make_result(backend="emulator"))
    assert "emulator: not the real service" not in rendering.result_html(make_result(backend="dashscope"))


def test_css_is_one_stylesheet_scoped_by_the_wanx_prefix():
    html = rendering.result_html(make_result())
    assert html.count("<style>") == 1
    classes = set(__import__("re").findall(r'class="([^"]+)"', html))
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
    assert lines[2].startswith("<wanx wanx2.1-t2i-turbo: 2/2") and "InternalError" in lines[3]
    assert data["text/html"].count("<style>") == 1 and data["text/html"].count('class="wanx-tile wanx-failed"') == 1
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
