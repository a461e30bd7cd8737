"""Mimebundles and HTML for results, errors, galleries and history. Pure: no IPython, no widgets.

Everything here returns plain dicts and strings, so the magics, the panel and the compare grid share one
look. The parts with a job of their own live beside it and are re-exported here: `_html_style` (the
inline styles), `_captions` (what sets an image apart), `_next_steps`, `_tables_html` (status, models,
any rows), `_interrupt_card`, and `_grid_html` (the compare grid). Rules every function keeps:

- `text/plain` is deterministic (no task ids, times, paths, URLs or addresses), so nbval can compare it.
- All text that reaches HTML goes through `html.escape`; server messages are shown verbatim.
- HTML is a pure function of its inputs: no random DOM ids, no clock reads. Image previews are a
  deterministic function of the image bytes (same bytes -> same base64).
- Provenance goes under the `"wanx_nb"` metadata key, never the API key.

PIL is imported on first use (previews only).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ._captions import changed_params, params_caption, sweep_labels
from ._html_style import (
    BADGE_TEXTS,
    BADGE_TINTS,
    S_BADGE,
    S_CAP,
    S_FAILED,
    S_GALLERY,
    S_HEAD,
    S_IMG,
    S_LABEL,
    S_MSG,
    S_MUTED,
    S_PATH,
    S_RESULT,
    S_TILE,
    S_WARN,
)
from ._html_style import escape as _e
from ._html_style import yuan as _yuan
from ._interrupt_card import interrupt_mimebundle
from ._models import GenerationResult, ImageResult
from ._next_steps import next_step
from ._preview import Preview, preview_data_uri
from ._preview import preview as _preview
from ._registry import get_model
from ._tables_html import models_mimebundle, status_html, status_text, table_html, table_text

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


@dataclass
class RenderOptions:
    """Module-wide display settings (the magics set these from their traitlets).

    Parameters:
        preview_px: largest side of the embedded previews, in pixels.
        long_prompt: prompts longer than this fold into a <details> element.
        link_base: the directory thumbnails link relative to (default: the working directory, which
            in a kernel is the notebook's).
    """

    preview_px: int = 384
    long_prompt: int = 90
    link_base: str | None = None


options = RenderOptions()

# ---- previews (encoded once, cached: `_preview`) ----------------------------------------------


def _image_bytes(image: ImageResult) -> bytes | None:
    if image.data is not None:
        return image.data
    if image.path:
        try:
            with open(image.path, "rb") as fh:
                return fh.read()
        except OSError:
            return None
    return None


# ---- tiles --------------------------------------------------------------------------------------


def failure_tile_html(
    title: str, code: str | None, message: str, hint: str | None = None, *, compact: bool = False
) -> str:
    """A labelled tile for something that produced no image: the code, the message verbatim, a next step.

    `compact` drops the minimum width (a grid cell narrower than a tile).
    """
    hint = hint if hint is not None else next_step(code)
    style = S_FAILED + (";min-width:0" if compact else "")
    code_html = f'<div class="wanx-code" style="font-family:monospace;font-weight:bold">{_e(code)}</div>' if code else ""
    return (
        f'<div class="wanx-tile wanx-failed" style="{style}">'
        f'<div class="wanx-fail-title" style="font-weight:bold">{_e(title)}</div>'
        f"{code_html}"
        f'<div class="wanx-msg" style="{S_MSG}">{_e(message)}</div>'
        f'<div class="wanx-hint" style="font-style:italic">next step: {_e(hint)}</div>'
        "</div>"
    )


def _prompt_html(label: str, prompt: str) -> str:
    if len(prompt) <= options.long_prompt:
        return f"<div><b>{_e(label)}</b> {_e(prompt)}</div>"
    head = prompt[: options.long_prompt - 30].rstrip() + "…"
    return f'<details><summary style="cursor:pointer"><b>{_e(label)}</b> {_e(head)}</summary>{_e(prompt)}</details>'


def _seed_label(seed: int | None) -> str:
    return f"seed {seed}" if seed is not None else "seed ?"


def _store_href(path: str | None) -> str | None:
    """A link to a stored image relative to `options.link_base` (default: the working directory).

    In a kernel the working directory is the notebook's, so JupyterLab resolves the link to the
    store file and opens it; so does a browser reading the exported HTML next to the notebook.
    """
    if not path:
        return None
    try:
        rel = os.path.relpath(path, options.link_base or os.getcwd())
    except ValueError:  # another drive (Windows): no relative link exists
        return None
    return urllib.parse.quote(rel.replace(os.sep, "/"))


def _shown_path(path: str | None) -> str | None:
    """The stored file's path as the reader finds it: relative when it is below the working directory."""
    if not path:
        return None
    try:
        rel = os.path.relpath(path, options.link_base or os.getcwd())
    except ValueError:
        return path
    return path if rel.startswith("..") else rel.replace(os.sep, "/")


def _thumbnail_html(pv: Preview, image: ImageResult, alt: str) -> str:
    img = (
        f'<img src="{pv.uri}" width="{pv.width}" height="{pv.height}" alt="{_e(alt)}" style="{S_IMG}">'
    )
    href = _store_href(image.path)
    if href is None:
        return img
    return f'<a href="{_e(href)}" target="_blank" title="open the full image">{img}</a>'


def image_tile_html(
    result: GenerationResult, image: ImageResult, *, preview_px: int = 384, caption: bool = True,
    label: str | None = None,
) -> str:
    """One image as a tile: the preview (a link to the stored PNG), and under it model, size, seed,
    cost, time, every parameter that differs from the model's defaults, prompt and path.

    `label` is drawn above the image (a sweep's value). A failed image (`image.ok` is False) becomes
    a failure tile with its code and a next step.
    """
    if not image.ok:
        return failure_tile_html(
            f"image {image.index + 1} ({_seed_label(image.seed)}) failed",
            image.code,
            image.message or "the service returned no image",
        )
    data = _image_bytes(image)
    if data is None and image.gone:
        return failure_tile_html(
            f"image {image.index + 1} ({_seed_label(image.seed)}): billed, expired",
            image.download_code,
            "its URL expired before it could be saved; the service no longer serves it",
            hint="nothing can bring it back: result URLs live 24 h",
        )
    if data is None and image.missing:
        return failure_tile_html(
            f"image {image.index + 1} ({_seed_label(image.seed)}): billed, not saved yet",
            image.download_code,
            "the download failed; the image is kept in the journal",
            hint="`%wanx resume` downloads it while its URL lives (24 h), without paying again",
        )
    if data is None:
        return failure_tile_html(
            f"image {image.index + 1} ({_seed_label(image.seed)})",
            None,
            f"no image bytes to preview (stored at {_shown_path(image.path) or 'nowhere'})",
            hint="`wanx-nb store check` says what is wrong with the stored file",
        )
    try:
        pv = _preview(data, preview_px)
    except ValueError as exc:
        return failure_tile_html(
            f"image {image.index + 1} ({_seed_label(image.seed)})", None, str(exc), hint="open the saved file instead"
        )
    prompt = result.request.prompt
    alt = prompt if len(prompt) <= 120 else prompt[:119] + "…"
    img_html = _thumbnail_html(pv, image, alt)
    label_html = f'<div class="wanx-label" style="{S_LABEL}">{_e(label)}</div>' if label else ""
    if not caption:
        return f'<figure class="wanx-tile" style="{S_TILE};width:{pv.width + 10}px">{label_html}{img_html}</figure>'
    spec_line = " · ".join(
        [
            _e(result.model),
            _e(image.size),
            _e(_seed_label(image.seed)),
            _e(_yuan(_price(result))),
            _e(f"{result.elapsed:.1f} s"),
        ]
    )
    parts = [f"<div>{spec_line}</div>"]
    changed = params_caption(result.request, skip=("size",))  # the size is on the line above
    if changed:
        parts.append(f'<div class="wanx-params">{changed}</div>')
    actual = image.actual_prompt
    if actual and actual != (image.orig_prompt or prompt):
        parts.append(_prompt_html("rewritten prompt:", actual))
    else:
        parts.append(_prompt_html("prompt:", image.orig_prompt or prompt))
    path = getattr(image, "export_path", None) or _shown_path(image.path)
    if path:
        parts.append(f'<div class="wanx-path" style="{S_PATH}" title="{_e(image.path or "")}">{_e(path)}</div>')
    return (
        f'<figure class="wanx-tile" style="{S_TILE};width:{max(pv.width, 180) + 10}px">{label_html}{img_html}'
        f'<figcaption class="wanx-cap" style="{S_CAP}">{"".join(parts)}</figcaption></figure>'
    )


def _price(result: GenerationResult) -> float:
    try:
        return get_model(result.model).price_yuan
    except KeyError:
        return 0.0


def badge_html(backend: str) -> str:
    """A separate, tinted badge for results that are not from the real service ("" otherwise)."""
    if backend not in BADGE_TEXTS:
        return ""
    return (
        f'<span class="wanx-badge wanx-badge-{_e(backend)}" style="{S_BADGE};{BADGE_TINTS[backend]}">'
        f"{_e(BADGE_TEXTS[backend])}</span>"
    )


_badge = badge_html


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
            f"  image {im.index + 1} ({_seed_label(im.seed)}) failed: {im.code}: {im.message}; "
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
        f"{_e(_yuan(result.cost_yuan))} · {_e(f'{result.elapsed:.1f} s')}{_badge(result.backend)}</div>"
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
        warn = _warn_list(result.warnings)
    return (
        f'<div class="wanx-result" style="{S_RESULT}">{head}'
        f'<div class="wanx-gallery" style="{S_GALLERY}">{"".join(tiles)}</div>{warn}</div>'
    )


def _warn_list(items: Iterable[str]) -> str:
    return f'<ul class="wanx-warn" style="{S_WARN}">' + "".join(f"<li>{_e(w)}</li>" for w in items) + "</ul>"


def result_mimebundle(result: GenerationResult, *, preview_px: int | None = None) -> MetaBundle:
    """(data, metadata) for one result: text/plain, text/html, and provenance under "wanx_nb"."""
    data = {"text/plain": result_text(result), "text/html": result_html(result, preview_px=preview_px)}
    return data, {"wanx_nb": result.metadata()}


# ---- errors -------------------------------------------------------------------------------------

_CLASS_CODES = {
    "ValidationError": "Validation",
    "BudgetExceededError": "Budget",
    "ReplayMissError": "ReplayMiss",
    "WaitTimeoutError": "WaitTimeout",
    "KeyboardInterrupt": "Interrupted",
}


def _error_fields(exc: BaseException) -> dict[str, Any]:
    name = type(exc).__name__
    code = getattr(exc, "code", None)
    message = getattr(exc, "server_message", None) or str(exc) or name
    return {
        "error": name,
        "code": code,
        "message": message,
        "request_id": getattr(exc, "request_id", None),
        "task_id": getattr(exc, "task_id", None),
        "next_step": _next_step_for(exc, code or _CLASS_CODES.get(name)),
    }


def _next_step_for(exc: BaseException, code: str | None) -> str:
    """The code's next step, unless the request may have been billed: then never "retry", but resume."""
    from ._exceptions import TaskUnfinishedError

    if isinstance(exc, TaskUnfinishedError):
        return (
            "run `%wanx resume` (now or within 24 h) to save its images without paying again; "
            "re-running the cell would send (and bill) a new request"
        )
    return next_step(code)


def error_text(exc: BaseException) -> str:
    """text/plain for a failed request: the error class, the code and the message verbatim, a next step."""
    f = _error_fields(exc)
    code = f" {f['code']}" if f["code"] else ""
    return f"wanx error: {f['error']}{code}: {f['message']}\nnext step: {f['next_step']}"


def _error_html(exc: BaseException) -> str:
    f = _error_fields(exc)
    ids = []
    if f["request_id"]:
        ids.append(f"request_id {f['request_id']}")
    if f["task_id"]:
        ids.append(f"task_id {f['task_id']}")
    title = f["error"] + (" · " + " · ".join(ids) if ids else "")
    return failure_tile_html(title, f["code"], f["message"], f["next_step"])


def error_mimebundle(exc: BaseException) -> MetaBundle:
    """(data, metadata) for a failed request: code, message verbatim, request_id and a next step."""
    f = _error_fields(exc)
    data = {
        "text/plain": error_text(exc),
        "text/html": f'<div class="wanx-result" style="{S_RESULT}">{_error_html(exc)}</div>',
    }
    return data, {"wanx_nb": {k: v for k, v in f.items() if v is not None}}


class ErrorReport:
    """A failed request, displayable: `ErrorReport(exc)` renders with `error_mimebundle`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __repr__(self) -> str:
        return error_text(self.error)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> MetaBundle:
        return error_mimebundle(self.error)


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
        body = result_html(only, preview_px=px) if isinstance(only, GenerationResult) else _error_html(only)
        return f'<div class="wanx-result" style="{S_RESULT}">{head}{body}</div>' if head else body
    labels = list(labels) if labels is not None else sweep_labels(results)
    ok = [r for r in results if isinstance(r, GenerationResult)]
    backends = sorted({r.backend for r in ok})
    summary = (
        f"{len(results)} result{'s' if len(results) != 1 else ''} · "
        f"{_e(_yuan(round(sum(r.cost_yuan for r in ok), 4)))}{''.join(_badge(b) for b in backends)}"
    )
    tiles: list[str] = []
    warnings: list[str] = []
    for result, label in zip(results, labels):
        if not isinstance(result, GenerationResult):
            f = _error_fields(result)
            tiles.append(failure_tile_html(f"{label or f['error']} failed", f["code"], f["message"], f["next_step"]))
            continue
        warnings.extend(w for w in result.warnings if w not in warnings)
        if not result.images:
            tiles.append(failure_tile_html(f"{label or result.model}: the task produced no images", result.task.code,
                                           result.task.message or f"task status {result.task.status.value}"))
        tiles.extend(image_tile_html(result, im, preview_px=px, label=label or None) for im in result.images)
    warn = _warn_list(warnings) if warnings else ""
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
        meta = [r.metadata() if isinstance(r, GenerationResult) else _error_fields(r) for r in self.results]
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


class HistoryRowView(Protocol):
    """What the history table shows of a stored task (`_store_read.HistoryRow`, a layer this one does not import)."""

    @property
    def task_id(self) -> str | None: ...
    @property
    def submitted_at(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def prompt(self) -> str: ...
    @property
    def backend(self) -> str: ...
    @property
    def images(self) -> int: ...
    @property
    def cost_yuan(self) -> float: ...
    @property
    def seed(self) -> int | None: ...
    @property
    def size(self) -> str: ...
    @property
    def status(self) -> str: ...


def history_mimebundle(
    rows: Sequence[HistoryRowView], *, thumbnails: Mapping[str, bytes] | None = None, thumb_px: int = 96
) -> MetaBundle:
    """Stored tasks (`Store.history()` rows) as a table with thumbnails (bytes keyed by task id)."""
    thumbnails = thumbnails or {}
    headers = ["", "submitted (UTC)", "model", "prompt", "images", "cost", "seed", "size", "status", "task id"]
    html_rows, text_rows = [], []
    for r in rows:
        thumb = ""
        data = thumbnails.get(r.task_id) if r.task_id is not None else None
        if data:
            try:
                pv = _preview(data, thumb_px)
                thumb = f'<img src="{pv.uri}" width="{pv.width}" height="{pv.height}" alt="" style="{S_IMG}">'
            except ValueError:
                thumb = ""
        prompt = r.prompt if len(r.prompt) <= 80 else r.prompt[:79] + "…"
        badge = _badge(r.backend)
        html_rows.append(
            [thumb, _e(r.submitted_at[:19].replace("T", " ")), _e(r.model), _e(prompt) + badge, _e(r.images),
             _e(_yuan(r.cost_yuan)), _e(r.seed), _e(r.size), _e(r.status), f'<span class="wanx-path" style="{S_PATH}">{_e(r.task_id)}</span>']
        )
        text_rows.append(
            [r.submitted_at[:19].replace("T", " "), r.model, prompt if len(prompt) <= 40 else prompt[:39] + "…",
             r.images, _yuan(r.cost_yuan), r.seed, r.status, r.task_id]
        )
    if not rows:
        text = "no stored generations match"
        html_out = f'<div class="wanx-result wanx-note" style="{S_RESULT};{S_MUTED}">{text}</div>'
    else:
        text = table_text(["submitted", "model", "prompt", "images", "cost", "seed", "status", "task id"], text_rows)
        table = table_html(headers, html_rows, raw_columns=range(len(headers)))
        html_out = f'<div class="wanx-result" style="{S_RESULT}">{table}</div>'
    return {"text/plain": text, "text/html": html_out}, {"wanx_nb": {"history": [r.task_id for r in rows]}}
