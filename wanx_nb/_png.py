"""Provenance in PNG text chunks, added without re-encoding the image.

The pixels and every original chunk stay byte for byte as the service sent them; we splice one iTXt
chunk (keyword "wanx_nb", UTF-8 JSON) after IHDR, and can strip it again to get the served bytes back.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

__all__ = ["KEYWORD", "add_provenance", "read_provenance", "strip_provenance"]

KEYWORD = b"wanx_nb"
_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunks(data: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """(type, payload, raw chunk bytes) for every chunk; raises ValueError on a malformed PNG."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG file")
    out, pos = [], len(_SIGNATURE)
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError("truncated PNG chunk header")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise ValueError(f"truncated PNG chunk {ctype!r}")
        out.append((ctype, data[pos + 8 : pos + 8 + length], data[pos:end]))
        pos = end
        if ctype == b"IEND":
            break
    return out


def _is_ours(ctype: bytes, payload: bytes) -> bool:
    return ctype == b"iTXt" and payload.startswith(KEYWORD + b"\x00")


def add_provenance(data: bytes, provenance: dict[str, Any]) -> bytes:
    """`data` with our iTXt chunk (replacing an earlier one) right after IHDR."""
    text = json.dumps(provenance, ensure_ascii=False, sort_keys=True).encode()
    payload = KEYWORD + b"\x00\x00\x00" + b"\x00" + b"\x00" + text  # keyword, no compression, no language
    chunk = struct.pack(">I", len(payload)) + b"iTXt" + payload
    chunk += struct.pack(">I", zlib.crc32(b"iTXt" + payload) & 0xFFFFFFFF)
    parts = [_SIGNATURE]
    for ctype, body, raw in _chunks(data):
        if _is_ours(ctype, body):
            continue
        parts.append(raw)
        if ctype == b"IHDR":
            parts.append(chunk)
    return b"".join(parts)


def strip_provenance(data: bytes) -> bytes:
    """The PNG as it was before `add_provenance`."""
    return _SIGNATURE + b"".join(raw for ctype, body, raw in _chunks(data) if not _is_ours(ctype, body))


def read_provenance(data: bytes) -> dict[str, Any] | None:
    """Our provenance dict from a PNG's bytes, or None when it has none."""
    for ctype, body, _ in _chunks(data):
        if _is_ours(ctype, body):
            return json.loads(body[len(KEYWORD) + 5 :].decode())
    return None
