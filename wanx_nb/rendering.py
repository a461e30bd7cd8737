"""Mimebundles and HTML for results, errors, galleries and history. Pure: no IPython, no widgets.

Everything here returns plain dicts and strings, so the magics, the panel and the compare grid share one
look. This module draws results and galleries; the parts with a job of their own live beside it and
are re-exported here: `_render_options` (the display settings), `_tiles_html` (one image or failure),
`_error_card`, `_history_html`, `_html_style` (the inline styles), `_captions` (what sets an image
apart), `_next_steps`, `_tables_html` (status, models, any rows), `_interrupt_card`, and `_grid_html`
(the compare grid). Rules every function keeps:

- `text/plain` is deterministic (no task ids, times, paths, URLs or addresses), so nbval can compare it.
- All text that reaches HTML goes through `html.escape`; server messages are shown verbatim.
- HTML is a pure function of its inputs: no random DOM ids, no clock reads. Image previews are a
  deterministic function of the image bytes (same bytes -> same base64).
- Provenance goes under the `"wanx_nb"` metadata key, never the API key.

PIL is imported on first use (previews only).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ._captions import changed_params, params_caption, sweep_labels
from ._error_card import ErrorReport, error_fields, error_html, error_mimebundle, error_text
from ._history_html import history_mimebundle, row_id
from ._html_style import S_GALLERY, S_HEAD, S_MUTED, S_RESULT
from ._html_style import escape as _e
from ._html_style import yuan as _yuan
from ._interrupt_card import interrupt_mimebundle
from ._models import GenerationResult
from ._next_steps import next_step
from ._preview import preview_data_uri
from ._render_options import RenderOptions, options
from ._tables_html import models_mimebundle, status_html, status_text, table_html, table_text
from ._tiles_html import badge_html, failure_tile_html, image_tile_html, seed_label, warn_list_html

__all__ = [
    "Bundle",
    "CSS",
    "ErrorReport",
    "Gallery",
    "RenderOptions",
    "ResultList",
    "badge_html",
    "changed_params",
    "compare_cell_html",
    "compare_grid_html",
    "error_mimebundle",
    "error_text",
    "failure_tile_html",
    "gallery_html",
    "history_mimebundle",
    "image_tile_html",
    "interrupt_mimebundle",
    "models_mimebundle",
    "next_step",
    "options",
    "params_caption",
    "preview_data_uri",
    "result_html",
    "result_mimebundle",
    "result_text",
    "row_id",
    "status_html",
    "status_text",
    "sweep_labels",
    "table_html",
    "table_text",
]

MetaBundle = tuple[dict[str, Any], dict[str, Any]]

# Every style is inline (see `_html_style`: JupyterLab strips stylesheets from untrusted outputs).
# Kept, empty, for callers that still prepend it.
CSS = ""


# ---- one result ---------------------------------------------------------------------------------


def _seeds_text(seeds: Sequence[int | None]) -> str:
    known = [s for s in seeds if s is not None]
    if not known:
        return ""
    if len(known) == 1:
        return f" seed {known[0]}"
    if known == list(range(known[0], known[0] + len(known))):
        return f" seeds {known[0]}-{known[-1]}"
    return " seeds " + ",".join(str(s) for s in known)


def _sizes_text(result: GenerationResult) -> str:
    sizes = sorted({im.size for im in result.images if im.size}) or [result.request.effective_size]
    return ",".join(s.replace("x", "*") for s in sizes)


def _count_text(result: GenerationResult) -> str:
    """"2/2 images"; or, when billed images are not downloaded yet, "billed 2, 1 not saved yet"."""
    missing = sum(1 for im in result.images if im.missing)
    if missing:
        return f"billed {result.billed_images}, {missing} not saved yet"
    return f"{len(result.succeeded)}/{len(result.images)} images"


def result_text(result: GenerationResult) -> str:
    """The deterministic text/plain of a result: model, counts, size, seeds, cost, emulator tag.

    Replayed and live results read the same here (the HTML says which one it is), so a notebook
    recorded live validates in replay mode.
    """
    tag = " [emulator]" if result.backend == "emulator" else ""
    head = (
        f"<wanx {result.model}: {_count_text(result)} {_sizes_text(result)}"
        f"{_seeds_text([im.seed for im in result.images])} {_yuan(result.cost_yuan)}{tag}>"
    )
    lines = [head]
    if not result.images and (result.task.code or result.task.message):
        lines.append(f"  task failed: {result.task.code}: {result.task.message}; next step: {next_step(result.task.code)}")
    for im in result.failed:
        lines.append(
            f"  image {im.index + 1} ({seed_label(im.seed)}) failed: {im.code}: {im.message}; "
            f"next step: {next_step(im.code)}"
        )
    lines.extend(f"  warning: {w}" for w in result.warnings)
    return "\n".join(lines)


def result_html(result: GenerationResult, *, preview_px: int | None = None, stylesheet: bool = True) -> str:
    """The gallery of one result as an HTML fragment, styled inline (`stylesheet` is kept for callers;
    there is no stylesheet any more)."""
    px = preview_px or options.preview_px
    head = (
        f'<div class="wanx-head" style="{S_HEAD}"><b>{_e(result.model)}</b> · {_e(_count_text(result))} · '
        f"{_e(_yuan(result.cost_yuan))} · {_e(f'{result.elapsed:.1f} s')}{badge_html(result.backend)}</div>"
    )
    tiles = [image_tile_html(result, im, preview_px=px) for im in result.images]
    if not result.images:
        tiles.append(
            failure_tile_html(
                "the task produced no images",
                result.task.code,
                result.task.message or f"task status {result.task.status.value}",
            )
        )
    warn = ""
    if result.warnings:
        warn = warn_list_html(result.warnings)
    return (
        f'<div class="wanx-result" style="{S_RESULT}">{head}'
        f'<div class="wanx-gallery" style="{S_GALLERY}">{"".join(tiles)}</div>{warn}</div>'
    )


def result_mimebundle(result: GenerationResult, *, preview_px: int | None = None) -> MetaBundle:
    """(data, metadata) for one result: text/plain, text/html, and provenance under "wanx_nb"."""
    data = {"text/plain": result_text(result), "text/html": result_html(result, preview_px=preview_px)}
    return data, {"wanx_nb": result.metadata()}


# ---- several results ----------------------------------------------------------------------------


def gallery_html(
    results: Sequence[GenerationResult | BaseException],
    *,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    preview_px: int | None = None,
) -> str:
    """Several results in one wrapping row of tiles, each tile labelled with what sets it apart.

    `labels` default to `sweep_labels(results)` (e.g. each style of a style sweep). One result
    renders as `result_html`. Previews default to at most 256 px, so a sweep compares side by side.
    """
    px = preview_px or (options.preview_px if len(results) <= 1 else min(options.preview_px, 256))
    head = f'<div class="wanx-head" style="{S_HEAD}"><b>{_e(title)}</b></div>' if title else ""
    if not results:
        return f'<div class="wanx-result" style="{S_RESULT}">{head}<div style="{S_MUTED}">no results</div></div>'
    if len(results) == 1 and labels is None:
        only = results[0]
        body = result_html(only, preview_px=px) if isinstance(only, GenerationResult) else error_html(only)
        return f'<div class="wanx-result" style="{S_RESULT}">{head}{body}</div>' if head else body
    labels = list(labels) if labels is not None else sweep_labels(results)
    ok = [r for r in results if isinstance(r, GenerationResult)]
    backends = sorted({r.backend for r in ok})
    summary = (
        f"{len(results)} result{'s' if len(results) != 1 else ''} · "
        f"{_e(_yuan(round(sum(r.cost_yuan for r in ok), 4)))}{''.join(badge_html(b) for b in backends)}"
    )
    tiles: list[str] = []
    warnings: list[str] = []
    for result, label in zip(results, labels):
        if not isinstance(result, GenerationResult):
            f = error_fields(result)
            tiles.append(failure_tile_html(f"{label or f['error']} failed", f["code"], f["message"], f["next_step"]))
            continue
        warnings.extend(w for w in result.warnings if w not in warnings)
        if not result.images:
            tiles.append(failure_tile_html(f"{label or result.model}: the task produced no images", result.task.code,
                                           result.task.message or f"task status {result.task.status.value}"))
        tiles.extend(image_tile_html(result, im, preview_px=px, label=label or None) for im in result.images)
    warn = warn_list_html(warnings) if warnings else ""
    return (
        f'<div class="wanx-result" style="{S_RESULT}">{head}<div class="wanx-head" style="{S_HEAD}">{summary}</div>'
        f'<div class="wanx-gallery" style="{S_GALLERY}">{"".join(tiles)}</div>{warn}</div>'
    )


class Gallery:
    """Several results (or failures, as exceptions in place) shown together, in one labelled row.

    Parameters:
        results: GenerationResult objects and/or exceptions, in order.
        title: an optional heading.
        preview_px: preview size (default: `rendering.options.preview_px`).
        labels: a label per result; by default what sets each apart (`sweep_labels`).
    """

    def __init__(
        self,
        results: Iterable[GenerationResult | BaseException],
        *,
        title: str | None = None,
        preview_px: int | None = None,
        labels: Sequence[str] | None = None,
    ) -> None:
        self.results = list(results)
        self.title = title
        self.preview_px = preview_px
        self.labels = list(labels) if labels is not None else None

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[GenerationResult | BaseException]:
        return iter(self.results)

    def __getitem__(self, index: int) -> GenerationResult | BaseException:
        return self.results[index]

    @property
    def succeeded(self) -> list[GenerationResult]:
        return [r for r in self.results if isinstance(r, GenerationResult)]

    @property
    def cost_yuan(self) -> float:
        return round(sum(r.cost_yuan for r in self.succeeded), 4)

    def text(self) -> str:
        head = f"<wanx gallery: {len(self.results)} result(s) {_yuan(self.cost_yuan)}>"
        if self.title:
            head = f"{self.title}\n{head}"
        labels = self.labels if self.labels is not None else sweep_labels(self.results)
        body = []
        for r, label in zip(self.results, labels):
            line = result_text(r) if isinstance(r, GenerationResult) else error_text(r)
            body.append(f"{label}: {line}" if label else line)
        return "\n".join([head, *body])

    def __repr__(self) -> str:
        return self.text()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> MetaBundle:
        html_out = gallery_html(self.results, labels=self.labels, title=self.title, preview_px=self.preview_px)
        meta = [r.metadata() if isinstance(r, GenerationResult) else error_fields(r) for r in self.results]
        return {"text/plain": self.text(), "text/html": html_out}, {"wanx_nb": meta}


ResultList = Gallery


# ---- the compare grid (its own module; re-exported on first use, as it builds on this one) ----------

if TYPE_CHECKING:  # type checkers see the real signatures; at run time the wrappers below import on first use
    from ._grid_html import compare_cell_html, compare_grid_html
else:

    def compare_grid_html(*args, **kwargs):
        """The compare grid as one HTML table that fits its output area: `_grid_html.compare_grid_html`."""
        from ._grid_html import compare_grid_html as grid_html

        return grid_html(*args, **kwargs)

    def compare_cell_html(*args, **kwargs):
        """One cell of the compare grid: `_grid_html.compare_cell_html`."""
        from ._grid_html import compare_cell_html as cell_html

        return cell_html(*args, **kwargs)


# ---- tables ------------------------------------------------------------------------------------


class Bundle:
    """A ready mimebundle with a `_repr_mimebundle_`, for tables and notes the magics return."""

    def __init__(self, data: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
        self.data = data
        self.metadata = metadata or {}

    def __repr__(self) -> str:
        return str(self.data.get("text/plain", ""))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> MetaBundle:
        return dict(self.data), dict(self.metadata)
