"""`%wanx SUBCOMMAND`'s commands (help, models, config, panel, history, show, resume, cost).

They are plain methods of a mixin that `magics.WanxMagics` inherits; `WanxMagics.wanx_line` holds the
one `%wanx` line magic and dispatches to `handle_<subcommand>` by name. Like the magics, this module
imports only IPython and `_magic_args` at load time: the session, the store and rendering load on use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from IPython.core.error import UsageError

from ._magic_args import CELL_HELP, LINE_HELP, parse_history_line

if TYPE_CHECKING:  # annotations only
    from traitlets import TraitType

    from ._session import Session

__all__ = ["LineCommands"]


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
        from .rendering import Bundle, history_mimebundle

        from ._exceptions import WanxError

        h = parse_history_line(rest)
        session = self.session()
        try:
            rows = session.store.history(
                model=h.model, text=h.text, since=h.since, until=h.until, limit=h.limit, offset=h.offset
            )
        except KeyError as exc:  # unknown model
            raise UsageError(str(exc.args[0])) from None
        except ValueError as exc:  # a --since/--until that is not ISO 8601
            raise UsageError(f"--since/--until take an ISO 8601 time such as 2025-01-31T08:00: {exc}") from None
        except WanxError as exc:  # a damaged index: the error names `wanx-nb store rebuild`
            raise UsageError(str(exc)) from None
        thumbnails = {}
        if h.thumbnails:
            for row in rows:
                data = session.store.read_image(row.thumbnail)  # never a bad or oversized file
                if data is not None and row.task_id:
                    thumbnails[row.task_id] = data
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
