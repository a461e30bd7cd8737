"""How a Run's requests take turns: per model, a queue and a few workers (the background loop's side).

A request waiting for its model's place is a `Slot` in its model's queue, not a suspended coroutine
stack: a batch of 200 holds 200 small records while only as many workers as the scheduler can keep in
flight (plus one per concurrency slot, for downloads) drive requests, in order. Every request says
QUEUED at the start; `Run._withdraw` drops the ones no worker has taken. A resume collects every
unfinished task at once (the service already has them): `_resume_one` per journal entry.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections import deque

from ._exceptions import SyncOutcomeUnknownError, TaskUnfinishedError
from ._models import GenerationResult, ImageResult, Task, TaskStatus
from ._provenance import Provenance
from ._registry import get_model
from ._request import GenerationRequest
from ._run_events import Phase, is_sync, parse_utc
from ._run_locks import RunLock
from ._run_steps import RequestSteps, Slot
from ._scheduler import in_flight
from ._store import EntryState
from ._store_read import stored_path

# The wall time we wrote before sending brackets a create whose answer was lost, give or take clock skew.
_SKEW = dt.timedelta(minutes=3)

__all__ = ["RequestQueues"]


class RequestQueues(RequestSteps):
    """The turn-taking half of a Run (`Run` derives from it)."""

    _locks: list[RunLock]

    async def _main(self, resume: bool) -> None:
        try:
            await self._take_turns(resume)
        finally:  # every request has its outcome, journaled: resume may take over what is unfinished
            for lock in self._locks:
                lock.release()

    async def _take_turns(self, resume: bool) -> None:
        if resume:  # tasks the service already has: every one is collected at once
            for slot in self._slots:
                slot.started = self._clock()
                slot.worker = asyncio.ensure_future(self._guarded(slot, self._resume_one(slot)))
            await asyncio.gather(*(s.worker for s in self._slots if s.worker is not None), return_exceptions=True)
            return
        queues: dict[str, deque[Slot]] = {}
        for slot in self._slots:
            if slot.outcome is not None:  # settled before the run began (reuse): said first, never sent
                await self._guarded(slot, self._tell_settled(slot))
                continue
            slot.started = self._clock()
            self._emit(slot, Phase.QUEUED)
            queues.setdefault(_model_name(slot.request), deque()).append(slot)
        workers = [
            asyncio.ensure_future(self._work(queue))
            for model, queue in queues.items()
            for _ in range(min(len(queue), _workers(model)))
        ]
        try:
            await asyncio.gather(*workers, return_exceptions=True)
        except asyncio.CancelledError:  # stopped outright (a second Ctrl-C): the workers have ended
            for slot in self._slots:
                self._cancelled(slot)  # what no worker took is withdrawn (a settled request is left alone)
            raise

    async def _tell_settled(self, slot: Slot) -> None:
        """The views learn of a request settled before the run began as of any other (a failing
        callback is `_guarded`'s, as in the run's own steps)."""
        self._emit(slot, slot.phase, elapsed=0.0)
        if self._on_result is not None and slot.outcome is not None:
            self._on_result(slot.index, slot.outcome)

    async def _work(self, queue: deque[Slot]) -> None:
        """Drive the queue's requests one after another, in order; a withdrawn one is skipped.

        While it drives a request the worker is that request's `worker`: cancelling it withdraws the
        request (`withdrawing`, and the worker goes on with the next one) or stops the run (it ends)."""
        worker = asyncio.current_task()
        assert worker is not None
        while queue:
            slot = queue.popleft()
            if slot.outcome is not None:
                continue
            slot.worker = worker
            try:
                await self._guarded(slot, self._drive(slot))
            finally:
                slot.worker = None
            if slot.withdrawing and sys.version_info >= (3, 11) and worker.cancelling():
                worker.uncancel()  # the cancel was this request's withdrawal, handled by `_guarded`

    # ---- resume: what an earlier run left unfinished -------------------------------------------------

    async def _resume_one(self, slot: Slot) -> None:
        """An entry an earlier run left unfinished: reconcile it or collect it, then save."""
        assert self._client is not None
        entry = self._store.entry(slot.entry_id)
        slot.given, slot.create_request_id = entry.given, entry.request_id
        slot.said_unknown = entry.status == TaskStatus.UNKNOWN.value
        request = entry.sent or entry.given
        if entry.task_id is None and is_sync(request):
            record = self._store.result_record(slot.entry_id)  # the answer's URLs, when it came
            if entry.state is EntryState.COLLECTING or record is not None:
                await self._collect_sync(slot, request, record)
            else:
                self._sync_unresolved(slot, entry.message)
            return
        if entry.task_id is None:
            sent_at = parse_utc(entry.sent_at) or parse_utc(entry.created_at) or dt.datetime.now(dt.timezone.utc)
            # The wall time we wrote before sending brackets the create, give or take the clocks' skew.
            window = (sent_at - _SKEW, sent_at + _SKEW)
            await self._reconcile(slot, request, window, entry.code, entry.message or "the create's outcome is unknown")
            return
        await self._collect(slot, request)

    def _sync_unresolved(self, slot: Slot, message: str | None) -> None:
        """Resume of a sync call whose answer was lost: it has no task id to look up, so it is reported
        (never re-sent) and stays in the journal as it is."""
        detail = message or "a synchronous call was sent and its answer was lost: billed or not is unknown"
        error = TaskUnfinishedError(None, f"{detail}. It is not sent again", code=SyncOutcomeUnknownError.code)
        self._set_outcome(slot, Phase.UNFINISHED, error)

    async def _collect_sync(self, slot: Slot, sent: GenerationRequest, record: Provenance | None) -> None:
        """Resume of a sync call whose billed images were not all saved: there is no task to ask
        again, but the answer's image URLs are in the journal's result `record` (they live 24 h)."""
        assert self._client is not None
        images = [
            ImageResult(
                index=m.index, seed=m.seed, size=m.size, url=m.url, orig_prompt=m.orig_prompt,
                actual_prompt=m.actual_prompt, path=stored_path(self._store.images_dir, m.path), code=m.code,
                message=m.message,
            )
            for m in (record.images if record is not None else ())
        ]  # fmt: skip
        if not any(im.url or im.path for im in images):  # (all saved already: `_save` below finishes it)
            self._sync_unresolved(slot, "a synchronous call's billed images are not saved and no URL was recorded")
            return
        slot.answered = True  # stopped from here on, it stays COLLECTING (never "unknown")
        self._emit(slot, Phase.DOWNLOADING)
        async with self._image_room.place() as place:
            await place.take()
            for image in images:
                if image.url and not image.path and image.code is None:
                    await self._client.fetch(image)
            assert record is not None  # it held the URLs fetched above
            task = Task(
                task_id=None, status=TaskStatus.SUCCEEDED, request_id=record.request_id, usage=record.usage,
                results=tuple({"url": im.url} for im in images if im.url),
            )  # fmt: skip
            result = GenerationResult(
                request=sent, task=task, images=images, backend=record.backend, created_at=record.created_at,
            )  # fmt: skip
            await self._save(slot, result)


def _model_name(request: GenerationRequest) -> str:
    """The name the scheduler keeps a model's limits under."""
    try:
        return get_model(request.model).name
    except (KeyError, TypeError):
        return str(request.model)  # validation refuses it before it is sent


def _workers(model: str) -> int:
    """Workers for one model's queue: one per place the scheduler keeps in flight, plus one per
    concurrency slot, so tasks that end together download while their places are refilled."""
    try:
        concurrency = max(get_model(model).concurrency, 1)
    except (KeyError, TypeError):
        concurrency = 1
    return in_flight(concurrency) + concurrency
