"""X/Y/Z grids: any request parameter, the prompt and the model on up to three axes; `compare()` is the
prompts x models shorthand over the same machinery.

`grid()` plans every cell (`_grid`: axes, per-cell effective requests fitted to each model, and what a
model's family does not take, said per cell), states the count, cost and time before sending anything
(`dry_run=True` stops there), runs the distinct requests as one Run (the client's rate and concurrency
limits apply), fills the cells live from the Run's events, and keeps failures as labelled tiles.
`Grid.save("grid.png")` writes one labelled PNG (`_grid_paint`) and a manifest of every cell.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import rendering
from ._exceptions import Problem, ValidationError
from ._grid import DEFAULT_SEED, GUIDE_MODELS, Axis, GridCell, GridPlan, parse_axis, place_prompts, prompt_list
from ._grid_state import GridState, build_state
from ._grid_html import xyz_grid_html
from ._grid_paint import paint_grid
from ._models import GenerationResult
from ._params import OPTION_NAMES
from ._png import add_provenance
from ._registry import get_model
from ._request import PARAMETERS, excerpt
from ._session import Session, get_session
from ._version import __version__

if TYPE_CHECKING:  # IPython loads only in a notebook
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.display import DisplayHandle

__all__ = [
    "Axis",
    "CompareGrid",
    "DEFAULT_SEED",
    "GUIDE_MODELS",
    "GUIDE_PROMPTS",
    "Grid",
    "GridCell",
    "GridPlan",
    "compare",
    "grid",
]

log = logging.getLogger(__name__)

# The four prompts of the user guide's "模型效果对比" table (the first as its curl example sends it).
GUIDE_PROMPTS: tuple[str, ...] = (
    "生成一张新年祝福贺卡，背景有白雪，放鞭炮的小孩，蛇形成文案2025，并写上HAPPY NEW YEAR。",
    "一个用针毡制作的圣诞老人手持礼物，旁边站着一只白色的猫咪，背景中有许多五颜六色的礼物。整个场景应该是可爱、温暖和"
    "舒适的，并且背景中还有一些绿色植物。",
    "中国女孩，圆脸，看着镜头，优雅的民族服装，商业摄影，室外，电影级光照，半身特写，精致的淡妆，锐利的边缘。",
    "高清摄影写真，一只布偶猫慵懒地躺在复古木质窗台上。它拥有一身柔软的银白色长毛，深蓝色宝石般的眼睛，粉嫩的小鼻头和肉垫。"
    "猫咪眼神温柔地望向镜头，嘴角似乎带着一抹满足的微笑。午后阳光透过半开的窗户洒在它身上，营造出温馨而宁静的氛围。"
    "背景是模糊的绿色植物和老式窗帘，增添了几分生活气息。近景特写，自然光影效果。",
)

_FIXED_PARAMS = ("model", *(p for p in PARAMETERS if p not in ("prompt", "model")))
_REFRESH_SECONDS = 1.0
Key = tuple[int, int, int]


class Grid(GridState):
    """An X/Y/Z grid of results. Display it, index it (`grid[z, y, x]`), `save()` it, read its `manifest()`.

    `grid.x`, `grid.y`, `grid.z` are the axes (None when unused); `grid.cell_at(z, y, x)` is the
    GridCell with the effective request, the notes and the outcome.
    """

    # ---- display ---------------------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "dry run" if self.dry_run else ("done" if self.done else "running")
        return f"<{type(self).__name__} {len(self._cells)} cells {state}>"

    def text(self) -> str:
        """Deterministic text: plan, a status line per cell and the notes (no task ids, paths or times)."""
        lines = [self.title_text(), ("dry run, nothing sent: " if self.dry_run else "plan: ") + str(self.plan)]
        with self._lock:
            rows = [[self._where(c.key), c.model, c.status_text()] for c in self._cells.values()]
        lines.append(rendering.table_text(["cell", "model", "status"], rows))
        lines += self._footer_text()
        return "\n".join(lines)

    def _footer_text(self) -> list[str]:
        lines = []
        if self.done and not self.dry_run:
            ok = sum(len(c.result.succeeded) for c in self._cells.values() if c.result is not None and c.shares is None)
            failed = sum(1 for c in self._cells.values() if c.error is not None)
            cost = self.done_cost_text()  # with reuse: what this run paid, then what the reused cells cost then
            lines.append(f"done: {ok} image{_s(ok)}, {failed} failed cell{_s(failed)}{'; ' if self.plan.reused else ', '}{cost}")
            reused = self.reused_cost_text()
            if reused:
                lines.append(f"  {reused}")
        if self.interrupted:
            lines.append(f"interrupted: {self.interrupted}")
        after = self.after_resume()
        if after:
            lines.append(f"next: {after}")
        if self.notes:
            lines.append("notes:")
            lines.extend(f"  - {note}" for note in self.notes)
        return lines

    def _where(self, key: Key) -> str:
        z, y, x = key
        parts = [a.labels[i] for a, i in ((self.z, z), (self.y, y), (self.x, x)) if a is not None]
        return " / ".join(excerpt(" ".join(p.split()), 24) for p in parts) or "cell"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.mimebundle()

    def mimebundle(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(data, metadata): text/plain, text/html and the cells' provenance under "wanx_nb"."""
        return {"text/plain": self.text(), "text/html": self.html()}, {"wanx_nb": self._metadata()}

    def html(self) -> str:
        """The grid as HTML tables (one per Z value) that fit their output area."""
        with self._lock:
            return xyz_grid_html(self, backends=self.backends, plan=str(self.plan), done=self.done)

    def _metadata(self) -> dict[str, Any]:
        with self._lock:
            cells = [
                {"cell": list(c.key), "model": c.model, "status": c.status_text(),
                 "task_id": c.result.task_id if c.result is not None else getattr(c.error, "task_id", None)}
                for c in self._cells.values()
            ]  # fmt: skip
        return {self.kind: {"axes": self._axes_manifest(), "cells": cells}}

    # ---- save ------------------------------------------------------------------------------------

    def save(self, path: str | Path, *, cell_px: int = 256, font: str | Path | None = None) -> Path:
        """Write the grid as ONE labelled PNG, and its manifest next to it (`path.with_suffix('.json')`).

        The PNG has the axis legend, the column and row labels (every prompt in full, Chinese drawn with a
        CJK font found on the machine, or `font`; without one the image says so), each cell's images
        scaled to `cell_px`, its seed and effective size, and what was adapted. The manifest is also
        embedded in the PNG's "wanx_nb" iTXt chunk (its provenance).
        """
        png_path = Path(path)
        if png_path.suffix.lower() != ".png":
            png_path = png_path.with_name(png_path.name + ".png")
        manifest_path = png_path.with_suffix(".json")
        manifest = self.manifest(image_name=png_path.name)
        image = paint_grid(self, cell_px=cell_px, font_path=font, manifest_name=manifest_path.name)
        buf = io.BytesIO()
        image.save(buf, format="PNG")  # no optimize pass: ~3x the encode time for ~6 % fewer bytes
        provenance = {"wanx_nb_version": __version__, "kind": self.kind, "manifest": manifest_path.name,
                      "seed": self.seed, "axes": self._axes_manifest()}  # fmt: skip
        png = add_provenance(buf.getvalue(), provenance)
        png_path.parent.mkdir(parents=True, exist_ok=True)
        png_path.write_bytes(png)
        manifest["image_sha256"] = hashlib.sha256(png).hexdigest()
        manifest_path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
        return png_path


class CompareGrid(Grid):
    """A prompts x models grid (prompts down, models across): `grid[i, model]`, `grid.cell(i, model)`."""

    kind = "compare"

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.x.values) if self.x is not None else ()

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.prompts), len(self.models)

    def cell(self, row: int, model: str | int) -> GridCell:
        return self._cells[(0, row, self.models.index(self._model_name(model)))]

    def __getitem__(self, key: tuple[int, Any]) -> GenerationResult | BaseException | None:  # type: ignore[override]
        if len(key) == 3:
            return super().__getitem__(key)
        row, model = key
        return self.cell(row, model).outcome

    @property
    def results(self) -> dict[tuple[int, str], GenerationResult | BaseException | None]:
        """Every cell's outcome by (prompt index, model), row by row."""
        with self._lock:
            return {(c.key[1], c.model): c.outcome for c in self._cells.values()}

    def _model_name(self, model: str | int) -> str:
        if isinstance(model, int):
            return self.models[model]
        name = model if model in self.models else get_model(model).name  # accepts international names
        if name not in self.models:
            raise KeyError(f"model {model!r} is not a column of this grid; columns: {', '.join(self.models)}")
        return name


# ---- grid() and compare() ------------------------------------------------------------------------


def grid(
    prompt_or_prompts: str | Sequence[str] | None,
    x: Any = None,
    y: Any = None,
    z: Any = None,
    *,
    dry_run: bool = False,
    session: Session | None = None,
    display: bool | None = None,
    preview_px: int = 200,
    reuse: bool = False,
    on_plan: Callable[[Grid], None] | None = None,
    **fixed: Any,
) -> Grid:
    """Run a grid of images: up to three axes over the prompt, the model and any request parameter.

    Parameters:
        prompt_or_prompts: one prompt, or several (then "prompt" is an axis: Y unless you place it);
            None (or "" or []) with a prompt axis (`x="prompt=a fox|a cat"`): the prompts come from
            one place, the argument or the axis, never both.
        x, y, z: axes, e.g. "model=all", "seed=1,2,3", "style=anime,sketch,watercolor",
            ("size", ["1024*1024", "1280*720"]), "extend=on,off", "prompt=a fox|a cat" (Z draws one
            grid per value). Values are read by the parameter table: a bad one names the option.
        dry_run: state the plan (cells, images, cost, time, adaptations) and send nothing.
        session: the Session to generate through (default `get_session()`).
        display: show the plan and the grid live while it runs (default: inside a kernel).
        preview_px: preview size of the tiles in the HTML grid.
        reuse: show a request an earlier run already made (every billed image saved in the store, by
            the same service) from the store instead of paying for it again: run an interrupted grid
            again, after `%wanx resume`, and only what is missing is sent.
        on_plan: called with the planned grid (its `plan` and `notes`) once it is planned, before
            anything is sent: a script can state the plan without planning twice.
        **fixed: parameters every cell shares (model, n, seed, size, style, negative_prompt, ...).
            A value a cell's model does not take is left out of that cell and said in it; a size is
            fitted to each model (the registry's rule) and the fitted size is shown.

    Raises ValidationError (nothing sent) for a bad axis or a cell whose request breaks its model's
    rules, and BudgetExceededError when the estimate exceeds the session's budget.
    """
    axes = [parse_axis(a, letter) if a is not None else None for a, letter in ((x, "x"), (y, "y"), (z, "z"))]
    prompts, axes = place_prompts(prompt_or_prompts, axes)
    return _build(Grid, prompts, axes, fixed, dry_run=dry_run, session=session, display=display, preview_px=preview_px,
                  reuse=reuse, on_plan=on_plan)  # fmt: skip


def compare(
    prompts: str | Sequence[str],
    models: Sequence[str] | None = None,
    n: int = 1,
    seed: int | None = None,
    dry_run: bool = False,
    *,
    session: Session | None = None,
    display: bool | None = None,
    preview_px: int = 200,
    reuse: bool = False,
    **params: Any,
) -> CompareGrid:
    """Every prompt on every model with one shared seed: `grid(prompts, x="model=...", y="prompt")`.

    `models` default to the user guide's four (`GUIDE_MODELS`); `**params` are shared by every cell
    (each model gets the ones it takes, and every difference is noted per cell). `reuse` as in `grid`.
    """
    texts = prompt_list("prompts", prompts)
    if not texts:
        raise ValidationError("compare", [Problem("prompts", prompts, "at least one prompt")])
    if "model" in params:
        raise TypeError("compare() takes models=[...], not model=")
    names = [models] if isinstance(models, str) else list(models) if models is not None else list(GUIDE_MODELS)
    if not names:
        raise ValidationError("compare", [Problem("models", models, "at least one model")])
    axes: list[Axis | None] = [parse_axis(("model", names), "models"), Axis("prompt", tuple(texts)), None]
    fixed = {"n": n, "seed": seed, **params}
    built = _build(CompareGrid, texts, axes, fixed, dry_run=dry_run, session=session, display=display,
                   preview_px=preview_px, reuse=reuse)  # fmt: skip
    assert isinstance(built, CompareGrid)
    return built


def _build(cls: type[Grid], prompts: list[str], axes: list[Axis | None], fixed: dict[str, Any], *, dry_run: bool,
           session: Session | None, display: bool | None, preview_px: int, reuse: bool = False,
           on_plan: Callable[[Grid], None] | None = None) -> Grid:  # fmt: skip
    session = session if session is not None else get_session()
    unknown = sorted(set(fixed) - set(_FIXED_PARAMS))
    if unknown:
        raise TypeError(f"unexpected parameter(s) {', '.join(unknown)}; the grid takes {', '.join(_FIXED_PARAMS)}")
    if not prompts:
        raise ValidationError("grid", [Problem("prompt", prompts, "at least one prompt")])
    both = sorted({k for k, v in fixed.items() if v is not None} & {a.name for a in axes if a is not None})
    if both:  # an axis would silently override the fixed value
        raise ValidationError("grid", [Problem(OPTION_NAMES.get(k, k), fixed[k], "either fixed or an axis, not both")
                                       for k in both])  # fmt: skip
    built = build_state(cls, prompts, axes, fixed, session, dry_run=dry_run, preview_px=preview_px, reuse=reuse,
                        refuse_over_budget=False)  # fmt: skip
    assert isinstance(built, Grid)
    log.info("wanx grid: %s", built.plan)
    if on_plan is not None:  # the plan is stated even when the budget then refuses it
        on_plan(built)
    if dry_run:
        return built
    keys = built.unique_keys()
    session.check_budget([built._cells[k].request for k in keys])
    if not keys:  # every request was made before (reuse): nothing to send or to watch
        return built
    shell = _shell()
    handle = _show_live(built, shell) if (display or (display is None and _in_kernel(shell))) else None
    _run(built, session, keys, handle)
    return built


def _run(built: Grid, session: Session, keys: list[Key], handle: DisplayHandle | None) -> None:
    """Run the distinct requests as one Run, refreshing the live display from this (the kernel's) thread."""
    from ._exceptions import RunInterruptedError

    requests = [built._cells[k].request for k in keys]
    run = session.start(
        requests,
        on_progress=lambda p: built._on_progress(keys, p),
        on_result=lambda i, outcome: built._on_result(keys, i, outcome),
    )
    last = [0.0]

    def tick() -> None:
        if handle is not None and built._changed.is_set() and time.monotonic() - last[0] >= _REFRESH_SECONDS:
            _refresh(handle, built)
            last[0] = time.monotonic()

    try:
        run.result(on_tick=tick)
    except RunInterruptedError as exc:
        # The run withdrew what was not sent, canceled what was PENDING and kept the rest for resume.
        built.interrupted = exc.summary.text()
        with built._lock:
            for cell in built._cells.values():
                if not cell.finished:
                    cell.phase = "interrupted"
    finally:
        if handle is not None:
            # The live view goes blank and the returned grid takes its place: a cell's saved outputs are
            # then the same however the cells' timing went (nbval compares them).
            handle.update({"text/plain": ""}, raw=True)


# ---- notebook helpers --------------------------------------------------------------------------


def _shell() -> InteractiveShell | None:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    shell: InteractiveShell | None = get_ipython()  # unannotated in IPython
    return shell


def _in_kernel(shell: InteractiveShell | None) -> bool:
    return shell is not None and getattr(shell, "kernel", None) is not None


def _show_live(built: Grid, shell: InteractiveShell | None) -> DisplayHandle:
    """State the plan once (a static output), and open an empty live view that fills in as cells finish."""
    from IPython.display import display

    display({"text/plain": str(built.plan)}, raw=True)
    handle: DisplayHandle = display({"text/plain": ""}, raw=True, display_id=True)  # a handle, with display_id
    return handle


def _refresh(handle: DisplayHandle, built: Grid) -> None:
    built._changed.clear()
    data, metadata = built.mimebundle()
    handle.update(data, metadata=metadata, raw=True)


def _s(count: int) -> str:
    return "" if count == 1 else "s"
