"""The store's previous API (record_submitted, record_failure, save_result, unfinished_tasks) over the journal.

legacy: removed when the session uses the journal. Until the session records entries itself, these
wrappers keep it working: each task becomes one journal entry, client-side errors no longer finish it,
and a result's images are saved one by one through `Store.save_image`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
import datetime as dt
from typing import Protocol

from ._exceptions import TaskError
from ._journal import EntryState, JournalEntry, utc_iso
from ._models import GenerationResult, ImageResult, Task
from ._provenance import Provenance
from ._registry import get_model
from ._request import GenerationRequest

__all__ = ["LegacyStoreMixin", "UnfinishedTask"]

_FINAL_BY_STATUS = {"FAILED": EntryState.FAILED, "CANCELED": EntryState.CANCELED, "UNKNOWN": EntryState.GONE}


@dataclass(frozen=True)
class UnfinishedTask:
    """A task written ahead whose images are not all saved (legacy view of an unfinished entry)."""

    task_id: str
    request: GenerationRequest
    submitted_at: str


def legacy_service(backend: str) -> str:
    return "emulator" if backend == "emulator" else "dashscope"


class _JournalStore(Protocol):
    """What the mixin uses of the Store it is mixed into (the journal API)."""

    _mine: dict[str, JournalEntry]

    def _legacy_entry(self, task_id: str) -> JournalEntry | None: ...
    def record_submitted(self, task: Task, sent: GenerationRequest, *, backend: str,
                         given: GenerationRequest | None = None, mode: str = "live") -> None: ...  # fmt: skip
    def record(self, entry: JournalEntry) -> None: ...
    def entry(self, entry_id: str) -> JournalEntry: ...
    def find_task(self, task_id: str, service: str | None = None) -> JournalEntry | None: ...
    def unfinished(self, *, max_age_hours: float = 24.0, now: dt.datetime | None = None) -> list[JournalEntry]: ...
    def note_error(self, entry_id: str, code: str | None, message: str) -> None: ...
    def set_billed(self, entry_id: str, billed_images: int) -> None: ...
    def save_image(self, entry_id: str, image: ImageResult, record: Provenance) -> str: ...
    def record_image_failure(self, entry_id: str, index: int, code: str | None, message: str | None) -> None: ...
    def finish(self, entry_id: str, state: EntryState, *, status: str | None = None, code: str | None = None,
               message: str | None = None, result: Provenance | None = None,
               now: dt.datetime | None = None) -> None: ...  # fmt: skip


class LegacyStoreMixin:
    """legacy: removed when the session uses the journal."""

    _mine: dict[str, JournalEntry]

    def _legacy_entry(self: _JournalStore, task_id: str) -> JournalEntry | None:
        # This object's own entry first: another process may hold the same task id (old emulators).
        for entry in reversed(list(self._mine.values())):
            if entry.task_id == task_id:
                return entry
        for entry in self.unfinished(max_age_hours=24 * 365):  # resume: the unfinished one, not a namesake
            if entry.task_id == task_id:
                return entry
        return self.find_task(task_id)

    def record_submitted(self: _JournalStore, task: Task, sent: GenerationRequest, *, backend: str,
                         given: GenerationRequest | None = None, mode: str = "live") -> None:  # fmt: skip
        """legacy: write the task id ahead, the moment the task is created."""
        if any(e.task_id == task.task_id for e in self._mine.values()):
            return
        service = legacy_service(backend)
        entry_id = uuid.uuid4().hex
        if task.task_id is not None and self.find_task(task.task_id, service) is not None:
            # Same id from another process (emulators before unique ids): a service label of its own,
            # so neither record is overwritten.
            service = f"{service}/dup-{entry_id[:8]}"
        now = utc_iso()
        self.record(
            JournalEntry(
                entry_id=entry_id, run_id="legacy", service=service, backend=backend, mode=mode,
                state=EntryState.SUBMITTED, given=given or sent, sent=sent, task_id=task.task_id,
                status=task.status.value, created_at=now, sent_at=now, finished_at=None, request_id=task.request_id,
                code=None, message=None, billed_images=0, saved_images=0, price_yuan=get_model(sent.model).price_yuan,
            )  # fmt: skip
        )

    def record_failure(self: _JournalStore, task_id: str, error: BaseException) -> None:
        """legacy: the service's final FAILED/CANCELED/UNKNOWN finishes the entry; any other error is noted only."""
        entry = self._legacy_entry(task_id)
        if entry is None or entry.state.is_final:
            return
        status = str(getattr(error, "task_status", "") or "")  # a TaskError's own state (`status` is HTTP)
        code = getattr(error, "code", None)
        if isinstance(error, TaskError) and status in _FINAL_BY_STATUS:
            message = getattr(error, "server_message", None) or str(error)
            self.finish(entry.entry_id, _FINAL_BY_STATUS[status], status=status, code=code, message=message)
        else:
            self.note_error(entry.entry_id, code or type(error).__name__, str(error))

    def save_result(self: _JournalStore, result: GenerationResult) -> GenerationResult:
        """legacy: save every image with data (with provenance), note per-image failures, finish the entry."""
        if result.task_id is None:
            raise ValueError("the legacy API saves task results only; a sync call's result goes through a Run")
        entry = self._legacy_entry(result.task_id)
        if entry is None:
            self.record_submitted(result.task, result.request, backend=result.backend)
            entry = self._legacy_entry(result.task_id)
            assert entry is not None  # just recorded, and remembered as this object's own
        result.created_at = result.created_at or utc_iso()
        self.set_billed(entry.entry_id, result.task.image_count)
        record = result.provenance()
        for im in result.images:
            if im.data is not None:
                self.save_image(entry.entry_id, im, record)
            elif not im.ok:
                self.record_image_failure(entry.entry_id, im.index, im.code, im.message)
        if not self.entry(entry.entry_id).state.is_final:
            status = result.task.status.value
            state = _FINAL_BY_STATUS.get(status, EntryState.DONE)
            self.finish(entry.entry_id, state, status=status, code=result.task.code, message=result.task.message,
                        result=result.provenance())  # fmt: skip
        return result

    def unfinished_tasks(self: _JournalStore, *, max_age_hours: float = 24.0) -> list[UnfinishedTask]:
        """legacy: unfinished entries that hold a task id, young enough for the service to know them."""
        return [
            UnfinishedTask(e.task_id, e.request, e.sent_at or e.created_at)
            for e in self.unfinished(max_age_hours=max_age_hours)
            if e.task_id
        ]
