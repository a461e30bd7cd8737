"""Parsing for `%%wanx` and `%wanx`: option lines in, frozen typed objects out.

Options are split shell-style (IPython's `arg_split`), so quoted values work:
`%%wanx --negative "blurry, text" --seed 7`. Every parse error is an IPython `UsageError` carrying the
usage text: never a traceback, never a SystemExit. Help texts are module constants.
"""

from __future__ import annotations

import argparse
import builtins
import keyword
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import MagicArgumentParser
from IPython.utils.process import arg_split

from ._exceptions import Problem, ValidationError, redact
from ._params import OPTION_NAMES, PARAMS, add_request_options, canonical_size, canonical_style
from ._params import namespace_params, toggle_conflict

__all__ = [
    "CELL_HELP",
    "CellArgs",
    "LINE_HELP",
    "OptionParser",
    "SUBCOMMANDS",
    "cell_parser",
    "check_line_fields",
    "expand_line",
    "interpolate",
    "normalize_size",
    "normalize_style",
    "parse_cell_line",
    "parse_options",
    "usage",
]

CELL_DESCRIPTION = """\
Generate images with Tongyi Wanxiang. The cell body is the prompt (all of it, stripped); with a prompt
axis (--x "prompt=a fox|a cat") the body is left empty, or write it on one line: %wanx --x "prompt=...".

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

# The magic's defaults, in words, for --help (they are settings, not the CLI's).
_MAGIC_DEFAULTS = {
    "model": "WanxMagics.default_model",
    "n": "WanxMagics.default_n = 1; the API itself would make 4",
    "size": "WanxMagics.default_size, else the model's",
}
OUTPUT_HELP = "also store the result in the notebook variable NAME"
REPRODUCIBLE_HELP = "turn prompt rewriting off, re-sending the recorded rewritten prompt when there is one"
COMPARE_HELP = "run the comparison grid over these models instead, space- or comma-separated (none: the guide's four)"
AXIS_HELP = (
    "a grid axis NAME=V1,V2,...: the prompt, the model or any request option (model=all, seed=1,2,3, "
    "style=anime,sketch, size=1024*1024,1280*720, extend=on,off; prompts separated by |, the cell body then "
    "left empty); Z draws one grid per value"
)
DRY_RUN_HELP = "validate and show the cost estimate; send nothing"
REUSE_HELP = (
    "show what an earlier run made of this request (every image saved, same service) from the store, "
    "not paid again; a grid sends only what is missing (after an interrupt and %wanx resume)"
)
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

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# `{{`, `}}` or `{name}` / `{name.attr.attr}`, with any format-string tail (`[0]`, `!r`, `:>10`) caught in
# group 2 so it is refused rather than sent as written; other braces stay as they are.
_FIELD = re.compile(
    r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)((?:\[[^\[\]{}]*\])*(?:![a-z])?(?::[^{}\s]*)?)\}"
)


class OptionParser(MagicArgumentParser):
    """MagicArgumentParser whose help strings may contain a literal `%` (as in `%wanx models`)."""

    def __init__(self, prog: str, description: str) -> None:
        # IPython's __init__ has no annotations; this one gives the callers a typed constructor.
        super().__init__(prog=prog, description=description)  # type: ignore[no-untyped-call]

    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        if "help" in kwargs:
            kwargs["help"] = kwargs["help"].replace("%", "%%")
        return super().add_argument(*args, **kwargs)


def _build_cell_parser() -> MagicArgumentParser:
    p = OptionParser(prog="%wanx", description=CELL_DESCRIPTION)
    add_request_options(p, _MAGIC_DEFAULTS)
    p.add_argument("-o", "--output", default=None, metavar="NAME", help=OUTPUT_HELP)
    p.add_argument("--reproducible", action="store_true", help=REPRODUCIBLE_HELP)
    p.add_argument("--compare", nargs="*", default=None, metavar="MODEL", help=COMPARE_HELP)
    for letter in ("x", "y", "z"):
        p.add_argument(f"--{letter}", default=None, metavar="NAME=V1,V2", help=AXIS_HELP)
    p.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)
    p.add_argument("--reuse", action="store_true", help=REUSE_HELP)
    p.add_argument("--no-display", action="store_true", help=NO_DISPLAY_HELP)
    p.add_argument("-h", "--help", action="store_true", help=HELP_HELP)
    return p


cell_parser = _build_cell_parser()
CELL_HELP = cell_parser.format_help()


def parse_options(parser: MagicArgumentParser, line: str) -> argparse.Namespace:
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
    # redact: a key typed by mistake (`--api-key sk-...`) is not echoed back.
    raise UsageError(f"{redact(message)}\n\n{usage(parser)}\nSee `%wanx help` for every option.")


def usage(parser: MagicArgumentParser) -> str:
    """The usage paragraph of `parser`: "usage:" and the indented "%%wanx [-m MODEL] ..." lines."""
    text = parser.format_usage().strip().removeprefix("::").strip("\n").rstrip()
    return "usage:\n" + text


def normalize_size(size: str | None) -> str | None:
    """"1024x1024", "1024 * 1024" -> "1024*1024"; anything else is passed on for validation to report."""
    return canonical_size(size)


def normalize_style(style: str | None) -> str | None:
    """"anime" -> "<anime>", "3d-cartoon" -> "<3d cartoon>", "<watercolor>" stays; unknown styles as typed."""
    return canonical_style(style)


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
    thinking_mode: bool | None = None
    enable_sequential: bool | None = None
    output: str | None = None
    reproducible: bool = False
    compare: tuple[str, ...] | None = None
    x: str | None = None
    y: str | None = None
    z: str | None = None
    dry_run: bool = False
    reuse: bool = False
    no_display: bool = False
    help: bool = False

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> CellArgs:
        given = namespace_params(ns)
        # The service's forms, for --compare too (which takes these parameters, not a request).
        for name, canonical in (("size", canonical_size), ("style", canonical_style)):
            if name in given:
                given[name] = canonical(given[name])
        if "ref_img" in given:
            given["ref_img"] = _normalize_ref(given["ref_img"])
        return cls(
            **given,
            output=ns.output,
            reproducible=ns.reproducible,
            compare=tuple(ns.compare) if ns.compare is not None else None,
            x=ns.x,
            y=ns.y,
            z=ns.z,
            dry_run=ns.dry_run,
            reuse=ns.reuse,
            no_display=ns.no_display,
            help=ns.help,
        )

    @property
    def axes(self) -> tuple[str | None, str | None, str | None] | None:
        """The grid axes (--x, --y, --z) as typed, or None when the cell is not a grid."""
        return (self.x, self.y, self.z) if any((self.x, self.y, self.z)) else None

    def params(self) -> dict[str, Any]:
        """The request parameters that were given (no model, n or prompt)."""
        keys = (p.name for p in PARAMS if p.name not in ("model", "n"))
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def to_request(
        self, prompt: str, *, default_model: str, default_n: int | None = None, default_size: str | None = None
    ) -> Any:
        """The checked GenerationRequest for `prompt`, with the magic's defaults for what was not given.

        A request that breaks its model's rules is a UsageError naming the options (`--extend`), or the
        `%config` setting a value came from when the cell did not give that option.
        """
        from ._request import GenerationRequest
        from ._validation import validate

        params = self.params()
        if "size" not in params and default_size:
            params["size"] = default_size
        n = self.n if self.n is not None else default_n
        model = self.model if self.model is not None else default_model  # `-m ''` is an error, not the default
        request = GenerationRequest(prompt=prompt, model=model, n=n, **params)
        try:
            validate(request, names=OPTION_NAMES)
        except ValidationError as exc:  # nothing was sent; the message names the options as typed
            raise UsageError(str(self.blame_settings(exc))) from None
        return request

    def blame_settings(self, exc: ValidationError) -> ValidationError:
        """`exc` with each problem about -m, -n or --size that this cell did not type blamed on the
        `%config` setting the value came from ("-n (x=seed 1)" keeps its cell)."""
        from ._magic_settings import DEFAULTED_NAMES

        typed = {"model": self.model, "n": self.n, "size": self.size}
        settings = {OPTION_NAMES[k]: DEFAULTED_NAMES[k] for k, v in typed.items() if v is None}

        def blamed(param: str) -> str:
            option, space, where = param.partition(" (")
            return settings[option] + space + where if option in settings else param

        return ValidationError(exc.model, [Problem(blamed(p.param), p.value, p.allowed) for p in exc.problems])


def parse_cell_line(line: str) -> CellArgs:
    """The `%%wanx` option line as CellArgs; a UsageError (with the usage) when it does not parse."""
    ns = parse_options(cell_parser, line)
    _check_toggles(ns)
    args = CellArgs.from_namespace(ns)
    if args.output is not None:
        _check_output_name(args.output)
    if args.compare is not None and args.model is not None:
        raise UsageError("use either -m MODEL or --compare MODEL ..., not both")
    if args.compare is not None and args.axes:
        raise UsageError("use either --compare (prompt x models) or --x/--y/--z axes, not both")
    return args


def _check_toggles(ns: argparse.Namespace) -> None:
    """`--extend --no-extend` (or any other on/off pair) on one line: refused, not the last one winning."""
    conflict = toggle_conflict(ns)
    if conflict is not None:
        raise UsageError(conflict)


# Names IPython keeps in the user namespace (its own, and the output and input caches).
_IPYTHON_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "display", "_ih", "_oh", "_dh"})
_IPYTHON_CACHE = re.compile(r"^_+$|^_i{1,3}$|^_i?\d+$")


def _check_output_name(name: str) -> None:
    """-o NAME must be a variable name that breaks nothing: no keyword, builtin or IPython name."""
    if not _IDENTIFIER.match(name) or keyword.iskeyword(name):
        raise UsageError(f"-o needs a Python variable name, not {name!r}\n\n{usage(cell_parser)}")
    if name in _IPYTHON_NAMES or _IPYTHON_CACHE.match(name) or hasattr(builtins, name):
        raise UsageError(
            f"-o {name}: that name belongs to Python or IPython, and replacing it would break later cells; "
            "choose another name, e.g. -o result"
        )


def interpolate(template: str, namespace: Mapping[str, Any]) -> str:
    """Fill `{name}` and `{obj.attr}` from `namespace`; `{{`/`}}` are literal braces.

    Other braces (`{a b}`, `{0}`) are left as written. An undefined name or attribute is a UsageError
    naming it, and so is a field with an index, a conversion or a format spec (`{x[0]}`, `{x!r}`,
    `{x:>5}`): it would otherwise be sent as written. Nothing is evaluated beyond attribute lookup.
    """

    def fill(m: re.Match[str]) -> str:
        token = m.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        dotted = m.group(1)
        if m.group(2):
            raise UsageError(
                f"{token} in the prompt: only {{name}} and {{obj.attr}} are filled, without indexes, conversions or "
                "format specs. Put the text in a variable first (e.g. label = f\"...\"), or write {{ and }} for "
                "literal braces."
            )
        return str(_lookup(dotted, namespace, "the prompt"))

    return _FIELD.sub(fill, template)


def _lookup(dotted: str, namespace: Mapping[str, Any], where: str) -> Any:
    """The value of `name` / `obj.attr` in `namespace`; a UsageError naming the field when there is none."""
    head, *attrs = dotted.split(".")
    if head not in namespace:
        raise UsageError(
            f"{{{dotted}}} in {where}: the name {head!r} is not defined in the notebook. "
            "Define it first, or write {{ and }} for literal braces."
        )
    value = namespace[head]
    for i, attr in enumerate(attrs):
        try:
            value = getattr(value, attr)
        except AttributeError:
            owner = ".".join([head, *attrs[:i]])
            raise UsageError(f"{{{dotted}}} in {where}: {owner} has no attribute {attr!r}") from None
    return value


def expand_line(line: str, namespace: Mapping[str, Any]) -> tuple[str, bool]:
    """The option line filled as IPython fills a magic's line (`$name`, `{name}`, `{{`/`}}` for literal
    braces), and whether it could be: when any field fails, IPython's rule is the line as typed.

    The magic asks for its line unexpanded (`no_var_expand`) to know which happened: filled, `{{x}}`
    arrives as `{x}`, which must not be taken for a field left unfilled (`check_line_fields`)."""
    from IPython.utils.text import DollarFormatter

    try:
        return DollarFormatter().vformat(line, args=[], kwargs=namespace), True
    except Exception:  # noqa: BLE001 - IPython's var_expand falls back the same way
        return line, False


def check_line_fields(text: str, namespace: Mapping[str, Any], where: str) -> None:
    """Refuse a `{name}` / `{obj.attr}` field of `text` (a value on the option line) that `namespace`
    cannot fill, with `interpolate`'s message naming `where` (the option, e.g. "--x").

    Run when `expand_line` could not fill the line: one failing field (an undefined name, a missing
    attribute) leaves the WHOLE line as typed, without a word, and sending it would draw "{nomood} cat".
    `{{x}}` is a literal brace here, as it is to the expansion.
    """
    for m in _FIELD.finditer(text):
        if m.group(1):
            _lookup(m.group(1), namespace, where)
