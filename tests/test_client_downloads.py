"""Downloads that hold: retried while they can succeed, checked without decoding, failures named.

A strict scripted image host (every reply is scripted; an unscripted request fails the test) and a
no-op sleep that records the backoff delays.
"""

from __future__ import annotations

import asyncio
import io
import struct
import zlib

import httpx
import pytest
from PIL import Image

from wanx_nb._client import AsyncWanxClient
from wanx_nb._constants import DOWNLOADS_AT_ONCE
from wanx_nb._exceptions import DownloadError, ImageExpiredError, InvalidImageError, PermissionDeniedError
from wanx_nb._models import ImageResult

URL = "https://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/1d/a.png?Expires=1736409601&Signature=abc%3D"


def encoded(fmt: str, size: tuple[int, int] = (16, 12)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "teal").save(out, fmt)
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A small, valid-looking PNG whose header declares `width` x `height` (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


PNG = encoded("PNG")
OSS_EXPIRED = "<Error><Code>AccessDenied</Code><Message>Request has expired.</Message></Error>"
OSS_DENIED = "<Error><Code>AccessDenied</Code><Message>You have no right to access this object.</Message></Error>"


class Host:
    """Replies in order; the last one is not repeated (strict: running out fails the test)."""

    def __init__(self, *replies: httpx.Response | Exception) -> None:
        self.replies = list(replies)
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers
        if not self.replies:
            raise AssertionError(f"unscripted request {request.url}")
        self.calls += 1
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def client_for(host: Host, max_retries: int = 3) -> tuple[AsyncWanxClient, list[float]]:
    client = AsyncWanxClient("sk-" + "canary" + "d0wn10ad5", transport=httpx.MockTransport(host), max_retries=max_retries)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    client._sleep = sleep
    return client, slept


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
async def test_every_promised_format_downloads_and_is_checked(fmt):
    data = encoded(fmt, (16, 12))
    client, slept = client_for(Host(httpx.Response(200, content=data)))
    assert await client.download(URL, expect=(16, 12)) == data and slept == []
    await client.aclose()


async def test_5xx_and_drops_are_retried_with_backoff():
    host = Host(httpx.Response(503, text="busy"), httpx.ReadError("reset"), httpx.Response(200, content=PNG))
    client, slept = client_for(host)
    assert await client.download(URL) == PNG
    assert host.calls == 3 and len(slept) == 2
    await client.aclose()


@pytest.mark.parametrize(
    "cut",
    [
        httpx.Response(200, content=PNG[:40], headers={"content-length": str(len(PNG))}),  # fewer bytes than announced
        httpx.Response(200, content=PNG[:-12]),  # stops before IEND, no length to tell
    ],
)
async def test_a_cut_off_body_is_downloaded_again(cut):
    host = Host(cut, httpx.Response(200, content=PNG))
    client, slept = client_for(host)
    assert await client.download(URL) == PNG
    assert host.calls == 2 and len(slept) == 1
    await client.aclose()


async def test_a_body_still_cut_off_after_the_retries_is_an_invalid_image():
    host = Host(*[httpx.Response(200, content=PNG[:-12])] * 3)
    client, slept = client_for(host, max_retries=2)
    with pytest.raises(InvalidImageError) as info:
        await client.download(URL)
    err = info.value
    assert host.calls == 3 and len(slept) == 2 and slept[1] > slept[0]
    assert err.code == "InvalidImage" and err.billed is True and "cut off" in err.message
    assert "%wanx resume" in err.message and "Signature" not in err.message
    await client.aclose()


@pytest.mark.parametrize(
    "body, expect, words",
    [
        (b"<!DOCTYPE html><html><body>Captive portal</body></html>", None, "HTML page"),
        (b'{"code": "oops"}', None, "JSON"),
        (encoded("PNG", (16, 12)), (1024, 1024), "16x12, not the 1024x1024"),
        (png_declaring(20000, 20000), None, "400 MP"),
        (b"GIF89a" + b"\0" * 40, None, "not a PNG, JPEG or WebP"),
    ],
)
async def test_bytes_that_are_not_the_promised_image_are_refused_at_once(body, expect, words):
    client, slept = client_for(Host(httpx.Response(200, content=body)))
    with pytest.raises(InvalidImageError) as info:
        await client.download(URL, expect=expect)
    assert words in info.value.message and slept == []
    await client.aclose()


async def test_an_expired_url_is_called_that():
    client, _ = client_for(Host(httpx.Response(403, text=OSS_EXPIRED, headers={"content-type": "application/xml"})))
    with pytest.raises(ImageExpiredError) as info:
        await client.download(URL)
    assert "the image URL expired (result URLs live 24 h); the image cannot be downloaded any more" in info.value.message
    await client.aclose()


@pytest.mark.parametrize("status, body", [(403, OSS_DENIED), (404, "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>")])
async def test_other_image_host_refusals_are_download_errors_not_account_problems(status, body):
    client, _ = client_for(Host(httpx.Response(status, text=body)))
    with pytest.raises(DownloadError) as info:
        await client.download(URL)
    err = info.value
    assert type(err) is DownloadError and not isinstance(err, PermissionDeniedError)
    assert err.status == status and err.code == "DownloadFailed" and "activated" not in err.message
    await client.aclose()


async def test_fetch_records_a_failure_on_the_image_and_a_later_fetch_clears_it():
    host = Host(*[httpx.ReadError("reset")] * 4, httpx.Response(200, content=PNG))
    client, _ = client_for(host)
    image = ImageResult(index=0, seed=7, size="16*12", url=URL)
    await client.fetch(image, expect=(16, 12))
    assert image.ok and image.billed and image.missing and not image.gone
    assert image.download_code == "DownloadFailed" and image.code is None and image.url == URL
    assert "DownloadFailed" in repr(image)
    await client.fetch(image, expect=(16, 12))  # a resume, while the URL lives
    assert image.data == PNG and not image.missing and image.download_error is None and image.download_code is None
    await client.aclose()


def test_a_service_failure_is_neither_billed_nor_missing():
    failed = ImageResult(index=1, seed=8, size="16*12", code="InternalError", message="x")
    assert not failed.ok and not failed.billed and not failed.missing


async def test_a_client_receives_at_most_a_few_images_at_once_whatever_the_batch():
    # Each image is held two or three times while it arrives (a 4K PNG is 20 MB or more): the number
    # received at once bounds a batch's memory. The bound is also reached: downloads still overlap.
    inside, most = 0, 0

    async def host(request: httpx.Request) -> httpx.Response:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        for _ in range(20):  # let every other download that may start, start
            await asyncio.sleep(0)
        inside -= 1
        return httpx.Response(200, content=PNG)

    client = AsyncWanxClient("sk-test", transport=httpx.MockTransport(host))
    got = await asyncio.gather(*(client.download(f"{URL}&n={k}") for k in range(3 * DOWNLOADS_AT_ONCE)))
    assert got == [PNG] * (3 * DOWNLOADS_AT_ONCE)
    assert most == DOWNLOADS_AT_ONCE
    await client.aclose()


async def test_a_download_waiting_to_try_again_leaves_its_place_to_others():
    host = Host(httpx.Response(200, content=PNG[:-12]), httpx.Response(200, content=PNG))  # cut off, then whole
    client, _ = client_for(host)
    client._downloads = asyncio.Semaphore(1)
    place_taken_while_waiting: list[bool] = []

    async def sleep(seconds: float) -> None:
        place_taken_while_waiting.append(client._downloads.locked())

    client._sleep = sleep
    assert await client.download(URL) == PNG
    assert place_taken_while_waiting == [False]
    await client.aclose()
