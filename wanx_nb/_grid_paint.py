"""The grid as one PNG: axis legend, column and row labels (every prompt, Chinese included), tiles.

Fonts are found at run time: a font with CJK glyphs from fontconfig (`fc-list :lang=zh`) or the usual
install paths (Noto CJK, WenQuanYi, Droid, macOS, Windows). Without one the image says so in its
legend and draws no Chinese as boxes: unprintable runs become "…" and the manifest holds the text.
The grid is read through `_grid_html.GridView` (what `_grid_state.GridState` offers), so this module
needs nothing above the rendering layer.
"""

from __future__ import annotations

import functools
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from ._grid_html import CellView, GridView

from ._registry import get_model

if TYPE_CHECKING:  # PIL loads when a grid is painted
    from PIL.Image import Image
    from PIL.ImageDraw import ImageDraw
    from PIL.ImageFont import FreeTypeFont, ImageFont

    Font: TypeAlias = "FreeTypeFont | ImageFont"

__all__ = ["find_cjk_font", "paint_grid"]

# Fonts with CJK glyphs in the usual places (Debian/Ubuntu, Fedora, macOS, Windows).
_CJK_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/STHeiti Light.ttc",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simhei.ttf",
)
NO_CJK_NOTE = (
    "No font with Chinese glyphs was found on this machine (install e.g. fonts-noto-cjk): Chinese text is "
    "not drawn here ('…'); the full prompts are in {manifest}."
)


def _fontconfig_cjk() -> list[str]:
    """Font files fontconfig lists for Chinese (fc-match would fall back to a Latin font instead)."""
    if shutil.which("fc-list") is None:
        return []
    try:
        out = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted({line.split(":")[0].strip() for line in out.splitlines() if line.strip()})


@functools.lru_cache(maxsize=1)
def find_cjk_font() -> str | None:
    """A font file on this machine that draws Chinese, or None (then the PNG says so)."""
    from PIL import ImageFont

    for path in (*_fontconfig_cjk(), *_CJK_FONTS):
        if not Path(path).exists():
            continue
        try:
            font = ImageFont.truetype(path, 14)
            if font.getmask("中").getbbox() is not None:
                return path
        except OSError:
            continue
    return None


class _Fonts:
    """Fonts at a few sizes, and which characters they can draw."""

    def __init__(self, font_path: str | Path | None) -> None:
        from PIL import ImageFont

        path = str(font_path) if font_path else find_cjk_font()
        self.path = path

        def load(size: int) -> Font:
            if path:
                return ImageFont.truetype(path, size)
            try:
                return ImageFont.load_default(size=size)
            except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
                return ImageFont.load_default()

        self.title, self.label, self.small = load(20), load(15), load(12)
        self._cache: dict[str, bool] = {}
        self._missing = self._mask("\U0010fffd")

    def _mask(self, ch: str) -> bytes:
        try:
            return bytes(self.small.getmask(ch))
        except Exception:
            return b""

    def can_draw(self, ch: str) -> bool:
        if ch.isspace() or ch.isascii():
            return True
        if ch not in self._cache:
            self._cache[ch] = self._mask(ch) != self._missing
        return self._cache[ch]

    def drawable(self, text: str) -> bool:
        return all(self.can_draw(ch) for ch in text)

    def yuan(self, value: float) -> str:
        return f"¥{value:.2f}" if self.can_draw("¥") else f"CNY {value:.2f}"

    def safe(self, text: str) -> str:
        """`text` with characters the font cannot draw replaced (runs of them become one '…')."""
        out, skipping = [], False
        for ch in text:
            if self.can_draw(ch):
                out.append(ch)
                skipping = False
            elif not skipping:
                out.append("…")
                skipping = True
        return "".join(out)


def _wrap(draw: ImageDraw, text: str, font: Font, width: int, max_lines: int) -> list[str]:
    """Greedy wrap by pixel width: at spaces, and inside words (or unspaced Chinese) that are too long."""
    lines: list[str] = []
    line = ""
    for token in re.findall(r"\S+\s*|\s+", text):
        if draw.textlength((line + token).rstrip(), font=font) <= width:
            line += token
            continue
        if line.strip():
            lines.append(line.rstrip())
        line = ""
        for ch in token:
            if line.strip() and draw.textlength((line + ch).rstrip(), font=font) > width:
                lines.append(line.rstrip())
                line = ""
            line += ch
    if line.strip():
        lines.append(line.rstrip())
    if len(lines) <= max_lines:
        return lines
    lines = lines[:max_lines]
    last = lines[-1]
    while last and draw.textlength(last + "…", font=font) > width:
        last = last[:-1]
    lines[-1] = last.rstrip() + "…"
    return lines


def paint_grid(grid: GridView, *, cell_px: int = 256, font_path: str | Path | None = None,
               manifest_name: str = "grid.json") -> Image:
    """The grid as a PIL image (bounded: every image is scaled to fit `cell_px`)."""
    return _Painter(grid, int(cell_px), font_path, manifest_name).paint()


class _Painter:
    MARGIN, GAP, FOOT_H, LINE = 16, 8, 52, 16

    def __init__(self, grid: GridView, cell_px: int, font_path: str | Path | None, manifest_name: str) -> None:
        from PIL import Image, ImageDraw

        self.grid, self.px, self.manifest_name = grid, cell_px, manifest_name
        self.f = _Fonts(font_path)
        self.measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        x, y = grid.x, grid.y
        self.cols, self.rows = (len(x) if x else 1), (len(y) if y else 1)
        self.label_w = 240 if y is not None and y.name == "prompt" else 150 if y is not None else 0
        self.width = 2 * self.MARGIN + self.label_w + self.cols * (self.px + self.GAP)
        head_lines = max((len(self._wrap(lab, self.px, 4, self.f.label)) for lab in self._col_labels()), default=1)
        self.head_h = head_lines * 18 + 10
        self.block_h = (24 if grid.z else 0) + self.head_h + self.rows * (self.px + self.FOOT_H + self.GAP)

    def _wrap(self, text: str, width: int, lines: int, font: Font | None = None) -> list[str]:
        return _wrap(self.measure, self.f.safe(" ".join(text.split())), font or self.f.small, width, lines)

    def _col_labels(self) -> list[str]:
        x = self.grid.x
        if x is None:
            return [""]
        labels = list(x.labels)
        if x.name == "model":
            labels = [f"{m} · {self.f.yuan(get_model(m).price_yuan)}/image · {get_model(m).family}" for m in x.values]
        return labels

    def paint(self) -> Image:
        from PIL import Image, ImageDraw

        g, f, M = self.grid, self.f, self.MARGIN
        legend = self._legend()
        legend_h = len(legend) * self.LINE + 8
        blocks = len(g.z) if g.z else 1
        height = M + 30 + legend_h + blocks * (self.block_h + self.GAP) + M
        img = Image.new("RGB", (self.width, height), "white")
        draw = ImageDraw.Draw(img)
        draw.text((M, M), f.safe(g.title_text()), fill="black", font=f.title)
        top = M + 30
        for line, color in legend:
            draw.text((M, top), line, fill=color, font=f.small)
            top += self.LINE
        top += 8
        for zi in range(blocks):
            self._block(img, draw, zi, top)
            top += self.block_h + self.GAP
        return img

    def _legend(self) -> list[tuple[str, str]]:
        """The axis legend, the shared parameters, cost, notes and the font fallback (if any)."""
        g, f = self.grid, self.f
        width = self.width - 2 * self.MARGIN
        lines: list[tuple[str, str]] = []
        for letter, axis in (("X (across)", g.x), ("Y (down)", g.y), ("Z (blocks)", g.z)):
            if axis is not None:
                values = [("on" if v else "off") if isinstance(v, bool) else str(v) for v in axis.values]
                text = f"{letter}: {axis.name} = " + " | ".join(values)
                lines += [(s, "#111") for s in self._wrap(text, width, 6)]
        shared = ", ".join(f"{k}={v}" for k, v in g.fixed_text().items())
        summary = f"Same in every cell: {shared or 'model defaults'}. Backend: {', '.join(g.backends)}. "
        summary += f"Estimated {f.yuan(g.plan.yuan)}, billed {f.yuan(g.cost_yuan)}."
        reused = g.reuse_text()
        if reused:  # starts with a count: no capital needed
            summary += f" {reused}."
        lines += [(s, "#333") for s in self._wrap(summary, width, 3)]
        for note in g.notes[:6]:
            lines += [(s, "#8a4b00") for s in self._wrap("* " + note, width, 2)]
        texts = [str(v) for a in (g.x, g.y, g.z) if a is not None and a.name == "prompt" for v in a.values]
        texts += list(g.prompts)
        if not all(f.drawable(t) for t in texts):
            lines += [(s, "#a12") for s in self._wrap(NO_CJK_NOTE.format(manifest=self.manifest_name), width, 8)]
        return lines

    def _block(self, img: Image, draw: ImageDraw, zi: int, top: int) -> None:
        g, f, M = self.grid, self.f, self.MARGIN
        if g.z is not None:
            draw.text((M, top), f.safe(f"Z: {g.z.labels[zi]}"), fill="black", font=f.label)
            top += 24
        for xi, label in enumerate(self._col_labels()):
            x = M + self.label_w + xi * (self.px + self.GAP)
            for k, line in enumerate(self._wrap(label, self.px, 4, f.label)):
                draw.text((x, top + k * 18), line, fill="black", font=f.label)
        top += self.head_h
        for yi in range(self.rows):
            y = top + yi * (self.px + self.FOOT_H + self.GAP)
            if g.y is not None:
                room = (self.px + self.FOOT_H) // self.LINE
                for k, line in enumerate(self._wrap(g.y.labels[yi], self.label_w - 12, room)):
                    draw.text((M, y + k * self.LINE), line, fill="#222", font=f.small)
            for xi in range(self.cols):
                x = M + self.label_w + xi * (self.px + self.GAP)
                self._cell(img, draw, g.cell_at(zi, yi, xi), x, y)

    def _cell(self, img: Image, draw: ImageDraw, cell: CellView, x: int, y: int) -> None:
        px, f = self.px, self.f
        draw.rectangle([x - 1, y - 1, x + px, y + px], outline="#ccc")
        result = cell.result
        if result is not None and result.succeeded:
            ims = result.succeeded[:4]
            across = 1 if len(ims) == 1 else 2
            down = math.ceil(len(ims) / across)
            slot_w, slot_h = px // across, px // down
            for k, im in enumerate(ims):
                try:
                    pic = im.image.convert("RGB")
                except Exception:  # unreadable bytes: leave the slot empty
                    continue
                pic.thumbnail((slot_w, slot_h))
                img.paste(pic, (x + (k % across) * slot_w + (slot_w - pic.width) // 2,
                                y + (k // across) * slot_h + (slot_h - pic.height) // 2))
        else:
            failed = cell.error is not None or result is not None
            draw.rectangle([x, y, x + px - 1, y + px - 1], fill="#fdf3f2" if failed else "#f4f4f4")
            if cell.error is not None:
                message = getattr(cell.error, "server_message", None) or cell.error
                head, body = "FAILED", f"{cell.status_text().removeprefix('failed ')}: {message}"
            elif result is not None:
                head, body = "NO IMAGE", "; ".join(f"{im.code}: {im.message}" for im in result.failed)
            else:
                head, body = ("PLANNED" if self.grid.dry_run else cell.phase.upper()), ""
            draw.text((x + 8, y + 8), head, fill="#a12", font=f.label)
            for k, line in enumerate(self._wrap(body, px - 16, 8)):
                draw.text((x + 8, y + 30 + k * 15), line, fill="#5a1d1a", font=f.small)
        request = cell.request
        foot = f"seed {request.seed} · {request.effective_size}"
        lines = self._wrap(foot, px, 2)
        for k, line in enumerate(lines):
            draw.text((x, y + px + 4 + k * 15), line, fill="#333", font=f.small)
        flagged = [n for n in cell.notes if "n/a" in n or n.startswith("size ")]
        if cell.shares is not None:
            flagged.append("same request as another cell: sent once")
        if flagged:
            draw.text((x, y + px + 4 + len(lines) * 15), self._wrap(flagged[0], px, 1)[0], fill="#a15c00", font=f.small)
