"""`reuse`: a grid run again shows what an earlier run made from the store and sends only the rest.

The case it is for: a grid stopped part way (an interrupt, poll errors), `%wanx resume` saves what was
billed, and the user runs the cell again; without reuse every cell would be paid for a second time.
"""

import json

import pytest
from IPython.core.error import UsageError

from wanx_nb._exceptions import TaskUnfinishedError
from wanx_nb._session import set_session
from wanx_nb.cli import main
from wanx_nb.comparison import compare, grid
from wanx_nb.emulator import Emulator, Fault

TURBO = {"model": "wanx2.1-t2i-turbo", "n": 1}


def creates(emulator: Emulator) -> int:
    return len(emulator.requests("create"))


def test_a_grid_left_unfinished_is_resumed_then_completed_without_paying_twice(session, emulator):
    emulator.script("query", Fault.status(400, code="InvalidParameter"))  # one cell's poll is refused
    first = grid("a fox", x="seed=1,2", session=session, display=False, **TURBO)
    unfinished = [c for c in first.cells if isinstance(c.error, TaskUnfinishedError)]
    assert len(unfinished) == 1 and creates(emulator) == 2
    assert "run the grid again with --reuse (reuse=True; the panel" in first.text()  # said where the user looks
    assert "run the grid again with --reuse" in first.html()

    report = session.resume()
    assert len(report.recovered) == 1 and creates(emulator) == 2  # saved without a second create

    again = grid("a fox", x="seed=1,2,3", session=session, display=False, reuse=True, **TURBO)
    assert creates(emulator) == 3  # only seed 3 was sent
    assert again.done and all(c.result is not None and c.result.saved_images == 1 for c in again.cells)
    assert [c.status_text() for c in again.cells] == ["ok 1/1, from the store", "ok 1/1, from the store", "ok 1/1"]
    assert (again.plan.requests, again.plan.reused, again.plan.images) == (3, 2, 1)
    assert again.plan.yuan == pytest.approx(0.14)  # the estimate counts only what is sent
    assert "2 of 3 requests made by an earlier run, shown from the store (billed then, not again)" in again.text()
    assert "run the grid again" not in again.text()
    # The cells show the very tasks the first run paid for.
    paid = {c.result.task_id if c.result is not None else c.error.task_id for c in first.cells}
    assert {c.result.task_id for c in again.cells[:2]} == paid
    manifest = again.manifest()
    assert [c["from_store"] for c in manifest["cells"]] == [True, True, False]
    assert manifest["plan"]["reused"] == 2


def test_without_reuse_a_grid_is_sent_again_and_a_dry_run_with_reuse_sends_nothing(session, emulator):
    grid("a fox", x="seed=1,2", session=session, display=False, **TURBO)
    plan = grid("a fox", x="seed=1,2", session=session, dry_run=True, reuse=True, **TURBO).plan
    assert creates(emulator) == 2 and str(plan).endswith("every request already made, shown from the store: nothing to send")
    shown = grid("a fox", x="seed=1,2", session=session, display=False, reuse=True, **TURBO)
    assert creates(emulator) == 2 and shown.done and shown.cost_yuan == pytest.approx(0.28)  # what they cost, then
    grid("a fox", x="seed=1,2", session=session, display=False, **TURBO)
    assert creates(emulator) == 4  # reuse is asked for, never assumed


def test_compare_reuses_by_the_request_as_given(session, emulator):
    compare("a fox", models=["wanx2.1-t2i-turbo", "wanx-v1"], seed=3, session=session, display=False)
    again = compare("a fox", models=["wanx2.1-t2i-turbo", "wanx-v1"], seed=3, session=session, display=False,
                    reuse=True)  # fmt: skip
    other_seed = compare("a fox", models=["wanx-v1"], seed=4, session=session, display=False, reuse=True)
    assert again.plan.reused == 2 and other_seed.plan.reused == 0 and creates(emulator) == 3


def test_a_download_that_failed_is_not_reused_until_resume_saves_it(session, emulator):
    emulator.script("image", Fault.body(b"<html>busy</html>"))  # not an image: not tried again
    first = grid("a fox", x="seed=11", session=session, display=False, **TURBO)
    (cell,) = first.cells
    assert cell.result.billed_images == 1 and cell.result.saved_images == 0
    assert "run the grid again with --reuse" in first.text()
    assert session.store.reusable(cell.request, session.service) is None
    session.resume()
    assert session.store.reusable(cell.request, session.service).saved_images == 1
    assert grid("a fox", x="seed=11", session=session, display=False, reuse=True, **TURBO).plan.reused == 1
    assert creates(emulator) == 1


# ---- the magic and the command line ---------------------------------------------------------


@pytest.fixture
def shell(wanx_shell, session):
    set_session(session)
    return wanx_shell


def test_the_magic_takes_reuse_for_grids_and_single_cells(shell, emulator):
    shell.run_cell_magic("wanx", "--x seed=1,2 -m wanx2.1-t2i-turbo", "a fox")
    again = shell.run_cell_magic("wanx", "--x seed=1,2,3 -m wanx2.1-t2i-turbo --reuse", "a fox")
    assert creates(emulator) == 3 and again.plan.reused == 2
    compared = shell.run_cell_magic("wanx", "--compare wanx2.1-t2i-turbo --seed 1 --reuse", "a fox")
    assert compared.plan.reused == 1 and creates(emulator) == 3
    # One cell: the grid's seed-2 request as the magic sends it alone is another request (n, size unset).
    first = shell.run_cell_magic("wanx", "-m wanx2.1-t2i-turbo --seed 2", "a fox")
    again = shell.run_cell_magic("wanx", "-m wanx2.1-t2i-turbo --seed 2 --reuse", "a fox")
    assert creates(emulator) == 4 and again.task_id == first.task_id
    assert "made by an earlier run, shown from the store: not paid again" in again.warnings[-1]
    planned = shell.run_cell_magic("wanx", "-m wanx2.1-t2i-turbo --seed 2 --reuse --dry-run", "a fox")
    assert f"--reuse: an earlier run made it (task {first.task_id}): it would be shown from the store" in (
        planned.data["text/plain"]
    )


def test_the_grid_and_generate_commands_take_reuse(tmp_path, capsys, monkeypatch, emulator):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.delenv("DASHSCOPE_HTTP_BASE_URL", raising=False)
    monkeypatch.setattr("wanx_nb.emulator._emulator._default", emulator)
    argv = ["--store", str(tmp_path / "store"), "grid", "a fox", "--x", "seed=1,2", "-m", "wanx2.1-t2i-turbo",
            "-o", str(tmp_path / "grid.png")]  # fmt: skip
    assert main(argv) == 0
    assert main([*argv, "--reuse"]) == 0
    out = capsys.readouterr().out
    assert creates(emulator) == 2
    assert "2 of 2 requests made by an earlier run, shown from the store (billed then, not again); they cost ¥0.28" in out
    assert "2 cells, 0 failed, billed ¥0.00" in out.splitlines()  # this run paid nothing
    manifest = json.loads((tmp_path / "grid.json").read_text(encoding="utf-8"))
    assert [c["from_store"] for c in manifest["cells"]] == [True, True]
    one = ["--store", str(tmp_path / "store"), "generate", "a fox", "-m", "wanx-v1", "--seed", "7", "-o",
           str(tmp_path / "out")]  # fmt: skip
    assert main(one) == 0 and main([*one, "--reuse"]) == 0
    out = capsys.readouterr().out
    assert creates(emulator) == 3 and "warning: made by an earlier run, shown from the store: not paid again" in out
    assert len(list((tmp_path / "out").glob("*.png"))) == 1  # the same image, written again from the store
