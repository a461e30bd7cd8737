"""`BaseClient`: what every operation of AsyncWanxClient stands on (as httpx's and openai's BaseClient).

Where calls go (`_client_config`), the two HTTP clients (the API's, whose auth adds the key at send
time, and the image and upload hosts', which has no auth), the clocks tests inject, the client-side
limits (`_scheduler`), the tasks' expected durations (`_client_poll`), and closing. The operations
are `_client.AsyncWanxClient`'s; each builds a `Sender` (`_client_http`) from this state per call.
"""

from __future__ import annotations

import asyncio
import functools
import random
import ssl
import time
from collections.abc import Awaitable, Callable

import httpx

from ._auth import APIKeyAuth
from ._client_config import InProcessService, resolve_endpoint
from ._client_http import Sender
from ._client_poll import Expectations
from ._client_types import Clocks
from ._constants import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    DEFAULT_WAIT_TIMEOUT,
    DOWNLOADS_AT_ONCE,
)
from ._exceptions import ConfigurationError
from ._scheduler import Scheduler
from ._version import __version__

__all__ = ["BaseClient", "shared_tls_context"]


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """The TLS settings of every client in the process, built once: building them reads the whole CA
    bundle (about 15 ms), which each httpx client would otherwise do again, two per AsyncWanxClient,
    before its first request. httpx's own defaults (certifi, or SSL_CERT_FILE / SSL_CERT_DIR as set when
    the first client is made); the context is never modified after, so sharing it is safe."""
    return httpx.create_ssl_context()


class BaseClient:
    """The configuration, connections, clocks and limits of a client; see AsyncWanxClient for the arguments."""

    def __init__(
        self,
        api_key: str | APIKeyAuth | None = None,
        *,
        base_url: str | None = None,
        region: str | None = None,
        workspace: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        wait_timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        emulator: InProcessService | None = None,
        workspace_domain: bool = False,
    ) -> None:
        # From here on only `auth` holds the key (its repr is redacted): no local, attribute or header
        # dict does, so a traceback printing frame locals (`%xmode Verbose`) cannot show it.
        auth = api_key if isinstance(api_key, APIKeyAuth) else (APIKeyAuth(api_key) if api_key else None)
        del api_key
        if max_retries < 0:
            raise ConfigurationError(f"max_retries must be >= 0, got {max_retries}")
        endpoint = resolve_endpoint(
            auth, base_url=base_url, region=region, workspace=workspace, transport=transport, emulator=emulator,
            workspace_domain=workspace_domain,
        )
        self.region, self.workspace = endpoint.region, endpoint.workspace
        self.backend, self.base_url = endpoint.backend, endpoint.base_url
        self.max_retries = max_retries
        self.wait_timeout = wait_timeout
        self._emulator = endpoint.emulator
        self._auth: APIKeyAuth = endpoint.auth
        timeouts = httpx.Timeout(timeout, connect=connect_timeout)
        headers = {"User-Agent": f"wanx_nb/{__version__}"}
        # Two clients: the API one, whose auth adds the key at send time, and one for image hosts and
        # the upload host, which must never see the API key (it has no auth at all).
        verify: ssl.SSLContext | bool = shared_tls_context() if endpoint.transport is None else True
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeouts, transport=endpoint.transport, headers=headers, auth=self._auth,
            verify=verify,
        )
        self._files = httpx.AsyncClient(
            timeout=timeouts, transport=endpoint.transport, headers=headers, follow_redirects=True, verify=verify
        )
        self._closed = False
        self._downloads = asyncio.Semaphore(DOWNLOADS_AT_ONCE)  # memory: see the constant

        # Injection points for tests: a monotonic clock, an async sleep, wall time, randomness. The
        # parts read them through `_clocks`, so a test may replace them at any time.
        self._clock: Callable[[], float] = time.monotonic
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._wall: Callable[[], float] = time.time
        self._rng = random.Random()
        self._clocks = Clocks(
            clock=lambda: self._clock(),
            wall=lambda: self._wall(),
            sleep=lambda s: self._sleep(s),
            random=lambda: self._rng.random(),
        )
        self._scheduler = Scheduler(clock=lambda: self._clock(), sleep=lambda s: self._sleep(s), region=self.region)
        self._expectations = Expectations(endpoint.time_scale)

    async def aclose(self) -> None:
        """Close the HTTP connections. The client cannot be used afterwards."""
        if self._closed:
            return
        self._closed = True
        await self._http.aclose()
        await self._files.aclose()

    @property
    def is_closed(self) -> bool:
        return self._closed

    def _sender(self, http: httpx.AsyncClient | None = None) -> Sender:
        """Sends through `http` (default: the API's client) with the client's retries, limits and clocks."""
        return Sender(
            http=http or self._http,
            scheduler=self._scheduler,
            region=self.region,
            max_retries=self.max_retries,
            clocks=self._clocks,
            is_closed=lambda: self._closed,
        )
