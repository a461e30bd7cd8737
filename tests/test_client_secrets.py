"""The API key stays out of tracebacks (frame locals included), reprs and the image hosts' requests.

The tracebacks are IPython's own, in a real InteractiveShell with `%xmode Verbose`, which prints the
variables of every frame on the way: before the key moved into an httpx.Auth, the request's header
dict (Authorization included) was among them.
"""

from __future__ import annotations

import contextlib
import io
import re

import httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell

from wanx_nb._auth import APIKeyAuth
from wanx_nb._client import AsyncWanxClient
from wanx_nb._client_sync import WanxClient
from wanx_nb._request import GenerationRequest

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def canary(monkeypatch) -> str:
    key = "sk-" + "canary" + "7c1f" * 5  # built at run time, shaped like a key, never a real one
    # The cells read it from the environment, as a user's would: no frame of theirs holds it either.
    monkeypatch.setenv("DASHSCOPE_API_KEY", key)
    return key


@pytest.fixture
def shell(ipython_shell):
    ip = ipython_shell
    mode = ip.InteractiveTB.mode
    ip.run_line_magic("xmode", "Verbose")
    yield ip
    ip.run_line_magic("xmode", mode)


def run_verbose(shell: InteractiveShell, code: str, **names: object) -> str:
    """Run `code` as a cell; return everything it printed (the Verbose traceback), without colours."""
    shell.user_ns.update(names)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        result = shell.run_cell(code)
    assert result.error_in_exec is not None, "the cell was expected to raise"
    return ANSI.sub("", out.getvalue())


CELL = """
import asyncio
from wanx_nb import AsyncWanxClient, GenerationRequest

async def main():
    async with AsyncWanxClient(transport=transport, max_retries=0) as client:  # the key: from the environment
        await client.submit(GenerationRequest("a fox in snow", model="wanx-v1", n=1))

asyncio.run(main())
"""


def assert_no_key(text: str, key: str) -> None:
    assert key not in text and key[3:] not in text
    assert "Bearer" not in text


def test_a_connection_error_traceback_in_verbose_mode_has_no_key(shell, canary):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    text = run_verbose(shell, CELL, transport=httpx.MockTransport(refuse))
    assert "APIConnectionError" in text and "ConnectError" in text
    assert "wire.headers = {" in text  # Verbose really printed the request path's locals
    assert "auth = <APIKeyAuth …" in text or "auth=<APIKeyAuth …" in text
    assert_no_key(text, canary)


def test_a_401_traceback_in_verbose_mode_has_no_key(shell, canary):
    seen: list[str] = []

    def unauthorized(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(
            401, json={"code": "InvalidApiKey", "message": "Invalid API-key provided.", "request_id": "r-401"}
        )

    text = run_verbose(shell, CELL, transport=httpx.MockTransport(unauthorized))
    assert "AuthenticationError" in text and "Invalid API-key provided." in text
    assert seen == ["Bearer " + canary]  # the key was sent: added at send time, by the auth
    assert_no_key(text, canary)


def test_a_bad_setting_traceback_in_verbose_mode_has_no_key(shell, canary):
    text = run_verbose(shell, "from wanx_nb import WanxClient\nWanxClient(region='mars')")
    assert "ConfigurationError" in text
    assert_no_key(text, canary)


def test_a_key_passed_to_a_session_is_not_in_its_verbose_traceback(shell, canary):
    # A key passed as an argument (not read from the environment) was a local of Session.__init__.
    cell = "import os\nfrom wanx_nb import Session\nSession(api_key=os.environ['DASHSCOPE_API_KEY'], mode='bogus')"
    text = run_verbose(shell, cell)
    ours = text[text.index("in Session.__init__("):]  # the cell's own line shows os.environ: that one is the user's
    assert "ConfigurationError" in ours and "api_key=None" in ours  # Verbose printed the call's arguments
    assert_no_key(ours, canary)


@pytest.mark.parametrize(("spoiled", "what"), [
    (lambda key: key[:9] + " " + key[9:], "has a space at position 10"),
    (lambda key: key[:9] + "\u3000" + key[9:], "has a space at position 10"),  # an IME's full-width space
    (lambda key: key[:9] + "\n" + key[9:], "has a line break at position 10"),
    (lambda key: key[:9] + "é" + key[9:], "has a non-ASCII character at position 10"),
    (lambda key: " \t", "is empty"),
])
def test_a_key_that_cannot_be_sent_is_refused_before_any_call_and_not_shown(shell, canary, monkeypatch, spoiled, what):
    # Sent, it would fail inside httpx as the create goes out: a create that might have been billed.
    monkeypatch.setenv("DASHSCOPE_API_KEY", spoiled(canary))
    calls = []
    text = run_verbose(shell, CELL, transport=httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(500)))
    assert f"ConfigurationError: the API key (DASHSCOPE_API_KEY or api_key=) {what}:" in text and calls == []
    assert_no_key(text, canary)
    assert canary[:9] not in text and canary[9:] not in text  # neither half either


async def test_a_key_read_with_its_line_break_is_sent_without_it(canary, monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", f" {canary}\n")  # as `open("key.txt").read()` gives it
    seen = []
    created = {"output": {"task_id": "t-1", "task_status": "PENDING"}, "request_id": "r-1"}
    transport = httpx.MockTransport(lambda r: seen.append(r.headers["authorization"]) or httpx.Response(200, json=created))
    async with AsyncWanxClient(transport=transport, max_retries=0) as client:
        await client.submit(GenerationRequest("a fox", model="wanx-v1", n=1))
    assert seen == ["Bearer " + canary]


async def test_reprs_show_at_most_the_last_four_characters(canary):
    auth = APIKeyAuth(canary)
    assert repr(auth) == f"<APIKeyAuth …{canary[-4:]}>" and auth.hint == canary[-4:]
    client = AsyncWanxClient(canary, transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    for text in (repr(client), str(vars(client)), repr(client._http), repr(client._files)):
        assert canary not in text and canary[3:] not in text
    assert client._files.auth is None  # the image and upload hosts' client has no auth at all
    await client.aclose()
    with pytest.raises(TypeError):
        __import__("pickle").dumps(auth)


def test_the_blocking_facade_holds_no_plain_key(canary):
    with WanxClient(canary, transport=httpx.MockTransport(lambda r: httpx.Response(500))) as client:
        assert canary not in repr(client) and canary not in str(vars(client))


async def test_only_api_requests_carry_the_key(canary):
    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] = request.headers.get("authorization")
        if request.url.host == "dashscope.aliyuncs.com":
            return httpx.Response(200, json={"output": {"task_id": "t-1", "task_status": "PENDING"}, "request_id": "r"})
        return httpx.Response(404, text="<Error><Code>NoSuchKey</Code><Message>nope</Message></Error>")

    client = AsyncWanxClient(canary, transport=httpx.MockTransport(handler), max_retries=0)
    await client.submit(GenerationRequest("x", model="wanx-v1", n=1))
    with pytest.raises(Exception):
        await client.download("https://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/a.png?Expires=1")
    assert seen == {"dashscope.aliyuncs.com": "Bearer " + canary, "dashscope-result-bj.oss-cn-beijing.aliyuncs.com": None}
    await client.aclose()


@pytest.mark.parametrize("where", ["http://{key}@127.0.0.1:8000/api/v1", "https://user:{key}@dashscope.aliyuncs.com/api/v1"])
def test_a_key_put_in_the_base_url_is_refused_and_not_shown(shell, canary, monkeypatch, where):
    # Accepted, it became the service's name, kept with every result and in each PNG's provenance.
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", where.format(key=canary))
    calls = []
    text = run_verbose(shell, CELL, transport=httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(500)))
    assert "has a user or password before '@': the key goes in DASHSCOPE_API_KEY" in text and calls == []
    assert_no_key(text, canary)
