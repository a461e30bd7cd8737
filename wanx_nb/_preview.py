"""Previews embedded in notebooks: one small image per displayed image, encoded once, and cached.

- One encode: JPEG (q55) for photographic content; PNG only where it is smaller by construction (few
  colours, e.g. flat placeholders and diagrams) or needed (transparency). The choice is made from the
  downscaled pixels (at most 256 colours: PNG), never by encoding both and keeping the smaller.
- A big image is never decoded whole for a preview: a JPEG is decoded at 1/2, 1/4 or 1/8 scale
  (`Image.draft`), and the resize reduces by whole factors first (`reducing_gap`). Above
  PREVIEW_MAX_PIXELS a PNG (or any other format) gets no preview: `PreviewTooLarge`, which the
  renderer shows as a labelled tile.
- Deterministic: the same bytes and size always give the same URI (replayed notebooks match byte for byte).

PIL is imported on first use.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["PREVIEW_MAX_PIXELS", "Preview", "PreviewTooLarge", "make_preview", "preview", "preview_data_uri"]

# 6000 x 6000: far above what the service returns (at most 1440 x 1440); a bigger PNG would take
# seconds and hundreds of MB to decode just to show a thumbnail.
PREVIEW_MAX_PIXELS = 36_000_000
JPEG_QUALITY = 55  # previews only (the full PNG is stored); bench/notebook_bytes.py: q80 made 0.137 of the served PNG
PNG_MAX_COLORS = 256  # up to this many colours, PNG (palette-like content) beats JPEG and is exact

_CACHE_SIZE = 64
_cache: OrderedDict[tuple[str, int], Preview] = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class Preview:
    uri: str  # a data: URI
    width: int
    height: int


class PreviewTooLarge(ValueError):
    """The image is too big to decode for a preview (the renderer shows a labelled tile instead)."""


def preview(data: bytes, max_px: int) -> Preview:
    """The preview of `data` at most `max_px` on its longer side, from a small LRU cache."""
    key = (hashlib.sha256(data).hexdigest(), int(max_px))
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    made = make_preview(data, int(max_px))
    with _lock:
        _cache[key] = made
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return made


def preview_data_uri(png_bytes: bytes, max_px: int = 384) -> str:
    """A `data:` URI of a preview at most `max_px` on its longer side (JPEG q55, or PNG for few colours
    or transparency). Raises ValueError for bytes that are not an image, PreviewTooLarge for a huge one."""
    return preview(png_bytes, max_px).uri


def make_preview(data: bytes, max_px: int, *, max_pixels: int = PREVIEW_MAX_PIXELS) -> Preview:
    """Decode (no more than needed), downscale and encode once. Uncached: see `preview`."""
    from PIL import Image, UnidentifiedImageError

    try:
        img: Image.Image = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as exc:
        raise PreviewTooLarge(f"too large to preview: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot decode the image for a preview: {exc}") from None
    width, height = img.size
    if img.format != "JPEG" and width * height > max_pixels:
        raise PreviewTooLarge(f"{width} x {height} px is too large to preview (over {max_pixels:,} pixels)")
    try:
        has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
        if img.mode in ("P", "PA", "1"):  # palette pixels resize only by nearest neighbour: expand first
            img = img.convert("RGBA" if has_alpha else "RGB")
        if max(width, height) > max_px:
            # thumbnail() keeps the aspect ratio, decodes a JPEG at a reduced scale (draft) and reduces
            # by whole factors before the LANCZOS resize; deterministic for the same input.
            img.thumbnail((max_px, max_px), Image.Resampling.LANCZOS, reducing_gap=3.0)
        else:
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot decode the image for a preview: {exc}") from None
    img = img.convert("RGBA" if has_alpha else "RGB")
    buf = io.BytesIO()
    if has_alpha or img.getcolors(PNG_MAX_COLORS) is not None:
        mime = "image/png"
        img.save(buf, format="PNG")
    else:
        mime = "image/jpeg"
        img.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    uri = f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"
    return Preview(uri, img.size[0], img.size[1])
