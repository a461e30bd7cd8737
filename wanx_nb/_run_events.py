"""What a Run tells its views: the Phase of each request, Progress events, and the RunSummary; and
the run's own record of each request (`Slot`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
from dataclasses import dataclass, field

from ._exceptions import WanxError
from ._models import GenerationResult
from ._registry import get_model, preferred_protocol
from ._request import GenerationRequest

__all__ = ["FINAL_PHASES", "Outcome", "Phase", "Progress", "RunSummary", "Slot", "is_sync", "parse_utc", "utcnow"]

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



@dataclass(slots=True)
class Slot:
    """The run's view of one request (one per request of a batch: kept small)."""

    index: int
    request: GenerationRequest  # as prepared (validated, --reproducible applied); seed may be unset
    notes: tuple[str, ...]
    entry_id: str
    phase: Phase = Phase.QUEUED
    sent: bool = False
    task_id: str | None = None
    started: float = 0.0
    outcome: Outcome | None = None
    billed: int = 0
    saved: int = 0
    withdrawing: bool = False
    store_error: WanxError | None = None  # the first journal write that failed after sending
    # For the provenance record: the request as given (None: `request`; resume reads it from the
    # journal) and the create call's request id (a poll's answer carries its own).
    given: GenerationRequest | None = None
    create_request_id: str | None = None
    answered: bool = False  # a sync call's answer (its image URLs) is in the journal: never "unknown" again
    said_unknown: bool = False  # the service already answered UNKNOWN for this task once (an earlier run)
    worker: asyncio.Task[None] | None = field(default=None, repr=False)


def is_sync(request: GenerationRequest) -> bool:
    """Whether the client sends this request as a synchronous call (a sync-only model: no task id)."""
    try:
        return not preferred_protocol(get_model(request.model)).is_async
    except (KeyError, TypeError):
        return False


def utcnow() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def parse_utc(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
