"""The API key as an `httpx.Auth`: the Authorization header is added when a request is sent.

Nothing on the request path holds the key in a local variable or a header dict, so a traceback that
prints frame locals (IPython's `%xmode Verbose`) cannot show it: frames hold this object, whose repr
shows at most the key's last four characters. Set it on the API client only, never on the client
that talks to image and upload hosts.
"""

from __future__ import annotations

from collections.abc import Generator

import httpx

__all__ = ["APIKeyAuth"]


class APIKeyAuth(httpx.Auth):
    """`Authorization: Bearer <key>`, added at send time; `repr()` never shows the key."""

    __slots__ = ("__key",)

    def __init__(self, key: str) -> None:
        self.__key = key

    @property
    def hint(self) -> str:
        """The key's last four characters, enough to tell two keys apart."""
        return self.__key[-4:]

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = "Bearer " + self.__key
        yield request

    def __repr__(self) -> str:
        return f"<APIKeyAuth …{self.hint}>"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("an API key is not pickled")
