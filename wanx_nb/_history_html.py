"""The history table: stored tasks (`Store.history()` rows) with thumbnails, as a mimebundle."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ._html_style import S_MUTED, S_PATH, S_RESULT, S_THUMB
from ._html_style import escape as _e
from ._html_style import yuan as _yuan
from ._preview import preview as _preview
from ._request import excerpt
from ._tables_html import table_html, table_text
from ._tiles_html import badge_html

__all__ = ["HistoryRowView", "ID_HEADER", "history_mimebundle", "row_id"]

MetaBundle = tuple[dict[str, Any], dict[str, Any]]


class HistoryRowView(Protocol):
    """What the history table shows of a stored task (`_store_read.HistoryRow`, a layer this one does not import)."""

    @property
    def task_id(self) -> str | None: ...
    @property
    def request_id(self) -> str | None: ...
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


# A sync call has no task: its request id is its only id, and `show` takes either.
ID_HEADER = "task (or request) id"


def row_id(row: HistoryRowView) -> str | None:
    """The id `%wanx show` / `wanx-nb show` takes for this row."""
    return row.task_id or row.request_id


def history_mimebundle(
    rows: Sequence[HistoryRowView], *, thumbnails: Mapping[str, bytes] | None = None, thumb_px: int = 96
) -> MetaBundle:
    """Stored tasks (`Store.history()` rows) as a table with thumbnails (bytes keyed by `row_id`)."""
    thumbnails = thumbnails or {}
    headers = ["", "submitted (UTC)", "model", "prompt", "images", "cost", "seed", "size", "status", ID_HEADER]
    html_rows, text_rows = [], []
    for r in rows:
        thumb = ""
        ident = row_id(r)
        data = thumbnails.get(ident) if ident is not None else None
        if data:
            try:
                pv = _preview(data, thumb_px)
                # Drawn at two thirds of its pixels (sharp on dense screens) and at that size however
                # narrow the window: a percentage max-width let the column shrink the image to nothing.
                w, h = round(pv.width * 2 / 3), round(pv.height * 2 / 3)
                thumb = f'<img src="{pv.uri}" width="{w}" height="{h}" alt="" style="{S_THUMB}">'
            except ValueError:
                thumb = ""
        prompt = excerpt(r.prompt, 80)
        badge = badge_html(r.backend)
        html_rows.append(
            [thumb, _e(r.submitted_at[:19].replace("T", " ")), _e(r.model), _e(prompt) + badge, _e(r.images),
             _e(_yuan(r.cost_yuan)), _e(r.seed), _e(r.size), _e(r.status), f'<span class="wanx-path" style="{S_PATH}">{_e(ident)}</span>']
        )
        text_rows.append(
            [r.submitted_at[:19].replace("T", " "), r.model, excerpt(r.prompt, 40),
             r.images, _yuan(r.cost_yuan), r.seed, r.status, ident]
        )
    if not rows:
        text = "no stored generations match"
        html_out = f'<div class="wanx-result wanx-note" style="{S_RESULT};{S_MUTED}">{text}</div>'
    else:
        text = table_text(["submitted (UTC)", "model", "prompt", "images", "cost", "seed", "status", ID_HEADER], text_rows)
        table = table_html(headers, html_rows, raw_columns=range(len(headers)))
        html_out = f'<div class="wanx-result" style="{S_RESULT}">{table}</div>'
    return {"text/plain": text, "text/html": html_out}, {"wanx_nb": {"history": [row_id(r) for r in rows]}}
