"""The grid model: axes, cells, each cell's effective request, and the pre-flight estimate. Pure: no I/O.

An axis puts one thing on X, Y or Z: the prompt, the model, or any request parameter of the table in
`_params` (`seed=1,2,3`, `style=anime,sketch`, `size=1024*1024,1280*720`, `extend=on,off`). Every
cell starts from the fixed parameters, takes its axis values, and is then fitted to its model: a size
the model does not take becomes the nearest one it does (the registry's rule), a parameter the model's
family does not take is left out *and said in the cell* ("style <sketch>: n/a for V2"). Cells whose
effective requests are identical are sent once and share the result (a style axis over a V2 model
would otherwise pay for the same image ten times).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import TYPE_CHECKING, Any

from ._exceptions import Problem, ValidationError
from ._params import BY_NAME, OPTION_NAMES, PARAMS, canonical_size, canonical_style, param_for, parse_size, read_value
from ._registry import MODELS, adapt_size, get_model
from ._request import GenerationRequest
from ._validation import validate

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
    "plan_cells",
    "summary_notes",
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
        sent, notes = _fit(asked)
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
    if problems:
        raise ValidationError("grid", list(dict.fromkeys(problems)))
    return cells


def _where(axes: Sequence[Axis | None], index: Sequence[int]) -> str:
    parts = [f"{letter}={a.labels[i][:30]}" for letter, a, i in zip(_LETTERS, axes, index) if a is not None]
    return ", ".join(parts) or "the cell"


@dataclass(frozen=True)
class GridPlan:
    """What a grid will send, before anything is: cells, requests, images, cost and time."""

    shape: tuple[int, int, int]  # (z, y, x)
    cells: int
    requests: int
    images: int
    yuan: float
    seconds: float
    seed: int | None
    seed_chosen: bool
    backend: str
    budget_note: str | None = None
    reused: int = 0  # distinct requests already made, shown from the store (`images`, `yuan`: the rest)

    def __str__(self) -> str:
        z, y, x = self.shape
        dims = " x ".join(str(d) for d in (x, y, z) if d > 1) or "1"
        shared = self.cells - self.requests
        text = f"{dims} = {self.cells} cell{_s(self.cells)}"
        if shared:
            text += f" ({self.requests} request{_s(self.requests)}; {shared} cell{_s(shared)} {'repeats' if shared == 1 else 'repeat'} another cell's request, sent once)"
        estimate = f", estimated ¥{self.yuan:.2f} if every image succeeds, about {_duration(self.seconds)}"
        if self.reused == self.requests:
            text += "; every request already made, shown from the store: nothing to send"
        elif self.reused:
            text += (f"; {self.reused} of {self.requests} requests already made, shown from the store (not paid "
                     f"again); {self.images} image{_s(self.images)} to make{estimate}")
        else:
            text += f", {self.images} image{_s(self.images)}{estimate}"
        if self.seed is not None:
            text += f"; seed {self.seed} in every cell"
            if self.seed_chosen:
                text += " (chosen for you; pass seed= to change it)"
        if self.budget_note:
            text += f"; {self.budget_note}"
        return text


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(round(seconds), 1)} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def summary_notes(cells: Mapping[tuple[int, int, int], GridCell]) -> list[str]:
    """Each adaptation once, with the models it applies to."""
    by_note: dict[str, list[str]] = {}
    for cell in cells.values():
        for note in cell.notes:
            models = by_note.setdefault(note, [])
            if cell.model not in models:
                models.append(cell.model)
    notes = [f"{', '.join(models)}: {note}" if "n/a" in note else note
             for note, models in by_note.items() if "n/a" in note or note.startswith("size ")]  # fmt: skip
    families = {get_model(c.model).family for c in cells.values()}
    if families >= {"V1", "V2"} and not any(
        "prompt_extend" in c.asked for c in cells.values()
    ):
        notes.append("prompt_extend not set: the V2 models rewrite the prompt (server default on), wanx-v1 does not")
    shared = sum(1 for c in cells.values() if c.shares is not None)
    if shared:
        notes.append(f"{shared} cell(s) have the same effective request as another cell: sent once, shown in each")
    return notes
