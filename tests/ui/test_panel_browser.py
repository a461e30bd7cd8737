"""Browser test of the widget panel: JupyterLab in headless Chromium, the kernel on the emulator.

Open a notebook that shows `wanx_nb.Panel()`, run all cells, type a prompt, click Generate and wait
for the result's images (data: URIs) to load in the static output under the panel, shown once (not
again inside the panel); the Generate button must be enabled again after.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from .conftest import LabServer, missing_prerequisite

_MISSING = missing_prerequisite()
pytestmark = [pytest.mark.ui, pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))]

PROMPT = "a red fox in fresh snow, watercolor"
KERNEL_TIMEOUT = 60_000  # ms: kernel start (about 1-2 s here)
RUN_TIMEOUT = 60_000  # ms: running the cells until the panel shows
GENERATE_TIMEOUT = 60_000  # ms: the emulator's turbo task takes well under 2 s
KERNEL_IDLE_JS = """() => {
    const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
    const bar = document.querySelector('.jp-StatusBar-Widget');
    if (!indicator || !bar || indicator.dataset.status !== 'idle') return false;
    const text = bar.textContent || '';
    return /\\| Idle/.test(text) && !/No Kernel/.test(text);
}"""


def test_panel_generates_images_in_jupyterlab(lab_server: LabServer, page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    t0 = time.monotonic()
    try:
        page.goto(lab_server.notebook_url(), wait_until="domcontentloaded")
        notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        expect(notebook.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=KERNEL_TIMEOUT)
        # Wait for a connected, idle kernel. The execution indicator alone is not enough: it says
        # "idle" for a moment while the status bar still shows "No Kernel | Initializing", and
        # running cells then races the kernel start (a "Select Kernel" dialog, nothing runs).
        page.wait_for_function(KERNEL_IDLE_JS, timeout=KERNEL_TIMEOUT)

        # Run > Run All Cells.
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-item", has_text=re.compile(r"^Run All Cells")).click()

        # The panel: the outermost widget box of an output holding the Generate button.
        # (`has=` takes a locator relative to the outer one, hence page.locator, not notebook.locator.)
        generate_button = page.locator("button.jupyter-button", has_text=re.compile(r"^\s*Generate\s*$"))
        panel = notebook.locator(".jp-OutputArea-output .widget-vbox").filter(has=generate_button).first
        generate = panel.locator("button.jupyter-button", has_text=re.compile(r"^\s*Generate\s*$"))
        expect(generate).to_be_visible(timeout=RUN_TIMEOUT)
        expect(generate).to_be_enabled()

        prompt = panel.get_by_placeholder("Prompt (Chinese or English)")
        prompt.fill(PROMPT)
        prompt.blur()  # a change event: syncs the value even when continuous_update is off
        expect(prompt).to_have_value(PROMPT)
        generate.click()

        # The result in the static output under the panel (what a saved notebook keeps): <img src="data:...">
        # that actually decoded; one image (n=1), shown once: none inside the panel itself.
        cell = notebook.locator(".jp-Cell").filter(has=generate_button).first
        images = cell.locator(".jp-OutputArea-output img[src^='data:']")
        expect(images.first).to_be_visible(timeout=GENERATE_TIMEOUT)
        page.wait_for_function(
            "els => els.length > 0 && els.every(e => e.complete && e.naturalWidth > 0)",
            arg=images.element_handles(),
            timeout=GENERATE_TIMEOUT,
        )
        widths = images.evaluate_all("els => els.map(e => e.naturalWidth)")
        assert len(widths) == 1 and widths[0] > 0, widths
        assert panel.locator("img").count() == 0
        # The run finished: the button is enabled again and the panel says what was made.
        expect(generate).to_be_enabled(timeout=GENERATE_TIMEOUT)
        expect(panel).to_contain_text(re.compile(r"Done: \d+ images?"), timeout=GENERATE_TIMEOUT)
        # No error block: "Not sent", "<model> failed", "Not completed", "Panel error".
        expect(panel).not_to_contain_text(re.compile(r"Not sent|\bfailed\b|Not completed|Panel error"))
        # The kernel really used the emulator and wrote to the test's store.
        assert "emulator" in panel.inner_text()
        assert any(lab_server.store.rglob("*.png")), f"no PNG under {lab_server.store}"

        # No uncaught exception in the page (a broken widget view shows up here first).
        assert not [p for p in problems if p.startswith("pageerror")], problems

        panel.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "panel_page.png"))
        panel.screenshot(path=str(tmp_path / "panel.png"))
    except BaseException:
        try:
            page.screenshot(path=str(tmp_path / "failure.png"))
        except Exception:
            pass
        print(f"screenshot: {tmp_path / 'failure.png'}")
        print("server log tail:\n" + lab_server.log_tail())
        raise
    finally:
        print("browser errors:\n" + "\n".join(problems[-30:]) if problems else "browser errors: none")
        print(f"UI flow took {time.monotonic() - t0:.1f} s; screenshots in {tmp_path}")
