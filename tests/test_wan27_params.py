"""wan2.7's own switches, thinking_mode and enable_sequential, on every surface over the in-process emulator.

2026 §3.3 / §13.7: wan2.7-image and -pro make 1-4 images, up to 12 with `enable_sequential=true`
(third-party documented: accepted, the server has the last word); `thinking_mode`'s default is disputed
(the docs' examples send true). Both travel in `parameters` on the async and the sync endpoint alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from wanx_nb import cli
from wanx_nb._exceptions import BudgetExceededError, ValidationError
from wanx_nb._modelspec import Protocol
from wanx_nb._params import OPTION_NAMES, option_tokens
from wanx_nb._protocol_image import build_image_create
from wanx_nb._provenance import Provenance
from wanx_nb._request import GenerationRequest
from wanx_nb._session import Session, set_session
from wanx_nb._store import read_png_provenance
from wanx_nb._validation import validate
from wanx_nb.comparison import grid
from wanx_nb.emulator import Emulator
from wanx_nb.panel import Panel
from wanx_nb.rerun import check_manifest

MMG_PATH = "/services/aigc/multimodal-generation/generation"
IMG_PATH = "/api/v1/services/aigc/image-generation/generation"


@pytest.fixture
def shell(wanx_shell, session):
    set_session(session)
    return wanx_shell


def posts(emulator: Emulator) -> list:
    return [r for r in emulator.request_log if r.method == "POST"]


# ---- the magic ----------------------------------------------------------------------------------------


def test_a_sequential_cell_makes_eight_images_each_recording_enable_sequential(shell, emulator, session):
    shell.run_cell_magic("wanx", "-m wan2.7-image --sequential -n 8 --seed 5 -o res --no-display", "a comic strip")
    result = shell.user_ns["res"]
    assert len(result.images) == 8 and result.billed_images == 8
    assert result.cost_yuan == pytest.approx(8 * 0.20)  # priced as 8 images
    (sent,) = posts(emulator)
    assert sent.path == IMG_PATH
    assert sent.json["parameters"]["enable_sequential"] is True and sent.json["parameters"]["n"] == 8
    for image in result.images:
        record = read_png_provenance(image.path)
        assert record is not None
        assert record["request"]["enable_sequential"] is True and record["given"]["enable_sequential"] is True
    # The store's journal reads it back into the request too.
    (row,) = session.store.history()
    assert session.store.result_record(row.entry_id).sent.enable_sequential is True


def test_no_thinking_reaches_the_wire_and_the_service_reads_it(shell, emulator):
    shell.run_cell_magic("wanx", "-m wan2.7-image -n 1 --seed 1 --no-thinking -o off --no-display", "a fox")
    shell.run_cell_magic("wanx", "-m wan2.7-image -n 1 --seed 1 --thinking -o on --no-display", "a fox")
    off, on = (r.json["parameters"] for r in posts(emulator))
    assert off["thinking_mode"] is False and on["thinking_mode"] is True
    assert "enable_sequential" not in off  # not typed: not sent, the service's default applies
    # The emulator bills thinking as ~18k input tokens (2026 §3.4): it saw the switch turned off.
    assert shell.user_ns["off"].task.usage["input_tokens"] < shell.user_ns["on"].task.usage["input_tokens"]


def test_n_8_without_sequential_is_refused_before_anything_is_sent(shell, emulator):
    with pytest.raises(UsageError) as info:
        shell.run_cell_magic("wanx", "-m wan2.7-image -n 8", "a comic strip")
    assert "-n=8: 1-4 for wan2.7-image, or up to 12 with --sequential" in str(info.value)
    with pytest.raises(UsageError, match=r"-n=13: an integer from 1 to 12 with --sequential"):
        shell.run_cell_magic("wanx", "-m wan2.7-image-pro --sequential -n 13", "a comic strip")
    assert emulator.request_log == []


def test_thinking_on_a_model_without_it_is_refused_naming_the_option(shell, emulator):
    with pytest.raises(UsageError) as info:
        shell.run_cell_magic("wanx", "-m wanx2.1-t2i-turbo --thinking", "a fox")
    text = str(info.value)
    assert "--thinking=True: wanx2.1-t2i-turbo (V2) does not take --thinking; it is a wan2.7 parameter" in text
    with pytest.raises(UsageError, match="--sequential=True: wan2.6-t2i .* does not take --sequential"):
        shell.run_cell_magic("wanx", "-m wan2.6-t2i --sequential", "a fox")
    with pytest.raises(UsageError, match="--thinking and --no-thinking both given"):
        shell.run_cell_magic("wanx", "-m wan2.7-image --thinking --no-thinking", "a fox")
    assert emulator.request_log == []


# ---- the CLI ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, words",
    [
        (["-m", "wan2.7-image", "-n", "8"], ["-n=8", "1-4 for wan2.7-image, or up to 12 with --sequential"]),
        (["-m", "wanx2.1-t2i-turbo", "--thinking"], ["--thinking=True", "does not take --thinking"]),
    ],
)
def test_the_cli_refuses_the_same_without_a_traceback(cli_emulator, capsys, tmp_path, argv, words):
    code = cli.main(["generate", "a comic strip", *argv, "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code in (1, 2)
    assert all(w in err for w in words), err
    assert "Traceback" not in err and "nothing was sent" in err
    assert cli_emulator.request_log == []


def test_the_cli_sends_a_sequence_and_writes_its_provenance(cli_emulator, capsys, tmp_path):
    argv = ["generate", "a comic strip", "-m", "wan2.7-image", "--sequential", "-n", "6", "--no-thinking",
            "--seed", "2", "-o", str(tmp_path / "o")]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err
    pngs = sorted((tmp_path / "o").glob("*.png"))
    assert len(pngs) == 6
    record = json.loads(pngs[0].with_suffix(".json").read_text(encoding="utf-8"))
    assert record["request"]["enable_sequential"] is True and record["request"]["thinking_mode"] is False
    (sent,) = posts(cli_emulator)
    assert sent.json["parameters"]["thinking_mode"] is False and sent.json["parameters"]["n"] == 6


# ---- replay, identity, cost ---------------------------------------------------------------------------


def test_a_replay_sends_nothing_and_thinking_mode_makes_another_request(session, emulator):
    request = GenerationRequest("a fox", model="wan2.7-image", n=1, seed=3, thinking_mode=False)
    made = session.generate(request)
    again = session.generate(request, reuse=True)
    assert again.task_id == made.task_id and len(posts(emulator)) == 1
    other = request.replace(thinking_mode=True)
    assert other != request and other.key() != request.key()
    unset = request.replace(thinking_mode=None)  # not sent: the service's (disputed) default
    assert unset.key() not in (request.key(), other.key())
    assert session.generate(other, reuse=True).task_id != made.task_id
    assert [r.json["parameters"]["thinking_mode"] for r in posts(emulator)] == [False, True]


def test_the_request_round_trips_with_both_switches():
    request = GenerationRequest("a fox", model="wan2.7-image-pro", n=9, seed=4, thinking_mode=False,
                                enable_sequential=True)  # fmt: skip
    assert GenerationRequest.from_dict(request.to_dict()) == request
    assert request.to_dict()["thinking_mode"] is False and request.given()["enable_sequential"] is True
    assert request.canonical()["enable_sequential"] is True
    # A request that sets neither keeps the key it had before the switches existed: nothing is filled in.
    plain = GenerationRequest("a fox", model="wan2.7-image", n=1)
    assert "thinking_mode" not in plain.canonical() and "enable_sequential" not in plain.canonical()
    tokens = option_tokens(request)
    assert "--no-thinking" in tokens and "--sequential" in tokens
    args = cli._parser().parse_args(["generate", *tokens, "--", request.prompt])
    assert cli.request_from_args(args).canonical() == request.canonical()


def test_provenance_keeps_both_switches_through_json(session):
    result = session.generate(GenerationRequest("a fox", model="wan2.7-image", n=5, seed=1, enable_sequential=True,
                                                thinking_mode=True))  # fmt: skip
    record = Provenance.from_json(result.provenance().to_json())
    assert record.sent.enable_sequential is True and record.given.thinking_mode is True
    manifest = session.store.manifest()
    (rerun,) = check_manifest(manifest)
    assert rerun.enable_sequential is True and rerun.thinking_mode is True and rerun.n == 5


def test_twelve_sequential_images_are_estimated_and_budgeted_as_twelve(tmp_path, emulator):
    request = GenerationRequest("a comic strip", model="wan2.7-image", n=12, enable_sequential=True)
    assert Session.estimate_cost([request]) == (12, pytest.approx(2.40))
    session = Session(store=tmp_path / "s", emulator=emulator, budget_yuan=2.0)
    with pytest.raises(BudgetExceededError, match="about ¥2.40"):
        session.generate(request)
    assert emulator.request_log == []


# ---- the Python API and the wire ----------------------------------------------------------------------


@pytest.mark.parametrize("field", ["thinking_mode", "enable_sequential"])
def test_python_values_that_are_not_booleans_are_refused(field):
    with pytest.raises(ValidationError, match=f"{field}='yes': true or false"):
        validate(GenerationRequest("a fox", model="wan2.7-image", **{field: "yes"}))
    with pytest.raises(ValidationError, match=f"{field}=1: true or false"):
        validate(GenerationRequest("a fox", model="wan2.7-image", **{field: 1}))


def test_python_names_the_field_in_the_n_rule():
    with pytest.raises(ValidationError, match=r"n=5: 1-4 for wan2.7-image, or up to 12 with enable_sequential=True"):
        validate(GenerationRequest("a fox", model="wan2.7-image", n=5, enable_sequential=False))
    assert validate(GenerationRequest("a fox", model="wan2.7-image", n=12, enable_sequential=True)) == []
    # Other models keep their own limit: sequences are wan2.7's.
    with pytest.raises(ValidationError, match="n=5: an integer from 1 to 4"):
        validate(GenerationRequest("a fox", model="wan2.6-t2i", n=5), names=None)
    with pytest.raises(ValidationError, match="does not take --sequential"):
        validate(GenerationRequest("a fox", model="qwen-image-2.0", enable_sequential=True), names=OPTION_NAMES)


async def test_both_endpoints_carry_the_switches_in_parameters(emulator):
    request = GenerationRequest("a comic strip", model="wan2.7-image", n=8, size="1K", seed=1, thinking_mode=False,
                                enable_sequential=True)  # fmt: skip
    sync = build_image_create(request, Protocol.MMG)
    task = build_image_create(request, Protocol.IMG)
    assert sync.json == task.json  # 2026 §4.1: one body for both
    assert sync.json["parameters"]["thinking_mode"] is False and sync.json["parameters"]["enable_sequential"] is True
    assert "thinking_mode" not in sync.json["input"]
    async with emulator.client() as http:  # the sync endpoint makes all eight
        answer = await http.post(MMG_PATH, json=sync.json, headers=sync.headers)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["output"]["choices"]) == 8


# ---- grids and the panel ------------------------------------------------------------------------------


def test_a_grid_sweeps_thinking_and_refuses_the_cell_without_sequential(session, emulator):
    planned = grid("a fox", x="thinking=on,off", model="wan2.7-image", n=1, seed=1, dry_run=True, session=session,
                   display=False)  # fmt: skip
    requests = [cell.request for cell in planned.cells]
    assert sorted(r.thinking_mode for r in requests) == [False, True]
    with pytest.raises(ValidationError, match=r"-n \(x=sequential off\)=8: 1-4 for wan2.7-image"):
        grid("a fox", x="sequential=on,off", model="wan2.7-image", n=8, seed=1, dry_run=True, session=session,
             display=False)  # fmt: skip
    assert emulator.request_log == []


def visible(widget) -> bool:
    return widget.layout.display != "none"


def test_the_panel_shows_the_switches_for_wan27_only_and_n_up_to_12_with_sequence(session):
    panel = Panel(session=session, model="wan2.7-image", prompt="a comic strip", static_output=False)
    thinking, sequence = panel._toggles.boxes["thinking_mode"], panel._toggles.boxes["enable_sequential"]
    assert visible(thinking) and visible(sequence) and panel._n.max == 4
    sequence.value = True
    assert panel._n.max == 12
    panel._n.value = 12
    request = panel.request()
    assert request.n == 12 and request.enable_sequential is True and request.thinking_mode is True
    assert validate(request) == []
    assert panel._cost.value.startswith("12 images x ¥0.20 = ¥2.40")
    sequence.value = False  # back to 1-4: the slider brings n within it
    assert panel._n.max == 4 and panel._n.value == 4
    assert "enable_sequential" not in panel.request().given()  # off is not sent
    panel._model.value = "wan2.6-t2i"
    assert not visible(thinking) and not visible(sequence)
    assert "thinking_mode" not in panel.request().given()


def test_the_panels_equivalent_cell_states_the_switches(session):
    panel = Panel(session=session, model="wan2.7-image-pro", prompt="a comic strip", static_output=False)
    panel._toggles.boxes["enable_sequential"].value = True
    panel._toggles.boxes["thinking_mode"].value = False
    panel._n.value = 7
    request = panel.request()
    panel._set_code(request)
    first_line = panel.code_text.splitlines()[0]
    assert "--sequential" in first_line and "--no-thinking" in first_line and "-n 7" in first_line


def test_every_stored_image_keeps_its_png_record(session):
    result = session.generate(GenerationRequest("a fox", model="wan2.7-image", n=2, seed=8, thinking_mode=False))
    assert all(Path(im.path).is_file() for im in result.images)
    assert {read_png_provenance(im.path)["request"]["thinking_mode"] for im in result.images} == {False}
