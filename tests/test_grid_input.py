"""What a grid refuses before anything is sent, and what a finished grid says it cost.

An unknown model, prompts given twice (or not at all), a size none of the grid's models takes: each is
a clear error naming what the user typed, from `%%wanx` (a UsageError) and from Python (ValidationError
or TypeError), never a traceback and never a silently different grid.
"""

import re

import pytest
from IPython.core.error import UsageError

from wanx_nb._exceptions import ValidationError
from wanx_nb._session import Session, set_session
from wanx_nb.comparison import Grid, compare, grid
from wanx_nb.emulator import Emulator, EmulatorSettings


@pytest.fixture
def shell(wanx_shell, tmp_path):
    emulator = Emulator(EmulatorSettings(time_scale=0.001))
    session = Session(store=tmp_path / "store", emulator=emulator)
    set_session(session)
    return wanx_shell, emulator, session


def test_an_unknown_model_in_a_grid_is_refused_as_in_a_plain_cell(shell):
    ip, emulator, session = shell
    with pytest.raises(UsageError) as plain:
        ip.run_cell_magic("wanx", "-m wanx2.1-t2i-trubo", "a fox")
    for line in ("-m wanx2.1-t2i-trubo --x seed=1,2", "-m wanx2.1-t2i-trubo --x seed=1,2 --dry-run"):
        with pytest.raises(UsageError) as info:
            ip.run_cell_magic("wanx", line, "a fox")
        assert str(info.value) == str(plain.value)
        assert "--model='wanx2.1-t2i-trubo': not a known model" in str(info.value) and "did you mean" in str(info.value)
    with pytest.raises(ValidationError, match=re.escape("model='nope': not a known model 'nope'; use one of")):
        grid("a", x="seed=1,2", model="nope", dry_run=True, session=session)
    assert emulator.request_log == []


# ---- the prompts come from one place --------------------------------------------------------------


def test_a_prompt_axis_with_a_cell_body_is_refused_and_with_an_empty_body_plans_the_axis(shell):
    ip, emulator, _ = shell
    with pytest.raises(UsageError, match="either the prompt\\(s\\) or a prompt axis, not both") as info:
        ip.run_cell_magic("wanx", '--dry-run --x "prompt=a cat|a dog"', "this body prompt is ignored")
    assert "--x" in str(info.value) and "this body prompt is ignored" in str(info.value)
    built = ip.run_cell_magic("wanx", '--dry-run --x "prompt=a cat|a dog"', "\n")
    assert [c.request.prompt for c in built.cells] == ["a cat", "a dog"] and built.prompts == ("a cat", "a dog")
    # As typed in a notebook: a blank line below the magic, or the line magic (IPython itself refuses a
    # %%wanx with nothing at all below it, and suggests %wanx).
    ran = ip.run_cell('%%wanx --dry-run --y "prompt=a cat|a dog" --x seed=1,2 -o g\n\n')
    assert ran.error_in_exec is None and ip.user_ns["g"].plan.cells == 4
    line = ip.run_line_magic("wanx", '--dry-run --x "prompt=a cat|a dog"')
    assert isinstance(line, Grid) and [c.request.prompt for c in line.cells] == ["a cat", "a dog"]
    with pytest.raises(UsageError, match="the cell body is the prompt, and it is empty"):
        ip.run_cell_magic("wanx", "--dry-run --x seed=1,2", "  \n")
    assert emulator.request_log == []


def test_grid_takes_its_prompts_from_the_argument_or_a_prompt_axis_never_both(session, emulator):
    for nothing in (None, "", [], ["  "]):
        built = grid(nothing, x="prompt=c|d", dry_run=True, session=session)
        assert [c.request.prompt for c in built.cells] == ["c", "d"]
    with pytest.raises(ValidationError, match=re.escape("prompt_or_prompts=['a cat', 'a bird']: either the prompt(s) "
                                                        "or a prompt axis, not both")):  # fmt: skip
        grid(["a cat", "a bird"], x="prompt=c|d", dry_run=True, session=session)
    with pytest.raises(ValidationError, match=re.escape("prompt_or_prompts='a fox': either the prompt(s)")):
        grid("a fox", y="prompt=c|d", dry_run=True, session=session)
    with pytest.raises(ValidationError, match=re.escape("prompt_or_prompts=None: a prompt, a list of prompts, or None "
                                                        "with a prompt axis")):  # fmt: skip
        grid(None, x="seed=1,2", session=session)
    with pytest.raises(TypeError, match=re.escape("prompt_or_prompts=5: a prompt (str) or a list of prompts, not int")):
        grid(5, x="seed=1,2", session=session)
    with pytest.raises(TypeError, match=re.escape("prompt_or_prompts: each prompt is a str, not int (3)")):
        grid(["a fox", 3], x="seed=1,2", session=session)
    with pytest.raises(ValidationError, match=re.escape("prompts=None: at least one prompt")):
        compare(None, session=session)
    assert emulator.request_log == []


def test_a_field_ipython_left_unfilled_on_the_option_line_is_refused(shell):
    ip, emulator, _ = shell
    # IPython fills {name} on the option line only when every name of the line is defined; otherwise the
    # line arrives as typed, and "{nomood} cat" would be drawn.
    ran = ip.run_cell('%%wanx --dry-run --x "prompt={nomood} cat|dog"\n\n')
    assert isinstance(ran.error_in_exec, UsageError)
    assert str(ran.error_in_exec) == ("{nomood} in --x: the name 'nomood' is not defined in the notebook. Define it "
                                      "first, or write {{ and }} for literal braces.")  # fmt: skip
    ran = ip.run_cell('%%wanx --dry-run --x "prompt={{kept}} cat|{nomood.attr} dog"\n\n')  # {{ }}: not a field
    assert str(ran.error_in_exec).startswith("{nomood.attr} in --x: the name 'nomood' is not defined")
    ran = ip.run_cell('%%wanx --dry-run --x seed=1,2 --y "negative=blurry|{nomood}"\na fox\n')
    assert str(ran.error_in_exec).startswith("{nomood} in --y: the name 'nomood'")
    ran = ip.run_cell('%%wanx --dry-run --x seed=1,2 --negative "{nomood}"\na fox\n')
    assert str(ran.error_in_exec).startswith("{nomood} in --negative: the name 'nomood'")
    ip.user_ns["mood"] = "calm"
    ran = ip.run_cell('%%wanx --dry-run --x "prompt={mood} cat|dog" -o g\n\n')
    assert ran.error_in_exec is None and [c.request.prompt for c in ip.user_ns["g"].cells] == ["calm cat", "dog"]
    assert emulator.request_log == []


def test_literal_braces_on_the_option_line_stay_literal_whatever_the_notebook_defines(shell):
    # IPython turns {{x}} into {x} when it fills the line, which could not be told from a field it left
    # unfilled: the magic reads its line as typed, checks it, then fills it as IPython does.
    ip, emulator, _ = shell
    ran = ip.run_cell('%%wanx --dry-run --negative "no {{x}} here" -o r\na fox\n')
    assert ran.error_in_exec is None and ip.user_ns["r"].negative_prompt == "no {x} here"
    ip.user_ns.update(x="filled", mood="calm", n_images=2)
    ran = ip.run_cell('%%wanx --dry-run --negative "no {{x}}, {mood}" -n $n_images -o r\na fox\n')
    assert ran.error_in_exec is None and (ip.user_ns["r"].negative_prompt, ip.user_ns["r"].n) == ("no {x}, calm", 2)
    assert emulator.request_log == []


# ---- sizes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("--size 100*100 --x seed=1,2", "--size='100*100': a size at least one of the grid's models takes as given"),
        ("--size 100*100 --x seed=1,2 --dry-run", "wanx2.1-t2i-turbo: W*H with each side between 512 and 1440 pixels"),
        ("--size 100*100 --compare", "wanx2.1-t2i-plus, wanx2.1-t2i-turbo, wanx2.0-t2i-turbo: W*H with each side "
                                     "between 512 and 1440 pixels; wanx-v1: one of 1024*1024"),
        ("--x size=9*9,1024*1024 --dry-run", "--x='size=9*9': a size at least one of the grid's models takes"),
        ("--x model=wanx-v1,wanx2.1-t2i-turbo --y size=1024*768,100*100", "--y='size=100*100'"),
    ],
)
def test_a_size_none_of_the_grids_models_takes_is_refused_not_fitted(shell, line, words):
    ip, emulator, _ = shell
    with pytest.raises(UsageError, match=re.escape(words)):
        ip.run_cell_magic("wanx", line, "a fox")
    assert emulator.request_log == []


def test_a_size_one_model_takes_is_still_fitted_for_the_others(shell):
    ip, _, session = shell
    built = ip.run_cell_magic("wanx", "--x model=wanx-v1,wanx2.1-t2i-turbo --y size=1024*768,1024*1024 --dry-run",
                              "a fox")  # fmt: skip
    assert [c.request.size for c in built.cells] == ["1280*720", "1024*768", "1024*1024", "1024*1024"]
    with pytest.raises(ValidationError, match=re.escape("--size='100*100': a size at least one")):
        grid("a fox", x="seed=1,2", size="100x100", dry_run=True, session=session)


def test_a_default_size_no_model_of_the_grid_takes_is_blamed_on_its_setting(shell):
    ip, emulator, _ = shell
    ip.run_line_magic("config", "WanxMagics.default_size = '2048*2048'")  # a 2026 size, not a V2 one
    with pytest.raises(UsageError, match=re.escape("%config WanxMagics.default_size='2048*2048': a size at least")):
        ip.run_cell_magic("wanx", "--x seed=1,2", "a fox")
    with pytest.raises(UsageError, match=re.escape("%config WanxMagics.default_size='2048*2048'")):
        ip.run_cell_magic("wanx", "--compare", "a fox")
    assert emulator.request_log == []


# ---- what a reused grid says it cost -------------------------------------------------------------


def test_a_fully_reused_grid_says_this_run_paid_nothing_and_what_the_cells_cost_then(shell):
    ip, emulator, _ = shell
    line = "--x seed=1,2 --y model=wanx-v1,wanx2.1-t2i-turbo"
    first = ip.run_cell_magic("wanx", line, "a fox")
    assert "done: 4 images, 0 failed cells, ¥0.60" in first.text() and "actual cost ¥0.60" in first.html()
    again = ip.run_cell_magic("wanx", line + " --reuse", "a fox")
    assert len(emulator.requests("create")) == 4  # nothing sent again
    text, html = again.text(), again.html()
    assert "done: 4 images, 0 failed cells; this run paid ¥0.00\n" in text
    assert ("  4 of 4 requests made by an earlier run, shown from the store (billed then, not again); they cost ¥0.60"
            in text)  # fmt: skip
    assert "¥0.60" not in text.split("\n  4 of 4")[0]  # never on the done line, as if spent now
    assert "done · this run paid ¥0.00; 4 of 4 requests made by an earlier run" in html and "actual cost" not in html
    assert "from the store (billed ¥0.14 then)" in html  # each reused cell
    dry = ip.run_cell_magic("wanx", line + " --reuse --dry-run", "a fox")
    assert "every request already made, shown from the store: nothing to send" in dry.text()
    assert "done" not in dry.text() and "¥0.60" not in dry.text() and "done ·" not in dry.html()


def test_a_partly_reused_grid_says_what_this_run_paid(session, emulator):
    grid("a fox", x="seed=1,2", session=session, display=False, model="wanx2.1-t2i-turbo")
    again = grid("a fox", x="seed=1,2,3", session=session, display=False, reuse=True, model="wanx2.1-t2i-turbo")
    assert again.paid_yuan == pytest.approx(0.14) and again.cost_yuan == pytest.approx(0.42)
    assert "done: 3 images, 0 failed cells; this run paid ¥0.14" in again.text()
    assert "2 of 3 requests made by an earlier run, shown from the store (billed then, not again); they cost ¥0.28" in (
        again.text())
