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

The form (the widgets, the controls each model shows, the request they describe, the cost, the
equivalent cell, errors) is `_panel_form.PanelForm`, which `Panel` extends with running it.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ipywidgets import Button, CallbackDispatcher, Layout

from . import rendering
from ._exceptions import TaskCanceledError, WanxError
from ._grid import Axis, parse_axis
from ._grid_html import xyz_grid_html
from ._grid_state import GridState, Key, build_state
from ._models import GenerationResult
from ._panel_form import PanelForm, magic_cell
from ._panel_status import StatusRow, cancel_text, status_rows
from ._registry import get_model
from ._request import DEFAULT_MODEL, GenerationRequest
from ._session import Phase, Progress, Run, Session, get_session
from ._validation import validate

if TYPE_CHECKING:
    from IPython.display import DisplayHandle

__all__ = ["Panel", "magic_cell"]


class _Click:
    """Bookkeeping of one click on Generate: its Run and what the panel has shown of it.

    `progress` keeps each request's last event and the clock reading when it arrived, so the status
    row can add the time since (elapsed ticks while a task waits). `sweep` is the grid of a sweep.
    """

    def __init__(
        self, request: GenerationRequest, sweep: GridState | None = None, keys: list[Key] | None = None
    ) -> None:
        self.request = request
        self.sweep = sweep
        self.keys = keys or []  # the sweep's cells sent, by run index
        self.results: list[GenerationResult] = []
        self.reused: list[GenerationResult] = []  # settled from the store (reuse): not paid by this click
        self.errors: list[BaseException] = []
        self.progress: dict[int, tuple[Progress, float]] = {}
        self.run: Run | None = None
        self.finished = threading.Event()
        self.cancel_asked = False


class Panel(PanelForm):
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
        session = session if session is not None else get_session()
        # The Run measures elapsed time on the session's clock (a fake one in tests): so does the ticker.
        self._clock: Callable[[], float] = getattr(session, "_clock", time.monotonic)
        self._tick_seconds = tick_seconds
        self._sweeps: list[GridState] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._done.set()
        self._click: _Click | None = None
        self._results: list[GenerationResult] = []
        self._result_handlers = CallbackDispatcher()
        self._static_output = static_output
        self._static_handle: DisplayHandle | None = None  # set when IPython displays the panel (_ipython_display_)
        super().__init__(session, model=get_model(model or DEFAULT_MODEL), prompt=prompt, layout=layout)
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

    def __repr__(self) -> str:
        state = " running" if self.running else ""
        return f"<wanx_nb.Panel {self._model.value} n={self._n.value}{state}>"

    # ---- handlers: run ---------------------------------------------------------------------------

    def _on_generate_click(self, button: Button) -> None:
        if self.running:
            return
        self._errors.value = ""
        self._message.value = ""
        request = self.request()
        try:
            sweep = self._plan_sweep(request)
            keys = sweep.unique_keys() if sweep is not None else []
            requests = [request] if sweep is None else [sweep.cell_at(*k).request for k in keys]
            warnings = validate(request) if sweep is None else []
            self._session.check_budget(requests)
        except WanxError as exc:  # ValidationError, BudgetExceededError: nothing was sent
            self._show_error(exc, title="Not sent")
            return
        if warnings:
            self._message.value = "<br>".join(f"⚠ {html.escape(w)}" for w in warnings)
        if sweep is not None:
            self._message.value = html.escape(f"Sweep: {sweep.plan}")
        click = _Click(request, sweep, keys)
        with self._lock:
            self._click = click
        self._done.clear()
        self._generate.disabled = True
        self._cancel.disabled = False
        self._status.value = rendering.status_html([Progress(i, r.model, Phase.QUEUED) for i, r in enumerate(requests)])
        self._set_code(request, sweep)
        try:
            click.run = self._session.start(
                requests,
                reuse=self._reuse.value,
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
                           preview_px=rendering.options.preview_px // 2, reuse=self._reuse.value)  # fmt: skip

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
                    seen = click.progress.get(index)
                    if seen is not None and seen[0].phase is Phase.REUSED:
                        click.reused.append(outcome)
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
            reused_ids = {id(r) for r in click.reused}
            cost = sum(r.cost_yuan for r in click.results if id(r) not in reused_ids)
            reused = len(click.reused)
        if click.results or click.errors:
            note = f"Done: {ok} image{'s' if ok != 1 else ''}, ¥{cost:.2f}"
            if reused:
                note += f" ({reused} request{'s' if reused != 1 else ''} from the store, not paid again)"
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


def outcome_model(click: _Click, index: int) -> str:
    """The model of request `index` of a click (a sweep has several requests)."""
    if click.sweep is not None and 0 <= index < len(click.keys):
        return click.sweep.cell_at(*click.keys[index]).model
    return click.request.model
