"""Benchmark: bytes a saved notebook gains per displayed 1024x1024 image, as a ratio to embedding the
full PNG (what `display(PIL_image)` stores: its `image/png` base64).

Method: a 1-image result is generated end to end through `Session.generate` against the in-process
emulator. Its output is built the way a kernel builds it (IPython's `DisplayFormatter.format`, which
calls `_repr_mimebundle_`) and stored as an `execute_result` in a one-cell notebook serialized with
`nbformat.writes`. The growth of that .ipynb over the same notebook with no output is compared with the
growth from formatting the decoded PIL image (the baseline, measured in the same run).

The emulator's synthetic images compress unusually well as PNG, so the same is done for a
photographic-like image swapped into the same result: a smooth random colour field with mid-frequency
texture and per-pixel noise (seeded), about 1.9 MB as PNG, like a real 1024x1024 photo.
A second baseline, `IPython.display.Image(png_bytes)`, embeds the original PNG bytes without PIL's
re-encode; its ratio is printed too.

Goal: <= 0.10 per image.  Run: `.venv/bin/python bench/notebook_bytes.py`.
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
from typing import Any

import nbformat
from IPython.core.formatters import DisplayFormatter
from IPython.display import Image as IPImage
from PIL import Image

from wanx_nb import rendering
from wanx_nb._models import GenerationResult
from wanx_nb._request import GenerationRequest
from wanx_nb._session import Session
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
    png = result.images[0].data
    assert png is not None
    pil = Image.open(io.BytesIO(png))
    ours, bundle = growth(result, formatter)
    full, _ = growth(pil, formatter)  # what display(PIL image) stores: PIL re-encodes the PNG
    original, _ = growth(IPImage(data=png), formatter)  # display(IPython.display.Image(png_bytes)): the bytes as is
    ratio = ours / full
    print(f"{label}: PNG {len(png) / 1e3:,.1f} kB ({pil.size[0]}x{pil.size[1]})")
    print(f"  display(PIL image), full PNG        : {full:10,d} B added to the .ipynb")
    print(f"  display(Image(png bytes)), original : {original:10,d} B added")
    print(f"  wanx_nb result (1 image)            : {ours:10,d} B added = {ratio:.3f} x full (goal <= {GOAL:.2f}),"
          f" {ours / original:.3f} x original")
    print(f"    of which {breakdown(bundle)}")
    return ratio


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
    worst = max(ratios.values())
    verdict = "meets" if worst <= GOAL else "MISSES"
    summary = ", ".join(f"{k} {v:.3f}" for k, v in ratios.items())
    print(f"summary: notebook bytes / full PNG: {summary} (goal <= {GOAL:.2f}: {verdict})")


if __name__ == "__main__":
    main()
