"""Benchmark: bytes a saved notebook gains per displayed 1024x1024 image, as a ratio to the PNG the
service served (the bytes a user would otherwise embed); and the cost of a 4 x 8 compare grid.

Method: a 1-image result is generated end to end through `Session.generate` against the in-process
emulator. Its output is built the way a kernel builds it (IPython's `DisplayFormatter.format`, which
calls `_repr_mimebundle_`) and stored as an `execute_result` in a one-cell notebook serialized with
`nbformat.writes`. The growth of that .ipynb over the same notebook with no output is divided by the
size of the served PNG. For reference it also prints the growth from `display(PIL image)` (PIL
re-encodes the PNG) and `display(Image(png_bytes))` (the served bytes, base64).

The emulator's synthetic images compress unusually well as PNG, so the same is done for a
photographic-like image swapped into the same result: a smooth random colour field with mid-frequency
texture and per-pixel noise (seeded), about 1.9 MB as PNG, like a real 1024x1024 photo.

The grid: `compare()` of 8 prompts x 4 models (32 images) on the emulator, then in the same run
- `CompareGrid.save()` against a naive PIL grid of the same 32 images (decode, thumbnail, paste, save);
- the grid's first HTML (empty preview cache) against JPEG-encoding its 32 thumbnails once.

Goals (issue 10): <= 0.10 per image; save() <= 1.3x the naive grid; first HTML <= 1.5x the thumbnails.
Run: `.venv/bin/python bench/notebook_bytes.py`.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import io
import json
import os
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from IPython.core.formatters import DisplayFormatter
from IPython.display import Image as IPImage
from PIL import Image

from wanx_nb import _preview, rendering
from wanx_nb._models import GenerationResult
from wanx_nb._request import GenerationRequest
from wanx_nb._session import Session
from wanx_nb.comparison import GUIDE_MODELS, compare
from wanx_nb.emulator import Emulator, EmulatorSettings

GOAL = 0.10
PROMPT = "高清摄影写真，一只布偶猫慵懒地躺在复古木质窗台上。"


def photo_like_png(size: int = 1024, seed: int = 1) -> bytes:
    """A stand-in for a photograph: smooth structure, texture and pixel noise that neither PNG nor JPEG
    can wish away (the emulator's flat synthetic images make any preview look cheap). Deterministic."""
    rng = random.Random(seed)

    def noise(side: int, mode: str = "RGB") -> Image.Image:
        return Image.frombytes(mode, (side, side), rng.randbytes(side * side * len(mode)))

    field = noise(10).resize((size, size), Image.Resampling.BICUBIC)  # large smooth colour areas
    texture = noise(size // 8, "L").resize((size, size), Image.Resampling.BICUBIC).convert("RGB")
    img = Image.blend(field, texture, 0.2)
    img = Image.blend(img, noise(size), 0.06)  # sensor noise, about +-8 levels
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def notebook_bytes(outputs: list[Any]) -> int:
    cell = nbformat.v4.new_code_cell("%%wanx\n" + PROMPT, execution_count=1, outputs=outputs)
    return len(nbformat.writes(nbformat.v4.new_notebook(cells=[cell])).encode("utf-8"))


def growth(obj: Any, formatter: DisplayFormatter) -> tuple[int, dict[str, Any]]:
    """Bytes the notebook gains when `obj` is the cell's result, and the formatted bundle."""
    data, metadata = formatter.format(obj)
    # The kernel sends binary mime data (a PIL image's `image/png`) base64-encoded, as ipykernel's
    # json_clean does; the notebook stores that string.
    data = {k: base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v for k, v in data.items()}
    output = nbformat.v4.new_output("execute_result", data=data, metadata=metadata, execution_count=1)
    return notebook_bytes([output]) - notebook_bytes([]), {"data": data, "metadata": metadata}


def breakdown(bundle: dict[str, Any]) -> str:
    """Where our bytes go: the preview image, the stylesheet, the rest of the HTML, text, metadata."""
    html = bundle["data"].get("text/html", "")
    previews = sum(len(m) for m in re.findall(r'src="(data:[^"]*)"', html))
    css = len(rendering.CSS) if html.startswith(rendering.CSS) else 0
    meta = len(json.dumps(bundle["metadata"], ensure_ascii=False))
    text = len(bundle["data"].get("text/plain", ""))
    other = len(html) - previews - css
    return f"preview {previews:,d}, stylesheet {css:,d}, other html {other:,d}, text {text:,d}, metadata {meta:,d}"


def with_image(result: GenerationResult, png: bytes) -> GenerationResult:
    """The same result, its single image replaced by `png` (provenance and caption unchanged)."""
    image = dataclasses.replace(result.images[0], data=png, sha256=hashlib.sha256(png).hexdigest())
    return dataclasses.replace(result, images=[image])


def measure(label: str, result: GenerationResult, formatter: DisplayFormatter) -> float:
    served = result.images[0].data  # the bytes as served (read back from the store without our chunk)
    assert served is not None
    pil = Image.open(io.BytesIO(served))
    ours, bundle = growth(result, formatter)
    full, _ = growth(pil, formatter)  # what display(PIL image) stores: PIL re-encodes the PNG
    original, _ = growth(IPImage(data=served), formatter)  # display(Image(png_bytes)): the served bytes, base64
    ratio = ours / len(served)
    print(f"{label}: served PNG {len(served):,d} B ({pil.size[0]}x{pil.size[1]})")
    print(f"  display(PIL image), re-encoded PNG   : {full:10,d} B added to the .ipynb")
    print(f"  display(Image(served bytes))         : {original:10,d} B added")
    print(f"  wanx_nb result (1 image)             : {ours:10,d} B added = {ratio:.3f} x the served PNG"
          f" (goal <= {GOAL:.2f})")
    print(f"    of which {breakdown(bundle)}")
    return ratio


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def naive_grid(pngs: list[bytes], columns: int, cell_px: int, out: Path) -> None:
    """What a user would write with PIL: decode, thumbnail, paste on a canvas, save a PNG."""
    rows = -(-len(pngs) // columns)
    canvas = Image.new("RGB", (columns * cell_px, rows * cell_px), "white")
    for k, png in enumerate(pngs):
        img = Image.open(io.BytesIO(png)).convert("RGB")
        img.thumbnail((cell_px, cell_px))
        canvas.paste(img, ((k % columns) * cell_px, (k // columns) * cell_px))
    canvas.save(out, format="PNG")


def jpeg_thumbnails(pngs: list[bytes], px: int) -> int:
    """Encode each image's thumbnail once as JPEG, as the previews are (the least any HTML preview must do)."""
    total = 0
    for png in pngs:
        img = Image.open(io.BytesIO(png)).convert("RGB")
        img.thumbnail((px, px), Image.Resampling.LANCZOS, reducing_gap=3.0)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=_preview.JPEG_QUALITY, optimize=True)
        total += len(buf.getvalue())
    return total


def grid_costs(session: Session, tmp: str, formatter: DisplayFormatter) -> tuple[float, float, float]:
    """(save / naive grid, first HTML / JPEG thumbnails, notebook bytes / the full PNGs) for a 4 x 8 grid."""
    prompts = [f"{PROMPT} variant {k}" for k in range(8)]
    grid = compare(prompts, GUIDE_MODELS, n=1, seed=11, session=session, display=False)
    pngs = [im.data for cell in grid.cells if cell.result for im in cell.result.succeeded]
    assert len(pngs) == 32 and all(pngs), "the grid did not produce 32 images"
    cell_px = 256
    save_s, _ = timed(lambda: grid.save(Path(tmp) / "grid.png", cell_px=cell_px))
    naive_s, _ = timed(lambda: naive_grid(pngs, 4, cell_px, Path(tmp) / "naive.png"))
    _preview._cache.clear()
    html_s, _ = timed(grid.html)
    thumbs_s, _ = timed(lambda: jpeg_thumbnails(pngs, grid.preview_px))
    print("grid 4 models x 8 prompts (32 images), in this run:")
    print(f"  CompareGrid.save()          : {save_s:6.3f} s;  naive PIL grid of the same images: {naive_s:6.3f} s"
          f" = {save_s / naive_s:.2f} x (goal <= 1.3)")
    print(f"  first grid HTML (cold cache): {html_s:6.3f} s;  JPEG-encoding its 32 thumbnails once: {thumbs_s:6.3f} s"
          f" = {html_s / thumbs_s:.2f} x (goal <= 1.5)")
    added, _ = growth(grid, formatter)
    served = sum(len(png) for png in pngs)
    print(f"  the grid as a saved cell    : {added:,d} B = {added / 32:,.0f} B per cell = {added / served:.3f} x "
          f"embedding the 32 served PNGs ({served:,d} B) (goal <= {GOAL:.2f})")
    return save_s / naive_s, html_s / thumbs_s, added / served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="wanx2.1-t2i-turbo")
    args = parser.parse_args()
    os.environ.pop("DASHSCOPE_API_KEY", None)
    formatter = DisplayFormatter()
    with tempfile.TemporaryDirectory() as tmp:
        session = Session(store=tmp, emulator=Emulator(EmulatorSettings(time_scale=0.001)))
        request = GenerationRequest(PROMPT, model=args.model, size="1024*1024", n=1, seed=1)
        result = session.generate(request)
        print(f"notebook bytes per displayed 1024x1024 image ({args.model}, nbformat {nbformat.__version__})")
        ratios = {
            "emulator image": measure("emulator image     ", result, formatter),
            "photographic-like": measure("photographic-like  ", with_image(result, photo_like_png()), formatter),
        }
        save_ratio, html_ratio, cell_ratio = grid_costs(session, tmp, formatter)
    worst = max(ratios.values())
    verdict = "meets" if worst <= GOAL else "MISSES"
    summary = ", ".join(f"{k} {v:.3f}" for k, v in ratios.items())
    print(f"summary: notebook bytes / served PNG: {summary} (goal <= {GOAL:.2f}: {verdict})")
    print(f"summary: grid save() {save_ratio:.2f} x naive PIL grid (goal <= 1.3), "
          f"first HTML {html_ratio:.2f} x JPEG thumbnails (goal <= 1.5), "
          f"notebook bytes per grid cell {cell_ratio:.3f} x its served PNG (goal <= {GOAL:.2f})")


if __name__ == "__main__":
    main()
