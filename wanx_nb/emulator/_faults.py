"""`Fault`: one scripted misbehaviour of the emulated service, and the bytes some faults serve.

A fault is pure data. `Emulator.script(route, *faults)` queues faults per route; each request on
the route takes the next one. Where a fault acts:

- before the handler (nothing happened on the server): `status()`, `body()`, `drop_before()`,
  `url_expired()`;
- after the handler (the side effect happened: a create really created its task): `status(after=True)`,
  `body(after=True)`, `drop_after()`, `truncated()`, `corrupt()`, `decompression_bomb()`,
  `task_status()`;
- on the task itself (create routes): `outcome()`.

`delay()` only slows the request down.
"""

from __future__ import annotations

import functools
import struct
import zlib
from dataclasses import dataclass
from typing import Literal

from . import _errors as errors

__all__ = [
    "Fault",
    "FaultKind",
    "HTML_PAGE",
    "check_fault_route",
    "corrupt_bytes",
    "decompression_bomb_png",
]

FaultKind = Literal[
    "status",
    "body",
    "drop_before",
    "drop_after",
    "delay",
    "truncated",
    "corrupt",
    "bomb",
    "url_expired",
    "task_status",
    "outcome",
]
_TASK_OUTCOMES = ("FAILED", "PARTIAL", "UNKNOWN")
# The routes a fault kind means something on (None: every route).
_ROUTES_OF: dict[str, tuple[str, ...]] = {
    "url_expired": ("image",),
    "task_status": ("query",),
    "outcome": ("create", "generate"),
}

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>Tengine</center></body></html>\n"
)


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour for the next request on a route (see `Emulator.script`).

    Build faults with the class methods; each docstring has one example. Routes: "create" (both
    async creates), "generate" (the sync multimodal-generation call), "query", "list", "cancel",
    "policy", "upload", "image" (result downloads).

    - `Fault.status(500)`: answer 500 InternalError; nothing is processed.
    - `Fault.status(502, after=True)`: process (a create creates its task), then answer 502.
    - `Fault.status(429, retry_after=3)` / `Fault.status(429)`: throttled, with or without Retry-After.
    - `Fault.body(b"<html>..</html>", content_type="text/html")`: a 200 that is not JSON (before or after).
    - `Fault.drop_before()` / `Fault.drop_after()`: the connection drops before / after the server acted.
    - `Fault.delay(2.0)`: served normally, 2 s late.
    - `Fault.truncated(0.5, honest_length=False)`: the body cut to half (Content-Length honest or not).
    - `Fault.corrupt()`: the body's bytes garbled, same length.
    - `Fault.decompression_bomb()`: a small valid PNG whose header says 20000x20000.
    - `Fault.url_expired()`: 403 AccessDenied "Request has expired." (image route).
    - `Fault.task_status("QUEUED")` / `Fault.task_status("UNKNOWN")`: the query answers that status.
    - `Fault.outcome("FAILED")`, `Fault.outcome("PARTIAL", failed=(1,))`, `Fault.outcome("UNKNOWN")`:
      the created task fails, loses some images, or is lost by the service (queries say UNKNOWN).
    """

    kind: FaultKind
    http_status: int | None = None
    code: str | None = None
    message: str | None = None
    retry_after: float | None = None
    seconds: float = 0.0
    after: bool = False
    content: bytes = b""
    content_type: str = "text/html"
    keep: float = 0.5
    honest_length: bool = True
    value: str | None = None
    failed: tuple[int, ...] = ()
    width: int = 20000
    height: int = 20000

    @classmethod
    def status(
        cls,
        status: int,
        *,
        code: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        after: bool = False,
    ) -> Fault:
        """Answer `status` with the real code and message for it unless given.

        `after=False`: nothing is processed. `after=True`: the request is processed first (a create
        really creates and will bill its task) and the answer is replaced by the error.
        Example: `emu.script("create", Fault.status(504, after=True))`.
        """
        if not 400 <= status <= 599:
            raise ValueError(f"Fault.status needs an HTTP error status (400-599), got {status!r}")
        return cls("status", http_status=status, code=code, message=message, retry_after=retry_after, after=after)

    @classmethod
    def body(
        cls, content: bytes = HTML_PAGE, *, status: int = 200, content_type: str = "text/html", after: bool = False
    ) -> Fault:
        """Answer `content` as-is (an HTML error page by default) instead of the service's JSON.

        Example: `emu.script("create", Fault.body(b"not json", content_type="text/plain", after=True))`.
        """
        return cls("body", http_status=status, content=bytes(content), content_type=content_type, after=after)

    @classmethod
    def drop_before(cls) -> Fault:
        """The connection fails before the request reaches the server (in-process: httpx.ConnectError).

        Example: `emu.script("query", Fault.drop_before())`.
        """
        return cls("drop_before")

    @classmethod
    def drop_after(cls) -> Fault:
        """The server processes the request but the response is lost (in-process: httpx.ReadTimeout;
        over HTTP the connection closes mid-response). Example: `emu.script("create", Fault.drop_after())`.
        """
        return cls("drop_after", after=True)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """The request is served normally, `seconds` late. Example: `emu.script("list", Fault.delay(0.5))`."""
        return cls("delay", seconds=seconds)

    @classmethod
    def truncated(cls, keep: float = 0.5, *, honest_length: bool = True) -> Fault:
        """Serve only the first `keep` fraction of the body.

        `honest_length=True`: Content-Length says the short length (a 200 with cut bytes).
        `honest_length=False`: Content-Length says the full length and the connection ends early
        (httpx raises RemoteProtocolError). Example: `emu.script("image", Fault.truncated(0.3))`.
        """
        if not 0.0 <= keep < 1.0:
            raise ValueError(f"Fault.truncated keep must be in [0, 1), got {keep!r}")
        return cls("truncated", keep=keep, honest_length=honest_length, after=True)

    @classmethod
    def corrupt(cls) -> Fault:
        """Serve the body with its middle bytes garbled (same length, same headers).

        Example: `emu.script("image", Fault.corrupt())`.
        """
        return cls("corrupt", after=True)

    @classmethod
    def decompression_bomb(cls, width: int = 20000, height: int = 20000) -> Fault:
        """Serve a small, valid PNG whose header says `width` x `height` (a decompression bomb).

        Example: `emu.script("image", Fault.decompression_bomb())`.
        """
        return cls("bomb", width=width, height=height, after=True)

    @classmethod
    def url_expired(cls) -> Fault:
        """Answer the object store's 403 AccessDenied "Request has expired." XML (image route).

        Example: `emu.script("image", Fault.url_expired())`.
        """
        return cls("url_expired")

    @classmethod
    def task_status(cls, value: str) -> Fault:
        """The task query answers `task_status: value` (e.g. an unrecognised "QUEUED", or "UNKNOWN").

        Example: `emu.script("query", Fault.task_status("QUEUED"))`.
        """
        return cls("task_status", value=value, after=True)

    @classmethod
    def outcome(
        cls,
        value: Literal["FAILED", "PARTIAL", "UNKNOWN"],
        *,
        code: str | None = None,
        message: str | None = None,
        failed: tuple[int, ...] = (),
    ) -> Fault:
        """Decide how the next created task ends (create and generate routes).

        "FAILED": the task fails with `code`/`message` (InternalError by default), nothing billed.
        "PARTIAL": the images at the 0-based indices `failed` (the last one by default) fail with a
        per-image `code` (InternalError.Timeout by default); the rest succeed and are billed.
        "UNKNOWN": the service loses the task: every query answers UNKNOWN.
        Example: `emu.script("create", Fault.outcome("PARTIAL", failed=(0,)))`.
        """
        if value not in _TASK_OUTCOMES:
            raise ValueError(f"Fault.outcome takes one of {', '.join(_TASK_OUTCOMES)}, got {value!r}")
        return cls("outcome", value=value, code=code, message=message, failed=tuple(failed))

    def to_error(self, *, oss: bool = False) -> errors.EmulatorError:
        assert self.kind == "status" and self.http_status is not None
        return errors.error_for_status(self.http_status, self.code, self.message, retry_after=self.retry_after, oss=oss)


def check_fault_route(route: str, fault: Fault) -> None:
    """Refuse a fault scripted on a route where it could never act, naming the routes that take it."""
    allowed = _ROUTES_OF.get(fault.kind)
    if allowed is not None and route not in allowed:
        raise ValueError(f"a {fault.kind!r} fault acts only on the {' or '.join(allowed)} route, not {route!r}")


def corrupt_bytes(data: bytes) -> bytes:
    """`data` with a stretch in the middle inverted: same length, no longer the same image."""
    if not data:
        return data
    start, end = len(data) // 3, max(len(data) // 3 + 1, 2 * len(data) // 3)
    return data[:start] + bytes(b ^ 0xFF for b in data[start:end]) + data[end:]


@functools.lru_cache(maxsize=4)
def decompression_bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit greyscale PNG of `width` x `height`, all black: ~50 kB that decode to 400 Mpx.

    Streamed through zlib so building it never holds the raw pixels in memory.
    """
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte "none" + packed bits
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row * 1000) for _ in range(height // 1000)]
    parts += [compressor.compress(row * (height % 1000)), compressor.flush()]
    idat = b"".join(parts)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")

