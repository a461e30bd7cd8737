"""The widget panel, driven without a browser: set `.value`, `click()`, assert on widget state."""

import datetime as dt
import inspect
import io
import threading
import time
from pathlib import Path

import pytest
from ipywidgets import Layout, Widget
from PIL import Image

from wanx_nb._exceptions import (
    BudgetExceededError,
    ContentInspectionError,
    TaskCanceledError,
    ValidationError,
)
from wanx_nb._magic_args import parse_cell_line
from wanx_nb._models import GenerationResult
from wanx_nb._registry import CATALOG, MODELS, V1_SIZES, V1_STYLES
from wanx_nb._request import GenerationRequest
from wanx_nb._session import Session
from wanx_nb.emulator import Emulator, EmulatorSettings
from wanx_nb.panel import Panel, magic_cell


def upload(name, content):
    """The value FileUpload takes after a browser upload."""
    entry = {"name": name, "type": "image/png", "size": len(content), "content": memoryview(content),
             "last_modified": dt.datetime(2025, 1, 8, tzinfo=dt.timezone.utc)}
    return (entry,)


def visible(widget):
    return widget.layout.display != "none"


@pytest.fixture
def stuck(tmp_path):
    """A session whose tasks wait PENDING until canceled: the service's clock stands still."""
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=0.001, pending_seconds=1e9, query_qps=None))
    return Session(store=tmp_path / "stuck", emulator=emulator), emulator


def wait_until(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def png_bytes(color="red"):
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buf, format="PNG")
    return buf.getvalue()


# ---- widgets follow the model's family ---------------------------------------------------------


def test_v2_model_shows_free_size_and_v2_flags_and_hides_v1_controls(session):
    panel = Panel(session=session)
    assert panel._model.value == "wanx2.1-t2i-turbo"
    assert visible(panel._v2_box) and visible(panel._extend) and visible(panel._watermark)
    assert not visible(panel._v1_box)
    assert (panel._width.min, panel._width.max, panel._width.value) == (512, 1440, 1024)
    assert (panel._height.min, panel._height.max, panel._height.value) == (512, 1440, 1024)


def test_switching_to_wanx_v1_shows_style_sizes_and_reference_and_back(session):
    panel = Panel(session=session)
    panel._model.value = "wanx-v1"
    assert visible(panel._v1_box) and visible(panel._style) and visible(panel._v1_size) and visible(panel._ref_box)
    assert not visible(panel._v2_box)
    assert tuple(panel._style.options) == V1_STYLES and len(V1_STYLES) == 10
    assert tuple(panel._v1_size.options) == V1_SIZES
    assert (panel._ref_strength.min, panel._ref_strength.max, panel._ref_strength.value) == (0.0, 1.0, 0.5)
    assert [v for _, v in panel._ref_mode.options] == ["repaint", "refonly"]

    panel._model.value = "wanx2.0-t2i-turbo"
    assert visible(panel._v2_box) and not visible(panel._v1_box)


def test_area_ruled_model_gets_its_default_size_and_rule(session):
    panel = Panel(session=session)
    panel._model.value = "wan2.5-t2i-preview"
    assert (panel._width.value, panel._height.value) == (1280, 1280)
    assert panel._width.min <= 768 and panel._width.max >= 1440
    assert "pixels" in panel._size_rule.value
    panel._model.value = "wanx2.1-t2i-plus"
    assert (panel._width.value, panel._height.value, panel._width.max) == (1024, 1024, 1440)


def test_model_picker_labels_show_name_price_and_description(session):
    labels = dict((v, k) for k, v in Panel(session=session)._model.options)
    assert set(labels) == set(CATALOG)
    assert labels["wanx-v1"].startswith("wanx-v1 · ¥0.16/image · legacy · ")
    assert "current · sync call" in labels["qwen-image-max"]
    assert MODELS["wanx2.0-t2i-turbo"].description in labels["wanx2.0-t2i-turbo"]


def test_cost_label_follows_n_and_model(session):
    panel = Panel(session=session)
    assert panel._cost.value.startswith("1 image x ¥0.14 = ¥0.14")
    panel._n.value = 2
    assert panel._cost.value.startswith("2 images x ¥0.14 = ¥0.28")
    panel._model.value = "wanx2.1-t2i-plus"
    assert panel._cost.value.startswith("2 images x ¥0.20 = ¥0.40")
    assert "emulator" in panel._cost.value


def test_request_reflects_the_controls_of_each_family(session, tmp_path):
    panel = Panel(session=session, prompt="  a red fox \n")
    panel._negative.value = "blurry"
    panel._width.value, panel._height.value = 1280, 720
    panel._extend.value, panel._watermark.value = False, True
    panel._seed_fixed.value = True
    assert not panel._seed.disabled
    panel._seed.value = 7
    req = panel.request()
    assert req == GenerationRequest(
        "a red fox", model="wanx2.1-t2i-turbo", negative_prompt="blurry", size="1280*720", n=1, seed=7,
        prompt_extend=False, watermark=True,
    )

    panel._model.value = "wanx-v1"
    panel._style.value = "<anime>"
    panel._v1_size.value = "720*1280"
    panel._ref_upload.value = upload("ref.png", png_bytes())
    panel._ref_strength.value = 0.8
    panel._ref_mode.value = "refonly"
    req = panel.request()
    assert (req.model, req.style, req.size) == ("wanx-v1", "<anime>", "720*1280")
    assert (req.ref_strength, req.ref_mode) == (0.8, "refonly")
    assert req.prompt_extend is None and req.watermark is None
    saved = req.ref_img
    assert saved.startswith(str((tmp_path / "store" / "uploads").resolve())) and saved.endswith(".png")
    assert Path(saved).read_bytes() == png_bytes()

    panel._ref_clear.click()
    assert panel.request().ref_img is None and panel.request().ref_strength is None


# ---- generation against the emulator -----------------------------------------------------------


def test_generate_round_shows_images_reenables_and_writes_a_runnable_cell(session, emulator):
    panel = Panel(session=session)
    seen = []
    panel.on_result(seen.append)
    panel._prompt.value = "a red fox in snow"
    panel._n.value = 2
    panel._seed_fixed.value = True
    panel._seed.value = 42
    panel._generate.click()
    (result,) = panel.wait(30)

    assert not panel.running and not panel._generate.disabled and panel._cancel.disabled
    assert isinstance(result, GenerationResult) and [im.seed for im in result.images] == [42, 43]
    assert panel.results == (result,) and seen == [result]
    assert "Done: 2 images, ¥0.28" in panel._message.value
    assert panel.last_error is None and panel._errors.value == ""
    (static,) = panel._out.outputs  # the one place results are shown (the static output when displayed)
    assert static["output_type"] == "display_data" and static["data"]["text/html"].count("<img ") == 2
    assert static["metadata"]["wanx_nb"][0]["task_id"] == result.task_id

    first, body = panel.code_text.split("\n", 1)
    assert first.startswith("%%wanx ") and body == "a red fox in snow"
    again = parse_cell_line(first[len("%%wanx "):]).to_request(body, default_model="wanx-v1")
    assert again.canonical() == result.request.canonical()
    assert len(emulator.requests("create")) == 1


def test_random_seed_is_shown_in_the_cell_and_kept_in_the_seed_box(session):
    panel = Panel(session=session, model="wanx2.0-t2i-turbo", prompt="a lighthouse")
    panel._generate.click()
    (result,) = panel.wait(30)
    seed = result.images[0].seed
    assert f"--seed {seed}" in panel.code_text
    assert panel._seed.value == seed and panel._seed.disabled  # tick "fixed seed" to repeat it


def test_wanx_v1_round_writes_style_and_reference_into_the_cell(session, emulator):
    panel = Panel(session=session, model="wanx-v1", prompt="a cat")
    panel._style.value = "<oil painting>"
    panel._ref_upload.value = upload("sketch.png", png_bytes("blue"))
    panel._generate.click()
    (result,) = panel.wait(30)
    assert len(result.succeeded) == 1
    args = parse_cell_line(panel.code_text.split("\n", 1)[0][len("%%wanx "):])
    assert args.style == "<oil painting>" and args.model == "wanx-v1"
    assert args.ref_img == panel.request().ref_img and args.ref_strength == 0.5 and args.ref_mode == "repaint"


def test_generate_returns_at_once_and_a_second_click_is_ignored_while_running(stuck):
    session, emulator = stuck
    panel = Panel(session=session, prompt="a fox")
    panel._generate.click()
    assert panel.running and panel._generate.disabled and not panel._cancel.disabled
    panel._generate.click()  # ignored while running
    wait_until(lambda: emulator.requests("create"), "the create")
    (task_id,) = emulator.tasks
    wait_until(lambda: "pending" in panel._status.value, "the pending status")
    assert len(emulator.requests("create")) == 1

    panel._cancel.click()
    # The message and the table say the same: canceling (asked) or canceled (the service confirmed).
    wait_until(lambda: "canceled" in panel._status.value, "the canceled status")
    assert f"Canceled, not billed: {task_id}." in panel._message.value
    assert "pending" not in panel._status.value and "running" not in panel._message.value.lower()
    assert panel.wait(20) == []
    assert emulator.tasks[task_id].status_at(emulator.now()) == "CANCELED"
    assert isinstance(panel.last_error, TaskCanceledError) and "canceled" in panel._errors.value
    assert not panel.running and not panel._generate.disabled and panel._cancel.disabled


def test_cancel_touches_only_the_panels_own_run(tmp_path):
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=0.001, query_qps=None))
    session = Session(store=tmp_path / "store", emulator=emulator)
    other = session.start([GenerationRequest(f"fox {i}", model="wanx-v1", n=1, seed=i) for i in range(3)])
    wait_until(lambda: emulator.requests("create"), "the other cell's first create")
    panel = Panel(session=session, model="wanx-v1", prompt="a fox")
    panel._cancel.click()  # the panel has nothing in flight; the other cell's requests are not its own
    assert "Nothing to cancel" in panel._message.value
    emulator.advance(3600)
    outcomes = other.result(on_tick=lambda: emulator.advance(3600))
    assert all(isinstance(o, GenerationResult) for o in outcomes)


# ---- errors are shown in the panel -------------------------------------------------------------


def test_validation_error_is_shown_in_the_panel_and_nothing_is_sent(session, emulator):
    panel = Panel(session=session, model="wanx-v1")
    panel._prompt.value = "   "
    panel._generate.click()
    assert isinstance(panel.last_error, ValidationError)
    assert "prompt" in panel._errors.value and "Not sent" in panel._errors.value
    assert not panel.running and not panel._generate.disabled
    assert emulator.request_log == []
    assert panel.results == () and panel.code_text == ""


def test_budget_refusal_is_shown_and_nothing_is_sent(tmp_path, emulator):
    session = Session(store=tmp_path / "store", emulator=emulator, budget_yuan=0.3)
    panel = Panel(session=session, model="wanx2.1-t2i-plus", prompt="a fox")
    panel._n.value = 2  # ¥0.40
    panel._generate.click()
    assert isinstance(panel.last_error, BudgetExceededError) and "budget" in panel._errors.value
    assert emulator.request_log == [] and not panel.running


def test_api_error_after_sending_is_shown_in_the_panel(session, emulator):
    panel = Panel(session=session, prompt="a fox EMU_BLOCK_INPUT")
    panel._generate.click()
    assert panel.wait(30) == []
    assert isinstance(panel.last_error, ContentInspectionError)
    assert "DataInspectionFailed" in panel._errors.value and "next step" in panel._errors.value
    assert not panel._generate.disabled and all("<img " not in o["data"]["text/html"] for o in panel._out.outputs)


def test_a_failing_result_callback_does_not_break_the_run(session):
    panel = Panel(session=session, prompt="a fox")
    panel.on_result(lambda result: 1 / 0)
    panel._generate.click()
    (result,) = panel.wait(30)
    assert panel.results == (result,)


def test_on_result_can_be_removed(session):
    panel = Panel(session=session, prompt="a fox")
    seen = []
    panel.on_result(seen.append)
    panel.on_result(seen.append, remove=True)
    panel._generate.click()
    panel.wait(30)
    assert seen == []


# ---- each result once, elapsed ticks, sweeps -------------------------------------------------------


def test_each_result_is_shown_once_however_many_clicks(session, monkeypatch):
    import IPython.display

    published, handle = [], FakeHandle()
    monkeypatch.setattr(IPython.display, "publish_display_data", lambda data, **kw: published.append(data))
    monkeypatch.setattr(IPython.display, "display", lambda *a, **kw: handle if kw.get("display_id") else None)
    panel = Panel(session=session, prompt="a fox")
    panel._ipython_display_()
    for _ in range(3):
        panel._generate.click()
        panel.wait(30)
    # Three results, three images: in the one static output, not again inside the panel.
    _, data, _ = handle.updates[-1]
    assert data["text/html"].count("<img ") == 3 and len(published) == 1
    assert panel._out.outputs == ()
    inside = "".join(w.value for w in (panel._status, panel._message, panel._errors, panel._code))
    assert "<img " not in inside


def test_elapsed_grows_while_a_task_is_pending_and_the_ticker_stops_with_the_run(tmp_path):
    emulator = Emulator(EmulatorSettings(clock="fake", pending_seconds=1e9, query_qps=None))
    now = [1000.0]
    session = Session(store=tmp_path / "s", emulator=emulator, clock=lambda: now[0])
    panel = Panel(session=session, prompt="a fox", tick_seconds=0.01)
    panel._generate.click()
    wait_until(lambda: "pending" in panel._status.value, "the pending status")
    assert "0.0 s" in panel._status.value
    now[0] += 7.0  # the task stays PENDING; the ticker re-renders from the last event
    wait_until(lambda: "7.0 s" in panel._status.value, "elapsed to reach 7.0 s")
    now[0] += 5.0
    wait_until(lambda: "12.0 s" in panel._status.value, "elapsed to reach 12.0 s")
    panel._cancel.click()
    panel.wait(20)
    frozen = panel._status.value
    now[0] += 100.0
    time.sleep(0.1)  # ten ticks would have passed: the ticker has stopped
    assert panel._status.value == frozen and "canceled" in frozen


def test_a_seed_and_style_sweep_renders_as_one_labelled_grid(session, emulator):
    panel = Panel(session=session, model="wanx-v1", prompt="a lighthouse")
    panel._sweep_seeds.value = "1,2"
    panel._sweep_styles.value = "anime, sketch, watercolor"
    panel._generate.click()
    results = panel.wait(30)
    assert len(results) == 6 and len(emulator.requests("create")) == 6
    (static,) = panel._out.outputs
    page = static["data"]["text/html"]
    assert page.count("<img ") == 6 and "wanx-grid" in page
    for label in ("seed 1", "seed 2", "style &lt;anime&gt;", "style &lt;sketch&gt;", "style &lt;watercolor&gt;"):
        assert label in page
    first, body = panel.code_text.split("\n", 1)
    args = parse_cell_line(first[len("%%wanx "):])
    assert (args.x, args.y, args.seed) == ("seed=1,2", "style=anime,sketch,watercolor", None)


def test_a_sweep_with_reuse_saved_sends_only_what_no_earlier_run_made(session, emulator):
    panel = Panel(session=session, model="wanx2.1-t2i-turbo", prompt="a lighthouse")
    panel._n.value = 1
    panel._sweep_seeds.value = "1,2"
    panel._generate.click()
    panel.wait(30)
    panel._sweep_seeds.value, panel._reuse.value = "1,2,3", True
    panel._generate.click()
    (made,) = panel.wait(30)
    assert made.request.seed == 3 and len(emulator.requests("create")) == 3
    page = panel._out.outputs[0]["data"]["text/html"]
    assert page.count("from the store") >= 2 and "2 of 3 requests made by an earlier run" in page
    assert panel.code_text.split("\n", 1)[0].endswith(" --reuse")
    panel._generate.click()  # everything made before: nothing is sent, and the panel is ready again
    assert panel.wait(30) == [] and len(emulator.requests("create")) == 3 and not panel.running
    assert "every request already made" in panel._message.value


def test_one_request_with_reuse_saved_is_shown_from_the_store_and_not_counted_as_paid(session, emulator):
    panel = Panel(session=session, model="wanx2.1-t2i-turbo", prompt="a lighthouse")
    panel._n.value, panel._seed.value, panel._seed_fixed.value = 1, 77, True
    panel._generate.click()
    (first,) = panel.wait(30)
    panel._reuse.value = True
    panel._generate.click()
    (again,) = panel.wait(30)
    assert again.task_id == first.task_id and len(emulator.requests("create")) == 1
    assert "Done: 1 image, ¥0.00 (1 request from the store, not paid again)" in panel._message.value
    assert "reused" in panel._status.value and panel.code_text.split("\n", 1)[0].endswith(" --reuse")


def test_a_bad_sweep_value_is_shown_and_nothing_is_sent(session, emulator):
    panel = Panel(session=session, model="wanx-v1", prompt="a fox")
    panel._sweep_seeds.value = "1, two"
    panel._generate.click()
    assert "Sweep seeds=&#x27;two&#x27;: --seed &#x27;two&#x27; is not allowed; use a whole number" in panel._errors.value
    assert "Not sent" in panel._errors.value and emulator.request_log == [] and not panel.running
    panel._sweep_seeds.value, panel._sweep_styles.value = "", "anime, oil"
    panel._generate.click()
    assert "Sweep styles=&#x27;oil&#x27;: one of &lt;auto&gt;" in panel._errors.value  # the field, as typed
    assert emulator.request_log == []


# ---- static output in a kernel -----------------------------------------------------------------


class FakeHandle:
    def __init__(self):
        self.updates = []

    def update(self, data, **kwargs):
        self.updates.append((threading.current_thread().name, data, kwargs))


def test_displayed_panel_writes_results_into_its_cell_output_by_display_id(session, monkeypatch):
    import IPython.display

    published, handle = [], FakeHandle()
    monkeypatch.setattr(IPython.display, "publish_display_data", lambda data, **kw: published.append(data))
    monkeypatch.setattr(IPython.display, "display", lambda *a, **kw: handle if kw.get("display_id") else None)
    panel = Panel(session=session, prompt="a fox")
    panel._ipython_display_()  # what IPython does when the panel is a cell's value
    assert "application/vnd.jupyter.widget-view+json" in published[0]
    panel._generate.click()
    (result,) = panel.wait(30)
    panel._generate.click()
    panel.wait(30)
    # Each update carries every result so far, so the saved output shows them all.
    assert len(handle.updates) == 2
    thread, data, kwargs = handle.updates[-1]
    assert thread != threading.main_thread().name
    assert data["text/html"].count("<img ") == 2 and kwargs["raw"] is True
    assert kwargs["metadata"]["wanx_nb"][0]["task_id"] == result.task_id
    assert panel._out.outputs == ()


def test_undisplayed_panel_keeps_static_results_in_its_output_widget(session):
    panel = Panel(session=session, prompt="a fox")
    panel._generate.click()
    panel.wait(30)
    (output,) = panel._out.outputs
    assert "<img " in output["data"]["text/html"]


# ---- the equivalent cell, and hygiene -----------------------------------------------------------


def test_magic_cell_quotes_what_needs_quoting_and_parses_back(tmp_path):
    ref = tmp_path / "my sketch.png"
    ref.write_bytes(png_bytes())
    request = GenerationRequest(
        "一只猫\nsecond line", model="wanx-v1", n=3, seed=5, size="1280*720", negative_prompt='no "text", no blur',
        style="<3d cartoon>", ref_img=str(ref), ref_strength=0.25, ref_mode="refonly",
    )
    first, body = magic_cell(request).split("\n", 1)
    assert first.startswith("%%wanx -m wanx-v1 -n 3 --size 1280*720 --seed 5 ")
    assert body == request.prompt
    again = parse_cell_line(first[len("%%wanx "):]).to_request(body, default_model="wanx2.1-t2i-turbo")
    assert again == request

    v2 = GenerationRequest("fox", model="wanx2.1-t2i-plus", n=1, seed=0, prompt_extend=False, watermark=True)
    line = magic_cell(v2).split("\n")[0]
    assert "--no-extend" in line and "--watermark" in line and "--style" not in line
    again = parse_cell_line(line[len("%%wanx "):]).to_request("fox", default_model="wanx-v1")
    assert again == v2.replace(size="1024*1024")


def test_repr_is_short_and_no_widget_is_a_default_argument(session):
    panel = Panel(session=session)
    assert repr(panel) == "<wanx_nb.Panel wanx2.1-t2i-turbo n=1>"
    for param in inspect.signature(Panel.__init__).parameters.values():
        assert not isinstance(param.default, (Widget, Layout))
    assert Panel(session=session).layout is not panel.layout


@pytest.mark.parametrize("model", ["qwen-image-max", "wan2.6-t2i", "wan2.7-image", "z-image-turbo"])
def test_the_panel_offers_the_2026_catalog_and_generates_with_it(session, model):
    panel = Panel(session=session, model=model, prompt="a lighthouse at dusk")
    assert model in dict((v, k) for k, v in panel._model.options)
    request = panel.request()
    assert request.model == model  # the controls follow the model: its sizes and n range
    panel._generate.click()
    (result,) = panel.wait(60)
    assert result.model == model and result.saved_images == result.billed_images >= 1
