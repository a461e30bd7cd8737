"""The panel's status row and Cancel message, from the Run's last events. Pure.

The row brings each request's elapsed time up to now (the time since its last event is added until a
final phase), so elapsed ticks while a task waits PENDING. After Cancel, requests asked to cancel read
"canceling" until the service confirms, and the message is written from the same rows as the table,
so the two always agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

__all__ = ["StatusRow", "cancel_text", "status_rows"]

_CANCELABLE = ("queued", "sending", "pending")


@dataclasses.dataclass(frozen=True)
class StatusRow:
    """A status row as shown: the Run's event with the elapsed time brought up to now."""

    index: int
    model: str
    phase: str
    task_id: str | None
    elapsed: float


def status_rows(events: Sequence[tuple[Any, float]], now: float, *, canceling: bool = False) -> list[StatusRow]:
    """Rows from (Progress, clock reading when it arrived) pairs; `canceling`: Cancel was clicked."""
    rows = []
    for progress, seen_at in events:
        final = progress.phase.is_final
        elapsed = progress.elapsed + (0.0 if final else max(now - seen_at, 0.0))
        phase = str(progress.phase)
        if canceling and phase in _CANCELABLE:
            phase = "canceling"  # asked; the service confirms with CANCELED
        rows.append(StatusRow(progress.index, progress.model, phase, progress.task_id, elapsed))
    return rows


def cancel_text(rows: Sequence[StatusRow]) -> str:
    """What Cancel did, in the words of the status table (both come from the same rows)."""
    by_phase: dict[str, list[str]] = {}
    for row in rows:
        by_phase.setdefault(row.phase, []).append(row.task_id or f"#{row.index}")
    parts = []
    if "canceling" in by_phase:
        parts.append(f"Canceling (PENDING, not billed): {', '.join(by_phase['canceling'])}.")
    if "canceled" in by_phase:
        parts.append(f"Canceled, not billed: {', '.join(by_phase['canceled'])}.")
    if "withdrawn" in by_phase:
        parts.append(f"Withdrawn before sending: {len(by_phase['withdrawn'])}.")
    running = by_phase.get("running", []) + by_phase.get("downloading", [])
    if running:
        parts.append(
            "Running (the service cannot cancel a running task; it will finish, be billed and be saved here): "
            f"{', '.join(running)}."
        )
    done = by_phase.get("done", [])
    if done:
        parts.append(f"Already done: {', '.join(done)}.")
    return " ".join(parts) or "Nothing to cancel: every task of this request is already done."
