"""The widget panel: a prompt, a model and its parameters in; images, costs and a re-runnable cell out.

The panel composes widgets and wires them (ipywidgets `interactive`, ipyfilechooser); everything else
is delegated: checking a request to `_validation.validate`, cost to `Session.estimate_cost`, running to
`Session.start` (a Future on the background loop, so the kernel stays free and widget messages keep
flowing), cancelling to `Session.cancel_pending`, and every piece of HTML to `rendering`.

Results arrive on the session's background thread. Handlers there only set widget values (which
ipywidgets allows from any thread) and touch shared state under `self._lock`; they never raise into
the session: whatever goes wrong is shown in the panel and kept in `.last_error`.

Results are shown in ONE place: the static output under the panel (what a saved notebook keeps), or
the panel's own Output widget when the panel was not displayed by IPython. While a run is in flight a
small timer thread re-renders the status row every `tick_seconds` from the Run's last events, so
elapsed time ticks while a task is PENDING; it stops when the run ends. A seed or style list in the
sweep fields runs a labelled grid (`_grid` plans it, `_grid_html` draws it).
"""

from __future__ import annotations

import hashlib
import html
import math
import shlex
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipywidgets import (
    BoundedIntText,
    Button,
    CallbackDispatcher,
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
from ._exceptions import TaskCanceledError, WanxError
from ._grid import Axis, parse_axis
from ._grid_html import xyz_grid_html
from ._grid_state import GridState, Key, build_state
from ._panel_status import StatusRow, cancel_text, status_rows
from ._models import GenerationResult
from ._params import BY_NAME, option_line
from ._registry import CATALOG, ModelSpec, get_model
from ._request import DEFAULT_MODEL, MAX_SEED, GenerationRequest
from ._session import Phase, Progress, Run, Session, get_session
from ._validation import parse_size, validate

if TYPE_CHECKING:
    from IPython.display import DisplayHandle

__all__ = ["Panel", "magic_cell"]

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


class _Click:
    """Bookkeeping of one click on Generate: its Run and what the panel has shown of it.

    `progress` keeps each request's last event and the clock reading when it arrived, so the status
    row can add the time since (elapsed ticks while a task waits). `sweep` is the grid of a sweep.
    """

    def __init__(self, request: GenerationRequest, sweep: GridState | None = None) -> None:
        self.request = request
        self.sweep = sweep
        self.results: list[GenerationResult] = []
        self.errors: list[BaseException] = []
        self.progress: dict[int, tuple[Progress, float]] = {}
        self.run: Run | None = None
        self.finished = threading.Event()
        self.cancel_asked = False


class Panel(VBox):
    """Generate images with widgets: pick a model, set its parameters, click Generate.

    Controls follow the model's family: V1 (wanx-v1) shows style, its four sizes and a reference
    image; V2 shows free width and height, prompt rewriting and watermark. The cost label updates as
    you change n or the model. Each result lands in the gallery, is also written to the cell's output
    as a static image (so saved and exported notebooks show it), and the "equivalent cell" box shows
    the `%%wanx` cell that makes it again.

    Parameters:
        session: the Session to generate through (default: `get_session()`).
        model: the model selected at start (default: wanx2.1-t2i-turbo).
        prompt: initial prompt text.
        static_output: show results in the output of the cell that created the panel (else in the
            panel's own Output widget); either way each result is shown once.
        layout: the panel's Layout (default: full width).
        tick_seconds: how often the status row refreshes while a run is in flight.

    Example:
        >>> panel = Panel()                        # doctest: +SKIP
        >>> panel.on_result(lambda r: print(r.paths))   # doctest: +SKIP
        >>> panel                                  # doctest: +SKIP
    """

    def __init__(
        self,
        session: Session | None = None,
        *,
        model: str | None = None,
        prompt: str = "",
        static_output: bool = True,
        layout: Layout | None = None,
        tick_seconds: float = 1.0,
    ) -> None:
        self._session = session if session is not None else get_session()
        # The Run measures elapsed time on the session's clock (a fake one in tests): so does the ticker.
        self._clock: Callable[[], float] = getattr(self._session, "_clock", time.monotonic)
        self._tick_seconds = tick_seconds
        self._sweeps: list[GridState] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._done.set()
        self._click: _Click | None = None
        self._results: list[GenerationResult] = []
        self._last_error: BaseException | None = None
        self._code_text = ""
        self._ref_path: str | None = None
        self._result_handlers = CallbackDispatcher()
        self._static_output = static_output
        self._static_handle: DisplayHandle | None = None  # set when IPython displays the panel (_ipython_display_)

        first = get_model(model or DEFAULT_MODEL)
        self._build_widgets(first, prompt)
        self._apply_model(first)
        self._update_cost()
        self._wire()
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
            placeholder="e.g. 1,2,3 or 1..4", description="Sweep seeds", style=_NARROW, layout=Layout(width="50%"),
            tooltip="several seeds: one labelled grid, a column per seed",
        )
        self._sweep_styles = Text(
            placeholder="e.g. anime, sketch, watercolor", description="Sweep styles", style=_NARROW,
            layout=Layout(width="50%"), tooltip="wanx-v1: several styles, a row per style",
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
            HBox([self._sweep_seeds, self._sweep_styles]),
            HBox([self._generate, self._cancel, self._cost]),
            self._status,
            self._message,
            self._errors,
            self._code,
            self._out,
        ]

    def _wire(self) -> None:
        self._model.observe(self._on_model_change, names="value")
        self._n.observe(self._on_n_change, names="value")
        self._seed_fixed.observe(self._on_seed_fixed_change, names="value")
        self._ref_upload.observe(self._on_ref_upload_change, names="value")
        self._ref_clear.on_click(self._on_ref_clear_click)
        self._generate.on_click(self._on_generate_click)
        self._cancel.on_click(self._on_cancel_click)

    # ---- public ----------------------------------------------------------------------------------

    def on_result(self, callback: Callable[[GenerationResult], Any], remove: bool = False) -> None:
        """Call `callback(result)` with each GenerationResult as it arrives (from a background thread).

        Failed requests do not reach the callback: they are shown in the panel and in `.last_error`.
        """
        self._result_handlers.register_callback(callback, remove=remove)

    def generate(self) -> None:
        """Start a generation from the current controls, exactly as the Generate button does."""
        self._generate.click()

    def wait(self, timeout: float | None = None) -> list[GenerationResult]:
        """Block until the current generation finishes; returns its results (for tests and scripts).

        Do not call it from a notebook cell while you want to watch the panel: it blocks the kernel.
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"the panel's generation did not finish within {timeout} s; it keeps running")
        with self._lock:
            return list(self._click.results) if self._click else []

    @property
    def session(self) -> Session:
        return self._session

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    @property
    def results(self) -> tuple[GenerationResult, ...]:
        """Every result this panel produced, in the order they arrived."""
        with self._lock:
            return tuple(self._results)

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

    def __repr__(self) -> str:
        state = " running" if self.running else ""
        return f"<wanx_nb.Panel {self._model.value} n={self._n.value}{state}>"

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

    # ---- handlers: run ---------------------------------------------------------------------------

    def _on_generate_click(self, button: Button) -> None:
        if self.running:
            return
        self._errors.value = ""
        self._message.value = ""
        request = self.request()
        try:
            sweep = self._plan_sweep(request)
            requests = [request] if sweep is None else [sweep.cell_at(*k).request for k in sweep.unique_keys()]
            warnings = validate(request) if sweep is None else []
            self._session.check_budget(requests)
        except WanxError as exc:  # ValidationError, BudgetExceededError: nothing was sent
            self._show_error(exc, title="Not sent")
            return
        if warnings:
            self._message.value = "<br>".join(f"⚠ {html.escape(w)}" for w in warnings)
        if sweep is not None:
            self._message.value = html.escape(f"Sweep: {sweep.plan}")
        click = _Click(request, sweep)
        with self._lock:
            self._click = click
        self._done.clear()
        self._generate.disabled = True
        self._cancel.disabled = False
        self._status.value = rendering.status_html([Progress(i, r.model, Phase.QUEUED) for i, r in enumerate(requests)])
        self._set_code(request, sweep)
        keys = sweep.unique_keys() if sweep is not None else []
        try:
            click.run = self._session.start(
                requests,
                on_progress=lambda p: self._on_session_progress(click, p, keys),
                on_result=lambda i, outcome: self._on_session_result(click, i, outcome, keys),
            )
        except Exception as exc:  # the session refused before anything was sent (store, budget, replay)
            self._show_error(exc, title="Not sent")
            self._finish(click)
            return
        if sweep is not None:
            with self._lock:
                self._sweeps.append(sweep)
            self._emit_static()
        self._start_ticker(click)
        click.run.add_done_callback(lambda run: self._finish(click))

    def _plan_sweep(self, request: GenerationRequest) -> GridState | None:
        """The grid of a sweep (seeds across, styles down), or None when both sweep fields are empty."""
        axes: list[Axis | None] = [None, None, None]
        if self._sweep_seeds.value.strip():
            axes[0] = parse_axis(("seed", self._sweep_seeds.value), "Sweep seeds")
        if self._sweep_styles.value.strip():
            axes[1 if axes[0] is not None else 0] = parse_axis(("style", self._sweep_styles.value), "Sweep styles")
        if axes == [None, None, None]:
            return None
        fixed = {"model": request.model, **{k: v for k, v in request.given().items() if k != "prompt"}}
        return build_state(GridState, [request.prompt], axes, fixed, self._session,
                           preview_px=rendering.options.preview_px // 2)  # fmt: skip

    def _on_cancel_click(self, button: Button) -> None:
        click = self._click
        if click is None or click.run is None or click.run.done():
            self._message.value = "Nothing to cancel: this panel has no request in flight."
            return
        try:  # only this panel's run: another cell's tasks are never touched
            click.run.withdraw()
            click.run.cancel()
        except Exception as exc:
            self._show_error(exc, title="Cancel failed")
            return
        click.cancel_asked = True
        self._render_status(click)  # the message and the table come from the same snapshot

    # ---- handlers: session (background thread) ---------------------------------------------------

    def _on_session_progress(self, click: _Click, progress: Progress, keys: list[Key]) -> None:
        try:
            with self._lock:
                click.progress[progress.index] = (progress, self._clock())
            if click.sweep is not None and keys:
                click.sweep._on_progress(keys, progress)
            self._render_status(click)
        except Exception as exc:  # never raise into the session
            self._show_error(exc, title="Panel error")

    def _on_session_result(self, click: _Click, index: int, outcome: GenerationResult | BaseException,
                           keys: list[Key]) -> None:  # fmt: skip
        try:
            if click.sweep is not None and keys:
                click.sweep._on_result(keys, index, outcome)
            if isinstance(outcome, GenerationResult):
                with self._lock:
                    click.results.append(outcome)
                    if click.sweep is None:
                        self._results.append(outcome)
                if click.sweep is None:
                    # The request as sent has the seed the client picked; keep the local reference path
                    # (the client swaps it for a temporary oss:// URL).
                    self._set_code(click.request.replace(seed=outcome.request.seed), None)
                    if not self._seed_fixed.value and outcome.request.seed is not None:
                        self._seed.value = outcome.request.seed  # tick "keep this seed" to repeat it
                else:
                    with self._lock:
                        self._results.append(outcome)
                self._emit_static()
                self._result_handlers(outcome)
            else:
                with self._lock:
                    click.errors.append(outcome)
                if click.sweep is not None:
                    self._emit_static()
                verb = "canceled" if isinstance(outcome, TaskCanceledError) else "failed"
                self._show_error(outcome, title=f"{outcome_model(click, index)} {verb}", append=True)
        except Exception as exc:
            self._show_error(exc, title="Panel error", append=True)

    def _finish(self, click: _Click) -> None:
        click.finished.set()  # stops the ticker
        self._render_status(click)
        with self._lock:
            ok = sum(len(r.succeeded) for r in click.results)
            cost = sum(r.cost_yuan for r in click.results)
        if click.results or click.errors:
            note = f"Done: {ok} image{'s' if ok != 1 else ''}, ¥{cost:.2f}"
            if click.results and click.results[0].from_emulator:
                note += " (emulator: nothing was billed)"
            self._message.value = (self._message.value + "<br>" if self._message.value else "") + html.escape(note)
        self._generate.disabled = False
        self._cancel.disabled = True
        self._done.set()

    # ---- the status row, refreshed while a run is in flight ----------------------------------------

    def _start_ticker(self, click: _Click) -> None:
        def tick() -> None:
            while not click.finished.wait(self._tick_seconds):
                try:
                    self._render_status(click)
                except Exception:  # a widget gone (panel closed): stop ticking, the run goes on
                    return

        threading.Thread(target=tick, name="wanx-panel-ticker", daemon=True).start()

    def _status_rows(self, click: _Click) -> list[StatusRow]:
        with self._lock:
            events = [click.progress[i] for i in sorted(click.progress)]
        return status_rows(events, self._clock(), canceling=click.cancel_asked)

    def _render_status(self, click: _Click) -> None:
        rows = self._status_rows(click)
        if rows:
            self._status.value = rendering.status_html(rows)
        if click.cancel_asked:
            self._message.value = html.escape(cancel_text(rows))

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
            backends = {c.result.backend for c in sweep.cells if c.result is not None} or {sweep.plan.backend}
            data["text/html"] += xyz_grid_html(sweep, backends=backends, done=sweep.done)
            data["text/plain"] += ("\n" if data["text/plain"] else "") + f"sweep: {sweep.plan}"
        if not self._static_output:
            return
        if self._static_handle is not None:
            self._static_handle.update(data, metadata=metadata, raw=True)
            return
        self._out.outputs = ({"output_type": "display_data", "data": data, "metadata": metadata},)


def _axis_text(axis: Axis) -> str:
    name = "seed" if axis.name == "seed" else "style"
    return f"{name}=" + ",".join(str(v).strip("<>") for v in axis.values)


def outcome_model(click: _Click, index: int) -> str:
    """The model of request `index` of a click (a sweep has several requests)."""
    if click.sweep is not None:
        unique = [c for c in click.sweep.cells if c.shares is None]
        if 0 <= index < len(unique):
            return unique[index].model
    return click.request.model


def _model_label(spec: ModelSpec) -> str:
    call = " · sync call" if spec.sync_only else ""
    return f"{spec.name} · ¥{spec.price_yuan:.2f}/image · {spec.status}{call} · {spec.description}"
