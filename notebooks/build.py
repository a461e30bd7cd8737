"""Write the walk-through notebooks and execute them in place (outputs from the emulator).

    .venv/bin/python notebooks/build.py [NAME ...]

Each notebook runs in a fresh kernel with no DASHSCOPE_API_KEY (so against the offline emulator),
from a clean notebooks/wanx_store, with fixed seeds: re-running gives the same outputs, which is what
`pytest --nbval` checks.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text.strip())


def code(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(text.strip())


def code_error(text: str) -> nbformat.NotebookNode:
    """A cell whose error is the point (nbclient and nbval both honour the tag)."""
    cell = code(text)
    cell.metadata["tags"] = ["raises-exception"]
    return cell


SETUP = code("%load_ext wanx_nb")

NOTEBOOKS: dict[str, list[nbformat.NotebookNode]] = {}

NOTEBOOKS["01_quickstart"] = [
    md("""
# Quickstart: Tongyi Wanxiang text-to-image in Jupyter

`wanx_nb` puts Alibaba Cloud's Tongyi Wanxiang (通义万相) text-to-image models in a notebook.
With no `DASHSCOPE_API_KEY` in the environment it runs against its built-in **offline emulator** of the
DashScope service: the images are placeholders (each says which model, prompt and seed made it) and
every result carries an *emulator* badge. Set the key and the same cells call the real service.
"""),
    SETUP,
    md("The models, their prices and limits, and which backend this kernel uses:"),
    code("%wanx models"),
    md("""
## A first image

The cell body is the prompt; the options are the API's parameters. `-o fox` keeps the result object.
The seed is fixed so this notebook gives the same images every time (without `--seed`, wanx_nb picks
one, sends it and records it, so the seed of every image is always known).
"""),
    code("%%wanx -n 2 --seed 42 -o fox\n一只在雪地里奔跑的红狐狸，电影级光照"),
    md("The result gives programmatic access to every image and its provenance:"),
    code("""
first = fox.images[0]
print(first.seed, first.size, fox.cost_yuan, fox.backend)
print(first.actual_prompt)
fox.pil_images[0].size
"""),
    md("""
## Variables in prompts

`{name}` is filled from your variables (write `{{` for a literal brace).
"""),
    code('animal = "熊猫"\nplace = "竹林"'),
    code("%%wanx -m wanx2.0-t2i-turbo --seed 7 --no-extend\n一只{animal}在{place}里吃竹子，水彩画风格"),
    md("""
## Mistakes are caught before anything is sent

Every problem is listed at once, naming the parameter, the bad value and what is allowed. Nothing is
sent, nothing is billed.
"""),
    code_error("%%wanx -m wanx-v1 --size 1024*768 --watermark -n 6\n一只猫"),
    md("`--dry-run` says what a cell would cost without sending it:"),
    code("%%wanx --dry-run -m wanx2.1-t2i-plus -n 4\n一座雪山下的小木屋"),
    md("""
## From Python, with top-level `await`

The async API works directly in a notebook cell (the kernel's loop is already running).
"""),
    code("""
from wanx_nb import GenerationRequest, get_session

result = await get_session().agenerate(
    GenerationRequest("a lighthouse at dawn, watercolor", model="wanx2.1-t2i-turbo", n=1, seed=11)
)
result
"""),
]

NOTEBOOKS["02_model_comparison"] = [
    md("""
# The guide's model comparison: four prompts across the four models

The user guide compares the models by running the same prompts on each with the API's defaults.
`wanx_nb.compare` does the same: rows are prompts, columns are models, one shared seed for every cell.
It states the number of images and the cost before it sends anything, runs the cells concurrently
within each model's rate and concurrency limits, and fills the grid in as they finish.
"""),
    SETUP,
    code("""
import wanx_nb
from wanx_nb.comparison import GUIDE_PROMPTS

for i, prompt in enumerate(GUIDE_PROMPTS, 1):
    print(i, prompt)
"""),
    md("First the plan only (`dry_run=True` sends nothing):"),
    code("wanx_nb.compare(GUIDE_PROMPTS, dry_run=True)"),
    md("Now the grid itself:"),
    code("grid = wanx_nb.compare(GUIDE_PROMPTS)\ngrid"),
    md("Every cell's result is there for analysis, e.g. what the V2 models' prompt rewriting made of prompt 3:"),
    code("""
for model in ("wanx2.1-t2i-plus", "wanx2.1-t2i-turbo", "wanx2.0-t2i-turbo", "wanx-v1"):
    image = grid[2, model].images[0]
    print(f"{model:18} seed {image.seed}: {image.actual_prompt or '(V1: no rewriting)'}")
"""),
    md("`.save()` writes one labelled PNG of the grid and a JSON manifest beside it:"),
    code("""
path = grid.save("model_comparison.png")
from PIL import Image
print(path, Image.open(path).size)
"""),
    md("""
## Parameters that only some models take

`compare` adapts each cell to its model and says so: here a V2 size and a V1 style. Nothing is silent.
"""),
    code('wanx_nb.compare(GUIDE_PROMPTS[:1], size="1024*768", style="<watercolor>", dry_run=True)'),
]

NOTEBOOKS["03_widget_panel"] = [
    md("""
# The widget panel

`wanx_nb.Panel()` (or `%wanx panel`) puts every parameter on screen: the controls follow the model's
family (V1: style, its four sizes and a reference image; V2: free width and height, prompt rewriting and
the watermark), with a live cost estimate. Generate runs in the background, so the widgets stay
responsive; Cancel cancels tasks still PENDING. Each result is also written into this cell's output as
a static image, so exported notebooks and GitHub show it.
"""),
    SETUP,
    code("""
# NBVAL_IGNORE_OUTPUT
import wanx_nb

panel = wanx_nb.Panel(prompt="一间有着精致窗户的花店，漂亮的木质门，摆放着花朵")
panel
"""),
    md("""
Click **Generate** above. The same can be driven from code, which is how this notebook is tested
(`panel.wait()` blocks, so don't call it while you want to watch the panel):
"""),
    code("""
panel.generate()
results = panel.wait(120)
print(len(results), "result(s);", results[0].images[0].size)
"""),
    md("Exploration turns into re-runnable code: the panel shows the `%%wanx` cell for what it just generated."),
    code("print(panel.code_text.replace(str(results[0].request.seed), 'SEED'))"),
]

NOTEBOOKS["04_wanx_v1_styles_and_reference"] = [
    md("""
# wanx-v1: styles and reference images

`wanx-v1` (文生图 V1) takes a `style` among ten, four fixed sizes, a negative prompt, and a reference
image with `ref_strength` (0-1, closeness to the reference) and `ref_mode` (`repaint` follows its
content, `refonly` its style). Its account concurrency is 1, so wanx_nb queues its tasks client-side.
"""),
    SETUP,
    code("""
from wanx_nb._registry import V1_STYLES, get_model

spec = get_model("wanx-v1")
print(spec.size_rule())
print(", ".join(V1_STYLES))
"""),
    md("""
## One prompt, ten styles, one seed

A labelled sweep: `wanx_nb.grid` puts the style on an axis, so every tile names its style (and the
seed and size every tile shares are said once, above the grid). The plan comes first.
"""),
    code("""
import wanx_nb

prompt = "近景镜头，18岁的中国女孩，古代服饰，圆脸，正面看着镜头，民族优雅的服装，商业摄影，室外，电影级光照，半身特写"
styles = wanx_nb.grid(prompt, x=("style", V1_STYLES), model="wanx-v1", seed=42, size="768*1152", preview_px=160)
styles
"""),
    md("Two axes read the same way: two styles down, two seeds across (the magic spells axes `--x`/`--y`):"),
    code("%%wanx -m wanx-v1 --x seed=42,43 --y style=anime,sketch --size 768*1152\n{prompt}"),
    md("## A negative prompt\n\nThe guide's example keeps red out of the picture:"),
    code("%%wanx -m wanx-v1 --negative 红色元素 --style <auto> --seed 42\n{prompt}"),
    md("""
## A reference image

A local file is uploaded through DashScope's temporary-upload flow and sent as an `oss://` URL
with the resolve header; an `http(s)` URL is sent as it is. Here we draw a small reference image:
"""),
    code("""
from PIL import Image, ImageDraw

ref = Image.new("RGB", (512, 512), (235, 226, 210))
draw = ImageDraw.Draw(ref)
draw.ellipse((156, 96, 356, 296), fill=(190, 120, 90))
draw.rectangle((136, 300, 376, 512), fill=(60, 90, 150))
ref.save("ref_portrait.png")
ref.resize((128, 128))
"""),
    code("%%wanx -m wanx-v1 --ref ref_portrait.png --ref-strength 0.8 --ref-mode repaint --seed 42 -o repaint\n{prompt}"),
    code("%%wanx -m wanx-v1 --ref ref_portrait.png --ref-strength 0.8 --ref-mode refonly --seed 42\n{prompt}"),
    md("Reference options are V1 only: asking a V2 model for them is an error, not silently dropped."),
    code_error("%%wanx -m wanx2.1-t2i-turbo --ref ref_portrait.png --style <anime>\n{prompt}"),
]

NOTEBOOKS["05_v2_sizes_rewriting_watermark"] = [
    md("""
# V2: any size, prompt rewriting and the watermark

The V2 models (wanx2.1-t2i-plus / -turbo, wanx2.0-t2i-turbo) take any `W*H` with each side in
[512, 1440] (the user guide says 768; the API references say 512, and wanx_nb accepts what any source
accepts), rewrite short prompts with an LLM unless `prompt_extend` is off, and can draw an
"AI生成" watermark in the bottom-right corner.
"""),
    SETUP,
    md("## Sizes\n\nThe guide's three aspect ratios, on wanx2.1-t2i-plus:"),
    code("""
from wanx_nb import GenerationRequest, get_session
from wanx_nb.rendering import Gallery

prompt = "国漫风格穿越少女，在古代宫廷中烛光照耀下学习礼仪一举一动皆显古风优雅"
sizes = ["768*1024", "1024*768", "1024*1024"]
results = get_session().generate_many(
    [GenerationRequest(prompt, model="wanx2.1-t2i-plus", size=size, n=1, seed=7) for size in sizes]
)
print([r.images[0].image.size for r in results])
Gallery(results, title="wanx2.1-t2i-plus, seed 7", preview_px=256)
"""),
    code_error("%%wanx --size 2000*1000\n{prompt}"),
    md("""
## Prompt rewriting (`prompt_extend`)

On by default for V2: the service rewrites the prompt and reports what it used as `actual_prompt`.
Off, the prompt is used as written (and there is no `actual_prompt`).
"""),
    code("%%wanx --seed 3 -o extended\n火星上的城市，废土风格。"),
    code("%%wanx --seed 3 --no-extend -o plain\n火星上的城市，废土风格。"),
    code("""
print("orig:   ", extended.images[0].orig_prompt)
print("actual: ", extended.images[0].actual_prompt)
print("off:    ", plain.images[0].actual_prompt)
"""),
    md("## The watermark"),
    code("%%wanx --watermark --seed 5 -o marked\n浅水彩，咖啡馆外，明亮的白色背景，梦幻，吉卜力工作室。"),
    md("The bottom-right corner, full size:"),
    code("""
image = marked.images[0].image
w, h = image.size
image.crop((w - 200, h - 80, w, h))
"""),
]

NOTEBOOKS["06_reproducible_research"] = [
    md("""
# Reproducible research: provenance, replay, history and cost

Result URLs die after 24 hours, the service does not echo the seed it used, prompt rewriting changes
prompts, and every image costs money. wanx_nb keeps a local store: every image is saved as a PNG named
by its content hash, with its provenance in a PNG text chunk and an SQLite index, *before* it is shown.
The task id is written ahead the moment a task is created, so `%wanx resume` recovers tasks after a
crash instead of paying again.

This walk-through uses its own store, emptied first.
"""),
    SETUP,
    code("""
import shutil
shutil.rmtree("research_store", ignore_errors=True)
%config WanxMagics.store_dir = "research_store"
"""),
    md("## A seed sweep"),
    code("""
from wanx_nb import GenerationRequest, get_session
from wanx_nb.rendering import Gallery

prompt = "高清摄影写真，一只布偶猫慵懒地躺在复古木质窗台上"
sweep = [GenerationRequest(prompt, model="wanx2.0-t2i-turbo", n=1, seed=seed) for seed in range(100, 104)]
results = get_session().generate_many(sweep)
Gallery(results, title="wanx2.0-t2i-turbo: seeds 100-103", preview_px=192)
"""),
    md("## Provenance, read back from the PNG file alone"),
    code("""
import wanx_nb

record = wanx_nb.read_png_provenance(results[0].images[0].path)  # the request's record, narrowed to this image
(image,) = record["images"]
for key in ("model", "backend", "task_id", "request"):
    print(f"{key:14} {record[key]}")
for key in ("seed", "size", "orig_prompt", "actual_prompt", "sha256"):
    print(f"{key:14} {image[key]}")
"""),
    md("## History and cost"),
    code("%wanx history --limit 4"),
    code("""
rows = wanx_nb.history(model="wanx2.0-t2i-turbo")
[(row["seed"], row["images"], row["cost_yuan"]) for row in rows]
"""),
    code("%wanx cost"),
    md("""
## Replay

In `replay` mode nothing is sent: each request (model and every parameter, seed included) is served
from the store, byte for byte, and a request that was never recorded fails loudly. A notebook recorded
once (`WANX_NB_MODE=record`) re-runs with no key and no network: `WANX_NB_MODE=replay jupyter nbconvert
--execute ...`.
"""),
    code("""
%config WanxMagics.mode = "replay"
again = get_session().generate_many(sweep)
print("identical bytes:", [im.data for r in again for im in r.images] == [im.data for r in results for im in r.images])
Gallery(again, title="replayed", preview_px=96)
"""),
    code_error("%%wanx --seed 999\nnever recorded"),
    md("""
## Reproducible by default

`--reproducible` turns prompt rewriting off, or, when the store has the rewritten prompt of an earlier
run, re-sends it with rewriting off, and says which.
"""),
    code("""
%config WanxMagics.mode = "live"
"""),
    code("%%wanx -m wanx2.0-t2i-turbo --seed 100 --reproducible\n{prompt}"),
    md("""
## Export and re-run

A manifest lists every generation (request as sent, image hashes); `wanx-nb rerun MANIFEST` (or
`rerun_manifest`) runs them again and reports which images now differ.
"""),
    code("""
from wanx_nb.rerun import rerun_manifest

manifest = get_session().store.manifest()
report = rerun_manifest(manifest, session=get_session())
print(report.counts())
"""),
]


NOTEBOOKS["07_xyz_grids"] = [
    md("""
# X/Y/Z grids: compare along any parameter

`wanx_nb.grid(prompt, x=..., y=..., z=..., **fixed)` puts the prompt, the model or any request
parameter on up to three axes (Z draws one grid per value). Axis values are read like the magic's
options (`seed=1,2,3`, `style=anime,sketch`, `size=1024*1024,1280*720`, `extend=on,off`, `model=all`,
prompts separated by `|`). Before anything is sent it states the cells, images, cost and time; each
cell is fitted to its model and says how (an adapted size, a value its family does not take);
identical requests are sent once. `.save("grid.png")` draws one PNG with the axis legend and every
prompt, and writes a manifest of every cell.

This walk-through uses its own store, emptied first (the section on `--reuse` counts what it finds).
"""),
    SETUP,
    code("""
import shutil
import wanx_nb

shutil.rmtree("grids_store", ignore_errors=True)
%config WanxMagics.store_dir = "grids_store"
"""),
    md("## Prompt x model\n\nSeveral prompts become the Y axis; `model=guide` is the user guide's four models:"),
    code("""
prompts = ["一只戴着红围巾的柴犬坐在雪地里", "a lighthouse on a cliff at dusk, oil painting"]
wanx_nb.grid(prompts, x="model=guide", dry_run=True)
"""),
    code("""
by_model = wanx_nb.grid(prompts, x="model=guide")
by_model
"""),
    md("""
## Seed x style

On wanx-v1 every style is a different request. The magic spells the same grid with `--x` and `--y`:
"""),
    code("%%wanx -m wanx-v1 --x seed=1,2,3 --y style=anime,watercolor,sketch -o seeds_styles\na fox in a birch forest"),
    md("""
## Run it again: what was made is not paid twice

A grid stopped part way (an interrupt, poll errors) leaves its unfinished requests to `%wanx resume`;
then run the cell again with `--reuse` (`reuse=True`). Each request an earlier run made, every image
saved, is shown from the store and only the rest is sent. Here a fourth seed costs one more column:
"""),
    code("%%wanx -m wanx-v1 --x seed=1,2,3,4 --y style=anime,watercolor,sketch --reuse --no-display -o again\n"
         "a fox in a birch forest"),
    code("""
print(again.reuse_text())
print(sum(c.from_store for c in again.cells), "of", len(again.cells), "cells from the store;", again.plan.images,
      "images made now")
"""),
    md("""
## Size x model: sizes fitted per model

wanx-v1 takes four fixed sizes; the V2 models take any 512-1440 px side. Each cell shows the size it
was sent with, and the note says what was adapted:
"""),
    code("""
sizes = wanx_nb.grid("a red bicycle against a yellow wall", x="model=wanx2.1-t2i-turbo,wanx-v1",
                     y="size=1024*1024,1024*768,1440*720")
sizes
"""),
    code("""
for cell in sizes.cells:
    print(f"{cell.model:18} asked {cell.asked['size']:>10}  sent {cell.request.size:>10}  {'; '.join(cell.notes)}")
"""),
    md("""
## A Z axis

Z draws one grid per value: here prompt rewriting off and on, each a seed x model grid. wanx-v1 does
not rewrite prompts, so its cells say `n/a` and its second grid repeats the first (sent once):
"""),
    code("""
xyz = wanx_nb.grid("a tiny robot watering a bonsai", x="model=wanx2.1-t2i-turbo,wanx-v1", y="seed=7,8",
                   z="extend=off,on")
xyz
"""),
    md("## Saving the PNG and the manifest"),
    code("""
import json
from PIL import Image

path = xyz.save("xyz_grid.png", cell_px=192)
manifest = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
print(path.name, Image.open(path).size)
print(len(manifest["cells"]), "cells;", manifest["axes"]["z"]["labels"], "; billed", manifest["cost_yuan"])
first = manifest["cells"][0]
print(first["axes"], first["effective"]["size"], first["status"])
"""),
    md("""
The PNG has the legend, the column and row labels and every prompt: Chinese too, with a CJK font found
on the machine (without one the image says so, instead of drawing boxes). Its top, the legend and the
first row:
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
png = Image.open(by_model.save("prompt_by_model.png", cell_px=160))
png.crop((0, 0, png.width, 340))
"""),
]



NOTEBOOKS["08_catalog_2026"] = [
    md("""
# The 2026 catalog: the guide's four models beside wan2.6, wan2.7, Qwen-Image and Z-Image

The user guide's four models are now the oldest and cheapest tier of Model Studio's text-to-image
catalog. The current models speak other protocols: an **asynchronous task** on the `image-generation`
endpoint (wan2.6-t2i, wan2.7-image, qwen-image-3.0; polled like the legacy task API, so resume and
replay work as before), the legacy task API (qwen-image-plus, qwen-image), or a **synchronous call**
on `multimodal-generation` where that is the only way (qwen-image-max, qwen-image-2.0, z-image-turbo).
wanx_nb picks the right one per model: one `GenerationRequest`, one call, one result type.
"""),
    SETUP,
    md("The whole catalog: status (legacy or current), how wanx_nb calls each model, price, limits, regions:"),
    code("%wanx models"),
    code("""
import wanx_nb
from wanx_nb._registry import CATALOG, price_yuan, submit_limits
from wanx_nb._scheduler import estimate_seconds
from wanx_nb._tables_html import limits_text, protocol_text
from wanx_nb.comparison import GUIDE_MODELS, GUIDE_PROMPTS

CURRENT = [name for name, spec in CATALOG.items() if spec.status == "current"]
MODELS = list(GUIDE_MODELS) + CURRENT
for name in MODELS:
    spec = CATALOG[name]
    print(f"{name:20} {spec.status:8} {protocol_text(spec):30} ¥{price_yuan(spec):.2f}/image  {limits_text(spec)}")
"""),
    md("""
## Before sending: cost and time

The guide's four prompts on all of them. The cost is the price list's; the time is the least the
limits allow at the models' typical durations: qwen-image-max and qwen-image-2.0-pro take 2 requests
per minute, so their four images need more than a minute however fast each call is; wanx-v1 runs one
task at a time. wan2.6-t2i takes 1 submit per second in Beijing and 5 elsewhere.
"""),
    code("""
from wanx_nb import GenerationRequest

plan = [GenerationRequest(p, model=m, n=1) for p in GUIDE_PROMPTS for m in MODELS]
print(f"{len(plan)} images, ¥{sum(price_yuan(CATALOG[r.model]) for r in plan):.2f}")
for region in ("beijing", "singapore"):
    served = [r for r in plan if region in CATALOG[r.model].regions]
    print(f"{region}: {len(served)} of them served there, at least {estimate_seconds(served, region) / 60:.1f} min")
column = {m: estimate_seconds([r for r in plan if r.model == m]) for m in MODELS}
for name in sorted(MODELS, key=column.get, reverse=True)[:4]:
    print(f"  {name:20} {column[name]:4.0f} s for its 4 images ({limits_text(CATALOG[name])}, {CATALOG[name].concurrency} at once)")
"""),
    code('wanx_nb.grid(GUIDE_PROMPTS, y=("model", MODELS), dry_run=True)'),
    md("""
## The grid

Two of the prompts here, so the per-minute limits do not hold the notebook up (the emulator keeps the
real limits). Fifteen models read best as rows. Each cell's size is the model's default: the Qwen
models draw 16:9 (1664*928), wan2.7 its "2K" tier, z-image-turbo 1024*1536.
"""),
    code('grid = wanx_nb.grid(GUIDE_PROMPTS[:2], y=("model", MODELS))\ngrid'),
    md("""
## Cost and call per model

A synchronous call has no task id: its result is saved under the request id the service returned.
If its answer were lost on the way, wanx_nb would say that whether it was billed is unknown, keep it
in the journal, and never send it again by itself (`%wanx resume` reports it; a task can be looked
up, a sync call cannot).
"""),
    code("""
for row, name in enumerate(MODELS):
    result = grid[0, row, 0]
    image = result.images[0]
    call = "async task (resumable)" if result.task_id else f"sync call, request id kept: {bool(result.task.request_id)}"
    print(f"{name:20} ¥{result.cost_yuan:.2f}  {image.size:>9}  {call}")
print(f"total ¥{grid.cost_yuan:.2f} (what was billed)")
"""),
]


def build(name: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = NOTEBOOKS[name]
    for index, cell in enumerate(nb.cells):
        cell.id = f"cell-{index:02d}"  # stable ids keep rebuilds' diffs to what really changed
    path = HERE / f"{name}.ipynb"
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    nb.metadata.pop("widgets", None)  # widget state is runtime noise; the static outputs carry the images
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    return path


def main(names: list[str]) -> None:
    os.environ.pop("DASHSCOPE_API_KEY", None)
    os.environ.pop("DASHSCOPE_HTTP_BASE_URL", None)
    os.environ.pop("WANX_NB_MODE", None)
    for leftover in ("wanx_store", "wanx_output"):
        shutil.rmtree(HERE / leftover, ignore_errors=True)
    for name in names or list(NOTEBOOKS):
        path = build(name)
        print(f"{path.name}: {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main(sys.argv[1:])
