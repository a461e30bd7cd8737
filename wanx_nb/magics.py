"""`%%wanx` (generate from the cell body) and `%wanx SUBCOMMAND` (models, config, history...).

The magics are thin: `_magic_args` parses, the Session generates, `rendering` draws; the `%wanx`
subcommands' handlers live in `_magic_line`. They return objects that render themselves (a
GenerationResult, a Gallery, a table) and never print.

Loading the extension stays cheap: this module imports only IPython, traitlets, `_magic_args`,
`_magic_grid` and `_magic_line` at import time. The session, the client (httpx), the emulator, PIL and
the widgets load inside the handlers, on first use.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from traitlets import CaselessStrEnum, Float, Int, Unicode, observe, validate

from ._magic_args import CELL_HELP, LINE_HELP, SUBCOMMANDS, CellArgs, expand_line, parse_cell_line
from ._magic_grid import GridCommands, cell_prompt, check_typed_line
from ._magic_line import LineCommands

if TYPE_CHECKING:  # annotations only: these load on first use (see the module docstring)
    from ._models import GenerationResult
    from ._request import GenerationRequest
    from ._session import Session

__all__ = ["WanxMagics"]

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# Session.prepare's notes say what a run does; a dry run sends nothing, so it says what a run would do.
_DRY_RUN_NOTES = {
    "reproducible: re-sent the recorded rewritten prompt with prompt_extend off":
        "reproducible: would re-send the recorded rewritten prompt with prompt_extend off",
}
_Handler = TypeVar("_Handler", bound=Callable[..., Any])


def _magic(marker: Callable[[str], object], name: str) -> Callable[[_Handler], _Handler]:
    """`@cell_magic(name)` / `@line_magic(name)` as a typed decorator: IPython annotates the marker it
    returns as a union with an unbound type variable, which mypy cannot apply to a method."""
    return cast("Callable[[_Handler], _Handler]", marker(name))


@magics_class
class WanxMagics(LineCommands, GridCommands, Magics):
    """`%%wanx` and `%wanx`. Settings are traitlets: `%config WanxMagics.default_model = "wanx-v1"`.

    The `%wanx` subcommands' handlers come from LineCommands (`_magic_line`), the grids' (--x/--y/--z,
    --compare) from GridCommands (`_magic_grid`); the single request's are here.
    """

    default_model = Unicode(
        "wanx2.1-t2i-turbo", help="model used when %%wanx has no -m (see %wanx models)"
    ).tag(config=True)
    default_n = Int(
        1, help="images per %%wanx cell when -n is not given: 1 is cheaper than the API's own default of 4"
    ).tag(config=True)
    default_size = Unicode(None, allow_none=True, help="size when --size is not given (None: the model's)").tag(
        config=True
    )
    output_dir = Unicode(
        "wanx_output",
        allow_none=True,
        help="folder the full PNGs are copied to as <model>_<seed>.png ('' or None: no copies)",
    ).tag(config=True)
    preview_px = Int(384, help="largest side of the previews embedded in the notebook, in pixels").tag(config=True)
    wait_timeout = Float(
        600.0, help="seconds a %%wanx cell waits at most; tasks still running can be collected with %wanx resume"
    ).tag(config=True)
    budget_yuan = Float(
        0.0, help="refuse runs whose estimate exceeds what is left of this many yuan (0: no budget)"
    ).tag(config=True)
    mode = CaselessStrEnum(
        ["live", "record", "replay"],
        default_value=None,
        allow_none=True,
        help="live, record or replay (None: the session's, from WANX_NB_MODE or live)",
    ).tag(config=True)
    store_dir = Unicode(
        None, allow_none=True, help="store folder for images and the index (None: WANX_NB_STORE or ./wanx_store)"
    ).tag(config=True)
    live_status = CaselessStrEnum(
        ["auto", "on", "off"], "auto", help="live status while a cell runs (auto: in a Jupyter kernel only)"
    ).tag(config=True)

    # ---- settings -> session -------------------------------------------------------------------

    @validate("default_model", "default_n", "default_size", "preview_px", "budget_yuan", "wait_timeout")
    def _check_setting(self, proposal: dict[str, Any]) -> Any:
        from ._magic_settings import checked_setting

        return checked_setting(proposal["trait"].name, proposal["value"])

    @observe("budget_yuan", "mode", "store_dir", "preview_px")
    def _on_setting_change(self, change: dict[str, Any]) -> None:
        # Remember what the user set and push it to the session now, so Python code that uses
        # get_session() directly sees it too; it is pushed again at each use (whichever session is
        # current then). Only explicit settings are pushed: defaults never override WANX_NB_* settings.
        self.__dict__.setdefault("_explicit", set()).add(change["name"])
        self.session()

    def _explicit_settings(self) -> set[str]:
        explicit: set[str] = self.__dict__.setdefault("_explicit", set())
        return explicit

    def session(self) -> Session:
        """The current Session, with the settings made here pushed to it."""
        from pathlib import Path

        from . import rendering
        from ._session import get_session

        from ._exceptions import WanxError

        try:
            session = get_session()
        except WanxError as exc:  # e.g. WANX_NB_MODE=bogus: the message names the variable
            raise UsageError(str(exc)) from None
        explicit = self._explicit_settings()
        rendering.options.preview_px = self.preview_px
        if "budget_yuan" in explicit:
            session.budget_yuan = self.budget_yuan or None
        if "mode" in explicit and self.mode:
            session.mode = self.mode.lower()
        if "store_dir" in explicit and self.store_dir and Path(self.store_dir) != Path(session.store.root):
            from ._store import Store

            session.store = Store(self.store_dir)
        return session

    # ---- %%wanx --------------------------------------------------------------------------------

    @_magic(cell_magic, "wanx")
    @no_var_expand  # the line's fields are checked as typed, then filled as IPython would (see expand_line)
    def wanx_cell(self, line: str, cell: str) -> Any:
        namespace = self.shell.user_ns if self.shell is not None else {}
        line, filled = expand_line(line, namespace)
        args = parse_cell_line(line)
        if args.help:
            return self.handle_help("")
        if not filled:  # the line as typed: a {name} left in a text value would be sent as written
            check_typed_line(args, namespace)
        prompt = cell_prompt(args, cell, namespace)
        if args.compare is not None:
            return self.handle_compare(args, prompt)
        if args.axes is not None:
            return self.handle_grid(args, prompt)
        request = args.to_request(
            prompt, default_model=self.default_model, default_n=self.default_n, default_size=self.default_size
        )
        self.validate(request)
        if args.dry_run:
            return self.handle_dry_run(args, request)
        return self.handle_generate(args, request)

    def validate(self, request: GenerationRequest) -> list[str]:
        """Check the request before anything is sent; every problem at once, as a UsageError."""
        from ._exceptions import ValidationError
        from ._validation import validate

        try:
            return validate(request)
        except ValidationError as exc:
            raise UsageError(str(exc)) from None

    def handle_generate(self, args: CellArgs, request: GenerationRequest) -> Any:
        """Run one request as a Run with a live status; return the result (or the error) as the value."""
        from ._exceptions import RunInterruptedError, RunTimeoutError, WanxError
        from ._progress import LiveStatus
        from .rendering import Bundle, ErrorReport, interrupt_mimebundle

        session = self.session()
        status = LiveStatus(enabled=self._live_status_enabled())
        try:
            run = session.start([request], reproducible=args.reproducible, reuse=args.reuse,
                                on_progress=status.on_progress)  # fmt: skip
        except WanxError as exc:  # refused before anything was sent: budget, store, replay miss, rules
            raise UsageError(str(exc)) from None
        status.start()
        timeout = self.wait_timeout if self.wait_timeout and self.wait_timeout > 0 else None
        try:
            (outcome,) = run.result(timeout, on_tick=status.tick if status.enabled else None)
        except RunInterruptedError as exc:
            # The card says what was canceled and what resume will save; IPython prints the short
            # `_render_traceback_` line under it, not a traceback, and the cell still stops.
            summary = exc.summary
            card = interrupt_mimebundle(
                canceled=summary.canceled, running=summary.unfinished, unsent=summary.phases.get("withdrawn", 0)
            )
            if status.enabled:
                status.finish(Bundle(*card))
            else:
                from IPython.display import publish_display_data

                publish_display_data(*card)
            raise
        except RunTimeoutError as exc:
            status.finish()
            return self._finish(args, exc, ErrorReport(exc))
        status.finish()
        if isinstance(outcome, BaseException):
            return self._finish(args, outcome, ErrorReport(outcome))
        self.export(outcome)
        return self._finish(args, outcome, outcome)

    def _finish(self, args: CellArgs, value: Any, shown: Any) -> Any:
        if args.output and self.shell is not None:
            self.shell.user_ns[args.output] = value
        return None if args.no_display else shown

    def _live_status_enabled(self) -> bool:
        if self.live_status == "on":
            return True
        if self.live_status == "off":
            return False
        return getattr(self.shell, "kernel", None) is not None

    def export(self, result: GenerationResult) -> list[str]:
        """Copy each stored full PNG to `output_dir` as `<model>_<seed>_<sha8>.png`; returns the paths.

        The content hash in the name means a copy never overwrites another image and the name does
        not depend on what the folder already holds. Each image's `export_path` is set for the caption.
        """
        if not self.output_dir:
            return []
        try:
            return self._copy_out(result, self.output_dir)
        except OSError as exc:  # after paying: the images are safe in the store; say so, never a traceback
            result.warnings.append(
                f"could not copy the images to {self.output_dir!r} ({exc.strerror or exc}); they are saved in the "
                "store (see each image's path); change %config WanxMagics.output_dir to get copies"
            )
            return []

    def _copy_out(self, result: GenerationResult, output_dir: str) -> list[str]:
        os.makedirs(output_dir, exist_ok=True)
        paths = []
        for im in result.succeeded:
            source = im.path if im.path and os.path.exists(im.path) else None
            data = im.data
            if source is not None:  # hashed from memory when held there, else from the stored file
                digest = im.sha256 or _sha256(data if data is not None else _read(source))
            elif data is not None:
                digest = im.sha256 or _sha256(data)
            else:
                continue  # neither a stored file nor the bytes: nothing to copy
            seed = f"_{im.seed}" if im.seed is not None else ""
            target = os.path.join(output_dir, f"{_SAFE_NAME.sub('_', result.model)}{seed}_{digest[:8]}.png")
            if not os.path.exists(target):
                if source is not None:
                    shutil.copyfile(source, target)
                elif data is not None:
                    with open(target, "wb") as fh:
                        fh.write(data)
            im.export_path = target
            paths.append(target)
        return paths

    def handle_dry_run(self, args: CellArgs, request: GenerationRequest) -> Any:
        """Validate, estimate the cost and show the body that would be sent; send nothing."""
        import json

        from ._exceptions import BudgetExceededError, WanxError
        from ._registry import get_model
        from ._request import excerpt
        from .rendering import CSS, Bundle

        session = self.session()
        try:
            prepared, notes = session.prepare(request, reproducible=args.reproducible)
        except WanxError as exc:
            raise UsageError(str(exc)) from None
        images, yuan = session.estimate_cost([prepared])
        spec = get_model(prepared.model)
        try:
            session.check_budget([prepared])
            budget = "within the budget" if session.budget_yuan else "no budget set"
        except BudgetExceededError as exc:
            budget = str(exc)
        seed = prepared.seed if prepared.seed is not None else "picked at run time"
        backend = session.backend
        where = {
            "emulator": "the offline emulator would answer (free): the estimate is for the real service",
            "replay": "replay mode: the store would answer (free)",
        }.get(backend, f"would be sent to {backend}")
        lines = [
            "dry run: nothing was sent.",
            f"  {prepared.model}: {images} image(s) of {prepared.effective_size}, seed {seed}",
            f"  prompt: {excerpt(prepared.prompt, 80)!r}",  # as it will be sent, {names} filled in
            f"  estimated cost: ¥{yuan:.2f} (¥{spec.price_yuan:.2f} per image, if every image succeeds); {budget}",
            f"  {where}",
            *(f"  note: {_DRY_RUN_NOTES.get(n, n)}" for n in notes),
        ]
        stored = session.reusable(prepared) if args.reuse else None
        if stored is not None:
            lines.append(f"  --reuse: an earlier run made it (task {stored.task_id}): it would be shown from the store, "
                         "nothing sent or paid")  # fmt: skip
        body = json.dumps(prepared.to_body(), ensure_ascii=False, indent=2)
        text = "\n".join(lines)
        import html as _html

        html_out = (
            f'{CSS}<div class="wanx-result"><pre>{_html.escape(text)}</pre>'
            f"<details><summary>request body</summary><pre>{_html.escape(body)}</pre></details></div>"
        )
        if args.output and self.shell is not None:
            self.shell.user_ns[args.output] = prepared
        meta = {"wanx_nb": {"dry_run": True, "request": prepared.canonical(), "images": images, "estimate_yuan": yuan}}
        return None if args.no_display else Bundle({"text/plain": text, "text/html": html_out}, meta)

    # ---- %wanx SUBCOMMAND ----------------------------------------------------------------------

    @_magic(line_magic, "wanx")
    def wanx_line(self, line: str) -> Any:
        sub, _, rest = line.strip().partition(" ")
        if sub in ("", "-h", "--help"):
            sub = "help"
        elif sub.startswith("-"):  # `%wanx --x "prompt=a|b"`: a cell with no body (IPython refuses %%wanx
            return self.wanx_cell(line, "")  # with nothing below it, suggesting the line magic)
        if sub not in SUBCOMMANDS:
            close = difflib.get_close_matches(sub, list(SUBCOMMANDS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"unknown subcommand {sub!r}.{hint}\n\n{LINE_HELP}")
        return getattr(self, f"handle_{sub}")(rest.strip())  # LineCommands.handle_<sub>


WanxMagics.wanx_cell.__doc__ = CELL_HELP
WanxMagics.wanx_line.__doc__ = LINE_HELP


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()
