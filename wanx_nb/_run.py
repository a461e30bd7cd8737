"""A Run: one batch of requests through the session, from the journal to the saved images.

Every surface (the magic, the panel, compare, the CLI, resume) is a view over a Run, and the Run is
the one place that waits, ticks, times out and handles an interrupt. Its rules, in order of the life
of one request:

1. `Session.start()` validates and budget-checks every request and checks the store, then writes a
   journal entry per request (QUEUED) *before anything is sent*.
2. Right before the create goes out the entry becomes SENDING; the task id is attached the moment the
   service returns it (SUBMITTED). A create whose outcome is unknown is reconciled against the
   service's task list; if that cannot decide, the entry stays OUTCOME_UNKNOWN for resume. It is never
   re-sent.
3. Client-side errors (poll errors, our own deadline, an interrupt, a failed download) never finish an
   entry: it stays SUBMITTED or COLLECTING and resume saves its images later without paying again.
   Only the service's final word (FAILED, CANCELED, UNKNOWN) or "every billed image saved" finishes one.

A run touches only its own tasks: cancel() and withdraw() never reach another surface's requests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import enum
import time
import uuid
from collections.abc import Callable, Coroutine, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import _loop
from ._exceptions import (
    APIStatusError,
    RunInterruptedError,
    RunTimeoutError,
    SubmitOutcomeUnknownError,
    TaskCanceledError,
    TaskError,
    TaskFailedError,
    TaskNotCreatedError,
    TaskUnfinishedError,
    TaskUnknownError,
    UnsupportedOperationError,
    WanxError,
)
from ._models import GenerationResult, Task, TaskStatus
from ._registry import get_model
from ._request import GenerationRequest
from ._store import EntryState, JournalEntry

if TYPE_CHECKING:
    from ._client import AsyncWanxClient
    from ._store import Store

__all__ = ["Outcome", "Phase", "Progress", "Run", "RunSummary"]

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

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        return self in _FINAL_PHASES


_SKEW = dt.timedelta(minutes=3)
_FINAL_PHASES = frozenset({Phase.DONE, Phase.FAILED, Phase.CANCELED, Phase.WITHDRAWN, Phase.UNFINISHED, Phase.REPLAYED})


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


@dataclass
class _Slot:
    """The run's view of one request."""

    index: int
    request: GenerationRequest  # as prepared (validated, --reproducible applied); seed may be unset
    notes: list[str]
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
    worker: asyncio.Task[Any] | None = field(default=None, repr=False)


class Run:
    """One batch of requests: start it with `Session.start(requests)`.

    - `result(timeout=None)` blocks (Ctrl-C cancels what the service can still cancel and keeps the
      rest for resume); `await run` from a notebook's top level; `done()`.
    - `cancel()` cancels this run's PENDING tasks; `withdraw()` drops its requests not sent yet.
    - `summary()`: counts, what was billed and saved, and the recovery if anything is unfinished.
    - `outcomes`: one GenerationResult or exception per request, in order (None while running).
    """

    def __init__(
        self,
        *,
        store: Store,
        client: AsyncWanxClient | None,
        mode: str,
        backend: str,
        service: str,
        on_progress: Callable[[Progress], None] | None = None,
        on_result: Callable[[int, Outcome], None] | None = None,
        on_billed: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_id = uuid.uuid4().hex
        self._store = store
        self._client = client
        self._mode = mode
        self._backend = backend
        self._service = service
        self._on_progress = on_progress
        self._on_result = on_result
        self._on_billed = on_billed
        self._clock = clock
        self._slots: list[_Slot] = []
        self._future: concurrent.futures.Future[Any] | None = None
        self._canceled: list[str] = []
        self._still_running: list[str] = []

    # ---- building (Session only) ---------------------------------------------------------------

    def _journal(self, prepared: Sequence[tuple[GenerationRequest, list[str]]]) -> None:
        """Write one QUEUED entry per request: durable before anything is sent."""
        now = _utcnow()
        for i, (request, notes) in enumerate(prepared):
            slot = _Slot(i, request, list(notes), uuid.uuid4().hex)
            self._store.record(
                JournalEntry(
                    entry_id=slot.entry_id, run_id=self.run_id, service=self._service, backend=self._backend,
                    mode=self._mode, state=EntryState.QUEUED, given=request, sent=None, task_id=None, status=None,
                    created_at=now, sent_at=None, finished_at=None, request_id=None, code=None, message=None,
                    billed_images=0, saved_images=0, price_yuan=get_model(request.model).price_yuan,
                )
            )
            self._slots.append(slot)

    def _adopt(self, entries: Sequence[JournalEntry]) -> None:
        """Resume: take over journal entries an earlier run left unfinished."""
        for i, entry in enumerate(entries):
            request = entry.sent or entry.given
            slot = _Slot(i, request, [], entry.entry_id, phase=Phase.PENDING, sent=True, task_id=entry.task_id)
            slot.saved = entry.saved_images
            self._slots.append(slot)

    def _finish_replayed(self, outcomes: Sequence[Outcome]) -> None:
        for i, outcome in enumerate(outcomes):
            slot = _Slot(i, getattr(outcome, "request", None) or GenerationRequest(""), [], "", phase=Phase.REPLAYED)
            slot.outcome = outcome
            self._slots.append(slot)
            if isinstance(outcome, TaskError):
                slot.task_id = outcome.task_id
            elif isinstance(outcome, GenerationResult):
                slot.task_id = outcome.task_id
            elapsed = outcome.elapsed if isinstance(outcome, GenerationResult) else 0.0
            self._emit(slot, Phase.REPLAYED, elapsed=elapsed)
            if self._on_result:
                self._on_result(i, outcome)
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        done.set_result(None)
        self._future = done

    def _launch(self, resume: bool = False) -> None:
        self._future = _loop.submit(self._main(resume))

    # ---- the public surface --------------------------------------------------------------------

    @property
    def requests(self) -> tuple[GenerationRequest, ...]:
        return tuple(s.request for s in self._slots)

    @property
    def outcomes(self) -> list[Outcome | None]:
        return [s.outcome for s in self._slots]

    @property
    def notes(self) -> list[list[str]]:
        return [list(s.notes) for s in self._slots]

    def phases(self) -> list[Phase]:
        return [s.phase for s in self._slots]

    def done(self) -> bool:
        return self._future is not None and self._future.done()

    def add_done_callback(self, callback: Callable[[Run], None]) -> None:
        """Call `callback(run)` once every request has its outcome (on the background thread)."""
        assert self._future is not None, "the run was not started"
        self._future.add_done_callback(lambda _: callback(self))

    def result(
        self,
        timeout: float | None = None,
        *,
        on_tick: Callable[[], None] | None = None,
        tick: float = 0.2,
    ) -> list[Outcome]:
        """Block until every request has its outcome; returns them in order.

        `on_tick` runs on the calling thread every `tick` seconds (live displays). Past `timeout`
        seconds (on the run's clock) the run stops waiting: queued requests are withdrawn, PENDING
        tasks canceled, running ones kept for resume, and RunTimeoutError says which. Ctrl-C (a kernel
        interrupt) does the same and raises RunInterruptedError (a KeyboardInterrupt).
        """
        assert self._future is not None, "the run was not started"
        deadline = None if timeout is None else self._clock() + timeout
        try:
            while not self._future.done():
                concurrent.futures.wait([self._future], timeout=tick)
                if on_tick is not None:
                    on_tick()
                if deadline is not None and self._clock() >= deadline and not self._future.done():
                    self._stop()
                    raise RunTimeoutError(timeout or 0.0, self.summary())
        except KeyboardInterrupt:
            self._stop()
            raise RunInterruptedError(self.summary()) from None
        self._future.result()  # a bug in the run itself surfaces here
        return [s.outcome for s in self._slots]  # type: ignore[misc]

    def __await__(self) -> Generator[Any, None, list[Outcome]]:
        return self._await().__await__()

    async def _await(self) -> list[Outcome]:
        assert self._future is not None, "the run was not started"
        try:
            await asyncio.wrap_future(self._future)
        except asyncio.CancelledError:
            await asyncio.to_thread(self._stop)
            raise
        return [s.outcome for s in self._slots]  # type: ignore[misc]

    def withdraw(self) -> int:
        """Drop this run's requests not sent yet (never billed). Returns how many."""
        if self.done():
            return 0
        return _loop.run_sync(self._withdraw())

    def cancel(self) -> tuple[list[str], list[str]]:
        """Cancel this run's PENDING tasks. Returns (canceled task ids, task ids still running)."""
        if self.done():
            return [], []
        return _loop.run_sync(self._cancel())

    def summary(self) -> RunSummary:
        phases: dict[str, int] = {}
        for s in self._slots:
            phases[s.phase.value] = phases.get(s.phase.value, 0) + 1
        billed = sum(s.billed for s in self._slots)
        cost = sum(s.billed * get_model(s.request.model).price_yuan for s in self._slots if s.request.prompt or s.billed)
        unfinished = tuple(
            s.task_id or s.entry_id for s in self._slots if s.phase in (Phase.UNFINISHED,) or (s.sent and not s.phase.is_final)
        )
        return RunSummary(
            requests=len(self._slots), phases=phases, billed_images=billed, saved_images=sum(s.saved for s in self._slots),
            cost_yuan=round(cost, 4), unfinished=unfinished, canceled=tuple(self._canceled),
            still_running=tuple(self._still_running),
        )

    def __repr__(self) -> str:
        state = "done" if self.done() else "running"
        return f"<Run {len(self._slots)} request(s) {state}>"

    # ---- stopping --------------------------------------------------------------------------------

    def _stop(self) -> None:
        """Stop waiting (timeout, interrupt): withdraw, cancel PENDING, keep the rest for resume."""
        if self._future is None or self._future.done():
            return
        try:
            _loop.run_sync(self._stop_async())
        except KeyboardInterrupt:  # a second Ctrl-C while stopping: stop without the cancels
            self._future.cancel()

    async def _stop_async(self) -> None:
        await self._withdraw()
        await self._cancel()
        workers = [s.worker for s in self._slots if s.worker is not None and not s.worker.done()]
        for worker in workers:
            worker.cancel()
        if workers:
            await asyncio.wait(workers)

    async def _withdraw(self) -> int:
        count = 0
        for slot in self._slots:
            if slot.phase is Phase.QUEUED and slot.worker is not None and not slot.worker.done():
                slot.withdrawing = True
                slot.worker.cancel()  # a create already under way still completes and is journaled
                count += 1
        return count

    async def _cancel(self) -> tuple[list[str], list[str]]:
        assert self._client is not None
        canceled, running = [], []
        for slot in self._slots:
            if slot.task_id is None or slot.phase.is_final or slot.phase is Phase.DOWNLOADING:
                continue
            try:
                await self._client.cancel(slot.task_id)
            except UnsupportedOperationError:
                running.append(slot.task_id)  # already running: it will finish and be billed
            except WanxError:
                running.append(slot.task_id)
            else:  # the service accepted: the task ends CANCELED, unbilled
                canceled.append(slot.task_id)
                self._write(slot, "finish", EntryState.CANCELED, status="CANCELED", message="canceled while PENDING")
                error = TaskCanceledError(slot.task_id, "CANCELED", "Canceled", "canceled while PENDING (not billed)")
                self._set_outcome(slot, Phase.CANCELED, error)
        self._canceled += [c for c in canceled if c not in self._canceled]
        self._still_running = [r for r in running]
        return canceled, running

    # ---- the work (background loop) ---------------------------------------------------------------

    async def _main(self, resume: bool) -> None:
        for slot in self._slots:
            slot.started = self._clock()
            coro = self._resume_one(slot) if resume else self._drive(slot)
            slot.worker = asyncio.ensure_future(self._guarded(slot, coro))
        await asyncio.gather(*(s.worker for s in self._slots if s.worker is not None), return_exceptions=True)

    async def _guarded(self, slot: _Slot, work: Coroutine[Any, Any, None]) -> None:
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

    def _write(self, slot: _Slot, method: str, *args: Any, **kwargs: Any) -> bool:
        """A journal write after the create was sent. It must not stop the run: if the store fails
        (a full disk, a store deleted under us) the request's outcome says so and names the recovery."""
        try:
            getattr(self._store, method)(slot.entry_id, *args, **kwargs)
        except WanxError as exc:
            slot.store_error = slot.store_error or exc
            return False
        return True

    def _known_task_ids(self) -> set[str]:
        try:
            return self._store.known_task_ids(self._service)
        except WanxError:
            return set()  # reconcile then matches more loosely; it still never re-sends

    async def _drive(self, slot: _Slot) -> None:
        """One request from QUEUED to its outcome."""
        assert self._client is not None
        self._emit(slot, Phase.QUEUED)

        async def sending(sent: GenerationRequest) -> None:
            self._store.mark_sending(slot.entry_id, sent, _utcnow())
            slot.sent = True
            self._emit(slot, Phase.SENDING)

        def submitted(task: Task, sent: GenerationRequest) -> None:
            slot.task_id = task.task_id
            self._write(slot, "attach_task", task.task_id, status=task.status.value, request_id=task.request_id)
            self._emit(slot, Phase.PENDING)

        try:
            result = await self._client.generate(
                slot.request, on_sending=sending, on_submitted=submitted, on_status=lambda t: self._polled(slot, t),
                timeout=float("inf"),
            )
        except SubmitOutcomeUnknownError as exc:
            await self._reconcile(slot, exc.request, (exc.sent_after, exc.sent_before), exc.code, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - every error becomes this request's outcome
            self._failed(slot, exc)
            return
        await self._save(slot, result)

    async def _resume_one(self, slot: _Slot) -> None:
        """An entry an earlier run left unfinished: reconcile it or collect it, then save."""
        assert self._client is not None
        entry = self._store.entry(slot.entry_id)
        if entry.task_id is None:
            request = entry.sent or entry.given
            sent_at = _parse_utc(entry.sent_at) or _parse_utc(entry.created_at) or dt.datetime.now(dt.timezone.utc)
            # The wall time we wrote before sending brackets the create, give or take the clocks' skew.
            window = (sent_at - _SKEW, sent_at + _SKEW)
            await self._reconcile(slot, request, window, entry.code, entry.message or "the create's outcome is unknown")
            return
        await self._collect(slot, entry.sent or entry.given)

    async def _collect(self, slot: _Slot, sent: GenerationRequest) -> None:
        assert self._client is not None and slot.task_id is not None
        self._emit(slot, Phase.PENDING)
        try:
            result = await self._client.collect(
                slot.task_id, sent, on_status=lambda t: self._polled(slot, t), timeout=float("inf")
            )
        except Exception as exc:  # noqa: BLE001
            self._failed(slot, exc)
            return
        await self._save(slot, result)

    async def _reconcile(
        self, slot: _Slot, sent: GenerationRequest, window: tuple[dt.datetime, dt.datetime], code: str | None, why: str
    ) -> None:
        """A create that may have made a task: find it in the service's list, never re-send it."""
        assert self._client is not None
        self._write(slot, "mark_outcome_unknown", code, why)
        try:
            found = await self._client.reconcile(
                sent, sent_after=window[0], sent_before=window[1], exclude=self._known_task_ids()
            )
        except WanxError as exc:
            found = None
            reason = f"the task list could not be read ({exc.code or type(exc).__name__})"
        else:
            reason = found.reason
        if found is not None and found.decided and found.task is not None:
            slot.task_id = found.task.task_id
            self._write(
                slot, "attach_task", found.task.task_id, status=found.task.status.value, request_id=found.task.request_id
            )
            await self._collect(slot, sent)
            return
        if found is not None and found.decided:
            message = f"{why} The service's task list shows that no task was created ({reason}): nothing was billed."
            self._write(slot, "mark_rejected", code, message)
            self._set_outcome(slot, Phase.FAILED, TaskNotCreatedError(message))
            return
        error = TaskUnfinishedError(None, f"{why} The task list could not settle whether a task exists: {reason}.")
        self._set_outcome(slot, Phase.UNFINISHED, error)

    def _polled(self, slot: _Slot, task: Task) -> None:
        self._write(slot, "update_status", task.status.value)
        phase = {TaskStatus.PENDING: Phase.PENDING, TaskStatus.RUNNING: Phase.RUNNING}.get(task.status)
        if phase is not None and phase is not slot.phase:
            self._emit(slot, phase)

    async def _save(self, slot: _Slot, result: GenerationResult) -> None:
        """Save every billed image, then finish the entry (or leave it COLLECTING for resume)."""
        self._emit(slot, Phase.DOWNLOADING)
        result.warnings[:0] = [n for n in slot.notes if n not in result.warnings]
        slot.billed = result.billed_images
        self._write(slot, "set_billed", slot.billed)
        if self._on_billed is not None:
            self._on_billed(result.cost_yuan)
        for image in result.images:
            if image.data is not None:
                saved = await asyncio.to_thread(self._write, slot, "save_image", image, result.image_provenance(image))
                if not saved:  # a full disk, a vanished store: the entry stays COLLECTING for resume
                    image.download_error, image.download_code = str(slot.store_error), "StoreError"
            elif image.code is not None and image.download_code is None:
                self._write(slot, "record_image_failure", image.index, image.code, image.message)
        slot.saved = sum(1 for im in result.images if im.path)
        missing = [im for im in result.images if im.billed and not im.path]
        if missing and all(im.gone for im in missing):
            self._write(
                slot, "finish", EntryState.GONE, status=result.task.status.value, code="ImageExpired",
                message=f"{len(missing)} billed image(s) expired before they could be saved", result=result.metadata(),
            )
        elif missing:
            reasons = "; ".join(dict.fromkeys(im.download_error or "not downloaded" for im in missing))
            self._write(slot, "note_error", missing[0].download_code, reasons)
            self._write(slot, "finish", EntryState.DONE, status=result.task.status.value, result=result.metadata())
            result.warnings.append(
                f"{len(missing)} of {slot.billed} billed image(s) are not saved yet ({reasons}); "
                "`%wanx resume` downloads them while their URLs live (24 h), without paying again"
            )
            self._set_outcome(slot, Phase.UNFINISHED, result)
            return
        else:
            self._write(slot, "finish", EntryState.DONE, status=result.task.status.value, result=result.metadata())
        self._set_outcome(slot, Phase.DONE, result)

    def _failed(self, slot: _Slot, exc: BaseException) -> None:
        """An error from generate/collect: finish the entry only if the service had the last word."""
        if isinstance(exc, TaskFailedError):
            self._write(slot, "finish", EntryState.FAILED, status="FAILED", code=exc.code, message=exc.server_message)
            self._set_outcome(slot, Phase.FAILED, exc)
        elif isinstance(exc, TaskCanceledError):
            self._write(slot, "finish", EntryState.CANCELED, status="CANCELED", code=exc.code, message=exc.server_message)
            self._set_outcome(slot, Phase.CANCELED, exc)
        elif isinstance(exc, TaskUnknownError):
            self._write(slot, "finish", EntryState.GONE, status="UNKNOWN", code=exc.code, message=exc.server_message)
            self._set_outcome(slot, Phase.FAILED, exc)
        elif slot.task_id is None and not slot.sent:
            # Nothing reached the service (validation, upload, the store): the entry never was a request.
            self._write(slot, "mark_rejected", getattr(exc, "code", None), str(exc))
            self._set_outcome(slot, Phase.FAILED, exc)
        elif slot.task_id is None and isinstance(exc, APIStatusError):
            self._write(slot, "mark_rejected", exc.code, str(exc))  # the service refused the create
            self._set_outcome(slot, Phase.FAILED, exc)
        elif slot.task_id is None:
            # Sent, no task id, not a refusal: treat as an unknown outcome (resume reconciles it).
            self._write(slot, "mark_outcome_unknown", getattr(exc, "code", None), str(exc))
            self._set_outcome(slot, Phase.UNFINISHED, TaskUnfinishedError(None, str(exc)))
        else:
            code = getattr(exc, "code", None)
            self._write(slot, "note_error", code, str(exc))
            unfinished = TaskUnfinishedError(slot.task_id, str(exc), code=code)
            unfinished.__cause__ = exc
            self._set_outcome(slot, Phase.UNFINISHED, unfinished)

    def _cancelled(self, slot: _Slot) -> None:
        """The run was stopped (or this request withdrawn) while this request was in flight."""
        if slot.outcome is not None:
            return
        if not slot.sent:
            self._write(slot, "mark_withdrawn")
            withdrawn = TaskCanceledError("(not sent)", "CANCELED", "Withdrawn", "withdrawn before it was sent")
            self._set_outcome(slot, Phase.WITHDRAWN, withdrawn)
        elif slot.task_id is None:
            self._write(slot, "mark_outcome_unknown", "Interrupted", "stopped while the create was on the wire")
            self._set_outcome(slot, Phase.UNFINISHED, TaskUnfinishedError(None, "stopped while the create was on the wire"))
        else:
            self._write(slot, "note_error", "Interrupted", "the run stopped waiting for this task")
            error = TaskUnfinishedError(slot.task_id, "the run stopped waiting for this task", code="Interrupted")
            self._set_outcome(slot, Phase.UNFINISHED, error)

    def _set_outcome(self, slot: _Slot, phase: Phase, outcome: Outcome) -> None:
        if slot.outcome is not None:
            return  # settled already (a cancel the service accepted): one outcome per request
        if slot.store_error is not None and phase is not Phase.UNFINISHED:
            # The journal missed part of this request's story: keep it open for resume, and say why.
            detail = f"the store could not record it ({slot.store_error})"
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

    def _emit(self, slot: _Slot, phase: Phase, *, elapsed: float | None = None) -> None:
        slot.phase = phase
        if self._on_progress is not None:
            spent = self._clock() - slot.started if elapsed is None else elapsed
            self._on_progress(Progress(slot.index, slot.request.model, phase, slot.task_id, spent))


def _utcnow() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _parse_utc(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
