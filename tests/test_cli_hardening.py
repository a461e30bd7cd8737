"""`wanx-nb` on the tester's findings: hand-made manifests, dry runs, grid notes, Ctrl-C, closed pipes,
control characters, plurals and option values starting with '-'. Run in-process (`cli.main`) with no
API key, so the emulator answers; every refusal must come before anything is sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cli_env import ENV_CLEARED, use_default_emulator
from run_waits import blocked_in_a_runs_wait

from wanx_nb import cli
from wanx_nb._client import AsyncWanxClient
from wanx_nb._request import GenerationRequest
from wanx_nb._store import EntryState, JournalEntry, Store
from wanx_nb.emulator import Emulator, EmulatorSettings

ESC_PROMPT = "a \x1b[31mred\x1b[0m fox"


@pytest.fixture
def emulator(cli_emulator):
    return cli_emulator


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---- rerun: the whole manifest is checked before anything is paid for --------------------------------

REQUEST = {"prompt": "x", "model": "wanx-v1", "n": 2, "seed": 1}
SHA = "ab" * 32
BAD_GENERATIONS = {
    "no images": ({"request": REQUEST}, 'generation 1 has no "images" to compare with'),
    "empty images": ({"request": REQUEST, "images": []}, 'generation 1 has no "images" to compare with'),
    "image without index": ({"request": REQUEST, "images": [{"sha256": SHA}]}, 'generation 1, image 1 has no "index"'),
    "index past n": ({"request": REQUEST, "images": [{"index": 2, "sha256": SHA}]},
                     "generation 1, image 1: index=2 is not an image of the request: use a whole number 0 to 1"),
    "index twice": ({"request": REQUEST, "images": [{"index": 0, "sha256": SHA}, {"index": 0, "sha256": SHA}]},
                    "generation 1, image 2: index=0 is listed twice"),
    "not a hash": ({"request": REQUEST, "images": [{"index": 0, "sha256": "abc"}]},
                   "generation 1, image 1: sha256='abc' is not a SHA-256"),
    "unknown parameter": ({"request": {**REQUEST, "bogus_param": 5}, "images": [{"index": 0, "sha256": SHA}]},
                          "generation 1: request has 'bogus_param', not a request parameter; a request takes prompt, model"),
    "n as text": ({"request": {**REQUEST, "n": "2"}, "images": [{"index": 0}]},
                  "generation 1: request n='2' is not a whole number"),
    "seed as true": ({"request": {**REQUEST, "seed": True}, "images": [{"index": 0}]},
                     "generation 1: request seed=True is not a whole number"),
    "no seed": ({"request": {"prompt": "x", "model": "wanx-v1", "n": 1}, "images": [{"index": 0}]},
                'generation 1: request has no "seed", so its images cannot be made again'),
    "no model": ({"request": {"prompt": "x", "n": 1, "seed": 3}, "images": [{"index": 0}]},
                 'generation 1: request has no "model"'),
}  # fmt: skip


@pytest.mark.parametrize("bad, words", BAD_GENERATIONS.values(), ids=BAD_GENERATIONS.keys())
def test_rerun_refuses_a_generation_it_cannot_compare_before_sending_anything(emulator, capsys, tmp_path, bad, words):
    # It used to pay for every request, then die on KeyError 'images' (or drop bogus_param silently).
    good = {"request": {**REQUEST, "seed": 9}, "images": [{"index": 0, "sha256": SHA}, {"index": 1, "sha256": None}]}
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"wanx_nb_manifest": 2, "generations": [bad, good]}), encoding="utf-8")
    code, out, err = run(capsys, "rerun", str(manifest))
    assert (code, out) == (1, "")
    assert err.startswith(f"error: the manifest {manifest}, {words}") and "nothing was sent" in err
    assert "Traceback" not in err
    assert emulator.request_log == []


def test_rerun_names_the_position_of_the_bad_generation(emulator, capsys, tmp_path):
    good = {"request": REQUEST, "images": [{"index": 0, "sha256": SHA}]}
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"generations": [good, good, {"request": REQUEST, "images": []}]}), encoding="utf-8")
    code, _, err = run(capsys, "rerun", str(manifest))
    assert code == 1 and 'generation 3 has no "images"' in err
    assert emulator.request_log == []


# ---- grid: dry runs write nothing, -n and an n axis, the notes before sending ----------------------


def test_a_grid_dry_run_writes_nothing_and_says_what_it_would_write(emulator, capsys, tmp_path):
    paid = tmp_path / "g1.png"
    paid.write_bytes(b"an earlier paid grid")
    paid.with_suffix(".json").write_text("{}", encoding="utf-8")
    code, out, err = run(capsys, "grid", "a fox", "--x", "seed=1,2", "--dry-run", "-o", str(paid))
    assert code == 0, err
    assert paid.read_bytes() == b"an earlier paid grid" and paid.with_suffix(".json").read_text() == "{}"
    assert f"would write {paid} and {paid.with_suffix('.json')} (a run replaces the" in out
    assert "wrote" not in out

    fresh = tmp_path / "new" / "g2.png"
    code, out, _ = run(capsys, "grid", "a fox", "--x", "seed=1,2", "--dry-run", "-o", str(fresh))
    assert code == 0 and f"would write {fresh} and {fresh.with_suffix('.json')}\n" in out
    assert not fresh.parent.exists() and not (tmp_path / "store").exists()  # no folder, no store either
    for argv in (("grid", "a fox", "--x", "seed=1,2", "--dry-run", "--reuse", "-o", str(fresh)), ("history",), ("cost",)):
        code, out, err = run(capsys, *argv)  # reading a store that is not there does not create it
        assert code == 0 and not (tmp_path / "store").exists(), (argv, err)
    assert "¥0.00 for 0 images (there is no store there yet)" in out  # cost says so, for a mistyped --store
    assert emulator.request_log == []


def test_a_grid_takes_an_n_axis_unless_n_was_typed(emulator, capsys, tmp_path):
    # The CLI's own default n=1 used to count as a fixed -n: "-n=1: either fixed or an axis, not both".
    code, out, err = run(capsys, "grid", "a fox", "--x", "n=1,2", "--dry-run")
    assert code == 0, err
    assert out.startswith("dry run, nothing sent: 2 = 2 cells, 3 images")
    code, out, err = run(capsys, "grid", "a fox", "-n", "2", "--x", "n=1,2", "--dry-run")
    assert code == 1 and "-n=2: either fixed or an axis, not both" in err
    assert emulator.request_log == []


ADAPTED = ["grid", "a fox", "--x", "size=1100*1100,1024*1024", "--y", "model=wanx-v1,wanx2.1-t2i-turbo",
           "--style", "anime", "-o", "g.png"]  # fmt: skip
NOTES = [
    "notes:",
    "  - size 1100*1100 → 1024*1024 (wanx-v1: one of 1024*1024, 720*1280, 768*1152, 1280*720)",
    "  - wanx2.1-t2i-turbo: style <anime>: n/a for V2, not sent",
]


def test_a_grid_states_its_adaptations_with_the_plan_before_the_run(emulator, capsys):
    # They were only in the JSON manifest: the run billed sizes and styles the user never saw changed.
    code, out, err = run(capsys, *ADAPTED)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("plan: 2 x 2 = 4 cells (3 requests; 1 cell repeats another cell's request")
    assert lines[1:4] == NOTES
    assert any("same effective request as another cell" in line for line in lines[4:6])
    assert lines.index("4 cells, 0 failed, billed ¥0.44") > 5  # the outcome comes after


def test_a_grid_refused_by_the_budget_has_shown_its_notes_and_sent_nothing(emulator, capsys, monkeypatch):
    monkeypatch.setenv("WANX_NB_BUDGET_YUAN", "0.01")
    code, out, err = run(capsys, *ADAPTED)
    assert code == 1 and "budget" in err
    assert out.splitlines()[1:4] == NOTES
    assert emulator.request_log == []


def test_one_cell_is_one_cell(emulator, capsys):
    code, out, err = run(capsys, "grid", "a fox", "--x", "seed=1", "-o", "g.png")
    assert code == 0, err
    assert "1 cell, 0 failed, billed ¥0.14" in out.splitlines()


# ---- Ctrl-C: a clean message and exit 130, never a traceback --------------------------------------


def interrupted(call):
    """`call()` on this (the main) thread, with Ctrl-C pressed once it waits inside a run."""
    main = threading.main_thread().ident
    sent = []

    def press_ctrl_c() -> None:
        deadline = time.monotonic() + 30  # a watchdog only: a run that never waits fails the test, not hangs
        while not blocked_in_a_runs_wait(main):
            if time.monotonic() > deadline:
                return  # no signal: it would land in a later test
            time.sleep(0.01)
        sent.append(True)
        signal.pthread_kill(main, signal.SIGINT)

    # A suite started in the background by a non-interactive shell inherits SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = threading.Thread(target=press_ctrl_c, daemon=True)
    watcher.start()
    try:
        return call()
    except KeyboardInterrupt as exc:  # escaped the command: the user saw a traceback
        pytest.fail(f"Ctrl-C escaped cli.main as {exc!r}")
    finally:
        watcher.join(60)
        signal.signal(signal.SIGINT, previous)
        assert sent, "the run never waited"


@pytest.fixture
def stalled(monkeypatch, tmp_path):
    """The service's clock stands still: every task waits PENDING until canceled."""
    settings = EmulatorSettings(clock="fake", time_scale=0.001, pending_seconds=1e9, query_qps=None)
    return use_default_emulator(monkeypatch, tmp_path, Emulator(settings))


def test_ctrl_c_during_resume_is_a_clean_message_and_exit_130(stalled, capsys, tmp_path):
    # A task a stopped run left in the journal, still pending on the service: resume waits for it.
    request = GenerationRequest("an owl at dusk", model="wanx-v1", n=1, seed=2)

    async def submit() -> str:
        async with AsyncWanxClient(emulator=stalled) as client:
            return (await client.submit(request)).task.task_id

    task_id = asyncio.run(submit())
    Store(tmp_path / "store").record(JournalEntry(
        entry_id="left-behind", run_id="a-run-that-stopped", service="emulator", backend="emulator", mode="live",
        state=EntryState.SUBMITTED, given=request, sent=request, task_id=task_id, status="PENDING",
        created_at="2026-11-30T12:00:00.000+00:00", sent_at="2026-11-30T12:00:00.000+00:00", finished_at=None,
        request_id=None, code=None, message=None, billed_images=0, saved_images=0, price_yuan=0.16,
    ))  # fmt: skip
    code = interrupted(lambda: cli.main(["resume"]))
    out, err = capsys.readouterr()
    assert code == 130
    assert err.startswith("error: interrupted: ") and "Traceback" not in err + out


def test_ctrl_c_during_rerun_is_a_clean_message_and_exit_130(stalled, capsys, tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"generations": [{"request": REQUEST, "images": [{"index": 0, "sha256": SHA}]}]}))
    code = interrupted(lambda: cli.main(["rerun", str(manifest)]))
    out, err = capsys.readouterr()
    assert code == 130
    assert err.startswith("error: interrupted: ") and "Traceback" not in err + out


# ---- report, closed pipes, control characters ------------------------------------------------------


@pytest.mark.parametrize("content", ["not json", "{}", "[1]", '{"nbformat": 4, "nbformat_minor": 5, "cells": 5}'])
def test_report_of_a_file_that_is_no_notebook_names_it(emulator, capsys, tmp_path, content):
    bad = tmp_path / "bad1.json"
    bad.write_text(content, encoding="utf-8")
    code, out, err = run(capsys, "report", "--notebook", str(bad), "--out", str(tmp_path / "report"))
    assert (code, out) == (1, "")
    assert err.startswith(f"error: --notebook {bad}: not a Jupyter notebook (") and err.endswith("nothing was run\n")


def test_a_closed_output_pipe_ends_quietly(tmp_path):
    # `wanx-nb cost | head -1` printed "error: cannot use: Broken pipe".
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before the command writes
    env = {k: v for k, v in os.environ.items() if k not in ENV_CLEARED}
    env["WANX_NB_STORE"] = str(tmp_path / "store")
    env["PYTHONPATH"] = str(Path(cli.__file__).parents[1])  # the wanx_nb under test, wherever the cwd is
    try:
        done = subprocess.run([sys.executable, "-m", "wanx_nb.cli", "cost"], stdout=writer, stderr=subprocess.PIPE,
                              env=env, cwd=tmp_path, timeout=120)  # fmt: skip
    finally:
        os.close(writer)
    assert done.stderr == b""
    assert done.returncode == 141  # 128 + SIGPIPE, as a shell reports a command a closed pipe stopped


def test_control_characters_in_a_prompt_are_shown_escaped_and_sent_as_typed(emulator, capsys, tmp_path):
    code, out, err = run(capsys, "generate", ESC_PROMPT, "-m", "wanx-v1", "--seed", "4")
    assert code == 0, err
    assert "\x1b" not in out + err and "actual prompt: a \\x1b[31mred\\x1b[0m fox" in out
    (create,) = emulator.requests("create")
    assert create.json["input"]["prompt"] == ESC_PROMPT  # sent as typed
    (row,) = Store(tmp_path / "store").history()
    assert row.prompt == ESC_PROMPT  # stored as typed
    code, out, _ = run(capsys, "history")
    assert code == 0 and "\x1b" not in out and "a \\x1b[31mred\\x1b[0m fox" in out


# ---- wording, and option values starting with '-' ---------------------------------------------------


def test_counts_of_one_are_singular(emulator, capsys):
    code, out, _ = run(capsys, "generate", "a fox", "-m", "wanx-v1", "--seed", "1")
    assert code == 0 and "wrote 1 image and its JSON record to wanx_output/" in out
    code, out, _ = run(capsys, "cost")
    assert "¥0.16 for 1 image\n" in out


def test_a_size_starting_with_a_dash_is_named_as_an_invalid_size(emulator, capsys):
    code, out, err = run(capsys, "generate", "a fox", "--size", "-1024*1024")
    assert code == 2 and out == ""
    assert err.endswith("error: argument --size: '-1024*1024' is not a size: use W*H in whole pixels above 0, "
                        "e.g. 1024*1024\n")  # fmt: skip
    assert "expected one argument" not in err
    code, _, err = run(capsys, "generate", "a fox", "--negative", "-blurry")
    assert code == 2 and "'-blurry' starts with '-', so it was read as an option; " \
                          "if it is the value, write --negative=-blurry" in err
    code, _, err = run(capsys, "generate", "a fox", "--size", "--seed", "3")  # a value forgotten: argparse's words
    assert code == 2 and "argument --size: expected one argument" in err
    assert emulator.request_log == []


def test_a_grids_prompts_come_from_its_arguments_or_a_prompt_axis_not_both(emulator, capsys):
    code, out, err = run(capsys, "grid", "--x", "prompt=a fox|a cat", "--dry-run")
    assert code == 0, err
    assert out.startswith("dry run, nothing sent: 2 = 2 cells")
    code, out, err = run(capsys, "grid", "a body", "--x", "prompt=a fox|a cat", "--dry-run")
    assert code == 1 and "the prompts are given twice" in err
    code, out, err = run(capsys, "grid", "--x", "seed=1,2", "--dry-run")
    assert code == 1 and "no prompt: give it as an argument" in err
    assert emulator.request_log == []


@pytest.mark.parametrize("pair", [["--extend", "--no-extend"], ["--no-watermark", "--watermark"]])
def test_an_on_off_option_given_both_ways_is_refused_before_anything_is_sent(emulator, capsys, pair):
    code, out, err = run(capsys, "generate", "a fox", "-m", "wanx2.1-t2i-turbo", *pair)
    on = pair[0] if not pair[0].startswith("--no-") else pair[1]
    assert code == 2 and f"{on} and --no-{on[2:]} both given: use one of {on} / --no-{on[2:]}" in err
    assert emulator.request_log == []
