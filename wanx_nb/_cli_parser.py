"""The `wanx-nb` command line: its argument readers, the parser of every command, and the request it describes."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from ._exceptions import redact
from ._params import add_history_options, add_request_options, namespace_params, param_for, toggle_conflict
from ._request import DEFAULT_MODEL, GenerationRequest

__all__ = ["request_from_args"]


def _request_args(p: argparse.ArgumentParser) -> None:
    """The request options, from the one parameter table (the magic's options, spelled the same).

    -n stays None when not typed: the grid tells a typed -n (fixed) from an n axis; generate fills in 1.
    """
    add_request_options(p, {"model": DEFAULT_MODEL, "n": "1; the API's own default is 4"})


def request_from_args(args: argparse.Namespace) -> GenerationRequest:
    """The GenerationRequest that `generate`'s options describe (prompt included), not yet checked."""
    return GenerationRequest(args.prompt, **{"n": 1, **namespace_params(args)})


def _whole_number(low: int, high: int | None, allowed: str) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high], else an error saying what is allowed."""

    def read(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r} {allowed}")
        return value

    return read


def _is_size(flag: str) -> bool:
    try:
        return param_for(flag).name == "size"
    except KeyError:  # --x, --out...: not a request parameter
        return False


_read_seconds = _whole_number(1, None, "is not allowed; use a whole number of seconds, at least 1")
_read_cell_px = _whole_number(32, 1024, "is not allowed; use a whole number of pixels from 32 to 1024")


_NO_VALUE = re.compile(r"argument (\S+): expected one argument")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help texts may hold a literal `%` (the table's help mentions `%wanx`),
    and which explains a value starting with '-' (argparse reads it as an option)."""

    _argv: list[str] = []

    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        if "help" in kwargs and kwargs["help"]:
            kwargs["help"] = kwargs["help"].replace("%", "%%")
        return super().add_argument(*args, **kwargs)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._argv = list(sys.argv[1:] if args is None else args)  # each subparser is given its own part
        parsed, extra = super().parse_known_args(args, namespace)
        conflict = toggle_conflict(parsed)  # `--extend --no-extend`: refused, not the last one winning
        if conflict is not None:
            self.error(conflict)
        return parsed, extra

    def error(self, message: str) -> NoReturn:
        # redact: a key typed by mistake (`--api-key sk-...`) is not echoed back.
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {redact(self._explain_dash_value(message))}\n")

    def _explain_dash_value(self, message: str) -> str:
        """argparse's "expected one argument" for `--size -1024*1024`: say what was typed and what to do."""
        match = _NO_VALUE.fullmatch(message)
        if match is None:
            return message
        flags = match.group(1).split("/")
        for flag, value in zip(self._argv, self._argv[1:]):
            if flag not in flags or not value.startswith("-") or value.split("=")[0] in self._option_string_actions:
                continue
            if _is_size(flag):  # no size starts with '-': the value itself is wrong
                return f"argument {flag}: {value!r} is not a size: use W*H in whole pixels above 0, e.g. 1024*1024"
            return (f"argument {flag}: {value!r} starts with '-', so it was read as an option; "
                    f"if it is the value, write {flag}={value}")  # fmt: skip
        return message


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: ...)" where a help text does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action) or text


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="wanx-nb", description="Tongyi Wanxiang text-to-image from the shell.", formatter_class=_Formatter
    )
    parser.add_argument("--store", help="store directory (default: $WANX_NB_STORE or ./wanx_store)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, formatter_class=_Formatter)

    gen = command("generate", "generate images and write them with a JSON record each")
    gen.add_argument("prompt", help="what to draw (after `--` when it starts with '-')")
    _request_args(gen)
    gen.add_argument("-o", "--out", default="wanx_output", help="output directory")
    gen.add_argument("--reproducible", action="store_true", help="no prompt rewriting (or re-send a recorded one)")
    gen.add_argument("--reuse", action="store_true",
                     help="if an earlier run made this request (every image saved, same service), write that, not paid again")

    emu = command("emulator", "serve the offline DashScope emulator on 127.0.0.1")
    from .emulator._serve_options import add_serve_options  # light; the emulator itself loads only to serve

    add_serve_options(emu)

    command("models", "list the models, prices and limits")
    command("resume", "recover tasks submitted but never saved (within 24 h)")

    hist = command("history", "stored generations, newest first")
    add_history_options(hist)
    show = command("show", "one stored result: its images, seeds, prompts and cost")
    show.add_argument("task_id", metavar="TASK_ID", help="a task id (find them with `wanx-nb history`)")
    command("cost", "what the store's generations have cost")

    exp = command("export", "write a manifest of the store's generations")
    exp.add_argument("manifest", help="path of the JSON manifest to write")

    rep = command("report", "execute a notebook headless and write it as HTML")
    rep.add_argument("--notebook", default="notebooks/02_model_comparison.ipynb", help="the notebook to run")
    rep.add_argument("--out", default="report", help="directory for the HTML and whatever the notebook saves")
    rep.add_argument("--timeout", type=_read_seconds, default=600, help="seconds per cell")

    store = command("store", "check the store, or rebuild its index from the images' provenance")
    store.add_argument("action", choices=["check", "rebuild"], help="check: report problems; rebuild: re-index")
    store.add_argument("dir", nargs="?", help="store directory (default: --store, $WANX_NB_STORE or ./wanx_store)")

    grd = command("grid", "an X/Y/Z grid: one PNG with its axis legend, and a JSON manifest of every cell")
    grd.add_argument("prompt", nargs="*",
                     help="the prompt; several prompts become an axis (Y unless placed); none with a prompt axis "
                          "(--x 'prompt=A|B')")
    for letter in ("x", "y", "z"):
        grd.add_argument(f"--{letter}", default=None, metavar="NAME=V1,V2",
                         help="an axis: model=all, seed=1,2,3, style=anime,sketch, size=1024*1024,1280*720, extend=on,off")
    _request_args(grd)
    grd.add_argument("-o", "--out", default="grid.png", help="the PNG to write (the manifest goes next to it, .json)")
    grd.add_argument("--cell-px", type=_read_cell_px, default=256, help="pixels per cell in the PNG, 32-1024")
    grd.add_argument("--dry-run", action="store_true",
                     help="state the cells, images, cost, time and adaptations; send and write nothing")
    grd.add_argument("--reuse", action="store_true",
                     help="show what an earlier run made (every image saved, same service) from the store, not paid "
                          "again: after an interrupt and `wanx-nb resume`, only what is missing is sent")

    rerun = command("rerun", "run a manifest's generations again and report which images differ")
    rerun.add_argument("manifest", help="a manifest written by `wanx-nb export`")
    return parser
