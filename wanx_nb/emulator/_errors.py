"""The errors the emulator answers with, named after the real service's error codes.

- `EmulatorError(status, code, message)`: a DashScope API error, rendered as
  `{"code", "message", "request_id"}` JSON.
  - `OssError`: an error from the object store side (uploads, result images), rendered as OSS XML.

The helpers build the exact codes and messages of the spec (§3.4); `app.py` raises nothing else.
"""

from __future__ import annotations

import math

__all__ = [
    "EmulatorError",
    "INTERNAL_ERROR_MESSAGE",
    "OUTPUT_INSPECTION_MESSAGE",
    "OssError",
    "TIMEOUT_ITEM_MESSAGE",
    "access_denied",
    "bad_request_empty_input",
    "bad_request_empty_model",
    "data_inspection_failed",
    "error_for_status",
    "invalid_api_key",
    "invalid_parameter",
    "invalid_url",
    "not_found",
    "oss_access_denied",
    "oss_entity_too_large",
    "oss_file_already_exists",
    "oss_invalid_argument",
    "oss_no_such_key",
    "oss_signature_does_not_match",
    "throttling",
    "throttling_allocation_quota",
    "throttling_rate_quota",
    "unsupported_file_format",
    "unsupported_operation",
]

# "occured" is the service's own spelling (§3.4); clients that match on it must keep working.
INTERNAL_ERROR_MESSAGE = "An internal error has occured, please try again later or contact service support."
TIMEOUT_ITEM_MESSAGE = (
    "An internal timeout error has occured during execution, please try again later or contact service support."
)
OUTPUT_INSPECTION_MESSAGE = "Output data may contain inappropriate content."


class EmulatorError(Exception):
    """The service refused the request: HTTP `status`, wire `code` and `message`."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"


class OssError(EmulatorError):
    """The object store refused the request (upload or result download); the body is OSS XML."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, code, message, headers=headers)
        # Extra XML elements OSS adds for some errors, e.g. <Expires> and <ServerTime>.
        self.extra = dict(extra or {})


def _retry_headers(retry_after: float | None) -> dict[str, str]:
    # Retry-After carries whole seconds (RFC 9110); round up so a client never retries too early.
    return {} if retry_after is None else {"Retry-After": str(max(0, math.ceil(retry_after)))}


def invalid_api_key(*, missing: bool) -> EmulatorError:
    message = "No API-key provided." if missing else "Invalid API-key provided."
    return EmulatorError(401, "InvalidApiKey", message)


def access_denied(message: str = "Access denied.") -> EmulatorError:
    return EmulatorError(403, "AccessDenied", message)


def invalid_parameter(message: str) -> EmulatorError:
    return EmulatorError(400, "InvalidParameter", message)


def bad_request_empty_input() -> EmulatorError:
    return EmulatorError(400, "BadRequest.EmptyInput", "Required input parameter missing from request.")


def bad_request_empty_model() -> EmulatorError:
    return EmulatorError(400, "BadRequest.EmptyModel", "Required model parameter missing from request.")


def invalid_url(detail: str) -> EmulatorError:
    return EmulatorError(400, "InvalidURL", f"Invalid URL provided in your request: {detail}")


def unsupported_file_format(detail: str) -> EmulatorError:
    return EmulatorError(415, "BadRequest.UnsupportedFileFormat", f"Input file format is not supported: {detail}")


def data_inspection_failed() -> EmulatorError:
    return EmulatorError(400, "DataInspectionFailed", "Input data may contain inappropriate content.")


def throttling(retry_after: float | None = None) -> EmulatorError:
    return EmulatorError(429, "Throttling", "Requests throttling triggered.", headers=_retry_headers(retry_after))


def throttling_rate_quota(retry_after: float | None = None) -> EmulatorError:
    return EmulatorError(
        429,
        "Throttling.RateQuota",
        "Requests rate limit exceeded, please try again later.",
        headers=_retry_headers(retry_after),
    )


def throttling_allocation_quota(retry_after: float | None = None) -> EmulatorError:
    return EmulatorError(
        429,
        "Throttling.AllocationQuota",
        "Allocated quota exceeded, please increase your quota limit.",
        headers=_retry_headers(retry_after),
    )


def unsupported_operation() -> EmulatorError:
    return EmulatorError(
        400,
        "UnsupportedOperation",
        "Failed to cancel the task, please confirm if the task is in PENDING status.",
    )


def not_found(method: str, path: str) -> EmulatorError:
    # The real gateway's body for unknown paths is not documented; a JSON error in the usual
    # envelope keeps clients' error parsing on one path.
    return EmulatorError(404, "NotFound", f"No such API: {method} {path}")


_BY_STATUS: dict[int, tuple[str, str]] = {
    400: ("InvalidParameter", "Required parameter(s) missing or invalid, please check the request parameters."),
    401: ("InvalidApiKey", "Invalid API-key provided."),
    403: ("AccessDenied", "Access denied."),
    404: ("NotFound", "The requested resource was not found."),
    408: ("RequestTimeOut", "Request timed out, please try again later."),
    429: ("Throttling.RateQuota", "Requests rate limit exceeded, please try again later."),
    500: ("InternalError", INTERNAL_ERROR_MESSAGE),
    502: ("BadGateway", "Bad gateway, please try again later."),
    # ServiceUnavailable's wording is undocumented; this mirrors ModelUnavailable's (§3.4).
    503: ("ServiceUnavailable", "Service is unavailable, please try again later."),
    504: ("GatewayTimeout", "Gateway timeout, please try again later."),
}


# The object store names its errors differently for the statuses a download meets.
_OSS_BY_STATUS: dict[int, tuple[str, str]] = {
    403: ("AccessDenied", "You have no right to access this object because of bucket acl."),
    404: ("NoSuchKey", "The specified key does not exist."),
}


def error_for_status(
    status: int,
    code: str | None = None,
    message: str | None = None,
    *,
    retry_after: float | None = None,
    oss: bool = False,
) -> EmulatorError:
    """An error for `status` with the real code and message for it unless given."""
    table = {**_BY_STATUS, **_OSS_BY_STATUS} if oss else _BY_STATUS
    default_code, default_message = table.get(status, ("InternalError", INTERNAL_ERROR_MESSAGE))
    cls = OssError if oss else EmulatorError
    return cls(status, code or default_code, message or default_message, headers=_retry_headers(retry_after))


# Object store (OSS) errors, rendered as XML like the real OSS.


def oss_access_denied(message: str, **extra: str) -> OssError:
    return OssError(403, "AccessDenied", message, extra=extra)


def oss_signature_does_not_match() -> OssError:
    return OssError(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided.",
    )


def oss_no_such_key() -> OssError:
    return OssError(404, "NoSuchKey", "The specified key does not exist.")


def oss_invalid_argument(message: str) -> OssError:
    return OssError(400, "InvalidArgument", message)


def oss_entity_too_large() -> OssError:
    return OssError(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.")


def oss_file_already_exists() -> OssError:
    return OssError(409, "FileAlreadyExists", "The object you specified already exists and can not be overwritten.")
