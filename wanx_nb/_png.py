"""Provenance in PNG text chunks, added without re-encoding the image.

The pixels and every original chunk stay byte for byte as the service sent them; we splice one iTXt
chunk (keyword "wanx_nb", UTF-8 JSON) after IHDR, and can strip it again to get the served bytes back.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

__all__ = [
    "KEYWORD",
    "MAX_STORED_BYTES",
    "MAX_STORED_PIXELS",
    "add_provenance",
    "check_png",
    "png_dimensions",
    "provenance_parts",
    "read_file_provenance",
    "read_provenance",
    "strip_provenance",
]

KEYWORD = b"wanx_nb"
_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Limits for files read back from a store. The largest size any model serves is ~2 MP; anything far
# beyond is a damaged or hostile file, never decoded (a 20000x20000 header would need 1.2 GB).
MAX_STORED_PIXELS = 40_000_000
MAX_STORED_BYTES = 64 << 20


def _chunks(data: bytes) -> list[tuple[bytes, memoryview, memoryview]]:
    """(type, payload, raw chunk) for every chunk, the last two views into `data` (an image is not
    copied chunk by chunk); raises ValueError on a malformed PNG."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG file")
    view = memoryview(data)
    out: list[tuple[bytes, memoryview, memoryview]] = []
    pos = len(_SIGNATURE)
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError("truncated PNG chunk header")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise ValueError(f"truncated PNG chunk {ctype!r}")
        out.append((ctype, view[pos + 8 : pos + 8 + length], view[pos:end]))
        pos = end
        if ctype == b"IEND":
            break
    return out


def _is_ours(ctype: bytes, payload: bytes | memoryview) -> bool:
    return ctype == b"iTXt" and bytes(payload[: len(KEYWORD) + 1]) == KEYWORD + b"\x00"


def add_provenance(data: bytes, provenance: dict[str, Any]) -> bytes:
    """`data` with our iTXt chunk (replacing an earlier one) right after IHDR."""
    return b"".join(provenance_parts(data, provenance))


def provenance_parts(data: bytes, provenance: dict[str, Any]) -> list[bytes | memoryview]:
    """`add_provenance` as pieces to write one after the other: views into `data` and our chunk, so
    a stored image is not copied whole once more (a 4K PNG is 20 MB or more)."""
    text = json.dumps(provenance, ensure_ascii=False, sort_keys=True).encode()
    payload = KEYWORD + b"\x00\x00\x00" + b"\x00" + b"\x00" + text  # keyword, no compression, no language
    chunk = struct.pack(">I", len(payload)) + b"iTXt" + payload
    chunk += struct.pack(">I", zlib.crc32(b"iTXt" + payload) & 0xFFFFFFFF)
    parts: list[bytes | memoryview] = [_SIGNATURE]
    for ctype, body, raw in _chunks(data):
        if _is_ours(ctype, body):
            continue
        parts.append(raw)
        if ctype == b"IHDR":
            parts.append(chunk)
    return parts


def strip_provenance(data: bytes) -> bytes:
    """The PNG as it was before `add_provenance`."""
    return _SIGNATURE + b"".join(raw for ctype, body, raw in _chunks(data) if not _is_ours(ctype, body))


def read_provenance(data: bytes) -> dict[str, Any] | None:
    """Our provenance dict from a PNG's bytes, or None when it has none."""
    for ctype, body, _ in _chunks(data):
        if _is_ours(ctype, body):
            return _provenance_of(body)
    return None


def _provenance_of(body: bytes | memoryview) -> dict[str, Any]:
    # Our chunk holds the JSON object `add_provenance` wrote.
    provenance: dict[str, Any] = json.loads(bytes(body[len(KEYWORD) + 5 :]).decode())
    return provenance


def png_dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk alone (the first 24 bytes); ValueError if there is none."""
    if not data.startswith(_SIGNATURE) or len(data) < 24 or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file (no IHDR header)")
    return struct.unpack(">II", data[16:24])


def check_png(data: bytes, *, max_pixels: int = MAX_STORED_PIXELS) -> tuple[int, int]:
    """Validate a whole PNG without decoding its pixels: structure, every CRC, IEND, and a size cap.

    Returns (width, height); raises ValueError saying what is wrong.
    """
    width, height = png_dimensions(data)
    if width * height > max_pixels:
        raise ValueError(f"{width}x{height} pixels is over the {max_pixels:,}-pixel limit (decompression bomb?)")
    chunks = _chunks(data)
    for ctype, body, _raw in chunks:
        (crc,) = struct.unpack(">I", _raw[-4:])
        if zlib.crc32(body, zlib.crc32(ctype)) & 0xFFFFFFFF != crc:
            raise ValueError(f"corrupt PNG chunk {ctype!r} (CRC mismatch)")
    if not chunks or chunks[-1][0] != b"IEND":
        raise ValueError("truncated PNG (no IEND chunk)")
    if not any(ctype == b"IDAT" for ctype, _, _ in chunks):
        raise ValueError("PNG without image data (no IDAT chunk)")
    return width, height


def read_file_provenance(path: str, *, head_bytes: int = 1 << 16) -> dict[str, Any] | None:
    """Our provenance from a PNG file, reading only its head (the chunk sits right after IHDR).

    Raises ValueError for a file that is not a PNG or whose chunk is cut off; None when it has none.
    """
    with open(path, "rb") as fh:
        head = fh.read(head_bytes)
        pos = len(_SIGNATURE)
        if not head.startswith(_SIGNATURE):
            raise ValueError("not a PNG file")
        while pos + 8 <= len(head):
            (length,) = struct.unpack(">I", head[pos : pos + 4])
            ctype = head[pos + 4 : pos + 8]
            if ctype in (b"IDAT", b"IEND"):
                return None
            end = pos + 12 + length
            if end > len(head):
                if end > MAX_STORED_BYTES:
                    raise ValueError(f"PNG chunk {ctype!r} claims {length:,} bytes")
                fh.seek(0)
                head = fh.read(end)  # a long provenance chunk: read exactly as far as it goes
                if end > len(head):
                    raise ValueError(f"truncated PNG chunk {ctype!r}")
            body = head[pos + 8 : pos + 8 + length]
            if _is_ours(ctype, body):
                return _provenance_of(body)
            pos = end
    return None
