"""The comparison grid: layout, shared seed, parameter adaptation, dry runs, failures, the saved PNG."""

import hashlib
import importlib
import io
import json
import signal
import threading
import time
from pathlib import Path

import pytest
from run_waits import blocked_in_a_runs_wait
from PIL import Image

from wanx_nb._exceptions import BudgetExceededError, ContentInspectionError, TaskCanceledError, ValidationError
from wanx_nb._models import GenerationResult
from wanx_nb._png import read_provenance, strip_provenance
from wanx_nb._registry import V1_SIZES
from wanx_nb._session import Session
from wanx_nb.comparison import (
    DEFAULT_SEED,
    GUIDE_MODELS,
    GUIDE_PROMPTS,
    CompareGrid,
    compare,
    grid,
)
from wanx_nb.emulator import Emulator, EmulatorSettings

# The module (the function is also `wanx_nb.compare`).
compare_module = importlib.import_module("wanx_nb.comparison")


# ---- plan, layout, seed ------------------------------------------------------------------------


def test_dry_run_lays_out_the_guide_grid_states_images_and_cost_and_sends_nothing(session, emulator):
    grid = compare(GUIDE_PROMPTS, dry_run=True, session=session)
    assert isinstance(grid, CompareGrid) and grid.dry_run
    assert grid.shape == (4, 4) and grid.models == GUIDE_MODELS and grid.prompts == GUIDE_PROMPTS
    assert emulator.request_log == []
    assert (grid.plan.images, grid.plan.yuan) == (16, pytest.approx(4 * (0.20 + 0.14 + 0.04 + 0.16)))
    text = grid._repr_mimebundle_()[0]["text/plain"]
    assert "16 images" in text and "¥2.16" in text and "dry run, nothing sent" in text
    assert f"seed {DEFAULT_SEED} in every cell (chosen for you" in text
    assert all(grid[i, m] is None for i in range(4) for m in GUIDE_MODELS)
    assert grid.cell(3, "wanx-v1").phase == "planned"


def test_every_cell_shares_one_seed(session):
    grid = compare(["a fox", "a cat"], n=2, dry_run=True, session=session)
    assert {c.request.seed for c in grid.cells} == {DEFAULT_SEED}
    assert {c.request.n for c in grid.cells} == {2}
    given = compare("a fox", seed=7, dry_run=True, session=session)
    assert {c.request.seed for c in given.cells} == {7}
    assert "seed 7 in every cell" in str(given.plan) and "chosen" not in str(given.plan)


def test_models_can_be_chosen_and_indexed_by_name_or_column(session):
    grid = compare("a fox", models=["wanx-v1", "wan2.1-t2i-turbo"], dry_run=True, session=session)
    assert grid.models == ("wanx-v1", "wanx2.1-t2i-turbo")  # international names resolve
    assert grid.cell(0, 1) is grid.cell(0, "wanx2.1-t2i-turbo") is grid.cell(0, "wan2.1-t2i-turbo")
    with pytest.raises(KeyError, match="not a column"):
        grid.cell(0, "wanx2.1-t2i-plus")


# ---- parameter adaptation ----------------------------------------------------------------------


def test_parameters_are_adapted_per_family_and_every_difference_is_noted(session, tmp_path):
    ref = tmp_path / "ref.png"
    Image.new("RGB", (32, 32), "green").save(ref)
    grid = compare(
        "a fox", size="1024*768", style="<anime>", prompt_extend=False, watermark=True, ref_img=str(ref),
        negative_prompt="blurry", dry_run=True, session=session,
    )
    v1 = grid.cell(0, "wanx-v1")
    assert (v1.request.size, v1.request.style, v1.request.ref_img) == ("1280*720", "<anime>", str(ref))
    assert v1.request.prompt_extend is None and v1.request.watermark is None
    assert v1.request.negative_prompt == "blurry"
    assert any(n.startswith("size 1024*768 → 1280*720") for n in v1.notes)
    assert "extend off: n/a for V1, not sent" in v1.notes
    assert "watermark on: n/a for V1, not sent" in v1.notes

    for m in ("wanx2.1-t2i-plus", "wanx2.1-t2i-turbo", "wanx2.0-t2i-turbo"):
        v2 = grid.cell(0, m)
        assert (v2.request.size, v2.request.prompt_extend, v2.request.watermark) == ("1024*768", False, True)
        assert v2.request.style is None and v2.request.ref_img is None
        assert v2.notes == ["style <anime>: n/a for V2, not sent", f"ref {ref}: n/a for V2, not sent"]

    summary = "\n".join(grid.notes)
    assert "size 1024*768 → 1280*720 (wanx-v1" in summary
    assert "wanx2.1-t2i-plus, wanx2.1-t2i-turbo, wanx2.0-t2i-turbo: style <anime>: n/a for V2, not sent" in summary
    bundle = grid._repr_mimebundle_()[0]
    assert "size 1024*768 → 1280*720" in bundle["text/html"] and "notes:" in bundle["text/plain"]


def test_no_note_when_nothing_changes(session):
    grid = compare("a fox", models=["wanx2.1-t2i-turbo", "wanx-v1"], size="1024*1024", negative_prompt="text",
                   prompt_extend=False, dry_run=True, session=session)
    assert grid.cell(0, "wanx2.1-t2i-turbo").notes == []
    assert grid.cell(0, "wanx-v1").notes == ["extend off: n/a for V1, not sent"]


@pytest.mark.parametrize(
    ("model", "size", "expected", "taker"),  # `taker`: a model of the grid that takes the size as given
    [
        ("wanx-v1", "1024*768", "1280*720", "wanx2.1-t2i-turbo"),  # landscape stays landscape
        ("wanx-v1", "768*1024", "768*1152", "wanx2.1-t2i-turbo"),  # closest portrait ratio
        ("wanx-v1", "512*512", "1024*1024", "wanx2.1-t2i-turbo"),
        ("wanx-v1", "720*1280", "720*1280", "wanx2.1-t2i-turbo"),
        ("wanx2.1-t2i-plus", "2048*1024", "1440*720", "wan2.7-image-pro"),  # scaled into 512-1440, ratio kept
        ("wanx2.1-t2i-plus", "1024*768", "1024*768", "wanx2.1-t2i-turbo"),
        ("wan2.5-t2i-preview", "512*512", "768*768", "wanx2.1-t2i-turbo"),  # area rule
    ],
)
def test_sizes_become_the_nearest_the_model_takes(model, size, expected, taker, session):
    cell = compare("a fox", models=[model, taker], size=size, dry_run=True, session=session).cell(0, model)
    assert cell.request.size == expected
    assert any(n.startswith(f"size {size} → {expected}") for n in cell.notes) == (size != expected)
    if model == "wanx-v1":
        assert expected in V1_SIZES


def test_a_size_no_model_of_the_grid_takes_is_refused_not_fitted(session, emulator):
    with pytest.raises(ValidationError, match=r"400\*400"):
        compare("a fox", models=["wanx2.1-t2i-plus"], size="400*400", dry_run=True, session=session)
    assert emulator.request_log == []


def test_requests_that_break_the_rules_are_refused_before_sending(session, emulator):
    with pytest.raises(ValidationError) as info:
        compare("a fox", n=5, session=session)
    assert "-n (x=wanx-v1, y=a fox)=5: an integer from 1 to 4" in str(info.value)
    with pytest.raises(ValidationError, match="models='wanx2.1-t2i-plsu': unknown model .* did you mean"):
        compare("a fox", models=["wanx2.1-t2i-plsu"], session=session)  # the argument the caller passed
    with pytest.raises(TypeError, match="colour"):
        compare("a fox", colour="red", session=session)
    assert emulator.request_log == []


def test_budget_is_checked_before_sending(tmp_path, emulator):
    session = Session(store=tmp_path / "store", emulator=emulator, budget_yuan=0.5)
    with pytest.raises(BudgetExceededError):
        compare(GUIDE_PROMPTS[:2], session=session)
    assert emulator.request_log == []
    plan = compare(GUIDE_PROMPTS[:2], session=session, dry_run=True).plan
    assert "over budget" in str(plan)


def test_on_plan_sees_the_plan_once_before_anything_is_sent(tmp_path, emulator):
    session = Session(store=tmp_path / "store", emulator=emulator, budget_yuan=0.5)
    seen = []

    def on_plan(planned):
        seen.append((str(planned.plan), len(emulator.request_log)))

    made = grid("a fox", x="seed=1,2", session=session, display=False, on_plan=on_plan)
    assert seen == [(str(made.plan), 0)] and len(emulator.requests("create")) == 2
    seen.clear()
    with pytest.raises(BudgetExceededError):  # stated, then refused: the caller can say why
        grid("a fox", x="model=all", session=session, display=False, on_plan=on_plan)
    assert len(seen) == 1 and "over budget" in seen[0][0] and len(emulator.requests("create")) == 2


# ---- running -----------------------------------------------------------------------------------


def test_cells_run_concurrently_and_fill_the_grid(tmp_path):
    emulator = Emulator(EmulatorSettings(time_scale=0.02))
    session = Session(store=tmp_path / "store", emulator=emulator)
    grid = compare(["a fox", "a cat"], session=session, display=False)
    assert grid.done and len(emulator.requests("create")) == 8
    for (i, m), outcome in grid.results.items():
        assert isinstance(outcome, GenerationResult) and outcome.model == m
        assert outcome.request.prompt == ["a fox", "a cat"][i]
        assert [im.seed for im in outcome.images] == [DEFAULT_SEED]
    assert grid[1, "wanx-v1"] is grid[1, 3] is grid.cell(1, "wanx-v1").result
    assert grid.cost_yuan == pytest.approx(2 * 0.54)
    # Different models run side by side (each within its own concurrency limit).
    spans = sorted((t.start_time, t.end_time) for t in emulator.tasks.values())
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:]))
    v1 = sorted((t.start_time, t.end_time) for t in emulator.tasks.values() if t.model == "wanx-v1")
    assert all(b[0] >= a[1] for a, b in zip(v1, v1[1:]))  # wanx-v1 allows one at a time


def test_a_refused_prompt_fails_its_row_as_tiles_and_the_rest_completes(session):
    grid = compare(["a fox", "a cat EMU_BLOCK_INPUT"], session=session, display=False)
    assert all(isinstance(grid[0, m], GenerationResult) for m in GUIDE_MODELS)
    assert all(isinstance(grid[1, m], ContentInspectionError) for m in GUIDE_MODELS)
    data, meta = grid._repr_mimebundle_()
    assert data["text/plain"].count("failed DataInspectionFailed") == 4
    assert data["text/html"].count('class="wanx-tile wanx-failed"') == 4 and data["text/html"].count("<img ") == 4
    assert "done: 4 images, 4 failed cells" in data["text/plain"]
    assert len(meta["wanx_nb"]["compare"]["cells"]) == 8


def test_text_plain_is_deterministic_without_ids_or_times(tmp_path):
    texts = []
    for k in range(2):
        emulator = Emulator(EmulatorSettings(time_scale=0.001, seed=k))
        session = Session(store=tmp_path / f"store{k}", emulator=emulator)
        grid = compare(["a fox"], models=["wanx2.0-t2i-turbo", "wanx-v1"], session=session, display=False)
        texts.append(grid._repr_mimebundle_()[0]["text/plain"])
        assert grid[0, 0].task_id not in texts[-1]
    assert texts[0] == texts[1]
    assert "wanx2.0-t2i-turbo" in texts[0] and "ok 1/1" in texts[0]


def test_html_has_model_and_price_headers_and_prompt_row_headers(session):
    long_prompt = "a very long prompt about a fox in the snow at dawn with mountains behind it"
    grid = compare([long_prompt], models=["wanx2.1-t2i-plus", "wanx-v1"], seed=3, session=session, display=False)
    page = grid._repr_mimebundle_()[0]["text/html"]
    assert "wanx2.1-t2i-plus<br><span" in page and "¥0.20/image · V2</span>" in page
    assert "wanx-v1<br><span" in page and "¥0.16/image · V1</span>" in page
    assert f'title="{long_prompt}"' in page and "a very long prompt about a fox in the snow at dawn with…</span>" in page
    # Each cell's seed, kept on one line however narrow its column ("2025010" over "8" reads as two seeds).
    assert page.count('seed <span style="white-space:nowrap">3</span> ·') == 2


def test_the_plan_is_stated_first_and_the_live_view_ends_blank_for_the_returned_grid(session, monkeypatch):
    import IPython.display

    class Handle:
        def __init__(self):
            self.updates = []

        def update(self, data, metadata=None, raw=False):
            assert raw
            self.updates.append(data["text/plain"])

    handle, shown = Handle(), []

    def display(data, raw=False, display_id=False, **kwargs):
        shown.append(data["text/plain"])
        return handle if display_id else None

    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.setattr(compare_module, "_REFRESH_SECONDS", 0.0)
    session.store  # the session exists before the run starts
    grid = compare(["a fox"], models=["wanx-v1"], session=session, display=True)
    # The plan comes first, before anything is sent; then an empty live view.
    assert "1 image, estimated ¥0.16" in shown[0] and shown[1] == ""
    # The live view ends blank: the returned grid (the cell's result) shows the final state, so the
    # saved outputs do not depend on timing.
    assert handle.updates[-1] == ""
    assert "ok 1/1" in grid._repr_mimebundle_()[0]["text/plain"]


# ---- save --------------------------------------------------------------------------------------


def test_save_writes_one_labelled_png_and_a_manifest(session, tmp_path):
    prompts = [GUIDE_PROMPTS[0], "a red fox EMU_BLOCK_INPUT"]
    grid = compare(prompts, models=["wanx2.1-t2i-turbo", "wanx-v1"], size="1024*768", session=session, display=False)
    png_path = grid.save(tmp_path / "out" / "grid.png", cell_px=128)
    manifest_path = tmp_path / "out" / "grid.json"
    assert png_path == tmp_path / "out" / "grid.png" and manifest_path.exists()

    png = png_path.read_bytes()
    image = Image.open(io.BytesIO(png))
    margin, label_w, gap = 16, 240, 8  # a prompt row label is 240 px wide
    assert image.width == 2 * margin + label_w + 2 * (128 + gap)
    assert 2 * 128 < image.height < 2 * 128 + 600  # rows of bounded cells plus title and legend
    assert read_provenance(png)["manifest"] == "grid.json"

    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    assert manifest["prompts"] == prompts and manifest["seed"] == DEFAULT_SEED
    assert manifest["axes"]["x"]["values"] == ["wanx2.1-t2i-turbo", "wanx-v1"]
    assert manifest["axes"]["y"]["values"] == prompts
    assert manifest["image_sha256"] == hashlib.sha256(png).hexdigest()
    assert manifest["cost_yuan"] == pytest.approx(0.30)
    cells = {(c["cell"]["y"], c["model"]): c for c in manifest["cells"]}
    ok = cells[(0, "wanx-v1")]
    assert ok["effective"]["size"] == "1280*720" and ok["effective"]["seed"] == DEFAULT_SEED
    assert ok["notes"][0].startswith("size 1024*768 → 1280*720")
    assert ok["task_id"] == grid[0, "wanx-v1"].task_id and ok["cost_yuan"] == pytest.approx(0.16)
    (im,) = ok["images"]
    assert read_provenance(Path(im["path"]).read_bytes())["images"][0]["seed"] == DEFAULT_SEED
    assert hashlib.sha256(strip_provenance(Path(im["path"]).read_bytes())).hexdigest() == im["sha256"]
    assert im["sha256"] == grid[0, "wanx-v1"].images[0].sha256 and im["seed"] == DEFAULT_SEED
    failed = cells[(1, "wanx2.1-t2i-turbo")]
    assert failed["error"]["code"] == "DataInspectionFailed" and failed["images"] == [] and failed["cost_yuan"] == 0


def test_an_interrupt_cancels_what_is_pending_and_returns_the_partial_grid(tmp_path):
    # The service's clock stands still: every task waits PENDING until canceled.
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=0.001, pending_seconds=1e9, query_qps=None))
    session = Session(store=tmp_path / "store", emulator=emulator)
    main = threading.main_thread().ident

    def interrupt_when_pending() -> None:  # what a kernel interrupt does to the blocked cell
        # Both tasks exist (PENDING for ever) and compare() waits in Run.result(): it stays there until
        # interrupted, so the signal lands in the wait whatever the machine's speed.
        deadline = time.monotonic() + 30  # a watchdog only: on a broken run the test fails, not hangs
        while not (len(emulator.tasks) == 2 and blocked_in_a_runs_wait(main)) and time.monotonic() < deadline:
            time.sleep(0.01)
        signal.pthread_kill(main, signal.SIGINT)

    # Ctrl-C raises KeyboardInterrupt, as in a kernel: a suite started in the background by a
    # non-interactive shell inherits SIGINT ignored, and the signal would never arrive.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = threading.Thread(target=interrupt_when_pending, daemon=True)
    watcher.start()
    try:
        grid = compare(["a fox"], models=["wanx2.0-t2i-turbo", "wanx-v1"], session=session, display=False)
    finally:
        watcher.join(60)  # it has sent its one signal: none can reach a later test
        signal.signal(signal.SIGINT, previous)
    assert grid.interrupted.startswith("2 request(s)") and "canceled PENDING" in grid.interrupted
    assert {t.status_at(emulator.now()) for t in emulator.tasks.values()} == {"CANCELED"}
    assert all(isinstance(grid[0, m], TaskCanceledError) for m in (0, 1))
    assert "interrupted: 2 request(s)" in grid.text()

