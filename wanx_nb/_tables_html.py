"""Tables as HTML and text: the live status of running requests, the model registry, any rows.

Table cells are left to the viewer's own table style (JupyterLab's follows its theme); only the
status column carries a tint, inline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from ._html_style import PHASE_TINTS, S_CELL, S_MUTED, S_PATH, S_RESULT, S_TABLE
from ._html_style import escape as _e
from ._registry import ModelSpec, preferred_protocol
from ._registry import Protocol as Endpoint  # the API's endpoints; `Protocol` here is typing's
from ._request import PARAMETERS

__all__ = [
    "StatusLine",
    "limits_text",
    "models_mimebundle",
    "protocol_text",
    "status_html",
    "status_text",
    "table_html",
    "table_text",
]

MetaBundle = tuple[dict[str, Any], dict[str, Any]]


class StatusLine(Protocol):
    """What the live status shows of one request: a `_run_events.Progress` or a `_progress.StatusRow`."""

    @property
    def index(self) -> int: ...
    @property
    def model(self) -> str: ...
    @property
    def phase(self) -> str: ...
    @property
    def task_id(self) -> str | None: ...
    @property
    def elapsed(self) -> float: ...


def status_text(progress_list: Sequence[StatusLine]) -> str:
    """One line per request: index, model, phase, elapsed (the live status, as text)."""
    if not progress_list:
        return "wanx: starting…"
    lines = []
    for p in sorted(progress_list, key=lambda p: p.index):
        tid = f" task {p.task_id}" if getattr(p, "task_id", None) else ""
        lines.append(f"#{p.index} {p.model}: {p.phase} {p.elapsed:.1f}s{tid}")
    return "\n".join(lines)


def status_html(progress_list: Sequence[StatusLine]) -> str:
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
            f'<td class="wanx-phase-{_e(phase)}" style="{S_CELL};{PHASE_TINTS.get(phase, "")}">{_e(phase)}</td>'
            f"<td style=\"{S_CELL}\">{_e(f'{p.elapsed:.1f} s')}</td>"
            f'<td class="wanx-path" style="{S_CELL};{S_PATH}">{_e(getattr(p, "task_id", None) or "")}</td></tr>'
        )
    head = "".join(f'<th style="{S_CELL}">{h}</th>' for h in ("", "model", "status", "elapsed", "task"))
    return (
        f'<div class="wanx-result" style="{S_RESULT}"><table class="wanx-table" style="{S_TABLE}">'
        f'<tr>{head}</tr>{"".join(rows)}</table></div>'
    )


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


def _params_text(spec: ModelSpec) -> str:
    return ", ".join(p for p in PARAMETERS if p in spec.params and p != "prompt")


_PROTOCOL_WORDS = {
    Endpoint.T2I: "async task (text2image)",
    Endpoint.IMG: "async task (image-generation)",
    Endpoint.MMG: "sync (multimodal-generation)",
}


def protocol_text(spec: ModelSpec) -> str:
    """How wanx_nb calls the model: an async task (resumable) or a sync call (no task id)."""
    return _PROTOCOL_WORDS[preferred_protocol(spec)]


def limits_text(spec: ModelSpec) -> str:
    """The submit limit in words: "2/min", "1/s (5/s in singapore, virginia, frankfurt)"."""
    if spec.submits_per_minute is not None:
        return f"{spec.submits_per_minute:g}/min"
    text = f"{spec.submit_rps:g}/s"
    others: dict[float, list[str]] = {}
    for region, rps in spec.region_submit_rps.items():
        if rps != spec.submit_rps:
            others.setdefault(rps, []).append(region)
    extra = "; ".join(f"{rps:g}/s in {', '.join(regions)}" for rps, regions in others.items())
    return f"{text} ({extra})" if extra else text


def models_mimebundle(
    models: Mapping[str, ModelSpec], *, backend: str, has_key: bool, mode: str = "live"
) -> MetaBundle:
    """The registry as a table (name, status, protocol, family, price ¥/image, limits, regions, sizes,
    parameters) and the backend."""
    headers = ["model", "status", "protocol", "family", "description", "¥/image", "submit limit", "concurrency",
               "regions", "sizes", "prompt limit", "parameters"]
    rows = [
        [s.name, s.status, protocol_text(s), s.family, s.description, f"{s.price_yuan:.2f}", limits_text(s),
         s.concurrency, ", ".join(s.regions), s.size_rule(), s.prompt_limit, _params_text(s)]
        for s in models.values()
    ]
    key = "DASHSCOPE_API_KEY is set" if has_key else "no DASHSCOPE_API_KEY set"
    if backend == "emulator":
        note = f"backend: emulator ({key}): images are placeholders from the offline emulator, not the real service"
    elif backend == "replay":
        note = f"backend: replay ({key}): results come from the local store; nothing is sent"
    else:
        note = f"backend: {backend} ({key}); mode {mode}"
    text_rows = [[r[0], r[1], str(r[2]).split(" ")[0], r[5], r[6], r[7], r[8]] for r in rows]
    text = table_text(["model", "status", "call", "¥/image", "limit", "conc.", "regions"], text_rows) + "\n" + note
    html_out = (
        f'<div class="wanx-result" style="{S_RESULT}">{table_html(headers, rows)}'
        f'<div class="wanx-note" style="margin:4px 0;{S_MUTED}">{_e(note)}</div></div>'
    )
    meta = {"wanx_nb": {"backend": backend, "has_key": has_key, "models": list(models)}}
    return {"text/plain": text, "text/html": html_out}, meta
