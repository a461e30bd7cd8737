"""Client behaviour at the wire level, with scripted httpx.MockTransport replies.

These cover what the emulator cannot produce (odd bodies, HTTP-date Retry-After, gateway errors on
submit, configuration); the end-to-end behaviour is in test_client_emulator.py.
"""

from __future__ import annotations

import asyncio
import email.utils
import io
import json
import logging
import math
from collections.abc import Callable

import httpx
import pytest
from PIL import Image

from wanx_nb._client import AsyncWanxClient, Submission
from wanx_nb._client_sync import WanxClient
from wanx_nb._constants import RETRY_AFTER_CAP
from wanx_nb._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    RateLimitError,
    ServerError,
    SubmitOutcomeUnknownError,
    ValidationError,
    WaitTimeoutError,
)
from wanx_nb._models import TaskStatus
from wanx_nb._request import MAX_SEED, GenerationRequest

KEY = "sk-" + "canary" + "wire" + "0123456789abcdef"  # built at run time, shaped like a real key
BASE = "https://dashscope.aliyuncs.com/api/v1"

Handler = Callable[[httpx.Request], httpx.Response]
SCRIPTS: list[Script] = []


@pytest.fixture(autouse=True)
def no_unscripted_requests():
    SCRIPTS.clear()
    yield
    assert [u for s in SCRIPTS for u in s.unexpected] == [], "the client sent requests no script expected"


def created(task_id: str = "t-1") -> httpx.Response:
    return httpx.Response(200, json={"output": {"task_status": "PENDING", "task_id": task_id}, "request_id": "r-c"})


def task_body(status: str, task_id: str = "t-1", **extra: object) -> dict:
    return {"request_id": "r-q", "output": {"task_id": task_id, "task_status": status, **extra}}


class Repeat:
    """A reply the script gives every time its route is asked again (a poll that keeps RUNNING)."""

    def __init__(self, reply: httpx.Response | Exception | Handler) -> None:
        self.reply = reply


class Script:
    """Strict: each route's replies in order, each used once (a `Repeat` for ever); any other request,
    or one after the route's replies ran out, fails the test. Records every request."""

    def __init__(self, **routes: list[httpx.Response | Exception | Handler | Repeat]) -> None:
        self.routes = {k: list(v) for k, v in routes.items()}
        self.requests: list[httpx.Request] = []
        self.unexpected: list[str] = []
        SCRIPTS.append(self)

    def route_of(self, request: httpx.Request) -> str:
        path = request.url.path
        if path.endswith("/image-synthesis"):
            return "create"
        if path.endswith("/cancel"):
            return "cancel"
        if path.endswith("/tasks"):
            return "list"
        if "/tasks/" in path:
            return "query"
        if path.endswith("/uploads"):
            return "policy"
        return "other"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.routes.get(self.route_of(request))
        if not queue:
            # Kept as well as raised: the client may turn the AssertionError into an error of its own.
            self.unexpected.append(f"{request.method} {request.url}")
            raise AssertionError(f"unscripted request {request.method} {request.url}")
        reply = queue[0].reply if isinstance(queue[0], Repeat) else queue.pop(0)
        if isinstance(reply, Exception):
            raise reply
        if callable(reply):
            return reply(request)
        return reply

    def count(self, route: str) -> int:
        return sum(1 for r in self.requests if self.route_of(r) == route)


def make_client(script: Script, **kwargs: object) -> tuple[AsyncWanxClient, list[float]]:
    client = AsyncWanxClient(KEY, transport=httpx.MockTransport(script), **kwargs)  # type: ignore[arg-type]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    client._sleep = sleep
    return client, slept


REQ = GenerationRequest("a red fox", model="wanx2.1-t2i-turbo", n=2)


def png_bytes(width: int = 8, height: int = 8) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(out, "PNG")
    return out.getvalue()


PNG = png_bytes()


# ---- configuration -----------------------------------------------------------------------------


def test_config_from_environment(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    monkeypatch.setenv("DASHSCOPE_REGION", "singapore")
    monkeypatch.setenv("DASHSCOPE_WORKSPACE_ID", "llm-ws")
    monkeypatch.delenv("DASHSCOPE_HTTP_BASE_URL", raising=False)
    client = AsyncWanxClient()
    assert client.backend == "dashscope" and client.region == "singapore" and client.workspace == "llm-ws"
    assert client.base_url == "https://dashscope-intl.aliyuncs.com/api/v1"
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", "http://127.0.0.1:9/api/v1/")
    assert AsyncWanxClient().base_url == "http://127.0.0.1:9/api/v1"
    assert AsyncWanxClient(region="virginia", base_url=None).region == "virginia"


def test_config_errors(monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="no API key"):
        AsyncWanxClient(base_url="http://127.0.0.1:9/api/v1")
    with pytest.raises(ConfigurationError, match="unknown region 'mars'"):
        AsyncWanxClient(KEY, region="mars")
    with pytest.raises(ConfigurationError, match="max_retries"):
        AsyncWanxClient(KEY, max_retries=-1)
    with pytest.raises(ConfigurationError, match=r"^base_url= 'http://x/api/v1\?a=1' is not a base URL"):
        AsyncWanxClient(KEY, base_url="http://x/api/v1?a=1")
    with pytest.raises(ConfigurationError, match=r"^base_url= 'http://a b/api/v1' is not a base URL"):
        AsyncWanxClient(KEY, base_url="http://a b/api/v1")
    for port in (0, 65536, 99999):  # httpx takes any number; the connect would fail as the create goes out
        with pytest.raises(ConfigurationError, match=rf"^base_url= 'http://127.0.0.1:{port}/api/v1': port {port} is "
                                                     "out of range: use 1 to 65535"):
            AsyncWanxClient(KEY, base_url=f"http://127.0.0.1:{port}/api/v1")
    assert AsyncWanxClient(KEY, base_url="http://127.0.0.1:65535/api/v1").base_url == "http://127.0.0.1:65535/api/v1"
    assert AsyncWanxClient(KEY, base_url=" https://[::1]:8000/api/v1/ ").base_url == "https://[::1]:8000/api/v1"


async def test_repr_shows_at_most_the_last_four_characters_of_the_key():
    client = AsyncWanxClient(KEY)
    assert KEY not in repr(client) and KEY[:-4] not in repr(client)
    assert f"…{KEY[-4:]}" in repr(client) and "dashscope" in repr(client)
    await client.aclose()


# ---- submit ------------------------------------------------------------------------------------


async def test_submit_sends_the_headers_the_seed_and_the_regional_model_name():
    script = Script(create=[created()])
    client, _ = make_client(script, region="singapore", workspace="llm-ws")
    sub = await client.submit(REQ)
    (request,) = script.requests
    assert request.url == "https://dashscope-intl.aliyuncs.com/api/v1/services/aigc/text2image/image-synthesis"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["x-dashscope-async"] == "enable"
    assert request.headers["x-dashscope-workspace"] == "llm-ws"
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.content)
    assert body["model"] == "wan2.1-t2i-turbo"
    seed = body["parameters"]["seed"]
    assert 0 <= seed <= MAX_SEED - 2
    assert isinstance(sub, Submission) and sub.status is TaskStatus.PENDING and sub.task_id == "t-1"
    assert sub.request is not None and sub.request.seed == seed and sub.request.seeds == (seed, seed + 1)
    assert sub.task.task_id == "t-1" and type(sub.task).__name__ == "Task"
    await client.aclose()


async def test_validation_fails_before_anything_is_sent():
    script = Script()
    client, _ = make_client(script)
    with pytest.raises(ValidationError) as info:
        await client.submit(GenerationRequest("x", model="wanx-v1", size="999*999", style="<nope>"))
    assert {p.param for p in info.value.problems} == {"size", "style"}
    assert script.requests == []
    await client.aclose()


def assert_outcome_unknown(err: SubmitOutcomeUnknownError, cause: str) -> None:
    """What a caller (the journal, resume) relies on: the prepared request, the window, no retry advice."""
    assert err.model == REQ.model and err.request is not None and err.request.seed is not None
    assert err.request.prompt == REQ.prompt
    assert err.sent_after.tzinfo is not None and err.sent_after <= err.sent_before
    assert cause in err.cause
    assert err.sent is True and err.billed is None and err.code == "SubmitOutcomeUnknown"
    assert "%wanx resume" in err.message and "retry" not in err.message.lower()
    assert not isinstance(err, APIConnectionError)  # its own branch of the tree


@pytest.mark.parametrize("status", [500, 502, 504, 599])
async def test_a_5xx_other_than_503_on_submit_means_outcome_unknown_and_no_resubmit(status):
    script = Script(create=[httpx.Response(status, text="upstream timeout")])
    client, slept = make_client(script)
    with pytest.raises(SubmitOutcomeUnknownError) as info:
        await client.submit(REQ)
    assert script.count("create") == 1 and slept == []
    assert_outcome_unknown(info.value, f"HTTP {status}")
    assert info.value.status == status and isinstance(info.value.__cause__, ServerError)
    await client.aclose()


async def test_a_503_on_submit_is_retried_because_no_task_exists_yet():
    unavailable = httpx.Response(503, json={"code": "ServiceUnavailable", "message": "Model is unavailable"})
    script = Script(create=[unavailable, created("t-9")])
    client, slept = make_client(script)
    sub = await client.submit(REQ)
    assert sub.task_id == "t-9" and script.count("create") == 2 and len(slept) == 1
    await client.aclose()


async def test_503s_on_submit_that_never_end_are_a_server_error_with_nothing_billed():
    unavailable = httpx.Response(503, json={"code": "ServiceUnavailable", "message": "Model is unavailable"})
    script = Script(create=[unavailable] * 3)  # the first try and two retries
    client, _ = make_client(script, max_retries=2)
    with pytest.raises(ServerError) as info:
        await client.submit(REQ)
    err = info.value
    assert script.count("create") == 3 and err.status == 503 and err.sent is True and err.billed is False
    await client.aclose()


@pytest.mark.parametrize(
    "reply, cause",
    [
        (httpx.Response(200, text="<html>gateway says hi</html>", headers={"content-type": "text/html"}), "not JSON"),
        (httpx.Response(200, json={"output": {"task_status": "PENDING"}, "request_id": "r"}), "no task_id"),
        (httpx.Response(200, json={"request_id": "r"}), "no 'output'"),
    ],
)
async def test_a_2xx_without_a_readable_task_is_outcome_unknown(reply, cause):
    script = Script(create=[reply])
    client, _ = make_client(script)
    with pytest.raises(SubmitOutcomeUnknownError) as info:
        await client.submit(REQ)
    assert script.count("create") == 1
    assert_outcome_unknown(info.value, cause)
    await client.aclose()


@pytest.mark.parametrize(
    "exc",
    [
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadTimeout("timed out"),
        httpx.ReadError("connection reset"),
    ],
)
async def test_submit_errors_after_sending_are_outcome_unknown(exc):
    script = Script(create=[exc])
    client, _ = make_client(script)
    with pytest.raises(SubmitOutcomeUnknownError) as info:
        await client.submit(REQ)
    assert isinstance(info.value.__cause__, type(exc))
    assert script.count("create") == 1
    assert_outcome_unknown(info.value, type(exc).__name__)
    await client.aclose()


async def test_a_connection_never_made_on_submit_is_retried_then_says_nothing_was_sent():
    script = Script(create=[httpx.ConnectError("[Errno 111] Connection refused")] * 2)
    client, _ = make_client(script, max_retries=1)
    with pytest.raises(APIConnectionError) as info:
        await client.submit(REQ)
    assert script.count("create") == 2
    assert info.value.sent is False and info.value.billed is False
    await client.aclose()


async def test_submit_429_with_a_long_retry_after_is_not_waited_for():
    long = str(int(RETRY_AFTER_CAP) + 60)
    script = Script(create=[httpx.Response(429, headers={"Retry-After": long},
                                           json={"code": "Throttling", "message": "Requests throttling triggered."})])
    client, slept = make_client(script)
    with pytest.raises(RateLimitError) as info:
        await client.submit(REQ)
    assert info.value.retry_after == float(long) and script.count("create") == 1 and slept == []
    await client.aclose()


# ---- reads -------------------------------------------------------------------------------------


async def test_poll_honours_an_http_date_retry_after():
    now = 1_736_323_200.0
    script = Script(query=[
        httpx.Response(503, headers={"Retry-After": email.utils.formatdate(now + 4, usegmt=True)}, text="busy"),
        httpx.Response(200, json=task_body("RUNNING")),
    ])
    client, slept = make_client(script)
    client._wall = lambda: now
    task = await client.get_task("t-1")
    assert task.status is TaskStatus.RUNNING and slept == [4.0] and script.count("query") == 2
    await client.aclose()


async def test_non_json_error_bodies_keep_the_raw_text():
    script = Script(query=[httpx.Response(401, text="Unauthorized: go away", headers={"X-Request-ID": "hdr-9"})])
    client, _ = make_client(script)
    with pytest.raises(AuthenticationError) as info:
        await client.get_task("t-1")
    err = info.value
    assert err.code is None and err.server_message == "Unauthorized: go away" and err.request_id == "hdr-9"
    assert err.task_id == "t-1" and KEY not in str(err)
    await client.aclose()


async def test_a_200_that_is_not_json_is_an_api_error():
    script = Script(query=[httpx.Response(200, text="<html>captive portal</html>", headers={"content-type": "text/html"})])
    client, _ = make_client(script)
    with pytest.raises(APIError, match="not JSON") as info:
        await client.get_task("t-1")
    assert info.value.code == "InvalidResponse"
    await client.aclose()


async def test_connection_errors_on_reads_are_retried_then_mapped_from_the_httpx_error():
    script = Script(query=[httpx.ConnectError("[Errno 111] Connection refused")] * 3)
    client, slept = make_client(script, max_retries=2)
    with pytest.raises(APIConnectionError) as info:
        await client.get_task("t-1")
    assert not isinstance(info.value, APITimeoutError)
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert script.count("query") == 3 and len(slept) == 2 and slept[1] > slept[0] * 1.3
    await client.aclose()


async def test_read_timeouts_become_api_timeout_errors():
    script = Script(list=[httpx.ReadTimeout("timed out")] * 2)
    client, _ = make_client(script, max_retries=1)
    with pytest.raises(APITimeoutError) as info:
        await client.list_tasks()
    assert isinstance(info.value.__cause__, httpx.ReadTimeout) and script.count("list") == 2
    await client.aclose()


async def test_wait_raises_wait_timeout_at_the_deadline_with_a_fake_clock():
    script = Script(create=[created()], query=[Repeat(httpx.Response(200, json=task_body("RUNNING")))])
    client, _ = make_client(script)
    now = [0.0]
    client._clock = lambda: now[0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    client._sleep = sleep
    sub = await client.submit(REQ)
    with pytest.raises(WaitTimeoutError) as info:
        await client.wait(sub, timeout=30.0)
    assert info.value.task_id == "t-1" and info.value.task_status == "RUNNING"
    assert info.value.elapsed == pytest.approx(30.0)
    polls = script.count("query")
    assert 5 <= polls <= 15  # ~9.6 s lead, then 10% steps: few requests
    await client.aclose()


async def test_wait_on_a_task_id_polls_at_once_and_reports_every_status():
    script = Script(query=[httpx.Response(200, json=task_body("RUNNING")),
                           httpx.Response(200, json=task_body("SUCCEEDED", results=[{"url": "https://x/1.png"}]))])
    client, slept = make_client(script)
    seen: list[str] = []
    task = await client.wait("t-1", on_status=lambda t: seen.append(t.status.value), timeout=math.inf)
    assert task.status is TaskStatus.SUCCEEDED and seen == ["RUNNING", "SUCCEEDED"]
    assert len(slept) == 1  # polled at once, slept once
    await client.aclose()


async def test_download_never_sends_the_api_key():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=PNG)

    client = AsyncWanxClient(KEY, transport=httpx.MockTransport(handler))
    assert await client.download("https://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/a.png?Expires=1") == PNG
    assert "authorization" not in seen[0].headers
    assert all(KEY not in v for v in seen[0].headers.values())
    await client.aclose()


async def test_closed_clients_say_so():
    client, _ = make_client(Script())
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_task("t-1")


async def test_the_key_never_reaches_logs_or_errors(caplog):
    caplog.set_level(logging.DEBUG)
    script = Script(
        create=[httpx.ConnectError(f"refused with Bearer {KEY}"), created()],
        query=[httpx.Response(500, json={"code": "InternalError", "message": "boom"}),
               httpx.Response(401, json={"code": "InvalidApiKey", "message": "Invalid API-key provided."})],
    )
    client, _ = make_client(script)
    await client.submit(REQ)
    with pytest.raises(AuthenticationError) as info:
        await client.get_task("t-1")
    assert "retrying POST /services/aigc/text2image/image-synthesis after ConnectError" in caplog.text
    assert "retrying GET /tasks/t-1 after 500 InternalError" in caplog.text
    assert KEY not in caplog.text
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    await client.aclose()


# ---- the blocking facade -----------------------------------------------------------------------


def test_sync_facade_works_and_closes():
    script = Script(create=[created()], query=[httpx.Response(200, json=task_body("CANCELED"))])
    with WanxClient(KEY, transport=httpx.MockTransport(script)) as client:
        assert client.backend == "dashscope" and KEY not in repr(client) and repr(client).startswith("<WanxClient")
        sub = client.submit(REQ)
        assert client.get_task(sub.task_id).status is TaskStatus.CANCELED
    with pytest.raises(RuntimeError, match="closed"):
        client.get_task("t-1")
    assert client.async_client.is_closed


async def test_sync_facade_works_inside_a_running_event_loop():
    script = Script(query=[httpx.Response(200, json=task_body("RUNNING"))])
    client = WanxClient(KEY, transport=httpx.MockTransport(script))
    try:
        asyncio.get_running_loop()  # like a notebook cell: a loop is running in this thread
        assert client.get_task("t-1").status is TaskStatus.RUNNING
    finally:
        client.close()


def test_sync_facade_refuses_calls_from_its_own_callbacks():
    script = Script(query=[httpx.Response(200, json=task_body("RUNNING")),
                           httpx.Response(200, json=task_body("FAILED", code="X", message="y"))])
    errors: list[Exception] = []
    with WanxClient(KEY, transport=httpx.MockTransport(script)) as client:
        client.async_client._sleep = _no_sleep

        def on_status(task):  # type: ignore[no-untyped-def]
            try:
                client.get_task("t-1")
            except RuntimeError as exc:
                errors.append(exc)

        assert client.wait("t-1", on_status=on_status).status is TaskStatus.FAILED
    assert errors and "deadlock" in str(errors[0])


async def _no_sleep(seconds: float) -> None:
    return None


async def test_clients_share_one_tls_context_and_it_verifies_certificates():
    """Building TLS settings reads the whole CA bundle: done once per process, not twice per client.
    Shared, they must still verify the service's certificate and host name."""
    import ssl

    from wanx_nb._client_base import shared_tls_context

    clients = [AsyncWanxClient(api_key=KEY, base_url="https://dashscope.aliyuncs.com/api/v1") for _ in range(2)]
    try:
        used = {id(http._transport._pool._ssl_context) for c in clients for http in (c._http, c._files)}
        assert used == {id(shared_tls_context())}
        assert shared_tls_context().verify_mode == ssl.CERT_REQUIRED and shared_tls_context().check_hostname
    finally:
        for c in clients:
            await c.aclose()
