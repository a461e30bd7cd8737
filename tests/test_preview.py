"""Previews: one encode in the right format, no whole decode of a huge image, a labelled tile instead."""

from __future__ import annotations

import base64
import io
import random
import struct
import zlib

import pytest
from PIL import Image

from wanx_nb import rendering
from wanx_nb._models import GenerationResult, ImageResult, Task, TaskStatus
from wanx_nb._preview import PreviewTooLarge, make_preview, preview_data_uri
from wanx_nb._request import GenerationRequest


def encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour gradients plus per-pixel noise: thousands of colours, like a photograph."""
    rng = random.Random(seed)
    small = Image.frombytes("RGB", (8, 8), rng.randbytes(8 * 8 * 3)).resize((width, height), Image.Resampling.BICUBIC)
    noise = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    return Image.blend(small, noise, 0.08)


def decoded(uri: str) -> tuple[str, Image.Image]:
    head, _, payload = uri.partition(",")
    return head, Image.open(io.BytesIO(base64.b64decode(payload)))


def fake_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height`; its pixel data is absent (decoding it would fail)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_photographic_content_is_a_jpeg_and_few_colours_a_lossless_png():
    head, img = decoded(preview_data_uri(encoded(photo_like(1024, 1024), "PNG"), 384))
    assert head == "data:image/jpeg;base64" and img.size == (384, 384)
    diagram = Image.new("RGB", (600, 300), "white")
    diagram.paste((200, 30, 30), (0, 0, 300, 300))  # two flat colours: PNG, exact
    head, img = decoded(preview_data_uri(encoded(diagram, "PNG"), 200))
    assert head == "data:image/png;base64" and img.size == (200, 100)
    img = img.convert("RGB")  # lossless: away from the edge, the exact colours
    assert img.getpixel((20, 50)) == (200, 30, 30) and img.getpixel((180, 50)) == (255, 255, 255)


def test_transparency_is_kept_as_png():
    img = Image.new("RGBA", (500, 500), (10, 20, 30, 0))
    img.paste(photo_like(250, 250).convert("RGBA"), (0, 0))
    head, small = decoded(preview_data_uri(encoded(img, "PNG"), 100))
    assert head == "data:image/png;base64" and small.mode == "RGBA" and small.getpixel((99, 99))[3] == 0


def test_a_big_jpeg_is_previewed_from_a_reduced_decode():
    # Over the pixel limit, yet previewed: a JPEG decodes at 1/8 scale without ever being whole.
    big = encoded(photo_like(2400, 1800), "JPEG")
    shown = make_preview(big, 300, max_pixels=1_000_000)
    assert (shown.width, shown.height) == (300, 225)


def test_a_png_over_the_pixel_limit_gets_no_preview_but_a_labelled_tile():
    with pytest.raises(PreviewTooLarge, match="2400 x 1800 px is too large to preview"):
        make_preview(encoded(photo_like(2400, 1800), "PNG"), 300, max_pixels=1_000_000)
    # A header claiming 60000 x 60000 is refused from the header alone, before any decode.
    huge = fake_png_header(60_000, 60_000)
    with pytest.raises(PreviewTooLarge):
        preview_data_uri(huge)
    task = Task("t-1", TaskStatus.SUCCEEDED, results=({"url": "https://example.invalid/1.png"},))
    result = GenerationResult(GenerationRequest("a fox", model="wanx-v1", n=1), task, [])
    image = ImageResult(0, 1, "1024*1024", url="https://example.invalid/1.png", data=huge)
    html = rendering.image_tile_html(result, image)
    assert "too large to preview" in html and "open the saved file instead" in html and "<img" not in html


def test_not_an_image_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot decode the image for a preview"):
        preview_data_uri(b"not an image at all")
