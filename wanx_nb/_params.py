"""The one table of request parameters, and what the magic, the CLI and the panel derive from it.

Each parameter is declared once: its GenerationRequest/API field, the option spellings (the magic and
the CLI share them), how a typed value is read, its help text with the default, the model families
that take it, and the panel's widget kind and label. From the table come the options of `%%wanx` and
`wanx-nb generate` (`add_request_options`), the messages that name the option typed (`OPTION_NAMES`,
used by `_validation`), the equivalent cell the panel shows (`option_tokens`), and the canonical wire
form of sizes and styles (`canonical_size`, `canonical_style`, applied when a GenerationRequest is built).
"""

from __future__ import annotations

import argparse
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ._registry import V1_STYLES

if TYPE_CHECKING:  # _request builds on this module: annotations only
    from ._request import GenerationRequest

__all__ = [
    "BY_NAME",
    "HISTORY_LIMIT_MAX",
    "OPTION_NAMES",
    "PARAMS",
    "Param",
    "add_history_options",
    "add_request_options",
    "canonical_size",
    "canonical_style",
    "namespace_params",
    "option_line",
    "option_tokens",
    "param_for",
    "parse_size",
    "read_value",
    "toggle_conflict",
]

HISTORY_LIMIT_MAX = 100_000  # far more rows than anyone reads, and far below SQLite's integer range

# Separators people type between width and height: "*", "x", "X", "×", with spaces around. Sides have
# at most 6 digits, so no arithmetic on a size can overflow a float.
_SIZE = re.compile(r"^\s*(\d{1,6})\s*[*xX×]\s*(\d{1,6})\s*$")
_STYLE_SEPARATORS = re.compile(r"[-_\s]+")
_Value = TypeVar("_Value")


def parse_size(size: Any) -> tuple[int, int] | None:
    """(width, height) from "W*H" ("WxH", "W×H", spaces, full-width digits), or None when it is not one.

    Both sides must be positive: "0*0" is not a size (and would divide by zero in size arithmetic).
    """
    if not isinstance(size, str):
        return None
    m = _SIZE.match(unicodedata.normalize("NFKC", size))
    if not m:
        return None
    w, h = int(m.group(1)), int(m.group(2))
    return (w, h) if w > 0 and h > 0 else None


def canonical_size(size: _Value) -> _Value | str:
    """The service's form "W*H" (ASCII digits) of any size `parse_size` reads; anything else unchanged."""
    parsed = parse_size(size)
    return f"{parsed[0]}*{parsed[1]}" if parsed else size


def canonical_style(style: _Value) -> _Value | str:
    """"anime", "3d-cartoon", "<Watercolor>" -> the V1 style "<anime>", "<3d cartoon>", "<watercolor>".

    A text that names none of the ten styles is returned as given, so the error shows what was typed.
    """
    if not isinstance(style, str):
        return style
    core = _STYLE_SEPARATORS.sub(" ", unicodedata.normalize("NFKC", style).strip().strip("<>").strip()).lower()
    candidate = f"<{core}>"
    return candidate if candidate in V1_STYLES else style


# ---- readers: typed text -> value; a ValueError's text says what is allowed --------------------


def _read_int(text: str) -> int:
    try:
        return int(unicodedata.normalize("NFKC", text).strip())
    except ValueError:
        raise ValueError("a whole number") from None


def _read_float(text: str) -> float:
    try:
        value = float(unicodedata.normalize("NFKC", text).strip())
    except ValueError:
        raise ValueError("a number") from None
    if not math.isfinite(value):
        raise ValueError("a finite number")
    return value


def _read_text(text: str) -> str:
    return text


def _read_choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def read(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError("one of " + ", ".join(choices))
        return value

    return read


@dataclass(frozen=True)
class Param:
    """One request parameter.

    Parameters:
        name: the GenerationRequest field (and API field).
        flags: option spellings for the magic and the CLI; messages use the long one (`option`).
        help: what it does, for --help (the default is appended by `help_text`).
        default: the default in words ("the model's", "on (the service's default)").
        families: model families that take it ("V1", "V2"); the registry's `ModelSpec.params` decides.
        widget: the panel's widget kind ("text", "size", "int", "seed", "toggle", "choice", "slider", "file").
        label: the panel's short label.
        read: typed text -> value; raises ValueError whose text says what is allowed (None: a flag).
        off_flag: for on/off parameters, the spelling that turns it off (`--no-extend`).
        metavar: the value's placeholder in usage lines.
        choices: the allowed values, when there is a fixed list.
    """

    name: str
    flags: tuple[str, ...]
    help: str
    default: str
    families: frozenset[str]
    widget: str
    label: str
    read: Callable[[str], Any] | None = _read_text
    off_flag: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] = ()

    @property
    def option(self) -> str:
        return self.flags[-1] if self.flags[-1].startswith("--") else self.flags[0]

    def help_text(self, default: str | None = None) -> str:
        return f"{self.help} (default: {default or self.default})"


_V1 = frozenset({"V1"})
_V2 = frozenset({"V2"})
# The 2026 catalog's families (`_catalog_2026`): which of them take the on/off parameters (2026 §3.3).
_EXTENDS = frozenset({"wan2.6", "wan2.7", "qwen-image", "qwen-image-2.0", "qwen-image-3.0", "z-image"})
_WATERMARKS = frozenset({"wan2.6", "qwen-image", "qwen-image-2.0", "qwen-image-3.0", "wan2.7"})
# wan2.7's own switches (2026 §3.3 "other"): thinking mode and image sequences.
_WAN27 = frozenset({"wan2.7"})
_BOTH = _V1 | _V2 | _EXTENDS | _WATERMARKS  # every family: model, n, size, seed, negative prompt

PARAMS: tuple[Param, ...] = (
    Param("model", ("-m", "--model"), "model id (`wanx-nb models` or the magic's `models` subcommand lists them)",
          "wanx2.1-t2i-turbo", _BOTH, "choice", "Model", metavar="MODEL"),
    Param("n", ("-n",), "images per task, 1-4 (wan2.7: up to 12 with --sequential)", "1; the API's own default is 4",
          _BOTH, "int", "Images (n)", read=_read_int, metavar="N"),
    Param("size", ("--size",), "image size W*H (also WxH, W×H), e.g. 1024*768", "the model's", _BOTH, "size",
          "Size", metavar="W*H"),
    Param("seed", ("--seed",), "seed of the first image; image i uses seed + i (0-2147483647)",
          "picked for you and recorded", _BOTH, "seed", "Seed", read=_read_int, metavar="S"),
    Param("negative_prompt", ("--negative",), "negative prompt: what not to draw", "none", _BOTH, "text",
          "Negative prompt", metavar="TEXT"),
    Param("prompt_extend", ("--extend",), "let the service rewrite the prompt (V2 and most 2026 models)",
          "on (the service's default; off for z-image-turbo)", _V2 | _EXTENDS, "toggle", "Rewrite prompt", read=None, off_flag="--no-extend"),
    Param("watermark", ("--watermark",), "draw the service's watermark (V2 and most 2026 models)",
          "off (the service's default)", _V2 | _WATERMARKS, "toggle", "Watermark", read=None, off_flag="--no-watermark"),
    Param("thinking_mode", ("--thinking",), "wan2.7: let the model reason about the prompt before drawing",
          "the service's (the docs' examples turn it on)", _WAN27, "toggle", "Thinking", read=None,
          off_flag="--no-thinking"),
    Param("enable_sequential", ("--sequential",),
          "wan2.7: a coherent sequence of images; allows n up to 12 (third-party documented)", "off", _WAN27,
          "toggle", "Image sequence", read=None, off_flag="--no-sequential"),
    Param("style", ("--style",), "wanx-v1 style: " + ", ".join(s.strip("<>") for s in V1_STYLES)
          + " (with or without <>)", "<auto>", _V1, "choice", "Style", metavar="STYLE", choices=V1_STYLES),
    Param("ref_img", ("--ref",), "wanx-v1 reference image: a local path, an http(s) or oss:// URL", "none", _V1,
          "file", "Reference", metavar="PATH_OR_URL"),
    Param("ref_strength", ("--ref-strength",), "wanx-v1: 0.0-1.0, how closely to follow the reference",
          "0.5 (the service's default)", _V1, "slider", "Strength", read=_read_float, metavar="X"),
    Param("ref_mode", ("--ref-mode",), "wanx-v1: repaint (follow the content) or refonly (follow the style)",
          "repaint", _V1, "choice", "Ref. mode", read=_read_choice(("repaint", "refonly")), metavar="MODE",
          choices=("repaint", "refonly")),
)  # fmt: skip

BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}

# What messages call each field on the magic and the CLI: the option the user typed.
OPTION_NAMES: dict[str, str] = {p.name: p.option for p in PARAMS}
OPTION_NAMES["prompt"] = "the prompt"


def _argparse_type(param: Param) -> Callable[[str], Any]:
    """The reader as an argparse type: its message becomes "argument --seed: 'x' is not allowed: ..."."""
    assert param.read is not None
    reader = param.read

    def read(text: str) -> Any:
        try:
            return reader(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; use {exc}") from None

    read.__name__ = param.name
    return read


class _SeenToggle(argparse.Action):
    """argparse's store_const that also records each value typed for its dest, so that `--extend
    --no-extend` is refused (`toggle_conflict`) instead of the last one silently winning."""

    def __init__(self, option_strings: list[str], dest: str, const: Any = None, default: Any = None,
                 required: bool = False, help: str | None = None) -> None:  # fmt: skip
        super().__init__(option_strings, dest, nargs=0, const=const, default=default, required=required, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        seen: dict[str, set[Any]] = namespace.__dict__.setdefault("_toggles_seen", {})
        seen.setdefault(self.dest, set()).add(self.const)
        setattr(namespace, self.dest, self.const)


def toggle_conflict(ns: argparse.Namespace) -> str | None:
    """What is wrong when an on/off option was given both ways (`--extend --no-extend`), else None."""
    for dest, values in getattr(ns, "_toggles_seen", {}).items():
        if len(values) > 1:
            on, off = BY_NAME[dest].option, BY_NAME[dest].off_flag
            return f"{on} and {off} both given: use one of {on} / {off}"
    return None


def add_request_options(parser: argparse.ArgumentParser, defaults: Mapping[str, str] | None = None) -> None:
    """Add every request option to `parser`; dest is the field name, default None ("not given").

    `defaults` gives a surface's own default in words for the help (the magic's come from %config).
    """
    defaults = defaults or {}
    for p in PARAMS:
        help_text = p.help_text(defaults.get(p.name))
        if p.read is None:
            parser.add_argument(*p.flags, dest=p.name, action=_SeenToggle, const=True, default=None, help=help_text)
            assert p.off_flag is not None
            parser.add_argument(p.off_flag, dest=p.name, action=_SeenToggle, const=False, help=f"turn {p.option} off")
        else:
            parser.add_argument(*p.flags, dest=p.name, type=_argparse_type(p), default=None, metavar=p.metavar,
                                help=help_text)  # fmt: skip


_TRUE, _FALSE = ("on", "true", "yes", "1"), ("off", "false", "no", "0")


def param_for(spelling: str) -> Param:
    """The parameter a user means by `spelling`: the field ("prompt_extend"), an option ("--extend",
    "-n") or an option without dashes ("extend", "ref-strength"). A KeyError lists what there is."""
    key = spelling.strip()
    for p in PARAMS:
        names = {p.name, *p.flags, *(f.lstrip("-") for f in p.flags), p.name.replace("_", "-")}
        if key in names:
            return p
    known = ", ".join(p.option.lstrip("-") for p in PARAMS)
    raise KeyError(f"{spelling!r} is not a request parameter; use one of {known}")


def read_value(spelling: str, text: str) -> Any:
    """A value typed as text for the parameter `spelling` (a grid axis, a form field), in the service's form.

    Raises ValueError naming the option, the value and what is allowed; on/off parameters take
    on/off, true/false, yes/no or 1/0.
    """
    p = param_for(spelling)
    if p.read is None:
        word = text.strip().lower()
        if word not in _TRUE + _FALSE:
            raise ValueError(f"{p.option} {text!r}: use on or off")
        return word in _TRUE
    try:
        value = p.read(text)
    except ValueError as exc:
        raise ValueError(f"{p.option} {text!r} is not allowed; use {exc}") from None
    if p.name == "size":
        return canonical_size(value)
    if p.name == "style":
        return canonical_style(value)
    return value


def namespace_params(ns: argparse.Namespace) -> dict[str, Any]:
    """The request fields given on a parsed option line (model included when given)."""
    return {p.name: getattr(ns, p.name) for p in PARAMS if getattr(ns, p.name, None) is not None}


def _read_limit(text: str) -> int:
    value = _read_int(text)
    if not 1 <= value <= HISTORY_LIMIT_MAX:
        raise ValueError(f"a whole number from 1 to {HISTORY_LIMIT_MAX}")
    return value


def _read_page(text: str) -> int:
    value = _read_int(text)
    if not 1 <= value <= 10**6:
        raise ValueError("a whole number from 1 to 1000000")
    return value


def add_history_options(parser: argparse.ArgumentParser) -> None:
    """The filters of `%wanx history` and `wanx-nb history`, and the page (of --limit rows) to show."""
    limit = Param("limit", ("--limit",), "", "", _BOTH, "int", "", read=_read_limit)
    page = Param("page", ("--page",), "", "", _BOTH, "int", "", read=_read_page)
    parser.add_argument("--model", default=None, help="only this model")
    parser.add_argument("--text", default=None, help="prompt (or rewritten prompt) contains TEXT")
    parser.add_argument("--since", default=None, metavar="ISO", help="submitted at or after this time (ISO 8601, UTC)")
    parser.add_argument("--until", default=None, metavar="ISO", help="submitted at or before this time")
    parser.add_argument("--limit", type=_argparse_type(limit), default=20, metavar="N",
                        help=f"at most N rows, 1-{HISTORY_LIMIT_MAX} (default: 20)")  # fmt: skip
    parser.add_argument("--page", type=_argparse_type(page), default=1, metavar="P",
                        help="page P of N rows each, newest first (default: 1)")  # fmt: skip


# ---- request -> option tokens (the panel's equivalent cell, the CLI round trip) ----------------


def option_tokens(request: GenerationRequest) -> list[str]:
    """The options that make `request` again, as argv tokens: -m, -n and --size always, then the rest.

    A value starting with "-" (a negative prompt "-blurry") is written `--flag=value`, so it is never
    read as an option. Only fields the model takes are written.
    """
    from ._registry import get_model

    spec = get_model(request.model)
    tokens = ["-m", spec.name, "-n", str(request.effective_n), "--size", request.effective_size]
    for p in PARAMS:
        if p.name in ("model", "n", "size") or p.name not in spec.params:
            continue
        value = getattr(request, p.name)
        if value is None:
            continue
        if p.read is None:
            tokens.append(p.option if value else p.off_flag or "")
            continue
        text = repr(value) if isinstance(value, float) else str(value)
        tokens += [f"{p.option}={text}"] if text.startswith("-") or not text else [p.option, text]
    return tokens


def option_line(request: GenerationRequest) -> str:
    """`option_tokens` quoted for a POSIX shell-style split (IPython's `arg_split(..., posix=True)`).

    Raises ValueError when a value holds a line break: an option line is one line.
    """
    tokens = option_tokens(request)
    if any("\n" in t or "\r" in t for t in tokens):
        raise ValueError("a value with a line break cannot be written on a %%wanx option line")
    return " ".join(_quote(t) for t in tokens)


def _quote(token: str) -> str:
    """Double quotes when needed (spaces, quotes, <style> brackets), POSIX escapes inside; else as is."""
    if token and all(c.isalnum() or c in "-_.,/:=+@%*" for c in token):
        return token
    return '"' + token.replace("\\", "\\\\").replace('"', '\\"') + '"'
