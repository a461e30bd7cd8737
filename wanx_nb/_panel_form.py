"""The panel's form: its widgets, which of them a model shows, and the request they describe.

`PanelForm` builds every widget of the panel and lays them out; it keeps the controls in step with
the chosen model (V1: style, its four sizes, a reference image; V2: free width and height, prompt
rewriting, watermark; wan2.7 also thinking and image sequences, the on/off ones from `_panel_toggles`),
shows the cost, the equivalent `%%wanx` cell, errors and the results (in the static output under the
panel), and reads the controls back as a GenerationRequest (`request()`) and a sweep's grid
(`_plan_sweep`). Running it is `panel.Panel`'s job.
"""

from __future__ import annotations

import hashlib
import html
import threading
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
from ._exceptions import Problem, ValidationError
from ._grid import Axis, parse_axis
from ._grid_html import xyz_grid_html
from ._grid_state import GridState, build_state
from ._models import GenerationResult
from ._panel_status import code_cell, cost_text, magic_cell, model_label, param_label, param_tooltip, side_bounds
from ._panel_toggles import PanelToggles
from ._params import BY_NAME
from ._registry import CATALOG, ModelSpec, get_model, price_yuan
from ._request import MAX_SEED, GenerationRequest
from ._validation import parse_size

if TYPE_CHECKING:
    from IPython.display import DisplayHandle

    from ._session import Session

__all__ = ["PanelForm", "magic_cell"]

_NARROW = {"description_width": "initial"}
_UPLOAD_DIR = "uploads"


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

    def __init__(self, session: Session, *, model: ModelSpec, prompt: str, layout: Layout | None,
                 static_output: bool = True) -> None:  # fmt: skip
        self._session = session
        self._lock = threading.Lock()  # the results, shown from the session's background thread too
        self._results: list[GenerationResult] = []
        self._sweeps: list[GridState] = []
        self._static_output = static_output
        self._static_handle: DisplayHandle | None = None  # set when IPython displays the panel (_ipython_display_)
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
            placeholder=f"{param_label('negative_prompt')} (optional): what not to draw", rows=1, layout=Layout(**full),
            tooltip=param_tooltip("negative_prompt"),
        )
        self._model = Dropdown(
            options=[(model_label(s), name) for name, s in CATALOG.items()],  # the guide's four first, then 2026
            value=spec.name,
            description=param_label("model"),
            layout=Layout(**full),
        )
        # V1: style, fixed sizes, reference image.
        self._style = Dropdown(
            options=list(BY_NAME["style"].choices), value="<auto>", description=param_label("style"), style=_NARROW,
            tooltip=param_tooltip("style"),
        )
        self._v1_size = Dropdown(
            options=["1024*1024"], description=param_label("size"), style=_NARROW, tooltip=param_tooltip("size")
        )
        # Width "auto" so the button is as wide as its label (a fixed width cut it to "Reference ima…").
        self._ref_upload = FileUpload(
            accept="image/*", multiple=False, description="Reference image", layout=Layout(width="auto"),
            tooltip=param_tooltip("ref_img"),
        )
        self._ref_label = Label("no reference image")
        self._ref_clear = Button(description="Remove", icon="times", layout=Layout(width="auto"))
        self._ref_strength = FloatSlider(
            value=0.5, min=0.0, max=1.0, step=0.05, description=param_label("ref_strength"), style=_NARROW,
            tooltip=param_tooltip("ref_strength"),
        )
        self._ref_mode = ToggleButtons(
            options=[("repaint (follow content)", "repaint"), ("refonly (follow style)", "refonly")],
            value="repaint",
            description=param_label("ref_mode"),
            tooltip=param_tooltip("ref_mode"),
            # Buttons as wide as their labels (the default fixed width cut "repaint (follow co…").
            style={**_NARROW, "button_width": "auto"},
        )
        self._ref_box = VBox(
            [HBox([self._ref_upload, self._ref_label, self._ref_clear]), HBox([self._ref_strength, self._ref_mode])]
        )
        self._v1_box = VBox([HBox([self._style, self._v1_size]), self._ref_box])
        # V2 and 2026: free size and the on/off parameters (rewriting, watermark, wan2.7's thinking and sequence).
        self._width = IntSlider(value=1024, min=512, max=1440, step=16, description="Width", style=_NARROW)
        self._height = IntSlider(value=1024, min=512, max=1440, step=16, description="Height", style=_NARROW)
        self._size_rule = Label("")
        self._toggles = PanelToggles()
        self._extend, self._watermark = self._toggles.boxes["prompt_extend"], self._toggles.boxes["watermark"]
        self._v2_box = VBox([HBox([self._width, self._height]), self._size_rule, self._toggles.row])
        # Both families.
        self._n = IntSlider(
            value=1, min=1, max=spec.max_n, description=param_label("n"), style=_NARROW, tooltip=param_tooltip("n")
        )
        # "Seed [42] [ ] keep this seed": the row reads as one phrase (it used to read "fixed seed seed").
        self._seed = BoundedIntText(
            value=42, min=0, max=MAX_SEED, description=param_label("seed"), disabled=True, style=_NARROW,
            layout=Layout(width="14em"), tooltip=param_tooltip("seed"),
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
        self._resume = Button(
            description="Resume", icon="rotate-right", layout=Layout(width="auto"),
            tooltip="save the images of requests sent and not finished (this store's journal) without paying again",
        )
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
            HBox([self._generate, self._cancel, self._resume, self._cost]),
            self._status,
            self._message,
            self._errors,
            self._code,
            self._out,
        ]

    def _wire_controls(self) -> None:
        self._model.observe(self._on_model_change, names="value")
        for widget in (self._n, self._extend, self._sweep_seeds, self._sweep_styles):
            widget.observe(self._on_cost_change, names="value")  # each changes what a click costs
        self._seed_fixed.observe(self._on_seed_fixed_change, names="value")
        # The sequence toggle moves the n slider's top (wan2.7: 4, or 12 with it on); the slider keeps n within it.
        self._toggles.boxes["enable_sequential"].observe(self._on_sequential_change, names="value")
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
        params.update(self._toggles.params(spec))
        return GenerationRequest(prompt=self._prompt.value.strip(), model=spec.name, **params)

    # ---- handlers: controls ----------------------------------------------------------------------

    def _on_model_change(self, change: dict[str, Any]) -> None:
        old = get_model(change["old"]) if change.get("old") in CATALOG else None
        self._apply_model(get_model(change["new"]), previous=old)
        self._update_cost()

    def _on_cost_change(self, change: dict[str, Any]) -> None:
        self._update_cost()

    def _on_sequential_change(self, change: dict[str, Any]) -> None:
        self._n.max = self._toggles.max_n(get_model(self._model.value))

    def _sweep_axes(self) -> list[Axis]:
        """The sweep's axes (seeds across, then styles), [] without a sweep; a ValidationError naming the
        field as the panel labels it. Styles only for a model that takes one (the field is hidden else)."""
        axes = []
        if self._sweep_seeds.value.strip():
            seeds = parse_axis(("seed", self._sweep_seeds.value), "Sweep seeds")
            top = MAX_SEED - self._n.value + 1  # image i of a cell uses seed + i
            if bad := ", ".join(str(s) for s in seeds.values if not 0 <= s <= top):
                allowed = f"seeds from 0 to {top}" + (" (image i of a cell uses seed + i)" if top < MAX_SEED else "")
                raise ValidationError("grid", [Problem("Sweep seeds", bad, allowed)])
            axes.append(seeds)
        if self._sweep_styles.value.strip() and "style" in get_model(self._model.value).params:
            axes.append(parse_axis(("style", self._sweep_styles.value), "Sweep styles"))
        return axes

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
        self._toggles.show_for(spec)
        _show(self._v1_box, spec.sizes is not None or "style" in spec.params or "ref_img" in spec.params)
        _show(self._v1_size, spec.sizes is not None)
        _show(self._v2_box, spec.sizes is None)
        if spec.sizes is not None:
            keep = self._v1_size.value if self._v1_size.value in spec.sizes else spec.default_size
            self._v1_size.options = list(spec.sizes)
            self._v1_size.value = keep
        else:
            lo, hi = side_bounds(spec)
            w, h = (self._width.value, self._height.value)
            if previous is None or previous.default_size != spec.default_size or previous.sizes is not None:
                w, h = parse_size(spec.default_size) or (1024, 1024)
            _set_bounds(self._width, lo, hi, w)
            _set_bounds(self._height, lo, hi, h)
            self._size_rule.value = f"{spec.name}: {spec.size_rule()}"
        self._n.max = self._toggles.max_n(spec)
        _show(self._sweep_styles, "style" in spec.params)

    def _plan_sweep(self, request: GenerationRequest) -> GridState | None:
        """The grid of a sweep (seeds across, styles down), or None when there is no sweep."""
        axes: list[Axis | None] = [*self._sweep_axes(), None, None, None][:3]
        if axes == [None, None, None]:
            return None
        fixed = {"model": request.model, **{k: v for k, v in request.given().items() if k != "prompt"}}
        return build_state(GridState, [request.prompt], axes, fixed, self._session,
                           preview_px=rendering.options.preview_px // 2, reuse=self._reuse.value)  # fmt: skip

    def _update_cost(self) -> None:
        """What Generate will cost: the price as billed (z-image-turbo's rises with prompt rewriting on),
        times each request of a sweep."""
        spec = get_model(self._model.value)
        extend = "prompt_extend" in spec.params and self._extend.value
        cells, problem = 1, None
        try:
            for axis in self._sweep_axes():
                cells *= len(axis.values)
        except ValidationError as exc:
            problem = exc.problems[0].param if exc.problems else "the sweep fields"
        self._cost.value = cost_text(
            images=self._n.value, price=price_yuan(spec, prompt_extend=extend), cells=cells,
            emulator=getattr(self._session, "backend", None) == "emulator", sweep_problem=problem,
        )

    def _set_code(self, request: GenerationRequest, sweep: GridState | None = None) -> None:
        axes = [] if sweep is None else [(letter, a.name, a.values) for letter, a in (("x", sweep.x), ("y", sweep.y))
                                         if a is not None]  # fmt: skip
        self._code_text = code_cell(request, axes, reuse=self._reuse.value)
        self._code.value = (
            "<details open><summary>Equivalent cell</summary>"
            f"<pre style='white-space:pre-wrap;user-select:all'>{html.escape(self._code_text)}</pre></details>"
        )

    def _show_error(self, exc: BaseException, *, title: str, append: bool = False) -> None:
        self._last_error = exc
        data, _ = rendering.error_mimebundle(exc)
        block = f'<div class="wanx-head"><b>{html.escape(title)}</b></div>{data["text/html"]}'
        self._errors.value = (self._errors.value if append else "") + block

    def _ipython_display_(self) -> None:
        """Show the panel, and under it an output that collects the results as static images.

        Results arrive after the cell has finished. Updating a display by its id is the way a kernel
        can still write into a finished cell, and that output is saved in the .ipynb as an ordinary
        display, so exported notebooks and GitHub show the images (widget state they do not render).
        """
        from IPython.display import display, publish_display_data

        publish_display_data(self._repr_mimebundle_())
        if self._static_output:
            self._static_handle = display({"text/plain": ""}, raw=True, display_id=True)

    def _emit_static(self) -> None:
        """Show every result so far in ONE place: under the panel when IPython displayed it, else in its
        Output widget. Plain results form one labelled gallery; each sweep is its own labelled grid."""
        with self._lock:
            plain = [r for r in self._results if not any(r is c.result for sw in self._sweeps for c in sw.cells)]
            sweeps = list(self._sweeps)
        data, metadata = rendering.Gallery(plain)._repr_mimebundle_() if plain else ({"text/plain": "", "text/html": ""}, {})
        for sweep in sweeps:
            data["text/html"] += xyz_grid_html(sweep, backends=sweep.backends, done=sweep.done)
            data["text/plain"] += ("\n" if data["text/plain"] else "") + f"sweep: {sweep.plan}"
        if not self._static_output:
            return
        if self._static_handle is not None:
            self._static_handle.update(data, metadata=metadata, raw=True)
            return
        self._out.outputs = ({"output_type": "display_data", "data": data, "metadata": metadata},)

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

