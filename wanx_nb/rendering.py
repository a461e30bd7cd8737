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

import html
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._models import GenerationResult, ImageResult
from ._preview import preview as _preview
from ._preview import preview_data_uri
from ._registry import ModelSpec, get_model
from ._request import PARAMETERS

__all__ = [
    "Bundle",
    "CSS",
    "ErrorReport",
    "Gallery",
    "RenderOptions",
    "ResultList",
    "error_mimebundle",
    "error_text",
    "failure_tile_html",
    "history_mimebundle",
    "image_tile_html",
    "models_mimebundle",
    "next_step",
    "options",
    "preview_data_uri",
    "result_html",
    "result_mimebundle",
    "result_text",
    "status_html",
    "status_text",
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
    """

    preview_px: int = 384
    long_prompt: int = 90


options = RenderOptions()

# One stylesheet, every class prefixed `wanx-`, colours from JupyterLab's theme variables when present.
CSS = (
    "<style>"
    ".wanx-result{font-family:var(--jp-ui-font-family,sans-serif);font-size:12px;margin:4px 0;"
    "color:var(--jp-ui-font-color1,#222)}"
    ".wanx-head{margin:2px 0 6px}"
    ".wanx-gallery{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}"
    ".wanx-tile{margin:0;padding:4px;border:1px solid var(--jp-border-color2,#ddd);border-radius:4px;"
    "background:var(--jp-layout-color1,#fff);box-sizing:border-box}"
    ".wanx-tile img{display:block;max-width:100%;height:auto}"
    ".wanx-cap{font-size:11px;line-height:1.35;margin-top:4px;color:var(--jp-ui-font-color2,#555);"
    "word-break:break-word}"
    ".wanx-cap details summary{cursor:pointer}"
    ".wanx-path{font-family:var(--jp-code-font-family,monospace);font-size:10px;word-break:break-all}"
    ".wanx-failed{border-color:#d9534f;background:#fdf3f2;color:#5a1d1a;min-width:180px;max-width:400px}"
    ".wanx-fail-title{font-weight:bold}"
    ".wanx-code{font-family:var(--jp-code-font-family,monospace);font-weight:bold}"
    ".wanx-msg{margin:2px 0;white-space:pre-wrap}"
    ".wanx-hint{font-style:italic}"
    ".wanx-badge{display:inline-block;padding:0 6px;margin-left:6px;border-radius:8px;font-size:11px}"
    ".wanx-badge-emulator{background:#fff3cd;color:#7a5b00;border:1px solid #e0c97f}"
    ".wanx-badge-replay{background:#e7f1ff;color:#0b3d91;border:1px solid #9ec5fe}"
    ".wanx-warn{margin:4px 0;padding-left:18px;color:#7a5b00}"
    ".wanx-table{border-collapse:collapse;font-size:12px}"
    ".wanx-table th,.wanx-table td{padding:2px 8px;text-align:left;vertical-align:top;"
    "border-bottom:1px solid var(--jp-border-color2,#ddd)}"
    ".wanx-table img{display:block}"
    ".wanx-note{margin:4px 0;color:var(--jp-ui-font-color2,#555)}"
    ".wanx-phase-failed{color:#c9302c}.wanx-phase-done,.wanx-phase-replayed{color:#2b7a0b}"
    "</style>"
)

_BADGES = {
    "emulator": ("wanx-badge-emulator", "emulator: not the real service"),
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


def failure_tile_html(title: str, code: str | None, message: str, hint: str | None = None) -> str:
    """A labelled tile for something that produced no image: the code, the message verbatim, a next step."""
    hint = hint if hint is not None else next_step(code)
    code_html = f'<div class="wanx-code">{_e(code)}</div>' if code else ""
    return (
        '<div class="wanx-tile wanx-failed">'
        f'<div class="wanx-fail-title">{_e(title)}</div>'
        f"{code_html}"
        f'<div class="wanx-msg">{_e(message)}</div>'
        f'<div class="wanx-hint">next step: {_e(hint)}</div>'
        "</div>"
    )


def _prompt_html(label: str, prompt: str) -> str:
    if len(prompt) <= options.long_prompt:
        return f"<div><b>{_e(label)}</b> {_e(prompt)}</div>"
    head = prompt[: options.long_prompt - 30].rstrip() + "…"
    return f"<details><summary><b>{_e(label)}</b> {_e(head)}</summary>{_e(prompt)}</details>"


def _seed_label(seed: int | None) -> str:
    return f"seed {seed}" if seed is not None else "seed ?"


def image_tile_html(result: GenerationResult, image: ImageResult, *, preview_px: int = 384, caption: bool = True) -> str:
    """One image as a tile: the preview, and under it model, size, seed, cost, time, prompt and path.

    A failed image (`image.ok` is False) becomes a failure tile with its code and a next step.
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
    img_html = f'<img src="{pv.uri}" width="{pv.width}" height="{pv.height}" alt="{_e(alt)}">'
    if not caption:
        return f'<figure class="wanx-tile" style="width:{pv.width + 10}px">{img_html}</figure>'
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
    actual = image.actual_prompt
    if actual and actual != (image.orig_prompt or prompt):
        parts.append(_prompt_html("rewritten prompt:", actual))
    else:
        parts.append(_prompt_html("prompt:", image.orig_prompt or prompt))
    path = getattr(image, "export_path", None) or image.path
    if path:
        parts.append(f'<div class="wanx-path" title="{_e(image.path or "")}">{_e(path)}</div>')
    return (
        f'<figure class="wanx-tile" style="width:{max(pv.width, 180) + 10}px">{img_html}'
        f'<figcaption class="wanx-cap">{"".join(parts)}</figcaption></figure>'
    )


def _price(result: GenerationResult) -> float:
    try:
        return get_model(result.model).price_yuan
    except KeyError:
        return 0.0


def _badge(backend: str) -> str:
    if backend not in _BADGES:
        return ""
    cls, text = _BADGES[backend]
    return f'<span class="wanx-badge {cls}">{_e(text)}</span>'


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
    """The gallery of one result as an HTML fragment (with the stylesheet unless `stylesheet=False`)."""
    px = preview_px or options.preview_px
    ok, total = len(result.succeeded), len(result.images)
    head = (
        f'<div class="wanx-head"><b>{_e(result.model)}</b> · {ok}/{total} images · '
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
        warn = '<ul class="wanx-warn">' + "".join(f"<li>{_e(w)}</li>" for w in result.warnings) + "</ul>"
    body = f'<div class="wanx-result">{head}<div class="wanx-gallery">{"".join(tiles)}</div>{warn}</div>'
    return (CSS if stylesheet else "") + body


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
        "text/html": f'{CSS}<div class="wanx-result">{_error_html(exc)}</div>',
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


class Gallery:
    """Several results (or failures, as exceptions in place) shown together.

    Parameters:
        results: GenerationResult objects and/or exceptions, in order.
        title: an optional heading.
        preview_px: preview size (default: `rendering.options.preview_px`).
    """

    def __init__(
        self,
        results: Iterable[GenerationResult | BaseException],
        *,
        title: str | None = None,
        preview_px: int | None = None,
    ) -> None:
        self.results = list(results)
        self.title = title
        self.preview_px = preview_px

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
        body = [result_text(r) if isinstance(r, GenerationResult) else error_text(r) for r in self.results]
        return "\n".join([head, *body])

    def __repr__(self) -> str:
        return self.text()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> MetaBundle:
        parts = []
        if self.title:
            parts.append(f'<div class="wanx-head"><b>{_e(self.title)}</b></div>')
        for r in self.results:
            if isinstance(r, GenerationResult):
                parts.append(result_html(r, preview_px=self.preview_px, stylesheet=False))
            else:
                parts.append(f'<div class="wanx-result">{_error_html(r)}</div>')
        if not self.results:
            parts.append('<div class="wanx-note">no results</div>')
        meta = [r.metadata() if isinstance(r, GenerationResult) else _error_fields(r) for r in self.results]
        return {"text/plain": self.text(), "text/html": CSS + "".join(parts)}, {"wanx_nb": meta}


ResultList = Gallery


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
        return f'{CSS}<div class="wanx-result wanx-note">wanx: starting…</div>'
    rows = []
    for p in sorted(progress_list, key=lambda p: p.index):
        phase = str(p.phase)
        rows.append(
            f"<tr><td>#{_e(p.index)}</td><td>{_e(p.model)}</td>"
            f'<td class="wanx-phase-{_e(phase)}">{_e(phase)}</td>'
            f"<td>{_e(f'{p.elapsed:.1f} s')}</td>"
            f'<td class="wanx-path">{_e(getattr(p, "task_id", None) or "")}</td></tr>'
        )
    return (
        f'{CSS}<div class="wanx-result"><table class="wanx-table">'
        "<tr><th></th><th>model</th><th>status</th><th>elapsed</th><th>task</th></tr>"
        f'{"".join(rows)}</table></div>'
    )


# ---- tables -------------------------------------------------------------------------------------


def table_html(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, raw_columns: Iterable[int] = ()) -> str:
    """An HTML table (escaped cells, except the columns in `raw_columns`, which hold ready HTML)."""
    raw = set(raw_columns)
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if i in raw else _e(c)}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return f'<table class="wanx-table"><tr>{head}</tr>{body}</table>'


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
    html_out = f'{CSS}<div class="wanx-result">{table_html(headers, rows)}<div class="wanx-note">{_e(note)}</div></div>'
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
                thumb = f'<img src="{pv.uri}" width="{pv.width}" height="{pv.height}" alt="">'
            except ValueError:
                thumb = ""
        prompt = r.prompt if len(r.prompt) <= 80 else r.prompt[:79] + "…"
        badge = _badge(r.backend)
        html_rows.append(
            [thumb, _e(r.submitted_at[:19].replace("T", " ")), _e(r.model), _e(prompt) + badge, _e(r.images),
             _e(_yuan(r.cost_yuan)), _e(r.seed), _e(r.size), _e(r.status), f'<span class="wanx-path">{_e(r.task_id)}</span>']
        )
        text_rows.append(
            [r.submitted_at[:19].replace("T", " "), r.model, prompt if len(prompt) <= 40 else prompt[:39] + "…",
             r.images, _yuan(r.cost_yuan), r.seed, r.status, r.task_id]
        )
    if not rows:
        text = "no stored generations match"
        html_out = f'{CSS}<div class="wanx-result wanx-note">{text}</div>'
    else:
        text = table_text(["submitted", "model", "prompt", "images", "cost", "seed", "status", "task id"], text_rows)
        html_out = f'{CSS}<div class="wanx-result">{table_html(headers, html_rows, raw_columns=range(len(headers)))}</div>'
    return {"text/plain": text, "text/html": html_out}, {"wanx_nb": {"history": [r.task_id for r in rows]}}
