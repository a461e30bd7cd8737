"""`options`: the display settings every HTML output reads (the magics set them from their traitlets).

Re-exported as `rendering.options`, the one instance: set its attributes, never rebind it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PREVIEW_PX_RANGE", "RenderOptions", "options"]

# Previews smaller than this show nothing; larger ones only make the notebook heavy.
PREVIEW_PX_RANGE = (16, 4096)


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

    def __setattr__(self, name: str, value: object) -> None:
        # Checked when set, so a bad size fails here and not inside the display of a paid image.
        if name == "preview_px":
            lo, hi = PREVIEW_PX_RANGE
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"preview_px={value!r}: a whole number of pixels from {lo} to {hi}")
        super().__setattr__(name, value)


options = RenderOptions()
