"""Sending a create: the async task (`create_task`) or the sync call (`call_sync`), each sent once.

A create whose answer was lost after sending is never sent again (a second one could be a second
billed task): it becomes SubmitOutcomeUnknownError (a task may exist; `reconcile()` finds it) or, for
a sync call, SyncOutcomeUnknownError (nothing can look it up). `uncancellable` sees a sent create
through to the caller's write-ahead of its task id.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ._client_errors import Unanswered
from ._client_http import Sender, response_json, response_task
from ._client_poll import Expectations
from ._client_types import Submission, task_id_of
from ._exceptions import APIError, SubmitOutcomeUnknownError, SyncOutcomeUnknownError
from ._models import Task
from ._protocol import EMULATOR_HEADER, TIME_SCALE_HEADER, build_create
from ._protocol_image import build_image_create, parse_sync_result
from ._registry import ModelSpec, Protocol, get_model, preferred_protocol
from ._request import GenerationRequest

__all__ = ["call_sync", "create_task", "uncancellable"]

log = logging.getLogger("wanx_nb")

T = TypeVar("T")

# A sync call answers when the images exist: the service's own timeout is 298 s (recorded header
# x-dashscope-timeout, 2026 §3.4), so one HTTP exchange may take that long.
_SYNC_TIMEOUT = 300.0


async def create_task(
    sender: Sender,
    request: GenerationRequest,
    warnings: list[str],
    *,
    workspace: str | None,
    expectations: Expectations,
    turn_taken: bool = False,
) -> Submission:
    """Create the task of a prepared request (its model has an async endpoint) and expect it."""
    spec = get_model(request.model)
    protocol = preferred_protocol(spec)
    wire_model = spec.wire_name(sender.region)
    if protocol is Protocol.T2I:
        wire = build_create(request, wire_model=wire_model, workspace=workspace)
    else:  # image-generation: the messages body, polled at /tasks/{id} like the legacy task
        wire = build_image_create(request, protocol, wire_model=wire_model, workspace=workspace)
    submitted_at = sender.clocks.clock()
    sends: list[float] = []  # wall time of each attempt: the last one bounds an unknown outcome
    try:
        response = await sender.request(wire, kind="submit", spec=spec, sends=sends, turn_taken=turn_taken)
    except Unanswered as lost:
        raise _outcome_unknown(
            request, sends, lost.cause, lost.status, lost.request_id, wall=sender.clocks.wall
        ) from lost.__cause__
    try:
        task = response_task(response)
    except APIError as exc:  # a 2xx without a readable task: it may exist all the same
        cause = f"HTTP {response.status_code} but {exc.message}"
        raise _outcome_unknown(request, sends, cause, response.status_code, None, wall=sender.clocks.wall) from exc
    if TIME_SCALE_HEADER in response.headers:
        # A served emulator runs tasks at this fraction of the real durations: expect those.
        expectations.time_scale = float(response.headers[TIME_SCALE_HEADER])
    expectations.created(task_id_of(task), spec, request, submitted_at)
    log.debug("created task %s (%s)", task.task_id, request.summary())
    return Submission(task, request, tuple(warnings))


async def call_sync(
    sender: Sender,
    request: GenerationRequest,
    spec: ModelSpec,
    protocol: Protocol,
    *,
    workspace: str | None,
    expectations: Expectations,
) -> Task:
    """One synchronous call (no task id, never the async header): the answer holds the images.

    Its answer lost after sending (a timeout, a drop, a 5xx other than 503, an unreadable 2xx) is a
    SyncOutcomeUnknownError: billed or not is unknown and a sync call cannot be looked up, so it is
    never sent again. A refusal (4xx, 429/503 after the retries) means nothing was made.
    """
    wire = build_image_create(request, protocol, wire_model=spec.wire_name(sender.region), workspace=workspace)
    sends: list[float] = []
    timeout = max(_SYNC_TIMEOUT, sender.http.timeout.read or 0.0)
    wall = sender.clocks.wall
    try:
        response = await sender.request(wire, kind="submit", spec=spec, sends=sends, timeout=timeout, turn_taken=True)
    except Unanswered as lost:
        raise _outcome_unknown(
            request, sends, lost.cause, lost.status, lost.request_id, wall=wall, sync=True
        ) from lost.__cause__
    if TIME_SCALE_HEADER in response.headers:
        expectations.time_scale = float(response.headers[TIME_SCALE_HEADER])
    try:
        task = parse_sync_result(response_json(response), emulator=EMULATOR_HEADER in response.headers)
    except APIError as exc:
        if exc.code != "InvalidResponse":  # a business error in a 200: the service refused the call
            raise
        cause = f"HTTP {response.status_code} but {exc.message}"
        raise _outcome_unknown(request, sends, cause, response.status_code, None, wall=wall, sync=True) from exc
    log.debug("sync call answered (%s, request %s)", request.summary(), task.request_id)
    return task


def _outcome_unknown(
    request: GenerationRequest,
    sends: list[float],
    cause: str,
    status: int | None,
    request_id: str | None,
    *,
    wall: Callable[[], float],
    sync: bool = False,
) -> SubmitOutcomeUnknownError:
    def utc(seconds: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)

    log.debug("not retrying the create of %s: %s; a task may exist", request.model, cause)
    error_type = SyncOutcomeUnknownError if sync else SubmitOutcomeUnknownError
    return error_type(
        request.model, request, sent_after=utc(sends[-1]), sent_before=utc(wall()), cause=cause,
        status=status, request_id=request_id,
    )


async def uncancellable(coro: Awaitable[T]) -> T:
    """Run `coro` to the end even if the caller is cancelled meanwhile, then re-raise the cancel.

    A submit that was sent must be seen through to `on_submitted` (the write-ahead of its task id):
    a cancel between sending and recording would leave a billed task nobody knows about. Requests
    still waiting for their turn are not affected: they are cancelled before anything is sent.
    """
    work = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait([work])
        raise
