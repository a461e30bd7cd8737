"""How a Run's requests take turns: per model, a queue and a few workers (the background loop's side).

A request waiting for its model's place is a `Slot` in its model's queue, not a suspended coroutine
stack: a batch of 200 holds 200 small records while only as many workers as the scheduler can keep in
flight (plus one per concurrency slot, for downloads) drive requests, in order. Every request says
QUEUED at the start; `Run._withdraw` drops the ones no worker has taken. A resume collects every
unfinished task at once (the service already has them).
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque

from ._registry import get_model
from ._request import GenerationRequest
from ._run_events import Phase
from ._run_locks import RunLock
from ._run_steps import RequestSteps, Slot
from ._scheduler import in_flight

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
