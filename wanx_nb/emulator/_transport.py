"""`EmulatorTransport`: the emulator app in-process behind httpx, with network faults it alone can play.

A dropped request is decided here, before the app sees it: "before" raises httpx.ConnectError and
the server never hears of the request; "after" lets the app process it (a task may be created)
and then raises httpx.ReadTimeout, as when a response is lost on the way back. A body shorter than
its Content-Length raises httpx.RemoteProtocolError, as a connection closed mid-body does.
"""

from __future__ import annotations

import httpx
from starlette.types import ASGIApp

from ._backend import Backend
from ._routes import IN_PROCESS_HEADER, route_of

__all__ = ["EMULATOR_BASE_URL", "EmulatorTransport"]

# A reserved .invalid name: it can never resolve, so a client misconfigured to use the network
# with this base URL fails loudly instead of reaching some real host.
EMULATOR_BASE_URL = "http://emulator.wanx-nb.invalid/api/v1"


class EmulatorTransport(httpx.AsyncBaseTransport):
    """An httpx transport that serves requests from the emulator app in the same process."""

    def __init__(self, app: ASGIApp, backend: Backend) -> None:
        self._backend = backend
        self._inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = route_of(request.method, request.url.path)
        drop = self._backend.take_drop(route) if route is not None else None
        if drop == "before":
            raise httpx.ConnectError("emulated network fault: the connection failed before sending", request=request)
        request.headers[IN_PROCESS_HEADER] = "in-process"
        response = await self._inner.handle_async_request(request)
        if drop == "after":
            await response.aread()
            await response.aclose()
            raise httpx.ReadTimeout(
                "emulated network fault: the response was lost after the server processed the request", request=request
            )
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit():
            content = await response.aread()
            if len(content) < int(declared):
                # A body shorter than announced (Fault.truncated(honest_length=False)): over a socket the
                # connection ends early, and httpx says so with this error.
                raise httpx.RemoteProtocolError(
                    f"peer closed connection without sending complete message body "
                    f"(received {len(content)} bytes, expected {declared})",
                    request=request,
                )
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
