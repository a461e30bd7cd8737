"""The friendly card for an interrupted cell: what was canceled, what still runs, what to do next."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._html_style import S_NOTICE, S_PATH, S_RESULT, S_WARN
from ._html_style import escape as _e

__all__ = ["interrupt_mimebundle"]

MetaBundle = tuple[dict[str, Any], dict[str, Any]]


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
