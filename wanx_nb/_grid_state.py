"""A grid's live state: its cells and their outcomes (filled from a Run's events), its text and manifest.

Shared by `comparison.Grid` (display, PNG) and the panel's sweeps; no I/O and no display code here.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._exceptions import TaskUnfinishedError, WanxError
from ._grid import DEFAULT_SEED, GUIDE_MODELS, REUSED, Axis, GridCell, plan_cells
from ._grid_plan import GridPlan, summary_notes
from ._grid_plan import plural as _s
from ._scheduler import estimate_seconds  # the one estimate: the limits' exact schedule
from ._models import GenerationResult
from ._run_events import Progress
from ._version import __version__

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["GridState", "build_state"]

AGAIN_WITH_REUSE = (
    "once `%wanx resume` (`wanx-nb resume`) has saved the unfinished requests' images, run the grid again "
    "with --reuse (reuse=True; the panel's \"reuse saved\"): what is saved is shown from the store, only "
    "what is missing is sent"
)

Key = tuple[int, int, int]


class GridState:
    """The cells of a grid and their outcomes, filled from a Run's events (any thread), and its manifest.

    `x`, `y`, `z` are the axes (None when unused); `cell_at(z, y, x)` is the GridCell.
    """

    kind = "grid"

    def __init__(self, prompts: Sequence[str], axes: Sequence[Axis | None], cells: Mapping[Key, GridCell], *,
                 plan: GridPlan, fixed: Mapping[str, Any], notes: Sequence[str], dry_run: bool,
                 preview_px: int = 200) -> None:  # fmt: skip
        self.prompts = tuple(prompts)
        self.x, self.y, self.z = axes
        self.plan = plan
        self.fixed = dict(fixed)
        self.notes = list(notes)
        self.dry_run = dry_run
        self.preview_px = preview_px
        self.interrupted: str | None = None
        self._cells = dict(cells)
        self._lock = threading.Lock()
        self._changed = threading.Event()

    # ---- access ----------------------------------------------------------------------------------

    def cell_at(self, z: int, y: int, x: int) -> GridCell:
        return self._cells[(z, y, x)]

    def __getitem__(self, key: tuple[int, int, int]) -> GenerationResult | BaseException | None:
        return self.cell_at(*key).outcome

    @property
    def cells(self) -> list[GridCell]:
        return list(self._cells.values())

    @property
    def seed(self) -> int | None:
        return self.plan.seed

    @property
    def n(self) -> int:
        return int(self.fixed.get("n") or 1)

    @property
    def done(self) -> bool:
        return all(c.finished for c in self._cells.values())

    @property
    def backends(self) -> list[str]:
        """Where the images came from, by their results (a served emulator behind a base URL says
        "emulator", where the session would say "dashscope"); the session's before any result."""
        found = {c.result.backend for c in self._cells.values() if c.result is not None}
        return sorted(found) or [self.plan.backend]

    @property
    def cost_yuan(self) -> float:
        """What the service billed (a request shared by several cells counts once)."""
        return round(sum(c.result.cost_yuan for c in self._cells.values() if c.result is not None and c.shares is None), 4)

    @property
    def paid_yuan(self) -> float:
        """What this run was billed: `cost_yuan` without the cells an earlier run made (reuse)."""
        return round(sum(c.result.cost_yuan for c in self._cells.values()
                         if c.result is not None and c.shares is None and not c.from_store), 4)  # fmt: skip

    def done_cost_text(self) -> str:
        """What a finished run cost, never reading as paid now what an earlier run paid for (reuse)."""
        if not self.plan.reused:
            return f"¥{self.cost_yuan:.2f}"
        return f"this run paid ¥{self.paid_yuan:.2f}"

    def after_resume(self) -> str:
        """When a request was stopped or left unfinished (its images wait for resume), how to get the
        whole grid without paying twice for what was made; "" otherwise."""
        for cell in self._cells.values():
            missing = cell.result is not None and any(im.missing and not im.gone for im in cell.result.images)
            if missing or isinstance(cell.error, TaskUnfinishedError):
                return AGAIN_WITH_REUSE
        return AGAIN_WITH_REUSE if self.interrupted else ""

    def reuse_text(self) -> str:
        """Which requests an earlier run made ("" when none): their cost is in `cost_yuan`, paid then."""
        count, of = self.plan.reused, self.plan.requests
        if not count:
            return ""
        return f"{count} of {of} request{_s(of)} made by an earlier run, shown from the store (billed then, not again)"

    def reused_cost_text(self) -> str:
        """`reuse_text()` and what those requests cost when they were made ("" when none)."""
        text = self.reuse_text()
        return f"{text}; they cost ¥{self.cost_yuan - self.paid_yuan:.2f}" if text else ""

    def fixed_text(self) -> dict[str, Any]:
        """The parameters every cell shares, for legends (what the axes do not vary)."""
        on_axes = {a.name for a in (self.x, self.y, self.z) if a is not None}
        out = {k: v for k, v in self.fixed.items() if v is not None and k not in on_axes}
        if "prompt" not in on_axes and len(self.prompts) == 1:
            out = {"prompt": self.prompts[0], **out}
        return out

    def title_text(self) -> str:
        dims = " x ".join(f"{a.name} ({len(a)})" for a in (self.x, self.y, self.z) if a is not None)
        return f"wanx_nb grid: {dims or 'one cell'}"

    # ---- updates from the run (background thread) ----------------------------------------------

    def _on_progress(self, keys: Sequence[Key], progress: Progress) -> None:
        with self._lock:
            for cell in self._sharing(keys[progress.index]):
                if not cell.finished:
                    cell.phase = str(progress.phase)
        self._changed.set()

    def _on_result(self, keys: Sequence[Key], index: int, outcome: GenerationResult | BaseException) -> None:
        with self._lock:
            for cell in self._sharing(keys[index]):
                if isinstance(outcome, GenerationResult):
                    cell.result, cell.phase = outcome, "done"
                    cell.notes.extend(w for w in outcome.warnings if w not in cell.notes)
                else:
                    cell.error, cell.phase = outcome, "failed"
        self._changed.set()

    def unique_keys(self) -> list[Key]:
        """The cells whose requests are sent (the others repeat one of them or were made before), in order."""
        return [c.key for c in self._cells.values() if c.shares is None and not c.finished]

    def _sharing(self, key: Key) -> list[GridCell]:
        return [c for c in self._cells.values() if c.key == key or c.shares == key]

    def _axes_manifest(self) -> dict[str, Any]:
        return {letter: {"name": a.name, "values": list(a.values), "labels": list(a.labels)}
                for letter, a in (("x", self.x), ("y", self.y), ("z", self.z)) if a is not None}  # fmt: skip

    def manifest(self, *, image_name: str | None = None) -> dict[str, Any]:
        """Every cell with its axis values, effective request and outcome, as plain JSON data."""
        with self._lock:
            cells = [self._cell_manifest(c) for c in self._cells.values()]
        return {
            "wanx_nb_version": __version__,
            "kind": self.kind,
            "image": image_name,
            "axes": self._axes_manifest(),
            "prompts": list(self.prompts),
            "fixed": self.fixed,
            "seed": self.seed,
            "seed_chosen": self.plan.seed_chosen,
            "notes": list(self.notes),
            "backend": ", ".join(self.backends),
            "dry_run": self.dry_run,
            "plan": {"cells": self.plan.cells, "requests": self.plan.requests, "reused": self.plan.reused,
                     "images": self.plan.images,
                     "estimated_yuan": self.plan.yuan, "estimated_seconds": round(self.plan.seconds, 1)},
            "cost_yuan": self.cost_yuan,
            "interrupted": self.interrupted,
            "cells": cells,
        }  # fmt: skip

    def _cell_manifest(self, cell: GridCell) -> dict[str, Any]:
        z, y, x = cell.key
        out: dict[str, Any] = {
            "cell": {"z": z, "y": y, "x": x},
            "axes": {a.name: a.values[i] for a, i in ((self.x, x), (self.y, y), (self.z, z)) if a is not None},
            "model": cell.model,
            "effective": cell.request.canonical(),
            "notes": list(cell.notes),
            "shares_request_of": list(cell.shares) if cell.shares is not None else None,
            "from_store": cell.from_store,  # made by an earlier run, not paid again by this one
            "status": cell.status_text(),
            "task_id": None,
            "cost_yuan": 0.0,
            "images": [],
        }
        if cell.result is not None:
            out.update(task_id=cell.result.task_id, request_id=cell.result.task.request_id,
                       backend=cell.result.backend, cost_yuan=0.0 if cell.shares else cell.result.cost_yuan)
            for im in cell.result.images:
                sha = im.sha256 or (hashlib.sha256(im.data).hexdigest() if im.data is not None else None)
                entry = {"index": im.index, "seed": im.seed, "size": im.size, "path": im.path, "sha256": sha}
                if im.actual_prompt:
                    entry["actual_prompt"] = im.actual_prompt
                if im.code:
                    entry.update(code=im.code, message=im.message)
                out["images"].append(entry)
        elif cell.error is not None:
            out["task_id"] = getattr(cell.error, "task_id", None)
            out["error"] = {"type": type(cell.error).__name__, "code": cell.status_text().removeprefix("failed "),
                            "message": getattr(cell.error, "server_message", None) or str(cell.error)}
        return out


def build_state(cls: type[GridState], prompts: list[str], axes: Sequence[Axis | None], fixed: Mapping[str, Any],
                session: Session, *, dry_run: bool = False, preview_px: int = 200, reuse: bool = False,
                refuse_over_budget: bool | None = None) -> GridState:  # fmt: skip
    """Plan a grid and state what it will cost, before anything is sent.

    Fills the defaults every cell shares (n=1, one seed `DEFAULT_SEED` unless seeds are an axis or
    given, the default model unless models are an axis), plans the cells, and asks `session` for the
    cost of the distinct requests and its budget (over budget raises, except for a dry run or
    `refuse_over_budget=False`: then the plan says it). With `reuse`, a request already made (every billed image saved, same service) is
    shown from the store and neither sent nor counted in the cost.
    """
    on_axes = {a.name for a in axes if a is not None}
    shared = {k: v for k, v in fixed.items() if v is not None}
    shared.setdefault("n", 1)
    seed_chosen = "seed" not in on_axes and "seed" not in shared
    if seed_chosen:
        shared["seed"] = DEFAULT_SEED
    if "model" not in on_axes:
        shared.setdefault("model", GUIDE_MODELS[1])
    cells = plan_cells(prompts, axes, shared)
    reused = _show_stored(cells, session) if reuse else 0
    unique = [c.request for c in cells.values() if c.shares is None and not c.finished]
    images, yuan = session.estimate_cost(unique)
    budget_note = None
    try:
        session.check_budget(unique)
    except WanxError as exc:
        if refuse_over_budget or (refuse_over_budget is None and not dry_run):
            raise
        budget_note = f"over budget: {exc}"
    x, y, z = (list(axes) + [None, None, None])[:3]
    plan = GridPlan(
        shape=(len(z) if z else 1, len(y) if y else 1, len(x) if x else 1), cells=len(cells),
        requests=len(unique) + reused, reused=reused,
        images=images, yuan=yuan, seconds=estimate_seconds(unique), seed=None if "seed" in on_axes else shared["seed"],
        seed_chosen=seed_chosen, backend=getattr(session, "backend", "dashscope"), budget_note=budget_note,
    )
    return cls(prompts, (x, y, z), cells, plan=plan, fixed=shared, notes=summary_notes(cells), dry_run=dry_run,
               preview_px=preview_px)  # fmt: skip


def _show_stored(cells: Mapping[Key, GridCell], session: Session) -> int:
    """Fill the cells of each distinct request already made from the store; returns how many were."""
    found = 0
    for cell in cells.values():
        result = session.reusable(cell.request) if cell.shares is None else None
        if result is None:
            continue
        found += 1
        for sharing in (c for c in cells.values() if c.key == cell.key or c.shares == cell.key):
            sharing.result, sharing.phase = result, REUSED
            sharing.notes.extend(w for w in result.warnings if w not in sharing.notes)
    return found
