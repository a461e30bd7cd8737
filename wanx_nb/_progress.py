"""The live status display of a running `%%wanx` cell.

Progress events arrive on the background loop's thread (`on_progress`); the display is only touched
from the cell's own thread (`tick`, called by `_loop.run_sync(on_tick=...)`), so output always lands
in the right cell. `start()` puts an empty display in place at once (so a cell always has the same
outputs, whatever the timing: nbval compares them), ticks fill it, and it is blanked when the result
is ready, so the returned result takes its place.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._tables_html import StatusLine
    from .rendering import Bundle

__all__ = ["DisplayHandle", "LiveStatus", "StatusRow"]

_TERMINAL = frozenset({"done", "failed", "replayed", "reused", "succeeded", "canceled", "unknown"})


@dataclass(frozen=True)
class StatusRow:
    """One request's latest state, with its elapsed time brought up to date."""

    index: int
    model: str
    phase: str
    task_id: str | None
    elapsed: float


class DisplayHandle(Protocol):
    """What `display(obj, display_id=True)` returns (IPython's DisplayHandle)."""

    def update(self, obj: object) -> None: ...


Display = Callable[..., DisplayHandle]


class LiveStatus:
    """A `display(..., display_id=True)` handle showing `rendering.status_html` while requests run.

    Parameters:
        enabled: when False every method is a cheap no-op except the progress bookkeeping.
        display: the display function (default `IPython.display.display`); tests pass their own.
        clock: a monotonic clock (injected for tests).
    """

    def __init__(self, *, enabled: bool, display: Display | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self._display = display
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: dict[int, tuple[StatusLine, float]] = {}
        self._handle: DisplayHandle | None = None

    def on_progress(self, progress: StatusLine) -> None:
        """Record a `Progress` event (any thread)."""
        with self._lock:
            self._latest[progress.index] = (progress, self._clock())

    def rows(self) -> list[StatusRow]:
        now = self._clock()
        with self._lock:
            items = list(self._latest.values())
        out = []
        for p, seen in items:
            live = 0.0 if p.phase in _TERMINAL else max(0.0, now - seen)
            out.append(StatusRow(p.index, p.model, p.phase, p.task_id, p.elapsed + live))
        return sorted(out, key=lambda r: r.index)

    def _bundle(self) -> Bundle:
        from .rendering import Bundle, status_html, status_text

        rows = self.rows()
        return Bundle({"text/plain": status_text(rows), "text/html": status_html(rows)})

    def _show(self, obj: Bundle) -> None:
        if self._handle is None:
            display = self._display or _ipython_display
            self._handle = display(obj, display_id=True)
        else:
            self._handle.update(obj)

    def start(self) -> None:
        """Put the (empty) status display in place (the cell's thread only)."""
        if self.enabled:
            from .rendering import Bundle

            self._show(Bundle({"text/plain": ""}))

    def tick(self) -> None:
        """Show or refresh the status (the cell's thread only)."""
        if self.enabled:
            self._show(self._bundle())

    def finish(self, replacement: object = None) -> None:
        """Replace the status with `replacement`, or blank it (when it was shown at all)."""
        if self._handle is None:
            return
        from .rendering import Bundle

        self._handle.update(replacement if replacement is not None else Bundle({"text/plain": ""}))


def _ipython_display(obj: object, *, display_id: bool) -> DisplayHandle:
    from IPython.display import display

    handle: DisplayHandle = display(obj, display_id=display_id)
    return handle
