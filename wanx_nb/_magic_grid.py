"""`%%wanx --x/--y/--z` and `%%wanx --compare`: the cell as a grid, and where a cell's prompts come from.

`GridCommands` is a mixin that `magics.WanxMagics` inherits (as it inherits `_magic_line`'s commands);
`cell_prompt` reads the cell body and the option line together: the prompt is the body, or, with a
prompt axis, the axis (and the body is then empty). Like the magics, this module imports only IPython
and `_magic_args` at load time; the grids load on use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from IPython.core.error import UsageError

from ._magic_args import CellArgs, check_line_fields, interpolate

if TYPE_CHECKING:  # annotations only
    from ._session import Session

__all__ = ["GridCommands", "cell_prompt", "check_typed_line"]

_PROMPT_AXIS = ("prompt", "prompts")
_TEXT_AXIS = ("negative", "negative_prompt", "negative-prompt")  # the spellings of --negative on an axis
_MODEL_AXIS = ("model", "models", "m")


def _axes(args: CellArgs) -> dict[str, tuple[str, str]]:
    """By option (`--x`): each axis's parameter as typed, without dashes (`seed`, `model`, `prompts`), and
    the axis as typed."""
    return {f"--{letter}": (spec.partition("=")[0].strip().lstrip("-"), spec)
            for letter, spec in zip("xyz", args.axes or ()) if spec}  # fmt: skip


def check_typed_line(typed: CellArgs, namespace: Mapping[str, Any]) -> None:
    """Refuse a `{name}` field the namespace cannot fill in a text value of the option line as typed
    (a prompt or negative prompt axis, --negative), naming the option; `{{`/`}}` are literal braces.
    For a line `expand_line` could not fill: sent as it is, every field would go out as written."""
    for option, (name, spec) in _axes(typed).items():
        if name in _PROMPT_AXIS + _TEXT_AXIS:
            check_line_fields(spec, namespace, option)
    if typed.negative_prompt is not None:
        check_line_fields(typed.negative_prompt, namespace, "--negative")


def cell_prompt(args: CellArgs, cell: str, namespace: Mapping[str, Any]) -> str:
    """The cell's prompt: its body with `{name}` filled in, or "" when a prompt axis holds the prompts.

    The prompts come from one place: a prompt axis with a body is refused (the axis would silently drop
    the body), and so is an empty body without one.
    """
    axes = _axes(args)
    body = cell.strip()
    on_axis = next((option for option, (name, _) in axes.items() if name in _PROMPT_AXIS), None)
    if on_axis is not None:
        if body:
            shown = body if len(body) <= 40 else body[:39] + "…"
            raise UsageError(f"{on_axis} puts the prompts on an axis, and the cell body holds a prompt too ({shown!r}): "
                             "either the prompt(s) or a prompt axis, not both. Leave the body empty, or drop the "
                             "prompt axis and write the prompt in the body.")  # fmt: skip
        return ""
    if not body:
        raise UsageError("the cell body is the prompt, and it is empty: write what to draw below %%wanx (or put the "
                         'prompts on an axis: %wanx --x "prompt=a fox|a cat")')  # fmt: skip
    return interpolate(body, namespace).strip()


class _Magics(Protocol):
    """What the grid handlers use of the WanxMagics that inherits them: its settings, session and output."""

    @property
    def default_model(self) -> str: ...
    @property
    def default_n(self) -> int: ...
    @property
    def default_size(self) -> str | None: ...

    def session(self) -> Session: ...

    def _finish(self, args: CellArgs, value: Any, shown: Any) -> Any: ...


class GridCommands:
    """`handle_compare` and `handle_grid`: the cell over several models, or over X/Y/Z axes."""

    def handle_compare(self: _Magics, args: CellArgs, prompt: str) -> Any:
        """`--compare`: the comparison grid (wanx_nb.compare) for this prompt over several models."""
        from ._exceptions import ValidationError, WanxError

        self.session()
        try:
            from ._grid import parse_axis
            from .comparison import compare
        except ImportError as exc:
            raise UsageError(f"--compare is not available: {exc}") from None
        params = args.params()
        seed = params.pop("seed", None)
        if "size" not in params and self.default_size:
            params["size"] = self.default_size
        if args.reproducible:
            # compare() takes request parameters only; reproducible means "no prompt rewriting" there.
            params.setdefault("prompt_extend", False)
        n = args.n if args.n is not None else self.default_n
        # "--compare a b" or "--compare a,b" (as the axes take their values)
        models = [name for token in args.compare or () for name in token.split(",") if name.strip()]
        try:
            if models:
                parse_axis(("model", models), "--compare")  # so that a bad name is blamed on the option typed
            grid = compare(prompts=[prompt], models=models or None, n=n, seed=seed, dry_run=args.dry_run,
                           reuse=args.reuse, **params)  # fmt: skip
        except ValidationError as exc:  # a value the cell did not type is blamed on its %config setting
            raise UsageError(str(args.blame_settings(exc))) from None
        except WanxError as exc:
            raise UsageError(str(exc)) from None
        return self._finish(args, grid, grid)

    def handle_grid(self: _Magics, args: CellArgs, prompt: str) -> Any:
        """`--x/--y/--z`: an X/Y/Z grid (wanx_nb.grid) of this prompt over the axes; other options are fixed.

        `prompt` is "" when an axis holds the prompts (see `cell_prompt`)."""
        from ._exceptions import ValidationError, WanxError

        self.session()
        try:
            from .comparison import grid
        except ImportError as exc:
            raise UsageError(f"--x/--y/--z are not available: {exc}") from None
        fixed = args.params()
        x, y, z = args.axes or (None, None, None)
        names = {name for name, _ in _axes(args).values()}
        if not names & set(_MODEL_AXIS):
            fixed["model"] = args.model if args.model is not None else self.default_model
        elif args.model is not None:
            raise UsageError("-m and a model axis (--x model=...) both choose the model: use one")
        if args.model is not None:
            _check_model(args.model)
        if "size" not in fixed and self.default_size:
            fixed["size"] = self.default_size
        if args.reproducible:
            fixed.setdefault("prompt_extend", False)
        if not names & {"n", "-n"}:
            fixed["n"] = args.n if args.n is not None else self.default_n
        elif args.n is not None:
            fixed["n"] = args.n  # grid() says it is both fixed and an axis
        try:
            built = grid(prompt or None, x=x, y=y, z=z, dry_run=args.dry_run, reuse=args.reuse, **fixed)
        except ValidationError as exc:  # a value the cell did not type is blamed on its %config setting
            raise UsageError(str(args.blame_settings(exc))) from None
        except WanxError as exc:
            raise UsageError(str(exc)) from None
        return self._finish(args, built, built)


def _check_model(model: str) -> None:
    """-m names a known model: refused as `%%wanx -m nope` is (the suggestion included), before the grid."""
    from ._exceptions import ValidationError
    from ._params import OPTION_NAMES
    from ._registry import get_model
    from ._request import GenerationRequest
    from ._validation import validate

    try:
        get_model(model)
    except (KeyError, TypeError):
        try:
            validate(GenerationRequest(prompt="-", model=model), names=OPTION_NAMES)
        except ValidationError as exc:
            raise UsageError(str(exc)) from None
