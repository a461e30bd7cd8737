"""`options`: the display settings every HTML output reads (the magics set them from their traitlets).

Re-exported as `rendering.options`, the one instance: set its attributes, never rebind it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RenderOptions", "options"]


@dataclass
class RenderOptions:
    """Module-wide display settings (the magics set these from their traitlets).

    Parameters:
        preview_px: largest side of the embedded previews, in pixels.
        long_prompt: prompts longer than this fold into a <details> element.
        link_base: the directory thumbnails link relative to (default: the working directory, which
            in a kernel is the notebook's).
    """

    preview_px: int = 384
    long_prompt: int = 90
    link_base: str | None = None


options = RenderOptions()
