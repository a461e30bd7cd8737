"""A plain next step for every error and failure code (the server's codes and our own)."""

from __future__ import annotations

__all__ = ["next_step"]

_EXACT_STEPS = {
    "InternalError.Timeout": "retry this seed",
    "DataInspectionFailed": "rephrase the prompt (the content check refused the input or the output)",
    "IPInfringementSuspect": "rephrase the prompt without protected names, characters or brands",
    "InvalidApiKey": "check DASHSCOPE_API_KEY (Beijing and Singapore keys are not interchangeable)",
    "Throttling.AllocationQuota": "the quota is used up: raise it in the console or wait for it to renew",
    "Arrearage": "top up the Alibaba Cloud account, then retry",
    "PrepaidBillOverdue": "top up the Alibaba Cloud account, then retry",
    "PostpaidBillOverdue": "top up the Alibaba Cloud account, then retry",
    "CommodityNotPurchased": "activate the model in the Model Studio console",
    "AllocationQuota.FreeTierOnly": "the free quota is used up: turn off 'free tier only' in the console",
    "UnsupportedOperation": "only PENDING tasks can be cancelled; this one will finish (and be billed)",
    "InvalidURL": "give the reference image as a public http(s) URL or a local file",
    "InvalidParameter": "check the parameters against `%wanx models`",
    "ModelNotFound": "check the model name with `%wanx models`",
    "WorkSpaceNotFound": "check DASHSCOPE_WORKSPACE_ID",
    "RequestTimeOut": "retry",
    "WaitTaskTimeout": "the task may still finish: run `%wanx resume`",
    "WaitTimeout": "the task may still finish: run `%wanx resume`",
    "SubmitOutcomeUnknown": "run `%wanx resume` before submitting again (a task may exist)",
    "Budget": "raise `%config WanxMagics.budget_yuan` (0 turns the budget off)",
    "ReplayMiss": "record this request first (mode 'record'), or switch to mode 'live'",
    "Validation": "fix the parameters listed above (`%wanx models` shows what each model takes)",
    "Interrupted": "run `%wanx resume` later to collect the tasks that were still running",
    # Our own codes after something was billed: never "retry", which would pay again.
    "ReuseUnfinished": "run `%wanx resume` to save its images without paying again, then run this again",
    "SyncOutcomeUnknown": (
        "whatever this call made cannot be looked up; sending it again may be billed again, so check the "
        "bill in the console first"
    ),
    "DownloadFailed": "run `%wanx resume` while the result URL lives (24 h): it downloads again without paying",
    "InvalidImage": "run `%wanx resume` while the result URL lives (24 h): it downloads again without paying",
    "ImageExpired": "the result URL expired after 24 h: this billed image cannot be downloaded any more",
    "RunTimeout": "to wait longer, raise `%config WanxMagics.wait_timeout` (0: no limit)",
    "NotCreated": "nothing was billed: run it again",
}
_PREFIX_STEPS = (
    ("InternalError", "retry in a moment: the service had an internal error"),
    ("SystemError", "retry in a moment: the service had an internal error"),
    ("Throttling", "wait a few seconds and retry; use a smaller -n or fewer cells at once"),
    ("LimitRequests", "wait a few seconds and retry; use a smaller -n or fewer cells at once"),
    ("BadRequest.InputDownloadFailed", "make the reference image reachable from the internet (public URL)"),
    ("BadRequest.UnsupportedFileFormat", "use a JPEG, PNG, BMP or WebP reference image"),
    ("BadRequest.TooLarge", "use a smaller reference image"),
    ("BadRequest", "check the request parameters"),
    ("AccessDenied", "check that the model is activated for this account and workspace"),
    ("Workspace.AccessDenied", "check DASHSCOPE_WORKSPACE_ID and its permissions"),
    ("Model.AccessDenied", "activate the model in the Model Studio console"),
    ("ModelUnavailable", "the model is unavailable: retry later"),
    ("ServiceUnavailable", "the service is unavailable: retry later"),
)


def next_step(code: str | None) -> str:
    """A plain next step for an error or failure code (server codes and our own)."""
    if code:
        if code in _EXACT_STEPS:
            return _EXACT_STEPS[code]
        for prefix, step in _PREFIX_STEPS:
            if code.startswith(prefix):
                return step
    return "read the message above; if it looks transient, retry"
