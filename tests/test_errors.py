"""Errors as an API: every WanxError has the same attributes, with values a caller can act on.

`code`, `message`, `request_id`, `status` (HTTP or None), `task_id`, `sent` (did anything reach the
service) and `billed` (True / False / None: unknown) exist on every class, so no caller needs getattr;
the values below are the ones recovery decides by (a billed-or-unknown error must not be retried).
"""

from __future__ import annotations

import datetime as dt

from types import SimpleNamespace

import pytest

from wanx_nb import _exceptions as ex
from wanx_nb._exceptions import Problem, WanxError, make_status_error

CANARY = "sk-" + "canary" + "0123456789abcdefXYZ"  # built at run time: no real-looking literal key
NOW = dt.datetime(2026, 1, 1, 8, 0, tzinfo=dt.timezone.utc)


def _status(cls: type[ex.APIStatusError], status: int, code: str | None = None, **kw: object) -> ex.APIStatusError:
    return cls(status, code, f"server says {CANARY}", request_id="r-1", method="POST", url="https://h/api",
               headers={"x-request-id": "r-1"}, body=f'{{"message": "{CANARY}"}}', **kw)


# class -> (an instance as the package raises it, expected (status, task_id, sent, billed))
CASES: dict[type[WanxError], tuple[WanxError, tuple[object, object, bool, bool | None]]] = {
    ex.WanxError: (WanxError("plain"), (None, None, False, None)),
    ex.ValidationError: (ex.ValidationError("wanx-v1", [Problem("n", 9, "1-4")]), (None, None, False, False)),
    ex.ConfigurationError: (ex.ConfigurationError("no key"), (None, None, False, False)),
    ex.BudgetExceededError: (ex.BudgetExceededError(1.0, 0.5, 2.0), (None, None, False, False)),
    ex.ReplayMissError: (ex.ReplayMissError("k" * 20, "summary"), (None, None, False, False)),
    ex.ReuseUnfinishedError: (ex.ReuseUnfinishedError("wanx-v1, n=1", "t-9"), (None, "t-9", False, False)),
    ex.APIError: (ex.APIError("odd answer", code="InvalidResponse"), (None, None, True, False)),
    ex.APIConnectionError: (ex.APIConnectionError("refused", sent=False), (None, None, False, False)),
    ex.APITimeoutError: (ex.APITimeoutError("timed out", task_id="t-1"), (None, "t-1", True, None)),
    ex.SubmitOutcomeUnknownError: (
        ex.SubmitOutcomeUnknownError("wanx-v1", None, sent_after=NOW, sent_before=NOW, cause="HTTP 500", status=500),
        (500, None, True, None),
    ),
    ex.SyncOutcomeUnknownError: (
        ex.SyncOutcomeUnknownError("qwen-image-max", None, sent_after=NOW, sent_before=NOW, cause="HTTP 502", status=502),
        (502, None, True, None),
    ),
    ex.DownloadError: (ex.DownloadError("dropped", url="https://img/a.png"), (None, None, True, True)),
    ex.ImageExpiredError: (ex.ImageExpiredError("expired", status=403), (403, None, True, True)),
    ex.InvalidImageError: (ex.InvalidImageError("html", status=200), (200, None, True, True)),
    ex.APIStatusError: (_status(ex.APIStatusError, 418), (418, None, True, False)),
    ex.BadRequestError: (_status(ex.BadRequestError, 400, "InvalidParameter"), (400, None, True, False)),
    ex.ContentInspectionError: (_status(ex.ContentInspectionError, 400, "DataInspectionFailed"), (400, None, True, False)),
    ex.UnsupportedOperationError: (
        _status(ex.UnsupportedOperationError, 400, "UnsupportedOperation", task_id="t-2"), (400, "t-2", True, None)
    ),
    ex.AuthenticationError: (_status(ex.AuthenticationError, 401, "InvalidApiKey"), (401, None, True, False)),
    ex.PermissionDeniedError: (_status(ex.PermissionDeniedError, 403, "AccessDenied"), (403, None, True, False)),
    ex.NotFoundError: (_status(ex.NotFoundError, 404, "ModelNotFound"), (404, None, True, False)),
    ex.RateLimitError: (_status(ex.RateLimitError, 429, "Throttling"), (429, None, True, False)),
    ex.ServerError: (_status(ex.ServerError, 500, "InternalError", task_id="t-3"), (500, "t-3", True, None)),
    ex.TaskError: (ex.TaskError("t-4", "FAILED", "X", "msg"), (None, "t-4", True, False)),
    ex.TaskFailedError: (ex.TaskFailedError("t-5", "FAILED", "InternalError", "msg", "r-5"), (None, "t-5", True, False)),
    ex.TaskCanceledError: (ex.TaskCanceledError("t-6", "CANCELED", None, ""), (None, "t-6", True, False)),
    ex.TaskUnknownError: (ex.TaskUnknownError("t-7", "UNKNOWN", None, "gone"), (None, "t-7", True, None)),
    ex.WaitTimeoutError: (ex.WaitTimeoutError("t-8", 12.0, "RUNNING"), (None, "t-8", True, None)),
    ex.TaskUnfinishedError: (ex.TaskUnfinishedError("t-9", "poll failed", code="InternalError"), (None, "t-9", True, None)),
    ex.TaskNotCreatedError: (ex.TaskNotCreatedError("no task was made"), (None, None, True, False)),
    ex.RunTimeoutError: (ex.RunTimeoutError(5.0, SimpleNamespace(text=lambda: "1 request(s)")), (None, None, False, None)),
    ex.StoreError: (ex.StoreError("wanx_store", "the index is damaged", "run `wanx-nb store rebuild`"), (None, None, False, False)),
}


def test_every_error_class_has_a_case():
    classes = {v for v in vars(ex).values() if isinstance(v, type) and issubclass(v, WanxError)}
    assert classes - set(CASES) == set()


@pytest.mark.parametrize("cls", sorted(CASES, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_error_attributes(cls):
    err, (status, task_id, sent, billed) = CASES[cls]
    assert type(err) is cls
    assert (err.status, err.task_id, err.sent, err.billed) == (status, task_id, sent, billed)
    assert err.code is None or isinstance(err.code, str)
    assert err.request_id is None or isinstance(err.request_id, str)
    assert isinstance(err.message, str) and err.message == str(err)
    for text in (str(err), repr(err), err.message):
        assert CANARY not in text and CANARY[3:] not in text


def test_class_defaults_answer_without_an_instance():
    # The attributes are class-level too, so `except` handlers can branch on the type's defaults.
    assert ex.SubmitOutcomeUnknownError.code == "SubmitOutcomeUnknown" and ex.SubmitOutcomeUnknownError.billed is None
    assert ex.DownloadError.billed is True and ex.ImageExpiredError.code == "ImageExpired"
    assert ex.ValidationError.sent is False and ex.ValidationError.billed is False


def test_status_errors_keep_the_response_but_not_the_request():
    err = make_status_error(429, "Throttling", "slow down", headers={"Retry-After": "3"}, body='{"code":"Throttling"}')
    assert isinstance(err, ex.RateLimitError)
    assert err.status_code == err.status == 429 and err.headers == {"Retry-After": "3"}
    assert err.body == '{"code":"Throttling"}'
    assert not hasattr(err, "request")


def test_a_status_body_holding_a_key_is_redacted():
    err = CASES[ex.AuthenticationError][0]
    assert isinstance(err, ex.APIStatusError) and CANARY not in err.body


def test_outcome_unknown_is_its_own_branch_and_never_advises_a_retry():
    err = CASES[ex.SubmitOutcomeUnknownError][0]
    assert isinstance(err, ex.APIError) and not isinstance(err, ex.APIConnectionError)
    assert "%wanx resume" in err.message and "retry" not in err.message.lower()
    assert "2026-01-01 08:00:00" in err.message  # the window the lookup uses, in UTC


@pytest.mark.parametrize(
    "cls, state, entry_state",
    [(ex.TaskCanceledError, "CANCELED", "canceled"), (ex.TaskUnknownError, "UNKNOWN", "gone")],
)
def test_a_task_errors_own_state_is_what_the_store_records(tmp_path, cls, state, entry_state):
    # `status` is the HTTP status on every error; the journal keeps the task's state (`task_status`),
    # so replay raises the same error, not a FAILED one.
    import uuid

    from wanx_nb._journal import EntryState, JournalEntry, utc_iso
    from wanx_nb._request import GenerationRequest
    from wanx_nb._store import Store

    store = Store(tmp_path / "store")
    request = GenerationRequest("x", model="wanx-v1", n=1, seed=1)
    entry = JournalEntry(
        entry_id=uuid.uuid4().hex, run_id="run-1", service="emulator", backend="emulator", mode="live",
        state=EntryState.QUEUED, given=request, sent=None, task_id=None, status=None, created_at=utc_iso(),
        sent_at=None, finished_at=None, request_id=None, code=None, message=None, billed_images=0, saved_images=0,
        price_yuan=0.16,
    )  # fmt: skip
    store.record(entry)
    store.mark_sending(entry.entry_id, request, utc_iso())
    store.attach_task(entry.entry_id, "t-1", status="PENDING", request_id="r-1")
    error = cls("t-1", state, None, "gone")
    store.finish(entry.entry_id, EntryState(entry_state), status=error.task_status, message=error.server_message)
    replayed = store.replay(request)
    store.close()
    assert type(replayed) is cls and replayed.task_status == state and replayed.status is None


def test_a_task_error_without_a_code_reads_as_a_sentence():
    # The service sends no code for an unknown task: the message must not show "None".
    err = ex.TaskUnknownError("t-7", "UNKNOWN", None, "the service does not know this task")
    assert str(err) == "task t-7 UNKNOWN: the service does not know this task"
    assert str(ex.TaskFailedError("t-8", "FAILED", "InternalError", "")) == "task t-8 FAILED: InternalError"
