"""One HTTP exchange of the client, with the retry rules of its kind (`Sender.request`).

Reading a failed exchange (sent or not, which error) is `_client_errors`; delays are `_backoff`'s.

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

The client builds a `Sender` for each call from its current state, so what tests inject (clocks, the
image hosts' client) is what is used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from ._backoff import Failure, parse_retry_after, retry_delay, should_retry_read, should_retry_submit
from ._client_errors import Unanswered, classify, connection_error, has_request, short_url
from ._client_types import Clocks
from ._constants import RETRY_MAX_DELAY
from ._exceptions import APIError
from ._models import Task
from ._protocol import EMULATOR_HEADER, WireRequest, parse_json, parse_task, status_error
from ._registry import ModelSpec, submit_limits
from ._scheduler import Scheduler

__all__ = ["Kind", "Sender", "response_json", "response_task"]

log = logging.getLogger("wanx_nb")

Kind = Literal["read", "submit", "cancel"]


@dataclass(frozen=True)
class Sender:
    """Sends requests through `http` (the API's client, or the image/upload hosts' one without auth)."""

    http: httpx.AsyncClient
    scheduler: Scheduler
    region: str
    max_retries: int
    clocks: Clocks
    is_closed: Callable[[], bool]

    async def request(
        self,
        wire: WireRequest,
        *,
        kind: Kind,
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
        (the create step turns it into SubmitOutcomeUnknownError); `sends` collects each attempt's wall
        time. `turn_taken`: the caller already waited for this submit's turn (retries wait for their own).
        """
        if self.is_closed():
            raise RuntimeError("this client is closed; create a new one")
        http = self.http
        retry_rule = should_retry_read if kind == "read" else should_retry_submit
        what = f"{wire.method} {short_url(wire.path)}"
        attempt = 0
        while True:
            if spec is not None and (attempt or not turn_taken):
                await self.scheduler.submit_turn(spec.name, submit_limits(spec, self.region))
            if query:
                await self.scheduler.query_turn()
            if sends is not None:
                sends.append(self.clocks.wall())
            try:
                extra: dict[str, Any] = {}
                if timeout is not None:
                    extra["timeout"] = httpx.Timeout(timeout, connect=http.timeout.connect)
                response = await http.request(
                    wire.method, wire.path, headers=wire.headers, params=wire.params, json=wire.json,
                    data=data, files=files, **extra,
                )
            except httpx.HTTPError as exc:
                failure = classify(exc)
                # A submit's retry waits for its own turn: one a minute away (qwen-image-max takes 2 a
                # minute) is not worth waiting for when the service could not even be reached.
                far = spec is not None and self.scheduler.turn_wait(spec.name) > RETRY_MAX_DELAY
                if retry_rule(failure=failure) and attempt < self.max_retries and not far:
                    delay = retry_delay(attempt, rng=self.clocks.random) or 0.0
                    log.debug(
                        "retrying %s after %s (%s) in %.2fs (retry %d of %d)",
                        what, type(exc).__name__, failure.value, delay, attempt + 1, self.max_retries,
                    )
                    await self.clocks.sleep(delay)
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
            retry_after = parse_retry_after(response.headers, now=self.clocks.wall())
            error = status_error(
                status, response.content, response.headers,
                method=wire.method, url=str(response.request.url), task_id=task_id, retry_after=retry_after,
            )
            if retry_rule(status) and attempt < self.max_retries:
                backoff = retry_delay(attempt, retry_after=retry_after, rng=self.clocks.random)
                if backoff is not None:
                    log.debug(
                        "retrying %s after %d %s in %.2fs%s (retry %d of %d)",
                        what, status, error.code or "", backoff, " (Retry-After)" if retry_after is not None else "",
                        attempt + 1, self.max_retries,
                    )
                    if kind == "submit" and status == 429 and spec is not None:
                        self.scheduler.throttled(spec.name, backoff)  # the next submit_turn waits it out
                    else:
                        await self.clocks.sleep(backoff)
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


def response_json(response: httpx.Response) -> Any:
    """The body of a 2xx answer; APIError("InvalidResponse") when it is not JSON."""
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


def response_task(response: httpx.Response) -> Task:
    return parse_task(response_json(response), emulator=EMULATOR_HEADER in response.headers)
