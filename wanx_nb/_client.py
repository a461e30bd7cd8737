"""`AsyncWanxClient` (asyncio, httpx); `WanxClient`, its blocking form, is in `_client_sync`.

The client is the only module that does network I/O or sleeps. Wire format: `_protocol` (the legacy
task API) and `_protocol_image` (the messages-based endpoints); the endpoint per model comes from the
registry (`preferred_protocol`: an async task where the model has one, else the sync call); timing
decisions: `_backoff`; client-side limits: `_scheduler`.

    async with AsyncWanxClient() as client:             # no key: the offline emulator, and it says so
        result = await client.generate(GenerationRequest("a red fox in snow", n=2))
        result.images[0].data                           # PNG bytes; seed, size, prompts alongside

Configuration comes from the arguments or the environment: DASHSCOPE_API_KEY, DASHSCOPE_HTTP_BASE_URL,
DASHSCOPE_REGION (beijing, singapore, virginia) and DASHSCOPE_WORKSPACE_ID. With no key, no base URL
and no transport the in-process emulator serves every call (`client.backend == "emulator"`).

Retries (the full rules: `_client_http`): reads are retried; a create that may have reached the service
is never sent again (SubmitOutcomeUnknownError, SyncOutcomeUnknownError; `reconcile()` finds the task
an unknown submit made). The API key is never logged or shown: only an `httpx.Auth` (`_auth`) holds it.

This module holds the operations, composed from the client's parts: `_client_base` (configuration,
connections, clocks; `_client_config` resolves where calls go), `_client_http` (one exchange and its
retries), `_client_create` (sending a create once), `_client_poll` (waiting, expected durations),
`_client_download`, `_client_upload`, `_client_reconcile`; `_client_types` holds what they share.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import os
from collections.abc import Callable, Collection, Sequence
from typing import Any

from ._client_base import BaseClient
from ._client_config import InProcessService
from ._client_create import call_sync, create_task, uncancellable
from ._client_download import download, fetch_into
from ._client_http import response_json, response_task
from ._client_poll import poll_until_done, raise_unless_succeeded
from ._client_reconcile import find_created
from ._client_types import BeforeDownload, OnSending, OnStatus, OnSubmitted, Submission, call_back, task_id_of
from ._client_upload import upload
from ._exceptions import ConfigurationError
from ._models import GenerationResult, ImageResult, Task, TaskStatus
from ._protocol import build_cancel, build_query, image_results, is_local_path, parse_size
from ._protocol_list import TaskPage, build_list, parse_task_page
from ._reconcile import Reconciliation
from ._registry import Region, get_model, get_region, preferred_protocol, submit_limits
from ._request import MAX_SEED, GenerationRequest
from ._validation import validate

__all__ = ["AsyncWanxClient", "InProcessService", "OnSending", "OnStatus", "OnSubmitted", "Submission"]

log = logging.getLogger("wanx_nb")


class AsyncWanxClient(BaseClient):
    """Talks to the DashScope text-to-image API (or the offline emulator), with retries and limits.

    Parameters:
        api_key: a DashScope key (default `$DASHSCOPE_API_KEY`). Without one, and without base_url
            and transport, the in-process emulator is used and `backend == "emulator"`.
        base_url: e.g. "https://dashscope.aliyuncs.com/api/v1" (default `$DASHSCOPE_HTTP_BASE_URL`,
            else the region's URL).
        region: "beijing" (default), "singapore" or "virginia" (default `$DASHSCOPE_REGION`); also
            "frankfurt" (and "hongkong", "tokyo"), which have only workspace-dedicated domains. Picks
            the base URL, the model names sent (international names drop the "x"), the models offered
            (a model the region does not serve is refused before sending) and the submit limits.
        workspace: sent as `X-DashScope-WorkSpace` (default `$DASHSCOPE_WORKSPACE_ID`).
        workspace_domain: use the workspace-dedicated domain
            `https://{workspace}.{region id}.maas.aliyuncs.com/api/v1` (2026 §2.1); implied for regions
            without a shared domain (Frankfurt).
        timeout, connect_timeout: seconds for one HTTP exchange and for connecting.
        max_retries: retries per call (0 turns them off); `_client_http` says which calls retry what.
        wait_timeout: default deadline of `wait()`/`generate()` in seconds (None: no deadline).
        transport: an httpx.AsyncBaseTransport (tests, proxies); used for image downloads too.
        emulator: a `wanx_nb.emulator.Emulator` to serve every call in-process.

    Example:
        >>> async with AsyncWanxClient() as client:
        ...     task = await client.submit(GenerationRequest("a red fox", model="wanx-v1", n=1))
        ...     task = await client.wait(task)
    """

    # ---- lifecycle (construction and aclose: BaseClient) ----------------------------------------

    async def __aenter__(self) -> AsyncWanxClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        tail = f" api_key='…{self._auth.hint}'" if self.backend != "emulator" else ""
        return f"<AsyncWanxClient backend={self.backend!r} region={self.region!r} base_url={self.base_url!r}{tail}>"

    # ---- operations ----------------------------------------------------------------------------

    async def submit(self, request: GenerationRequest) -> Submission:
        """Validate `request`, then create its task. Returns at once with the PENDING task.

        Nothing is sent when validation fails (ValidationError). A missing seed is picked here and
        sent, so the seed of every image is known; a local `ref_img` is uploaded first and sent as its
        oss:// URL. The returned Submission holds the PENDING Task and the request as sent.
        Only the submit rate is limited here; `generate()` also keeps to the model's concurrency.
        """
        spec = None
        with contextlib.suppress(KeyError, TypeError):  # an unknown model: validation says so below
            spec = get_model(request.model)
        if spec is not None and not preferred_protocol(spec).is_async:
            raise ConfigurationError(
                f"{spec.name} has only the synchronous endpoint: there is no task to submit and poll; "
                "use generate(), which sends the call and returns its images"
            )
        prepared, warnings = await self._prepare(request)
        return await self._create(prepared, warnings)

    async def get_task(self, task_id: str) -> Task:
        """The task as the server reports it now (`GET /tasks/{id}`); UNKNOWN for a wrong or expired id."""
        wire = build_query(task_id, workspace=self.workspace)
        response = await self._sender().request(wire, kind="read", task_id=task_id, query=True)
        return response_task(response)

    async def wait(
        self,
        task: Task | Submission | str,
        *,
        timeout: float | None = None,
        on_status: OnStatus | None = None,
    ) -> Task:
        """Poll until the task is terminal and return it, whatever its status (check `task.status`).

        `timeout` (default: the client's `wait_timeout`; `math.inf` for none) bounds the wait; past
        it WaitTimeoutError is raised and the task may still finish. `on_status(task)` is called
        after every poll. Polls follow `_backoff.next_poll_delay`: one sleep until shortly before the
        task is expected to end, then short, growing intervals.
        """
        if isinstance(task, Submission):
            task = task.task
        if isinstance(task, Task) and task.status.is_terminal:
            return task
        return await poll_until_done(
            task,
            task_id_of(task),
            get_task=self.get_task,
            expectations=self._expectations,
            scheduler=self._scheduler,
            clocks=self._clocks,
            limit=self.wait_timeout if timeout is None else timeout,
            on_status=on_status,
        )

    async def cancel(self, task_id: str) -> None:
        """Cancel a PENDING task. A task that already runs cannot be cancelled: UnsupportedOperationError."""
        wire = build_cancel(task_id, workspace=self.workspace)
        await self._sender().request(wire, kind="cancel", task_id=task_id)

    async def list_tasks(
        self,
        *,
        page_no: int = 1,
        page_size: int = 10,
        start_time: dt.datetime | dt.date | str | None = None,
        end_time: dt.datetime | dt.date | str | None = None,
        model_name: str | None = None,
        status: TaskStatus | str | None = None,
        api_key_id: str | None = None,
        region: str | None = None,
    ) -> TaskPage:
        """One page of the account's tasks (`GET /tasks`), newest first as the server orders them.

        Times are datetimes (aware ones are converted to UTC+8, the server's clock) or strings
        `YYYYMMDDhhmmss`. `model_name` may be any registry name; the region's wire name is sent.
        """
        if model_name:
            with contextlib.suppress(KeyError):
                model_name = get_model(model_name).wire_name(self.region)
        wire = build_list(
            workspace=self.workspace,
            page_no=page_no,
            page_size=page_size,
            start_time=start_time,
            end_time=end_time,
            model_name=model_name,
            api_key_id=api_key_id,
            region=region,
            status=status,
        )
        response = await self._sender().request(wire, kind="read")
        return parse_task_page(response_json(response))

    async def upload(self, path: str | os.PathLike[str], model: str) -> str:
        """Upload a local file for `model` and return its `oss://` URL (valid 48 h, for that model only).

        The temporary-upload flow: get a policy from the API, then a multipart POST to the policy's
        upload host, which never receives the API key. Beijing only.
        """
        shared = _shared_region(self.region)
        official = self.backend == "dashscope" and shared is not None and self.base_url == shared.base_url
        return await upload(
            self._sender(), self._sender(self._files), path, model, workspace=self.workspace, official_host=official
        )

    async def download(self, url: str, *, expect: tuple[int, int] | None = None) -> bytes:
        """The image at a result URL, checked: a whole PNG, JPEG or WebP (of `expect` = (width, height)).

        Sent without the API key. 5xx answers, dropped connections and cut-off bodies (fewer bytes than
        Content-Length, or an image that stops before its format's end) are retried with backoff.
        The image is checked from its header and ending, never decoded: one over MAX_IMAGE_PIXELS
        (a decompression bomb) is refused. Raises ImageExpiredError when the URL expired (they live
        24 h), InvalidImageError for bytes that are not the promised image, DownloadError otherwise.
        """
        return await download(self._sender(self._files), url, expect=expect, place=self._downloads)

    async def fetch(self, image: ImageResult, *, expect: tuple[int, int] | None = None) -> None:
        """Download a billed image into `image.data`; on failure set `download_error`/`download_code`.

        For a resume: a succeeded task's images that were not downloaded (`image.missing`) can be
        fetched again while their URLs live (24 h). The service's own fields are left as they are.
        """
        await fetch_into(image, lambda url: self.download(url, expect=expect))

    async def reconcile(
        self,
        request: GenerationRequest,
        *,
        sent_after: dt.datetime,
        sent_before: dt.datetime,
        exclude: Collection[str] = (),
    ) -> Reconciliation:
        """Find the task a create with an unknown outcome made (SubmitOutcomeUnknownError).

        Lists the account's tasks for the request's model created in [sent_after, sent_before] (every
        page; aware datetimes, converted to the server's clock), drops the ids in `exclude` (tasks the
        journal already knows), waits for the candidates still running, and matches what their records
        report: the creation time, the number of images and, where a record names it, the prompt (see
        `_reconcile`). Nothing is created or cancelled.
        Returns a Reconciliation: the task to adopt, certainly none, or "cannot tell" (try again later).
        """
        return await find_created(
            request,
            sent_after=sent_after,
            sent_before=sent_before,
            exclude=exclude,
            now=dt.datetime.fromtimestamp(self._wall(), dt.timezone.utc),
            list_tasks=self.list_tasks,
            get_task=self.get_task,
            wait=lambda task: self.wait(task, timeout=math.inf),
        )

    async def generate(
        self,
        request: GenerationRequest,
        *,
        timeout: float | None = None,
        on_submitted: OnSubmitted | None = None,
        on_status: OnStatus | None = None,
        on_sending: OnSending | None = None,
        before_download: BeforeDownload | None = None,
    ) -> GenerationResult:
        """Submit, wait and download every image. Raises when the task did not produce images.

        Keeps to the model's submit rate and concurrency (a slot is held from before the submit until
        the task ends). `on_sending(prepared_request)` runs right before the create is sent (seed
        picked, reference uploaded): the place to write the request down; raising there aborts with
        nothing sent. `on_submitted(task, sent_request)` runs the moment the task exists;
        `on_status(task)` after every poll; `before_download(task)` once the task succeeded, before
        its images are fetched (a caller that stores them can wait there for room). A FAILED task
        raises TaskFailedError (the server's code and message), CANCELED TaskCanceledError, UNKNOWN
        TaskUnknownError; a create that may have reached the service unanswered raises
        SubmitOutcomeUnknownError (with the prepared request).
        Images that failed on the service keep its `code` and `message`; a billed image whose
        download failed keeps its URL and gets `download_error`/`download_code` (see `fetch`).
        """
        start = self._clock()
        prepared, warnings = await self._prepare(request)
        spec = get_model(prepared.model)
        protocol = preferred_protocol(spec)
        limits = submit_limits(spec, self.region)
        if not protocol.is_async:
            async with self._scheduler.slot(spec.name, spec.concurrency):
                # Wait for the submit turn first (2 per minute can mean a minute): until on_sending
                # nothing is on the wire, so an interrupt here withdraws the request cleanly.
                await self._scheduler.submit_turn(spec.name, limits)
                await call_back(on_sending, prepared)
                final = await call_sync(
                    self._sender(), prepared, spec, protocol, workspace=self.workspace, expectations=self._expectations
                )
            return await self._finish(final, prepared, warnings, start, before_download)
        async with self._scheduler.slot(spec.name, spec.concurrency) as slot:
            await self._scheduler.submit_turn(spec.name, limits)
            await call_back(on_sending, prepared)
            submission = await uncancellable(
                self._create_and_report(prepared, warnings, on_submitted, turn_taken=True)
            )
            expectation = self._expectations.tasks.get(submission.task_id)
            if expectation is not None:  # queued behind our own tasks? then it starts when they end
                expected = self._expectations.expected(expectation)
                slot.submitted(submission.task_id, expectation.submitted_at, expected)
            final = await self.wait(submission.task, timeout=timeout, on_status=on_status)
        result = await self._finish(final, prepared, warnings, start, before_download)
        result.create_request_id = submission.request_id  # the last poll's id is in result.task
        return result

    async def _create_and_report(
        self,
        prepared: GenerationRequest,
        warnings: list[str],
        on_submitted: OnSubmitted | None,
        *,
        turn_taken: bool = False,
    ) -> Submission:
        submission = await self._create(prepared, warnings, turn_taken=turn_taken)
        await call_back(on_submitted, submission.task, prepared)
        return submission

    async def collect(
        self,
        task: Task | Submission | str,
        request: GenerationRequest,
        *,
        timeout: float | None = None,
        on_status: OnStatus | None = None,
        before_download: BeforeDownload | None = None,
    ) -> GenerationResult:
        """Wait for an existing task (e.g. one written ahead before a restart) and download its images.

        `request` is the request as it was sent (for seeds and sizes). Raises like `generate()`.
        """
        start = self._clock()
        self._expectations.resumed(task_id_of(task), request, start)
        final = await self.wait(task, timeout=timeout, on_status=on_status)
        return await self._finish(final, request, [], start, before_download)

    async def generate_many(
        self,
        requests: Sequence[GenerationRequest],
        *,
        timeout: float | None = None,
        on_submitted: OnSubmitted | None = None,
        on_status: OnStatus | None = None,
        on_result: Callable[[int, GenerationResult | Exception], Any] | None = None,
        on_sending: OnSending | None = None,
    ) -> list[GenerationResult | Exception]:
        """Run every request concurrently within each model's rate and concurrency limits.

        Returns one entry per request, in order: the GenerationResult, or the exception it raised.
        `on_result(index, result_or_exception)` runs as each one finishes.
        """

        async def one(index: int, request: GenerationRequest) -> GenerationResult | Exception:
            outcome: GenerationResult | Exception
            try:
                outcome = await self.generate(
                    request, timeout=timeout, on_submitted=on_submitted, on_status=on_status, on_sending=on_sending
                )
            except Exception as exc:  # returned in place, like asyncio.gather(return_exceptions=True)
                outcome = exc
            await call_back(on_result, index, outcome)
            return outcome

        return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(requests))))

    # ---- internals: the steps of generate ------------------------------------------------------

    async def _prepare(self, request: GenerationRequest) -> tuple[GenerationRequest, list[str]]:
        warnings = validate(request, region=self.region)
        if request.seed is None:
            request = request.replace(seed=self._rng.randint(0, MAX_SEED - request.effective_n))
        if request.ref_img and is_local_path(request.ref_img):
            request = request.replace(ref_img=await self.upload(request.ref_img, request.model))
        return request, warnings

    async def _create(self, request: GenerationRequest, warnings: list[str], *, turn_taken: bool = False) -> Submission:
        return await create_task(
            self._sender(), request, warnings,
            workspace=self.workspace, expectations=self._expectations, turn_taken=turn_taken,
        )

    async def _finish(
        self,
        final: Task,
        request: GenerationRequest,
        warnings: list[str],
        start: float,
        before_download: BeforeDownload | None = None,
    ) -> GenerationResult:
        raise_unless_succeeded(final)
        images = image_results(final, request)
        billed = [im for im in images if im.ok and im.url]
        if billed:
            await call_back(before_download, final)
        await asyncio.gather(*(self.fetch(im, expect=parse_size(im.size)) for im in billed))
        backend = "emulator" if (self.backend == "emulator" or final.emulator) else self.backend
        return GenerationResult(
            request=request,
            task=final,
            images=images,
            backend=backend,
            elapsed=self._clock() - start,
            warnings=list(warnings),
            created_at=dt.datetime.fromtimestamp(self._wall(), dt.timezone.utc).isoformat(timespec="milliseconds"),
        )


def _shared_region(name: str) -> Region | None:
    try:
        return get_region(name)
    except KeyError:
        return None
