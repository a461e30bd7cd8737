"""Parsing for `%%wanx` and `%wanx`: option lines in, frozen typed objects out.

Options are split shell-style (IPython's `arg_split`), so quoted values work:
`%%wanx --negative "blurry, text" --seed 7`. Every parse error is an IPython `UsageError` carrying the
usage text: never a traceback, never a SystemExit. Help texts are module constants.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import MagicArgumentParser
from IPython.utils.process import arg_split

__all__ = [
    "CELL_HELP",
    "CellArgs",
    "HistoryArgs",
    "LINE_HELP",
    "SUBCOMMANDS",
    "cell_parser",
    "history_parser",
    "interpolate",
    "normalize_size",
    "normalize_style",
    "parse_cell_line",
    "parse_history_line",
    "usage",
]

CELL_DESCRIPTION = """\
Generate images with Tongyi Wanxiang. The cell body is the prompt (all of it, stripped).

`{name}` and `{obj.attr}` in the prompt are filled from the notebook's variables; write `{{` and `}}`
for literal braces. The result is returned (it renders as a gallery) and its full PNGs are saved in the
store and copied to `WanxMagics.output_dir`.

The API key is never an option: set the DASHSCOPE_API_KEY environment variable. Without it the
offline emulator answers, and every result says so.

Defaults come from `%config WanxMagics.<name> = ...` (see `%wanx config`). `-n` defaults to 1
(`WanxMagics.default_n`), cheaper than the API's own default of 4 while exploring.

Examples:

    %%wanx -m wanx2.1-t2i-plus -n 2 --size 1280x720 --seed 7
    a red fox in fresh snow, watercolor

    %%wanx -m wanx-v1 --style anime --ref ./sketch.png --ref-mode refonly -o fox
    a fox, {mood} light
"""

MODEL_HELP = "model id (default: WanxMagics.default_model; list them with %wanx models)"
N_HELP = "images per task, 1-4 (default: WanxMagics.default_n = 1; the API itself would make 4)"
SIZE_HELP = "image size W*H or WxH, e.g. 1024*1024 (default: the model's)"
SEED_HELP = "seed of the first image; image i uses seed + i (default: picked for you and shown)"
NEGATIVE_HELP = "negative prompt: what not to draw"
EXTEND_HELP = "let the service rewrite the prompt (prompt_extend; V2 models; server default on)"
NO_EXTEND_HELP = "send the prompt as written (prompt_extend off)"
WATERMARK_HELP = "add the 'AI生成' watermark (V2 models)"
NO_WATERMARK_HELP = "no watermark (the server default)"
STYLE_HELP = "wanx-v1 style, e.g. anime, watercolor, '3d cartoon' or '<oil painting>'"
REF_HELP = "wanx-v1 reference image: a local path or an http(s) URL"
REF_STRENGTH_HELP = "wanx-v1: 0.0-1.0, how closely to follow the reference (server default 0.5)"
REF_MODE_HELP = "wanx-v1: repaint (follow the content) or refonly (follow the style)"
OUTPUT_HELP = "also store the result in the notebook variable NAME"
REPRODUCIBLE_HELP = "turn prompt rewriting off, re-sending the recorded rewritten prompt when there is one"
COMPARE_HELP = "run the comparison grid over these models instead (none listed: the default set)"
DRY_RUN_HELP = "validate and show the cost estimate; send nothing"
NO_DISPLAY_HELP = "do not display the result (use with -o)"
HELP_HELP = "show this help"

SUBCOMMANDS: dict[str, str] = {
    "models": "the models: family, price per image, limits, sizes, parameters; and the backend in use",
    "config": "the current settings (change them with %config WanxMagics.<name> = ...)",
    "help": "this help, and the %%wanx options",
    "panel": "the interactive panel (widgets)",
    "history": "stored generations: %wanx history [--model M] [--text T] [--since ISO] [--limit N]",
    "show": "re-display a stored result: %wanx show TASK_ID",
    "resume": "collect tasks a crash or restart left running (within 24 h)",
    "cost": "what this session and the whole store have cost",
}

LINE_HELP = (
    "%wanx SUBCOMMAND: helpers around %%wanx.\n\n"
    + "\n".join(f"  {name:<8} {text}" for name, text in SUBCOMMANDS.items())
    + "\n\nThe API key is read from DASHSCOPE_API_KEY only; it is never shown."
)

_STYLE_SEPARATORS = re.compile(r"[-_\s]+")
_SIZE = re.compile(r"^\s*(\d+)\s*[*xX×]\s*(\d+)\s*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# `{{`, `}}` or `{name}` / `{name.attr.attr}`; other braces stay as they are.
_FIELD = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}")


class _Parser(MagicArgumentParser):
    """MagicArgumentParser whose help strings may contain a literal `%` (as in `%wanx models`)."""

    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        if "help" in kwargs:
            kwargs["help"] = kwargs["help"].replace("%", "%%")
        return super().add_argument(*args, **kwargs)


def _build_cell_parser() -> MagicArgumentParser:
    p = _Parser(prog="%wanx", description=CELL_DESCRIPTION)
    p.add_argument("-m", "--model", default=None, help=MODEL_HELP)
    p.add_argument("-n", type=int, default=None, help=N_HELP)
    p.add_argument("--size", default=None, help=SIZE_HELP)
    p.add_argument("--seed", type=int, default=None, help=SEED_HELP)
    p.add_argument("--negative", default=None, metavar="TEXT", help=NEGATIVE_HELP)
    p.add_argument("--extend", dest="prompt_extend", action="store_const", const=True, default=None, help=EXTEND_HELP)
    p.add_argument("--no-extend", dest="prompt_extend", action="store_const", const=False, help=NO_EXTEND_HELP)
    p.add_argument("--watermark", dest="watermark", action="store_const", const=True, default=None, help=WATERMARK_HELP)
    p.add_argument("--no-watermark", dest="watermark", action="store_const", const=False, help=NO_WATERMARK_HELP)
    p.add_argument("--style", default=None, help=STYLE_HELP)
    p.add_argument("--ref", default=None, metavar="PATH_OR_URL", help=REF_HELP)
    p.add_argument("--ref-strength", type=float, default=None, metavar="X", help=REF_STRENGTH_HELP)
    p.add_argument("--ref-mode", default=None, metavar="MODE", help=REF_MODE_HELP)
    p.add_argument("-o", "--output", default=None, metavar="NAME", help=OUTPUT_HELP)
    p.add_argument("--reproducible", action="store_true", help=REPRODUCIBLE_HELP)
    p.add_argument("--compare", nargs="*", default=None, metavar="MODEL", help=COMPARE_HELP)
    p.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)
    p.add_argument("--no-display", action="store_true", help=NO_DISPLAY_HELP)
    p.add_argument("-h", "--help", action="store_true", help=HELP_HELP)
    return p


def _build_history_parser() -> MagicArgumentParser:
    p = _Parser(prog="wanx history", description="Stored generations, newest first.")
    p.add_argument("--model", default=None, help="only this model")
    p.add_argument("--text", default=None, help="prompt (or rewritten prompt) contains TEXT")
    p.add_argument("--since", default=None, metavar="ISO", help="submitted at or after this time (ISO 8601, UTC)")
    p.add_argument("--until", default=None, metavar="ISO", help="submitted at or before this time")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="at most N rows (default 20)")
    p.add_argument("--no-thumbnails", action="store_true", help="leave the thumbnails out (faster)")
    return p


cell_parser = _build_cell_parser()
history_parser = _build_history_parser()
CELL_HELP = cell_parser.format_help()


def _parse(parser: MagicArgumentParser, line: str) -> argparse.Namespace:
    """Parse `line`, turning every failure (bad quotes too) into a UsageError with the usage text."""
    try:
        # posix=True so quotes group and are removed (IPython's own parse_argstring keeps them).
        return parser.parse_args(arg_split(line, posix=True, strict=True))
    except UsageError as exc:
        message = str(exc)
    except ValueError as exc:  # shlex: "No closing quotation"
        message = f"cannot split the options: {exc}"
    except SystemExit:  # argparse paths that exit despite error() (kept for safety)
        message = "invalid options"
    raise UsageError(f"{message}\n\n{usage(parser)}\nSee `%wanx help` for every option.")


def usage(parser: MagicArgumentParser) -> str:
    """The usage paragraph of `parser`: "usage:" and the indented "%%wanx [-m MODEL] ..." lines."""
    text = parser.format_usage().strip().removeprefix("::").strip("\n").rstrip()
    return "usage:\n" + text


def normalize_size(size: str | None) -> str | None:
    """"1024x1024", "1024 * 1024" -> "1024*1024"; anything else is passed on for validation to report."""
    if size is None:
        return None
    m = _SIZE.match(size)
    return f"{m.group(1)}*{m.group(2)}" if m else size


def normalize_style(style: str | None) -> str | None:
    """"anime" -> "<anime>", "3d-cartoon" -> "<3d cartoon>", "<watercolor>" stays."""
    if style is None:
        return None
    core = _STYLE_SEPARATORS.sub(" ", style.strip().strip("<>").strip()).lower()
    return f"<{core}>"


def _normalize_ref(ref: str | None) -> str | None:
    if ref is None or ref.startswith(("http://", "https://", "oss://")):
        return ref
    return os.path.expanduser(ref)


@dataclass(frozen=True)
class CellArgs:
    """The options of one `%%wanx` cell, typed. `None` means "not given"."""

    model: str | None = None
    n: int | None = None
    size: str | None = None
    seed: int | None = None
    negative_prompt: str | None = None
    prompt_extend: bool | None = None
    watermark: bool | None = None
    style: str | None = None
    ref_img: str | None = None
    ref_strength: float | None = None
    ref_mode: str | None = None
    output: str | None = None
    reproducible: bool = False
    compare: tuple[str, ...] | None = None
    dry_run: bool = False
    no_display: bool = False
    help: bool = False

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> CellArgs:
        return cls(
            model=ns.model,
            n=ns.n,
            size=normalize_size(ns.size),
            seed=ns.seed,
            negative_prompt=ns.negative,
            prompt_extend=ns.prompt_extend,
            watermark=ns.watermark,
            style=normalize_style(ns.style),
            ref_img=_normalize_ref(ns.ref),
            ref_strength=ns.ref_strength,
            ref_mode=ns.ref_mode,
            output=ns.output,
            reproducible=ns.reproducible,
            compare=tuple(ns.compare) if ns.compare is not None else None,
            dry_run=ns.dry_run,
            no_display=ns.no_display,
            help=ns.help,
        )

    def params(self) -> dict[str, Any]:
        """The request parameters that were given (no model, n or prompt)."""
        keys = ("size", "seed", "negative_prompt", "prompt_extend", "watermark", "style", "ref_img",
                "ref_strength", "ref_mode")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def to_request(
        self, prompt: str, *, default_model: str, default_n: int | None = None, default_size: str | None = None
    ) -> Any:
        """The GenerationRequest for `prompt`, with the magic's defaults for what was not given."""
        from ._request import GenerationRequest

        params = self.params()
        if "size" not in params and default_size:
            params["size"] = normalize_size(default_size)
        n = self.n if self.n is not None else default_n
        return GenerationRequest(prompt=prompt, model=self.model or default_model, n=n, **params)


def parse_cell_line(line: str) -> CellArgs:
    """The `%%wanx` option line as CellArgs; a UsageError (with the usage) when it does not parse."""
    args = CellArgs.from_namespace(_parse(cell_parser, line))
    if args.output is not None and not _IDENTIFIER.match(args.output):
        raise UsageError(f"-o needs a Python variable name, not {args.output!r}\n\n{usage(cell_parser)}")
    if args.compare is not None and args.model is not None:
        raise UsageError("use either -m MODEL or --compare MODEL ..., not both")
    return args


@dataclass(frozen=True)
class HistoryArgs:
    """The options of `%wanx history`."""

    model: str | None = None
    text: str | None = None
    since: str | None = None
    until: str | None = None
    limit: int = 20
    thumbnails: bool = True


def parse_history_line(line: str) -> HistoryArgs:
    ns = _parse(history_parser, line)
    if ns.limit is not None and ns.limit < 1:
        raise UsageError(f"--limit must be at least 1, not {ns.limit}")
    return HistoryArgs(ns.model, ns.text, ns.since, ns.until, ns.limit, not ns.no_thumbnails)


def interpolate(template: str, namespace: Mapping[str, Any]) -> str:
    """Fill `{name}` and `{obj.attr}` from `namespace`; `{{`/`}}` are literal braces.

    Other braces (`{a b}`, `{0}`) are left as written. An undefined name or attribute is a UsageError
    naming it; nothing is evaluated beyond attribute lookup.
    """

    def fill(m: re.Match[str]) -> str:
        token = m.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        dotted = m.group(1)
        head, *attrs = dotted.split(".")
        if head not in namespace:
            raise UsageError(
                f"{{{dotted}}} in the prompt: the name {head!r} is not defined in the notebook. "
                "Define it first, or write {{ and }} for literal braces."
            )
        value = namespace[head]
        for i, attr in enumerate(attrs):
            try:
                value = getattr(value, attr)
            except AttributeError:
                where = ".".join([head, *attrs[:i]])
                raise UsageError(f"{{{dotted}}} in the prompt: {where} has no attribute {attr!r}") from None
        return str(value)

    return _FIELD.sub(fill, template)
