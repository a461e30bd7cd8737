"""A grid's plan: what it will send before anything is (cells, requests, images, cost, time), as text,
and the notes that say once what the cells adapt."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._registry import get_model

if TYPE_CHECKING:
    from ._grid import GridCell

__all__ = ["GridPlan", "plural", "summary_notes"]


@dataclass(frozen=True)
class GridPlan:
    """What a grid will send, before anything is: cells, requests, images, cost and time."""

    shape: tuple[int, int, int]  # (z, y, x)
    cells: int
    requests: int
    images: int
    yuan: float
    seconds: float
    seed: int | None
    seed_chosen: bool
    backend: str
    budget_note: str | None = None
    reused: int = 0  # distinct requests already made, shown from the store (`images`, `yuan`: the rest)

    def __str__(self) -> str:
        z, y, x = self.shape
        dims = " x ".join(str(d) for d in (x, y, z) if d > 1) or "1"
        shared = self.cells - self.requests
        text = f"{dims} = {self.cells} cell{plural(self.cells)}"
        if shared:
            text += f" ({self.requests} request{plural(self.requests)}; {shared} cell{plural(shared)} {'repeats' if shared == 1 else 'repeat'} another cell's request, sent once)"
        estimate = f", estimated ¥{self.yuan:.2f} if every image succeeds, about {_duration(self.seconds)}"
        if self.reused == self.requests:
            text += "; every request already made, shown from the store: nothing to send"
        elif self.reused:
            text += (f"; {self.reused} of {self.requests} requests already made, shown from the store (not paid "
                     f"again); {self.images} image{plural(self.images)} to make{estimate}")
        else:
            text += f", {self.images} image{plural(self.images)}{estimate}"
        if self.seed is not None:
            text += f"; seed {self.seed} in every cell"
            if self.seed_chosen:
                text += " (chosen for you; pass seed= to change it)"
        if self.budget_note:
            text += f"; {self.budget_note}"
        return text


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(round(seconds), 1)} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def plural(count: int) -> str:
    """The plural "s" for `count` of something."""
    return "" if count == 1 else "s"


def summary_notes(cells: Mapping[tuple[int, int, int], GridCell]) -> list[str]:
    """Each adaptation once, with the models it applies to."""
    by_note: dict[str, list[str]] = {}
    for cell in cells.values():
        for note in cell.notes:
            models = by_note.setdefault(note, [])
            if cell.model not in models:
                models.append(cell.model)
    notes = [f"{', '.join(models)}: {note}" if "n/a" in note else note
             for note, models in by_note.items() if "n/a" in note or note.startswith("size ")]  # fmt: skip
    families = {get_model(c.model).family for c in cells.values()}
    if families >= {"V1", "V2"} and not any(
        "prompt_extend" in c.asked for c in cells.values()
    ):
        notes.append("prompt_extend not set: the V2 models rewrite the prompt (server default on), wanx-v1 does not")
    shared = sum(1 for c in cells.values() if c.shares is not None)
    if shared:
        notes.append(f"{shared} cell(s) have the same effective request as another cell: sent once, shown in each")
    return notes
