"""The grid model: axes, cells and each cell's effective request (the plan: `_grid_plan`). Pure: no I/O.

An axis puts one thing on X, Y or Z: the prompt, the model, or any request parameter of the table in
`_params` (`seed=1,2,3`, `style=anime,sketch`, `size=1024*1024,1280*720`, `extend=on,off`). Every
cell starts from the fixed parameters, takes its axis values, and is then fitted to its model: a size
the model does not take becomes the nearest one it does (the registry's rule), a parameter the model's
family does not take is left out *and said in the cell* ("style <sketch>: n/a for V2"). Cells whose
effective requests are identical are sent once and share the result (a style axis over a V2 model
would otherwise pay for the same image ten times).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import TYPE_CHECKING, Any

from ._exceptions import Problem, ValidationError
from ._grid_plan import GridPlan
from ._params import BY_NAME, OPTION_NAMES, PARAMS, canonical_size, canonical_style, param_for, parse_size, read_value
from ._registry import MODELS, adapt_size, get_model
from ._request import GenerationRequest
from ._validation import _unknown_model, validate

if TYPE_CHECKING:
    from ._models import GenerationResult

__all__ = [
    "AXIS_NAMES",
    "Axis",
    "DEFAULT_SEED",
    "GUIDE_MODELS",
    "GridCell",
    "GridPlan",
    "REUSED",
    "parse_axis",
    "place_prompts",
    "plan_cells",
    "prompt_list",
]

# The four models of the user guide's comparison, in its order (2.1 professional first).
GUIDE_MODELS: tuple[str, ...] = ("wanx2.1-t2i-plus", "wanx2.1-t2i-turbo", "wanx2.0-t2i-turbo", "wanx-v1")

# The seed every cell shares when none is given: the same call gives the same grid, so a notebook
# recorded once validates in replay mode.
DEFAULT_SEED = 20250108

AXIS_NAMES = ("prompt", "model", *(p.name for p in PARAMS if p.name != "model"))
# Free text may hold commas: its values are separated by "|".
_PIPE_SEPARATED = frozenset({"prompt", "negative_prompt", "ref_img"})
_LETTERS = ("x", "y", "z")


@dataclass(frozen=True)
class Axis:
    """One axis: what varies (`name`: "prompt", "model" or a request field) and its values, in order."""

    name: str
    values: tuple[Any, ...]

    def label(self, value: Any) -> str:
        """How a value reads in a header or legend: "seed 7", "style <anime>", "extend off", the model."""
        if self.name == "model":
            return str(value)
        if self.name == "prompt":
            return " ".join(str(value).split())
        option = OPTION_NAMES.get(self.name, self.name).lstrip("-")
        if isinstance(value, bool):
            return f"{option} {'on' if value else 'off'}"
        return f"{option} {value}"

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.label(v) for v in self.values)

    def __len__(self) -> int:
        return len(self.values)


def parse_axis(spec: Any, letter: str = "x") -> Axis:
    """An Axis from "seed=1,2,3", ("style", ["anime", "sketch"]), {"model": "all"} or an Axis.

    Text values are read by the parameter table, so a bad one is a ValidationError naming the option
    as typed and what it allows. `model=all` is every legacy text-to-image model, `model=guide` the
    user guide's four; `seed=1..4` is a range; prompts and negative prompts are separated by "|".
    """
    if isinstance(spec, Axis):
        return spec
    if isinstance(spec, Mapping) and len(spec) == 1:
        spec = next(iter(spec.items()))
    if isinstance(spec, str):
        name_text, sep, values_text = spec.partition("=")
        if not sep:
            raise _axis_error(letter, spec, "NAME=V1,V2,... e.g. seed=1,2,3 or model=all")
        spelled, raw = name_text.strip(), values_text
    elif isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str):
        spelled, raw = spec[0].strip(), spec[1]
    else:
        raise _axis_error(letter, spec, "NAME=V1,V2,... or (NAME, [values])")
    name = _axis_name(letter, spelled)
    values = _axis_values(letter, name, spelled, raw)
    if not values:
        raise _axis_error(letter, spec, f"at least one value for {spelled}")
    return Axis(name, tuple(dict.fromkeys(values)))  # a value twice would be a column twice


def _axis_error(letter: str, value: Any, allowed: str) -> ValidationError:
    where = f"--{letter}" if letter in _LETTERS else letter  # an option, or a panel field ("Sweep seeds")
    return ValidationError("grid", [Problem(where, value, allowed)])


def _as_typed(letter: str, spelled: str, value: str) -> str:
    """A bad value as the user typed it: `seed=x` on an axis option, `x` in a field or a list of models."""
    return f"{spelled}={value}" if letter in _LETTERS else value


def _axis_name(letter: str, spelled: str) -> str:
    if spelled in ("prompt", "prompts"):
        return "prompt"
    if spelled in ("model", "models", "m", "-m", "--model"):
        return "model"
    try:
        return param_for(spelled).name
    except KeyError as exc:
        allowed = "prompt, model, " + ", ".join(p.option.lstrip("-") for p in PARAMS if p.name != "model")
        raise _axis_error(letter, spelled, f"an axis is one of {allowed}") from exc


def _split(name: str, raw: str) -> list[str]:
    sep = "|" if name in _PIPE_SEPARATED else ","
    return [part.strip() for part in raw.split(sep) if part.strip()]


def _axis_values(letter: str, name: str, spelled: str, raw: Any) -> list[Any]:
    texts: list[Any] = _split(name, raw) if isinstance(raw, str) else list(raw)
    if name == "model":
        return _models(letter, texts)
    if name == "prompt":
        return [str(t) for t in texts]
    out: list[Any] = []
    choices = BY_NAME[name].choices if name in BY_NAME else ()
    for item in texts:
        if not isinstance(item, str):
            value = canonical_size(item) if name == "size" else canonical_style(item) if name == "style" else item
        elif name in ("seed", "n") and ".." in item:
            out.extend(_range(letter, spelled, item))
            continue
        else:
            try:
                value = read_value(spelled if not spelled.startswith("-") else name, item)
            except ValueError as exc:
                raise _axis_error(letter, _as_typed(letter, spelled, item), str(exc)) from None
        if choices and value not in choices:  # blamed on the axis as typed, not on the cells it makes
            raise _axis_error(letter, _as_typed(letter, spelled, str(item)), "one of " + ", ".join(choices))
        out.append(value)
    return out


def _range(letter: str, spelled: str, text: str) -> list[int]:
    lo_text, _, hi_text = text.partition("..")
    try:
        lo, hi = int(lo_text), int(hi_text)
    except ValueError:
        raise _axis_error(letter, _as_typed(letter, spelled, text), "a range of whole numbers, e.g. 1..4") from None
    if not 0 < hi - lo + 1 <= 100:
        raise _axis_error(letter, _as_typed(letter, spelled, text), "a range of 1 to 100 values, low..high")
    return list(range(lo, hi + 1))


def _models(letter: str, texts: Sequence[Any]) -> list[str]:
    names: list[str] = []
    for text in texts:
        word = str(text).strip()
        if word.lower() == "all":
            names.extend(MODELS)
        elif word.lower() == "guide":
            names.extend(GUIDE_MODELS)
        else:
            try:
                names.append(get_model(word).name)
            except KeyError as exc:
                raise _axis_error(letter, _as_typed(letter, "model", word), str(exc.args[0])) from None
    return names


REUSED = "from the store"  # a cell's phase when an earlier run made its request (grid(reuse=True))


@dataclass
class GridCell:
    """One cell: where it sits, what the user asked, the request as sent, and the outcome.

    `notes` say every way the request differs from what was asked (adapted size, a value the model's
    family does not take); `shares` is the key of the cell whose identical request this one reuses.
    """

    key: tuple[int, int, int]  # (z, y, x)
    asked: dict[str, Any]
    request: GenerationRequest
    notes: list[str] = field(default_factory=list)
    shares: tuple[int, int, int] | None = None
    phase: str = "planned"
    result: GenerationResult | None = None
    error: BaseException | None = None

    @property
    def model(self) -> str:
        return self.request.model

    @property
    def row(self) -> int:
        return self.key[1]

    @property
    def outcome(self) -> GenerationResult | BaseException | None:
        return self.result if self.result is not None else self.error

    @property
    def finished(self) -> bool:
        return self.result is not None or self.error is not None

    @property
    def from_store(self) -> bool:
        """Its request was made by an earlier run and is shown from the store (grid(reuse=True))."""
        return self.phase == REUSED

    def status_text(self) -> str:
        if self.result is not None:
            ok, total = len(self.result.succeeded), len(self.result.images)
            text = f"ok {ok}/{total}" if ok == total else f"partial {ok}/{total}"
            return f"{text}, {REUSED}" if self.from_store else text
        if self.error is not None:
            return f"failed {getattr(self.error, 'code', None) or type(self.error).__name__}"
        return self.phase

    def __repr__(self) -> str:
        return f"<GridCell {self.key} {self.model} {self.status_text()}>"


def _fit(asked: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The parameters the cell's model is sent, and a note for each difference from `asked`."""
    spec = get_model(asked["model"])
    sent: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in asked.items():
        if value is None:
            continue
        if key in ("prompt", "model", "n", "seed"):
            sent[key] = value
        elif key not in spec.params:
            shown = Axis(key, (value,)).labels[0]
            notes.append(f"{shown}: n/a for {spec.family}, not sent")
        elif key == "size":
            if parse_size(value) is None and str(value).strip().upper() not in spec.sizing.tier_names:
                sent["size"] = value  # not a size at all ("0*0"): sent on to validation, which names it
                continue
            fitted = adapt_size(spec, str(value))
            sent["size"] = fitted
            if fitted != value:
                notes.append(f"size {value} → {fitted} ({spec.name}: {spec.size_rule()})")
        else:
            sent[key] = value
    return sent, notes


def plan_cells(
    prompts: Sequence[str],
    axes: Sequence[Axis | None],
    fixed: Mapping[str, Any],
) -> dict[tuple[int, int, int], GridCell]:
    """Every cell of the grid (z, y, x order) with its effective request, fitted to its model.

    `axes` is (x, y, z), None for an unused one; `fixed` holds the parameters every cell shares
    (model, n, seed included). A prompt that is not on an axis is `prompts[0]`. Raises ValidationError
    listing every cell whose request breaks its model's rules (nothing is sent).
    """
    x, y, z = (list(axes) + [None, None, None])[:3]
    used = [a for a in (x, y, z) if a is not None]
    names = [a.name for a in used]
    if len(set(names)) != len(names):
        raise ValidationError("grid", [Problem("axes", names, "each parameter on one axis only")])
    fixed = {k: canonical_size(v) if k == "size" else canonical_style(v) if k == "style" else v
             for k, v in fixed.items() if v is not None}  # fmt: skip
    cells: dict[tuple[int, int, int], GridCell] = {}
    seen: dict[str, tuple[int, int, int]] = {}
    problems: list[Problem] = []
    spans = [range(len(a)) if a is not None else range(1) for a in (z, y, x)]
    for zi, yi, xi in product(*spans):
        asked: dict[str, Any] = {"prompt": prompts[0], **fixed}
        for axis, index in ((x, xi), (y, yi), (z, zi)):
            if axis is not None:
                asked[axis.name] = axis.values[index]
        try:
            sent, notes = _fit(asked)
        except (KeyError, TypeError) as exc:  # an Axis or fixed value that names no model
            problems.append(Problem("model", asked.get("model"), _unknown_model(exc)))
            continue
        request = GenerationRequest(**sent)
        where = _where((x, y, z), (xi, yi, zi))
        for key, value in asked.items():  # a value no model takes is an error even where it is not sent
            choices = BY_NAME[key].choices if key in BY_NAME else ()
            if choices and value not in choices:
                problems.append(Problem(OPTION_NAMES[key], value, "one of " + ", ".join(choices)))
        try:
            warnings = validate(request, names=OPTION_NAMES)
        except ValidationError as exc:
            problems.extend(Problem(f"{p.param} ({where})", p.value, p.allowed) for p in exc.problems)
            warnings = []
        cell = GridCell((zi, yi, xi), asked, request, notes=[*notes, *warnings])
        fingerprint = repr(sorted(request.canonical().items()))
        if fingerprint in seen:
            cell.shares = seen[fingerprint]
        else:
            seen[fingerprint] = cell.key
        cells[cell.key] = cell
    if not problems:
        problems = _sizes_no_model_takes(cells, (x, y, z), fixed)
    if problems:
        raise ValidationError("grid", list(dict.fromkeys(problems)))
    return cells


def _sizes_no_model_takes(cells: Mapping[tuple[int, int, int], GridCell], axes: Sequence[Axis | None],
                          fixed: Mapping[str, Any]) -> list[Problem]:  # fmt: skip
    """A size (fixed, or each value of a size axis) that none of the grid's models takes as given.

    Fitting is for a size one model takes and another does not; a size no model takes would be fitted
    everywhere, and every cell would be paid for at a size nobody asked for ("size 9*9" sent as 512*512).
    """
    specs = list({c.model: get_model(c.model) for c in cells.values()}.values())
    axis = next(((letter, a) for letter, a in zip(_LETTERS, axes) if a is not None and a.name == "size"), None)
    if axis is not None:
        asked = [(f"--{axis[0]}", f"size={v}", v) for v in axis[1].values]
    else:
        asked = [(OPTION_NAMES["size"], fixed["size"], fixed["size"])] if fixed.get("size") is not None else []
    rules: dict[str, list[str]] = {}
    for spec in specs:
        rules.setdefault(spec.size_rule(), []).append(spec.name)
    takes = "; ".join(f"{', '.join(names)}: {rule}" for rule, names in rules.items())
    problems = []
    for where, shown, size in asked:
        if not isinstance(size, str) or parse_size(size) is None and all(
            size.strip().upper() not in spec.sizing.tier_names for spec in specs
        ):
            continue  # not a size at all ("0*0"): validation names it in each cell
        if all(spec.sizing.problem(size) is not None for spec in specs):
            problems.append(Problem(where, shown, "a size at least one of the grid's models takes as given (the "
                                    f"others are then fitted to it): {takes}"))  # fmt: skip
    return problems


def _where(axes: Sequence[Axis | None], index: Sequence[int]) -> str:
    parts = [f"{letter}={a.labels[i][:30]}" for letter, a, i in zip(_LETTERS, axes, index) if a is not None]
    return ", ".join(parts) or "the cell"


def place_prompts(given: Any, axes: list[Axis | None]) -> tuple[list[str], list[Axis | None]]:
    """The prompts of a grid and its axes, the prompts coming from ONE place: `given` (one prompt, or
    several, which become an axis: Y unless it is used) or a prompt axis, `given` being None, "" or [].

    Raises ValidationError for prompts in both places or in neither, TypeError for what is no text.
    """
    prompts = prompt_list("prompt_or_prompts", given)
    on_axis = next((a for a in axes if a is not None and a.name == "prompt"), None)
    if on_axis is not None:
        if prompts:  # the axis would silently drop them
            raise ValidationError("grid", [Problem("prompt_or_prompts", given, "either the prompt(s) or a prompt "
                                                   "axis, not both: pass None when an axis holds the prompts")])
        return list(on_axis.values), axes
    if not prompts:
        raise ValidationError("grid", [Problem("prompt_or_prompts", given,
                                               'a prompt, a list of prompts, or None with a prompt axis (x="prompt=a|b")')])
    axes = list(axes)
    if len(prompts) > 1:
        free = 1 if axes[1] is None else 0 if axes[0] is None else 2 if axes[2] is None else None
        if free is None:
            raise ValidationError("grid", [Problem("prompts", len(prompts), "one prompt when X, Y and Z are all used")])
        axes[free] = Axis("prompt", tuple(prompts))
    return prompts, axes


def prompt_list(keyword: str, given: Any) -> list[str]:
    """The prompts `given` as a list: [] for None, "" or blank texts; a TypeError naming `keyword` for what
    is no text or list of texts."""
    if given is None:
        return []
    if isinstance(given, str):
        return [given] if given.strip() else []
    if isinstance(given, (bytes, Mapping)) or not isinstance(given, Iterable):
        raise TypeError(f"{keyword}={given!r}: a prompt (str) or a list of prompts, not {type(given).__name__}")
    prompts = list(given)
    wrong = [p for p in prompts if not isinstance(p, str)]
    if wrong:
        raise TypeError(f"{keyword}: each prompt is a str, not {type(wrong[0]).__name__} ({wrong[0]!r})")
    return prompts if any(p.strip() for p in prompts) else []
