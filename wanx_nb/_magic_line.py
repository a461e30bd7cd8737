"""`%wanx SUBCOMMAND`'s commands (help, models, config, panel, history, show, resume, cost).

They are plain methods of a mixin that `magics.WanxMagics` inherits; `WanxMagics.wanx_line` holds the
one `%wanx` line magic and dispatches to `handle_<subcommand>` by name; `%wanx history`'s options are
parsed here. Like the magics, this module imports only IPython, `_magic_args` and the parameter table at
load time: the session, the store and rendering load on use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from IPython.core.error import UsageError
from IPython.core.magic_arguments import MagicArgumentParser

from ._magic_args import CELL_HELP, LINE_HELP, OptionParser, parse_options
from ._params import add_history_options

if TYPE_CHECKING:  # annotations only
    from traitlets import TraitType

    from ._session import Session

__all__ = ["HistoryArgs", "LineCommands", "history_parser", "parse_history_line"]


def _build_history_parser() -> MagicArgumentParser:
    p = OptionParser(prog="wanx history", description="Stored generations, newest first.")
    add_history_options(p)
    p.add_argument("--no-thumbnails", action="store_true", help="leave the thumbnails out (faster)")
    return p


history_parser = _build_history_parser()


@dataclass(frozen=True)
class HistoryArgs:
    """The options of `%wanx history`."""

    model: str | None = None
    text: str | None = None
    since: str | None = None
    until: str | None = None
    limit: int = 20
    thumbnails: bool = True
    page: int = 1

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit

    def filters(self) -> dict[str, Any]:
        return {"model": self.model, "text": self.text, "since": self.since, "until": self.until}


def parse_history_line(line: str) -> HistoryArgs:
    ns = parse_options(history_parser, line)
    return HistoryArgs(ns.model, ns.text, ns.since, ns.until, ns.limit, not ns.no_thumbnails, ns.page)


class _Magics(Protocol):
    """What the commands use of the WanxMagics that inherits them: its settings and its session.

    The handlers take `self: _Magics`, so mypy checks that the class inheriting them provides these.
    """

    @property
    def default_model(self) -> str: ...

    def class_traits(self, **metadata: Any) -> dict[str, TraitType[Any, Any]]: ...

    def session(self) -> Session: ...


class LineCommands:
    """The `%wanx` subcommands, one `handle_<name>(rest)` each; `rest` is the line after the name."""

    def handle_help(self, rest: str) -> Any:
        from .rendering import CSS, Bundle

        text = f"{LINE_HELP}\n\n%%wanx [options]\n<prompt>\n\n{CELL_HELP.removeprefix('::').strip()}"
        import html as _html

        return Bundle({"text/plain": text, "text/html": f'{CSS}<pre class="wanx-result">{_html.escape(text)}</pre>'})

    def handle_models(self: _Magics, rest: str) -> Any:
        from ._registry import CATALOG
        from .rendering import Bundle, models_mimebundle

        _no_args("models", rest)
        session = self.session()
        return Bundle(*models_mimebundle(CATALOG, backend=session.backend, has_key=session.has_key, mode=session.mode))

    def handle_config(self: _Magics, rest: str) -> Any:
        from .rendering import CSS, Bundle, table_html, table_text

        _no_args("config", rest)
        session = self.session()
        rows = [[f"WanxMagics.{name}", repr(getattr(self, name)), trait.help]
                for name, trait in sorted(self.class_traits(config=True).items())]
        budget = f"¥{session.budget_yuan:.2f}" if session.budget_yuan else "none"
        rows += [
            ["session.backend", session.backend, "emulator without DASHSCOPE_API_KEY; dashscope with it"],
            ["session.mode", session.mode, "live, record or replay"],
            ["session.store", str(session.store.root), "images and index"],
            ["session.budget", budget, "set with %config WanxMagics.budget_yuan = ..."],
            ["API key", "set" if session.has_key else "not set", "read from DASHSCOPE_API_KEY; never shown"],
        ]
        headers = ["setting", "value", "meaning"]
        html_out = f'{CSS}<div class="wanx-result">{table_html(headers, rows)}</div>'
        return Bundle({"text/plain": table_text(headers[:2], [r[:2] for r in rows]), "text/html": html_out})

    def handle_panel(self: _Magics, rest: str) -> Any:
        _no_args("panel", rest)
        self.session()
        try:
            from .panel import Panel
        except ImportError as exc:
            raise UsageError(f"the panel is not available: {exc}") from None
        return Panel(model=self.default_model)

    def handle_history(self: _Magics, rest: str) -> Any:
        from .rendering import Bundle, history_mimebundle, row_id

        from ._exceptions import WanxError
        from ._history import check_filters, past_the_end

        h = parse_history_line(rest)
        try:  # the checks of wanx_nb.history(), naming the options: --model='nope': unknown model ...
            check_filters(**h.filters(), names={k: f"--{k}" for k in h.filters()})
        except (ValueError, TypeError) as exc:
            raise UsageError(str(exc)) from None
        session = self.session()
        try:
            rows = session.store.history(**h.filters(), limit=h.limit, offset=h.offset)
            if not rows and h.page > 1 and (matching := session.store.history_count(**h.filters())):
                raise UsageError(past_the_end(h.page, h.limit, matching))
        except WanxError as exc:  # a damaged index: the error names `wanx-nb store rebuild`
            raise UsageError(str(exc)) from None
        thumbnails = {}
        if h.thumbnails:
            for row in rows:
                data = session.store.read_image(row.thumbnail)  # never a bad or oversized file
                if data is not None and (ident := row_id(row)):  # a sync call's is its request id
                    thumbnails[ident] = data
        return Bundle(*history_mimebundle(rows, thumbnails=thumbnails))

    def handle_show(self: _Magics, rest: str) -> Any:
        task_id = rest.strip()
        if not task_id or " " in task_id:
            raise UsageError("usage: %wanx show TASK_ID (find ids with %wanx history)")
        session = self.session()
        result = session.store.get(task_id)
        if result is None:
            raise UsageError(f"no saved result for task {task_id!r} in {session.store.root}; list them with %wanx history")
        return result

    def handle_resume(self: _Magics, rest: str) -> Any:
        from ._exceptions import WanxError
        from .rendering import Bundle, Gallery

        _no_args("resume", rest)
        session = self.session()
        try:
            report = session.resume()
        except WanxError as exc:
            raise UsageError(str(exc)) from None
        if not report.recovered:
            return Bundle({"text/plain": report.text()})
        return Gallery(report.recovered, title=report.text())

    def handle_cost(self: _Magics, rest: str) -> Any:
        from .rendering import CSS, Bundle, table_html, table_text

        _no_args("cost", rest)
        session = self.session()
        images, yuan = session.store.total_cost()
        rows = [
            ["this session", f"¥{session.spent_yuan:.2f}"],
            [f"store {session.store.root}", f"¥{yuan:.2f} for {images} image(s)"],
        ]
        if session.budget_yuan:
            left = max(session.budget_yuan - session.spent_yuan, 0.0)
            rows.append(["budget", f"¥{session.budget_yuan:.2f}, ¥{left:.2f} left"])
        else:
            rows.append(["budget", "none (set %config WanxMagics.budget_yuan = ...)"])
        note = "at list prices; emulator and replayed results cost nothing on the real service"
        html_out = f'{CSS}<div class="wanx-result">{table_html(["", "cost"], rows)}<div class="wanx-note">{note}</div></div>'
        return Bundle({"text/plain": table_text(["", "cost"], rows) + "\n" + note, "text/html": html_out})


def _no_args(sub: str, rest: str) -> None:
    if rest:
        raise UsageError(f"%wanx {sub} takes no arguments (got {rest!r})")
