"""X/Y/Z grids: planning (pure), a run over the in-process emulator, the PNG legend and the manifest."""

import io
import json

import pytest
from PIL import Image

from wanx_nb import _grid_paint
from wanx_nb._exceptions import ValidationError
from wanx_nb._grid import Axis, parse_axis, plan_cells
from wanx_nb._registry import MODELS, V1_SIZES, get_model
from wanx_nb._request import GenerationRequest
from wanx_nb.cli import main
from wanx_nb.comparison import grid

FIXED = {"model": "wanx2.1-t2i-turbo", "n": 1, "seed": 5}


# ---- axes: every kind, read by the parameter table ---------------------------------------------


@pytest.mark.parametrize(
    ("spec", "name", "values"),
    [
        ("prompt=a fox, at dawn|一只猫", "prompt", ("a fox, at dawn", "一只猫")),
        ("model=all", "model", tuple(MODELS)),
        ("model=wan2.1-t2i-turbo,wanx-v1", "model", ("wanx2.1-t2i-turbo", "wanx-v1")),
        ("seed=1,2,3", "seed", (1, 2, 3)),
        ("seed=7..9", "seed", (7, 8, 9)),
        ("n=1,2", "n", (1, 2)),
        ("size=1024x1024, 1280×720", "size", ("1024*1024", "1280*720")),
        ("style=anime,3d-cartoon,<sketch>", "style", ("<anime>", "<3d cartoon>", "<sketch>")),
        ("negative=blurry, text|watermark", "negative_prompt", ("blurry, text", "watermark")),
        ("extend=on,off", "prompt_extend", (True, False)),
        ("--watermark=yes,no", "watermark", (True, False)),
        ("ref=a.png|b.png", "ref_img", ("a.png", "b.png")),
        ("ref-strength=0.2,0.8", "ref_strength", (0.2, 0.8)),
        ("ref-mode=repaint,refonly", "ref_mode", ("repaint", "refonly")),
        (("seed", [4, 4, 5]), "seed", (4, 5)),  # a value twice is one column
        ({"style": ["anime"]}, "style", ("<anime>",)),
    ],
)
def test_every_axis_kind_parses_to_service_values(spec, name, values):
    axis = parse_axis(spec)
    assert (axis.name, axis.values) == (name, values)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("seed", "NAME=V1,V2"),
        ("colour=red", "an axis is one of prompt, model"),
        ("seed=1,x", "--seed 'x' is not allowed; use a whole number"),
        ("extend=maybe", "--extend 'maybe': use on or off"),
        ("model=wanx9", "unknown model"),
        ("seed=5..1", "a range of 1 to 100 values"),
        ("seed=", "at least one value"),
    ],
)
def test_bad_axes_name_the_axis_the_option_and_what_is_allowed(spec, words):
    with pytest.raises(ValidationError) as info:
        parse_axis(spec, "y")
    assert "--y" in str(info.value) and words in str(info.value)


def test_labels_name_the_parameter_and_value():
    assert Axis("style", ("<anime>",)).labels == ("style <anime>",)
    assert Axis("prompt_extend", (True, False)).labels == ("extend on", "extend off")
    assert Axis("model", ("wanx-v1",)).labels == ("wanx-v1",)


# ---- planning: per-cell effective requests ------------------------------------------------------


def test_cells_are_z_y_x_with_each_axis_value_in_the_request():
    cells = plan_cells(["a fox"], [parse_axis("seed=1,2"), parse_axis("size=1024*1024,1280*720"),
                                   parse_axis("prompt=a|b")], FIXED)  # fmt: skip
    assert len(cells) == 8
    cell = cells[(1, 1, 0)]
    assert (cell.request.prompt, cell.request.size, cell.request.seed) == ("b", "1280*720", 1)
    assert cell.request.model == "wanx2.1-t2i-turbo" and cell.notes == []


def test_a_value_a_family_does_not_take_is_said_in_the_cell_and_identical_requests_are_sent_once():
    cells = plan_cells(["a fox"], [parse_axis("model=wanx-v1,wanx2.1-t2i-turbo"), parse_axis("style=anime,sketch")],
                       {"n": 1, "seed": 5})  # fmt: skip
    v1, v2a, v2b = cells[(0, 0, 0)], cells[(0, 0, 1)], cells[(0, 1, 1)]
    assert v1.request.style == "<anime>" and v1.notes == [] and v1.shares is None
    assert v2a.request.style is None and v2a.notes == ["style <anime>: n/a for V2, not sent"]
    assert v2b.notes == ["style <sketch>: n/a for V2, not sent"]
    assert v2b.shares == v2a.key  # same effective request: paid once
    assert cells[(0, 1, 0)].shares is None  # wanx-v1 <sketch> is its own request


def test_sizes_are_fitted_per_model_by_the_registry_rule_and_the_note_says_so():
    # 512*512: wanx2.1-t2i-turbo takes it as given, so it is fitted for the other two (see test_grid_input
    # for a size none of the grid's models takes).
    cells = plan_cells(["a fox"], [parse_axis("model=wanx-v1,wan2.5-t2i-preview,wanx2.1-t2i-turbo"),
                                   parse_axis("size=1024*768,512*512")], {"n": 1, "seed": 5})  # fmt: skip
    assert cells[(0, 0, 0)].request.size == "1280*720" and cells[(0, 0, 0)].request.size in V1_SIZES
    assert cells[(0, 0, 0)].notes[0].startswith("size 1024*768 → 1280*720 (wanx-v1:")
    assert cells[(0, 1, 1)].request.size == "768*768"
    assert cells[(0, 0, 1)].notes == []  # wan2.5 takes 1024*768 as is


def test_fixed_values_apply_everywhere_and_an_axis_overrides_them():
    cells = plan_cells(["a fox"], [parse_axis("seed=1,2")], {**FIXED, "negative_prompt": "blurry"})
    assert [c.request.seed for c in cells.values()] == [1, 2]
    assert {c.request.negative_prompt for c in cells.values()} == {"blurry"}


def test_a_cell_that_breaks_its_model_rules_is_refused_naming_the_cell():
    with pytest.raises(ValidationError) as info:
        plan_cells(["a fox"], [parse_axis("n=1,9")], FIXED)
    assert "-n (x=n 9)=9" in str(info.value)
    with pytest.raises(ValidationError, match="each parameter on one axis only"):
        plan_cells(["a fox"], [parse_axis("seed=1"), parse_axis("seed=2")], FIXED)
    with pytest.raises(ValidationError, match=r"--size \(x=size 0\*0\)='0\*0'"):
        plan_cells(["a fox"], [parse_axis("size=0*0,1024*1024")], FIXED)  # never "adapted" into a size
    with pytest.raises(ValidationError, match="--x='style=bogus': one of <auto>, <photography>"):
        parse_axis("style=bogus")  # refused as typed, before any cell is planned
    with pytest.raises(ValidationError, match="--style='bogus'"):
        plan_cells(["a fox"], [parse_axis("seed=1,2")], {**FIXED, "style": "bogus"})  # even where not sent (V2)


def test_time_estimate_follows_concurrency_and_expected_durations():
    from wanx_nb._scheduler import estimate_seconds  # the estimate a grid plan shows

    v1 = [GenerationRequest("a", model="wanx-v1", seed=i) for i in range(4)]
    spec = get_model("wanx-v1")  # one task at a time
    assert estimate_seconds(v1) == pytest.approx(4 * spec.expected_seconds(False))
    plus = [GenerationRequest("a", model="wanx2.1-t2i-plus", seed=i) for i in range(2)]
    both = estimate_seconds(v1 + plus)
    assert both == estimate_seconds(v1)  # models run side by side: the slowest decides


# ---- a run over the emulator --------------------------------------------------------------------


def test_a_grid_run_fills_every_cell_labels_the_failed_one_and_counts_what_was_billed(session, emulator, tmp_path):
    built = grid(["a fox", "a fox EMU_BLOCK_INPUT"], x="model=wanx-v1,wanx2.1-t2i-turbo", y="style=anime,sketch",
                 session=session, display=False)  # fmt: skip
    # Z is the prompt (X and Y are taken); 2 x 2 x 2 cells, the V2 <sketch> cells repeat the <anime> ones.
    assert built.z.name == "prompt" and len(built.cells) == 8 and built.plan.requests == 6
    assert len(emulator.requests("create")) == 6 and built.done
    failed = [c for c in built.cells if c.error is not None]
    assert {c.key[0] for c in failed} == {1} and len(failed) == 4
    assert all(c.status_text() == "failed DataInspectionFailed" for c in failed)
    # Billed: wanx-v1 <anime> and <sketch>, and one V2 image (its <sketch> cell repeats <anime>).
    billed = 2 * get_model("wanx-v1").price_yuan + get_model("wanx2.1-t2i-turbo").price_yuan
    assert built.cost_yuan == pytest.approx(billed)
    shared = built.cell_at(0, 1, 1)
    assert shared.shares == (0, 0, 1) and shared.result is built.cell_at(0, 0, 1).result
    page = built.html()
    assert page.count("DataInspectionFailed") >= 4 and "style &lt;sketch&gt;: n/a for V2" in page

    manifest = built.manifest()
    assert len(manifest["cells"]) == 8 and manifest["cost_yuan"] == pytest.approx(built.cost_yuan)
    by_key = {(c["cell"]["z"], c["cell"]["y"], c["cell"]["x"]): c for c in manifest["cells"]}
    ok = by_key[(0, 0, 0)]
    assert ok["axes"] == {"model": "wanx-v1", "style": "<anime>", "prompt": "a fox"}
    assert ok["effective"]["style"] == "<anime>" and ok["task_id"] and ok["images"][0]["sha256"]
    assert by_key[(0, 1, 1)]["shares_request_of"] == [0, 0, 1] and by_key[(0, 1, 1)]["cost_yuan"] == 0.0
    assert by_key[(1, 0, 0)]["error"]["code"] == "DataInspectionFailed"


def test_dry_run_states_cells_cost_and_time_first_and_sends_nothing(session, emulator):
    built = grid("a fox", x="model=guide", y="seed=1,2,3", dry_run=True, session=session)
    assert emulator.request_log == []
    text = str(built.plan)
    assert text.startswith("4 x 3 = 12 cells, 12 images, estimated ¥") and "about" in text
    assert built.plan.yuan == pytest.approx(3 * (0.20 + 0.14 + 0.04 + 0.16))
    assert "dry run, nothing sent" in built.html()


# ---- the PNG -----------------------------------------------------------------------------------


def _ink(image, box):
    """Pixels in `box` that are not white (drawn text or lines)."""
    return sum(image.crop(box).convert("L").histogram()[:200])


def test_the_png_draws_the_axis_legend_and_chinese_prompts(session, tmp_path):
    built = grid(["一只狐狸在雪地里", "a fox"], x="seed=1,2", session=session, display=False)
    path = built.save(tmp_path / "g.png", cell_px=96)
    image = Image.open(io.BytesIO(path.read_bytes()))
    label_w = 240
    assert image.width == 2 * 16 + label_w + 2 * (96 + 8)
    assert _ink(image, (16, 46, image.width - 16, 90)) > 200  # the legend lines under the title
    assert _ink(image, (16, 150, 16 + label_w - 12, image.height - 16)) > 100  # the row labels (prompts)
    manifest = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert manifest["axes"]["y"]["values"] == ["一只狐狸在雪地里", "a fox"] and len(manifest["cells"]) == 4
    font = _grid_paint.find_cjk_font()
    if font is not None:  # this machine has one: the prompt is drawn, not replaced
        assert _grid_paint._Fonts(None).drawable("一只狐狸")


def test_without_a_cjk_font_the_png_says_so_instead_of_drawing_boxes(session, tmp_path):
    built = grid("一只狐狸 fox", x="seed=1,2", dry_run=True, session=session)
    # Pillow's own font has no Chinese glyphs, as on a fresh machine without a CJK font.
    from PIL import ImageFont

    painter = _grid_paint._Painter(built, 96, None, "g.json")
    fonts = painter.f
    fonts.title = fonts.label = fonts.small = ImageFont.load_default()
    fonts._cache.clear()
    fonts._missing = fonts._mask("\U0010fffd")
    assert not painter.f.drawable("狐狸") and painter.f.safe("一只狐狸 fox") == "… fox"
    legend = " ".join(line for line, _ in painter._legend())
    assert "No font with Chinese glyphs was found" in legend and "g.json" in legend
    assert painter.paint().size[0] == 2 * 16 + 2 * (96 + 8)


# ---- the shell ---------------------------------------------------------------------------------


def test_cli_grid_writes_the_png_and_the_manifest(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    out = tmp_path / "o" / "grid.png"
    code = main(["--store", str(tmp_path / "s"), "grid", "a fox", "--x", "seed=1,2", "--style", "anime",
                 "-m", "wanx-v1", "-o", str(out), "--cell-px", "64"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert out.exists() and json.loads(out.with_suffix(".json").read_text())["cells"][1]["effective"]["seed"] == 2
    assert "2 cells, 0 failed" in capsys.readouterr().out


def test_cli_grid_bad_axis_is_a_clean_error_before_sending(tmp_path, capsys):
    code = main(["--store", str(tmp_path / "s"), "grid", "a fox", "--x", "seed=1,two", "-o", str(tmp_path / "g.png")])
    err = capsys.readouterr().err
    assert code == 1 and "--x" in err and "--seed 'two' is not allowed" in err and "Traceback" not in err
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("argv", [["--cell-px", "5"], ["--cell-px", "x"], ["--z", "seed"], ["--x", "model=nope"]])
def test_cli_grid_bad_arguments_end_cleanly(tmp_path, capsys, argv):
    code = main(["--store", str(tmp_path / "s"), "grid", "a fox", "-o", str(tmp_path / "g.png"), *argv])
    err = capsys.readouterr().err
    assert code in (1, 2) and "Traceback" not in err and argv[0] in err
    assert not (tmp_path / "g.png").exists()
