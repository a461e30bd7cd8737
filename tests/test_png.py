"""Provenance in PNG chunks (`_png`): served bytes kept as they were, other tools' chunks left alone, stored
files checked without decoding, and a file's provenance read from its head."""

from __future__ import annotations

import struct
import zlib

import pytest

from wanx_nb._png import add_provenance, check_png, read_file_provenance, read_provenance, strip_provenance

from test_journal import png
from test_store_faults import bomb_png, chunk


def without_idat(data: bytes) -> bytes:
    """The PNG's signature and IHDR, then IEND: a header with no image data."""
    return data[:33] + chunk(b"IEND", b"")


def test_other_tools_text_chunks_are_kept_byte_for_byte_and_never_read_as_ours():
    xmp = chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00<x:xmpmeta/>")
    served = png()[:33] + xmp + png()[33:]  # as a service or an editor may send it
    stamped = add_provenance(served, {"task_id": "t-1"})
    assert xmp in stamped and read_provenance(stamped) == {"task_id": "t-1"}
    assert strip_provenance(stamped) == served
    assert read_provenance(served) is None


def test_the_chunk_is_utf8_json_that_other_png_tools_can_show():
    stamped = add_provenance(png(), {"prompt": "一只红狐狸"})
    assert "一只红狐狸".encode() in stamped and read_provenance(stamped) == {"prompt": "一只红狐狸"}


def test_bytes_after_iend_are_ignored_as_png_readers_do():
    served = png() + b"\0\0\0"
    assert check_png(served) == (32, 24)
    assert strip_provenance(add_provenance(served, {"a": 1})) == png()


def test_what_is_wrong_with_a_stored_file_is_said_exactly():
    good = png()
    cases = [
        (b"<html>", read_provenance, "not a PNG file"),
        (good[:-4], check_png, "truncated PNG chunk b'IEND'"),  # cut inside the last chunk, after its type
        (good[:-12], check_png, r"truncated PNG \(no IEND chunk\)"),
        (without_idat(good), check_png, r"PNG without image data \(no IDAT chunk\)"),
    ]
    for data, read, message in cases:
        with pytest.raises(ValueError, match=f"^{message}$"):
            read(data)


def test_the_pixel_limit_is_inclusive_and_holds_for_any_header():
    assert check_png(png(), max_pixels=32 * 24) == (32, 24)
    with pytest.raises(ValueError, match="pixel limit"):
        check_png(png(), max_pixels=32 * 24 - 1)
    with pytest.raises(ValueError, match="pixel limit"):  # a width no PNG may have (over 2**31 - 1)
        check_png(bomb_png(width=0xFFFFFFFF, height=1))


def test_provenance_is_read_from_the_head_and_a_cut_off_chunk_is_an_error(tmp_path):
    path = tmp_path / "a.png"
    stamped = add_provenance(png(), {"task_id": "t-1"})
    path.write_bytes(stamped[:33])  # signature and IHDR only
    assert read_file_provenance(str(path)) is None
    path.write_bytes(stamped[:41])  # our chunk's length and type, nothing more
    with pytest.raises(ValueError, match=r"^truncated PNG chunk b'iTXt'$"):
        read_file_provenance(str(path))
    path.write_bytes(png()[:33] + struct.pack(">I", 0xFFFFFFF0) + b"iTXt")
    with pytest.raises(ValueError, match=r"^PNG chunk b'iTXt' claims 4,294,967,280 bytes$"):
        read_file_provenance(str(path))


def test_a_file_without_provenance_is_read_no_further_than_its_image_data(tmp_path):
    path = tmp_path / "a.png"
    idat = zlib.compress(b"\0" * 64)
    cut = png()[:33] + struct.pack(">I", 1 << 20) + b"IDAT" + idat  # image data cut short (a partial download)
    path.write_bytes(cut)
    assert read_file_provenance(str(path)) is None
    path.write_bytes(without_idat(png()) + b"trailing junk that is not a chunk")
    assert read_file_provenance(str(path)) is None
