"""Deterministic placeholder PNGs: a pure function of the generation parameters.

Each model has its own palette and composition and each V1 style its own treatment, so a comparison
grid shows visible differences. A caption band (`_caption`) names the prompt, model, seed and size;
a Chinese prompt is drawn only with a real CJK font, never as made-up glyphs.

Speed: the scene is painted at a small working size (long side 256) with Pillow's C primitives and
scaled up once; the caption and watermark are drawn at full size. No per-pixel Python loops.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import io
import random
from collections.abc import Callable

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from ._caption import draw_caption

__all__ = ["render_png"]

_WORK = 256  # long side of the working canvas
_RGB = tuple[int, int, int]

# Palettes (dark, mid, light, accent) of the models in the registry; other models get one from their name.
_PALETTES: dict[str, tuple[str, str, str, str]] = {
    "wanx2.1-t2i-plus": ("#22104a", "#b8327f", "#ffd56b", "#ffffff"),
    "wanx2.1-t2i-turbo": ("#0b2545", "#13a89e", "#c5f9d7", "#f7b32b"),
    "wanx2.0-t2i-turbo": ("#2d1b0e", "#c8553d", "#f6e7cb", "#588b8b"),
    "wanx-v1": ("#1b3a2f", "#6a994e", "#e9f5db", "#f4a259"),
}


def render_png(
    *,
    model: str,
    prompt: str,
    width: int,
    height: int,
    seed: int,
    negative_prompt: str | None = None,
    style: str | None = None,
    ref: bytes | str | None = None,
    ref_strength: float = 0.5,
    ref_mode: str = "repaint",
    watermark: bool = False,
    grain: bool = False,
) -> bytes:
    """PNG bytes of a `width` x `height` image; the same arguments always give the same bytes.

    `grain`: per-pixel noise over the picture, so the PNG weighs what a photograph's does (the
    service's 1024x1024 PNGs are about 2 MB; without it, 60-150 kB).
    """
    return _render_cached(
        model, prompt, width, height, seed, negative_prompt, style, ref, float(ref_strength), ref_mode, watermark,
        grain,
    )


# Small LRU: a gallery re-downloads the same few images; a 1024x1024 PNG is a few hundred kB.
@functools.lru_cache(maxsize=32)
def _render_cached(
    model: str,
    prompt: str,
    width: int,
    height: int,
    seed: int,
    negative_prompt: str | None,
    style: str | None,
    ref: bytes | str | None,
    ref_strength: float,
    ref_mode: str,
    watermark: bool,
    grain: bool,
) -> bytes:
    rng = random.Random(_digest("scene", model, prompt, negative_prompt or "", seed))
    scale = _WORK / max(width, height)
    work_size = (max(8, round(width * scale)), max(8, round(height * scale)))
    palette = _palette(model, prompt, rng)
    scene = _COMPOSERS.get(model, _compose_generic)(work_size, palette, rng)
    if negative_prompt:
        # The negative prompt steers away from something: here it mutes the colours a little.
        scene = ImageEnhance.Color(scene).enhance(0.75)
    if style and style != "<auto>":
        scene = _STYLES.get(style, _unstyled)(scene, random.Random(_digest("style", style, seed)))
    if ref is not None:
        scene = _blend_reference(scene, ref, ref_strength, ref_mode)
    image = scene.resize((width, height), Image.Resampling.BICUBIC)
    draw_caption(image, prompt, model, seed, style)
    if watermark:
        _draw_watermark(image)
    if grain:
        image = _full_grain(image, random.Random(_digest("grain", seed)))
    out = io.BytesIO()
    # Measured on 1024x1024: level 3 encodes about twice as fast as zlib's default 6 for ~25% more bytes.
    image.save(out, "PNG", compress_level=3)
    return out.getvalue()


def _unstyled(im: Image.Image, rng: random.Random) -> Image.Image:
    return im


def _digest(*parts: object) -> int:
    text = "\x1f".join(repr(p) if isinstance(p, bytes) else str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "big")


def _hex(color: str) -> _RGB:
    return (int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16))


def _palette(model: str, prompt: str, rng: random.Random) -> list[_RGB]:
    if model in _PALETTES:
        base = [_hex(c) for c in _PALETTES[model]]
    else:
        hue = (_digest("hue", model) % 360) / 360
        base = [
            _hsv(hue, 0.7, 0.25),
            _hsv(hue + 0.08, 0.65, 0.7),
            _hsv(hue + 0.15, 0.25, 0.95),
            _hsv(hue + 0.5, 0.8, 0.9),
        ]
    # The prompt nudges the hues so different prompts look different on the same model; the model's
    # character stays recognisable because the shift is small.
    shift = ((_digest("shift", prompt) % 1000) / 1000 - 0.5) * 0.12
    return [_shift_hue(c, shift) for c in base]


def _hsv(h: float, s: float, v: float) -> _RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (round(r * 255), round(g * 255), round(b * 255))


def _shift_hue(color: _RGB, shift: float) -> _RGB:
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in color))
    return _hsv(h + shift, s, v)


def _gradient(size: tuple[int, int], angle: float) -> Image.Image:
    """A linear grey ramp across `size` at `angle` degrees."""
    side = 2 * max(size)
    ramp = Image.linear_gradient("L").resize((side, side)).rotate(angle, resample=Image.Resampling.BILINEAR)
    left, top = (side - size[0]) // 2, (side - size[1]) // 2
    return ramp.crop((left, top, left + size[0], top + size[1]))


def _glow(size: tuple[int, int], center: tuple[float, float], radius: float) -> Image.Image:
    """A radial ramp, 0 at `center` (fractions of the size) rising to 255 at `radius` x long side."""
    side = max(2, round(2 * radius * max(size)))
    disc = Image.radial_gradient("L").resize((side, side))
    canvas = Image.new("L", size, 255)
    canvas.paste(disc, (round(center[0] * size[0] - side / 2), round(center[1] * size[1] - side / 2)))
    return canvas


def _colorize(gray: Image.Image, palette: list[_RGB]) -> Image.Image:
    return ImageOps.colorize(gray, black=palette[0], white=palette[2], mid=palette[1])


def _overlay(base: Image.Image, draw_fn: Callable[[ImageDraw.ImageDraw], None]) -> Image.Image:
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw_fn(ImageDraw.Draw(layer))
    return Image.alpha_composite(base.convert("RGBA"), layer).convert("RGB")


def _compose_plus(size: tuple[int, int], p: list[_RGB], rng: random.Random) -> Image.Image:
    """wanx2.1-t2i-plus: a glowing radial scene with soft bokeh discs."""
    w, h = size
    scene = _colorize(ImageOps.invert(_glow(size, (rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.6)), 0.8)), p)

    def draw(d: ImageDraw.ImageDraw) -> None:
        for _ in range(14):
            r = rng.uniform(0.03, 0.12) * max(w, h)
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            d.ellipse((x - r, y - r, x + r, y + r), fill=(*p[rng.choice((2, 3))], rng.randint(40, 110)))

    return _overlay(scene, draw).filter(ImageFilter.GaussianBlur(1.2))


def _compose_turbo21(size: tuple[int, int], p: list[_RGB], rng: random.Random) -> Image.Image:
    """wanx2.1-t2i-turbo: a diagonal gradient crossed by bold bands."""
    w, h = size
    scene = _colorize(_gradient(size, rng.uniform(20, 70)), p)

    def draw(d: ImageDraw.ImageDraw) -> None:
        for _ in range(6):
            x0, x1 = rng.uniform(-0.2, 1.0) * w, rng.uniform(0.0, 1.2) * w
            t = rng.uniform(0.04, 0.12) * h
            y = rng.uniform(0, h)
            d.polygon([(x0, y), (x1, y - 0.4 * h), (x1, y - 0.4 * h + t), (x0, y + t)], fill=(*p[3], 150))
        cx, cy, r = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, 0.18 * min(w, h)
        d.rectangle((cx - r, cy - r, cx + r, cy + r), outline=(*p[2], 230), width=max(2, w // 64))

    return _overlay(scene, draw)


def _compose_turbo20(size: tuple[int, int], p: list[_RGB], rng: random.Random) -> Image.Image:
    """wanx2.0-t2i-turbo: a portrait: a vertical backdrop with a head and shoulders."""
    w, h = size
    scene = _colorize(_gradient(size, rng.uniform(-10, 10)), p)

    def draw(d: ImageDraw.ImageDraw) -> None:
        cx = w * rng.uniform(0.42, 0.58)
        head = 0.16 * min(w, h) * rng.uniform(0.9, 1.15)
        top = h * rng.uniform(0.25, 0.35)
        d.ellipse((cx - 2.6 * head, top + 1.9 * head, cx + 2.6 * head, top + 6.5 * head), fill=(*p[3], 230))
        d.ellipse((cx - head, top, cx + head, top + 2.3 * head), fill=(*p[2], 245))
        d.ellipse((cx - 1.15 * head, top - 0.25 * head, cx + 1.15 * head, top + 1.0 * head), fill=(*p[0], 220))

    return _overlay(scene, draw).filter(ImageFilter.GaussianBlur(0.8))


def _compose_v1(size: tuple[int, int], p: list[_RGB], rng: random.Random) -> Image.Image:
    """wanx-v1: a landscape: sky, sun and layered hills."""
    w, h = size
    sky = _colorize(ImageOps.invert(_gradient(size, 0)), [p[1], p[2], p[2]])

    def draw(d: ImageDraw.ImageDraw) -> None:
        sx, sy, r = rng.uniform(0.2, 0.8) * w, rng.uniform(0.15, 0.35) * h, 0.09 * max(w, h)
        d.ellipse((sx - r, sy - r, sx + r, sy + r), fill=(*p[3], 255))
        for layer in range(3):
            base = h * (0.55 + 0.15 * layer)
            points = [(0, h)] + [(x * w / 8, base - rng.uniform(0, 0.18) * h) for x in range(9)] + [(w, h)]
            shade = tuple(int(c * (1.0 - 0.25 * layer)) for c in p[0 if layer else 1])
            d.polygon(points, fill=(*shade, 255))

    return _overlay(sky, draw)


def _compose_generic(size: tuple[int, int], p: list[_RGB], rng: random.Random) -> Image.Image:
    """Other models: a gradient with scattered discs."""
    w, h = size
    scene = _colorize(_gradient(size, rng.uniform(0, 360)), p)

    def draw(d: ImageDraw.ImageDraw) -> None:
        for _ in range(8):
            r = rng.uniform(0.05, 0.2) * min(w, h)
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            d.ellipse((x - r, y - r, x + r, y + r), fill=(*p[3], 140))

    return _overlay(scene, draw)


_COMPOSERS: dict[str, Callable[[tuple[int, int], list[_RGB], random.Random], Image.Image]] = {
    "wanx2.1-t2i-plus": _compose_plus,
    "wanx2.1-t2i-turbo": _compose_turbo21,
    "wanx2.0-t2i-turbo": _compose_turbo20,
    "wanx-v1": _compose_v1,
}


def _noise(size: tuple[int, int], rng: random.Random) -> Image.Image:
    # Seeded bytes, not Image.effect_noise: that uses C rand(), which is not reproducible.
    return Image.frombytes("L", size, rng.randbytes(size[0] * size[1]))


def _full_grain(image: Image.Image, rng: random.Random) -> Image.Image:
    # Up to +-8 levels per channel and pixel, seeded: about 4 bits of noise a channel, which is
    # what makes a photograph's PNG weigh about 2 MB at 1024x1024.
    noise = Image.frombytes("RGB", image.size, rng.randbytes(image.width * image.height * 3)).point(lambda v: v >> 4)
    return ImageChops.add(image.convert("RGB"), noise, offset=-8)


def _style_photography(im: Image.Image, rng: random.Random) -> Image.Image:
    im = ImageEnhance.Contrast(im).enhance(1.25)
    # Grain at half the working size: visible after upscaling, yet still compresses reasonably.
    grain = _noise((max(1, im.width // 2), max(1, im.height // 2)), rng).resize(im.size).convert("RGB")
    return Image.blend(im, ImageChops.overlay(im, grain), 0.3)


def _style_portrait(im: Image.Image, rng: random.Random) -> Image.Image:
    vignette = ImageOps.invert(_glow(im.size, (0.5, 0.45), 0.75))
    warm = ImageChops.multiply(im, Image.new("RGB", im.size, (255, 228, 205)))
    return Image.composite(warm, Image.new("RGB", im.size, (20, 12, 8)), vignette.point(lambda v: min(255, v * 2)))


def _style_3d_cartoon(im: Image.Image, rng: random.Random) -> Image.Image:
    im = ImageEnhance.Color(im.filter(ImageFilter.SMOOTH_MORE)).enhance(1.8)
    return ImageOps.posterize(ImageEnhance.Brightness(im).enhance(1.15), 4)


def _style_anime(im: Image.Image, rng: random.Random) -> Image.Image:
    flat = ImageOps.posterize(ImageEnhance.Color(im).enhance(1.5), 3)
    edges = ImageOps.invert(im.convert("L").filter(ImageFilter.FIND_EDGES).point(lambda v: 255 if v > 24 else 0))
    return ImageChops.multiply(flat, edges.convert("RGB"))


def _style_oil(im: Image.Image, rng: random.Random) -> Image.Image:
    strokes = ImageEnhance.Color(ImageOps.posterize(im, 4)).enhance(1.4).filter(ImageFilter.MedianFilter(5))
    relief = strokes.convert("L").filter(ImageFilter.EMBOSS).convert("RGB")
    return Image.blend(strokes, ImageChops.overlay(strokes, relief), 0.9)


def _style_watercolor(im: Image.Image, rng: random.Random) -> Image.Image:
    wash = Image.blend(im.filter(ImageFilter.GaussianBlur(3)), Image.new("RGB", im.size, (250, 247, 240)), 0.35)
    paper = _noise((max(1, im.width // 6), max(1, im.height // 6)), rng).resize(im.size).convert("RGB")
    return Image.blend(wash, ImageChops.soft_light(wash, paper), 0.4)


def _style_sketch(im: Image.Image, rng: random.Random) -> Image.Image:
    gray = im.convert("L")
    lines = ImageOps.invert(gray.filter(ImageFilter.FIND_EDGES))
    lines = ImageOps.autocontrast(ImageChops.multiply(lines, gray.point(lambda v: 200 + v // 5)))
    return ImageOps.colorize(lines, black=(40, 40, 48), white=(246, 244, 238))


def _style_chinese_painting(im: Image.Image, rng: random.Random) -> Image.Image:
    ink = ImageOps.colorize(
        im.convert("L").filter(ImageFilter.GaussianBlur(1.5)), black=(24, 22, 20), white=(240, 230, 205)
    )
    d = ImageDraw.Draw(ink)
    s = max(6, im.width // 14)
    x, y = im.width - 2 * s, im.height - 2 * s
    d.rectangle((x, y, x + s, y + s), fill=(178, 34, 34))  # the red seal
    return ink


def _style_flat(im: Image.Image, rng: random.Random) -> Image.Image:
    return im.quantize(colors=6, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).convert("RGB")


_STYLES: dict[str, Callable[[Image.Image, random.Random], Image.Image]] = {
    "<photography>": _style_photography,
    "<portrait>": _style_portrait,
    "<3d cartoon>": _style_3d_cartoon,
    "<anime>": _style_anime,
    "<oil painting>": _style_oil,
    "<watercolor>": _style_watercolor,
    "<sketch>": _style_sketch,
    "<chinese painting>": _style_chinese_painting,
    "<flat illustration>": _style_flat,
}


def _reference_image(ref: bytes | str, size: tuple[int, int]) -> Image.Image:
    if isinstance(ref, bytes):
        try:
            with Image.open(io.BytesIO(ref)) as img:
                return ImageOps.fit(img.convert("RGB"), size)
        except Exception:
            pass  # the backend checks uploads; anything else still gets a stable stand-in below
    # A URL cannot be fetched offline: stand in a coarse mosaic derived from it.
    rng = random.Random(_digest("ref", ref))
    return Image.frombytes("RGB", (6, 6), rng.randbytes(6 * 6 * 3)).resize(size, Image.Resampling.BILINEAR)


def _blend_reference(scene: Image.Image, ref: bytes | str, strength: float, mode: str) -> Image.Image:
    reference = _reference_image(ref, scene.size)
    if mode == "refonly":
        # "Follow the style": take the reference's colours, keep the scene's structure.
        colours = reference.filter(ImageFilter.GaussianBlur(max(2, scene.width // 16)))
        return Image.blend(scene, ImageChops.soft_light(colours, scene), strength)
    return Image.blend(scene, reference, strength)


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


# 12x12 bitmaps of 生 and 成 for the "AI生成" watermark: the bundled font has no CJK glyphs.
_SHENG = (
    "..#..#......",
    ".#...#......",
    ".#########..",
    "#....#......",
    ".....#......",
    ".########...",
    ".....#......",
    ".....#......",
    ".....#......",
    "############",
    "............",
    "............",
)
_CHENG = (
    "......#.#...",
    "......#..#..",
    "############",
    ".#....#.....",
    ".#....#...#.",
    ".####..#.#..",
    ".#..#..#.#..",
    ".#..#...#...",
    ".#..#..#.#..",
    "#..##.#...#.",
    "#....#.....#",
    "............",
)


@functools.lru_cache(maxsize=16)
def _bitmap(rows: tuple[str, ...], size: int) -> Image.Image:
    cells = bytes(255 if c == "#" else 0 for row in rows for c in row)
    return Image.frombytes("L", (len(rows[0]), len(rows)), cells).resize((size, size), Image.Resampling.NEAREST)


def _draw_watermark(image: Image.Image) -> None:
    """ "AI生成" in the bottom-right corner, white with a dark shadow, as the real service marks images."""
    w, h = image.size
    size = max(12, round(min(w, h) * 0.035))
    font = _font(size)
    ai_w = font.getlength("AI")
    total = ai_w + 2 * size * 1.1
    x, y = w - total - size * 0.6, h - size * 1.7
    draw = ImageDraw.Draw(image)
    for dx, colour in ((max(1, size // 14), (30, 30, 30)), (0, (255, 255, 255))):
        cx, cy = x + dx, y + dx
        draw.text((cx, cy), "AI", font=font, fill=colour)
        cx += ai_w + size * 0.1
        for rows in (_SHENG, _CHENG):
            draw.bitmap((round(cx), round(cy + size * 0.1)), _bitmap(rows, size), fill=colour)
            cx += size * 1.1
