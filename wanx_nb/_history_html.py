"""The history table: stored tasks (`Store.history()` rows) with thumbnails, as a mimebundle."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ._html_style import S_IMG, S_MUTED, S_PATH, S_RESULT
from ._html_style import escape as _e
from ._html_style import yuan as _yuan
from ._preview import preview as _preview
from ._request import excerpt
from ._tables_html import table_html, table_text
from ._tiles_html import badge_html

__all__ = ["HistoryRowView", "history_mimebundle"]

MetaBundle = tuple[dict[str, Any], dict[str, Any]]


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
        prompt = excerpt(r.prompt, 80)
        badge = badge_html(r.backend)
        html_rows.append(
            [thumb, _e(r.submitted_at[:19].replace("T", " ")), _e(r.model), _e(prompt) + badge, _e(r.images),
             _e(_yuan(r.cost_yuan)), _e(r.seed), _e(r.size), _e(r.status), f'<span class="wanx-path" style="{S_PATH}">{_e(r.task_id)}</span>']
        )
        text_rows.append(
            [r.submitted_at[:19].replace("T", " "), r.model, excerpt(r.prompt, 40),
             r.images, _yuan(r.cost_yuan), r.seed, r.status, r.task_id]
        )
    if not rows:
        text = "no stored generations match"
        html_out = f'<div class="wanx-result wanx-note" style="{S_RESULT};{S_MUTED}">{text}</div>'
    else:
        text = table_text(["submitted (UTC)", "model", "prompt", "images", "cost", "seed", "status", "task id"], text_rows)
        table = table_html(headers, html_rows, raw_columns=range(len(headers)))
        html_out = f'<div class="wanx-result" style="{S_RESULT}">{table}</div>'
    return {"text/plain": text, "text/html": html_out}, {"wanx_nb": {"history": [r.task_id for r in rows]}}
