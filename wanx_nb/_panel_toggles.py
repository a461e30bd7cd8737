"""The panel's on/off controls: one Checkbox per toggle of the parameter table, shown for the models
that take it, the parameters they describe, and the most images the n slider then allows."""

from __future__ import annotations

from ipywidgets import Checkbox, HBox, Layout

from ._modelspec import ModelSpec
from ._panel_status import param_label, param_tooltip
from ._params import PARAMS

__all__ = ["PanelToggles"]

# Each toggle's state when the panel opens, and the note after its label.
_START = {"prompt_extend": True, "watermark": False, "thinking_mode": True, "enable_sequential": False}
_NOTES = {
    "prompt_extend": "the service may rewrite it",
    "watermark": "AI生成",
    "thinking_mode": "the model reasons about the prompt first",
    "enable_sequential": "a coherent set; n up to 12",
}
# Sent only when on: every source reads a missing enable_sequential as off, and leaving it out keeps the
# request the same as a cell without --sequential. The others are sent as shown (thinking_mode's default
# is disputed, 2026 §13.7), so the equivalent cell states them.
_SENT_ONLY_ON = frozenset({"enable_sequential"})


class PanelToggles:
    """The Checkboxes of the table's on/off parameters (`boxes`, by field name) in one row (`row`)."""

    def __init__(self) -> None:
        self.boxes = {
            p.name: Checkbox(
                value=_START.get(p.name, False), description=f"{param_label(p.name)} ({_NOTES.get(p.name, p.help)})",
                indent=False, tooltip=param_tooltip(p.name), layout=Layout(width="auto"),
            )
            for p in PARAMS
            if p.widget == "toggle"
        }  # fmt: skip
        self.row = HBox(list(self.boxes.values()), layout=Layout(flex_flow="row wrap"))  # four fit no narrow window

    def show_for(self, spec: ModelSpec) -> None:
        """Show the toggles `spec` takes, hide the others."""
        for name, box in self.boxes.items():
            box.layout.display = None if name in spec.params else "none"

    def params(self, spec: ModelSpec) -> dict[str, bool]:
        """The request fields the toggles set for `spec` (only those it takes)."""
        return {
            name: box.value
            for name, box in self.boxes.items()
            if name in spec.params and (box.value or name not in _SENT_ONLY_ON)
        }

    def max_n(self, spec: ModelSpec) -> int:
        """The n slider's top for `spec`: wan2.7 allows 12 only with the sequence toggle on."""
        return spec.max_n_for(self.boxes["enable_sequential"].value)
