"""Is a body the image the service promised? Read from the header and the ending, never decoded.

`inspect_image(data)` returns the format and dimensions of a PNG, JPEG or WebP, or raises
`ImageCheckError` saying what is wrong. `truncated` on the error means the bytes stop before the
format says they end (a download worth retrying); anything else (HTML, another format, a corrupt
header) will not get better by downloading again. Pixels are never decoded, so a decompression bomb
(a small file declaring a huge image) costs nothing to refuse: see `check_image`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ._png import check_png

__all__ = ["ImageCheckError", "ImageInfo", "MAX_IMAGE_PIXELS", "check_image", "inspect_image"]

# Over this many pixels an image is refused without decoding (decompression bombs). The largest
# sizes the service documents are about 4 megapixels; PIL's own bomb warning starts near 89 MP.
MAX_IMAGE_PIXELS = 50_000_000

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SIGNATURES = (_PNG_SIGNATURE, b"\xff\xd8\xff", b"RIFF")
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# JPEG start-of-frame markers (they carry the dimensions): C0-CF except DHT (C4), JPG (C8), DAC (CC).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageCheckError(ValueError):
    """The bytes are not a whole PNG, JPEG or WebP. `truncated`: they stop too early."""

    def __init__(self, reason: str, *, truncated: bool = False) -> None:
        super().__init__(reason)
        self.truncated = truncated


@dataclass(frozen=True)
class ImageInfo:
    format: str  # "PNG", "JPEG" or "WEBP"
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def inspect_image(data: bytes) -> ImageInfo:
    """Format and dimensions of `data`, checking that it ends where its format says it ends."""
    if data.startswith(_PNG_SIGNATURE):
        return _png(data)
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp(data)
    if data and len(data) < 12 and any(sig.startswith(data[: len(sig)]) for sig in _SIGNATURES):
        raise ImageCheckError(f"only {len(data)} bytes, cut off inside the image header", truncated=True)
    return _not_an_image(data)


def check_image(
    data: bytes, *, expect: tuple[int, int] | None = None, max_pixels: int = MAX_IMAGE_PIXELS
) -> ImageInfo:
    """`inspect_image`, then refuse an image over `max_pixels` or of other dimensions than `expect`."""
    info = inspect_image(data)
    if info.pixels > max_pixels:
        raise ImageCheckError(
            f"the {info.format} declares {info.width}x{info.height} pixels ({info.pixels / 1e6:.0f} MP), over the "
            f"{max_pixels / 1e6:.0f} MP limit; refused without decoding it (a decompression bomb?)"
        )
    if expect is not None and (info.width, info.height) != tuple(expect):
        raise ImageCheckError(
            f"the {info.format} is {info.width}x{info.height}, not the {expect[0]}x{expect[1]} the service promised"
        )
    return info


def _png(data: bytes) -> ImageInfo:
    if len(data) < 33:
        raise ImageCheckError(f"a PNG of only {len(data)} bytes: cut off inside its header", truncated=True)
    length, kind = struct.unpack(">I4s", data[8:16])
    if kind != b"IHDR" or length != 13:
        raise ImageCheckError("a PNG signature without an IHDR chunk: a corrupt PNG")
    width, height = struct.unpack(">II", data[16:24])
    if not data.endswith(_PNG_END):
        raise ImageCheckError(f"a PNG of {len(data)} bytes without its IEND end chunk: cut off", truncated=True)
    if width * height <= MAX_IMAGE_PIXELS:  # a bomb is refused by check_image without reading further
        try:
            check_png(data, max_pixels=MAX_IMAGE_PIXELS)  # every chunk's CRC: bytes garbled on the way
        except ValueError as exc:
            # Garbled in transit (the service's own file is whole): downloading again may give it whole.
            raise ImageCheckError(f"a damaged PNG ({exc})", truncated=True) from None
    return _sized("PNG", width, height)


def _jpeg(data: bytes) -> ImageInfo:
    size: tuple[int, int] | None = None
    pos = 2
    while pos + 4 <= len(data) and size is None:
        if data[pos] != 0xFF:
            raise ImageCheckError("a JPEG whose segments do not line up: a corrupt JPEG")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            size = (width, height)
        pos += 2 + length
    if size is None:
        raise ImageCheckError(f"a JPEG of {len(data)} bytes cut off before its frame header", truncated=True)
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ImageCheckError(f"a JPEG of {len(data)} bytes without its end marker: cut off", truncated=True)
    return _sized("JPEG", *size)


def _webp(data: bytes) -> ImageInfo:
    (riff_size,) = struct.unpack("<I", data[4:8])
    if len(data) < riff_size + 8:
        raise ImageCheckError(f"a WebP of {len(data)} bytes that says it has {riff_size + 8}: cut off", truncated=True)
    chunk = data[12:16]
    body = data[20:]
    if chunk == b"VP8X" and len(body) >= 10:
        width = 1 + int.from_bytes(body[4:7], "little")
        height = 1 + int.from_bytes(body[7:10], "little")
    elif chunk == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    elif chunk == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        width = int.from_bytes(body[6:8], "little") & 0x3FFF
        height = int.from_bytes(body[8:10], "little") & 0x3FFF
    else:
        raise ImageCheckError("a WebP without a readable VP8/VP8L/VP8X header: a corrupt WebP")
    return _sized("WEBP", width, height)


def _sized(fmt: str, width: int, height: int) -> ImageInfo:
    if width <= 0 or height <= 0:
        raise ImageCheckError(f"a {fmt} that says it is {width}x{height}: a corrupt header")
    return ImageInfo(fmt, width, height)


def _not_an_image(data: bytes) -> ImageInfo:
    head = data[:200].lstrip().lower()
    if not data:
        raise ImageCheckError("an empty body, not an image", truncated=True)
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        what = "an HTML page"
    elif head.startswith(b"<?xml") or head.startswith(b"<"):
        what = "an XML document"
    elif head.startswith((b"{", b"[")):
        what = "JSON"
    else:
        what = f"bytes starting {data[:8]!r}"
    raise ImageCheckError(f"{what}, not a PNG, JPEG or WebP image")
