"""Fetching a result's images: retried, checked (`_imagecheck`), expired URLs told apart.

Downloads go through the image hosts' client, which has no auth: the API key is never sent there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ._backoff import retry_delay
from ._client_errors import check_length, download_error, short_url
from ._client_http import Sender
from ._exceptions import APIError, DownloadError, InvalidImageError
from ._imagecheck import ImageCheckError, check_image
from ._models import ImageResult
from ._protocol import WireRequest

__all__ = ["download", "fetch_into"]

log = logging.getLogger("wanx_nb")


async def download(
    sender: Sender, url: str, *, place: asyncio.Semaphore, expect: tuple[int, int] | None = None
) -> bytes:
    """The checked image at `url` (see `AsyncWanxClient.download`); a cut-off body is fetched again.

    Each try holds a `place` (the client's DOWNLOADS_AT_ONCE) while the bytes arrive and are checked,
    not while it waits to try again.
    """
    where = short_url(url)
    attempt = 0
    while True:
        async with place:
            data, status, problem = await _try(sender, url, where, expect)
        if data is not None:
            return data
        if attempt >= sender.max_retries:
            raise InvalidImageError(
                f"{where} was still cut off after {attempt + 1} downloads ({problem}); the image was billed: "
                "`%wanx resume` downloads it again while its URL lives (24 h)",
                url=where, status=status,
            )
        delay = retry_delay(attempt, rng=sender.clocks.random) or 0.0
        log.debug(
            "retrying GET %s: %s, in %.2fs (retry %d of %d)", where, problem, delay, attempt + 1, sender.max_retries
        )
        await sender.clocks.sleep(delay)
        attempt += 1


async def _try(
    sender: Sender, url: str, where: str, expect: tuple[int, int] | None
) -> tuple[bytes | None, int, str]:
    """One download: (the checked bytes, status, "") or (None, status, why it was cut off)."""
    try:
        response = await sender.request(WireRequest("GET", url), kind="read")
    except APIError as exc:
        raise download_error(exc, where) from exc
    data = response.content
    try:
        check_length(response, len(data))
        check_image(data, expect=expect)
    except ImageCheckError as exc:
        if not exc.truncated:
            raise InvalidImageError(f"{where} is {exc}", url=where, status=response.status_code) from None
        return None, response.status_code, str(exc)
    return data, response.status_code, ""


async def fetch_into(image: ImageResult, download: Callable[[str], Awaitable[bytes]]) -> None:
    """`download` the image's URL into `image.data`; on failure set `download_error`/`download_code`."""
    if image.url is None:
        raise ValueError(f"image {image.index} has no URL to download ({image.code}: {image.message})")
    try:
        image.data = await download(image.url)
    except DownloadError as exc:
        image.download_error, image.download_code = exc.message, exc.code
    else:
        image.download_error = image.download_code = None
