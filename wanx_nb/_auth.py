"""The API key as an `httpx.Auth`: the Authorization header is added when a request is sent.

Nothing on the request path holds the key in a local variable or a header dict, so a traceback that
prints frame locals (IPython's `%xmode Verbose`) cannot show it: frames hold this object, whose repr
shows at most the key's last four characters. Set it on the API client only, never on the client
that talks to image and upload hosts.
"""

from __future__ import annotations

from collections.abc import Generator

import httpx

from ._exceptions import ConfigurationError

__all__ = ["APIKeyAuth"]


class APIKeyAuth(httpx.Auth):
    """`Authorization: Bearer <key>`, added at send time; `repr()` never shows the key.

    Surrounding whitespace (a key read from a file keeps its line break) is dropped. A key with a
    character no key has is refused by `check()` before any call: sent, it would fail inside the HTTP
    library as the create goes out, which must then count as possibly sent (billed or not, unknown).
    """

    __slots__ = ("__key", "_problem")

    def __init__(self, key: str) -> None:
        self.__key = key.strip()
        bad = next((i for i, c in enumerate(self.__key) if not "!" <= c <= "~"), None)
        self._problem = None
        if bad is not None or not self.__key:  # never the key itself in the message, not even in part
            self._problem = "is empty" if bad is None else f"has {_describe(self.__key[bad])} at position {bad + 1}"

    def check(self) -> None:
        """Raise ConfigurationError if the key cannot be sent. Called by the client's setup, not here: a
        traceback that prints frame locals shows the frames it passes, and the caller's holds the key."""
        if self._problem is not None:
            raise ConfigurationError(
                f"the API key (DASHSCOPE_API_KEY or api_key=) {self._problem}: a key is letters, digits and "
                "dashes (sk-...); copy it again from the Model Studio console"
            )

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


def _describe(char: str) -> str:
    if char.isspace():
        return "a line break" if char in "\r\n" else "a space"
    return "a control character" if char < " " or char == "\x7f" else "a non-ASCII character"
