"""%%wanx and %wanx in a real InteractiveShell, against the in-process emulator."""

import os
import re
import threading
import types

import pytest
from PIL import Image
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from wanx_nb import rendering
from wanx_nb._models import GenerationResult
from wanx_nb._request import GenerationRequest
from wanx_nb._session import Session, get_session, set_session
from wanx_nb.emulator import Emulator, EmulatorSettings
from wanx_nb.magics import WanxMagics


@pytest.fixture
def emulator():
    return Emulator(EmulatorSettings(time_scale=0.001))


@pytest.fixture
def session(tmp_path, emulator):
    s = Session(store=tmp_path / "store", emulator=emulator)
    set_session(s)
    yield s
    set_session(None)


@pytest.fixture
def shell(wanx_shell, session):  # output_dir "wanx_output" lands in the test's folder
    saved_preview = rendering.options.preview_px
    yield wanx_shell
    rendering.options.preview_px = saved_preview


def magics(ip):
    return ip.magics_manager.registry["WanxMagics"]


@pytest.fixture
def captured(shell, monkeypatch):
    """Patch the run handler (as jupyter-ai's tests do): record what would be sent."""
    calls = []

    def fake(self, args, request):
        calls.append((args, request))
        return "sent"

    monkeypatch.setattr(WanxMagics, "handle_generate", fake)
    return calls


def cell(ip, line, body="a red fox in snow"):
    return ip.run_cell_magic("wanx", line, body)


# ---- parsing into the request ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, expected",
    [
        ("", dict(model="wanx2.1-t2i-turbo", n=1, size=None, seed=None)),
        ("-m wanx2.1-t2i-plus", dict(model="wanx2.1-t2i-plus")),
        ("--model wanx2.0-t2i-turbo", dict(model="wanx2.0-t2i-turbo")),
        ("-n 3", dict(n=3)),
        ("--size 1280x720", dict(size="1280*720")),
        ("--size 1280*720", dict(size="1280*720")),
        ("--seed 42", dict(seed=42)),
        ('--negative "blurry, low quality"', dict(negative_prompt="blurry, low quality")),
        ("--negative '模糊，低质量'", dict(negative_prompt="模糊，低质量")),
        ("--extend", dict(prompt_extend=True)),
        ("--no-extend", dict(prompt_extend=False)),
        ("--watermark", dict(watermark=True)),
        ("--no-watermark", dict(watermark=False)),
        ("-m wanx-v1 --style anime", dict(model="wanx-v1", style="<anime>")),
        ("-m wanx-v1 --style '3d cartoon'", dict(style="<3d cartoon>")),
        ("-m wanx-v1 --style '<oil painting>'", dict(style="<oil painting>")),
        (
            "-m wanx-v1 --ref https://example.com/ref.png --ref-strength 0.3 --ref-mode refonly",
            dict(ref_img="https://example.com/ref.png", ref_strength=0.3, ref_mode="refonly"),
        ),
    ],
)
def test_every_option_lands_in_the_request(captured, shell, line, expected):
    assert cell(shell, line) == "sent"
    (args, request), = captured
    assert isinstance(request, GenerationRequest) and request.prompt == "a red fox in snow"
    for field, value in expected.items():
        assert getattr(request, field) == value, field


def test_local_reference_image_path(captured, shell, tmp_path):
    ref = tmp_path / "sketch.png"
    Image.new("RGB", (512, 512), "white").save(ref)
    cell(shell, f"-m wanx-v1 --ref {ref}")
    assert captured[0][1].ref_img == str(ref)
    ref.write_bytes(b"\x89PNG\r\n\x1a\n")  # a PNG signature and nothing more: refused before the upload
    with pytest.raises(UsageError, match=re.escape(f"--ref='{ref}': a JPEG, PNG, BMP, TIFF or WebP image")):
        cell(shell, f"-m wanx-v1 --ref {ref}")


def test_flags_reach_the_run_handler(captured, shell):
    cell(shell, "--reproducible -o fox --no-display")
    args = captured[0][0]
    assert args.reproducible and args.output == "fox" and args.no_display


def test_the_whole_multiline_body_is_one_stripped_prompt(captured, shell):
    cell(shell, "", "\n  a red fox\nin fresh snow  \n\n")
    assert captured[0][1].prompt == "a red fox\nin fresh snow"


@pytest.mark.parametrize(
    "line, words",
    [
        ("-n two", "argument -n: 'two' is not allowed; use a whole number"),
        ("--bogus", "unrecognized arguments: --bogus"),
        ("turbo", "unrecognized arguments: turbo"),
        ('--negative "unclosed', "No closing quotation"),
        ("--seed", "expected one argument"),
        ("-o 3x", "variable name"),
        ("--api-key sk-abc", "unrecognized arguments"),
    ],
)
def test_bad_options_are_usage_errors_with_the_usage_text(captured, shell, line, words):
    with pytest.raises(UsageError) as info:
        cell(shell, line)
    assert words in str(info.value)
    assert "usage:" in str(info.value) and "%%wanx [-m MODEL]" in str(info.value)
    assert captured == []


def test_help_names_the_key_variable_and_the_cheap_default_n(shell):
    text = " ".join(repr(cell(shell, "--help")).split())
    assert "DASHSCOPE_API_KEY" in text and "--api-key" not in text
    assert "WanxMagics.default_n = 1; the API itself would make 4" in text
    assert "--compare" in text and "--dry-run" in text
    assert "DASHSCOPE_API_KEY" in (WanxMagics.wanx_cell.__doc__ or "")


def test_validation_lists_every_problem_before_anything_is_sent(captured, shell, emulator):
    with pytest.raises(UsageError) as info:
        cell(shell, "-m wanx-v1 --size 999x999 --watermark -n 7")
    message = str(info.value)
    assert "3 problems" in message
    assert "size='999*999'" in message and "watermark" in message and "n=7" in message
    assert captured == [] and emulator.request_log == []


def test_unknown_model_suggests_a_close_name(captured, shell):
    with pytest.raises(UsageError, match="wanx2.1-t2i-turbo"):
        cell(shell, "-m wanx2.1-t2i-trubo")


def test_empty_cell_is_a_usage_error(captured, shell):
    with pytest.raises(UsageError, match="prompt"):
        cell(shell, "", "   \n ")


# ---- {name} interpolation -----------------------------------------------------------------------


def test_names_and_attributes_are_filled_from_the_namespace(captured, shell):
    shell.user_ns["animal"] = "fox"
    shell.user_ns["scene"] = types.SimpleNamespace(place="a pine forest", light=types.SimpleNamespace(kind="dawn"))
    cell(shell, "", "a red {animal} in {scene.place} at {scene.light.kind}, {{literal}} {not a field}")
    assert captured[0][1].prompt == "a red fox in a pine forest at dawn, {literal} {not a field}"


@pytest.mark.parametrize("field", ["{mood!r}", "{mood:>10}", "{items[0]}", "{table[k]}", "{nomood!s}"])
def test_a_format_field_beyond_a_name_is_refused_not_sent_as_written(captured, shell, field):
    shell.user_ns.update(mood="dark", items=["a"], table={"k": "v"})
    with pytest.raises(UsageError, match=r"only \{name\} and \{obj.attr\} are filled") as refused:
        cell(shell, "", f"a {field} fox")
    assert field in str(refused.value) and captured == []
    cell(shell, "", "a {{mood!r}} fox, {style: watercolor}")  # escaped, and braces around plain words, stay
    assert captured[0][1].prompt == "a {mood!r} fox, {style: watercolor}"


def test_an_undefined_name_is_a_usage_error_naming_it(captured, shell):
    with pytest.raises(UsageError, match="'colour' is not defined"):
        cell(shell, "", "a {colour} fox")
    shell.user_ns["animal"] = "fox"
    with pytest.raises(UsageError, match="has no attribute 'tail'"):
        cell(shell, "", "a {animal.tail}")
    assert captured == []


# ---- settings -----------------------------------------------------------------------------------


def test_config_defaults_take_effect(captured, shell):
    shell.run_line_magic("config", "WanxMagics.default_model = 'wanx2.1-t2i-plus'")
    shell.run_line_magic("config", "WanxMagics.default_n = 2")
    shell.run_line_magic("config", "WanxMagics.default_size = '1280x720'")
    cell(shell, "")
    request = captured[0][1]
    assert (request.model, request.n, request.size) == ("wanx2.1-t2i-plus", 2, "1280*720")
    cell(shell, "-m wanx-v1 -n 1 --size 720*1280")
    assert (captured[1][1].model, captured[1][1].n, captured[1][1].size) == ("wanx-v1", 1, "720*1280")


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("default_n = 9", "WanxMagics.default_n=9: a whole number from 1 to 6"),
        ("default_model = 'wanx-v9'", "WanxMagics.default_model='wanx-v9': unknown model 'wanx-v9'; did you mean"),
        ("default_size = 'big'", "WanxMagics.default_size='big': W*H in whole pixels"),
        ("preview_px = -5", "WanxMagics.preview_px=-5: a whole number of pixels from 16 to 4096"),
        ("budget_yuan = -3", "WanxMagics.budget_yuan=-3.0: a number of at least 0 (0: no budget)"),
        ("wait_timeout = -1", "WanxMagics.wait_timeout=-1.0: a number of at least 0 (0: no limit)"),
    ],
)
def test_a_bad_setting_is_refused_where_it_is_set(shell, setting, words, caplog):
    # Not later, blamed on an option the cell never typed, or inside the display of a paid image.
    name = setting.split()[0]
    before = getattr(magics(shell), name)
    outcome = shell.run_cell(f"%config WanxMagics.{setting}")
    assert words in caplog.text and "Traceback" not in caplog.text and outcome.error_in_exec is None
    assert getattr(magics(shell), name) == before


def test_a_default_the_model_does_not_take_is_blamed_on_its_setting(captured, shell):
    shell.run_line_magic("config", "WanxMagics.default_n = 6")  # some 2026 models make 6
    shell.run_line_magic("config", "WanxMagics.default_size = '1440x1440'")  # a V2 size
    with pytest.raises(UsageError) as info:
        cell(shell, "-m wanx-v1")
    assert "  - %config WanxMagics.default_n=6: an integer from 1 to 4" in str(info.value)
    assert "  - %config WanxMagics.default_size='1440*1440': wanx-v1 supports only" in str(info.value)
    with pytest.raises(UsageError, match=re.escape("  - -n=6: an integer from 1 to 4")):
        cell(shell, "-m wanx-v1 -n 6 --size 1024*1024")
    with pytest.raises(UsageError) as info:  # what a model takes is still listed as options
        cell(shell, "-m wanx2.1-t2i-turbo --style anime")
    assert "It takes: the prompt, --negative, --size, -n, --seed, --extend, --watermark" in str(info.value)
    assert captured == []


def test_config_pushes_budget_mode_store_and_preview_to_the_session(shell, session, tmp_path):
    shell.run_line_magic("config", "WanxMagics.budget_yuan = 0.2")
    shell.run_line_magic("config", "WanxMagics.store_dir = %r" % str(tmp_path / "other"))
    shell.run_line_magic("config", "WanxMagics.preview_px = 200")
    text = repr(shell.run_line_magic("wanx", "config"))
    assert session.budget_yuan == 0.2 and str(session.store.root) == str(tmp_path / "other")
    assert rendering.options.preview_px == 200
    assert re.search(r"WanxMagics.budget_yuan +0.2\n", text) and re.search(r"session.budget +¥0.20\n", text)
    shell.run_line_magic("config", "WanxMagics.mode = 'replay'")
    shell.run_line_magic("wanx", "config")
    assert session.mode == "replay"


def test_budget_refuses_a_run_before_anything_is_sent(shell, emulator):
    shell.run_line_magic("config", "WanxMagics.budget_yuan = 0.3")
    with pytest.raises(UsageError, match="budget"):
        cell(shell, "-m wanx2.1-t2i-plus -n 2")  # ¥0.40
    assert emulator.request_log == []


def test_replay_miss_is_a_clean_error(shell, emulator):
    shell.run_line_magic("config", "WanxMagics.mode = 'replay'")
    with pytest.raises(UsageError, match="replay mode has no recording"):
        cell(shell, "--seed 1")
    assert emulator.request_log == []


# ---- dry run ------------------------------------------------------------------------------------


def test_dry_run_shows_the_estimate_and_sends_nothing(shell, session, emulator):
    shell.user_ns["animal"] = "fox"
    shown = cell(shell, "--dry-run -m wanx2.1-t2i-plus -n 3 --seed 5 -o req", "a {animal} in snow")
    data, metadata = shown._repr_mimebundle_()
    assert data["text/plain"].startswith("dry run: nothing was sent.")
    assert "wanx2.1-t2i-plus: 3 image(s) of 1024*1024, seed 5" in data["text/plain"]
    assert "\n  prompt: 'a fox in snow'\n" in data["text/plain"]  # as it would be sent
    assert "estimated cost: ¥0.60 (¥0.20 per image" in data["text/plain"]
    assert "&quot;seed&quot;: 5" in data["text/html"]  # the body that would be sent
    assert metadata["wanx_nb"]["estimate_yuan"] == pytest.approx(0.6)
    assert shell.user_ns["req"].n == 3
    assert emulator.request_log == [] and session.store.history() == []


# ---- %wanx subcommands --------------------------------------------------------------------------


def test_models_lists_the_guide_models_with_prices_and_the_backend(shell, monkeypatch):
    data, _ = shell.run_line_magic("wanx", "models")._repr_mimebundle_()
    for name, price in [("wanx2.1-t2i-plus", "0.20"), ("wanx2.1-t2i-turbo", "0.14"),
                        ("wanx2.0-t2i-turbo", "0.04"), ("wanx-v1", "0.16")]:
        row = next(line for line in data["text/plain"].splitlines() if line.startswith(name + " "))
        assert price in row
        assert f"<td>{name}</td>" in data["text/html"]
    assert "backend: emulator" in data["text/plain"]
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-verysecret_0123_456789")
    data, metadata = shell.run_line_magic("wanx", "models")._repr_mimebundle_()
    assert "DASHSCOPE_API_KEY is set" in data["text/plain"]
    assert "verysecret" not in repr((data, metadata))


def test_unknown_subcommand_suggests_the_right_one(shell):
    with pytest.raises(UsageError, match="Did you mean 'models'"):
        shell.run_line_magic("wanx", "modles")
    assert "history" in repr(shell.run_line_magic("wanx", ""))


def test_panel_subcommand_returns_the_panel(shell):
    panel = shell.run_line_magic("wanx", "panel")
    assert type(panel).__name__ == "Panel"


# ---- end to end against the emulator --------------------------------------------------------------


def test_end_to_end_result_files_and_display(shell, session, tmp_path):
    shell.user_ns["animal"] = "fox"
    result = cell(shell, "-n 2 --seed 7 -o res", "a red {animal} in snow")
    assert isinstance(result, GenerationResult) and shell.user_ns["res"] is result
    assert result.backend == "emulator" and result.request.prompt == "a red fox in snow"
    assert [im.seed for im in result.images] == [7, 8]
    for im in result.images:
        assert os.path.exists(im.path)  # in the store
    exported = sorted(os.listdir(tmp_path / "wanx_output"))
    assert exported == [f"wanx2.1-t2i-turbo_{im.seed}_{im.sha256[:8]}.png" for im in result.images]
    data, metadata = result._repr_mimebundle_()
    assert data["text/plain"] == "<wanx wanx2.1-t2i-turbo: 2/2 images 1024*1024 seeds 7-8 ¥0.28 [emulator]>"
    assert result.task_id not in data["text/plain"]
    assert f"wanx_output/{exported[0]}" in data["text/html"]
    assert "emulator: not the real service" in data["text/html"]
    assert metadata["wanx_nb"]["task_id"] == result.task_id

    # The same run again: the same bytes keep the same names (nothing piles up).
    cell(shell, "-n 2 --seed 7", "a red {animal} in snow")
    assert sorted(os.listdir(tmp_path / "wanx_output")) == exported

    history = shell.run_line_magic("wanx", "history --text fox --limit 5")
    hdata, _ = history._repr_mimebundle_()
    assert "a red fox in snow" in hdata["text/plain"] and "<img src=\"data:image/" in hdata["text/html"]
    shown = shell.run_line_magic("wanx", f"show {result.task_id}")
    assert shown.task_id == result.task_id and len(shown.succeeded) == 2
    cost = repr(shell.run_line_magic("wanx", "cost"))
    assert re.search(r"this session +¥0.56\n", cost) and "¥0.56 for 4 image(s)" in cost


def test_no_display_still_binds_the_name(shell):
    assert cell(shell, "--no-display -o fox --seed 3") is None
    assert isinstance(shell.user_ns["fox"], GenerationResult)


def test_a_failed_task_is_shown_as_an_error_with_a_next_step(shell):
    shown = cell(shell, "-o res", "EMU_BLOCK_INPUT a fox")
    data, metadata = shown._repr_mimebundle_()
    assert "DataInspectionFailed" in data["text/plain"] and "rephrase the prompt" in data["text/plain"]
    assert metadata["wanx_nb"]["code"] == "DataInspectionFailed"
    assert isinstance(shell.user_ns["res"], Exception)


def test_a_partial_failure_keeps_the_good_image_and_labels_the_bad_one(shell):
    result = cell(shell, "-n 2 --seed 11", "EMU_PARTIAL_FAILURE a fox")
    data, _ = result._repr_mimebundle_()
    assert data["text/plain"].startswith("<wanx wanx2.1-t2i-turbo: 1/2 images")
    assert "InternalError.Timeout" in data["text/html"] and "retry this seed" in data["text/html"]


def test_show_and_history_errors_are_usage_errors(shell):
    with pytest.raises(UsageError, match="no saved result"):
        shell.run_line_magic("wanx", "show no-such-task")
    with pytest.raises(UsageError, match="TASK_ID"):
        shell.run_line_magic("wanx", "show")
    with pytest.raises(UsageError, match="ISO 8601"):
        shell.run_line_magic("wanx", "history --since yesterday")
    with pytest.raises(UsageError, match="usage:"):
        shell.run_line_magic("wanx", "history --limit many")


def test_resume_with_nothing_left_says_so(shell):
    assert "nothing to resume" in repr(shell.run_line_magic("wanx", "resume"))


def test_live_status_is_shown_then_replaced(tmp_path, shell, monkeypatch):
    from wanx_nb._progress import LiveStatus

    # The task ends only when the service's fake clock moves, and that happens only once the status
    # showing it running has been drawn: no race with how fast the machine is.
    session, slow = slow_session(tmp_path, pending_seconds=0.0)
    shell.run_line_magic("config", "WanxMagics.live_status = 'on'")
    original = LiveStatus.tick

    def tick(self):
        original(self)
        if any(row.phase in ("pending", "running") for row in self.rows()):
            slow.advance(1)  # a wanx2.1-t2i-turbo task here takes milliseconds; the wait times out at 600 s

    monkeypatch.setattr(LiveStatus, "tick", tick)
    # Should the status never be drawn, this ends the cell (at its 600 s wait timeout) instead of hanging.
    watchdog = threading.Timer(60, lambda: slow.advance(3600))
    watchdog.start()
    try:
        with capture_output() as captured:
            result = cell(shell, "--seed 4")
    finally:
        watchdog.cancel()
    assert isinstance(result, GenerationResult)
    texts = [o.data.get("text/plain", "") for o in captured.outputs]
    assert any("wanx2.1-t2i-turbo:" in t for t in texts[:-1])  # the status while it ran
    assert texts[-1] == ""  # blanked at the end: the returned result takes its place


def test_terminal_ipython_prints_the_text_summary(shell, capsys):
    shell.run_cell("%%wanx --seed 21 -o res\na red fox", store_history=False)
    out = capsys.readouterr().out
    assert "<wanx wanx2.1-t2i-turbo: 1/1 images 1024*1024 seed 21 ¥0.14 [emulator]>" in out


class FakeClockDriver:
    """Moves a fake-clock emulator's time forward in small steps from a thread, until stopped."""

    def __init__(self, emulator: Emulator, step: float = 0.1) -> None:
        import threading

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drive, args=(emulator, step), daemon=True)

    def _drive(self, emulator: Emulator, step: float) -> None:
        while not self._stop.wait(0.005):
            emulator.advance(step)

    def __enter__(self) -> "FakeClockDriver":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def slow_session(tmp_path, pending_seconds: float = 1e9) -> tuple[Session, Emulator]:
    """Tasks that wait PENDING for ever, on a fake clock that the run's deadline is measured on too."""
    slow = Emulator(EmulatorSettings(clock="fake", time_scale=0.001, pending_seconds=pending_seconds, query_qps=None))
    session = Session(store=tmp_path / "slow", emulator=slow, clock=slow.now)
    set_session(session)
    return session, slow


def test_wait_timeout_ends_the_cell_and_cancels_pending_tasks(tmp_path, shell):
    session, slow = slow_session(tmp_path)
    shell.run_line_magic("config", "WanxMagics.wait_timeout = 0.5")
    with FakeClockDriver(slow):
        shown = cell(shell, "-o res")
    text = repr(shown)
    assert "stopped waiting after 0.5 s" in text and "canceled PENDING" in text
    (task,) = slow.tasks.values()
    assert task.status_at(slow.now()) == "CANCELED"
    assert "resume" not in text  # nothing is left to recover: the only task was canceled, unbilled
    assert shell.user_ns["res"].code == "RunTimeout"


def test_keyboard_interrupt_shows_a_card_and_no_traceback(tmp_path, shell, monkeypatch):
    from wanx_nb._progress import LiveStatus

    session, slow = slow_session(tmp_path)
    shell.run_line_magic("config", "WanxMagics.live_status = 'on'")
    original = LiveStatus.tick

    def tick(self):
        original(self)
        if any(row.phase == "pending" for row in self.rows()):
            raise KeyboardInterrupt  # what a kernel interrupt does to the blocked cell

    monkeypatch.setattr(LiveStatus, "tick", tick)
    with capture_output() as captured:
        outcome = shell.run_cell("%%wanx --seed 2\na red fox")
    assert isinstance(outcome.error_in_exec, KeyboardInterrupt)  # the cell stops: "run all" goes no further
    printed = captured.stdout + captured.stderr
    assert "canceled PENDING" in printed and "Traceback" not in printed and "magics.py" not in printed
    (task,) = slow.tasks.values()
    assert task.status_at(slow.now()) == "CANCELED"


def test_compare_passes_the_prompt_models_and_params_to_the_real_grid(shell, emulator):
    shell.user_ns["animal"] = "fox"
    grid = cell(shell, "--compare wanx2.1-t2i-plus wanx-v1 -n 2 --seed 9 --size 1024x1024 -o grid", "a {animal}")
    assert shell.user_ns["grid"] is grid
    assert grid.prompts == ("a fox",) and grid.models == ("wanx2.1-t2i-plus", "wanx-v1") and not grid.dry_run
    assert grid.n == 2 and grid.seed == 9 and grid.fixed["size"] == "1024*1024"  # the magic reads sizes in canonical form
    sent = {c.json["model"]: c.json for c in emulator.requests("create")}
    assert set(sent) == {"wanx2.1-t2i-plus", "wanx-v1"}
    assert sent["wanx2.1-t2i-plus"]["input"]["prompt"] == "a fox"
    assert sent["wanx2.1-t2i-plus"]["parameters"] == {**sent["wanx2.1-t2i-plus"]["parameters"], "n": 2, "seed": 9,
                                                      "size": "1024*1024"}
    assert sent["wanx-v1"]["parameters"]["seed"] == 9 and sent["wanx-v1"]["parameters"]["n"] == 2
    creates = len(emulator.requests("create"))

    plan = cell(shell, "--compare --dry-run --negative blurry")
    assert plan.dry_run and len(plan.models) == 4 and plan.n == 1  # the guide's four models
    assert plan.fixed["negative_prompt"] == "blurry"
    assert len(emulator.requests("create")) == creates  # a dry run sends nothing
    plan = cell(shell, "--compare wanx2.1-t2i-plus --reproducible --dry-run")
    assert plan.fixed.get("prompt_extend") is False  # --reproducible means "no prompt rewriting" in a grid
    plan = cell(shell, "--compare wanx2.1-t2i-plus,wanx-v1 --dry-run")  # commas, as an axis takes its values
    assert plan.models == ("wanx2.1-t2i-plus", "wanx-v1")


def test_compare_end_to_end_with_the_real_grid(shell):
    grid = cell(shell, "--compare wanx2.1-t2i-turbo wanx2.0-t2i-turbo --seed 5 -o grid", "a red fox")
    assert type(grid).__name__ == "CompareGrid" and shell.user_ns["grid"] is grid
    data, _ = grid._repr_mimebundle_()
    assert "wanx2.1-t2i-turbo" in data["text/plain"] and "wanx2.0-t2i-turbo" in data["text/plain"]


def test_top_level_await_in_the_shell(shell):
    shell.user_ns["get_session"] = get_session
    shell.user_ns["GenerationRequest"] = GenerationRequest
    outcome = shell.run_cell("r = await get_session().agenerate(GenerationRequest('a fox', n=1, seed=3))")
    outcome.raise_error()
    assert isinstance(shell.user_ns.pop("r"), GenerationResult)


def test_in_a_real_kernel_the_status_is_replaced_by_the_result(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext wanx_nb"),
        nbformat.v4.new_code_cell(
            "from wanx_nb._session import Session, set_session\n"
            "from wanx_nb.emulator import Emulator, EmulatorSettings\n"
            "set_session(Session(store='store', emulator=Emulator(EmulatorSettings(time_scale=0.05))))"
        ),
        nbformat.v4.new_code_cell("%%wanx -n 2 --seed 7 -o res\na red fox in snow"),
        nbformat.v4.new_code_cell("import os; print(sorted(os.listdir('wanx_output')))"),
    ]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, HOME=str(tmp_path), IPYTHONDIR=str(tmp_path / "ipython"),
               PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("DASHSCOPE_API_KEY", None)
    env.pop("DASHSCOPE_HTTP_BASE_URL", None)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)  # passed on to the kernel manager's start_kernel
    outputs = nb.cells[2].outputs
    assert [o.output_type for o in outputs] == ["display_data", "execute_result"]
    assert outputs[0].data["text/plain"] == ""  # the live status, blanked once the result arrived
    result = outputs[1]
    assert result.data["text/plain"] == "<wanx wanx2.1-t2i-turbo: 2/2 images 1024*1024 seeds 7-8 ¥0.28 [emulator]>"
    assert "emulator: not the real service" in result.data["text/html"]
    assert result.metadata["wanx_nb"]["model"] == "wanx2.1-t2i-turbo"
    assert "wanx2.1-t2i-turbo_7_" in nb.cells[3].outputs[0].text


# ---- the store and the environment, seen from the magic ------------------------------------------


def test_history_pages_newest_first(shell, session):
    for seed in (1, 2, 3):
        cell(shell, f"-n 1 --seed {seed}")
    first = shell.run_line_magic("wanx", "history --limit 2 --no-thumbnails")
    second = shell.run_line_magic("wanx", "history --limit 2 --page 2 --no-thumbnails")
    def seeds(bundle) -> list[int]:  # the seed column of the text table
        lines = bundle._repr_mimebundle_()[0]["text/plain"].splitlines()[2:]
        return [int(line.split("¥")[1].split()[1]) for line in lines if "¥" in line]

    assert seeds(first) == [3, 2] and seeds(second) == [1]


def test_history_on_a_damaged_index_is_a_usage_error_naming_the_rebuild(shell, session):
    cell(shell, "-n 1 --seed 1")
    session.store.close()
    (session.store.root / "index.sqlite").write_bytes(b"not an index" * 64)
    for name in ("index.sqlite-wal", "index.sqlite-shm"):
        (session.store.root / name).unlink(missing_ok=True)
    with pytest.raises(UsageError, match="rebuild"):
        shell.run_line_magic("wanx", "history")


def test_a_bad_environment_variable_is_a_usage_error_naming_it(shell, monkeypatch):
    set_session(None)
    monkeypatch.setenv("WANX_NB_MODE", "bogus")
    with pytest.raises(UsageError, match="WANX_NB_MODE"):
        cell(shell, "-n 1")


def test_an_unwritable_output_dir_after_paying_is_a_warning_not_a_traceback(shell, session, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    shell.run_line_magic("config", f"WanxMagics.output_dir = {str(blocked / 'out')!r}")
    result = cell(shell, "-n 1 --seed 4 -o res")
    res = shell.user_ns["res"]
    assert isinstance(res, GenerationResult) and res.saved_images == 1
    assert any("could not copy the images" in w for w in res.warnings)
    assert "could not copy" in result._repr_mimebundle_()[0]["text/plain"]
