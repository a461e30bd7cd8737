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

Retries:
- reads (poll, list, download, upload policy and upload) retry connection errors and 408, 429, 5xx;
  a download also retries a cut-off body, and checks the image it got (`_imagecheck`);
- a submit is retried only when no task can exist: the connection was never made, 429 or 503 (the
  service refusing work before creating anything). Once it may have reached the service (a timeout
  or broken connection after sending, any other 5xx, a 2xx without a readable task id) it raises
  SubmitOutcomeUnknownError and is never re-sent: a second create could be a second billed task.
  `reconcile()` finds the task it made, if any;
- a sync call (a model with only the `multimodal-generation` endpoint: no task id, never the async
  header) follows the submit rule; its answer lost after sending is SyncOutcomeUnknownError: billed
  or not is unknown, nothing can look it up, and it is never re-sent;
- a cancel follows the submit rule (a retried cancel would answer "not PENDING" to itself).
Delays: exponential backoff with jitter, or the server's Retry-After (see `_backoff`); every retry
decision is logged at DEBUG on the "wanx_nb" logger. The API key is never logged or shown: it lives
in an `httpx.Auth` (`_auth`) set on the API client only, and is added to a request as it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
import math
import mimetypes
import os
import random
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from typing import Protocol as Structural  # `Protocol` here is the wire protocol (_registry)

import httpx

from ._backoff import (
    DurationModel,
    Failure,
    next_poll_delay,
    parse_retry_after,
    retry_delay,
    should_retry_read,
    should_retry_submit,
)
from ._constants import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_REGION,
    DEFAULT_TIMEOUT,
    DEFAULT_WAIT_TIMEOUT,
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_REGION,
    ENV_WORKSPACE,
    TASK_TTL_SECONDS,
    uses_emulator,
)
from ._exceptions import (
    APIError,
    APIStatusError,
    ConfigurationError,
    DownloadError,
    InvalidImageError,
    SubmitOutcomeUnknownError,
    SyncOutcomeUnknownError,
    TaskCanceledError,
    TaskFailedError,
    TaskUnknownError,
    WaitTimeoutError,
    WanxError,
)
from ._auth import APIKeyAuth
from ._client_errors import Unanswered, check_length, classify, connection_error, download_error, has_request, short_url
from ._imagecheck import ImageCheckError, check_image
from ._models import GenerationResult, ImageResult, Task, TaskStatus
from ._protocol import (
    EMULATOR_HEADER,
    TIME_SCALE_HEADER,
    TaskPage,
    WireRequest,
    build_cancel,
    build_create,
    build_list,
    build_policy,
    build_query,
    image_results,
    is_local_path,
    parse_json,
    parse_policy,
    parse_server_time,
    parse_size,
    parse_task,
    parse_task_page,
    status_error,
    upload_form,
)
from ._protocol_image import build_image_create, parse_sync_result
from ._reconcile import Reconciliation, decide, in_window, list_window
from ._registry import (
    WORKSPACE_REGIONS,
    ModelSpec,
    Protocol,
    Region,
    get_model,
    get_region,
    preferred_protocol,
    submit_limits,
    workspace_base_url,
)
from ._request import MAX_SEED, GenerationRequest
from ._scheduler import Scheduler
from ._validation import validate
from ._version import __version__

__all__ = ["AsyncWanxClient", "InProcessService", "OnSending", "OnStatus", "OnSubmitted", "Submission"]

log = logging.getLogger("wanx_nb")

T = TypeVar("T")
Kind = Literal["read", "submit", "cancel"]
OnStatus = Callable[[Task], Any]
OnSubmitted = Callable[[Task, GenerationRequest], Any]
OnSending = Callable[[GenerationRequest], Any]

# The emulator checks for a Bearer token but not its value; this one is shaped so `redact()` hides it.
_EMULATOR_KEY = "sk-wanx-nb-emulator"
_DEFAULT_EXPECTED = 15.0  # seconds, for a task whose model we do not know (resumed by id)
# Reconciling an unknown create: list pages of this size, at most this many, and look each candidate
# up only when there are few (the window is seconds wide; more means several processes at once).
_RECONCILE_PAGE_SIZE = 50
_RECONCILE_MAX_PAGES = 20
_RECONCILE_MAX_CANDIDATES = 10
_emulator_notice_logged = False
# A sync call answers when the images exist: the service's own timeout is 298 s (recorded header
# x-dashscope-timeout, 2026 §3.4), so one HTTP exchange may take that long.
_SYNC_TIMEOUT = 300.0


class InProcessService(Structural):
    """What the client needs of `wanx_nb.emulator.Emulator` (imported only when used): a transport to it.

    Its `settings.time_scale`, when it has one, scales the durations the client expects.
    """

    def transport(self) -> httpx.AsyncBaseTransport: ...


@dataclass(frozen=True)
class Submission:
    """The Task a submit created, the request exactly as it was sent, and the validation warnings.

    `request` has the seed filled in (image i has seed + i) and local reference images replaced by
    their oss:// URLs.
    """

    task: Task
    request: GenerationRequest
    warnings: tuple[str, ...] = ()

    @property
    def task_id(self) -> str:
        # A submit always creates a task: `parse_task` refuses an answer without its id.
        return _task_id(self.task)

    @property
    def status(self) -> TaskStatus:
        return self.task.status

    @property
    def request_id(self) -> str | None:
        """The create call's request id (the one to quote to support about this submit)."""
        return self.task.request_id

    def __repr__(self) -> str:
        return f"<Submission {self.task_id!r} [{self.status.value}]>"


@dataclass
class _Expectation:
    model: str
    base: float  # seconds the registry (times the emulator's time scale) expects
    submitted_at: float  # client clock
    resumed: bool = False  # submitted earlier (another process): when it started is not known


class AsyncWanxClient:
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
        max_retries: retries per call (0 turns them off); see the module docstring for which.
        wait_timeout: default deadline of `wait()`/`generate()` in seconds (None: no deadline).
        transport: an httpx.AsyncBaseTransport (tests, proxies); used for image downloads too.
        emulator: a `wanx_nb.emulator.Emulator` to serve every call in-process.

    Example:
        >>> async with AsyncWanxClient() as client:
        ...     task = await client.submit(GenerationRequest("a red fox", model="wanx-v1", n=1))
        ...     task = await client.wait(task)
    """

    def __init__(
        self,
        api_key: str | APIKeyAuth | None = None,
        *,
        base_url: str | None = None,
        region: str | None = None,
        workspace: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        wait_timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        emulator: InProcessService | None = None,
        workspace_domain: bool = False,
    ) -> None:
        # From here on only `auth` holds the key (its repr is redacted): no local, attribute or header
        # dict does, so a traceback printing frame locals (`%xmode Verbose`) cannot show it.
        auth = api_key if isinstance(api_key, APIKeyAuth) else (APIKeyAuth(api_key) if api_key else None)
        del api_key
        if auth is None and os.environ.get(ENV_API_KEY):
            auth = APIKeyAuth(os.environ[ENV_API_KEY])
        base = base_url or os.environ.get(ENV_BASE_URL) or None
        self.region, shared_host = _region_name(region or os.environ.get(ENV_REGION) or DEFAULT_REGION)
        self.workspace = workspace or os.environ.get(ENV_WORKSPACE) or None
        workspace_domain = workspace_domain or not shared_host
        if workspace_domain and base is None and transport is None and emulator is None:
            if not self.workspace:
                raise ConfigurationError(
                    f"region {self.region!r} is reached through a workspace-dedicated domain: pass workspace='ws-...' "
                    f"(or set {ENV_WORKSPACE})"
                )
            try:
                base = workspace_base_url(self.region, self.workspace)
            except (KeyError, ValueError) as exc:
                raise ConfigurationError(str(exc.args[0])) from None
        if max_retries < 0:
            raise ConfigurationError(f"max_retries must be >= 0, got {max_retries}")
        self.max_retries = max_retries
        self.wait_timeout = wait_timeout

        if emulator is None and uses_emulator("set" if auth else None, base, transport=transport):
            emulator = _default_emulator()
        self._emulator = emulator
        if emulator is not None:
            from .emulator import EMULATOR_BASE_URL

            transport = transport or emulator.transport()
            base = EMULATOR_BASE_URL
            auth = auth or APIKeyAuth(_EMULATOR_KEY)
            self.backend = "emulator"
            self._time_scale = float(getattr(getattr(emulator, "settings", None), "time_scale", 1.0))
        else:
            if auth is None:
                raise ConfigurationError(
                    f"no API key: set {ENV_API_KEY} or pass api_key=...; or pass neither a key nor a "
                    "base_url to use the offline emulator"
                )
            base = base or get_region(self.region).base_url
            self.backend = "dashscope"
            self._time_scale = 1.0
        assert auth is not None  # the emulator branch supplies one, the other raises without one
        self._auth: APIKeyAuth = auth
        self.base_url = base.rstrip("/")
        timeouts = httpx.Timeout(timeout, connect=connect_timeout)
        headers = {"User-Agent": f"wanx_nb/{__version__}"}
        # Two clients: the API one, whose auth adds the key at send time, and one for image hosts and
        # the upload host, which must never see the API key (it has no auth at all).
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeouts, transport=transport, headers=headers, auth=auth
        )
        self._files = httpx.AsyncClient(timeout=timeouts, transport=transport, headers=headers, follow_redirects=True)
        self._closed = False

        # Injection points for tests: a monotonic clock, an async sleep, wall time, randomness.
        self._clock: Callable[[], float] = time.monotonic
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._wall: Callable[[], float] = time.time
        self._rng = random.Random()
        self._scheduler = Scheduler(clock=lambda: self._clock(), sleep=lambda s: self._sleep(s), region=self.region)
        self._durations = DurationModel()
        self._expect: dict[str, _Expectation] = {}

    # ---- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncWanxClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections. The client cannot be used afterwards."""
        if self._closed:
            return
        self._closed = True
        await self._http.aclose()
        await self._files.aclose()

    @property
    def is_closed(self) -> bool:
        return self._closed

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
        response = await self._request(wire, kind="read", task_id=task_id, query=True)
        return self._parse_task(response)

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
        task_id = _task_id(task)
        expectation = self._expect.get(task_id)
        start = self._clock()
        limit = self.wait_timeout if timeout is None else timeout
        deadline = start + limit if limit is not None and math.isfinite(limit) else None
        if expectation is not None:
            expected = self._durations.expected(expectation.model, expectation.base)
        else:
            expected = _DEFAULT_EXPECTED * self._time_scale
        fresh = expectation is not None and not expectation.resumed
        # A task we did not just submit is looked at at once; if it runs, assume it is near its end.
        if fresh:  # from when it should start running: its submit, or when the tasks ahead end
            queued_until = self._scheduler.expected_start(task_id)
            origin = expectation.submitted_at if queued_until is None else queued_until  # type: ignore[union-attr]
        else:
            origin = start - expected
        status = task.status.value if isinstance(task, Task) else "PENDING"
        polls = 0
        queued_since: float | None = None  # when we first saw it PENDING after the lead
        while True:
            if polls or fresh:
                now = self._clock()
                queued = now - queued_since if queued_since is not None else 0.0
                delay = next_poll_delay(now - origin, expected, polls, queued=queued, rng=self._rng.random)
                if deadline is not None:
                    delay = min(delay, max(deadline - now, 0.0))
                await self._sleep(delay)
            sent_at = self._clock()
            current = await self.get_task(task_id)
            polls += 1
            status = current.status.value
            await _call(on_status, current)
            match current.status:
                case TaskStatus.PENDING:
                    # Not started yet: it cannot end before sent_at (or the tasks ahead of it) + its duration.
                    origin = max(sent_at, self._scheduler.expected_start(task_id) or sent_at)
                    if queued_since is None:
                        queued_since = sent_at
                case TaskStatus.RUNNING | TaskStatus.SUSPENDED:
                    queued_since = None
                case TaskStatus.SUCCEEDED | TaskStatus.FAILED | TaskStatus.CANCELED | TaskStatus.UNKNOWN:
                    self._learn(task_id, current, origin)
                    return current
                case _ as unreachable:  # pragma: no cover - TaskStatus is exhaustive above
                    raise AssertionError(f"unhandled task status {unreachable!r}")
            if deadline is not None and self._clock() >= deadline:
                raise WaitTimeoutError(task_id, self._clock() - start, status)

    async def cancel(self, task_id: str) -> None:
        """Cancel a PENDING task. A task that already runs cannot be cancelled: UnsupportedOperationError."""
        wire = build_cancel(task_id, workspace=self.workspace)
        await self._request(wire, kind="cancel", task_id=task_id)

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
        response = await self._request(wire, kind="read")
        return parse_task_page(self._json(response))

    async def upload(self, path: str | os.PathLike[str], model: str) -> str:
        """Upload a local file for `model` and return its `oss://` URL (valid 48 h, for that model only).

        The temporary-upload flow: get a policy from the API, then a multipart POST to the policy's
        upload host, which never receives the API key. Beijing only.
        """
        local = Path(os.fspath(path).removeprefix("file://"))
        if not local.is_file():
            raise FileNotFoundError(f"no such file to upload: {str(local)!r}")
        shared = _shared_region(self.region)
        if self.backend == "dashscope" and shared is not None and self.base_url == shared.base_url:
            if not shared.supports_upload:
                raise ConfigurationError(
                    f"temporary file upload exists only in the Beijing region, not {self.region}; "
                    "pass ref_img as an http(s) URL instead"
                )
        try:
            wire_model = get_model(model).wire_name(self.region)
        except KeyError:
            wire_model = model
        policy_response = await self._request(
            build_policy(wire_model, workspace=self.workspace), kind="read"
        )
        policy = parse_policy(self._json(policy_response))
        content = await asyncio.to_thread(local.read_bytes)
        content_type = mimetypes.guess_type(local.name)[0]
        key, fields = upload_form(policy, local.name, content_type)
        files = {"file": (local.name, content, content_type or "application/octet-stream")}
        wire = WireRequest("POST", policy.upload_host, {"Accept": "application/json"})
        try:
            await self._request(wire, kind="read", http=self._files, data=fields, files=files)
        except APIStatusError as exc:
            # The object key is unique per policy, so "already exists" means an earlier attempt landed.
            if not (exc.status_code == 409 and exc.code == "FileAlreadyExists"):
                raise
        log.debug("uploaded %s for %s as oss://%s", local.name, wire_model, key)
        return f"oss://{key}"

    async def download(self, url: str, *, expect: tuple[int, int] | None = None) -> bytes:
        """The image at a result URL, checked: a whole PNG, JPEG or WebP (of `expect` = (width, height)).

        Sent without the API key. 5xx answers, dropped connections and cut-off bodies (fewer bytes than
        Content-Length, or an image that stops before its format's end) are retried with backoff.
        The image is checked from its header and ending, never decoded: one over MAX_IMAGE_PIXELS
        (a decompression bomb) is refused. Raises ImageExpiredError when the URL expired (they live
        24 h), InvalidImageError for bytes that are not the promised image, DownloadError otherwise.
        """
        where = short_url(url)
        attempt = 0
        while True:
            try:
                response = await self._request(WireRequest("GET", url), kind="read", http=self._files)
            except APIError as exc:
                raise download_error(exc, where) from exc
            data = response.content
            try:
                check_length(response, len(data))
                check_image(data, expect=expect)
                return data
            except ImageCheckError as exc:
                if not exc.truncated:
                    raise InvalidImageError(f"{where} is {exc}", url=where, status=response.status_code) from None
                problem = str(exc)
            if attempt >= self.max_retries:
                raise InvalidImageError(
                    f"{where} was still cut off after {attempt + 1} downloads ({problem}); the image was billed: "
                    "`%wanx resume` downloads it again while its URL lives (24 h)",
                    url=where, status=response.status_code,
                )
            delay = retry_delay(attempt, rng=self._rng.random) or 0.0
            log.debug(
                "retrying GET %s: %s, in %.2fs (retry %d of %d)", where, problem, delay, attempt + 1, self.max_retries
            )
            await self._sleep(delay)
            attempt += 1

    async def fetch(self, image: ImageResult, *, expect: tuple[int, int] | None = None) -> None:
        """Download a billed image into `image.data`; on failure set `download_error`/`download_code`.

        For a resume: a succeeded task's images that were not downloaded (`image.missing`) can be
        fetched again while their URLs live (24 h). The service's own fields are left as they are.
        """
        if image.url is None:
            raise ValueError(f"image {image.index} has no URL to download ({image.code}: {image.message})")
        try:
            image.data = await self.download(image.url, expect=expect)
        except DownloadError as exc:
            image.download_error, image.download_code = exc.message, exc.code
        else:
            image.download_error = image.download_code = None

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
        journal already knows), and matches what the service reports: the creation time and, where a
        task's record names it, the prompt (see `_reconcile`). Nothing is created or cancelled.
        Returns a Reconciliation: the task to adopt, certainly none, or "cannot tell" (try again later).
        """
        for name, value in (("sent_after", sent_after), ("sent_before", sent_before)):
            if not isinstance(value, dt.datetime) or value.tzinfo is None:
                raise ValueError(f"{name} must be an aware datetime (e.g. in UTC), got {value!r}")
        model = get_model(request.model).name
        after, before = sent_after.astimezone(dt.timezone.utc), sent_before.astimezone(dt.timezone.utc)
        window = f"between {after:%Y-%m-%d %H:%M:%S} and {before:%H:%M:%S} UTC"
        now = dt.datetime.fromtimestamp(self._wall(), dt.timezone.utc)
        if (now - sent_before).total_seconds() > TASK_TTL_SECONDS:
            return Reconciliation(
                None, False, (), f"the create was sent {window}, over 24 h ago: the service no longer lists its tasks"
            )
        start, end = list_window(sent_after, sent_before)
        rows: list[Task] = []
        try:
            for page_no in range(1, _RECONCILE_MAX_PAGES + 1):
                page = await self.list_tasks(
                    page_no=page_no, page_size=_RECONCILE_PAGE_SIZE, start_time=start, end_time=end, model_name=model
                )
                rows.extend(page.items)
                if not page.items or page_no >= page.total_page:
                    break
            ids = in_window(rows, model, sent_after=sent_after, sent_before=sent_before, exclude=exclude)
            if len(ids) > _RECONCILE_MAX_CANDIDATES:
                return Reconciliation(None, False, tuple(ids), f"{len(ids)} tasks of {model} were created {window}")
            tasks = [await self.get_task(task_id) for task_id in ids]
        except WanxError as exc:
            return Reconciliation(None, False, (), f"the account's tasks could not be read ({exc.message}); try later")
        return decide(request, tasks, window=window)

    async def generate(
        self,
        request: GenerationRequest,
        *,
        timeout: float | None = None,
        on_submitted: OnSubmitted | None = None,
        on_status: OnStatus | None = None,
        on_sending: OnSending | None = None,
    ) -> GenerationResult:
        """Submit, wait and download every image. Raises when the task did not produce images.

        Keeps to the model's submit rate and concurrency (a slot is held from before the submit until
        the task ends). `on_sending(prepared_request)` runs right before the create is sent (seed
        picked, reference uploaded): the place to write the request down; raising there aborts with
        nothing sent. `on_submitted(task, sent_request)` runs the moment the task exists;
        `on_status(task)` after every poll. A FAILED task raises TaskFailedError (the server's code
        and message), CANCELED TaskCanceledError, UNKNOWN TaskUnknownError; a create that may have
        reached the service unanswered raises SubmitOutcomeUnknownError (with the prepared request).
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
                await _call(on_sending, prepared)
                final = await self._call_sync(prepared, spec, protocol)
            return await self._finish(final, prepared, warnings, start)
        async with self._scheduler.slot(spec.name, spec.concurrency) as slot:
            await self._scheduler.submit_turn(spec.name, limits)
            await _call(on_sending, prepared)
            submission = await _uncancellable(
                self._create_and_report(prepared, warnings, on_submitted, turn_taken=True)
            )
            expectation = self._expect.get(submission.task_id)
            if expectation is not None:  # queued behind our own tasks? then it starts when they end
                expected = self._durations.expected(expectation.model, expectation.base)
                slot.submitted(submission.task_id, expectation.submitted_at, expected)
            final = await self.wait(submission.task, timeout=timeout, on_status=on_status)
        result = await self._finish(final, prepared, warnings, start)
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
        await _call(on_submitted, submission.task, prepared)
        return submission

    async def collect(
        self,
        task: Task | Submission | str,
        request: GenerationRequest,
        *,
        timeout: float | None = None,
        on_status: OnStatus | None = None,
    ) -> GenerationResult:
        """Wait for an existing task (e.g. one written ahead before a restart) and download its images.

        `request` is the request as it was sent (for seeds and sizes). Raises like `generate()`.
        """
        start = self._clock()
        task_id = _task_id(task)
        if task_id not in self._expect:
            with contextlib.suppress(KeyError):
                spec = get_model(request.model)
                base = spec.expected_seconds(request.effective_prompt_extend) * self._time_scale
                self._expect[task_id] = _Expectation(spec.name, base, start, resumed=True)
        final = await self.wait(task, timeout=timeout, on_status=on_status)
        return await self._finish(final, request, [], start)

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
            await _call(on_result, index, outcome)
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
        spec = get_model(request.model)
        protocol = preferred_protocol(spec)
        wire_model = spec.wire_name(self.region)
        if protocol is Protocol.T2I:
            wire = build_create(request, wire_model=wire_model, workspace=self.workspace)
        else:  # image-generation: the messages body, polled at /tasks/{id} like the legacy task
            wire = build_image_create(request, protocol, wire_model=wire_model, workspace=self.workspace)
        submitted_at = self._clock()
        sends: list[float] = []  # wall time of each attempt: the last one bounds an unknown outcome
        try:
            response = await self._request(wire, kind="submit", spec=spec, sends=sends, turn_taken=turn_taken)
        except Unanswered as lost:
            raise self._outcome_unknown(request, sends, lost.cause, lost.status, lost.request_id) from lost.__cause__
        try:
            task = self._parse_task(response)
        except APIError as exc:  # a 2xx without a readable task: it may exist all the same
            cause = f"HTTP {response.status_code} but {exc.message}"
            raise self._outcome_unknown(request, sends, cause, response.status_code, None) from exc
        if TIME_SCALE_HEADER in response.headers:
            # A served emulator runs tasks at this fraction of the real durations: expect those.
            self._time_scale = float(response.headers[TIME_SCALE_HEADER])
        base = spec.expected_seconds(request.effective_prompt_extend) * self._time_scale
        if len(self._expect) > 1000:
            self._expect.pop(next(iter(self._expect)))
        self._expect[_task_id(task)] = _Expectation(spec.name, base, submitted_at)
        log.debug("created task %s (%s)", task.task_id, request.summary())
        return Submission(task, request, tuple(warnings))

    async def _call_sync(self, request: GenerationRequest, spec: ModelSpec, protocol: Protocol) -> Task:
        """One synchronous call (no task id, never the async header): the answer holds the images.

        Its answer lost after sending (a timeout, a drop, a 5xx other than 503, an unreadable 2xx) is a
        SyncOutcomeUnknownError: billed or not is unknown and a sync call cannot be looked up, so it is
        never sent again. A refusal (4xx, 429/503 after the retries) means nothing was made.
        """
        wire = build_image_create(request, protocol, wire_model=spec.wire_name(self.region), workspace=self.workspace)
        sends: list[float] = []
        timeout = max(_SYNC_TIMEOUT, self._http.timeout.read or 0.0)
        try:
            response = await self._request(
                wire, kind="submit", spec=spec, sends=sends, timeout=timeout, turn_taken=True
            )
        except Unanswered as lost:
            raise self._outcome_unknown(
                request, sends, lost.cause, lost.status, lost.request_id, sync=True
            ) from lost.__cause__
        if TIME_SCALE_HEADER in response.headers:
            self._time_scale = float(response.headers[TIME_SCALE_HEADER])
        try:
            task = parse_sync_result(self._json(response), emulator=EMULATOR_HEADER in response.headers)
        except APIError as exc:
            if exc.code != "InvalidResponse":  # a business error in a 200: the service refused the call
                raise
            cause = f"HTTP {response.status_code} but {exc.message}"
            raise self._outcome_unknown(request, sends, cause, response.status_code, None, sync=True) from exc
        log.debug("sync call answered (%s, request %s)", request.summary(), task.request_id)
        return task

    def _outcome_unknown(
        self,
        request: GenerationRequest,
        sends: list[float],
        cause: str,
        status: int | None,
        request_id: str | None,
        *,
        sync: bool = False,
    ) -> SubmitOutcomeUnknownError:
        def utc(wall: float) -> dt.datetime:
            return dt.datetime.fromtimestamp(wall, dt.timezone.utc)

        log.debug("not retrying the create of %s: %s; a task may exist", request.model, cause)
        error_type = SyncOutcomeUnknownError if sync else SubmitOutcomeUnknownError
        return error_type(
            request.model, request, sent_after=utc(sends[-1]), sent_before=utc(self._wall()), cause=cause,
            status=status, request_id=request_id,
        )

    async def _finish(
        self, final: Task, request: GenerationRequest, warnings: list[str], start: float
    ) -> GenerationResult:
        match final.status:
            case TaskStatus.SUCCEEDED:
                pass
            case TaskStatus.FAILED:
                raise TaskFailedError(_task_id(final), "FAILED", final.code, final.message or "", final.request_id)
            case TaskStatus.CANCELED:
                raise TaskCanceledError(_task_id(final), "CANCELED", final.code, final.message or "", final.request_id)
            case TaskStatus.UNKNOWN:
                raise TaskUnknownError(
                    _task_id(final),
                    "UNKNOWN",
                    None,
                    "the service does not know this task: the id is wrong, or it is older than 24 h",
                    final.request_id,
                )
            case TaskStatus.PENDING | TaskStatus.RUNNING | TaskStatus.SUSPENDED:  # pragma: no cover
                raise AssertionError(f"task {final.task_id} is not finished ({final.status.value})")
        images = image_results(final, request)
        await asyncio.gather(*(self.fetch(im, expect=parse_size(im.size)) for im in images if im.ok and im.url))
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

    def _learn(self, task_id: str, task: Task, origin: float) -> None:
        expectation = self._expect.pop(task_id, None)
        if expectation is None or task.status is not TaskStatus.SUCCEEDED:
            return
        started, ended = parse_server_time(task.scheduled_time), parse_server_time(task.end_time)
        if started is not None and ended is not None:
            observed = (ended - started).total_seconds()  # both on the server's clock
        elif not expectation.resumed:
            observed = self._clock() - origin  # an upper bound: includes our polling lag
        else:
            return
        self._durations.observe(expectation.model, expectation.base, observed)

    # ---- internals: HTTP -----------------------------------------------------------------------

    def _parse_task(self, response: httpx.Response) -> Task:
        return parse_task(self._json(response), emulator=EMULATOR_HEADER in response.headers)

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        body = parse_json(response.content)
        if body is None:
            raise APIError(
                f"unexpected response to {response.request.method} {response.request.url.path}: "
                f"HTTP {response.status_code} but not JSON ({response.headers.get('content-type', 'no content type')})",
                code="InvalidResponse",
                method=response.request.method,
                url=str(response.request.url),
            )
        return body

    async def _request(
        self,
        wire: WireRequest,
        *,
        kind: Kind,
        http: httpx.AsyncClient | None = None,
        task_id: str | None = None,
        spec: ModelSpec | None = None,
        query: bool = False,
        data: dict[str, str] | None = None,
        files: dict[str, Any] | None = None,
        sends: list[float] | None = None,
        timeout: float | None = None,
        turn_taken: bool = False,
    ) -> httpx.Response:
        """Send with the retry rules of `kind`; returns a 2xx response or raises a typed error.

        A submit that may have reached the service without a usable answer raises `Unanswered`
        (`_create` turns it into SubmitOutcomeUnknownError); `sends` collects each attempt's wall time.
        `turn_taken`: the caller already waited for this submit's turn (retries wait for their own).
        """
        if self._closed:
            raise RuntimeError("this client is closed; create a new one")
        http = http or self._http
        retry_rule = should_retry_read if kind == "read" else should_retry_submit
        what = f"{wire.method} {short_url(wire.path)}"
        attempt = 0
        while True:
            if spec is not None and (attempt or not turn_taken):
                await self._scheduler.submit_turn(spec.name, submit_limits(spec, self.region))
            if query:
                await self._scheduler.query_turn()
            if sends is not None:
                sends.append(self._wall())
            try:
                extra: dict[str, Any] = {}
                if timeout is not None:
                    extra["timeout"] = httpx.Timeout(timeout, connect=self._http.timeout.connect)
                response = await http.request(
                    wire.method, wire.path, headers=wire.headers, params=wire.params, json=wire.json,
                    data=data, files=files, **extra,
                )
            except httpx.HTTPError as exc:
                failure = classify(exc)
                if retry_rule(failure=failure) and attempt < self.max_retries:
                    delay = retry_delay(attempt, rng=self._rng.random) or 0.0
                    log.debug(
                        "retrying %s after %s (%s) in %.2fs (retry %d of %d)",
                        what, type(exc).__name__, failure.value, delay, attempt + 1, self.max_retries,
                    )
                    await self._sleep(delay)
                    attempt += 1
                    continue
                if kind == "submit" and failure is Failure.AFTER_SENT:
                    raise Unanswered(f"{type(exc).__name__} after the request was sent") from exc
                log.debug("giving up %s after %s (%d retries)", what, type(exc).__name__, attempt)
                url = str(exc.request.url) if has_request(exc) else wire.path
                raise connection_error(exc, wire.method, url, task_id, sent=failure is not Failure.NOT_SENT) from exc

            if response.is_success:
                # httpx binds the response's stream back to the response (a reference cycle): detached,
                # the body (an image: 100s of kB) is freed with its last reference, not at a later cyclic GC.
                response.stream = httpx.ByteStream(b"")
                return response
            status = response.status_code
            retry_after = parse_retry_after(response.headers, now=self._wall())
            error = status_error(
                status, response.content, response.headers,
                method=wire.method, url=str(response.request.url), task_id=task_id, retry_after=retry_after,
            )
            if retry_rule(status) and attempt < self.max_retries:
                backoff = retry_delay(attempt, retry_after=retry_after, rng=self._rng.random)
                if backoff is not None:
                    log.debug(
                        "retrying %s after %d %s in %.2fs%s (retry %d of %d)",
                        what, status, error.code or "", backoff, " (Retry-After)" if retry_after is not None else "",
                        attempt + 1, self.max_retries,
                    )
                    if kind == "submit" and status == 429 and spec is not None:
                        self._scheduler.throttled(spec.name, backoff)  # the next submit_turn waits it out
                    else:
                        await self._sleep(backoff)
                    attempt += 1
                    continue
                log.debug("not retrying %s: Retry-After %.0fs is over the cap", what, retry_after)
            elif retry_rule(status):
                log.debug("giving up %s after %d %s (%d retries)", what, status, error.code or "", attempt)
            if kind == "submit" and status >= 500 and status != 503:
                # A 500 can come after the task was created, a 502/504 from a gateway that gave up
                # waiting for a service that went on. 503 is the service refusing work before any
                # task exists (ServiceUnavailable / ModelUnavailable, retried above, as the SDK does).
                raise Unanswered(f"HTTP {status} {error.code or ''}".rstrip(), status, error.request_id) from error
            raise error


def _region_name(name: str) -> tuple[str, bool]:
    """(region name, whether it has a shared domain); a ConfigurationError naming the regions otherwise."""
    try:
        return get_region(name).name, True
    except KeyError:
        if name.lower() in WORKSPACE_REGIONS:
            return name.lower(), False
    known = ", ".join(dict.fromkeys(("beijing", "singapore", "virginia", *WORKSPACE_REGIONS)))
    raise ConfigurationError(f"unknown region {name!r}; use one of {known}") from None


def _task_id(task: Task | Submission | str) -> str:
    """The id of a task that has one. A sync call's answer has none, and as it is terminal and
    SUCCEEDED it is never polled, looked up or failed: reaching here with one is a bug."""
    if isinstance(task, Submission):
        task = task.task
    task_id = task if isinstance(task, str) else task.task_id
    if task_id is None:
        raise ValueError(f"{task!r} has no task id: a synchronous call's answer cannot be polled")
    return task_id


def _shared_region(name: str) -> Region | None:
    try:
        return get_region(name)
    except KeyError:
        return None


async def _uncancellable(coro: Awaitable[T]) -> T:
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


async def _call(callback: Callable[..., Any] | None, *args: Any) -> None:
    if callback is None:
        return
    result = callback(*args)
    if inspect.isawaitable(result):
        await result


def _default_emulator() -> InProcessService:
    global _emulator_notice_logged
    from .emulator import default_emulator

    if not _emulator_notice_logged:
        _emulator_notice_logged = True
        log.info(
            "wanx_nb: no DashScope API key found (%s), so the offline emulator answers every call; "
            "its images are placeholders. Set %s to use the real service.",
            ENV_API_KEY, ENV_API_KEY,
        )
    return default_emulator()
