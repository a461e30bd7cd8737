"""What a resume found: the entries it took over, and its report (what was recovered, what is left, what
is gone for good). `Session.start_resume()` and `Session.resume()` make them."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._exceptions import SyncOutcomeUnknownError, TaskUnfinishedError
from ._models import GenerationResult
from ._run import Outcome
from ._store import JournalEntry

__all__ = ["NEVER_SENT", "ResumeReport", "Takeover", "resume_report"]


@dataclass(frozen=True)
class ResumeReport:
    """What `Session.resume()` recovered, what is left and what is gone for good."""

    recovered: list[GenerationResult]
    unfinished: list[TaskUnfinishedError]  # still not settled (e.g. the service could not be reached)
    ended: list[BaseException]  # the service ended them without images (FAILED, CANCELED), or no task was made
    expired: list[JournalEntry]  # older than the service's 24 h: their images cannot be fetched any more
    never_sent: list[JournalEntry] = field(default_factory=list)  # queued by a run that stopped: now withdrawn
    left_to_live_runs: int = 0  # entries of runs still going (this kernel or another): theirs to finish
    left_to_other_services: int = 0  # sent to another service (base URL) than this session's: left alone
    other_services: tuple[str, ...] = ()

    def text(self) -> str:
        if not (self.recovered or self.unfinished or self.ended or self.expired or self.never_sent
                or self.left_to_other_services):  # fmt: skip
            if self.left_to_live_runs:
                return (f"nothing to resume: {self.left_to_live_runs} request(s) belong to runs still going (in this "
                        "kernel or another), which finish them")
            return "nothing to resume: every task in the journal is finished"
        parts = []
        if self.recovered:
            images = sum(r.saved_images for r in self.recovered)
            parts.append(f"recovered {len(self.recovered)} task(s), {images} image(s) saved")
        if self.ended:
            parts.append(f"{len(self.ended)} ended without images on the service's side (not billed)")
        lost = [e for e in self.unfinished if e.code == SyncOutcomeUnknownError.code]
        pending = [e for e in self.unfinished if e not in lost]
        if pending:
            why = ", ".join(dict.fromkeys(e.code or type(e).__name__ for e in pending))
            parts.append(f"{len(pending)} still unfinished ({why}: run `%wanx resume` again later)")
        if lost:  # no task to look up: no later resume reaches what they made
            parts.append(f"{len(lost)} sync call(s) whose answer was lost: what they made cannot be looked up "
                         "(check the bill in the console)")
        if self.expired:
            ids = ", ".join(e.task_id or e.entry_id for e in self.expired)
            parts.append(f"{len(self.expired)} gone for good (older than the service's 24 h): {ids}")
        if self.never_sent:
            parts.append(f"{len(self.never_sent)} never sent (their run stopped before sending them; not billed): "
                         "run them again to have them")
        if self.left_to_live_runs:
            parts.append(f"{self.left_to_live_runs} left to runs still going (in this kernel or another)")
        if self.left_to_other_services:
            parts.append(f"{self.left_to_other_services} sent to another service ({', '.join(self.other_services)}): "
                         "resume them with its base URL (DASHSCOPE_HTTP_BASE_URL) and key")
        return "; ".join(parts)


@dataclass(frozen=True)
class Takeover:
    """What `Session.start_resume()` found besides the entries it took over."""

    expired: list[JournalEntry]  # marked GONE: older than the service keeps tasks
    never_sent: list[JournalEntry]  # queued by runs that stopped: marked WITHDRAWN
    left_to_live_runs: int  # entries of runs still going: left alone
    left_to_other_services: int = 0  # entries sent to another service: left alone
    other_services: tuple[str, ...] = ()


NEVER_SENT = "never sent: its run stopped (a kernel restart, a crash) before sending it; not billed"


def resume_report(outcomes: list[Outcome], takeover: Takeover) -> ResumeReport:
    """Sort a resume run's outcomes into the report."""
    recovered = [o for o in outcomes if isinstance(o, GenerationResult)]
    unfinished = [o for o in outcomes if isinstance(o, TaskUnfinishedError)]
    for result in recovered:  # recovered, but not all of it: the entry is still open, and the report says so
        left = [im for im in result.images if im.billed and not im.path and not im.gone]
        if left:
            codes = ", ".join(dict.fromkeys(im.download_code or "DownloadFailed" for im in left))
            detail = f"{len(left)} of {result.billed_images} billed image(s) still not saved ({codes})"
            unfinished.append(TaskUnfinishedError(result.task_id, detail, code=left[0].download_code or "DownloadFailed"))
    ended = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, TaskUnfinishedError)]
    return ResumeReport(
        recovered, unfinished, ended, takeover.expired, takeover.never_sent, takeover.left_to_live_runs,
        takeover.left_to_other_services, takeover.other_services,
    )
