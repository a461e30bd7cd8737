"""Every error wanx_nb raises, as one tree.

- WanxError
  - ValidationError (also a ValueError): the request breaks the model's rules; nothing was sent.
  - ConfigurationError: a missing or contradictory setting (no key for the real service, bad region...).
  - BudgetExceededError: the pre-flight cost estimate exceeds the configured budget; nothing was sent.
  - ReplayMissError: replay mode has no recording of this request; nothing was sent.
  - APIError: talking to the service failed.
    - APIConnectionError: the request never completed (DNS, refused, reset).
      - APITimeoutError: the request timed out.
    - SubmitOutcomeUnknownError: a create may have reached the service without a usable answer (timeout
      or drop after sending, 5xx other than 503, unreadable 2xx); a task may exist. Never retried:
      `%wanx resume` reconciles it.
      - SyncOutcomeUnknownError: a synchronous call (no task id) lost its answer: billed or not is
        unknown, it cannot be looked up, and it is not retried.
    - DownloadError: a billed image could not be downloaded from its result URL.
      - ImageExpiredError: the result URL expired (24 h); the image is gone.
      - InvalidImageError: the bytes are not the promised image (not an image, cut off, wrong size, too large).
    - APIStatusError: the service answered with an error status and code.
      - BadRequestError (400)
        - ContentInspectionError: DataInspectionFailed / IPInfringementSuspect.
        - UnsupportedOperationError: e.g. cancelling a task that is not PENDING.
      - AuthenticationError (401)
      - PermissionDeniedError (403)
      - NotFoundError (404)
      - RateLimitError (429)
      - ServerError (5xx)
  - TaskError: a task ended without the images.
    - TaskFailedError: the task FAILED (its code and message are the server's).
    - TaskCanceledError: the task was CANCELED.
    - TaskUnknownError: the server does not know the task (wrong id, or older than 24 h).
  - WaitTimeoutError: our own deadline for a task passed; the task may still finish.

Every error has `code`, `message`, `request_id`, `status` (HTTP status or None), `task_id`, `sent`
(did anything reach the service) and `billed` (True, False, or None: unknown), so callers never need
getattr. A task's own state is `task_status` on TaskError and WaitTimeoutError. Status errors keep
the response's `status_code`, `headers` and `body`; never the request, whose headers hold the key.
The server's message is kept verbatim (Chinese kept). No error ever holds the API key: messages are
built from server fields and our own text only, and `redact()` scrubs anything that looks like a key
as a last line of defence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Protocol

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ConfigurationError",
    "ContentInspectionError",
    "DownloadError",
    "ImageExpiredError",
    "InvalidImageError",
    "NotFoundError",
    "PermissionDeniedError",
    "Problem",
    "RateLimitError",
    "ReplayMissError",
    "ReuseUnfinishedError",
    "RunInterruptedError",
    "RunTimeoutError",
    "ServerError",
    "StoreError",
    "SubmitOutcomeUnknownError",
    "SyncOutcomeUnknownError",
    "TaskCanceledError",
    "TaskError",
    "TaskFailedError",
    "TaskNotCreatedError",
    "TaskUnfinishedError",
    "TaskUnknownError",
    "UnsupportedOperationError",
    "ValidationError",
    "WaitTimeoutError",
    "WanxError",
    "make_status_error",
    "redact",
]

class _Unset:
    """The type of _UNSET: "not given", where None is a meaningful value."""


_UNSET: Final = _Unset()

_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-]{6,}")


def redact(text: str) -> str:
    """Replace anything shaped like a DashScope key (`sk-...`) with `sk-***`."""
    return _KEY_PATTERN.sub("sk-***", text)


class WanxError(Exception):
    """Base class of every wanx_nb error.

    Every error has the same attributes, so callers never need getattr: `code` (the server's or
    ours), `message` (the full text), `request_id`, `status` (the HTTP status, or None), `task_id`
    (None where there is none), `sent` (did anything of this call reach the service) and `billed`
    (True / False, or None when it cannot be known yet). Class defaults; instances override them.
    """

    code: str | None = None
    request_id: str | None = None
    status: int | None = None
    task_id: str | None = None
    sent: bool = False
    billed: bool | None = None

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))

    @property
    def message(self) -> str:
        return str(self)


class Problem:
    """One broken rule: the parameter, the bad value and what is allowed."""

    __slots__ = ("param", "value", "allowed")

    def __init__(self, param: str, value: object, allowed: str) -> None:
        self.param, self.value, self.allowed = param, value, allowed

    def __str__(self) -> str:
        return f"{self.param}={self.value!r}: {self.allowed}"

    def __repr__(self) -> str:
        return f"Problem({self.param!r}, {self.value!r}, {self.allowed!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Problem) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


# What a ValidationError is about when its "model" names no model: a grid's own options.
_NOT_A_MODEL = {"grid": "grid", "compare": "comparison"}


class ValidationError(WanxError, ValueError):
    """The request breaks the model's rules. Raised before anything is sent."""

    billed = False

    def __init__(self, model: str, problems: list[Problem]) -> None:
        self.model = model  # or "grid"/"compare": a grid's own options are wrong, not one model's request
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        plural = "s" if len(self.problems) > 1 else ""
        what = _NOT_A_MODEL.get(model, f"request for model {model!r}")
        super().__init__(f"invalid {what} ({len(self.problems)} problem{plural}):\n{lines}")


class ConfigurationError(WanxError):
    """A setting is missing or contradicts another."""

    billed = False


class BudgetExceededError(WanxError):
    """The run would cost more than the budget allows. Raised before anything is sent."""

    billed = False

    def __init__(self, estimate: float, remaining: float, budget: float) -> None:
        self.estimate, self.remaining, self.budget = estimate, remaining, budget
        super().__init__(
            f"this run would cost about ¥{estimate:.2f}, but only ¥{remaining:.2f} of the ¥{budget:.2f} budget "
            "is left; nothing was sent. Raise it with `%config WanxMagics.budget_yuan = ...` or "
            "WANX_NB_BUDGET_YUAN, or set it to 0 to turn the budget off."
        )


class ReuseUnfinishedError(WanxError):
    """`reuse` found this request sent by an earlier run and not finished: its task may be billed and
    its images not saved yet. Sent again it would be paid twice, so nothing was sent."""

    code = "ReuseUnfinished"
    billed = False

    def __init__(self, summary: str, task_id: str | None) -> None:
        self.task_id = task_id
        which = f"task {task_id}" if task_id else "its create, whose answer was lost,"
        super().__init__(
            f"an earlier run sent this request ({summary}) and {which} is not finished in the store's journal; "
            "nothing was sent. Resume first (`%wanx resume`, `wanx-nb resume` or `Session.resume()`), then run it "
            "again with reuse: it is shown from the store without paying again"
        )


class ReplayMissError(WanxError):
    """Replay mode found no recording for a request. Nothing was sent."""

    billed = False

    def __init__(self, key: str, summary: str) -> None:
        self.key = key
        super().__init__(
            f"replay mode has no recording of this request ({summary}; key {key[:12]}); nothing was sent. "
            "Record it first with mode 'record' (WANX_NB_MODE=record), or switch to 'live'."
        )


class APIError(WanxError):
    """Talking to the service failed. `sent`: the request (or a part of it) reached the network.

    `billed` defaults to False when no task is concerned, and None (unknown) when one is.
    """

    sent = True

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        request_id: str | None = None,
        task_id: str | None = None,
        method: str | None = None,
        url: str | None = None,
        status: int | None = None,
        sent: bool | None = None,
        billed: bool | None | _Unset = _UNSET,
    ) -> None:
        self.code = code if code is not None else type(self).code
        self.request_id = request_id
        self.task_id = task_id
        self.method = method
        self.url = url
        self.status = status
        if sent is not None:
            self.sent = sent
        self.billed = (None if task_id else False) if isinstance(billed, _Unset) else billed
        super().__init__(message)


class APIConnectionError(APIError):
    """The request never completed: the server could not be reached or the connection broke.

    `sent` is False when the connection was never made (nothing reached the service).
    """


class APITimeoutError(APIConnectionError):
    """The request timed out."""


class SubmitOutcomeUnknownError(APIError):
    """A create may have reached the service but gave no usable answer: a task may exist and be billed.

    Raised for a read timeout or a connection dropped after sending, a 5xx other than 503, and a 2xx
    whose body is not JSON or has no task id. It is never retried (a second create could be a second
    billed task); `%wanx resume` reconciles it (`AsyncWanxClient.reconcile` lists the account's tasks
    for `model` created between `sent_after` and `sent_before`). `request` is the request as sent
    (seed set, reference image uploaded); `cause` says what happened.
    """

    code = "SubmitOutcomeUnknown"
    billed = None

    def __init__(
        self,
        model: str,
        request: Any,
        *,
        sent_after: datetime,
        sent_before: datetime,
        cause: str,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        self.model = model
        self.request = request
        self.sent_after = sent_after
        self.sent_before = sent_before
        self.cause = redact(cause)
        window = f"{sent_after:%Y-%m-%d %H:%M:%S} and {sent_before:%H:%M:%S} UTC"
        super().__init__(
            f"the create for model {model!r} may have reached the service ({self.cause}), so a task may exist and "
            f"be billed. It was not sent again: a second create could be a second billed task. Run `%wanx resume` "
            f"(Python: Session.resume(); CLI: wanx-nb resume): it looks for the task among the account's tasks "
            f"created between {window} and saves its images.",
            status=status,
            request_id=request_id,
            billed=None,
        )


class DownloadError(APIError):
    """An image the service produced (and billed) could not be downloaded from its result URL.

    The task's other fields stay valid; `%wanx resume` downloads it again while its URL lives (24 h).
    """

    code = "DownloadFailed"
    billed = True

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        task_id: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(
            message, code=code, url=url, status=status, request_id=request_id, task_id=task_id, method="GET",
            billed=True,
        )


class ImageExpiredError(DownloadError):
    """The result URL expired (they live 24 h): the image cannot be downloaded any more."""

    code = "ImageExpired"


class InvalidImageError(DownloadError):
    """The bytes are not the promised image: not an image, cut off, other dimensions, or too large."""

    code = "InvalidImage"


class APIStatusError(APIError):
    """The service answered with an error status. `headers` and `body` are the response's."""

    status_code: int = 0

    def __init__(
        self,
        status_code: int,
        code: str | None,
        server_message: str,
        *,
        request_id: str | None = None,
        task_id: str | None = None,
        method: str | None = None,
        url: str | None = None,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
        body: str = "",
    ) -> None:
        self.status_code = status_code
        self.server_message = server_message
        self.retry_after = retry_after
        self.headers = dict(headers or {})
        self.body = redact(body)
        where = f" on {method} {_path(url)}" if method and url else ""
        rid = f" (request_id={request_id!r})" if request_id else ""
        hint = _HINTS.get(status_code, "")
        super().__init__(
            f"{status_code} {code or 'error'}{where}{rid}: {server_message}{hint}",
            code=code,
            request_id=request_id,
            task_id=task_id,
            method=method,
            url=url,
            status=status_code,
        )


class BadRequestError(APIStatusError):
    """400: the service rejected the request."""


class ContentInspectionError(BadRequestError):
    """400 DataInspectionFailed or IPInfringementSuspect: the content check refused the input."""


class UnsupportedOperationError(BadRequestError):
    """400 UnsupportedOperation: e.g. cancelling a task that is no longer PENDING."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or invalid (or belongs to another region)."""


class PermissionDeniedError(APIStatusError):
    """403: the account may not do this (model not activated, arrears, workspace...)."""


class NotFoundError(APIStatusError):
    """404: the model or workspace does not exist."""


class RateLimitError(APIStatusError):
    """429: too many requests, or a quota is used up."""


class ServerError(APIStatusError):
    """5xx: the service failed; retrying later may work."""


_HINTS = {
    401: " (check DASHSCOPE_API_KEY; Beijing and Singapore keys are not interchangeable)",
}

_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}
_BY_CODE: dict[str, type[APIStatusError]] = {
    "DataInspectionFailed": ContentInspectionError,
    "IPInfringementSuspect": ContentInspectionError,
    "UnsupportedOperation": UnsupportedOperationError,
    "InvalidApiKey": AuthenticationError,
}


def make_status_error(
    status_code: int,
    code: str | None,
    message: str,
    *,
    request_id: str | None = None,
    task_id: str | None = None,
    method: str | None = None,
    url: str | None = None,
    retry_after: float | None = None,
    headers: Mapping[str, str] | None = None,
    body: str = "",
) -> APIStatusError:
    """The most specific APIStatusError for an error response: by code first, then by status."""
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status_code)
    if cls is None:
        cls = ServerError if status_code >= 500 else APIStatusError
    return cls(
        status_code, code, message, request_id=request_id, task_id=task_id, method=method, url=url,
        retry_after=retry_after, headers=headers, body=body,
    )


class TaskError(WanxError):
    """A task ended without producing the images. Failed and canceled tasks are not billed."""

    sent = True
    billed: bool | None = False  # a subclass may not know (TaskUnknownError)

    def __init__(self, task_id: str, status: str, code: str | None, message: str, request_id: str | None = None) -> None:
        # `status` is the HTTP status on every error (None here); the task's own state is `task_status`.
        self.task_id, self.task_status, self.code, self.request_id = task_id, status, code, request_id
        self.server_message = message
        super().__init__(f"task {task_id} {status}" + "".join(f": {part}" for part in (code, message) if part))


class TaskFailedError(TaskError):
    """The task FAILED; `code` and `message` are the server's."""


class TaskCanceledError(TaskError):
    """The task was CANCELED."""


class TaskUnknownError(TaskError):
    """The server does not know the task: a wrong id, or older than its 24 h retention."""

    billed = None


class WaitTimeoutError(WanxError):
    """Our deadline for a task passed. The task may still finish: wait on it again or cancel it."""

    code = "WaitTimeout"
    sent = True

    def __init__(self, task_id: str, elapsed: float, status: str) -> None:
        self.task_id, self.elapsed, self.task_status = task_id, elapsed, status
        super().__init__(
            f"task {task_id} still {status} after {elapsed:.1f}s; it may still finish: "
            f"wait on it again, or cancel it while it is PENDING"
        )


def _path(url: str | None) -> str:
    if not url:
        return ""
    # Keep the path only: hosts and query strings (signatures) do not belong in messages.
    from urllib.parse import urlsplit

    return urlsplit(url).path or url


# ---- the outcomes of a Run (wanx_nb._run) ------------------------------------------------------------


class TaskUnfinishedError(WanxError):
    """A task that was sent, and may be billed, whose images are not all saved yet.

    Kept in the store's journal: `%wanx resume` (or `Session.resume()`, `wanx-nb resume`) finishes it
    within the service's 24 h without sending it again. `task_id` is None when the create's outcome is
    unknown (resume then looks the task up in the service's task list).
    """

    sent = True
    billed = None  # unknown until the service's final word

    def __init__(self, task_id: str | None, detail: str, *, code: str | None = None) -> None:
        what = f"task {task_id}" if task_id else "the request (its create may have made a task)"
        super().__init__(
            f"{detail.rstrip('.')}. {what} is kept in the store's journal: run `%wanx resume` (or "
            "`Session.resume()`, `wanx-nb resume`) to save its images without paying again; do not re-run the cell"
        )
        self.task_id = task_id
        self.code = code or "Unfinished"


class TaskNotCreatedError(WanxError):
    """A create whose outcome was unknown, now known to have made no task: nothing was billed."""

    code = "NotCreated"
    sent = True
    billed = False


class RunSummaryView(Protocol):
    """What a run's stop error carries of the run (`_run_events.RunSummary`, a layer this one does not import)."""

    @property
    def requests(self) -> int: ...
    @property
    def phases(self) -> dict[str, int]: ...
    @property
    def billed_images(self) -> int: ...
    @property
    def saved_images(self) -> int: ...
    @property
    def cost_yuan(self) -> float: ...
    @property
    def unfinished(self) -> tuple[str, ...]: ...  # task ids (or entry ids) that resume will finish
    @property
    def canceled(self) -> tuple[str, ...]: ...
    @property
    def still_running(self) -> tuple[str, ...]: ...
    @property
    def recovery(self) -> str | None: ...
    def text(self) -> str: ...


class RunTimeoutError(WanxError):
    """A run's own deadline passed. PENDING tasks were canceled; running ones are kept for resume."""

    code = "RunTimeout"
    billed = None  # `summary` says what was billed and what is kept for resume

    def __init__(self, seconds: float, summary: RunSummaryView) -> None:
        super().__init__(f"stopped waiting after {seconds:g} s: {summary.text()}")
        self.summary = summary


class RunInterruptedError(KeyboardInterrupt):
    """Ctrl-C (a kernel interrupt) during a run: what was canceled, what is kept for resume.

    IPython shows `_render_traceback_()` instead of a traceback: the cell still stops (a queued
    "run all" does not go on), but the user sees only what happened and what to do.
    """

    def __init__(self, summary: RunSummaryView) -> None:
        super().__init__(f"interrupted: {summary.text()}")
        self.summary = summary

    def _render_traceback_(self) -> list[str]:
        return [redact(str(self.args[0]))]


class StoreError(WanxError):
    """The local store cannot be used as it is (unwritable, damaged index, full disk...). `sent = False`:
    raised by the pre-flight check, it means nothing was sent; raised later, the message names the
    recovery (the journal keeps what was paid for wherever it still can).
    """

    sent = False
    billed = False

    def __init__(self, root: str, problem: str, remedy: str) -> None:
        self.root, self.problem, self.remedy = root, problem, remedy
        super().__init__(f"store {root}: {problem}; {remedy}")



class SyncOutcomeUnknownError(SubmitOutcomeUnknownError):
    """A synchronous call (a sync-only model: no task id) was sent and its answer was lost.

    Whether the service made and billed the images is unknown, and unlike a task a sync call cannot be
    looked up afterwards. It is not retried (a second call could be a second bill); the journal keeps
    the request as OUTCOME_UNKNOWN and resume reports it without sending it again.
    """

    code = "SyncOutcomeUnknown"
    billed = None

    def __init__(
        self,
        model: str,
        request: Any,
        *,
        sent_after: datetime,
        sent_before: datetime,
        cause: str,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(
            model, request, sent_after=sent_after, sent_before=sent_before, cause=cause, status=status,
            request_id=request_id,
        )
        window = f"{sent_after:%Y-%m-%d %H:%M:%S} and {sent_before:%H:%M:%S} UTC"
        self.args = (
            redact(
                f"the synchronous call to {model!r} was sent between {window} and its answer was lost "
                f"({self.cause}): billed or not is unknown, and a sync call cannot be looked up (it has no "
                "task id). It was not retried: a second call could be billed again. Check the bill in the "
                "Model Studio console before sending it again yourself."
            ),
        )
