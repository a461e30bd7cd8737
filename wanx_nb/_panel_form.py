"""The panel's form: its widgets, which of them a model shows, and the request they describe.

`PanelForm` builds every widget of the panel and lays them out; it keeps the controls in step with
the chosen model (V1: style, its four sizes, a reference image; V2: free width and height, prompt
rewriting, watermark), shows the cost, the equivalent `%%wanx` cell and errors, and reads the
controls back as a GenerationRequest (`request()`). Running it is `panel.Panel`'s job.
"""

from __future__ import annotations

import hashlib
import html
import math
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipywidgets import (
    BoundedIntText,
    Button,
    Checkbox,
    Dropdown,
    FileUpload,
    FloatSlider,
    HBox,
    IntSlider,
    Label,
    Layout,
    Output,
    Text,
    Textarea,
    ToggleButtons,
    VBox,
)
from ipywidgets import HTML as HTMLWidget

from . import rendering
from ._grid import Axis
from ._params import BY_NAME, option_line
from ._registry import CATALOG, ModelSpec, get_model
from ._request import MAX_SEED, GenerationRequest
from ._validation import parse_size

if TYPE_CHECKING:
    from ._grid_state import GridState
    from ._session import Session

__all__ = ["PanelForm", "magic_cell"]

_NARROW = {"description_width": "initial"}
_UPLOAD_DIR = "uploads"


def magic_cell(request: GenerationRequest) -> str:
    """The `%%wanx` cell that sends `request` again: option line, then the prompt as the cell body.

    The options come from the parameter table (`_params.option_line`), quoted for IPython's POSIX
    split, in `--flag=value` form so a negative prompt starting with "-" survives; braces in the prompt
    are doubled so the magic's `{name}` filling gives back the prompt as written.
    """
    body = request.prompt.replace("{", "{{").replace("}", "}}")
    return "%%wanx " + option_line(request) + "\n" + body


def _label(name: str) -> str:
    return BY_NAME[name].label


def _tooltip(name: str) -> str:
    p = BY_NAME[name]
    return f"{p.option}: {p.help_text()}"


def _side_bounds(spec: ModelSpec) -> tuple[int, int]:
    """Slider bounds for one side: the side range, or what the area and aspect rules allow."""
    if spec.side_range is not None:
        return spec.side_range
    if spec.pixel_range is not None and spec.aspect_range is not None:
        (lo, hi), (a, b) = spec.pixel_range, spec.aspect_range
        return math.ceil(math.sqrt(lo * a)), math.floor(math.sqrt(hi * b))
    return 256, 2048


def _set_bounds(slider: IntSlider, lo: int, hi: int, value: int) -> None:
    """Move an IntSlider's range without tripping min <= max in between."""
    if lo > slider.max:
        slider.max, slider.min = hi, lo
    else:
        slider.min, slider.max = lo, hi
    slider.value = min(max(value, lo), hi)


def _show(widget: Any, visible: bool) -> None:
    widget.layout.display = None if visible else "none"


class PanelForm(VBox):
    """The widgets of a Panel and the request they describe; see `panel.Panel` for the parameters."""

    def __init__(self, session: Session, *, model: ModelSpec, prompt: str, layout: Layout | None) -> None:
        self._session = session
        self._last_error: BaseException | None = None
        self._code_text = ""
        self._ref_path: str | None = None
        self._build_widgets(model, prompt)
        self._apply_model(model)
        self._update_cost()
        self._wire_controls()
        super().__init__(self._layout_children(), layout=layout or Layout(width="100%"))

    # ---- construction ----------------------------------------------------------------------------

    def _build_widgets(self, spec: ModelSpec, prompt: str) -> None:
        full = {"width": "100%"}
        self._prompt = Textarea(value=prompt, placeholder="Prompt (Chinese or English)", rows=3, layout=Layout(**full))
        self._negative = Textarea(
            placeholder=f"{_label('negative_prompt')} (optional): what not to draw", rows=1, layout=Layout(**full),
            tooltip=_tooltip("negative_prompt"),
        )
        self._model = Dropdown(
            options=[(_model_label(s), name) for name, s in CATALOG.items()],  # the guide's four first, then 2026
            value=spec.name,
            description=_label("model"),
            layout=Layout(**full),
        )
        # V1: style, fixed sizes, reference image.
        self._style = Dropdown(
            options=list(BY_NAME["style"].choices), value="<auto>", description=_label("style"), style=_NARROW,
            tooltip=_tooltip("style"),
        )
        self._v1_size = Dropdown(
            options=["1024*1024"], description=_label("size"), style=_NARROW, tooltip=_tooltip("size")
        )
        # Width "auto" so the button is as wide as its label (a fixed width cut it to "Reference ima…").
        self._ref_upload = FileUpload(
            accept="image/*", multiple=False, description="Reference image", layout=Layout(width="auto"),
            tooltip=_tooltip("ref_img"),
        )
        self._ref_label = Label("no reference image")
        self._ref_clear = Button(description="Remove", icon="times", layout=Layout(width="auto"))
        self._ref_strength = FloatSlider(
            value=0.5, min=0.0, max=1.0, step=0.05, description=_label("ref_strength"), style=_NARROW,
            tooltip=_tooltip("ref_strength"),
        )
        self._ref_mode = ToggleButtons(
            options=[("repaint (follow content)", "repaint"), ("refonly (follow style)", "refonly")],
            value="repaint",
            description=_label("ref_mode"),
            tooltip=_tooltip("ref_mode"),
            # Buttons as wide as their labels (the default fixed width cut "repaint (follow co…").
            style={**_NARROW, "button_width": "auto"},
        )
        self._ref_box = VBox(
            [HBox([self._ref_upload, self._ref_label, self._ref_clear]), HBox([self._ref_strength, self._ref_mode])]
        )
        self._v1_box = VBox([HBox([self._style, self._v1_size]), self._ref_box])
        # V2: free size, prompt rewriting, watermark.
        self._width = IntSlider(value=1024, min=512, max=1440, step=16, description="Width", style=_NARROW)
        self._height = IntSlider(value=1024, min=512, max=1440, step=16, description="Height", style=_NARROW)
        self._size_rule = Label("")
        self._extend = Checkbox(
            value=True, description=f"{_label('prompt_extend')} (the service may rewrite it)", indent=False,
            tooltip=_tooltip("prompt_extend"), layout=Layout(width="auto"),
        )
        self._watermark = Checkbox(
            value=False, description=f"{_label('watermark')} (AI生成)", indent=False, tooltip=_tooltip("watermark"),
            layout=Layout(width="auto"),
        )
        self._v2_box = VBox(
            [HBox([self._width, self._height]), self._size_rule, HBox([self._extend, self._watermark])]
        )
        # Both families.
        self._n = IntSlider(
            value=1, min=1, max=spec.max_n, description=_label("n"), style=_NARROW, tooltip=_tooltip("n")
        )
        # "Seed [42] [ ] keep this seed": the row reads as one phrase (it used to read "fixed seed seed").
        self._seed = BoundedIntText(
            value=42, min=0, max=MAX_SEED, description=_label("seed"), disabled=True, style=_NARROW,
            layout=Layout(width="14em"), tooltip=_tooltip("seed"),
        )
        self._seed_fixed = Checkbox(
            value=False, description="keep this seed", indent=False, layout=Layout(width="auto"),
            tooltip="use the seed in the box for the next run (otherwise a new one is picked and shown)",
        )
        self._sweep_seeds = Text(
            placeholder="e.g. 1,2,3 or 1..4", description="Sweep seeds", style=_NARROW, layout=Layout(width="40%"),
            tooltip="several seeds: one labelled grid, a column per seed",
        )
        self._sweep_styles = Text(
            placeholder="e.g. anime, sketch, watercolor", description="Sweep styles", style=_NARROW,
            layout=Layout(width="40%"), tooltip="wanx-v1: several styles, a row per style",
        )
        self._reuse = Checkbox(
            value=False, description="reuse saved", indent=False, layout=Layout(width="auto"),
            tooltip="show what an earlier run made of a request (every image saved) from the store, not paid again",
        )
        self._generate = Button(description="Generate", button_style="primary", icon="play")
        self._cancel = Button(description="Cancel", icon="stop", disabled=True)
        self._cost = Label("")
        self._status = HTMLWidget("")
        self._message = HTMLWidget("")
        self._errors = HTMLWidget("")
        self._code = HTMLWidget("")
        self._out = Output()

    def _layout_children(self) -> list[Any]:
        return [
            self._prompt,
            self._negative,
            self._model,
            self._v1_box,
            self._v2_box,
            HBox([self._n, self._seed, self._seed_fixed]),
            HBox([self._sweep_seeds, self._sweep_styles, self._reuse]),
            HBox([self._generate, self._cancel, self._cost]),
            self._status,
            self._message,
            self._errors,
            self._code,
            self._out,
        ]

    def _wire_controls(self) -> None:
        self._model.observe(self._on_model_change, names="value")
        self._n.observe(self._on_n_change, names="value")
        self._seed_fixed.observe(self._on_seed_fixed_change, names="value")
        self._ref_upload.observe(self._on_ref_upload_change, names="value")
        self._ref_clear.on_click(self._on_ref_clear_click)

    # ---- what the form shows and describes -------------------------------------------------------

    @property
    def last_error(self) -> BaseException | None:
        """The last error shown (a validation error before sending, or an API/task error after)."""
        return self._last_error

    @property
    def code_text(self) -> str:
        """The `%%wanx` cell equivalent to the last generation ("" before the first)."""
        return self._code_text

    def request(self) -> GenerationRequest:
        """The request the controls describe now (not validated)."""
        spec = get_model(self._model.value)
        params: dict[str, Any] = {"n": self._n.value}
        # One line: the equivalent cell writes it on the %%wanx option line.
        negative = " ".join(self._negative.value.split())
        if negative:
            params["negative_prompt"] = negative
        if self._seed_fixed.value:
            params["seed"] = self._seed.value
        if spec.sizes is not None:
            params["size"] = self._v1_size.value
        else:
            params["size"] = f"{self._width.value}*{self._height.value}"
        if "style" in spec.params:
            params["style"] = self._style.value
        if "ref_img" in spec.params and self._ref_path:
            params.update(ref_img=self._ref_path, ref_strength=self._ref_strength.value, ref_mode=self._ref_mode.value)
        if "prompt_extend" in spec.params:
            params["prompt_extend"] = self._extend.value
        if "watermark" in spec.params:
            params["watermark"] = self._watermark.value
        return GenerationRequest(prompt=self._prompt.value.strip(), model=spec.name, **params)

    # ---- handlers: controls ----------------------------------------------------------------------

    def _on_model_change(self, change: dict[str, Any]) -> None:
        old = get_model(change["old"]) if change.get("old") in CATALOG else None
        self._apply_model(get_model(change["new"]), previous=old)
        self._update_cost()

    def _on_n_change(self, change: dict[str, Any]) -> None:
        self._update_cost()

    def _on_seed_fixed_change(self, change: dict[str, Any]) -> None:
        self._seed.disabled = not change["new"]

    def _on_ref_upload_change(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if not files:
            return
        item = files[0]
        try:
            self._ref_path = self._save_upload(item["name"], bytes(item["content"]))
        except OSError as exc:
            self._show_error(exc, title="Could not save the reference image")
            return
        self._ref_label.value = f"{item['name']} → {self._ref_path}"

    def _on_ref_clear_click(self, button: Button) -> None:
        self._ref_path = None
        self._ref_upload.value = ()
        self._ref_label.value = "no reference image"

    # ---- helpers ---------------------------------------------------------------------------------

    def _apply_model(self, spec: ModelSpec, previous: ModelSpec | None = None) -> None:
        """Show the controls `spec` takes, hide the others, and fit ranges and options to it."""
        _show(self._style, "style" in spec.params)
        _show(self._ref_box, "ref_img" in spec.params)
        _show(self._extend, "prompt_extend" in spec.params)
        _show(self._watermark, "watermark" in spec.params)
        _show(self._v1_box, spec.sizes is not None or "style" in spec.params or "ref_img" in spec.params)
        _show(self._v1_size, spec.sizes is not None)
        _show(self._v2_box, spec.sizes is None)
        if spec.sizes is not None:
            keep = self._v1_size.value if self._v1_size.value in spec.sizes else spec.default_size
            self._v1_size.options = list(spec.sizes)
            self._v1_size.value = keep
        else:
            lo, hi = _side_bounds(spec)
            w, h = (self._width.value, self._height.value)
            if previous is None or previous.default_size != spec.default_size or previous.sizes is not None:
                w, h = parse_size(spec.default_size) or (1024, 1024)
            _set_bounds(self._width, lo, hi, w)
            _set_bounds(self._height, lo, hi, h)
            self._size_rule.value = f"{spec.name}: {spec.size_rule()}"
        self._n.max = spec.max_n

    def _update_cost(self) -> None:
        spec = get_model(self._model.value)
        images, yuan = self._session.estimate_cost([GenerationRequest(prompt="", model=spec.name, n=self._n.value)])
        text = f"{images} image{'s' if images != 1 else ''} x ¥{spec.price_yuan:.2f} = ¥{yuan:.2f}"
        if getattr(self._session, "backend", None) == "emulator":
            text += " (emulator: not billed)"
        self._cost.value = text

    def _set_code(self, request: GenerationRequest, sweep: GridState | None = None) -> None:
        code = magic_cell(request if sweep is None or sweep.x is None or sweep.x.name != "seed" else request.replace(seed=None))
        if sweep is not None:  # the sweep's axes on the option line: the magic draws the same grid
            first, body = code.split("\n", 1)
            axes = [(letter, a) for letter, a in (("x", sweep.x), ("y", sweep.y)) if a is not None]
            first += "".join(f" --{letter} {shlex.quote(_axis_text(a))}" for letter, a in axes)
            code = f"{first}\n{body}"
        if self._reuse.value:
            first, body = code.split("\n", 1)
            code = f"{first} --reuse\n{body}"
        self._code_text = code
        self._code.value = (
            "<details open><summary>Equivalent cell</summary>"
            f"<pre style='white-space:pre-wrap;user-select:all'>{html.escape(self._code_text)}</pre></details>"
        )

    def _show_error(self, exc: BaseException, *, title: str, append: bool = False) -> None:
        self._last_error = exc
        data, _ = rendering.error_mimebundle(exc)
        block = f'<div class="wanx-head"><b>{html.escape(title)}</b></div>{data["text/html"]}'
        self._errors.value = (self._errors.value if append else "") + block

    def _save_upload(self, name: str, content: bytes) -> str:
        """Write an uploaded reference image into the store (content-named, so re-runs find it)."""
        root = Path(getattr(getattr(self._session, "store", None), "root", None) or "wanx_store")
        folder = root / _UPLOAD_DIR
        folder.mkdir(parents=True, exist_ok=True)
        suffix = Path(name).suffix.lower() or ".png"
        path = folder / f"{hashlib.sha256(content).hexdigest()[:16]}{suffix}"
        if not path.exists():
            path.write_bytes(content)
        return str(path.resolve())


def _axis_text(axis: Axis) -> str:
    name = "seed" if axis.name == "seed" else "style"
    return f"{name}=" + ",".join(str(v).strip("<>") for v in axis.values)


def _model_label(spec: ModelSpec) -> str:
    call = " · sync call" if spec.sync_only else ""
    return f"{spec.name} · ¥{spec.price_yuan:.2f}/image · {spec.status}{call} · {spec.description}"
