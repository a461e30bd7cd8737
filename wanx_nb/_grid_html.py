"""The compare grid as HTML: prompts down, models across, a thumbnail and a caption per cell.

Cells and grids are read through Protocols (`CellView`: what `_grid.GridCell` offers; `GridView`:
what `_grid_state.GridState` offers), so this module needs nothing above the rendering layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from ._captions import params_caption
from ._error_card import error_fields as _error_fields
from ._html_style import S_CAP, S_CELL, S_GALLERY, S_HEAD, S_LABEL, S_MUTED, S_RESULT, S_TABLE, S_TILE
from ._html_style import escape as _e
from ._html_style import yuan as _yuan
from ._models import GenerationResult, ImageResult
from ._next_steps import next_step
from ._preview import preview as _preview
from ._registry import get_model
from ._request import GenerationRequest
from ._tiles_html import badge_html as _badge
from ._tiles_html import failure_tile_html
from ._tiles_html import image_bytes as _image_bytes
from ._tiles_html import seed_label as _seed_label
from ._tiles_html import thumbnail_html as _thumbnail_html
from ._tiles_html import warn_list_html as _warn_list

__all__ = ["AxisView", "CellView", "GridView", "PlanView", "compare_cell_html", "compare_grid_html", "xyz_grid_html"]


class AxisView(Protocol):
    """One axis of a grid (`_grid.Axis`): what varies, its values and how each reads."""

    @property
    def name(self) -> str: ...
    @property
    def values(self) -> tuple[Any, ...]: ...
    @property
    def labels(self) -> tuple[str, ...]: ...
    def __len__(self) -> int: ...


class CellView(Protocol):
    """One cell of a grid (`_grid.GridCell`): the request as sent and its outcome so far."""

    @property
    def model(self) -> str: ...
    @property
    def request(self) -> GenerationRequest: ...
    @property
    def notes(self) -> list[str]: ...
    @property
    def shares(self) -> tuple[int, int, int] | None: ...
    @property
    def phase(self) -> str: ...
    @property
    def result(self) -> GenerationResult | None: ...
    @property
    def error(self) -> BaseException | None: ...
    @property
    def from_store(self) -> bool: ...
    def status_text(self) -> str: ...


class PlanView(Protocol):
    """What a grid would send (`_grid.GridPlan`), as far as its picture states it."""

    @property
    def backend(self) -> str: ...
    @property
    def yuan(self) -> float: ...


class GridView(Protocol):
    """An X/Y/Z grid (`_grid_state.GridState`): axes (None when unused), cells, plan and outcome."""

    @property
    def x(self) -> AxisView | None: ...
    @property
    def y(self) -> AxisView | None: ...
    @property
    def z(self) -> AxisView | None: ...
    @property
    def prompts(self) -> tuple[str, ...]: ...
    @property
    def plan(self) -> PlanView: ...
    @property
    def notes(self) -> list[str]: ...
    @property
    def dry_run(self) -> bool: ...
    @property
    def preview_px(self) -> int: ...
    @property
    def interrupted(self) -> str | None: ...
    @property
    def cost_yuan(self) -> float: ...
    @property
    def backends(self) -> list[str]: ...
    def cell_at(self, z: int, y: int, x: int) -> CellView: ...
    def reuse_text(self) -> str: ...
    def reused_cost_text(self) -> str: ...
    def done_cost_text(self) -> str: ...
    def after_resume(self) -> str: ...
    def fixed_text(self) -> dict[str, Any]: ...
    def title_text(self) -> str: ...

# A share of the table, not a fixed width: at 960 px it holds a prompt excerpt, at 400 px it leaves the
# model columns room.
_PROMPT_COLUMN = "15%"


def _unbroken(value: object) -> str:
    """A number a narrow column must not split over two lines ("2025010" above "8" reads as two seeds)."""
    return f'<span style="white-space:nowrap">{_e(value)}</span>'


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


def _grid_thumb(image: ImageResult, prompt: str, px: int) -> str:
    """A thumbnail that scales down with its column (max-width) and links to the stored PNG."""
    data = _image_bytes(image)
    if data is None:
        return failure_tile_html(f"image {image.index + 1}", None, "no image bytes to preview", compact=True,
                                 hint="download it again with `%wanx resume`")
    try:
        pv = _preview(data, px)
    except ValueError as exc:
        return failure_tile_html(f"image {image.index + 1}", None, str(exc), compact=True,
                                 hint="open the saved file instead")
    alt = prompt if len(prompt) <= 120 else prompt[:119] + "…"
    return f'<div style="flex:0 1 {pv.width}px;min-width:0">{_thumbnail_html(pv, image, alt)}</div>'


def compare_cell_html(cell: CellView, *, dry_run: bool = False, preview_px: int = 200) -> str:
    """One cell of the compare grid: its thumbnails, or its failure tile, or its phase while it runs.

    `cell` has `model`, `request` (as sent), `notes`, `phase`, `result` and `error` (a
    `comparison.CompareCell`). The caption names the seed and every parameter that differs from the
    model's defaults, so a cell says how it was made without its column's header.
    """
    notes = "".join(f'<div class="wanx-cap" style="{S_CAP}">⚠ {_e(n)}</div>' for n in cell.notes)
    params = params_caption(cell.request)
    if cell.result is not None:
        result = cell.result
        px = preview_px if len(result.images) <= 1 else preview_px // 2
        thumbs = []
        for im in result.images:
            if im.ok:
                thumbs.append(_grid_thumb(im, cell.request.prompt, px))
            else:
                thumbs.append(failure_tile_html(f"image {im.index + 1} ({_seed_label(im.seed)}) failed", im.code,
                                                im.message or "the service returned no image", compact=True))
        if not result.images:
            thumbs.append(failure_tile_html("no images", result.task.code,
                                            result.task.message or f"task status {result.task.status.value}",
                                            compact=True))
        seeds = ", ".join(_unbroken(im.seed) for im in result.images)
        cost = _e(_yuan(result.cost_yuan))
        if cell.from_store:  # made by an earlier run (reuse): paid then, not now
            cost = f"from the store (billed {cost} then)"
        cap = " · ".join(x for x in (f"seed {seeds}", params, cost) if x)
        rewritten = [im.actual_prompt for im in result.succeeded if im.actual_prompt]
        if rewritten and rewritten[0] != cell.request.prompt:
            cap += f'<details><summary style="cursor:pointer">rewritten prompt</summary>{_e(rewritten[0])}</details>'
        return (
            f'<div class="wanx-gallery" style="{S_GALLERY};gap:4px">{"".join(thumbs)}</div>'
            f'<div class="wanx-cap" style="{S_CAP}">{cap}</div>{notes}'
        )
    if cell.error is not None:
        f = _error_fields(cell.error)
        code = f["code"] or f["error"]
        return failure_tile_html(f"{cell.model} failed", code, f["message"], next_step(code), compact=True) + notes
    phase = "planned (dry run)" if dry_run else f"{cell.phase}…"
    cap = " · ".join(x for x in (f"seed {_unbroken(cell.request.seed)}", params) if x)
    return (
        f'<div class="wanx-tile" style="{S_TILE};border-style:dashed;width:100%;min-height:{preview_px // 2}px">'
        f'<div style="{S_MUTED}">{_e(phase)}</div></div><div class="wanx-cap" style="{S_CAP}">{cap}</div>{notes}'
    )


def compare_grid_html(
    prompts: Sequence[str],
    models: Sequence[str],
    cells: Mapping[tuple[int, str], CellView],
    *,
    n: int,
    seed: int,
    backends: Iterable[str] = (),
    plan: str | None = None,
    dry_run: bool = False,
    done: bool = False,
    cost_yuan: float = 0.0,
    interrupted: str | None = None,
    notes: Sequence[str] = (),
    preview_px: int = 200,
    title: str = "Model comparison",
) -> str:
    """A prompts x models grid as one HTML table that fits its output area.

    The table has a fixed layout at 100% width (never wider than the previews need), so every model
    column stays visible in a 960 px output area and the thumbnails scale down with their column.
    `cells[(row, model)]` are `compare_cell_html` cells. The plan is shown for a dry run only: a run
    states it once, before it starts (the live display's first line).
    """
    badges = "".join(_badge(b) for b in sorted(set(backends)))
    p, m = len(prompts), len(models)
    head = (
        f'<div class="wanx-head" style="{S_HEAD}"><b>{_e(title)}</b> · {p} prompt{"s" if p != 1 else ""} x '
        f'{m} model{"s" if m != 1 else ""} · n={_e(n)} · seed {_e(seed)}{badges}</div>'
    )
    if dry_run and plan:
        head += f'<div class="wanx-note" style="margin:4px 0">dry run, nothing sent: {_e(plan)}</div>'
    th = f"{S_CELL};overflow-wrap:break-word"
    columns = []
    for model in models:
        try:
            spec = get_model(model)
            sub = f"¥{spec.price_yuan:.2f}/image · {spec.family}"
        except KeyError:
            sub = ""
        columns.append(f'<th style="{th}">{_e(model)}<br><span style="font-weight:normal;{S_MUTED}">{_e(sub)}</span></th>')
    body = []
    for i, prompt in enumerate(prompts):
        row_head = (
            f'<th title="{_e(prompt)}" style="{th};font-weight:normal"><b>{i + 1}.</b> {_e(_excerpt(prompt, 36))}</th>'
        )
        row = "".join(
            f'<td style="{S_CELL};overflow-wrap:break-word">'
            f"{compare_cell_html(cells[(i, model)], dry_run=dry_run, preview_px=preview_px)}</td>"
            for model in models
        )
        body.append(f"<tr>{row_head}{row}</tr>")
    # 100% of the output area, but never wider than the previews at full size need (a two-column grid
    # does not stretch; calc() is not on JupyterLab's whitelist, so the bound is in pixels).
    natural = round(m * (preview_px + 20) / 0.85)
    table = (
        f'<table class="wanx-table wanx-compare" style="{S_TABLE};table-layout:fixed;width:100%;'
        f'max-width:{natural}px">'
        f'<tr><th style="{th};width:{_PROMPT_COLUMN}">prompt</th>{"".join(columns)}</tr>{"".join(body)}</table>'
    )
    foot = ""
    if done and not dry_run:
        foot = f'<div class="wanx-note" style="margin:4px 0">done · actual cost {_e(_yuan(cost_yuan))}</div>'
    if interrupted:
        foot += f'<div class="wanx-note" style="margin:4px 0">interrupted: {_e(interrupted)}</div>'
    if notes:
        foot += _warn_list(notes)
    return f'<div class="wanx-result" style="{S_RESULT}">{head}{table}{foot}</div>'


# A one-axis sweep wider than this many values flows into rows of labelled tiles instead of one row.
_FLOW_AFTER = 5


def _axis_head(axis: AxisView, value: Any, label: str) -> str:
    """A column or row header: the model with its price and family, a prompt excerpt, or "style <anime>"."""
    if axis.name == "model":
        try:
            spec = get_model(value)
            sub = f"¥{spec.price_yuan:.2f}/image · {spec.family}"
        except KeyError:
            sub = ""
        return f'{_e(value)}<br><span style="font-weight:normal;{S_MUTED}">{_e(sub)}</span>'
    if axis.name == "prompt":
        return f'<span title="{_e(label)}" style="font-weight:normal">{_e(_excerpt(label, 60))}</span>'
    return _e(label)


def _cell_td(cell: CellView, grid: GridView) -> str:
    inner = compare_cell_html(cell, dry_run=grid.dry_run, preview_px=grid.preview_px)
    if cell.shares is not None:
        inner += f'<div class="wanx-cap" style="{S_CAP};{S_MUTED}">same request as another cell: sent once</div>'
    return inner


def _block_html(grid: GridView, zi: int) -> str:
    x, y = grid.x, grid.y
    cols, rows = (len(x) if x else 1), (len(y) if y else 1)
    th = f"{S_CELL};overflow-wrap:break-word"
    if y is None and x is not None and cols > _FLOW_AFTER:
        # One long sweep (ten styles): labelled tiles that wrap, each naming its value.
        width = max(100 // _FLOW_AFTER - 1, 10)
        tiles = "".join(
            f'<div class="wanx-grid-tile" style="flex:0 1 {width}%;max-width:{grid.preview_px + 12}px;min-width:0">'
            f'<div class="wanx-label" style="{S_LABEL}">{_axis_head(x, x.values[i], x.labels[i])}</div>'
            f"{_cell_td(grid.cell_at(zi, 0, i), grid)}</div>"
            for i in range(cols)
        )
        return f'<div class="wanx-gallery wanx-grid" style="{S_GALLERY}">{tiles}</div>'
    head = ""
    if x is not None:
        corner = f"{_e(y.name)} \\ {_e(x.name)}" if y is not None else ""
        head = f'<tr><th style="{th};width:{_PROMPT_COLUMN if y is not None else "0"}">{corner}</th>' + "".join(
            f'<th style="{th}">{_axis_head(x, v, lab)}</th>' for v, lab in zip(x.values, x.labels)
        ) + "</tr>"
    body = []
    for yi in range(rows):
        row_head = f'<th style="{th}">{_axis_head(y, y.values[yi], y.labels[yi])}</th>' if y is not None else "<th></th>"
        tds = "".join(
            f'<td style="{S_CELL};overflow-wrap:break-word">{_cell_td(grid.cell_at(zi, yi, xi), grid)}</td>'
            for xi in range(cols)
        )
        body.append(f"<tr>{row_head}{tds}</tr>")
    natural = round(cols * (grid.preview_px + 20) / 0.85)
    return (
        f'<table class="wanx-table wanx-compare wanx-grid" style="{S_TABLE};table-layout:fixed;width:100%;'
        f'max-width:{natural}px">{head}{"".join(body)}</table>'
    )


def xyz_grid_html(grid: GridView, *, backends: Iterable[str] = (), plan: str | None = None, done: bool = False) -> str:
    """An X/Y/Z grid as HTML: one table per Z value (headed by it), X across, Y down.

    Tables have a fixed layout at 100% width (bounded by what the previews need), so every column
    stays visible in a 960 px output area and thumbnails scale with their column; a single long sweep
    flows into rows of labelled tiles. The plan is shown for a dry run only (a run states it once,
    before it starts).
    """
    badges = "".join(_badge(b) for b in sorted(set(backends)))
    dims = " x ".join(f"{a.name} ({len(a)})" for a in (grid.x, grid.y, grid.z) if a is not None) or "one cell"
    fixed = " · ".join(
        f"{k} {_excerpt(str(v), 40)}" for k, v in grid.fixed_text().items() if k not in ("n",) or v != 1
    )
    head = f'<div class="wanx-head" style="{S_HEAD}"><b>Grid</b> · {_e(dims)}{badges}</div>'
    if fixed:
        head += f'<div class="wanx-cap" style="{S_CAP};{S_MUTED}">every cell: {_e(fixed)}</div>'
    if grid.dry_run and plan:
        head += f'<div class="wanx-note" style="margin:4px 0">dry run, nothing sent: {_e(plan)}</div>'
    blocks = []
    for zi in range(len(grid.z) if grid.z is not None else 1):
        title = ""
        if grid.z is not None:
            title = f'<div class="wanx-head" style="{S_HEAD};margin-top:10px"><b>{_e(grid.z.labels[zi])}</b></div>'
        blocks.append(title + _block_html(grid, zi))
    foot = ""
    if done and not grid.dry_run:
        reused = grid.reused_cost_text()  # then the footer says what this run paid, not what the cells cost then
        cost = f"{grid.done_cost_text()}; {reused}" if reused else f"actual cost {_yuan(grid.cost_yuan)} (what was billed)"
        foot = f'<div class="wanx-note" style="margin:4px 0">done · {_e(cost)}</div>'
    if grid.interrupted:
        foot += f'<div class="wanx-note" style="margin:4px 0">interrupted: {_e(grid.interrupted)}</div>'
    after = grid.after_resume()
    if after:
        foot += f'<div class="wanx-hint" style="margin:4px 0;font-style:italic">next: {_e(after)}</div>'
    if grid.notes:
        foot += _warn_list(grid.notes)
    return f'<div class="wanx-result" style="{S_RESULT}">{head}{"".join(blocks)}{foot}</div>'
