"""The `wanx-nb` command, run in-process (`cli.main([...])`) with no API key, so the emulator answers.

The process-wide default emulator (what a keyless client uses) is swapped for a fast one, which also
lets the tests see every request it received. `emulator` is also checked as a real served process.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from PIL import Image

from wanx_nb import cli
from wanx_nb._exceptions import ValidationError
from wanx_nb._params import OPTION_NAMES
from wanx_nb._provenance import Provenance
from wanx_nb._registry import get_model
from wanx_nb._request import GenerationRequest
from wanx_nb._store import Store, read_png_provenance
from wanx_nb._validation import validate
from wanx_nb.emulator import EMULATOR_HEADER, EmulatorSettings, Fault

GUIDE_MODELS = ["wanx2.1-t2i-plus", "wanx2.1-t2i-turbo", "wanx2.0-t2i-turbo", "wanx-v1"]
GUIDE_PRICES = {"wanx2.1-t2i-plus": "0.20", "wanx2.1-t2i-turbo": "0.14", "wanx2.0-t2i-turbo": "0.04", "wanx-v1": "0.16"}


@pytest.fixture
def emulator(cli_emulator):
    return cli_emulator


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---- generate --------------------------------------------------------------------------------------


def test_generate_writes_pngs_and_records_and_prints_a_summary(emulator, capsys, tmp_path):
    out_dir = tmp_path / "out"
    code, out, err = run(
        capsys, "generate", "a red fox", "-m", "wanx2.1-t2i-turbo", "-n", "2", "--seed", "5", "--size", "1024*768",
        "-o", str(out_dir),
    )
    assert code == 0, err
    pngs = sorted(out_dir.glob("*.png"))
    assert len(pngs) == 2
    records = []
    for png in pngs:
        with Image.open(png) as im:
            assert im.format == "PNG" and im.size == (1024, 768)
        record = json.loads(png.with_suffix(".json").read_text(encoding="utf-8"))
        records.append(record)
        assert record["model"] == "wanx2.1-t2i-turbo"
        assert record["task_id"] and record["backend"] == "emulator"
        (image,) = record["images"]  # the record narrowed to this image, as in the PNG's chunk
        chunk = Provenance.from_dict(read_png_provenance(png))
        journal = dict(service=None, entry_id=None, run_id=None, mode=None, recorded_at=None)  # the store's own
        assert Provenance.from_dict(record) == replace(chunk, **journal)
        record["image"] = image
        assert image["actual_prompt"]
        assert (tmp_path / "store" / image["path"]).is_file()  # relative to the store: $WANX_NB_STORE
    assert sorted(r["image"]["seed"] for r in records) == [5, 6]
    assert len({r["task_id"] for r in records}) == 1
    assert len(emulator.requests("create")) == 1

    assert "wanx2.1-t2i-turbo" in out
    assert "¥0.28" in out  # 2 x ¥0.14
    for r in records:
        assert f"seed {r['image']['seed']}" in out
        assert r["image"]["actual_prompt"] in out
    assert str(out_dir) in out and str(tmp_path / "store") in out
    assert out.splitlines()[-1] == (
        "note: made by the offline emulator (no DASHSCOPE_API_KEY set): placeholder images, not model output"
    )


def test_a_served_emulator_is_named_as_such_not_as_a_missing_key(emulator, capsys, tmp_path, monkeypatch):
    from wanx_nb.emulator import running_server

    with running_server(EmulatorSettings(time_scale=0.001)) as server:
        monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-0000000")
        monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", server.base_url)
        code, out, _ = run(capsys, "generate", "a fox", "-m", "wanx-v1", "-n", "1", "-o", str(tmp_path / "out"))
    assert code == 0 and out.splitlines()[-1] == (
        "note: made by a wanx_nb emulator at the base URL, not the real service: placeholder images, not model output"
    )
    (row,) = Store(tmp_path / "store").history()
    assert row.backend == "emulator"  # the history says so too, not the session's "dashscope"


def test_a_grid_from_a_served_emulator_says_so_in_its_manifest_legend_and_output(capsys, tmp_path, monkeypatch):
    # A grid is what gets published: placeholder images must not be credited to the real service.
    from wanx_nb.emulator import running_server

    with running_server(EmulatorSettings(time_scale=0.001)) as server:
        monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-0000000")
        monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", server.base_url)
        code, out, err = run(capsys, "grid", "a fox", "--x", "seed=1,2", "-m", "wanx-v1", "-n", "1",
                             "-o", str(tmp_path / "grid.png"))
    assert code == 0, err
    manifest = json.loads((tmp_path / "grid.json").read_text(encoding="utf-8"))
    assert manifest["backend"] == "emulator" and {c["backend"] for c in manifest["cells"]} == {"emulator"}
    assert out.splitlines()[-1].startswith("note: made by a wanx_nb emulator at the base URL")


@pytest.mark.parametrize("base_url", ["ftp://127.0.0.1/api/v1", "127.0.0.1:8000/api/v1", "http://"])
def test_a_base_url_that_cannot_be_sent_to_is_refused_before_anything_is_journaled(
    emulator, capsys, tmp_path, monkeypatch, base_url
):
    # It used to fail as the create went out, which counts as possibly billed: "run resume".
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-0000000")
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", base_url)
    code, out, err = run(capsys, "generate", "a fox", "-m", "wanx-v1")
    assert code != 0 and out == ""
    assert err.startswith(f"error: DASHSCOPE_HTTP_BASE_URL {base_url!r} is not a base URL: use http(s)://")
    assert "resume" not in err and "Traceback" not in err
    assert Store(tmp_path / "store").history() == []  # nothing journaled, so nothing to resume


def test_store_option_wins_over_the_environment(emulator, capsys, tmp_path):
    code, out, err = run(capsys, "--store", str(tmp_path / "mine"), "generate", "a fox", "--seed", "1")
    assert code == 0, err
    assert list((tmp_path / "mine" / "images").glob("*.png"))
    assert not (tmp_path / "store").exists()
    assert list((tmp_path / "wanx_output").glob("*.json"))  # the default output directory, in the cwd


VALIDATION_CASES = {
    "v1 size": (["-m", "wanx-v1", "--size", "1024*768"], dict(model="wanx-v1", size="1024*768")),
    "n too big": (["-n", "5"], dict(n=5)),
    "v1 param on v2": (
        ["-m", "wanx2.1-t2i-turbo", "--style", "<watercolor>"], dict(model="wanx2.1-t2i-turbo", style="<watercolor>")
    ),
    "unknown model": (["-m", "wanx-v9"], dict(model="wanx-v9")),
    "negative seed": (["--seed", "-1"], dict(seed=-1)),
}


@pytest.mark.parametrize("argv, fields", VALIDATION_CASES.values(), ids=VALIDATION_CASES.keys())
def test_validation_errors_print_the_core_message_and_send_nothing(emulator, capsys, tmp_path, argv, fields):
    with pytest.raises(ValidationError) as expected:
        validate(GenerationRequest("a fox", **fields), names=OPTION_NAMES)
    code, out, err = run(capsys, "generate", "a fox", *argv)
    assert code == 1
    assert err == f"error: {expected.value}\nnothing was sent\n"
    assert out == ""
    assert emulator.request_log == []
    assert not (tmp_path / "wanx_output").exists()


def test_errors_name_the_option_typed_not_the_api_field(emulator, capsys):
    code, _, err = run(capsys, "generate", "a fox", "-m", "wanx-v1", "--extend")
    assert code == 1
    assert "--extend=True: wanx-v1 (V1) does not take --extend; it is a V2 parameter" in err
    assert "prompt_extend" not in err
    assert emulator.request_log == []


def test_generate_accepts_what_the_magic_accepts_and_sends_the_service_form(emulator, capsys):
    code, _, err = run(
        capsys, "generate", "a fox", "-m", "wanx-v1", "--style", "watercolor", "--size", "１０２４ X １０２４", "--seed", "3"
    )
    assert code == 0, err
    (create,) = emulator.requests("create")
    assert create.json["parameters"]["style"] == "<watercolor>"
    assert create.json["parameters"]["size"] == "1024*1024"


def test_a_prompt_and_a_negative_prompt_starting_with_a_dash(emulator, capsys):
    code, _, err = run(capsys, "generate", "--negative=-blurry", "--seed", "1", "--", "-a fox")
    assert code == 0, err
    (create,) = emulator.requests("create")
    assert create.json["input"] == {"prompt": "-a fox", "negative_prompt": "-blurry"}


def test_seeds_of_every_image_must_stay_in_range(emulator, capsys):
    code, _, err = run(capsys, "generate", "a fox", "--seed", "2147483647", "-n", "4")
    assert code == 1
    assert "--seed=2147483647: with -n 4, image i uses seed + i, so the seed must be at most 2147483644" in err
    assert emulator.request_log == []


def test_an_output_folder_that_cannot_be_made_is_refused_before_sending(emulator, capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, out, err = run(capsys, "generate", "a fox", "-o", str(blocker / "out"))
    assert code == 1
    assert err.startswith(f"error: -o/--out '{blocker / 'out'}': cannot create that folder")
    assert emulator.request_log == []


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder that exists and takes no new file, for this user (root passes every permission check)."""
    if os.name == "posix" and os.geteuid() == 0:
        if not Path("/proc/self").exists():
            pytest.skip("running as root without /proc: no folder refuses a new file")
        return Path("/proc")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def test_a_grid_whose_png_cannot_be_written_is_refused_before_sending(emulator, capsys, tmp_path):
    # It used to run (and bill) the grid, then fail to write the PNG: os.access says yes to root.
    folder = unwritable_folder(tmp_path)
    code, out, err = run(capsys, "grid", "a fox", "--x", "seed=1,2", "-o", str(folder / "grid.png"))
    assert code == 1 and out == ""
    assert err.startswith(f"error: -o/--out's folder '{folder}': cannot write a file there")
    assert emulator.request_log == []


def test_help_shows_the_defaults(capsys):
    code, out, _ = run(capsys, "generate", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "(default: wanx2.1-t2i-turbo)" in text
    assert "(default: 1; the API's own default is 4)" in text
    assert "(default: wanx_output)" in text
    code, out, _ = run(capsys, "emulator", "--help")
    assert "(default: 8000)" in out and "(default: 0.05)" in " ".join(out.split())


# ---- history, show, cost -----------------------------------------------------------------------------


def test_history_show_and_cost_read_the_store(emulator, capsys):
    assert cli.main(["generate", "a red fox", "--seed", "5", "-n", "2"]) == 0
    assert cli.main(["generate", "a harbour", "-m", "wanx-v1", "--seed", "9"]) == 0
    capsys.readouterr()
    task_ids = [t for t in emulator.tasks]

    code, out, _ = run(capsys, "history", "--model", "wanx-v1")
    assert code == 0
    assert "a harbour" in out and "a red fox" not in out
    code, out, _ = run(capsys, "history", "--text", "fox", "--limit", "1")
    lines = [line for line in out.splitlines() if "fox" in line]
    assert len(lines) == 1 and "wanx2.1-t2i-turbo" in lines[0]

    fox_task = next(t for t in task_ids if t in out)
    code, out, _ = run(capsys, "show", fox_task)
    assert code == 0
    assert "wanx2.1-t2i-turbo: 2/2 images" in out and "seed 5" in out and "seed 6" in out

    code, out, err = run(capsys, "history", "--page", "3", "--limit", "1")
    assert code == 1 and out == ""
    assert err.strip() == "error: --page 3: past the end; 2 stored generations match, 2 pages of 1 (--page 1 to 2)"
    code, out, _ = run(capsys, "history", "--page", "3", "--text", "no such prompt")
    assert code == 0 and "no stored generations match" in out  # as on page 1: nothing to page through

    code, out, _ = run(capsys, "cost")
    assert code == 0
    assert "¥0.44 for 3 images" in out  # 2 x ¥0.14 + 1 x ¥0.16
    assert len(emulator.requests("create")) == 2  # reading the store sends nothing


def test_a_refused_request_prints_what_to_do_next(emulator, capsys, tmp_path):
    emulator.script("create", Fault.status(401, code="InvalidApiKey", message="Invalid API-key provided."))
    code, out, err = run(capsys, "generate", "a fox", "-m", "wanx-v1", "-n", "1", "-o", str(tmp_path / "out"))
    assert code == 1 and out == ""
    assert err.splitlines()[-1] == "next step: check DASHSCOPE_API_KEY (Beijing and Singapore keys are not interchangeable)"


def test_show_of_an_unknown_task_is_a_clean_error(emulator, capsys):
    code, out, err = run(capsys, "show", "no-such-task")
    assert code == 1 and out == ""
    assert err.startswith("error: no saved result for task 'no-such-task'")


# ---- bad arguments: argparse errors exit 2, ours exit 1, never a traceback ---------------------------

BAD_ARGUMENTS = {
    "port too big": (["emulator", "--port", "99999"], 2, "argument --port: '99999' is not a port"),
    "negative time scale": (["emulator", "--time-scale", "-1"], 2, "argument --time-scale: '-1' is not allowed"),
    "unknown emulator region": (["emulator", "--region", "mars"], 2, "argument --region: invalid choice: 'mars'"),
    "huge history limit": (
        ["history", "--limit", "99999999999999999999"], 2, "argument --limit: '99999999999999999999' is not allowed"
    ),
    "unknown history model": (["history", "--model", "wanx-v9"], 1, "error: --model: unknown model 'wanx-v9'"),
    "bad since": (["history", "--since", "yesterday"], 1, "error: --since/--until take an ISO 8601 time"),
    "bad ref mode": (["generate", "x", "--ref-mode", "paint"], 2, "argument --ref-mode: 'paint' is not allowed"),
    "export into a missing root folder": (["export", "/proc/none/m.json"], 1, "error: the manifest's folder"),
    "missing manifest": (["rerun", "nowhere.json"], 1, "error: cannot read the manifest nowhere.json"),
}


@pytest.mark.parametrize("argv, code, words", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_bad_arguments_are_clean_errors(emulator, capsys, argv, code, words):
    got, out, err = run(capsys, *argv)
    assert got == code
    assert words in err
    assert "Traceback" not in err + out
    assert emulator.request_log == []


@pytest.mark.parametrize(
    "variable, value, words",
    [
        ("WANX_NB_BUDGET_YUAN", "abc", "error: WANX_NB_BUDGET_YUAN='abc' is not a budget"),
        ("WANX_NB_BUDGET_YUAN", "-3", "error: WANX_NB_BUDGET_YUAN='-3' is not a budget"),
        ("WANX_NB_MODE", "bogus", "error: WANX_NB_MODE='bogus' is not a mode: use one of live, record, replay"),
    ],
)
def test_bad_environment_variables_are_named_in_a_clean_error(emulator, capsys, monkeypatch, variable, value, words):
    monkeypatch.setenv(variable, value)
    code, out, err = run(capsys, "generate", "a fox")
    assert code == 1
    assert err.startswith(words)
    assert emulator.request_log == []


@pytest.mark.parametrize(
    "content, words",
    [
        ("not json", "is not JSON"),
        ("[1, 2]", 'has no "generations" list'),
        ('{"generations": [{"images": []}]}', 'generation 1 has no "request" with a "prompt"'),
        ('{"generations": [{"request": {"prompt": "x", "size": "0*0"}}]}', "size='0*0'"),
        ('{"wanx_nb_manifest": 3, "generations": [{"request": {"prompt": "x"}}]}',
         "is format 3, and this wanx_nb reads formats 1 to 2: upgrade wanx_nb (a newer one wrote it)\nnothing was sent"),
        ('{"wanx_nb_manifest": "2", "generations": []}', "is format '2'"),
    ],
)
def test_rerun_of_a_bad_manifest_is_refused_before_sending(emulator, capsys, tmp_path, content, words):
    manifest = tmp_path / "bad.json"
    manifest.write_text(content, encoding="utf-8")
    code, out, err = run(capsys, "rerun", str(manifest))
    assert code == 1
    assert words in err and "Traceback" not in err
    assert emulator.request_log == []


# ---- models, resume ----------------------------------------------------------------------------------


def test_models_lists_the_guide_models_with_prices(emulator, capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    for model in GUIDE_MODELS:
        assert model in rows
        assert GUIDE_PRICES[model] in rows[model].split()
        assert f"{get_model(model).price_yuan:.2f}" == GUIDE_PRICES[model]
    assert emulator.request_log == []


def test_resume_with_nothing_pending_recovers_nothing(emulator, capsys):
    code, out, _ = run(capsys, "resume")
    assert code == 0
    assert out.splitlines()[-1] == "nothing to resume: every task in the journal is finished"


def test_resume_names_what_a_stopped_run_never_sent(emulator, capsys, tmp_path):
    from wanx_nb._store import EntryState, JournalEntry, Store

    Store(tmp_path / "store").record(JournalEntry(
        entry_id="never-sent", run_id="a-run-that-stopped", service="emulator", backend="emulator", mode="live",
        state=EntryState.QUEUED, given=GenerationRequest("an owl at dusk", model="wanx-v1", n=1, seed=2), sent=None,
        task_id=None, status=None, created_at="2026-11-30T12:00:00.000+00:00", sent_at=None, finished_at=None,
        request_id=None, code=None, message=None, billed_images=0, saved_images=0, price_yuan=0.16,
    ))
    code, out, _ = run(capsys, "resume")
    assert code == 0 and out.splitlines() == [
        "  never sent: wanx-v1, n=1, size=1024*1024, seed=2, prompt='an owl at dusk'",
        "1 never sent (their run stopped before sending them; not billed): run them again to have them",
    ]
    assert emulator.request_log == []


# ---- export, rerun -----------------------------------------------------------------------------------


@pytest.fixture
def exported(emulator, capsys, tmp_path):
    argv = ["generate", "a red fox", "-m", "wanx2.1-t2i-turbo", "-n", "2", "--seed", "5", "--size", "768*512"]
    assert cli.main(argv) == 0
    assert cli.main(["generate", "a harbour", "-m", "wanx-v1", "--seed", "9"]) == 0
    capsys.readouterr()
    manifest = tmp_path / "manifest.json"
    code, out, _ = run(capsys, "export", str(manifest))
    assert code == 0
    assert out.strip() == f"wrote 2 generations to {manifest}"
    return manifest


def test_rerun_of_an_exported_manifest_reports_every_image_same(exported, capsys):
    code, out, err = run(capsys, "rerun", str(exported))
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["same", "same", "same"]
    assert lines[-1] == "3 same"


def test_rerun_in_another_store_reports_every_image_same(exported, capsys, tmp_path):
    code, out, _ = run(capsys, "--store", str(tmp_path / "elsewhere"), "rerun", str(exported))
    assert code == 0
    assert out.splitlines()[-1] == "3 same"


def test_rerun_with_a_tampered_hash_reports_differs_and_exits_1(exported, capsys):
    manifest = json.loads(exported.read_text(encoding="utf-8"))
    manifest["generations"][0]["images"][1]["sha256"] = "f" * 64
    exported.write_text(json.dumps(manifest), encoding="utf-8")
    code, out, _ = run(capsys, "rerun", str(exported))
    assert code == 1
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["same", "differs", "same"]
    assert "seed 6" in lines[1] and "ffffffffffff ->" in lines[1]
    assert lines[-1] == "1 differs, 2 same"


# ---- emulator ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_emulator_on_a_port_in_use_says_so_and_offers_nothing_to_use(capsys):
    from wanx_nb.emulator.__main__ import main as emulator_main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, out, err = run(capsys, "emulator", "--port", port)
        assert code == 1 and out == ""  # no "use it: export ..." for a port another program holds
        assert err == f"error: port {port} is in use (another emulator?); pick another with --port\n"
        with pytest.raises(SystemExit) as exited:
            emulator_main(["--port", port])
        assert exited.value.code == 1
        out, err = capsys.readouterr()
        assert out == "" and err == f"error: port {port} is in use (another emulator?); pick another with --port\n"


def test_both_emulator_commands_take_the_same_options_to_the_same_settings(tmp_path):
    # `wanx-nb emulator` had only --port, --time-scale and --image-weight, while the README's
    # `--state FILE` (tasks kept over a restart) worked only with `python -m wanx_nb.emulator`.
    from wanx_nb._cli_parser import _parser
    from wanx_nb.emulator._serve_options import add_serve_options, serve_settings

    argv = ["--seed", "3", "--time-scale", "0", "--region", "singapore", "--image-weight", "service",
            "--state", str(tmp_path / "tasks.sqlite"), "--port", "8123"]
    module = argparse.ArgumentParser()
    add_serve_options(module)  # what `python -m wanx_nb.emulator` parses
    from_module, from_cli = module.parse_args(argv), _parser().parse_args(["emulator", *argv])
    assert serve_settings(from_cli) == serve_settings(from_module) == EmulatorSettings(
        seed=3, time_scale=0.0, region="singapore", image_weight="service", state_path=str(tmp_path / "tasks.sqlite")
    )
    assert from_cli.port == from_module.port == 8123


def test_emulator_command_serves_the_api_on_loopback(tmp_path):
    port = free_port()
    log = (tmp_path / "emulator.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wanx_nb.cli", "emulator", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}/api/v1/tasks/no-such-task"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "emulator.log").read_text()
            try:
                response = httpx.get(url, headers={"Authorization": "Bearer sk-test"}, timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the emulator did not answer on port {port}")
                time.sleep(0.05)
        assert response.status_code == 200
        assert response.headers[EMULATOR_HEADER].startswith("wanx_nb-emulator/")
        body = response.json()
        assert body["output"] == {"task_id": "no-such-task", "task_status": "UNKNOWN"}
        assert body["request_id"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()
        log.close()
    assert "127.0.0.1" in (tmp_path / "emulator.log").read_text()
