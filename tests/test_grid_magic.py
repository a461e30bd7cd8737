"""`%%wanx --x ... --y ...`: the grid from a magic line, in a real InteractiveShell over the emulator."""

import re

import pytest
from IPython.core.error import UsageError

from wanx_nb._session import Session, set_session
from wanx_nb.comparison import Grid
from wanx_nb.emulator import Emulator, EmulatorSettings


@pytest.fixture
def shell(wanx_shell, tmp_path):
    emulator = Emulator(EmulatorSettings(time_scale=0.001))
    set_session(Session(store=tmp_path / "store", emulator=emulator))
    return wanx_shell, emulator


def test_a_magic_grid_line_runs_the_axes_with_the_other_options_fixed(shell):
    ip, emulator = shell
    built = ip.run_cell_magic("wanx", "--x model=wanx-v1,wanx2.1-t2i-turbo --y seed=1,2 --size 1024x768 -o g",
                              "a red fox in snow")  # fmt: skip
    assert isinstance(built, Grid) and ip.user_ns["g"] is built and built.done
    assert (built.x.name, built.y.name) == ("model", "seed") and len(emulator.requests("create")) == 4
    v1 = built.cell_at(0, 1, 0)
    assert (v1.request.model, v1.request.seed, v1.request.size) == ("wanx-v1", 2, "1280*720")
    assert built.cell_at(0, 0, 1).request.size == "1024*768"


def test_an_n_axis_is_not_overridden_by_the_default_n(shell):
    ip, _ = shell
    built = ip.run_cell_magic("wanx", "--x n=1,2 --dry-run", "a fox")
    assert [c.request.n for c in built.cells] == [1, 2]


def test_a_magic_grid_dry_run_sends_nothing_and_states_the_plan(shell):
    ip, emulator = shell
    built = ip.run_cell_magic("wanx", "--x style=anime,sketch,watercolor -m wanx-v1 --dry-run", "a fox")
    assert emulator.request_log == [] and built.plan.cells == 3
    assert "dry run, nothing sent: 3 = 3 cells" in built.text()


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("--x seed=1,x", "--seed 'x' is not allowed"),
        ("--x colour=red", "an axis is one of"),
        ("--x model=all -m wanx-v1", "-m and a model axis"),
        ("--x seed=1 --compare", "not both"),
        ("--y style=bogus -m wanx-v1", "--y='style=bogus': one of <auto>, <photography>"),
        ("--x seed=1,2 --seed 5", "--seed=5: either fixed or an axis, not both"),
        # the option typed is blamed, with the name as typed; a grid is not "a request for model 'grid'"
        ("--compare wanx-v1 wanx-v9", "invalid grid (1 problem):\n  - --compare='wanx-v9': unknown model 'wanx-v9'"),
        ("--compare wanx-v1,bogus", "--compare='bogus': unknown model 'bogus'. Known models: wanx2.1-t2i-plus"),
    ],
)
def test_bad_grid_lines_are_usage_errors_and_send_nothing(shell, line, words):
    ip, emulator = shell
    with pytest.raises(UsageError, match=re.escape(words)):
        ip.run_cell_magic("wanx", line, "a fox")
    assert emulator.request_log == []
