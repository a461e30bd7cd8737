"""Browser test of the outputs as a fresh clone shows them: untrusted, in JupyterLab, light and dark.

A copy of notebooks/02_model_comparison.ipynb is executed in a tmp dir (the committed one holds
outputs of older code; the lead rebuilds it), and a small notebook is written there from outputs
rendered in this process: a wanx-v1 style sweep, an emulator result card and the interrupt card.
Neither notebook is trusted (the server has a fresh HOME, so no signature matches), which a canary
cell proves: its `<style>` must be stripped. At 1400 x 900 with the file browser open, all four model
columns of the grid must lie inside the output area, badges must be styled elements of their own,
and the sweep must name each style. Then dark theme and an 800 px window.

Screenshots go to `$WANX_NB_ARTIFACTS` (or the test's tmp dir), which the test prints; look at them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import LabServer, missing_prerequisite, running_lab

_MISSING = missing_prerequisite()
pytestmark = [pytest.mark.ui, pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))]

REPO = Path(__file__).resolve().parents[2]
COMPARISON = "02_model_comparison.ipynb"
SWEEP = "sweep.ipynb"
STYLES = ("<watercolor>", "<anime>", "<sketch>", "<3d cartoon>")
GUIDE_MODELS = ("wanx2.1-t2i-plus", "wanx2.1-t2i-turbo", "wanx2.0-t2i-turbo", "wanx-v1")
CANARY = (
    "<style>.wanx-canary{outline:5px solid rgb(255, 0, 255)}</style>"
    '<div class="wanx-canary">if this has a magenta outline, the notebook is trusted</div>'
)
LOAD_TIMEOUT = 60_000  # ms


# ---- the notebooks ----------------------------------------------------------------------------------


def _with_canary(nb):
    import nbformat

    cell = nbformat.v4.new_code_cell("# canary: an untrusted notebook shows this without its <style>")
    cell.execution_count = 99
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": CANARY, "text/plain": "canary"})]
    nb.cells.append(cell)
    return nb


def committed_comparison(root: Path) -> None:
    """The committed comparison notebook, outputs and all, as a fresh clone opens it (untrusted)."""
    import nbformat

    nb = nbformat.read(str(REPO / "notebooks" / COMPARISON), as_version=4)
    assert any(cell.get("outputs") for cell in nb.cells), "the committed notebook has no outputs to look at"
    nbformat.write(_with_canary(nb), str(root / COMPARISON))


def history_bundle(session) -> dict:
    """`%wanx history`'s table of the session's store, thumbnails and all."""
    from wanx_nb import rendering

    rows = session.store.history(limit=6)
    thumbnails = {rendering.row_id(r): session.store.read_image(r.thumbnail) for r in rows}
    return rendering.history_mimebundle(rows, thumbnails=thumbnails)[0]


def write_sweep(root: Path) -> None:
    """A notebook of outputs rendered here: a labelled style sweep, a result card, the interrupt card,
    the history table with its thumbnails."""
    import nbformat

    from wanx_nb import rendering
    from wanx_nb._request import GenerationRequest
    from wanx_nb._session import Session
    from wanx_nb.emulator import Emulator, EmulatorSettings

    session = Session(store=root / "wanx_store", emulator=Emulator(EmulatorSettings(time_scale=0.001)))
    old_base = rendering.options.link_base
    rendering.options.link_base = str(root)  # the kernel's working directory: the notebook's
    try:
        sweep = session.generate_many(
            [GenerationRequest("a lighthouse on a cliff", model="wanx-v1", n=1, seed=4, style=s) for s in STYLES]
        )
        card = session.generate(GenerationRequest("a red fox in snow", model="wanx2.1-t2i-turbo", n=2, seed=7,
                                                  size="1024*768", prompt_extend=False))
        from wanx_nb.comparison import grid

        xy = grid("a lighthouse on a cliff", x="model=guide", y=("style", STYLES[:2]), seed=4, session=session,
                  display=False)  # fmt: skip
        bundles = [
            rendering.Gallery(sweep, title="one prompt, four styles")._repr_mimebundle_()[0],
            xy.mimebundle()[0],
            rendering.result_mimebundle(card)[0],
            rendering.interrupt_mimebundle(canceled=["task-a"], running=["task-b"], unsent=1)[0],
            history_bundle(session),
        ]
    finally:
        rendering.options.link_base = old_base
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for i, data in enumerate(bundles, 1):
        cell = nbformat.v4.new_code_cell(f"# output {i}")
        cell.execution_count = i
        cell.outputs = [nbformat.v4.new_output("display_data", data=data)]
        nb.cells.append(cell)
    nbformat.write(_with_canary(nb), str(root / SWEEP))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    work = tmp_path_factory.mktemp("outputs")
    root = work / "root"
    root.mkdir()
    committed_comparison(root)
    write_sweep(root)
    with running_lab(root, work, COMPARISON) as server:
        yield server


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = Path(os.environ.get("WANX_NB_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))
    where.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {where}")
    return where


# ---- the page ---------------------------------------------------------------------------------------


def open_notebook(page, lab: LabServer, name: str, *, width: int = 1400, height: int = 900):
    from playwright.sync_api import expect

    page.set_viewport_size({"width": width, "height": height})
    # ?reset: a fresh workspace, so only this notebook opens (not the ones earlier tests left open).
    page.goto(f"{lab.url}/lab/tree/{name}?reset", wait_until="domcontentloaded")
    expect(page.locator(".lm-DockPanel .lm-TabBar-tab.lm-mod-current")).to_contain_text(name, timeout=LOAD_TIMEOUT)
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(notebook.locator(".wanx-canary")).to_be_attached(timeout=LOAD_TIMEOUT)
    page.wait_for_function("() => !!window.jupyterapp")
    if not page.locator("#filebrowser").is_visible():
        page.evaluate("() => window.jupyterapp.commands.execute('filebrowser:activate')")
    expect(page.locator("#filebrowser")).to_be_visible()
    # Untrusted: the canary's <style> was stripped, so it has no outline.
    assert notebook.locator(".wanx-canary").evaluate("e => getComputedStyle(e).outlineStyle") == "none"
    return notebook


def settle_images(locator) -> None:
    locator.evaluate_all(
        "els => Promise.all(els.map(i => i.complete ? 0 : new Promise(r => { i.onload = i.onerror = r; })))"
    )


def set_theme(page, theme: str) -> None:
    page.evaluate(f"() => window.jupyterapp.commands.execute('apputils:change-theme', {{theme: '{theme}'}})")
    page.wait_for_function(f"() => document.body.dataset.jpThemeName === '{theme}'", timeout=LOAD_TIMEOUT)
    page.wait_for_timeout(500)  # the theme's stylesheet is swapped in after the attribute


MEASURE_GRID_JS = """table => {
    const box = e => { const r = e.getBoundingClientRect(); return {left: r.left, right: r.right, width: r.width}; };
    const area = table.closest('.jp-OutputArea-output');
    const panel = table.closest('.jp-NotebookPanel');
    return {
        area: box(area), panel: box(panel), viewport: window.innerWidth,
        overflow: area.scrollWidth - area.clientWidth,
        header: [...table.rows[0].cells].map(c => ({text: c.innerText, ...box(c)})),
        images: [...table.querySelectorAll('img')].map(i => ({...box(i), loaded: i.complete && i.naturalWidth > 0})),
    };
}"""


def the_grid(notebook):
    """The executed grid (the one with images), not the dry runs."""
    grid = notebook.locator(".jp-OutputArea-output table.wanx-compare").filter(has=notebook.page.locator("img"))
    return grid.first


def assert_every_column_visible(m: dict) -> None:
    lo = max(m["area"]["left"], m["panel"]["left"], 0) - 1
    hi = min(m["area"]["right"], m["panel"]["right"], m["viewport"]) + 1
    headers = m["header"]
    assert [h["text"].split("\n")[0].strip() for h in headers[1:]] == list(GUIDE_MODELS), headers
    for h in headers:
        assert lo <= h["left"] and h["right"] <= hi and h["width"] > 30, (h, lo, hi)
    assert m["images"] and all(i["loaded"] for i in m["images"])
    for i in m["images"]:
        assert lo <= i["left"] and i["right"] <= hi, (i, lo, hi)
    assert m["overflow"] <= 1, m["overflow"]  # nothing to scroll to: no column is cut


# ---- colour contrast (WCAG) -------------------------------------------------------------------------

CONTRAST_JS = """els => els.map(e => {
    const chain = [];
    for (let n = e; n; n = n.parentElement) chain.push(getComputedStyle(n).backgroundColor);
    return {cls: e.className, color: getComputedStyle(e).color, backgrounds: chain};
})"""


def _rgba(text: str) -> tuple[float, float, float, float]:
    nums = [float(x) for x in re.findall(r"[\d.]+", text)]
    return (nums[0], nums[1], nums[2], nums[3] if len(nums) > 3 else 1.0)


def _luminance(rgb) -> float:
    def lin(c):
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(sample: dict) -> float:
    """Contrast ratio of the text against its backgrounds composited from the page down."""
    bg = (255.0, 255.0, 255.0)
    for layer in reversed(sample["backgrounds"]):
        r, g, b, a = _rgba(layer)
        bg = tuple(a * c + (1 - a) * base for c, base in zip((r, g, b), bg))
    r, g, b, a = _rgba(sample["color"])
    fg = tuple(a * c + (1 - a) * base for c, base in zip((r, g, b), bg))
    hi, lo = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def assert_text_reads(notebook) -> None:
    texts = notebook.locator(".wanx-badge, .wanx-cap, .wanx-label, .wanx-head, .wanx-interrupt li")
    samples = texts.evaluate_all(CONTRAST_JS)
    assert samples
    low = [(s["cls"], round(contrast(s), 2)) for s in samples if contrast(s) < 4.5]
    assert not low, low


# ---- the tests --------------------------------------------------------------------------------------


def test_comparison_grid_fits_untrusted_at_1400_with_the_file_browser_open(lab, page, artifacts) -> None:
    notebook = open_notebook(page, lab, COMPARISON)
    grid = the_grid(notebook)
    grid.scroll_into_view_if_needed()
    settle_images(grid.locator("img"))
    assert_every_column_visible(grid.evaluate(MEASURE_GRID_JS))
    # The plan line appears once, as the live display's first line, not again in the grid.
    cell_text = grid.evaluate("t => t.closest('.jp-Cell').innerText")
    assert len(re.findall(r"16 images, estimated", cell_text)) == 1, cell_text[:500]
    # Thumbnails open the stored PNG.
    hrefs = grid.locator("a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert len(hrefs) == 16 and all(re.fullmatch(r".*/wanx_store/images/[0-9a-f]{64}\.png(\?.*)?", h) for h in hrefs)
    page.screenshot(path=str(artifacts / "grid-1400-light.png"))
    assert_text_reads(notebook)


def test_badges_are_separate_styled_elements(lab, page, artifacts) -> None:
    notebook = open_notebook(page, lab, SWEEP)
    badges = notebook.locator(".wanx-badge")
    assert badges.count() >= 2
    for i in range(badges.count()):
        badges.nth(i).scroll_into_view_if_needed()  # cells far off screen are not laid out (no innerText)
        style = badges.nth(i).evaluate(
            "b => { const s = getComputedStyle(b); return {display: s.display, margin: s.marginLeft,"
            " bg: s.backgroundColor, border: s.borderTopWidth + ' ' + s.borderTopStyle, radius: s.borderTopLeftRadius,"
            " text: b.innerText, before: b.previousSibling && b.previousSibling.textContent}; }"
        )
        assert style["display"] == "inline-block" and style["margin"] == "6px", style
        assert style["bg"] not in ("rgba(0, 0, 0, 0)", "transparent") and style["border"] == "1px solid", style
        assert style["radius"] == "8px" and style["text"] == "emulator: not the real service", style
    # The badge is its own box, right of the text before it, not run into it ("1.0 semulator").
    gap = badges.first.evaluate(
        "b => { const r = document.createRange(); r.selectNodeContents(b.previousSibling);"
        " return b.getBoundingClientRect().left - r.getBoundingClientRect().right; }"
    )
    assert gap >= 6, gap


def test_a_style_sweep_names_each_style_in_one_row(lab, page, artifacts) -> None:
    notebook = open_notebook(page, lab, SWEEP)
    labels = notebook.locator(".wanx-label")
    assert labels.all_inner_texts() == [f"style {s}" for s in STYLES]
    tiles = notebook.locator(".wanx-tile").filter(has=page.locator(".wanx-label"))
    tops = tiles.evaluate_all("ts => ts.map(t => Math.round(t.getBoundingClientRect().top))")
    assert len(tops) == 4 and len(set(tops)) < 4, tops  # laid out in a row, not stacked
    settle_images(notebook.locator("img"))
    page.screenshot(path=str(artifacts / "sweep-1400-light.png"))
    interrupt = notebook.locator(".wanx-interrupt")
    interrupt.scroll_into_view_if_needed()
    assert "still running on the service" in interrupt.inner_text()
    page.screenshot(path=str(artifacts / "result-and-interrupt-1400-light.png"))


def test_an_xy_grid_labels_its_axes_and_keeps_four_model_columns(lab, page, artifacts) -> None:
    notebook = open_notebook(page, lab, SWEEP)
    table = notebook.locator("table.wanx-grid")
    table.scroll_into_view_if_needed()
    settle_images(table.locator("img"))
    m = table.evaluate(MEASURE_GRID_JS)
    assert_every_column_visible(m)
    rows = table.evaluate("t => [...t.rows].slice(1).map(r => r.cells[0].innerText.trim())")
    assert rows == [f"style {s}" for s in STYLES[:2]]
    # The V2 columns say the style is not theirs, per cell, instead of dropping it silently.
    assert table.inner_text().count("n/a for V2, not sent") == 6
    page.screenshot(path=str(artifacts / "xy-grid-1400-light.png"))


def test_dark_theme_reads_and_the_grid_still_fits(lab, page, artifacts) -> None:
    notebook = open_notebook(page, lab, COMPARISON)
    set_theme(page, "JupyterLab Dark")
    try:
        grid = the_grid(notebook)
        grid.scroll_into_view_if_needed()
        settle_images(grid.locator("img"))
        assert_every_column_visible(grid.evaluate(MEASURE_GRID_JS))
        assert_text_reads(notebook)
        page.screenshot(path=str(artifacts / "grid-1400-dark.png"))
        notebook = open_notebook(page, lab, SWEEP)
        settle_images(notebook.locator("img"))
        assert_text_reads(notebook)
        page.screenshot(path=str(artifacts / "sweep-1400-dark.png"))
        notebook.locator(".wanx-interrupt").scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / "result-and-interrupt-1400-dark.png"))
    finally:
        set_theme(page, "JupyterLab Light")


def test_a_narrow_800_px_window_keeps_every_column(lab, page, artifacts) -> None:
    notebook = open_notebook(page, lab, COMPARISON, width=800)
    grid = the_grid(notebook)
    grid.scroll_into_view_if_needed()
    settle_images(grid.locator("img"))
    assert_every_column_visible(grid.evaluate(MEASURE_GRID_JS))
    page.screenshot(path=str(artifacts / "grid-800-light.png"))
    notebook = open_notebook(page, lab, SWEEP, width=800)
    settle_images(notebook.locator("img"))
    page.screenshot(path=str(artifacts / "sweep-800-light.png"))
    history = notebook.locator(".jp-OutputArea-output").filter(has_text="task (or request) id")
    history.scroll_into_view_if_needed()
    widths = history.locator("img").evaluate_all("els => els.map(e => e.getBoundingClientRect().width)")
    assert len(widths) == 6 and min(widths) >= 40, widths  # the thumbnails keep their size in a narrow window
    history.screenshot(path=str(artifacts / "history-800-light.png"))


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_static_html_export_shows_the_grid_and_the_sweep(lab, page, artifacts, theme) -> None:
    """`jupyter nbconvert --to html` output (nbviewer-like: nothing sanitized, no JupyterLab) reads too."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(theme=theme)
    for name in (COMPARISON, SWEEP):
        body, _ = exporter.from_filename(str(lab.root / name))
        html_path = lab.root / f"{Path(name).stem}-{theme}.html"
        html_path.write_text(body, encoding="utf-8")  # next to the notebook: the store links resolve
        page.set_viewport_size({"width": 1000, "height": 900})  # about a 960 px output area
        page.goto(html_path.as_uri())
        if name == COMPARISON:
            grid = page.locator("table.wanx-compare").filter(has=page.locator("img")).first
            grid.scroll_into_view_if_needed()
            settle_images(grid.locator("img"))
            m = grid.evaluate(MEASURE_GRID_JS.replace(".jp-NotebookPanel", "body"))
            assert_every_column_visible(m)
            hrefs = grid.locator("a").evaluate_all("as => as.map(a => a.href)")
            assert all(h.startswith(lab.root.as_uri() + "/wanx_store/images/") for h in hrefs), hrefs[:2]
        else:
            assert page.locator(".wanx-label").all_inner_texts() == [f"style {s}" for s in STYLES]
            settle_images(page.locator("img"))
        texts = page.locator(".wanx-badge, .wanx-cap, .wanx-label, .wanx-head, .wanx-interrupt li")
        low = [(s["cls"], round(contrast(s), 2)) for s in texts.evaluate_all(CONTRAST_JS) if contrast(s) < 4.5]
        assert not low, low
        page.screenshot(path=str(artifacts / f"static-{Path(name).stem}-{theme}.png"))
