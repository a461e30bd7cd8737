"""%%wanx and %wanx input a tester found taken silently or answered wrongly: both halves of an on/off
pair, a default size no model takes, a page past the end, and a dry run that spoke as if it had sent."""

import re

import pytest
from IPython.core.error import UsageError

from wanx_nb._session import Session, set_session
from wanx_nb.emulator import Emulator, EmulatorSettings
from wanx_nb.magics import WanxMagics


@pytest.fixture
def shell(wanx_shell, tmp_path):
    emulator = Emulator(EmulatorSettings(time_scale=0.001))
    session = Session(store=tmp_path / "store", emulator=emulator)
    set_session(session)
    return wanx_shell, emulator, session


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("--extend --no-extend", "use one of --extend / --no-extend"),
        ("--no-extend --dry-run --extend", "use one of --extend / --no-extend"),
        ("--watermark --no-watermark --dry-run", "use one of --watermark / --no-watermark"),
        ("--no-water --watermark", "use one of --watermark / --no-watermark"),  # argparse's abbreviations too
        ("--x seed=1,2 --extend --no-extend", "use one of --extend / --no-extend"),
    ],
)
def test_both_halves_of_an_on_off_pair_are_refused(shell, line, words):
    ip, emulator, _ = shell
    with pytest.raises(UsageError, match=re.escape(words)):
        ip.run_cell_magic("wanx", line, "a fox")
    assert emulator.request_log == []


def test_one_half_of_an_on_off_pair_twice_is_fine(shell):
    ip, _, _ = shell
    ip.run_cell_magic("wanx", "--no-extend --no-extend --dry-run -o req", "a fox")
    assert ip.user_ns["req"].prompt_extend is False


def test_a_default_size_no_model_takes_is_refused_where_it_is_set(shell, caplog):
    ip = shell[0]
    magics = ip.magics_manager.registry["WanxMagics"]
    ran = ip.run_cell("%config WanxMagics.default_size = '9*9'")
    assert ran.error_in_exec is None and "Traceback" not in caplog.text
    assert "WanxMagics.default_size='9*9': a size some model takes, e.g. 1024*1024" in caplog.text
    assert magics.default_size is None
    for spelling, kept in (("2048x2048", "2048*2048"), ("512 * 512", "512*512"), ("1280×720", "1280*720")):
        ip.run_line_magic("config", f"WanxMagics.default_size = {spelling!r}")  # some model takes each
        assert magics.default_size == kept
    assert isinstance(magics, WanxMagics)


def test_history_past_the_last_page_says_how_many_pages_there_are(shell):
    ip, _, _ = shell
    for seed in (1, 2, 3):
        ip.run_cell_magic("wanx", f"--seed {seed}", "a fox")
    with pytest.raises(UsageError, match=re.escape("--page 99999: past the end; 3 stored generations match, 2 pages "
                                                   "of 2 (--page 1 to 2)")):  # fmt: skip
        ip.run_line_magic("wanx", "history --limit 2 --page 99999 --no-thumbnails")
    last = ip.run_line_magic("wanx", "history --limit 2 --page 2 --no-thumbnails")
    assert "a fox" in last._repr_mimebundle_()[0]["text/plain"]
    nothing = ip.run_line_magic("wanx", "history --model wanx-v1 --page 3 --no-thumbnails")
    assert nothing._repr_mimebundle_()[0]["text/plain"] == "no stored generations match"


def test_history_filters_are_checked_as_wanx_nb_history_checks_them(shell):
    ip = shell[0]
    with pytest.raises(UsageError, match=re.escape("--model='nope': unknown model 'nope'")):
        ip.run_line_magic("wanx", "history --model nope")
    with pytest.raises(UsageError, match=re.escape("--until='soon': an ISO 8601 time such as 2025-01-31T08:00")):
        ip.run_line_magic("wanx", "history --until soon")


def test_a_reproducible_dry_run_says_it_would_re_send_the_recorded_prompt(shell):
    ip, emulator, _ = shell
    ip.run_cell_magic("wanx", "--extend --seed 3", "a fox")
    sent = len(emulator.requests("create"))
    dry = ip.run_cell_magic("wanx", "--reproducible --extend --dry-run --seed 3", "a fox")
    text = dry._repr_mimebundle_()[0]["text/plain"]
    assert "note: reproducible: would re-send the recorded rewritten prompt with prompt_extend off" in text
    assert "re-sent" not in text and len(emulator.requests("create")) == sent
