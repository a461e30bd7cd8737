"""What a Run tells its views: the Phase of each request, Progress events, and the RunSummary."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ._models import GenerationResult

__all__ = ["FINAL_PHASES", "Outcome", "Phase", "Progress", "RunSummary"]

Outcome = GenerationResult | BaseException


class Phase(str, enum.Enum):
    """Where one request of a run is, as its progress events say."""

    QUEUED = "queued"  # journaled, waiting for a rate or concurrency slot: nothing sent yet
    SENDING = "sending"  # the create is on the wire
    PENDING = "pending"  # the service queued the task
    RUNNING = "running"
    DOWNLOADING = "downloading"
    DONE = "done"  # every billed image saved
    FAILED = "failed"  # the service ended the task without images, or refused the create
    CANCELED = "canceled"
    WITHDRAWN = "withdrawn"  # never sent, never billed
    UNFINISHED = "unfinished"  # a client-side error: journaled, `%wanx resume` saves it later
    REPLAYED = "replayed"
    REUSED = "reused"  # an earlier run made it: settled from the store, not sent (`reuse`)

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        return self in FINAL_PHASES


FINAL_PHASES = frozenset(
    {Phase.DONE, Phase.FAILED, Phase.CANCELED, Phase.WITHDRAWN, Phase.UNFINISHED, Phase.REPLAYED, Phase.REUSED}
)


@dataclass(frozen=True)
class Progress:
    """One progress event: request `index` of the run reached `phase` (sent from the background loop)."""

    index: int
    model: str
    phase: Phase
    task_id: str | None = None
    elapsed: float = 0.0

    @property
    def label(self) -> str:
        tid = f" {self.task_id[:8]}" if self.task_id else ""
        return f"#{self.index} {self.model}{tid}: {self.phase.value} {self.elapsed:.1f}s"


@dataclass(frozen=True)
class RunSummary:
    """What a run did, and what (if anything) is left for resume."""

    requests: int
    phases: dict[str, int]
    billed_images: int
    saved_images: int
    cost_yuan: float
    unfinished: tuple[str, ...]  # task ids (or entry ids) that resume will finish
    canceled: tuple[str, ...] = ()
    still_running: tuple[str, ...] = ()

    @property
    def recovery(self) -> str | None:
        """The one documented recovery, when something is left to recover."""
        if not self.unfinished:
            return None
        return (
            f"{len(self.unfinished)} task(s) are kept in the journal; `%wanx resume` (or `Session.resume()`, "
            "`wanx-nb resume`) saves their images within 24 h without paying again"
        )

    def text(self) -> str:
        counts = ", ".join(f"{n} {phase}" for phase, n in self.phases.items() if n)
        line = f"{self.requests} request(s): {counts or 'nothing ran'}; billed {self.billed_images} image(s)"
        line += f" (¥{self.cost_yuan:.2f}), saved {self.saved_images}"
        if self.canceled:
            line += f"; canceled PENDING {', '.join(self.canceled)}"
        if self.still_running:
            line += f"; still running on the service (will be billed): {', '.join(self.still_running)}"
        if self.recovery:
            line += f". {self.recovery}"
        return line

