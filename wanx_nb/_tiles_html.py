"""The tiles a result is drawn with: one per image (preview, caption) or per failure, and the badges.

The preview links to the stored image, relative to `options.link_base`; failures show the service's
code and message verbatim with a next step. Shared by `rendering` (results, galleries) and
`_grid_html` (the compare grid).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Iterable

from ._captions import params_caption
from ._html_style import (
    BADGE_TEXTS,
    BADGE_TINTS,
    S_BADGE,
    S_CAP,
    S_FAILED,
    S_IMG,
    S_LABEL,
    S_MSG,
    S_PATH,
    S_TILE,
    S_WARN,
)
from ._html_style import escape as _e
from ._html_style import yuan as _yuan
from ._models import GenerationResult, ImageResult
from ._next_steps import next_step
from ._preview import Preview
from ._preview import preview as _preview
from ._registry import get_model
from ._render_options import options

__all__ = [
    "badge_html",
    "failure_tile_html",
    "image_bytes",
    "image_tile_html",
    "seed_label",
    "thumbnail_html",
    "warn_list_html",
]


def image_bytes(image: ImageResult) -> bytes | None:
    """The image's bytes: in memory, else read from the store (None when neither has them)."""
    if image.data is not None:
        return image.data
    if image.path:
        try:
            with open(image.path, "rb") as fh:
                return fh.read()
        except OSError:
            return None
    return None


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


def seed_label(seed: int | None) -> str:
    """"seed 42", or "seed ?" when the seed is not known."""
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


def thumbnail_html(pv: Preview, image: ImageResult, alt: str) -> str:
    """The preview as an <img>, linked to the stored image when there is one."""
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
            f"image {image.index + 1} ({seed_label(image.seed)}) failed",
            image.code,
            image.message or "the service returned no image",
        )
    data = image_bytes(image)
    if data is None and image.gone:
        return failure_tile_html(
            f"image {image.index + 1} ({seed_label(image.seed)}): billed, expired",
            image.download_code,
            "its URL expired before it could be saved; the service no longer serves it",
            hint="nothing can bring it back: result URLs live 24 h",
        )
    if data is None and image.missing:
        return failure_tile_html(
            f"image {image.index + 1} ({seed_label(image.seed)}): billed, not saved yet",
            image.download_code,
            "the download failed; the image is kept in the journal",
            hint="`%wanx resume` downloads it while its URL lives (24 h), without paying again",
        )
    if data is None:
        return failure_tile_html(
            f"image {image.index + 1} ({seed_label(image.seed)})",
            None,
            f"no image bytes to preview (stored at {_shown_path(image.path) or 'nowhere'})",
            hint="`wanx-nb store check` says what is wrong with the stored file",
        )
    try:
        pv = _preview(data, preview_px)
    except ValueError as exc:
        return failure_tile_html(
            f"image {image.index + 1} ({seed_label(image.seed)})", None, str(exc), hint="open the saved file instead"
        )
    prompt = result.request.prompt
    alt = prompt if len(prompt) <= 120 else prompt[:119] + "…"
    img_html = thumbnail_html(pv, image, alt)
    label_html = f'<div class="wanx-label" style="{S_LABEL}">{_e(label)}</div>' if label else ""
    if not caption:
        return f'<figure class="wanx-tile" style="{S_TILE};width:{pv.width + 10}px">{label_html}{img_html}</figure>'
    spec_line = " · ".join(
        [
            _e(result.model),
            _e(image.size),
            _e(seed_label(image.seed)),
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
    """A separate, tinted badge for results that are not from the real service ("" otherwise).

    The space before it keeps it apart from the text before where styles are stripped (GitHub's
    notebook view drops style attributes: "0.9 semulator: ...").
    """
    if backend not in BADGE_TEXTS:
        return ""
    return (
        f' <span class="wanx-badge wanx-badge-{_e(backend)}" style="{S_BADGE};{BADGE_TINTS[backend]}">'
        f"{_e(BADGE_TEXTS[backend])}</span>"
    )


def warn_list_html(items: Iterable[str]) -> str:
    """Warnings or notes under a gallery or grid, as a list."""
    return f'<ul class="wanx-warn" style="{S_WARN}">' + "".join(f"<li>{_e(w)}</li>" for w in items) + "</ul>"
