"""Mimebundles and HTML for results, errors, status and tables. Pure: no IPython, no widgets.

Everything here returns plain dicts and strings, so the magics, the panel and the compare grid share one
look. Rules every function keeps:

- `text/plain` is deterministic (no task ids, times, paths, URLs or addresses), so nbval can compare it.
- All text that reaches HTML goes through `html.escape`; server messages are shown verbatim.
- HTML is a pure function of its inputs: no random DOM ids, no clock reads. Image previews are a
  deterministic function of the image bytes (same bytes -> same base64).
- Provenance goes under the `"wanx_nb"` metadata key, never the API key.

PIL is imported on first use (previews only).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import os
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._models import GenerationResult, ImageResult
from ._registry import ModelSpec, get_model
from ._request import PARAMETERS, GenerationRequest

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

# Inline styles only. JupyterLab drops `<style>` blocks (so classes have no CSS) in an untrusted
# notebook, which is how every fresh clone opens; its sanitizer keeps a `style=` attribute whose
# properties and values match its whitelist: no var(), no `inherit`/`currentColor` colours, `position`
# without sticky, `word-break` without break-word. Text colour is never set, so it inherits the
# theme's (light or dark); tints are semi-transparent so they read on both.
# The `wanx-*` classes stay as hooks for tests and users' own CSS.
CSS = ""  # kept for callers that prepend it; every style is inline now

_GREY = "rgba(128,128,128,0.45)"
S_RESULT = "font-size:12px;line-height:1.4;margin:4px 0"
S_HEAD = "margin:2px 0 6px"
S_GALLERY = "display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start"
S_TILE = f"margin:0;padding:4px;border:1px solid {_GREY};border-radius:4px;box-sizing:border-box;max-width:100%"
S_IMG = "display:block;max-width:100%;height:auto;border:0"
S_CAP = "font-size:11px;line-height:1.35;margin-top:4px;overflow-wrap:break-word"
S_MUTED = "opacity:0.75"
S_LABEL = "font-weight:bold;margin:0 0 4px;overflow-wrap:break-word"
S_PATH = "font-family:monospace;font-size:10px;word-break:break-all;opacity:0.75"
S_FAILED = (
    "margin:0;padding:6px;border:1px solid rgba(217,83,79,0.9);border-radius:4px;box-sizing:border-box;"
    "background-color:rgba(217,83,79,0.12);min-width:160px;max-width:400px"
)
S_NOTICE = (
    "margin:4px 0;padding:6px 8px;border:1px solid rgba(224,168,0,0.85);border-radius:4px;"
    "background-color:rgba(255,193,7,0.12);max-width:720px"
)
S_MSG = "margin:2px 0;white-space:pre-wrap;overflow-wrap:break-word"
S_WARN = "margin:4px 0;padding-left:18px"
S_TABLE = "border-collapse:collapse;font-size:12px"
S_CELL = f"padding:2px 8px;text-align:left;vertical-align:top;border-bottom:1px solid {_GREY}"
S_BADGE = "display:inline-block;padding:0 6px;margin-left:6px;border-radius:8px;font-size:11px;font-weight:normal"
_BADGE_TINTS = {
    "emulator": "background-color:rgba(255,193,7,0.25);border:1px solid rgba(224,168,0,0.85)",
    "replay": "background-color:rgba(13,110,253,0.18);border:1px solid rgba(13,110,253,0.7)",
}
_PHASE_TINTS = {
    "failed": "background-color:rgba(217,83,79,0.18)",
    "done": "background-color:rgba(40,167,69,0.18)",
    "replayed": "background-color:rgba(40,167,69,0.18)",
}

_BADGES = {
    "emulator": "emulator: not the real service",
    "replay": "replay: from the local store",
}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _yuan(value: float) -> str:
    return f"¥{value:.2f}"


# ---- next steps ---------------------------------------------------------------------------------

_EXACT_STEPS = {
    "InternalError.Timeout": "retry this seed",
    "DataInspectionFailed": "rephrase the prompt (the content check refused the input or the output)",
    "IPInfringementSuspect": "rephrase the prompt without protected names, characters or brands",
    "InvalidApiKey": "check DASHSCOPE_API_KEY (Beijing and Singapore keys are not interchangeable)",
    "Throttling.AllocationQuota": "the quota is used up: raise it in the console or wait for it to renew",
    "Arrearage": "top up the Alibaba Cloud account, then retry",
    "PrepaidBillOverdue": "top up the Alibaba Cloud account, then retry",
    "PostpaidBillOverdue": "top up the Alibaba Cloud account, then retry",
    "CommodityNotPurchased": "activate the model in the Model Studio console",
    "AllocationQuota.FreeTierOnly": "the free quota is used up: turn off 'free tier only' in the console",
    "UnsupportedOperation": "only PENDING tasks can be cancelled; this one will finish (and be billed)",
    "InvalidURL": "give the reference image as a public http(s) URL or a local file",
    "InvalidParameter": "check the parameters against `%wanx models`",
    "ModelNotFound": "check the model name with `%wanx models`",
    "WorkSpaceNotFound": "check DASHSCOPE_WORKSPACE_ID",
    "RequestTimeOut": "retry",
    "WaitTaskTimeout": "the task may still finish: run `%wanx resume`",
    "WaitTimeout": "the task may still finish: run `%wanx resume`",
    "SubmitOutcomeUnknown": "run `%wanx resume` before submitting again (a task may exist)",
    "Budget": "raise `%config WanxMagics.budget_yuan` (0 turns the budget off)",
    "ReplayMiss": "record this request first (mode 'record'), or switch to mode 'live'",
    "Validation": "fix the parameters listed above (`%wanx models` shows what each model takes)",
    "Interrupted": "run `%wanx resume` later to collect the tasks that were still running",
}
_PREFIX_STEPS = (
    ("InternalError", "retry in a moment: the service had an internal error"),
    ("SystemError", "retry in a moment: the service had an internal error"),
    ("Throttling", "wait a few seconds and retry; use a smaller -n or fewer cells at once"),
    ("LimitRequests", "wait a few seconds and retry; use a smaller -n or fewer cells at once"),
    ("BadRequest.InputDownloadFailed", "make the reference image reachable from the internet (public URL)"),
    ("BadRequest.UnsupportedFileFormat", "use a JPEG, PNG, BMP or WebP reference image"),
    ("BadRequest.TooLarge", "use a smaller reference image"),
    ("BadRequest", "check the request parameters"),
    ("AccessDenied", "check that the model is activated for this account and workspace"),
    ("Workspace.AccessDenied", "check DASHSCOPE_WORKSPACE_ID and its permissions"),
    ("Model.AccessDenied", "activate the model in the Model Studio console"),
    ("ModelUnavailable", "the model is unavailable: retry later"),
    ("ServiceUnavailable", "the service is unavailable: retry later"),
)


def next_step(code: str | None) -> str:
    """A plain next step for an error or failure code (server codes and our own)."""
    if code:
        if code in _EXACT_STEPS:
            return _EXACT_STEPS[code]
        for prefix, step in _PREFIX_STEPS:
            if code.startswith(prefix):
                return step
    return "read the message above; if it looks transient, retry"


# ---- previews -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Preview:
    uri: str
    width: int
    height: int


_PREVIEW_CACHE: OrderedDict[tuple[str, int], _Preview] = OrderedDict()
_PREVIEW_CACHE_SIZE = 64
_PREVIEW_LOCK = threading.Lock()


def _preview(png_bytes: bytes, max_px: int) -> _Preview:
    key = (hashlib.sha256(png_bytes).hexdigest(), int(max_px))
    with _PREVIEW_LOCK:
        hit = _PREVIEW_CACHE.get(key)
        if hit is not None:
            _PREVIEW_CACHE.move_to_end(key)
            return hit
    preview = _make_preview(png_bytes, int(max_px))
    with _PREVIEW_LOCK:
        _PREVIEW_CACHE[key] = preview
        while len(_PREVIEW_CACHE) > _PREVIEW_CACHE_SIZE:
            _PREVIEW_CACHE.popitem(last=False)
    return preview


def _make_preview(png_bytes: bytes, max_px: int) -> _Preview:
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(png_bytes))
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot decode the image for a preview: {exc}") from None
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    img = img.convert("RGBA" if has_alpha else "RGB")
    if max(img.size) > max_px:
        # thumbnail() keeps the aspect ratio; LANCZOS is deterministic for the same input.
        img.thumbnail((max_px, max_px), Image.Resampling.LANCZOS, reducing_gap=3.0)
    candidates: list[tuple[int, str, bytes]] = []
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    candidates.append((len(buf.getvalue()), "image/png", buf.getvalue()))
    if not has_alpha:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=80, optimize=True)
        candidates.append((len(buf.getvalue()), "image/jpeg", buf.getvalue()))
    _, mime, data = min(candidates, key=lambda c: (c[0], c[1]))
    uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return _Preview(uri, img.size[0], img.size[1])


def preview_data_uri(png_bytes: bytes, max_px: int = 384) -> str:
    """A `data:` URI of a preview at most `max_px` on its longer side (JPEG q80, or PNG when smaller).

    Deterministic: the same bytes always give the same URI. Raises ValueError for bytes that are not
    an image.
    """
    return _preview(png_bytes, max_px).uri


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


# How each parameter reads in a caption, in the order captions list them.
_CAPTION_PARAMS = (
    ("size", "size"),
    ("style", "style"),
    ("ref_img", "reference"),
    ("ref_strength", "strength"),
    ("ref_mode", "mode"),
    ("negative_prompt", "negative"),
    ("prompt_extend", "extend"),
    ("watermark", "watermark"),
)


def _caption_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if name == "ref_img":
        text = str(value)
        return text.rstrip("/").rsplit("/", 1)[-1] or text  # the file name, not a long URL or path
    if name == "negative_prompt":
        text = str(value)
        return f'"{text}"' if len(text) <= 40 else f'"{text[:39]}…"'
    return str(value)


def changed_params(request: GenerationRequest) -> list[tuple[str, str]]:
    """(label, value) of every parameter that differs from the model's defaults, in caption order.

    Seed and n are not listed (captions show the seed of each image). Defaults are the server's, as
    `GenerationRequest.canonical()` fills them in: a request that sets a parameter to its default
    value lists nothing for it.
    """
    try:
        sent = request.canonical()
        # The same reference: ref_mode and ref_strength only have defaults when a reference is given.
        defaults = GenerationRequest(prompt=request.prompt, model=request.model, ref_img=request.ref_img).canonical()
    except KeyError:  # a model the registry does not know: everything given differs
        sent, defaults = request.given(), {}
    defaults.pop("ref_img", None)  # a reference always differs from none
    return [
        (label, _caption_value(name, sent[name]))
        for name, label in _CAPTION_PARAMS
        if name in sent and sent[name] != defaults.get(name)
    ]


def params_caption(request: GenerationRequest, *, skip: Iterable[str] = ()) -> str:
    """`changed_params` as one escaped line ("style <watercolor> · strength 0.7"), or ""."""
    skipped = set(skip)
    return " · ".join(f"{_e(label)} {_e(value)}" for label, value in changed_params(request) if label not in skipped)


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


def _thumbnail_html(pv: _Preview, image: ImageResult, alt: str) -> str:
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
    if data is None:
        where = image.path or image.url or "nowhere"
        return failure_tile_html(
            f"image {image.index + 1} ({_seed_label(image.seed)})",
            None,
            f"no image bytes to preview (stored at {where})",
            hint="download it again with `%wanx resume` or `%wanx show TASK_ID`",
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
    if backend not in _BADGES:
        return ""
    return (
        f'<span class="wanx-badge wanx-badge-{_e(backend)}" style="{S_BADGE};{_BADGE_TINTS[backend]}">'
        f"{_e(_BADGES[backend])}</span>"
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


def result_text(result: GenerationResult) -> str:
    """The deterministic text/plain of a result: model, counts, size, seeds, cost, emulator tag.

    Replayed and live results read the same here (the HTML says which one it is), so a notebook
    recorded live validates in replay mode.
    """
    ok, total = len(result.succeeded), len(result.images)
    tag = " [emulator]" if result.backend == "emulator" else ""
    head = (
        f"<wanx {result.model}: {ok}/{total} images {_sizes_text(result)}"
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
    ok, total = len(result.succeeded), len(result.images)
    head = (
        f'<div class="wanx-head" style="{S_HEAD}"><b>{_e(result.model)}</b> · {ok}/{total} images · '
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
        "next_step": next_step(code or _CLASS_CODES.get(name)),
    }


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


_SWEEP_ORDER = ("model", "prompt", *(name for name, _ in _CAPTION_PARAMS), "seed", "n")
_SWEEP_LABELS = {"model": "", "prompt": "", "seed": "seed", "n": "n", **dict(_CAPTION_PARAMS)}


def _request_of(item: Any) -> GenerationRequest | None:
    request = getattr(item, "request", None)
    return request if isinstance(request, GenerationRequest) else None


def sweep_labels(items: Sequence[Any]) -> list[str]:
    """A label per item naming the parameters that vary across `items` ("style <watercolor>").

    Items are results (or errors that carry a `.request`). Parameters that are the same everywhere
    are left out; an item without a request gets "".
    """
    canon: list[dict[str, Any] | None] = []
    for item in items:
        request = _request_of(item)
        if request is None:
            canon.append(None)
            continue
        try:
            fields_ = request.canonical()
        except KeyError:
            fields_ = {"model": request.model, **request.given()}
        canon.append(fields_)
    known = [c for c in canon if c is not None]
    varying = [k for k in _SWEEP_ORDER if len({repr(c.get(k)) for c in known}) > 1]
    labels = []
    for c in canon:
        if c is None:
            labels.append("")
            continue
        parts = []
        for key in varying:
            value = c.get(key)
            if key == "prompt":
                text = " ".join(str(value).split())
                parts.append(text if len(text) <= 40 else text[:39] + "…")
            elif value is None:
                parts.append(f"{_SWEEP_LABELS[key]} default".strip())
            else:
                parts.append(f"{_SWEEP_LABELS[key]} {_caption_value(key, value)}".strip())
        labels.append(" · ".join(parts))
    return labels


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
    tiles, warnings = [], []
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


# ---- the compare grid ---------------------------------------------------------------------------

# A share of the table, not a fixed width: at 960 px it holds a prompt excerpt, at 400 px it leaves the
# model columns room.
_PROMPT_COLUMN = "15%"


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


def compare_cell_html(cell: Any, *, dry_run: bool = False, preview_px: int = 200) -> str:
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
        seeds = ", ".join(str(im.seed) for im in result.images)
        cap = " · ".join(x for x in (f"seed {_e(seeds)}", params, _e(_yuan(result.cost_yuan))) if x)
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
    cap = " · ".join(x for x in (f"seed {_e(cell.request.seed)}", params) if x)
    return (
        f'<div class="wanx-tile" style="{S_TILE};border-style:dashed;width:100%;min-height:{preview_px // 2}px">'
        f'<div style="{S_MUTED}">{_e(phase)}</div></div><div class="wanx-cap" style="{S_CAP}">{cap}</div>{notes}'
    )


def compare_grid_html(
    prompts: Sequence[str],
    models: Sequence[str],
    cells: Mapping[tuple[int, str], Any],
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


# ---- interrupt ----------------------------------------------------------------------------------


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}{'s' if k != 1 else ''}"


def interrupt_mimebundle(
    *, canceled: Sequence[str] = (), running: Sequence[str] = (), unsent: int = 0
) -> MetaBundle:
    """The friendly card for an interrupted cell: what was canceled, what still runs, what to do.

    Parameters:
        canceled: task ids canceled while still PENDING (never billed).
        running: task ids the service still runs (billed when they finish; `%wanx resume` saves
            their images without paying again).
        unsent: requests that were never sent.

    text/plain names counts only (no task ids: nbval compares it); the HTML lists the ids.
    """
    lines = []
    if canceled:
        lines.append((f"canceled before they ran (not billed): {_count(len(canceled), 'task')}", canceled))
    if running:
        lines.append((f"still running on the service (billed when they finish): {_count(len(running), 'task')}",
                      running))
    if unsent:
        lines.append((f"never sent (not billed): {_count(unsent, 'request')}", ()))
    if running:
        step = "run `%wanx resume` (now or within 24 h) to save every image of the running tasks; nothing is paid twice"
    else:
        step = "nothing still runs: run the cell again when you are ready"
    if not lines:
        lines.append(("no task was in flight: nothing was sent or billed", ()))
    text = "\n".join(["wanx: interrupted", *(f"  {line}" for line, _ in lines), f"next step: {step}"])
    items = "".join(
        f"<li>{_e(line)}"
        + (f'<div style="{S_PATH}">{_e(", ".join(ids))}</div>' if ids else "")
        + "</li>"
        for line, ids in lines
    )
    html_out = (
        f'<div class="wanx-result wanx-interrupt" style="{S_RESULT};{S_NOTICE}">'
        f'<div style="font-weight:bold">Interrupted</div><ul style="{S_WARN}">{items}</ul>'
        f'<div class="wanx-hint" style="font-style:italic">next step: {_e(step)}</div></div>'
    )
    meta = {"wanx_nb": {"interrupted": {"canceled": list(canceled), "running": list(running), "unsent": unsent}}}
    return {"text/plain": text, "text/html": html_out}, meta


# ---- live status --------------------------------------------------------------------------------


def status_text(progress_list: Sequence[Any]) -> str:
    """One line per request: index, model, phase, elapsed (the live status, as text)."""
    if not progress_list:
        return "wanx: starting…"
    lines = []
    for p in sorted(progress_list, key=lambda p: p.index):
        tid = f" task {p.task_id}" if getattr(p, "task_id", None) else ""
        lines.append(f"#{p.index} {p.model}: {p.phase} {p.elapsed:.1f}s{tid}")
    return "\n".join(lines)


def status_html(progress_list: Sequence[Any]) -> str:
    """The live status table: per task queued/pending/running/downloading/done with elapsed seconds.

    `progress_list` holds objects with `index`, `model`, `phase`, `task_id` and `elapsed` (e.g.
    `wanx_nb._session.Progress`).
    """
    if not progress_list:
        return f'<div class="wanx-result wanx-note" style="{S_RESULT};{S_MUTED}">wanx: starting…</div>'
    rows = []
    for p in sorted(progress_list, key=lambda p: p.index):
        phase = str(p.phase)
        rows.append(
            f'<tr><td style="{S_CELL}">#{_e(p.index)}</td><td style="{S_CELL}">{_e(p.model)}</td>'
            f'<td class="wanx-phase-{_e(phase)}" style="{S_CELL};{_PHASE_TINTS.get(phase, "")}">{_e(phase)}</td>'
            f"<td style=\"{S_CELL}\">{_e(f'{p.elapsed:.1f} s')}</td>"
            f'<td class="wanx-path" style="{S_CELL};{S_PATH}">{_e(getattr(p, "task_id", None) or "")}</td></tr>'
        )
    head = "".join(f'<th style="{S_CELL}">{h}</th>' for h in ("", "model", "status", "elapsed", "task"))
    return (
        f'<div class="wanx-result" style="{S_RESULT}"><table class="wanx-table" style="{S_TABLE}">'
        f'<tr>{head}</tr>{"".join(rows)}</table></div>'
    )


# ---- tables -------------------------------------------------------------------------------------


def table_html(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, raw_columns: Iterable[int] = ()) -> str:
    """An HTML table (escaped cells, except the columns in `raw_columns`, which hold ready HTML)."""
    raw = set(raw_columns)
    # Cells are left to the viewer's own table style (JupyterLab's follows its theme).
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if i in raw else _e(c)}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return f'<table class="wanx-table" style="{S_TABLE}"><tr>{head}</tr>{body}</table>'


def table_text(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with aligned columns."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class Bundle:
    """A ready mimebundle with a `_repr_mimebundle_`, for tables and notes the magics return."""

    def __init__(self, data: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
        self.data = data
        self.metadata = metadata or {}

    def __repr__(self) -> str:
        return str(self.data.get("text/plain", ""))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> MetaBundle:
        return dict(self.data), dict(self.metadata)


def _params_text(spec: ModelSpec) -> str:
    return ", ".join(p for p in PARAMETERS if p in spec.params and p != "prompt")


def models_mimebundle(
    models: Mapping[str, ModelSpec], *, backend: str, has_key: bool, mode: str = "live"
) -> MetaBundle:
    """The registry as a table (name, family, price ¥/image, limits, sizes, parameters) and the backend."""
    headers = ["model", "family", "description", "¥/image", "submit rps", "concurrency", "sizes", "prompt limit",
               "parameters"]
    rows = [
        [s.name, s.family, s.description, f"{s.price_yuan:.2f}", f"{s.submit_rps:g}", s.concurrency, s.size_rule(),
         s.prompt_limit, _params_text(s)]
        for s in models.values()
    ]
    key = "DASHSCOPE_API_KEY is set" if has_key else "no DASHSCOPE_API_KEY set"
    if backend == "emulator":
        note = f"backend: emulator ({key}): images are placeholders from the offline emulator, not the real service"
    elif backend == "replay":
        note = f"backend: replay ({key}): results come from the local store; nothing is sent"
    else:
        note = f"backend: {backend} ({key}); mode {mode}"
    text_rows = [[r[0], r[1], r[3], r[4], r[5], r[7], r[6]] for r in rows]
    text = table_text(["model", "family", "¥/image", "rps", "conc.", "prompt", "sizes"], text_rows) + "\n" + note
    html_out = (
        f'<div class="wanx-result" style="{S_RESULT}">{table_html(headers, rows)}'
        f'<div class="wanx-note" style="margin:4px 0;{S_MUTED}">{_e(note)}</div></div>'
    )
    meta = {"wanx_nb": {"backend": backend, "has_key": has_key, "models": list(models)}}
    return {"text/plain": text, "text/html": html_out}, meta


def history_mimebundle(
    rows: Sequence[Any], *, thumbnails: Mapping[str, bytes] | None = None, thumb_px: int = 96
) -> MetaBundle:
    """Stored tasks (`Store.history()` rows) as a table with thumbnails (bytes keyed by task id)."""
    thumbnails = thumbnails or {}
    headers = ["", "submitted (UTC)", "model", "prompt", "images", "cost", "seed", "size", "status", "task id"]
    html_rows, text_rows = [], []
    for r in rows:
        thumb = ""
        data = thumbnails.get(r.task_id)
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
