"""The steps of one request of a Run, from QUEUED to its outcome (the background loop's side).

`RequestSteps` is the half of `Run` that talks to the client and the journal: every journal write after
the create was sent goes through `_write`, which never lets a store failure stop the run; every request
ends with exactly one outcome (`_set_outcome`), whatever happens (`_guarded`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec

from ._exceptions import (
    APIStatusError,
    SubmitOutcomeUnknownError,
    StoreError,
    SyncOutcomeUnknownError,
    TaskCanceledError,
    TaskFailedError,
    TaskNotCreatedError,
    TaskUnfinishedError,
    TaskUnknownError,
    WanxError,
)
from ._models import GenerationResult, Task, TaskStatus
from ._protocol import image_results
from ._request import GenerationRequest
from ._run_events import Outcome, Phase, Progress, Slot, utcnow
from ._run_events import is_sync as _is_sync
from ._run_room import ImageRoom
from ._store import EntryState
from ._store_db import StoreFailure

if TYPE_CHECKING:
    from ._client import AsyncWanxClient
    from ._reconcile import Reconciliation
    from ._store import Store

__all__ = ["RequestSteps", "Slot", "utcnow"]

P = ParamSpec("P")




class RequestSteps:
    """The per-request work of a Run (mixed into `Run`, which owns these attributes)."""

    _store: Store
    _client: AsyncWanxClient | None
    _service: str
    _slots: list[Slot]
    _clock: Callable[[], float]
    _on_progress: Callable[[Progress], None] | None
    _on_result: Callable[[int, Outcome], None] | None
    _on_billed: Callable[[float], None] | None
    _image_room: ImageRoom

    async def _guarded(self, slot: Slot, work: Coroutine[Any, Any, None]) -> None:
        """Whatever goes wrong in here, the request still gets an outcome that says what to do."""
        try:
            await work
        except asyncio.CancelledError:
            self._cancelled(slot)
            if not slot.withdrawing:
                raise  # the run was stopped; a withdrawn request just ends
        except Exception as exc:  # noqa: BLE001 - a bug or an unforeseen error must not lose the request
            if slot.sent:
                error = TaskUnfinishedError(slot.task_id, f"{type(exc).__name__}: {exc}")
                error.__cause__ = exc
                self._set_outcome(slot, Phase.UNFINISHED, error)
            else:
                self._set_outcome(slot, Phase.FAILED, exc)

    def _write(
        self, slot: Slot, write: Callable[Concatenate[str, P], object], *args: P.args, **kwargs: P.kwargs
    ) -> bool:
        """A journal write (a Store method taking the entry id first) after the create was sent. It must not
        stop the run: if the store fails (a full disk, a store deleted under us) the request's outcome says so
        and names the recovery."""
        try:
            write(slot.entry_id, *args, **kwargs)
        except WanxError as exc:
            slot.store_error = slot.store_error or exc
            return False
        return True

    def _known_task_ids(self) -> set[str]:
        try:
            return self._store.known_task_ids(self._service)
        except WanxError:
            return set()  # reconcile then matches more loosely; it still never re-sends

    def _refuse_if_the_store_failed(self) -> None:
        """Before a create: a store that already failed this run (a full disk...) would only be paid into."""
        failed = next((s.store_error for s in self._slots if isinstance(s.store_error, StoreFailure)), None)
        if failed is not None:
            raise StoreError(
                str(self._store.root), f"not sent: the store failed after an earlier request of this run ({_trouble(failed)})",
                "this request was not sent and not billed: free the store, `%wanx resume` what was sent, then run it",
            )

    def _journal_answer(self, slot: Slot, task: Task, sent: GenerationRequest) -> None:
        """A sync call answered: its bill and image URLs go in the journal before anything is downloaded,
        so a stop, a crash or a failed download leaves them to resume (no task can be asked again)."""
        assert self._client is not None
        backend = "emulator" if task.emulator or self._client.backend == "emulator" else self._client.backend
        answer = GenerationResult(request=sent, task=task, images=image_results(task, sent), backend=backend,
                                  created_at=utcnow(), given=slot.given or slot.request)  # fmt: skip
        slot.billed = answer.billed_images
        slot.answered = self._write(slot, self._store.set_billed, slot.billed, result=answer.provenance())

    async def _drive(self, slot: Slot) -> None:
        """One request from QUEUED to its outcome."""
        assert self._client is not None

        sent_as: list[GenerationRequest] = []

        async def sending(sent: GenerationRequest) -> None:
            self._refuse_if_the_store_failed()
            self._store.mark_sending(slot.entry_id, sent, utcnow())
            slot.sent = True
            sent_as.append(sent)
            self._emit(slot, Phase.SENDING)

        def submitted(task: Task, sent: GenerationRequest) -> None:
            assert task.task_id is not None  # only an async create reports a task (sync calls have none)
            slot.task_id, slot.create_request_id = task.task_id, task.request_id
            self._write(
                slot, self._store.attach_task, task.task_id, status=task.status.value, request_id=task.request_id
            )
            self._emit(slot, Phase.PENDING)

        async with self._image_room.place() as place:

            async def answered(task: Task) -> None:
                if task.task_id is None and sent_as:  # a sync call's answer: its URLs are all there is to it
                    self._journal_answer(slot, task, sent_as[-1])
                await place.take()

            try:
                result = await self._client.generate(
                    slot.request, on_sending=sending, on_submitted=submitted, on_status=lambda t: self._polled(slot, t),
                    timeout=float("inf"), before_download=answered,
                )
            except SyncOutcomeUnknownError as exc:
                # No task id to look up and no task list holds sync calls: say so, never send it again.
                self._write(slot, self._store.mark_outcome_unknown, exc.code, str(exc))
                self._set_outcome(slot, Phase.UNFINISHED, exc)
                return
            except SubmitOutcomeUnknownError as exc:
                await self._reconcile(slot, exc.request, (exc.sent_after, exc.sent_before), exc.code, str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - every error becomes this request's outcome
                self._failed(slot, exc)
                return
            await self._save(slot, result)

    async def _collect(self, slot: Slot, sent: GenerationRequest) -> None:
        assert self._client is not None and slot.task_id is not None
        self._emit(slot, Phase.PENDING)
        async with self._image_room.place() as place:
            try:
                result = await self._client.collect(
                    slot.task_id, sent, on_status=lambda t: self._polled(slot, t), timeout=float("inf"),
                    before_download=place.take,
                )
            except Exception as exc:  # noqa: BLE001
                self._failed(slot, exc)
                return
            await self._save(slot, result)

    async def _reconcile(
        self, slot: Slot, sent: GenerationRequest, window: tuple[dt.datetime, dt.datetime], code: str | None, why: str
    ) -> None:
        """A create that may have made a task: find it in the service's list, never re-send it."""
        assert self._client is not None
        self._write(slot, self._store.mark_outcome_unknown, code, why)
        found, reason = await self._find_created(sent, window)
        if found is not None and found.decided and found.task is not None and found.task.task_id is not None:
            slot.task_id = found.task.task_id
            if not found.prompt_named:  # the provenance says how little ties this task to the request
                slot.notes = (*slot.notes, f"adopted after the create's answer was lost: {reason}")
            self._write(
                slot, self._store.attach_task, found.task.task_id, status=found.task.status.value,
                request_id=found.task.request_id,
            )
            await self._collect(slot, sent)
            return
        if found is not None and found.decided:
            message = f"{why} The service's task list shows that no task was created ({reason}): nothing was billed."
            self._write(slot, self._store.mark_rejected, code, message)
            self._set_outcome(slot, Phase.FAILED, TaskNotCreatedError(message))
            return
        error = TaskUnfinishedError(None, f"{why} The task list could not settle whether a task exists: {reason}.")
        self._set_outcome(slot, Phase.UNFINISHED, error)

    async def _find_created(
        self, sent: GenerationRequest, window: tuple[dt.datetime, dt.datetime]
    ) -> tuple[Reconciliation | None, str]:
        """The service's answer on what a lost create made, and why. Tasks the journal knows are not
        candidates; one another request took while this one waited on its candidates is not either."""
        assert self._client is not None
        for _ in range(2):
            try:
                found = await self._client.reconcile(
                    sent, sent_after=window[0], sent_before=window[1], exclude=self._known_task_ids()
                )
            except WanxError as exc:
                return None, f"the task list could not be read ({exc.code or type(exc).__name__})"
            if found.task is None or found.task.task_id not in self._known_task_ids():
                return found, found.reason
        return None, "another request of this store took its one candidate task meanwhile"

    def _polled(self, slot: Slot, task: Task) -> None:
        self._write(slot, self._store.update_status, task.status.value)
        # A succeeded task's images are fetched next: it is downloading from now on, not once they are here.
        phase = _PHASE_OF_STATUS.get(task.status)
        if phase is not None and phase is not slot.phase:
            self._emit(slot, phase)

    async def _save(self, slot: Slot, result: GenerationResult) -> None:
        """Save every billed image, then finish the entry (or leave it COLLECTING for resume)."""
        if slot.phase is not Phase.DOWNLOADING:
            self._emit(slot, Phase.DOWNLOADING)
        result.warnings[:0] = [n for n in slot.notes if n not in result.warnings]
        result.given = slot.given or slot.request
        result.create_request_id = slot.create_request_id
        slot.billed = result.billed_images
        self._write(slot, self._store.set_billed, slot.billed)
        if self._on_billed is not None:
            self._on_billed(result.cost_yuan)
        record = result.provenance()
        for image in result.images:
            if image.data is not None:
                saved = await asyncio.to_thread(self._write, slot, self._store.save_image, image, record)
                if not saved:  # a full disk, a vanished store: the entry stays COLLECTING for resume
                    image.download_error, image.download_code = _trouble(slot.store_error), "StoreError"
            elif image.code is not None and image.download_code is None:
                self._write(slot, self._store.record_image_failure, image.index, image.code, image.message)
        slot.saved = sum(1 for im in result.images if im.path)
        missing = [im for im in result.images if im.billed and not im.path]
        if missing and all(im.gone for im in missing):
            self._write(
                slot, self._store.finish, EntryState.GONE, status=result.task.status.value, code="ImageExpired",
                message=f"{len(missing)} billed image(s) expired before they could be saved", result=result.provenance(),
                billed_images=slot.billed,
            )
            result.warnings.append(f"{len(missing)} of {slot.billed} billed image(s) expired before they could be "
                                   "saved (result URLs live 24 h): the service no longer serves them")  # fmt: skip
        elif missing:
            details = "; ".join(dict.fromkeys(im.download_error or "not downloaded" for im in missing))
            self._write(slot, self._store.note_error, missing[0].download_code, details)  # the whole story, for history
            reasons = ", ".join(dict.fromkeys(im.download_code or "DownloadFailed" for im in missing))
            self._write(
                slot, self._store.finish, EntryState.DONE, status=result.task.status.value, result=result.provenance(),
                billed_images=slot.billed,
            )
            first = f"free the store ({_trouble(slot.store_error)}), then " if slot.store_error else ""
            result.warnings.append(
                f"{len(missing)} of {slot.billed} billed image(s) are not saved yet ({reasons}); {first}"
                "`%wanx resume` downloads them while their URLs live (24 h), without paying again"
            )
            self._set_outcome(slot, Phase.UNFINISHED, result)
            return
        else:
            self._write(
                slot, self._store.finish, EntryState.DONE, status=result.task.status.value, result=result.provenance(),
                billed_images=slot.billed,
            )
        self._set_outcome(slot, Phase.DONE, result)

    def _failed(self, slot: Slot, exc: BaseException) -> None:
        """An error from generate/collect: finish the entry only if the service had the last word."""
        if isinstance(exc, TaskFailedError):
            self._write(
                slot, self._store.finish, EntryState.FAILED, status="FAILED", code=exc.code, message=exc.server_message
            )
            self._set_outcome(slot, Phase.FAILED, exc)
        elif isinstance(exc, TaskCanceledError):
            self._write(
                slot, self._store.finish, EntryState.CANCELED, status="CANCELED", code=exc.code,
                message=exc.server_message,
            )
            self._set_outcome(slot, Phase.CANCELED, exc)
        elif isinstance(exc, TaskUnknownError) and slot.said_unknown:  # asked again later: still unknown
            self._write(
                slot, self._store.finish, EntryState.GONE, status="UNKNOWN", code=exc.code, message=exc.server_message
            )
            self._set_outcome(slot, Phase.FAILED, exc)
        elif isinstance(exc, TaskUnknownError):
            # The service made this task (it gave us its id) less than 24 h ago: one UNKNOWN may pass. The
            # entry stays open; a resume asks again, and a second UNKNOWN then ends it (GONE).
            why = "the service answered UNKNOWN for a task it created; that may pass"
            self._write(slot, self._store.note_error, "TaskUnknown", f"{why}: {exc}")
            self._set_outcome(slot, Phase.UNFINISHED, TaskUnfinishedError(slot.task_id, why, code="TaskUnknown"))
        elif slot.answered:  # a sync call's answer is in the journal: resume downloads what is missing
            self._keep_open(slot, exc)
        elif slot.task_id is None and (not slot.sent or getattr(exc, "sent", None) is False):
            # Nothing reached the service (validation, upload, the store; or no connection could be made,
            # on every try: a submit is retried only then): the entry never was a request.
            self._write(slot, self._store.mark_rejected, getattr(exc, "code", None), str(exc))
            self._set_outcome(slot, Phase.FAILED, exc)
        elif slot.task_id is None and isinstance(exc, APIStatusError):
            self._write(slot, self._store.mark_rejected, exc.code, str(exc))  # the service refused the create
            self._set_outcome(slot, Phase.FAILED, exc)
        elif slot.task_id is None:
            # Sent, no task id, not a refusal: treat as an unknown outcome (resume reconciles it).
            self._write(slot, self._store.mark_outcome_unknown, getattr(exc, "code", None), str(exc))
            self._set_outcome(slot, Phase.UNFINISHED, TaskUnfinishedError(None, str(exc)))
        else:
            self._keep_open(slot, exc)

    def _keep_open(self, slot: Slot, exc: BaseException) -> None:
        """A client-side error after the service made the images: noted, the entry left for resume."""
        code = getattr(exc, "code", None)
        self._write(slot, self._store.note_error, code, str(exc))
        unfinished = TaskUnfinishedError(slot.task_id, str(exc), code=code)
        unfinished.__cause__ = exc
        self._set_outcome(slot, Phase.UNFINISHED, unfinished)

    def _cancelled(self, slot: Slot) -> None:
        """The run was stopped (or this request withdrawn) while this request was in flight."""
        if slot.outcome is not None:
            return
        if not slot.sent:
            self._write(slot, self._store.mark_withdrawn)
            withdrawn = TaskCanceledError("(not sent)", "CANCELED", "Withdrawn", "withdrawn before it was sent")
            self._set_outcome(slot, Phase.WITHDRAWN, withdrawn)
        elif slot.task_id is None and slot.answered:
            why = "stopped while a synchronous call's billed images downloaded; its answer (their URLs) is journaled"
            self._write(slot, self._store.note_error, "Interrupted", why)
            self._set_outcome(slot, Phase.UNFINISHED, TaskUnfinishedError(None, why, code="Interrupted"))
        elif slot.task_id is None and _is_sync(slot.request):
            why = ("stopped while a synchronous call was on the wire: billed or not is unknown, and a sync call "
                   "cannot be looked up; it is not sent again")  # fmt: skip
            self._write(slot, self._store.mark_outcome_unknown, "Interrupted", why)
            self._set_outcome(slot, Phase.UNFINISHED, TaskUnfinishedError(None, why, code=SyncOutcomeUnknownError.code))
        elif slot.task_id is None:
            self._write(
                slot, self._store.mark_outcome_unknown, "Interrupted", "stopped while the create was on the wire"
            )
            self._set_outcome(slot, Phase.UNFINISHED, TaskUnfinishedError(None, "stopped while the create was on the wire"))
        else:
            self._write(slot, self._store.note_error, "Interrupted", "the run stopped waiting for this task")
            error = TaskUnfinishedError(slot.task_id, "the run stopped waiting for this task", code="Interrupted")
            self._set_outcome(slot, Phase.UNFINISHED, error)

    def _set_outcome(self, slot: Slot, phase: Phase, outcome: Outcome) -> None:
        if slot.outcome is not None:
            return  # settled already (a cancel the service accepted): one outcome per request
        if slot.store_error is not None and slot.sent and phase is not Phase.UNFINISHED:
            # The journal missed part of this request's story: keep it open for resume, and say why.
            detail = f"the store could not record it ({_trouble(slot.store_error)})"
            if isinstance(outcome, GenerationResult):
                outcome.warnings.append(f"{detail}; free the store, then `%wanx resume` saves what is missing")
            else:
                error = TaskUnfinishedError(slot.task_id, detail)
                error.__cause__ = outcome if isinstance(outcome, BaseException) else None
                outcome, phase = error, Phase.UNFINISHED
        slot.outcome = outcome
        self._emit(slot, phase)
        if self._on_result is not None:
            self._on_result(slot.index, outcome)

    def _emit(self, slot: Slot, phase: Phase, *, elapsed: float | None = None) -> None:
        slot.phase = phase
        if self._on_progress is not None:
            spent = self._clock() - slot.started if elapsed is None else elapsed
            self._on_progress(Progress(slot.index, slot.request.model, phase, slot.task_id, spent))




_PHASE_OF_STATUS = {
    TaskStatus.PENDING: Phase.PENDING, TaskStatus.RUNNING: Phase.RUNNING, TaskStatus.SUCCEEDED: Phase.DOWNLOADING
}


def _trouble(error: WanxError | None) -> str:
    """What went wrong with the store. Its remedy is said before anything is sent ("try again", "use another
    store"): after a create only a rebuild of a damaged index is, which comes before the resume."""
    problem, remedy = getattr(error, "problem", None) or str(error), str(getattr(error, "remedy", ""))
    return f"{problem}; {remedy}" if "rebuild" in remedy else problem
