"""The caption band of a placeholder image: the prompt when it can be drawn legibly, else a neutral label.

Chinese prompts need a CJK font. One is looked for once per process: `$WANX_NB_EMULATOR_CJK_FONT`
(a font file, or "none" to use no system font), well-known Noto CJK / WenQuanYi / system paths, then
`fc-match :lang=zh`; a candidate counts only if it really draws CJK (fontconfig happily answers
DejaVu Sans, which has no CJK glyphs). Without one, a prompt the bundled font cannot draw is not drawn
at all: the band says the model, seed and size instead of showing made-up glyphs.

With a CJK font the bytes of an image depend on the machine's fonts; without one they do not.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import unicodedata
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFont

__all__ = ["CJK_FONT_ENV", "cjk_font_path", "draw_caption", "font_draws_cjk"]

CJK_FONT_ENV = "WANX_NB_EMULATOR_CJK_FONT"
_RGB = tuple[int, int, int]
_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
# Where Debian/Ubuntu (fonts-noto-cjk, fonts-wqy-*), Fedora, macOS and Windows keep a CJK font.
_KNOWN_PATHS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/STHeiti Light.ttc",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simhei.ttf",
)


def font_draws_cjk(path: str) -> bool:
    """Whether the font file at `path` has real glyphs for Chinese (not its "missing glyph" box)."""
    try:
        font = ImageFont.truetype(path, 32)
    except OSError:
        return False

    def mask(text: str) -> Image.Image:
        image = Image.new("L", (160, 48))
        ImageDraw.Draw(image).text((4, 4), text, font=font, fill=255)
        return image

    drawn = mask("中文字")
    missing = mask("\ue000\ue001\ue002")  # private-use code points: no font draws these
    return drawn.getbbox() is not None and ImageChops.difference(drawn, missing).getbbox() is not None


def cjk_font_path() -> str | None:
    """The CJK-capable font to draw prompts with, or None (see the module docstring)."""
    return _find_cjk_font(os.environ.get(CJK_FONT_ENV, ""))


@functools.lru_cache(maxsize=4)
def _find_cjk_font(override: str) -> str | None:
    if override.strip().lower() == "none":
        return None
    candidates = [override] if override else []
    candidates += [p for p in _KNOWN_PATHS if Path(p).is_file()]
    fc_match = shutil.which("fc-match")
    if fc_match and not override:
        try:
            found = subprocess.run(
                [fc_match, "-f", "%{file}", ":lang=zh"], capture_output=True, text=True, timeout=5, check=False
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            found = ""
        if found:
            candidates.append(found)
    return next((path for path in candidates if font_draws_cjk(path)), None)


@functools.lru_cache(maxsize=16)
def _font(size: int, path: str | None) -> _Font:
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size=size)


def _bundled_can_draw(text: str) -> bool:
    # Pillow's bundled font (Aileron) covers Latin and its extensions, nothing beyond.
    return all(ord(ch) < 0x250 for ch in text)


def _normalise(text: str) -> str:
    # Full-width punctuation and digits (，。！ＡＢ１) read better as their ASCII forms.
    text = unicodedata.normalize("NFKC", text).replace("。", ". ").replace("、", ", ")
    return " ".join(text.split())


def _fit(text: str, font: _Font, max_width: float) -> str:
    if font.getlength(text) <= max_width:
        return text
    while text and font.getlength(text + "...") > max_width:
        text = text[:-1]
    return text + "..."


def draw_caption(image: Image.Image, prompt: str, model: str, seed: int, style: str | None = None) -> None:
    """A dark band across the top: the prompt, then model, seed, size (and style).

    A prompt that no available font can draw is left out; the neutral label takes its place.
    """
    w, h = image.size
    band_h = max(30, round(h * 0.085))
    size1, size2 = max(10, round(band_h * 0.36)), max(9, round(band_h * 0.26))
    band = image.crop((0, 0, w, band_h))
    image.paste(Image.blend(band, Image.new("RGB", band.size, (10, 10, 14)), 0.62), (0, 0))
    draw = ImageDraw.Draw(image)
    margin = round(band_h * 0.25)
    label = f"{model}  seed {seed}  {w}*{h}" + (f"  {style}" if style else "")
    text = _normalise(prompt)
    path = None if _bundled_can_draw(text) else cjk_font_path()
    if _bundled_can_draw(text) or path is not None:
        lines = [(text, size1, (250, 250, 250), path), (label, size2, (200, 200, 210), None)]
    else:  # no font for this prompt: no pseudo-text, only what can be said legibly
        lines = [(label, size1, (250, 250, 250), None), ("prompt not drawn: no CJK font", size2, (200, 200, 210), None)]
    for (line, size, fill, font_path), top in zip(lines, (0.1, 0.58)):
        font = _font(size, font_path)
        draw.text((margin, round(band_h * top)), _fit(line, font, w - 2 * margin), font=font, fill=fill)
