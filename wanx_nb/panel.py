"""The widget panel: a prompt, a model and its parameters in; images, costs and a re-runnable cell out.

The form (widgets, the controls each model shows, the request they describe, the cost as billed, the
equivalent cell) is `_panel_form.PanelForm`; `Panel` extends it with running it. Checking a request is
`_validation.validate`'s job, running `Session.start` (a Future on the background loop, so the kernel
stays free), cancelling the Run's, every piece of HTML `rendering`'s and every text `_panel_status`'s.

Nothing is paid twice: whatever can refuse a click does so before anything is sent, with a message
naming the field. A run that leaves a request sent and not finished (it may be billed) says so and
offers Resume; Generate refuses to send that request again until Resume has settled it.

Results arrive on the session's background thread. Handlers there only set widget values and touch
shared state under `self._lock`; they never raise into the session. Results are shown in ONE place:
the static output under the panel (what a saved notebook keeps), or the panel's own Output widget when
IPython did not display it. A timer thread re-renders the status row every `tick_seconds` while a run
is in flight, so elapsed time ticks while a task is PENDING.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from typing import Any

from ipywidgets import Button, CallbackDispatcher, Layout

from . import rendering
from ._exceptions import (
    ReuseUnfinishedError,
    SubmitOutcomeUnknownError,
    SyncOutcomeUnknownError,
    TaskCanceledError,
    TaskUnfinishedError,
)
from ._grid_state import GridState, Key
from ._models import GenerationResult
from ._panel_form import PanelForm, magic_cell
from ._panel_status import StatusRow, cancel_text, finish_text, status_rows
from ._registry import get_model
from ._request import DEFAULT_MODEL, GenerationRequest
from ._resume import resume_report
from ._session import Phase, Progress, Run, Session, Takeover, get_session
from ._validation import validate

__all__ = ["Panel", "magic_cell"]


class _Click:
    """Bookkeeping of one click on Generate (or Resume: `request` None): its Run and what the panel showed.

    `progress` keeps each request's last event and the clock reading when it arrived, so the status
    row can add the time since (elapsed ticks while a task waits). `sweep` is the grid of a sweep.
    """

    def __init__(
        self, request: GenerationRequest | None, sweep: GridState | None = None, keys: list[Key] | None = None
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
        self.late_cancels: set[str] = set()  # tasks created after Cancel (their create was on the wire)
        self.takeover: Takeover | None = None  # a Resume: what it found besides the entries it took over


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
        if not tick_seconds > 0:  # 0 would spin a thread; NaN fails the comparison too
            raise ValueError(f"tick_seconds={tick_seconds!r}: how often the status row refreshes, in seconds above 0")
        session = session if session is not None else get_session()
        # The Run measures elapsed time on the session's clock (a fake one in tests): so does the ticker.
        self._clock: Callable[[], float] = getattr(session, "_clock", time.monotonic)
        self._tick_seconds = tick_seconds
        self._done = threading.Event()
        self._done.set()
        self._click: _Click | None = None
        self._result_handlers = CallbackDispatcher()
        super().__init__(session, model=get_model(model or DEFAULT_MODEL), prompt=prompt, layout=layout,
                         static_output=static_output)  # fmt: skip
        self._generate.on_click(self._on_generate_click)
        self._cancel.on_click(self._on_cancel_click)
        self._resume.on_click(self._on_resume_click)

    # ---- public ----------------------------------------------------------------------------------

    def on_result(self, callback: Callable[[GenerationResult], Any], remove: bool = False) -> None:
        """Call `callback(result)` with each GenerationResult as it arrives (from a background thread).

        Failed requests do not reach the callback: they are shown in the panel and in `.last_error`.
        """
        self._result_handlers.register_callback(callback, remove=remove)

    def generate(self) -> None:
        """Start a generation from the current controls, exactly as the Generate button does."""
        self._generate.click()

    def resume(self) -> None:
        """Save what earlier runs sent and did not finish, without paying again, as the Resume button does."""
        self._resume.click()

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
        try:  # everything that can refuse, before anything is sent: said in the panel, never a traceback
            request = self.request()
            warnings = validate(request.replace(seed=None) if self._sweep_seeds.value.strip() else request)
            sweep = self._plan_sweep(request)
            keys = sweep.unique_keys() if sweep is not None else []
            requests = [request] if sweep is None else [sweep.cell_at(*k).request for k in keys]
            self._session.check_budget(requests)
            self._refuse_unfinished(requests)
        except Exception as exc:  # ValidationError, BudgetExceededError, ReuseUnfinishedError...: nothing was sent
            with self._lock:
                self._click = None  # wait() then returns [] for this click, not the previous click's results
            self._show_error(exc, title="Not sent")
            if isinstance(exc, ReuseUnfinishedError):
                self._message.value = "Click Resume to save its images without paying again."
            return
        notes = [html.escape(f"⚠ {w}") for w in warnings]
        if sweep is not None:
            notes.append(html.escape(f"Sweep: {sweep.plan}"))
        self._message.value = "<br>".join(notes)
        click = _Click(request, sweep, keys)
        self._status.value = rendering.status_html([Progress(i, r.model, Phase.QUEUED) for i, r in enumerate(requests)])
        self._set_code(request, sweep)

        def start() -> Run:
            run = self._session.start(
                requests,
                reuse=self._reuse.value,
                on_progress=lambda p: self._on_session_progress(click, p, keys),
                on_result=lambda i, outcome: self._on_session_result(click, i, outcome, keys),
            )
            if sweep is not None:
                with self._lock:
                    self._sweeps.append(sweep)
                self._emit_static()
            return run

        self._begin(click, start)

    def _on_resume_click(self, button: Button) -> None:
        if self.running:
            return
        self._errors.value = self._message.value = self._status.value = ""
        click = _Click(None)

        def start() -> Run:
            run, click.takeover = self._session.start_resume(
                on_progress=lambda p: self._on_session_progress(click, p, []),
                on_result=lambda i, outcome: self._on_session_result(click, i, outcome, []),
            )
            return run

        self._begin(click, start)

    def _begin(self, click: _Click, start: Callable[[], Run]) -> None:
        """Show the click as running and start its Run; the buttons come back when it finishes."""
        with self._lock:
            self._click = click
        self._done.clear()
        self._generate.disabled = self._resume.disabled = True
        self._cancel.disabled = False
        try:
            click.run = start()
        except Exception as exc:  # the session refused before anything was sent (store, budget, replay)
            self._status.value = ""  # no "queued" row for a request that will never go
            self._show_error(exc, title="Not sent" if click.request is not None else "Resume failed")
            self._finish(click)
            return
        self._start_ticker(click)
        click.run.add_done_callback(lambda run: self._finish(click))

    def _refuse_unfinished(self, requests: list[GenerationRequest]) -> None:
        """Refuse to send again a request an earlier run sent and did not finish: it may be billed and its
        images not saved, and Resume saves them without paying twice. A run still going is left to finish."""
        if self._session.mode == "replay":
            return
        store = self._session.store
        for request in requests:
            entry = self._session.sent_unfinished(request)
            if entry is None or (lock := store.hold_run(entry.run_id)) is None:
                continue  # none, or its run is still going (another cell's): that run finishes it
            lock.release()
            raise ReuseUnfinishedError(request.summary(), entry.task_id)

    def _on_cancel_click(self, button: Button) -> None:
        click = self._click
        if click is None or click.run is None or click.run.done():
            self._message.value = "Nothing to cancel: this panel has no request in flight."
            return
        click.cancel_asked = True  # first: a create on the wire now has its task canceled when it comes back
        try:  # only this panel's run: another cell's tasks are never touched
            click.run.withdraw()
            click.run.cancel()
        except Exception as exc:
            click.cancel_asked = False
            self._show_error(exc, title="Cancel failed")
            return
        self._render_status(click)  # the message and the table come from the same snapshot

    def _cancel_late(self, click: _Click, task_id: str) -> None:
        """Cancel a task whose create was on the wire when Cancel was clicked (off the loop's thread)."""
        with self._lock:
            run = click.run
            if run is None or task_id in click.late_cancels:
                return
            click.late_cancels.add(task_id)

        def cancel() -> None:
            try:
                run.cancel()
                self._render_status(click)
            except Exception as exc:
                self._show_error(exc, title="Cancel failed", append=True)

        threading.Thread(target=cancel, name="wanx-panel-cancel", daemon=True).start()

    # ---- handlers: session (background thread) ---------------------------------------------------

    def _on_session_progress(self, click: _Click, progress: Progress, keys: list[Key]) -> None:
        try:
            with self._lock:
                click.progress[progress.index] = (progress, self._clock())
            if click.sweep is not None and keys:
                click.sweep._on_progress(keys, progress)
            if click.cancel_asked and progress.phase is Phase.PENDING and progress.task_id:
                self._cancel_late(click, progress.task_id)
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
                if click.sweep is None and click.request is not None:
                    # The request as sent has the seed the client picked; keep the local reference path
                    # (the client swaps it for a temporary oss:// URL).
                    self._set_code(click.request.replace(seed=outcome.request.seed), None)
                    if not self._seed_fixed.value and outcome.request.seed is not None:
                        self._seed.value = outcome.request.seed  # tick "keep this seed" to repeat it
                elif click.sweep is not None:
                    with self._lock:
                        self._results.append(outcome)
                self._emit_static()
                self._result_handlers(outcome)
            else:
                with self._lock:
                    click.errors.append(outcome)
                if click.sweep is not None:
                    self._emit_static()
                verb = ("canceled" if isinstance(outcome, TaskCanceledError) else "not finished (may be billed)"
                        if isinstance(outcome, (TaskUnfinishedError, SubmitOutcomeUnknownError)) else "failed")
                self._show_error(outcome, title=f"{outcome_model(click, index)} {verb}", append=True)
        except Exception as exc:
            self._show_error(exc, title="Panel error", append=True)

    def _finish(self, click: _Click) -> None:
        click.finished.set()  # stops the ticker
        try:
            self._render_status(click)
            note = self._finish_note(click)
            if note:
                self._message.value = (self._message.value + "<br>" if self._message.value else "") + note
        except Exception as exc:  # whatever happens, the panel is ready again
            self._show_error(exc, title="Panel error", append=True)
        finally:
            self._generate.disabled = self._resume.disabled = False
            self._cancel.disabled = True
            self._done.set()

    def _finish_note(self, click: _Click) -> str:
        """What the click made and cost; what is left unfinished and how to save it (Resume, not Generate)."""
        run = click.run
        if click.request is None:  # a Resume
            if run is None or click.takeover is None:
                return ""
            outcomes = [o for o in run.outcomes if o is not None]
            return html.escape("Resume: " + resume_report(outcomes, click.takeover).text())
        unfinished = len(run.summary().unfinished) if run is not None else 0
        unanswered = sum(1 for error in click.errors if isinstance(error, SyncOutcomeUnknownError))
        with self._lock:
            lines = finish_text(click.results, click.reused, failed=len(click.errors), unfinished=unfinished,
                                unanswered=unanswered)
        return "<br>".join(html.escape(line) for line in lines)

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
        outcomes = click.run.outcomes if click.run is not None else []
        unanswered = {i for i, outcome in enumerate(outcomes) if isinstance(outcome, SyncOutcomeUnknownError)}
        return status_rows(events, self._clock(), canceling=click.cancel_asked, unanswered=unanswered)

    def _render_status(self, click: _Click) -> None:
        rows = self._status_rows(click)
        if rows:
            self._status.value = rendering.status_html(rows)
        if click.cancel_asked:
            self._message.value = html.escape(cancel_text(rows))


def outcome_model(click: _Click, index: int) -> str:
    """The model of request `index` of a click (a sweep has several requests)."""
    if click.sweep is not None and 0 <= index < len(click.keys):
        return click.sweep.cell_at(*click.keys[index]).model
    if click.request is not None:
        return click.request.model
    requests = click.run.requests if click.run is not None else ()
    return requests[index].model if 0 <= index < len(requests) else "request"
