"""The panel's texts, pure: the status row and Cancel message (from the Run's last events), the cost
label, the note a run ends with (and what to do about what it left unfinished), and the form's labels
and equivalent `%%wanx` cell.

The row brings each request's elapsed time up to now (the time since its last event is added until a
final phase), so elapsed ticks while a task waits PENDING. After Cancel, requests asked to cancel read
"canceling" until the service confirms, and the message is written from the same rows as the table,
so the two always agree.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
from collections.abc import Collection, Sequence
from typing import Any

from ._models import GenerationResult
from ._modelspec import ModelSpec
from ._params import BY_NAME, option_line
from ._request import GenerationRequest

__all__ = [
    "StatusRow", "cancel_text", "code_cell", "cost_text", "finish_text", "magic_cell", "model_label", "param_label",
    "param_tooltip", "side_bounds", "status_rows", "unfinished_text",
]

_CANCELABLE = ("queued", "sending", "pending")


@dataclasses.dataclass(frozen=True)
class StatusRow:
    """A status row as shown: the Run's event with the elapsed time brought up to now."""

    index: int
    model: str
    phase: str
    task_id: str | None
    elapsed: float


def status_rows(events: Sequence[tuple[Any, float]], now: float, *, canceling: bool = False,
                unanswered: Collection[int] = ()) -> list[StatusRow]:
    """Rows from (Progress, clock reading when it arrived) pairs; `canceling`: Cancel was clicked;
    `unanswered`: the requests that are sync calls whose answer was lost (not "unfinished": resume
    cannot finish them)."""
    rows = []
    for progress, seen_at in events:
        final = progress.phase.is_final
        elapsed = progress.elapsed + (0.0 if final else max(now - seen_at, 0.0))
        phase = "no answer" if progress.index in unanswered else str(progress.phase)
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


def cost_text(*, images: int, price: float, cells: int = 1, emulator: bool = False,
              sweep_problem: str | None = None) -> str:  # fmt: skip
    """The cost label: `images` per request at `price` each, times `cells` requests when a sweep is set.

    `price` is what the service bills per image for the request as the controls set it (prompt rewriting
    included); `sweep_problem` names a sweep field that cannot be read yet (its cost is not known).
    """
    each = f"{images} image{_s(images)} x ¥{price:.2f}"
    total = f" = ¥{cells * images * price:.2f}"
    text = each + total if cells == 1 else f"{cells} sweep requests x {each}{total}"
    if sweep_problem:
        text += f" (+ the sweep: fix {sweep_problem} to see its cost)"
    return text + (" (emulator: not billed)" if emulator else "")


def finish_text(results: Sequence[GenerationResult], reused: Sequence[GenerationResult], *, failed: int,
                unfinished: int, unanswered: int = 0) -> list[str]:
    """The lines a Generate run ends with: images saved, what the service billed (not what `reused` took
    from the store), what it left unfinished (to Resume, never to send again), and the sync calls whose
    answer was lost (`unanswered`: maybe billed, and nothing can look them up)."""
    lines = []
    if results or failed:
        saved = sum(r.saved_images for r in results)
        cost = sum(r.cost_yuan for r in results if not any(r is x for x in reused))
        # With requests left unfinished or unanswered, the bill is what is known so far.
        known = " billed so far" if unfinished or unanswered else ""
        line = f"Done: {saved} image{_s(saved)}, ¥{cost:.2f}{known}"
        if reused:
            line += f" ({len(reused)} request{_s(len(reused))} from the store, not paid again)"
        lines.append(line + (" (emulator: nothing was billed)" if results and results[0].from_emulator else ""))
    if unfinished:
        lines.append(unfinished_text(unfinished))
    if unanswered:
        it = "it" if unanswered == 1 else "they"
        lines.append(
            f"⚠ {unanswered} call{_s(unanswered)} sent with no answer: {it} may be billed, and a sync call cannot be "
            "looked up afterwards. Check the bill in the Model Studio console before sending it again."
        )
    return lines


def unfinished_text(count: int) -> str:
    """What to do about requests a run sent and did not finish: resume, never a plain retry."""
    it, its, them = ("it", "its", "it") if count == 1 else ("they", "their", "them")
    return (
        f"⚠ {count} request{_s(count)} sent and not finished: {it} may be billed and {its} images are not saved yet. "
        f"Click Resume (or run `%wanx resume`) within 24 h to save {them} without paying again; until then Generate "
        f"does not send {them} again (that would bill {them} twice)."
    )


def _s(count: int) -> str:
    return "" if count == 1 else "s"


# ---- the form's texts: model labels, slider bounds, the equivalent cell -------------------------------


def param_label(name: str) -> str:
    """A parameter's label in the panel ("Images (n)")."""
    return BY_NAME[name].label


def param_tooltip(name: str) -> str:
    """A parameter's tooltip: its magic option and what it does."""
    p = BY_NAME[name]
    return f"{p.option}: {p.help_text()}"


def model_label(spec: ModelSpec) -> str:
    """A model as the picker lists it: name, price per image as billed, status, description."""
    call = " · sync call" if spec.sync_only else ""
    price = f"¥{spec.price_yuan:.2f}/image"
    if spec.extend_price_yuan is not None:
        price += f" (¥{spec.extend_price_yuan:.2f} rewriting the prompt)"
    return f"{spec.name} · {price} · {spec.status}{call} · {spec.description}"


def side_bounds(spec: ModelSpec) -> tuple[int, int]:
    """Slider bounds for one side: the side range, or what the area and aspect rules allow."""
    if spec.side_range is not None:
        return spec.side_range
    if spec.pixel_range is not None and spec.aspect_range is not None:
        (lo, hi), (a, b) = spec.pixel_range, spec.aspect_range
        return math.ceil(math.sqrt(lo * a)), math.floor(math.sqrt(hi * b))
    return 256, 2048


def magic_cell(request: GenerationRequest) -> str:
    """The `%%wanx` cell that sends `request` again: option line, then the prompt as the cell body.

    The options come from the parameter table (`_params.option_line`), quoted for IPython's POSIX
    split, in `--flag=value` form so a negative prompt starting with "-" survives; braces in the prompt
    are doubled so the magic's `{name}` filling gives back the prompt as written.
    """
    body = request.prompt.replace("{", "{{").replace("}", "}}")
    return "%%wanx " + option_line(request) + "\n" + body


def code_cell(request: GenerationRequest, axes: Sequence[tuple[str, str, Sequence[Any]]], *, reuse: bool) -> str:
    """The cell a click equals: `magic_cell`, with a sweep's axes ((letter, name, values)) and --reuse."""
    code = magic_cell(request if not any(name == "seed" for _, name, _ in axes) else request.replace(seed=None))
    first, body = code.split("\n", 1)
    for letter, name, values in axes:  # the magic draws the same grid
        first += f" --{letter} " + shlex.quote(f"{name}=" + ",".join(str(v).strip("<>") for v in values))
    return f"{first}{' --reuse' if reuse else ''}\n{body}"
