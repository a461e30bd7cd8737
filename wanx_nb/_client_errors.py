"""How the client reads a failed exchange: was it sent, what error does the user get, was a body cut off.

Pure functions over httpx's exceptions and responses (no I/O), used by `_client`'s retry loop and its
downloads.
"""

from __future__ import annotations

import httpx

from ._backoff import Failure
from ._exceptions import APIConnectionError, APIError, APIStatusError, APITimeoutError, DownloadError, ImageExpiredError
from ._imagecheck import ImageCheckError
from ._protocol import says_expired

__all__ = [
    "Unanswered",
    "check_length",
    "classify",
    "connection_error",
    "download_error",
    "has_request",
    "short_url",
]


def classify(exc: httpx.HTTPError) -> Failure:
    """Could the server have seen the request? (ConnectTimeout and PoolTimeout: never connected.)"""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return Failure.NOT_SENT
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.TooManyRedirects)):
        return Failure.FATAL
    return Failure.AFTER_SENT


def has_request(exc: httpx.HTTPError) -> bool:
    try:
        exc.request  # noqa: B018 - raises RuntimeError when the error has no request
    except RuntimeError:
        return False
    return True


def connection_error(
    exc: httpx.HTTPError, method: str, url: str, task_id: str | None, *, sent: bool
) -> APIConnectionError:
    path = short_url(url)
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(
            f"{method} {path} timed out ({type(exc).__name__}: {reason})",
            method=method, url=path, task_id=task_id, sent=sent,
        )
    return APIConnectionError(
        f"{method} {path} failed: could not talk to the server ({type(exc).__name__}: {reason})",
        method=method, url=path, task_id=task_id, sent=sent,
    )


class Unanswered(Exception):
    """A submit may have reached the service without a usable answer (`_create` says what to do)."""

    def __init__(self, cause: str, status: int | None = None, request_id: str | None = None) -> None:
        super().__init__(cause)
        self.cause, self.status, self.request_id = cause, status, request_id


def download_error(exc: APIError, where: str) -> DownloadError:
    """A failed image GET as a DownloadError; an image host's 403 is not about the model or the key."""
    again = "the image was billed: `%wanx resume` downloads it again while its URL lives (24 h)"
    if isinstance(exc, APIStatusError):
        answer = f"{exc.status_code} {exc.code or 'error'}: {exc.server_message}"
        if says_expired(exc.status_code, exc.body):
            return ImageExpiredError(
                f"the image URL expired (result URLs live 24 h); the image cannot be downloaded any more ({answer})",
                url=where, status=exc.status_code, request_id=exc.request_id,
            )
        return DownloadError(
            f"downloading {where} failed ({answer}); {again}", url=where, status=exc.status_code,
            request_id=exc.request_id,
        )
    return DownloadError(f"downloading {where} failed ({exc.message}); {again}", url=where, status=exc.status)


def check_length(response: httpx.Response, received: int) -> None:
    """Fewer bytes than Content-Length (when the body is not compressed) is a cut-off download."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and response.headers.get("content-encoding", "identity") == "identity":
        if received < int(declared):
            raise ImageCheckError(f"{received} of the {declared} bytes announced: cut off", truncated=True)


def short_url(url: str) -> str:
    """Scheme, host and path of a URL, never its query string (signed URLs carry signatures)."""
    return url.split("?", 1)[0]
