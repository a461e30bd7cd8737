"""Malformed input never escapes as a traceback, and never sends a request.

At least 300 malformed `%%wanx` option lines run through a real InteractiveShell with the extension
loaded, and at least 100 malformed `wanx-nb` command lines through `cli.main`, both on the in-process
emulator. Each must end in a clean error (IPython's one-line UsageError; the CLI's usage error, exit 2,
or `error: ...`, exit 1) with no traceback text, and the emulator must have seen no request.

The lines are built from a list of bad values per option, placed among valid companions chosen by a
seeded random generator, so every run checks the same lines.
"""

from __future__ import annotations

import random
import shlex

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from wanx_nb import cli
from wanx_nb._session import Session, set_session
from wanx_nb.emulator import Emulator, EmulatorSettings

CANARY = "sk-canary" + "".join(random.Random(7).choices("abcdef0123456789", k=24))  # built at run time
V2 = ["wanx2.1-t2i-turbo", "wanx2.1-t2i-plus", "wanx2.0-t2i-turbo", "wan2.2-t2i-flash", "wan2.5-t2i-preview"]

# (options, models it is bad for; None: bad for every model). Each is wrong on its own, whatever else the
# line holds, as long as the companions do not set the same option.
BAD: list[tuple[str, list[str] | None]] = [
    *((f"-n {v}", None) for v in ["0", "5", "-1", "two", "1.5", "99999999999999999999", "''", "nan", "４x"]),
    *((f"--seed {v}", None) for v in ["-1", "2147483648", "abc", "1e3", "9" * 25, "0x10", "''", "1_0_"]),
    ("--seed 2147483647 -n 4", None),
    ("--seed 2147483646 -n 3", None),
    *((f"--size {v}", None) for v in [
        "0*0", "0x0", "1024", "abc", "1024*", "*1024", "1024**1024", "99999999*1", "１０２４＊０", "-1024*1024",
        "10*10", "100000*100000", "1024*1024*1024", "nan*nan", "''", "'1024 by 1024'", "1e3*1e3", "1024,768",
    ]),  # fmt: skip
    *((f"--size {v}", ["wanx-v1"]) for v in ["1024*768", "512*512", "1440*1440", "1024X768"]),
    *((f"--style {v}", ["wanx-v1"]) for v in ["manga", "'<>'", "''", "'<anim>'", "ukiyo-e", "'oil  paint'"]),
    *((f"--ref-strength {v}", ["wanx-v1"]) for v in ["-0.1", "1.5", "nan", "inf", "strong", "''"]),
    *((f"--ref-mode {v}", ["wanx-v1"]) for v in ["paint", "''", "REPAINT-ish", "style"]),
    *((f"--ref {v}", ["wanx-v1"]) for v in ["/no/such/file.png", "https://例子.com/狐狸.png", "''"]),
    *((opt, ["wanx-v1"]) for opt in ["--extend", "--no-extend", "--watermark", "--no-watermark"]),
    *((opt, V2) for opt in ["--style anime", "--ref https://x/a.png", "--ref-strength 0.5", "--ref-mode refonly"]),
    *((f"-o {v}", None) for v in [
        "get_ipython", "In", "Out", "_", "__", "_1", "_i", "_ih", "class", "3x", "list", "print", "exit", "a-b", "''",
    ]),  # fmt: skip
    *((opt, None) for opt in [
        "--bogus", f"--api-key {CANARY}", "turbo", "'--negative \"unclosed'", '--negative "unclosed', "--seed", "-m", "--size", "-n",
        "--ref-strength", "-o", "--negative", "--limit 3", "-x", "--n 2", "--dry-run=yes",
    ]),  # fmt: skip
    *((f"-m {v}", None) for v in ["wanx-v9", "''", "WANX-V1", "gpt-4", "wanx2.1"]),
    *((f"--compare {v}", None) for v in [
        "--size 0*0", "wanx-v9", "-m wanx-v1", "--seed -1", "--seed 2147483647 -n 4", "-n 9", "--size 1024*1024*1",
        "wanx-v1 --style manga", "--ref-strength 2", "--size １０２４*０",
    ]),  # fmt: skip
]
VALID = {
    "V2": ["--seed 7", "-n 2", "--size 1024*768", "--no-extend", "--watermark", "--negative 'blurry, text'",
           "--dry-run", "--no-display", "--reproducible", "--negative=-blurry"],
    "V1": ["--seed 7", "-n 2", "--size 720*1280", "--style anime", "--negative 'no text'", "--dry-run",
           "--ref https://example.com/a.png", "--ref-strength 0.3", "--ref-mode refonly"],
}  # fmt: skip


def _options(text: str) -> set[str]:
    """The options a line sets (none when it does not split: an unclosed quote is the bad part)."""
    try:
        return {t.split("=")[0] for t in shlex.split(text) if t.startswith("-")}
    except ValueError:
        return set()


def malformed_lines(count: int, seed: int = 8) -> list[str]:
    """`count` distinct malformed option lines: each bad option, on models it is bad for, among valid ones."""
    rng = random.Random(seed)
    lines: list[str] = []
    seen: set[str] = set()
    attempt = 0
    while len(lines) < count:
        bad, models = BAD[attempt] if attempt < len(BAD) else rng.choice(BAD)  # each at least once
        attempt += 1
        model = rng.choice(models or [*V2, "wanx-v1"])
        family = "V1" if model == "wanx-v1" else "V2"
        taken = _options(bad) | {"-m", "--model"}
        companions = [c for c in VALID[family] if not _options(c) & taken]
        chosen = rng.sample(companions, rng.randint(0, 3))
        parts = [*chosen, bad]
        rng.shuffle(parts)
        # Without -m the magic's default model applies, for which a family-specific bad option may be fine.
        with_model = not bad.startswith(("-m ", "--compare")) and (models is not None or rng.random() < 0.8)
        line = " ".join(([f"-m {model}"] if with_model else []) + parts)
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return lines


MAGIC_LINES = malformed_lines(320)


def test_the_fuzz_covers_every_bad_option():
    assert len(MAGIC_LINES) >= 300
    for bad, _ in BAD:
        assert any(bad in line for line in MAGIC_LINES), bad


@pytest.fixture
def emulator():
    return Emulator(EmulatorSettings(time_scale=0.001))


@pytest.fixture
def shell(wanx_shell, tmp_path, emulator):
    set_session(Session(store=tmp_path / "store", emulator=emulator))
    return wanx_shell


def test_malformed_magic_lines_are_clean_usage_errors_and_send_nothing(shell, emulator):
    builtins_before = shell.user_ns.get("get_ipython")
    for line in MAGIC_LINES:
        with capture_output() as captured:
            result = shell.run_cell(f"%%wanx {line}\na red fox\n", store_history=False)
        shown = captured.stdout + captured.stderr
        assert isinstance(result.error_in_exec, UsageError), (line, shown)
        assert "Traceback" not in shown and "File \"" not in shown, (line, shown)
        assert shown.lstrip().startswith("UsageError:"), (line, shown)
        assert CANARY not in shown and CANARY[8:] not in shown, (line, shown)  # a typed key is not echoed
    assert len(emulator.tasks) == 0
    assert emulator.request_log == []
    assert shell.user_ns.get("get_ipython") is builtins_before  # -o get_ipython broke nothing
    assert shell.run_cell("1 + 1", store_history=False).result == 2


@pytest.mark.parametrize(
    "line",
    ["history --limit 99999999999999999999", "history --limit 0", "history --limit x", "history --since yesterday",
     "history --model wanx-v9", "history extra", "show", "show a b", "show no-such-task", "bogus", "cost now",
     "models --all", 'history --text "unclosed'],
)  # fmt: skip
def test_malformed_line_magics_are_clean_usage_errors(shell, emulator, line):
    with capture_output() as captured:
        result = shell.run_cell(f"%wanx {line}", store_history=False)
    shown = captured.stdout + captured.stderr
    assert isinstance(result.error_in_exec, UsageError), shown
    assert "Traceback" not in shown and shown.lstrip().startswith("UsageError:")
    assert emulator.request_log == []


# ---- the CLI ------------------------------------------------------------------------------------

CLI_BAD_ARGS = [
    ["emulator", "--port", "99999"], ["emulator", "--port", "0"], ["emulator", "--port", "http"],
    ["emulator", "--port", "-1"], ["emulator", "--time-scale", "-1"],
    ["emulator", "--time-scale", "nan"], ["emulator", "--time-scale", "inf"], ["emulator", "--time-scale", "x"],
    ["history", "--limit", "99999999999999999999"], ["history", "--limit", "0"], ["history", "--limit", "-3"],
    ["history", "--limit", "ten"], ["history", "--model", "wanx-v9"], ["history", "--since", "yesterday"],
    ["history", "--until", "31/01/2025"], ["history", "extra"], ["show"], ["show", "a", "b"],
    ["show", "no-such-task"], ["cost", "--bogus"], ["models", "wanx-v1"], ["resume", "now"], ["bogus"], [],
    ["--store"], ["export"], ["export", "/proc/none/m.json"], ["rerun"], ["rerun", "nowhere.json"],
    ["report", "--timeout", "0"], ["report", "--notebook", "missing.ipynb"], ["generate"],
    ["generate", "a fox", "-o", "/proc/none/out"], ["generate", ""], ["generate", "   "],
    ["--store", "bad.json", "history"], ["--store", "/proc/none", "generate", "x"],
]  # fmt: skip


def cli_lines() -> list[list[str]]:
    """The bad generate lines of the magic fuzz, as argv, plus bad lines of every other subcommand."""
    argvs = [list(a) for a in CLI_BAD_ARGS]
    magic_only = ("-o", "--output", "--compare", "--dry-run", "--no-display")
    for line in MAGIC_LINES:
        try:
            tokens = shlex.split(line)
        except ValueError:
            continue
        if any(t.split("=")[0] in magic_only for t in tokens):
            continue
        argvs.append(["generate", "a red fox", *tokens])
        if len(argvs) >= 130:
            break
    return argvs


CLI_LINES = cli_lines()


@pytest.fixture
def cli_emulator(monkeypatch, tmp_path):
    """No key anywhere, the store in tmp, the cwd in tmp, and the default emulator one we can watch."""
    for name in ("DASHSCOPE_API_KEY", "DASHSCOPE_HTTP_BASE_URL", "DASHSCOPE_REGION", "WANX_NB_MODE",
                 "WANX_NB_BUDGET_YUAN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANX_NB_STORE", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    fast = Emulator(EmulatorSettings(time_scale=0.001))
    monkeypatch.setattr("wanx_nb.emulator._emulator._default", fast)
    (tmp_path / "bad.json").write_text('{"generations": [{"request": {"prompt": "x", "n": 9}}]}', encoding="utf-8")
    return fast


def test_malformed_cli_lines_are_clean_errors_and_send_nothing(cli_emulator, capsys):
    assert len(CLI_LINES) >= 100
    for argv in [*CLI_LINES, ["rerun", "bad.json"]]:
        code = cli.main(argv)
        out, err = capsys.readouterr()
        assert code in (1, 2), (argv, code, out, err)
        assert "Traceback" not in out + err, (argv, err)
        assert CANARY[8:] not in out + err, (argv, err)
        if code == 2:  # argparse: the usage, then "PROG: error: ..."
            assert err.startswith("usage: wanx-nb") and "error: " in err, (argv, err)
        else:
            assert err.startswith("error: "), (argv, err)
    assert len(cli_emulator.tasks) == 0
    assert cli_emulator.request_log == []


@pytest.mark.parametrize(
    "variable, value",
    [("WANX_NB_BUDGET_YUAN", "abc"), ("WANX_NB_BUDGET_YUAN", "nan"), ("WANX_NB_MODE", "bogus"),
     ("WANX_NB_MODE", "replay please")],
)  # fmt: skip
def test_bad_environment_is_named_before_anything_is_sent(cli_emulator, capsys, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    for argv in (["generate", "a fox"], ["history"], ["cost"], ["resume"]):
        code = cli.main(argv)
        _, err = capsys.readouterr()
        assert code == 1 and err.startswith(f"error: {variable}={value!r}"), (argv, err)
    assert cli_emulator.request_log == []
