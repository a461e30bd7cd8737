"""The model comparison grid: prompts down, models across, one shared seed, as in the user guide's table.

`compare()` adapts each cell's parameters to its model (a V2 size becomes the nearest V1 size, style
and ref_img go to V1 only, prompt_extend and watermark to V2 only) and says so, per cell and in a
summary: nothing changes silently. It states the number of images and the cost before sending
anything (`dry_run=True` stops there), runs every cell concurrently through the session (so the
client's rate and concurrency limits apply), fills the grid in as cells finish, and keeps failures as
labelled tiles while the rest completes. `CompareGrid.save()` writes one labelled PNG plus a JSON
manifest.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import math
import re
import threading
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import rendering
from ._exceptions import Problem, ValidationError, WanxError
from ._models import GenerationResult
from ._png import add_provenance
from ._registry import MODELS, ModelSpec, get_model
from ._request import PARAMETERS, GenerationRequest
from ._session import Progress, get_session
from ._validation import parse_size, validate
from ._version import __version__

__all__ = [
    "CompareCell",
    "CompareGrid",
    "ComparePlan",
    "DEFAULT_SEED",
    "GUIDE_MODELS",
    "GUIDE_PROMPTS",
    "adapt_params",
    "compare",
]

log = logging.getLogger(__name__)

# The four models of the user guide's comparison, in its order (2.1 professional first).
GUIDE_MODELS: tuple[str, ...] = ("wanx2.1-t2i-plus", "wanx2.1-t2i-turbo", "wanx2.0-t2i-turbo", "wanx-v1")

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

# The seed every cell shares when none is given. A constant rather than a random pick: the same call
# gives the same grid, so a notebook recorded once validates in replay mode.
DEFAULT_SEED = 20250108

# Parameters compare() passes on to each cell (prompt, model, n and seed are its own arguments).
_CELL_PARAMS = tuple(p for p in PARAMETERS if p not in ("prompt", "n", "seed"))
_EXCERPT = 36
_REFRESH_SECONDS = 1.0


# ---- parameter adaptation ----------------------------------------------------------------------


def adapt_params(spec: ModelSpec, asked: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The parameters `spec` will be sent for `asked`, and a note for every difference.

    A size the model does not take becomes the nearest one it does (same orientation, then the
    closest aspect ratio, then the closest area); a parameter the model does not take is dropped.
    """
    effective: dict[str, Any] = {}
    notes: list[str] = []
    dropped: dict[str, list[str]] = {}
    for key, value in asked.items():
        if value is None:
            continue
        if key == "size":
            size, note = _fit_size(spec, str(value))
            effective["size"] = size
            if note:
                notes.append(note)
        elif key in spec.params:
            effective[key] = value
        else:
            owners = "/".join(sorted({m.family for m in MODELS.values() if key in m.params})) or "no model"
            dropped.setdefault(owners, []).append(f"{key}={value!r}")
    for owners, items in dropped.items():
        notes.append(f"not sent ({owners} only): {', '.join(items)}")
    return effective, notes


def _orientation(w: int, h: int) -> int:
    return (w > h) - (w < h)


def _fit_size(spec: ModelSpec, size: str) -> tuple[str, str | None]:
    parsed = parse_size(size)
    if parsed is None:
        return size, None  # validation reports the shape
    w, h = parsed
    canonical = f"{w}*{h}"
    if spec.sizes is not None:
        if canonical in spec.sizes:
            return canonical, None

        def distance(candidate: str) -> tuple[bool, float, float]:
            cw, ch = parse_size(candidate) or (1, 1)
            return (
                _orientation(cw, ch) != _orientation(w, h),
                abs(math.log((cw / ch) / (w / h))),
                abs(math.log((cw * ch) / (w * h))),
            )

        best = min(spec.sizes, key=distance)
        return best, f"size {canonical} -> {best} (nearest of the {len(spec.sizes)} sizes {spec.name} supports)"
    if spec.side_range is not None:
        lo, hi = spec.side_range
        if lo <= w <= hi and lo <= h <= hi:
            return canonical, None
        factor = min(1.0, hi / max(w, h))
        if min(w, h) * factor < lo:
            factor = lo / min(w, h)
        nw, nh = (min(max(round(w * factor), lo), hi), min(max(round(h * factor), lo), hi))
        return f"{nw}*{nh}", f"size {canonical} -> {nw}*{nh} ({spec.name}: each side {lo}-{hi} px)"
    if spec.pixel_range is not None:
        lo, hi = spec.pixel_range
        area = w * h
        if lo <= area <= hi:
            return canonical, None
        factor = math.sqrt((lo if area < lo else hi) / area)
        nw, nh = round(w * factor), round(h * factor)
        while nw * nh > hi:
            nw, nh = nw - 1, nh - 1
        while nw * nh < lo:
            nw, nh = nw + 1, nh + 1
        return f"{nw}*{nh}", f"size {canonical} -> {nw}*{nh} ({spec.name}: {lo}-{hi} pixels)"
    return canonical, None


# ---- the grid ----------------------------------------------------------------------------------


@dataclass
class CompareCell:
    """One prompt on one model: the request as sent, what was adapted, and the outcome."""

    row: int
    model: str
    request: GenerationRequest
    notes: list[str] = field(default_factory=list)
    phase: str = "planned"
    result: GenerationResult | None = None
    error: BaseException | None = None

    @property
    def outcome(self) -> GenerationResult | BaseException | None:
        return self.result if self.result is not None else self.error

    @property
    def ok(self) -> bool:
        return self.result is not None and bool(self.result.succeeded)

    @property
    def finished(self) -> bool:
        return self.result is not None or self.error is not None

    def status_text(self) -> str:
        if self.result is not None:
            ok, total = len(self.result.succeeded), len(self.result.images)
            return f"ok {ok}/{total}" if ok == total else f"partial {ok}/{total}"
        if self.error is not None:
            return f"failed {_error_code(self.error)}"
        return self.phase

    def __repr__(self) -> str:
        return f"<CompareCell #{self.row} {self.model} {self.status_text()}>"


@dataclass(frozen=True)
class ComparePlan:
    """What a comparison will send: its size, its cost if every image succeeds, and the shared seed."""

    prompts: int
    models: int
    n: int
    images: int
    yuan: float
    seed: int
    seed_chosen: bool
    backend: str
    budget_note: str | None = None

    def __str__(self) -> str:
        seed = f"seed {self.seed} in every cell"
        if self.seed_chosen:
            seed += " (chosen by compare; pass seed= to change it)"
        text = (
            f"{self.prompts} prompt{_s(self.prompts)} x {self.models} model{_s(self.models)} x n={self.n} = "
            f"{self.images} image{_s(self.images)}, estimated ¥{self.yuan:.2f} if every image succeeds; {seed}"
        )
        if self.budget_note:
            text += f"; {self.budget_note}"
        return text


class CompareGrid:
    """A prompts x models grid of results. Display it, index it, save it.

    `grid[i, model]` (model by name or column index) and `grid.results[(i, model)]` give the cell's
    GenerationResult, or the exception it failed with, or None while it runs; `grid.cell(i, model)`
    gives the CompareCell with the effective request and the adaptation notes.
    """

    def __init__(
        self,
        prompts: Sequence[str],
        models: Sequence[str],
        cells: Mapping[tuple[int, str], CompareCell],
        *,
        plan: ComparePlan,
        n: int,
        seed: int,
        asked: Mapping[str, Any],
        notes: Sequence[str],
        dry_run: bool,
        preview_px: int = 200,
    ) -> None:
        self.prompts = tuple(prompts)
        self.models = tuple(models)
        self.plan = plan
        self.n = n
        self.seed = seed
        self.asked = dict(asked)
        self.notes = list(notes)
        self.dry_run = dry_run
        self.preview_px = preview_px
        self.interrupted: str | None = None
        self._cells = dict(cells)
        self._lock = threading.Lock()
        self._changed = threading.Event()

    # ---- access ----------------------------------------------------------------------------------

    def cell(self, row: int, model: str | int) -> CompareCell:
        return self._cells[(row, self._model_name(model))]

    def __getitem__(self, key: tuple[int, str | int]) -> GenerationResult | BaseException | None:
        row, model = key
        return self.cell(row, model).outcome

    @property
    def results(self) -> dict[tuple[int, str], GenerationResult | BaseException | None]:
        """Every cell's outcome by (prompt index, model), row by row."""
        with self._lock:
            return {key: c.outcome for key, c in self._cells.items()}

    @property
    def cells(self) -> list[CompareCell]:
        return list(self._cells.values())

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.prompts), len(self.models)

    @property
    def done(self) -> bool:
        return all(c.finished for c in self._cells.values())

    @property
    def cost_yuan(self) -> float:
        """What the finished cells cost (successful images only)."""
        return round(sum(c.result.cost_yuan for c in self._cells.values() if c.result is not None), 4)

    def _model_name(self, model: str | int) -> str:
        if isinstance(model, int):
            return self.models[model]
        if model not in self.models:
            name = get_model(model).name  # accepts international names
            if name not in self.models:
                raise KeyError(f"model {model!r} is not a column of this grid; columns: {', '.join(self.models)}")
            return name
        return model

    # ---- updates from the session (background thread) ------------------------------------------

    def _on_progress(self, keys: Sequence[tuple[int, str]], progress: Progress) -> None:
        with self._lock:
            cell = self._cells[keys[progress.index]]
            if not cell.finished:
                cell.phase = progress.phase
        self._changed.set()

    def _on_result(self, keys: Sequence[tuple[int, str]], index: int, outcome: Any) -> None:
        with self._lock:
            cell = self._cells[keys[index]]
            if isinstance(outcome, GenerationResult):
                cell.result, cell.phase = outcome, "done"
                for warning in outcome.warnings:
                    if warning not in cell.notes:
                        cell.notes.append(warning)
            else:
                cell.error, cell.phase = outcome, "failed"
        self._changed.set()

    # ---- display ---------------------------------------------------------------------------------

    def __repr__(self) -> str:
        rows, cols = self.shape
        state = "dry run" if self.dry_run else ("done" if self.done else "running")
        return f"<CompareGrid {rows}x{cols} seed={self.seed} {state}>"

    def text(self) -> str:
        """Deterministic text: plan, a status matrix and the notes (no task ids, paths or times)."""
        rows, cols = self.shape
        lines = [f"wanx compare: {rows} prompt{_s(rows)} x {cols} model{_s(cols)}, n={self.n}, seed {self.seed}"]
        lines.append(("dry run, nothing sent: " if self.dry_run else "plan: ") + str(self.plan))
        with self._lock:
            rows = [
                [f"{i + 1}. {_excerpt(p, 24)}", *(self._cells[(i, m)].status_text() for m in self.models)]
                for i, p in enumerate(self.prompts)
            ]
        lines.append(rendering.table_text(["prompt", *self.models], rows))
        if self.done and not self.dry_run:
            ok = sum(len(c.result.succeeded) for c in self._cells.values() if c.result is not None)
            failed = sum(1 for c in self._cells.values() if c.error is not None)
            lines.append(f"done: {ok} image{_s(ok)}, {failed} failed cell{_s(failed)}, ¥{self.cost_yuan:.2f}")
        if self.interrupted:
            lines.append(f"interrupted: {self.interrupted}")
        if self.notes:
            lines.append("notes:")
            lines.extend(f"  - {note}" for note in self.notes)
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.mimebundle()

    def mimebundle(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(data, metadata): text/plain, text/html and the cells' provenance under "wanx_nb"."""
        return {"text/plain": self.text(), "text/html": self.html()}, {"wanx_nb": self._metadata()}

    def html(self) -> str:
        """The grid as an HTML table: models across (name and price), prompts down, image tiles in the cells."""
        # The results say where they came from (a replayed grid shows what was recorded); before
        # any result, the session's backend does.
        with self._lock:
            backends = {c.result.backend for c in self._cells.values() if c.result is not None} or {self.plan.backend}
            return rendering.compare_grid_html(
                self.prompts, self.models, self._cells, n=self.n, seed=self.seed, backends=backends,
                plan=str(self.plan), dry_run=self.dry_run, done=self.done, cost_yuan=self.cost_yuan,
                interrupted=self.interrupted, notes=self.notes, preview_px=self.preview_px,
            )

    def _cell_html(self, cell: CompareCell) -> str:
        return rendering.compare_cell_html(cell, dry_run=self.dry_run, preview_px=self.preview_px)

    def _metadata(self) -> dict[str, Any]:
        with self._lock:
            cells = [
                {
                    "row": c.row,
                    "model": c.model,
                    "status": c.status_text(),
                    "task_id": c.result.task_id if c.result is not None else getattr(c.error, "task_id", None),
                }
                for c in self._cells.values()
            ]
        return {"compare": {"prompts": list(self.prompts), "models": list(self.models), "seed": self.seed, "n": self.n,
                            "cells": cells}}

    # ---- save ------------------------------------------------------------------------------------

    def save(self, path: str | Path, *, cell_px: int = 256, font: str | Path | None = None) -> Path:
        """Write the grid as ONE labelled PNG, and a JSON manifest next to it (`path.with_suffix('.json')`).

        The PNG has a title, the model names and prices across, numbered prompts down, each cell's
        first images (up to 4, tiled) scaled to `cell_px`, the seed and effective size under each
        tile, and a caption with the shared parameters. The manifest has everything (prompts, models,
        seed, per-cell effective parameters, task ids, image paths, sha256, cost) and is also
        embedded in the PNG as its "wanx_nb" iTXt chunk.

        Pillow's bundled font has no Chinese glyphs, so unless `font` (a TTF/OTF with CJK glyphs) is
        given or one is installed, each row is labelled "prompt N" plus whatever Latin text the prompt
        contains, and says that the full text is in the manifest.
        """
        png_path = Path(path)
        if png_path.suffix.lower() != ".png":
            png_path = png_path.with_name(png_path.name + ".png")
        manifest_path = png_path.with_suffix(".json")
        manifest = self.manifest(image_name=png_path.name)
        image = _GridPainter(self, cell_px=cell_px, font_path=font, manifest_name=manifest_path.name).paint()
        buf = io.BytesIO()
        image.save(buf, format="PNG")  # no optimize pass: it took ~3x the encode for ~6 % fewer bytes
        provenance = {"wanx_nb_version": __version__, "kind": "compare", "manifest": manifest_path.name,
                      "seed": self.seed, "models": list(self.models)}
        png = add_provenance(buf.getvalue(), provenance)
        png_path.parent.mkdir(parents=True, exist_ok=True)
        png_path.write_bytes(png)
        manifest["image_sha256"] = hashlib.sha256(png).hexdigest()
        manifest_path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return png_path

    def manifest(self, *, image_name: str | None = None) -> dict[str, Any]:
        """Everything about the grid as plain JSON data (what `save()` writes next to the PNG)."""
        with self._lock:
            cells = [_cell_manifest(c) for c in self._cells.values()]
        return {
            "wanx_nb_version": __version__,
            "kind": "compare",
            "image": image_name,
            "prompts": list(self.prompts),
            "models": [
                {"name": m, "family": get_model(m).family, "price_yuan": get_model(m).price_yuan} for m in self.models
            ],
            "seed": self.seed,
            "seed_chosen_by_compare": self.plan.seed_chosen,
            "n": self.n,
            "asked": self.asked,
            "notes": list(self.notes),
            "backend": self.plan.backend,
            "dry_run": self.dry_run,
            "plan": {"images": self.plan.images, "estimated_yuan": self.plan.yuan},
            "cost_yuan": self.cost_yuan,
            "cells": cells,
        }


def _cell_manifest(cell: CompareCell) -> dict[str, Any]:
    out: dict[str, Any] = {
        "row": cell.row,
        "model": cell.model,
        "effective": cell.request.canonical(),
        "notes": list(cell.notes),
        "status": cell.status_text(),
        "task_id": None,
        "cost_yuan": 0.0,
        "images": [],
    }
    if cell.result is not None:
        out["task_id"] = cell.result.task_id
        out["request_id"] = cell.result.task.request_id
        out["backend"] = cell.result.backend
        out["cost_yuan"] = cell.result.cost_yuan
        for im in cell.result.images:
            sha = im.sha256 or (hashlib.sha256(im.data).hexdigest() if im.data is not None else None)
            entry = {"index": im.index, "seed": im.seed, "size": im.size, "path": im.path, "sha256": sha}
            if im.actual_prompt:
                entry["actual_prompt"] = im.actual_prompt
            if im.code:
                entry.update(code=im.code, message=im.message)
            out["images"].append(entry)
    elif cell.error is not None:
        out["task_id"] = getattr(cell.error, "task_id", None)
        out["error"] = {
            "type": type(cell.error).__name__,
            "code": _error_code(cell.error),
            "message": getattr(cell.error, "server_message", None) or str(cell.error),
        }
    return out


# ---- compare() ---------------------------------------------------------------------------------


def compare(
    prompts: str | Sequence[str],
    models: Sequence[str] | None = None,
    n: int = 1,
    seed: int | None = None,
    dry_run: bool = False,
    *,
    session: Any = None,
    display: bool | None = None,
    preview_px: int = 200,
    **params: Any,
) -> CompareGrid:
    """Run every prompt on every model with one shared seed, and return the grid.

    Parameters:
        prompts: one prompt or several (rows). `GUIDE_PROMPTS` are the user guide's four.
        models: model ids (columns); default the guide's four, `GUIDE_MODELS`.
        n: images per cell, 1-4.
        seed: the seed of every cell; when omitted `DEFAULT_SEED` is used (and shown).
        dry_run: state the plan (images, cost, adaptations) and send nothing.
        session: the Session to generate through (default `get_session()`).
        display: show the plan and the grid live while it runs (default: when inside IPython).
        preview_px: preview size of the tiles in the HTML grid.
        **params: request parameters for every cell (size, negative_prompt, style, prompt_extend,
            watermark, ref_img, ref_strength, ref_mode); each model gets the ones it takes, and
            every difference is noted.

    Raises ValidationError (nothing sent) when a cell's request breaks its model's rules, and
    BudgetExceededError when the estimate exceeds the session's budget.

    Example:
        >>> grid = compare(GUIDE_PROMPTS, size="1024*768", dry_run=True)   # doctest: +SKIP
        >>> print(grid.plan)                                              # doctest: +SKIP
    """
    session = session if session is not None else get_session()
    prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompt_list:
        raise ValidationError("compare", [Problem("prompts", prompts, "at least one prompt")])
    unknown = sorted(set(params) - set(_CELL_PARAMS))
    if unknown:
        raise TypeError(
            f"compare() got unexpected parameter(s) {', '.join(unknown)}; it takes {', '.join(_CELL_PARAMS)}"
        )
    model_list = _resolve_models(models)
    seed_chosen = seed is None
    shared_seed = DEFAULT_SEED if seed is None else seed

    cells: dict[tuple[int, str], CompareCell] = {}
    summary: dict[str, list[str]] = {}
    problems: list[Problem] = []
    for m in model_list:
        spec = get_model(m)
        effective, notes = adapt_params(spec, params)
        for note in notes:
            summary.setdefault(note, []).append(m)
        for i, prompt in enumerate(prompt_list):
            request = GenerationRequest(prompt=prompt, model=m, n=n, seed=shared_seed, **effective)
            try:
                warnings = validate(request)
            except ValidationError as exc:
                problems.extend(Problem(f"{p.param} (prompt {i + 1}, {m})", p.value, p.allowed) for p in exc.problems)
                warnings = []
            cells[(i, m)] = CompareCell(i, m, request, notes=[*notes, *warnings])
    if problems:
        raise ValidationError(", ".join(model_list), list(dict.fromkeys(problems)))

    requests = [c.request for c in cells.values()]
    images, yuan = session.estimate_cost(requests)
    budget_note = None
    try:
        session.check_budget(requests)
    except WanxError as exc:
        if not dry_run:
            raise
        budget_note = f"over budget: {exc}"
    plan = ComparePlan(
        prompts=len(prompt_list), models=len(model_list), n=n, images=images, yuan=yuan, seed=shared_seed,
        seed_chosen=seed_chosen, backend=getattr(session, "backend", "dashscope"), budget_note=budget_note,
    )
    grid_notes = [
        f"{'all models' if len(ms) == len(model_list) else ', '.join(ms)}: {note}" for note, ms in summary.items()
    ]
    if params.get("prompt_extend") is None and {get_model(m).family for m in model_list} == {"V1", "V2"}:
        grid_notes.append(
            "prompt_extend not set: the V2 models rewrite the prompt (server default on), wanx-v1 does not"
        )
    grid = CompareGrid(
        prompt_list, model_list, cells, plan=plan, n=n, seed=shared_seed, asked=params, notes=grid_notes,
        dry_run=dry_run, preview_px=preview_px,
    )
    log.info("wanx compare: %s", plan)
    if dry_run:
        return grid
    shell = _shell()
    handle = _show_live(grid, shell) if (display or (display is None and _in_kernel(shell))) else None
    _run(grid, session, list(cells), handle)
    return grid


def _resolve_models(models: Sequence[str] | None) -> list[str]:
    if models is None:
        return list(GUIDE_MODELS)
    if isinstance(models, str):
        models = [models]
    names: list[str] = []
    problems = []
    for m in models:
        try:
            name = get_model(m).name
        except KeyError as exc:
            problems.append(Problem("model", m, str(exc.args[0])))
            continue
        if name not in names:
            names.append(name)
    if problems or not names:
        problems = problems or [Problem("models", models, "at least one model")]
        raise ValidationError(", ".join(map(str, models)) or "compare", problems)
    return names


def _run(grid: CompareGrid, session: Any, keys: list[tuple[int, str]], handle: Any) -> None:
    """Run every cell as one Run, refreshing the live display from this (the kernel's) thread."""
    from ._exceptions import RunInterruptedError

    requests = [grid._cells[k].request for k in keys]
    run = session.start(
        requests,
        on_progress=lambda p: grid._on_progress(keys, p),
        on_result=lambda i, outcome: grid._on_result(keys, i, outcome),
    )
    last = [0.0]

    def tick() -> None:
        if handle is not None and grid._changed.is_set() and time.monotonic() - last[0] >= _REFRESH_SECONDS:
            _refresh(handle, grid)
            last[0] = time.monotonic()

    try:
        run.result(on_tick=tick)
    except RunInterruptedError as exc:
        # The run withdrew what was not sent, canceled what was PENDING and kept the rest for resume;
        # the grid shows the cells that finished and says so.
        grid.interrupted = exc.summary.text()
        with grid._lock:
            for cell in grid._cells.values():
                if not cell.finished:
                    cell.phase = "interrupted"
    finally:
        if handle is not None:
            # The live view goes blank and the returned grid takes its place: a cell's saved outputs
            # are then the same however the cells' timing went (nbval compares them).
            handle.update({"text/plain": ""}, raw=True)


# ---- notebook helpers --------------------------------------------------------------------------


def _shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    return get_ipython()


def _in_kernel(shell: Any) -> bool:
    return shell is not None and getattr(shell, "kernel", None) is not None


def _show_live(grid: CompareGrid, shell: Any) -> Any:
    """State the plan (a static output), and open an empty live view that fills in as cells finish."""
    from IPython.display import display

    display({"text/plain": str(grid.plan)}, raw=True)
    return display({"text/plain": ""}, raw=True, display_id=True)


def _refresh(handle: Any, grid: CompareGrid) -> None:
    grid._changed.clear()
    data, metadata = grid.mimebundle()
    handle.update(data, metadata=metadata, raw=True)


# ---- text helpers ------------------------------------------------------------------------------


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _excerpt(text: str, limit: int) -> str:
    """At most `limit` characters; cut at a space when there is one near the end (not inside a word)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,.;:，。；：") + "…"


def _error_code(exc: BaseException) -> str:
    return getattr(exc, "code", None) or type(exc).__name__


def _effective_text(request: GenerationRequest) -> str:
    """The parameters a cell was sent with, briefly: size, and the family-specific ones that were set."""
    parts = [request.effective_size]
    given = request.given()
    for key in ("style", "prompt_extend", "watermark", "ref_mode", "ref_strength"):
        if key in given:
            parts.append(f"{key}={given[key]}")
    if "ref_img" in given:
        parts.append("ref_img")
    if "negative_prompt" in given:
        parts.append("negative_prompt")
    return " · ".join(parts)


# ---- the PNG -----------------------------------------------------------------------------------

# Fonts with CJK glyphs in the usual places (Debian/Ubuntu, Fedora, macOS, Windows). Only used when found.
_CJK_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/STHeiti Light.ttc",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simhei.ttf",
)
_LATIN_RUN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 .,!?'&:;/+-]*[A-Za-z0-9!?.]|[A-Za-z0-9]")


class _Fonts:
    """Fonts at a few sizes, and which characters they can draw."""

    def __init__(self, font_path: str | Path | None) -> None:
        from PIL import ImageFont

        path = str(font_path) if font_path else next((p for p in _CJK_FONTS if Path(p).exists()), None)
        self.path = path

        def load(size: int) -> Any:
            if path:
                return ImageFont.truetype(path, size)
            try:
                return ImageFont.load_default(size=size)
            except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
                return ImageFont.load_default()

        self.title, self.label, self.small = load(20), load(15), load(12)
        self._cache: dict[str, bool] = {}
        self._missing = self._mask("\U0010fffd")

    def _mask(self, ch: str) -> bytes:
        try:
            return bytes(self.small.getmask(ch))
        except Exception:
            return b""

    def can_draw(self, ch: str) -> bool:
        if ch.isspace() or ch.isascii():
            return True
        if ch not in self._cache:
            self._cache[ch] = self._mask(ch) != self._missing
        return self._cache[ch]

    def drawable(self, text: str) -> bool:
        return all(self.can_draw(ch) for ch in text)

    def yuan(self, value: float) -> str:
        return f"¥{value:.2f}" if self.can_draw("¥") else f"CNY {value:.2f}"

    def safe(self, text: str) -> str:
        """`text` with characters the font cannot draw replaced (runs of them become one '…')."""
        out, skipping = [], False
        for ch in text:
            if self.can_draw(ch):
                out.append(ch)
                skipping = False
            elif not skipping:
                out.append("…")
                skipping = True
        return "".join(out)


def _wrap(draw: Any, text: str, font: Any, width: int, max_lines: int) -> list[str]:
    """Greedy wrap by pixel width: at spaces, and inside words (or unspaced text) that are too long."""
    lines: list[str] = []
    line = ""
    for token in re.findall(r"\S+\s*|\s+", text):
        if draw.textlength((line + token).rstrip(), font=font) <= width:
            line += token
            continue
        if line.strip():
            lines.append(line.rstrip())
        line = ""
        for ch in token:  # a word wider than the line (or unspaced text): break it anywhere
            if line.strip() and draw.textlength((line + ch).rstrip(), font=font) > width:
                lines.append(line.rstrip())
                line = ""
            line += ch
    if line.strip():
        lines.append(line.rstrip())
    if len(lines) <= max_lines:
        return lines
    lines = lines[:max_lines]
    last = lines[-1]
    while last and draw.textlength(last + "…", font=font) > width:
        last = last[:-1]
    lines[-1] = last.rstrip() + "…"
    return lines


class _GridPainter:
    """Draws a CompareGrid as one PNG (bounded: every image is scaled to fit `cell_px`)."""

    MARGIN, GAP, LABEL_W, HEAD_H, FOOT_H = 16, 8, 220, 48, 34

    def __init__(self, grid: CompareGrid, *, cell_px: int, font_path: str | Path | None, manifest_name: str) -> None:
        self.grid, self.cell_px, self.manifest_name = grid, int(cell_px), manifest_name
        self.fonts = _Fonts(font_path)

    def paint(self) -> Any:
        from PIL import Image, ImageDraw

        g, px, M, GAP = self.grid, self.cell_px, self.MARGIN, self.GAP
        rows, cols = g.shape
        cell_w, cell_h = px, px + self.FOOT_H
        width = M * 2 + self.LABEL_W + cols * (cell_w + GAP)
        caption = self._caption_lines()
        measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        caption_wrapped = [w for line in caption for w in _wrap(measure, line, self.fonts.small, width - 2 * M, 3)]
        title_h = 34
        height = M + title_h + self.HEAD_H + rows * (cell_h + GAP) + 8 + len(caption_wrapped) * 16 + M
        img = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(img)
        f = self.fonts
        title = f"wanx_nb model comparison - {rows} prompt{_s(rows)} x {cols} model{_s(cols)}, seed {g.seed}"
        draw.text((M, M), f.safe(title), fill="black", font=f.title)
        top = M + title_h
        for j, m in enumerate(g.models):
            x = M + self.LABEL_W + j * (cell_w + GAP)
            spec = get_model(m)
            draw.text((x, top), f.safe(m), fill="black", font=f.label)
            price = f.safe(f"{f.yuan(spec.price_yuan)}/image · {spec.family}")
            draw.text((x, top + 20), price, fill="#555", font=f.small)
        top += self.HEAD_H
        for i, prompt in enumerate(g.prompts):
            y = top + i * (cell_h + GAP)
            self._row_label(draw, i, prompt, M, y, cell_h)
            for j, m in enumerate(g.models):
                x = M + self.LABEL_W + j * (cell_w + GAP)
                self._cell(img, draw, g.cell(i, m), x, y)
        y = top + rows * (cell_h + GAP) + 8
        for line in caption_wrapped:
            draw.text((M, y), line, fill="#333", font=f.small)
            y += 16
        return img

    def _row_label(self, draw: Any, i: int, prompt: str, x: int, y: int, height: int) -> None:
        f = self.fonts
        width = self.LABEL_W - 12
        draw.text((x, y), f"prompt {i + 1}", fill="black", font=f.label)  # ASCII: always drawable
        text = " ".join(prompt.split())
        lines_room = max((height - 24) // 16 - 1, 1)
        if f.drawable(text):
            lines = _wrap(draw, text, f.small, width, lines_room)
        else:
            # No glyphs for this prompt (Chinese with the bundled font): show its Latin parts, if any,
            # and point to the manifest, which has the full text.
            latin = [r.strip() for r in _LATIN_RUN.findall(text) if len(r.strip()) >= 2]
            lines = _wrap(draw, "Latin text: " + " / ".join(latin), f.small, width, 2) if latin else []
            note = f"({len(text)} characters; full text in {self.manifest_name})"
            lines += _wrap(draw, note, f.small, width, max(lines_room - len(lines), 1))
        for k, line in enumerate(lines):
            draw.text((x, y + 22 + k * 16), line, fill="#333", font=f.small)

    def _cell(self, img: Any, draw: Any, cell: CompareCell, x: int, y: int) -> None:
        px, f = self.cell_px, self.fonts
        draw.rectangle([x - 1, y - 1, x + px, y + px], outline="#ccc")
        if cell.result is not None and cell.result.succeeded:
            ims = cell.result.succeeded[:4]
            across = 1 if len(ims) == 1 else 2
            down = math.ceil(len(ims) / across)
            slot_w, slot_h = px // across, px // down
            for k, im in enumerate(ims):
                try:
                    pic = im.image.convert("RGB")
                except Exception:  # unreadable bytes: leave the slot empty
                    continue
                pic.thumbnail((slot_w, slot_h))
                ox = x + (k % across) * slot_w + (slot_w - pic.width) // 2
                oy = y + (k // across) * slot_h + (slot_h - pic.height) // 2
                img.paste(pic, (ox, oy))
        else:
            fill = "#fdf3f2" if cell.error is not None or cell.result is not None else "#f4f4f4"
            draw.rectangle([x, y, x + px - 1, y + px - 1], fill=fill)
            if cell.error is not None:
                message = getattr(cell.error, "server_message", None) or cell.error
                head, body = "FAILED", f"{_error_code(cell.error)}: {message}"
            elif cell.result is not None:
                head, body = "NO IMAGE", "; ".join(f"{im.code}: {im.message}" for im in cell.result.failed)
            else:
                head, body = ("PLANNED" if self.grid.dry_run else cell.phase.upper()), ""
            draw.text((x + 8, y + 8), head, fill="#a12", font=f.label)
            for k, line in enumerate(_wrap(draw, f.safe(body), f.small, px - 16, 8)):
                draw.text((x + 8, y + 30 + k * 15), line, fill="#5a1d1a", font=f.small)
        seeds = [sd for sd in cell.request.seeds if sd is not None]
        seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]}"
        foot = f"{seed_text} · {cell.request.effective_size}"
        if any(n.startswith(("size ", "not sent")) for n in cell.notes):
            foot += " · adapted*"
        draw.text((x, y + px + 4), _wrap(draw, f.safe(foot), f.small, px, 1)[0], fill="#333", font=f.small)
        if cell.result is not None:
            draw.text((x, y + px + 18), f.safe(f.yuan(cell.result.cost_yuan)), fill="#777", font=f.small)

    def _caption_lines(self) -> list[str]:
        g, f = self.grid, self.fonts
        shared = [f"seed {g.seed} in every cell", f"n={g.n}"]
        for key, value in g.asked.items():
            if value is not None:
                shared.append(f"{key}={value}")
        backend = g.plan.backend
        lines = [
            "Shared parameters: " + ", ".join(shared) + f". Backend: {backend}. "
            + f"Estimated {f.yuan(g.plan.yuan)}, actual {f.yuan(g.cost_yuan)}.",
        ]
        lines += [f"* {note}" for note in g.notes]
        drawable = [f.drawable(p) for p in g.prompts]
        if not all(drawable):
            lines.append(
                f"Prompts are numbered; their full text (Chinese included) and every cell's task id, seed, "
                f"parameters and image sha256 are in {self.manifest_name}."
            )
        return [f.safe(line.replace("->", "→") if f.drawable("→") else line) for line in lines]
