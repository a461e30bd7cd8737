"""A Run: one batch of requests through the session, from the journal to the saved images.

Every surface (the magic, the panel, compare, the CLI, resume) is a view over a Run, and the Run is
the one place that waits, ticks, times out and handles an interrupt. Its rules, in order of the life
of one request:

1. `Session.start()` validates and budget-checks every request and checks the store, then writes a
   journal entry per request (QUEUED) *before anything is sent*. With `reuse`, a request an earlier
   run made (every billed image saved) is settled from the store instead: no entry, nothing sent.
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
import contextlib
import time
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import _loop
from ._constants import DOWNLOADS_AT_ONCE
from ._exceptions import (
    RunInterruptedError,
    RunTimeoutError,
    SyncOutcomeUnknownError,
    TaskCanceledError,
    TaskError,
    UnsupportedOperationError,
    WanxError,
)
from ._models import GenerationResult
from ._request import GenerationRequest
from ._run_events import Outcome, Phase, Progress, RunSummary
from ._run_queue import RequestQueues
from ._run_room import ImageRoom
from ._run_steps import Slot, utcnow
from ._store import EntryState, JournalEntry

if TYPE_CHECKING:
    from ._client import AsyncWanxClient
    from ._run_locks import RunLock
    from ._store import Store

__all__ = ["Outcome", "Phase", "Progress", "Run", "RunSummary"]



class Run(RequestQueues):
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
        self._slots: list[Slot] = []
        self._image_room = ImageRoom(DOWNLOADS_AT_ONCE)
        self._future: concurrent.futures.Future[None] | None = None
        self._canceled: list[str] = []
        self._still_running: list[str] = []
        self._locks: list[RunLock] = []  # released once every request has its outcome (`_run_locks`)

    # ---- building (Session only) ---------------------------------------------------------------

    def _journal(
        self, prepared: Sequence[tuple[GenerationRequest, list[str]]], reused: Mapping[int, GenerationResult] = {}
    ) -> None:
        """Write one QUEUED entry per request: durable before anything is sent. A `reused` request (an
        earlier run's result, by index) is settled at once instead: nothing to journal or send."""
        lock = self._store.hold_run(self.run_id)  # first: resume leaves a held run's entries alone
        assert lock is not None, "a new run id is held by no one"
        self._locks.append(lock)
        now = utcnow()
        try:
            for i, (request, notes) in enumerate(prepared):
                if i in reused:  # no entry (""); its notes were said when it was made
                    self._slots.append(Slot(i, request, (), "", phase=Phase.REUSED, task_id=reused[i].task_id,
                                            outcome=reused[i]))  # fmt: skip
                    continue
                slot = Slot(i, request, tuple(notes), uuid.uuid4().hex)  # most have none: one shared ()
                self._store.record(
                    JournalEntry(
                        entry_id=slot.entry_id, run_id=self.run_id, service=self._service, backend=self._backend,
                        mode=self._mode, state=EntryState.QUEUED, given=request, sent=None, task_id=None,
                        status=None, created_at=now, sent_at=None, finished_at=None, request_id=None, code=None,
                        message=None, billed_images=0, saved_images=0, price_yuan=request.price_per_image,
                    )
                )
                self._slots.append(slot)
        except BaseException:  # the run will not start: nothing was sent, and no run of ours holds these
            for slot in self._slots:
                if slot.outcome is not None:
                    continue  # settled from the store (reuse): it has no entry
                with contextlib.suppress(WanxError):  # else a later resume withdraws them
                    self._store.mark_withdrawn(slot.entry_id, message="not sent: the store failed while the run was recorded")
            lock.release()
            raise

    def _adopt(self, entries: Sequence[JournalEntry], locks: Sequence[RunLock]) -> None:
        """Resume: take over journal entries of runs that stopped, holding those runs' locks meanwhile."""
        self._locks.extend(locks)
        for i, entry in enumerate(entries):
            request = entry.sent or entry.given
            slot = Slot(i, request, (), entry.entry_id, phase=Phase.PENDING, sent=True, task_id=entry.task_id)
            slot.saved = entry.saved_images
            self._slots.append(slot)

    def _finish_replayed(self, requests: Sequence[GenerationRequest], outcomes: Sequence[Outcome]) -> None:
        for i, (request, outcome) in enumerate(zip(requests, outcomes)):
            # A replayed result carries the request as recorded (with the seed the service used); a replayed
            # error carries none: it answers the request as asked.
            slot = Slot(i, outcome.request if isinstance(outcome, GenerationResult) else request, (), "",
                        phase=Phase.REPLAYED)
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
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
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
        self._future.add_done_callback(_CallOnce(callback, self))

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
        if timeout is not None and not (type(timeout) in (int, float) and timeout >= 0):  # NaN fails `>= 0`
            # Checked before waiting: a mistyped timeout must not stop the run.
            raise ValueError(f"timeout={timeout!r}: a number of seconds, 0 or more, or None to wait for every outcome")
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
        cost = sum(s.billed * s.request.price_per_image for s in self._slots if s.billed)
        unfinished = tuple(  # what resume can finish: not a sync call whose answer was lost (no task to look up)
            s.task_id or s.entry_id for s in self._slots
            if (s.phase in (Phase.UNFINISHED,) or (s.sent and not s.phase.is_final))
            and getattr(s.outcome, "code", None) != SyncOutcomeUnknownError.code
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
        # A create that was on the wire finished while the workers stopped (a sent create always
        # completes): its task is PENDING now, so cancel it too rather than let it run and bill.
        await self._cancel(after_stop=True)

    async def _withdraw(self) -> int:
        count = 0
        for slot in self._slots:
            if slot.phase is not Phase.QUEUED or slot.outcome is not None or slot.withdrawing:
                continue
            slot.withdrawing = True
            if slot.worker is None:  # still in its model's queue: no worker has taken it
                self._cancelled(slot)
            else:
                slot.worker.cancel()  # a create already under way still completes and is journaled
            count += 1
        return count

    async def _cancel(self, *, after_stop: bool = False) -> tuple[list[str], list[str]]:
        assert self._client is not None
        canceled, running = [], []
        tried = set(self._canceled) | set(self._still_running)
        for slot in self._slots:
            if slot.task_id is None or slot.phase is Phase.DOWNLOADING:
                continue
            stopped = after_stop and slot.phase is Phase.UNFINISHED and slot.task_id not in tried
            if slot.phase.is_final and not stopped:
                continue
            try:
                await self._client.cancel(slot.task_id)
            except UnsupportedOperationError:
                running.append(slot.task_id)  # already running: it will finish and be billed
            except WanxError:
                running.append(slot.task_id)
            else:  # the service accepted: the task ends CANCELED, unbilled
                canceled.append(slot.task_id)
                self._write(
                    slot, self._store.finish, EntryState.CANCELED, status="CANCELED", message="canceled while PENDING"
                )
                error = TaskCanceledError(slot.task_id, "CANCELED", "Canceled", "canceled while PENDING (not billed)")
                if stopped:
                    slot.outcome = None  # it was "unfinished" only until this cancel went through
                self._set_outcome(slot, Phase.CANCELED, error)
        self._canceled += [c for c in canceled if c not in self._canceled]
        self._still_running = running if not after_stop else self._still_running + running
        return canceled, running

    # ---- the work (background loop) ---------------------------------------------------------------




class _CallOnce:
    """`callback(run)` as a done-callback that lets go of both once called. A done future keeps its
    callbacks, and one holding the run would make run -> future -> callback -> run a cycle: a finished
    run (a record per request) would then wait for the garbage collector instead of going at once."""

    __slots__ = ("_callback", "_run")

    def __init__(self, callback: Callable[[Run], None], run: Run) -> None:
        self._callback: Callable[[Run], None] | None = callback
        self._run: Run | None = run

    def __call__(self, _: object) -> None:
        callback, run = self._callback, self._run
        self._callback = self._run = None
        if callback is not None and run is not None:
            callback(run)
