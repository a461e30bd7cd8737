"""The dependency direction rule (STYLE.md §3, adapted to the modules wanx_nb actually has).

Every module of the package is parsed with `ast`. Each `import` / `from ... import` anywhere in it
(module level, inside functions, under `if TYPE_CHECKING:`) is resolved to an absolute name, relative
imports included, and checked against the table below. A module that is not in the table fails the
test, so a new module has to be given a row.

    L0  _version, _constants, _exceptions, _sqlite   each other only
    L1  _registry, _params, _request, _models, _png  L0-L1  (_provenance: the record, below _models)  (_models -> rendering lazily in _repr_mimebundle_ only)
        _sizes, _modelspec, _catalog_2026            (the registry's size rules, types and 2026 data)
    L2  _validation, _grid, _grid_plan, _protocol,   L0-L2
        _backoff, _auth, _imagecheck, _reconcile,
        _protocol_image, _protocol_list, _protocol_upload
    L3  _client, _scheduler, _store, _run_locks,     L0-L3  (_client and its parts: never _store, IPython,
        _loop, _journal, _store_db, _store_read,            ipywidgets; _client_config imports the emulator
        _store_queries, _store_repair,                      lazily, for the keyless default; the parts
        _client_* (the client's parts: _base, _config,      never import the _client facade that composes
        _types, _http, _create, _poll, _download,           them, except _client_sync, which wraps it)
        _upload, _reconcile, _errors, _sync)
    L4  _run, _run_events, _run_steps, _run_queue,  L0-L4 (_session -> _run, never the reverse)
        _run_room, _grid_state,
        _resume, _session, _history, rerun
    L5  rendering, _progress, _preview, _html_style, L0-L1 and each other; rendering never imports IPython or
        _next_steps, _captions, _grid_html, _grid_paint, _panel_status,
        _tables_html, _interrupt_card, _render_options,
        _tiles_html, _error_card, _history_html, _cli_text
                                                     ipywidgets, _progress only inside functions
    L6  magics, _magic_args, _magic_line, panel,     anything below; panel and comparison never import each
        _magic_grid, _panel_form, _panel_toggles,    other or magics; magics imports panel/comparison lazily,
        comparison, cli,
        _cli_parser
                                                     cli imports comparison lazily (`wanx-nb grid`); panel
                                                     imports _panel_form (its form), which imports
                                                     _panel_toggles (its on/off controls), nothing else does; cli
                                                     imports _cli_parser (its arguments), nothing else does;
                                                     magics imports _magic_line (its `%wanx` subcommands),
                                                     which imports _magic_args and panel (lazily) only, and
                                                     _magic_grid (its grids), which imports _magic_args and
                                                     comparison (lazily) only;
                                                     _magic_settings (the `%config` checks) is imported
                                                     by magics and _magic_args only
    emulator/*                                       only _registry, _version and _sqlite from the package

"Lazily" means inside a function body: the import runs on first use, not when the module loads.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import wanx_nb

PACKAGE = "wanx_nb"
ROOT = Path(wanx_nb.__file__).resolve().parent

LAYERS: dict[str, int] = {
    "_version": 0, "_constants": 0, "_exceptions": 0, "_sqlite": 0,
    "_registry": 1, "_params": 1, "_request": 1, "_models": 1, "_png": 1, "_provenance": 1,
    "_sizes": 1, "_modelspec": 1, "_catalog_2026": 1,
    "_validation": 2, "_grid": 2, "_grid_plan": 2, "_protocol": 2, "_protocol_image": 2, "_protocol_list": 2, "_protocol_upload": 2, "_backoff": 2, "_auth": 2, "_imagecheck": 2, "_reconcile": 2,
    "_client": 3, "_client_sync": 3, "_client_errors": 3, "_client_base": 3, "_client_config": 3, "_client_types": 3,
    "_client_http": 3, "_client_create": 3, "_client_poll": 3, "_client_download": 3, "_client_upload": 3,
    "_client_reconcile": 3, "_scheduler": 3, "_store": 3, "_run_locks": 3, "_loop": 3,
    "_journal": 3, "_store_db": 3, "_store_read": 3, "_store_queries": 3, "_store_repair": 3,
    "_run": 4, "_run_events": 4, "_grid_state": 4, "_run_steps": 4, "_run_room": 4, "_run_queue": 4, "_resume": 4, "_session": 4, "_history": 4, "rerun": 4,
    "rendering": 5, "_progress": 5, "_preview": 5,
    "_html_style": 5, "_next_steps": 5, "_captions": 5, "_grid_html": 5, "_grid_paint": 5, "_panel_status": 5, "_tables_html": 5, "_interrupt_card": 5,
    "_render_options": 5, "_tiles_html": 5, "_error_card": 5, "_history_html": 5,
    "magics": 6, "_magic_args": 6, "_magic_line": 6, "_magic_grid": 6, "_magic_settings": 6, "panel": 6, "_panel_form": 6, "_panel_toggles": 6, "comparison": 6, "cli": 6, "_cli_parser": 6, "_cli_text": 5,
}  # fmt: skip
UI = ("IPython", "ipywidgets")
SERVER = ("starlette", "uvicorn")


@dataclass(frozen=True)
class Import:
    target: str  # absolute dotted name, e.g. "wanx_nb._registry" or "httpx"
    lineno: int
    function: str | None  # innermost enclosing def, None at module level (class bodies count as module level)

    @property
    def lazy(self) -> bool:
        return self.function is not None


def module_files() -> dict[str, Path]:
    """Dotted module name (relative to the package, "" for __init__) -> file."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = module_files()


def _is_package(name: str) -> bool:
    return (ROOT / Path(*name.split(".")) / "__init__.py").exists() if name else True


def _resolve_from(name: str, node: ast.ImportFrom) -> list[str]:
    """Absolute targets of `from X import a, b`: X, or X.a when `a` is a submodule of the package."""
    if node.level:
        # The importing module's package: itself for an __init__, its parent otherwise.
        package = name.split(".") if _is_package(name) else name.split(".")[:-1]
        package = [p for p in package if p]
        if node.level > 1:
            package = package[: len(package) - (node.level - 1)]
        base = ".".join([PACKAGE, *package, *([node.module] if node.module else [])])
    else:
        base = node.module or ""
    targets = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        rel = candidate[len(PACKAGE) + 1 :] if candidate.startswith(PACKAGE + ".") else None
        targets.append(candidate if rel is not None and rel in MODULES else base)
    return targets


def imports_of(name: str) -> list[Import]:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"), filename=str(MODULES[name]))
    found: list[Import] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, getattr(child, "name", "<lambda>"))
                continue
            if isinstance(child, ast.Import):
                found.extend(Import(a.name, child.lineno, function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                found.extend(Import(t, child.lineno, function) for t in _resolve_from(name, child))
            visit(child, function)

    visit(tree, None)
    return found


def internal(target: str) -> str | None:
    """The package-relative module name of an import target, or None for a third-party/stdlib one."""
    if target == PACKAGE:
        return ""
    if target.startswith(PACKAGE + "."):
        rel = target[len(PACKAGE) + 1 :]
        while rel not in MODULES and "." in rel:  # `from wanx_nb.x import Name` resolves to x
            rel = rel.rsplit(".", 1)[0]
        return rel
    return None


def group(rel: str) -> str:
    """Layer key of a package module: its own name, or "emulator" for the emulator subpackage."""
    return "emulator" if rel == "emulator" or rel.startswith("emulator.") else rel


def top(target: str) -> str:
    return target.split(".")[0]


def fmt(name: str, imp: Import) -> str:
    where = f"inside {imp.function}()" if imp.lazy else "at module level"
    return f"{name or '__init__'}:{imp.lineno} imports {imp.target} {where}"


# ---- the table covers the package ------------------------------------------------------------------


def test_every_module_has_a_row():
    rows = set(LAYERS) | {"", "emulator"}
    unknown = sorted(m for m in MODULES if group(m) not in rows)
    assert unknown == [], f"give these modules a layer in tests/test_layers.py: {unknown}"


def test_the_import_walker_sees_lazy_and_relative_imports():
    # Guards the walker itself: these imports exist in the code and have the shapes the rules rely on.
    models = {(internal(i.target), i.function) for i in imports_of("_models")}
    assert ("rendering", "_repr_mimebundle_") in models
    backend = {internal(i.target) for i in imports_of("emulator._backend")}
    assert {"_registry", "emulator._tasks", "emulator._errors"} <= backend  # `from .. import` and `from . import`
    assert any(i.target == "wanx_nb.emulator" and i.lazy for i in imports_of("_client_config"))


# ---- package-internal direction ---------------------------------------------------------------------

# (importer, imported) -> the only function it may be imported in (a lazy import, for a stated reason).
LAZY_EXCEPTIONS = {
    # A result renders itself in Jupyter; rendering depends on _models, not the other way round at load time.
    ("_models", "rendering"): "_repr_mimebundle_",
}


def allowed_internal(importer: str, imported: str, imp: Import) -> str | None:
    """None when the import is allowed, else the reason it is not."""
    if imported == importer:
        return None
    if imported == "":
        return "imports the package root (wanx_nb/__init__), which lazily re-exports everything"
    exception = LAZY_EXCEPTIONS.get((importer, imported))
    if exception is not None:
        return None if imp.function == exception else f"may import {imported} only inside {exception}()"
    if group(imported) == "emulator":
        if not imp.lazy:
            return "imports the emulator at module level (starlette/uvicorn/PIL must load only when it is used)"
        if importer in ("_client_config", "cli", "_cli_parser"):
            return None
        return "only _client_config (the client's keyless default), cli and its parser use the emulator"
    mine, theirs = LAYERS[importer], LAYERS[imported]
    if mine <= 4:
        return None if theirs <= mine else f"L{mine} may import only L0-L{mine}, and {imported} is L{theirs}"
    if mine == 5:
        return None if theirs <= 1 or theirs == 5 else f"L5 may import only L0-L1 and L5, and {imported} is L{theirs}"
    # L6
    if theirs < 6:
        return None
    if imported == "_magic_settings" and importer in ("magics", "_magic_args"):  # the `%config` settings' checks
        return None
    if importer == "magics":
        if imported in ("_magic_args", "_magic_line", "_magic_grid"):
            return None
        if imported in ("panel", "comparison"):
            return None if imp.lazy else f"magics may import {imported} only inside a function"
    if importer == "_magic_line":  # the `%wanx` subcommands, which magics inherits
        if imported == "_magic_args":
            return None
        if imported == "panel":  # `%wanx panel`
            return None if imp.lazy else "_magic_line may import panel only inside a function"
    if importer == "_magic_grid":  # `%%wanx --x/--y/--z` and `--compare`, which magics inherits
        if imported == "_magic_args":
            return None
        if imported == "comparison":
            return None if imp.lazy else "_magic_grid may import comparison only inside a function"
    if importer == "panel" and imported == "_panel_form":  # the panel's widgets, which it extends
        return None
    if importer == "_panel_form" and imported == "_panel_toggles":  # the form's on/off controls
        return None
    if importer == "cli" and imported == "_cli_parser":  # the command line's parser, which it runs
        return None
    if importer == "cli" and imported == "comparison":  # `wanx-nb grid`
        return None if imp.lazy else "cli may import comparison only inside a function"
    return f"L6 modules do not import each other ({importer} -> {imported})"


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layered_module_imports_only_downwards(name):
    bad = []
    for imp in imports_of(name):
        rel = internal(imp.target)
        if rel is None:
            continue
        reason = allowed_internal(name, rel, imp)
        if reason:
            bad.append(f"{fmt(name, imp)}: {reason}")
    assert bad == []


CLIENT_PARTS = sorted(m for m in LAYERS if m.startswith("_client_"))


@pytest.mark.parametrize("name", ["_client", *CLIENT_PARTS])
def test_client_never_imports_the_store(name):
    assert [fmt(name, i) for i in imports_of(name) if internal(i.target) == "_store"] == []


@pytest.mark.parametrize("name", sorted(set(CLIENT_PARTS) - {"_client_sync"}))
def test_the_clients_parts_never_import_its_facade(name):
    # `_client` composes its parts; a part importing it back would make a cycle (`_client_sync` wraps it).
    assert [fmt(name, i) for i in imports_of(name) if internal(i.target) == "_client"] == []


def test_package_root_imports_only_version_eagerly_and_magics_lazily():
    eager = sorted({internal(i.target) for i in imports_of("") if not i.lazy and internal(i.target) is not None})
    lazy = sorted({internal(i.target) for i in imports_of("") if i.lazy and internal(i.target) is not None})
    assert eager == ["_version"]
    assert lazy == ["magics"]


def test_nothing_imports_cli_or_magic_args_except_magics():
    bad = [
        fmt(name, imp)
        for name in MODULES
        for imp in imports_of(name)
        if (internal(imp.target) == "cli" and name != "cli")
        or (internal(imp.target) == "_cli_parser" and name not in ("cli", "_cli_parser"))
        or (internal(imp.target) == "_magic_args" and name not in ("magics", "_magic_line", "_magic_grid", "_magic_args"))
        or (internal(imp.target) == "_magic_line" and name not in ("magics", "_magic_line"))
        or (internal(imp.target) == "_magic_grid" and name not in ("magics", "_magic_grid"))
    ]
    assert bad == []


# ---- the emulator is an independent implementation ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(m for m in MODULES if group(m) == "emulator"))
def test_emulator_imports_only_registry_and_version(name):
    bad = []
    for imp in imports_of(name):
        rel = internal(imp.target)
        if rel is None or group(rel) == "emulator":
            continue
        if rel not in ("_registry", "_version", "_sqlite"):
            bad.append(fmt(name, imp))
    assert bad == [], "the emulator must not share wire code with the client (_protocol/_client/_request/...)"


def test_the_emulator_package_root_imports_its_modules_only_for_type_checkers():
    # wanx_nb.emulator resolves its names lazily (module __getattr__): importing it, or building the
    # keyless client's in-process emulator, must not load uvicorn (only `emulator.server` needs it).
    tree = ast.parse(MODULES["emulator"].read_text(encoding="utf-8"))
    type_only = {
        n.lineno
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for n in ast.walk(block)
        if isinstance(n, (ast.Import, ast.ImportFrom))
    }
    eager = [fmt("emulator", i) for i in imports_of("emulator") if not i.lazy and i.lineno not in type_only]
    assert [e for e in eager if "wanx_nb.emulator." in e or top(e.split(" imports ")[1].split()[0]) in SERVER] == []


# ---- third-party direction --------------------------------------------------------------------------


def third_party(name: str) -> list[Import]:
    return [i for i in imports_of(name) if internal(i.target) is None]


@pytest.mark.parametrize("name", ["_client", *CLIENT_PARTS, "rendering"])
def test_client_and_rendering_never_import_ipython_or_widgets(name):
    assert [fmt(name, i) for i in third_party(name) if top(i.target) in UI] == []


@pytest.mark.parametrize("name", sorted(m for m, layer in LAYERS.items() if layer <= 5))
def test_core_imports_ipython_and_widgets_only_lazily(name):
    # L0-L5 serve the magics, the panel and the CLI alike: a kernel-only import at load time would break
    # `wanx-nb` in a plain shell and slow `import wanx_nb.<core>` down.
    assert [fmt(name, i) for i in third_party(name) if top(i.target) in UI and not i.lazy] == []


@pytest.mark.parametrize("name", sorted(m for m in MODULES if group(m) != "emulator"))
def test_only_the_emulator_imports_starlette_or_uvicorn(name):
    assert [fmt(name, i) for i in third_party(name) if top(i.target) in SERVER] == []


# _auth is the client's httpx.Auth (the key added at send time), split out so it stays small;
# the client's parts (_client_*) own its httpx clients, send through them and read their errors.
@pytest.mark.parametrize(
    "name", sorted(m for m in MODULES if group(m) != "emulator" and m not in ("_client", "_auth", *CLIENT_PARTS))
)
def test_only_the_client_and_the_emulator_import_httpx(name):
    assert [fmt(name, i) for i in third_party(name) if top(i.target) == "httpx"] == []


@pytest.mark.parametrize("name", sorted(m for m, layer in LAYERS.items() if layer <= 4))
def test_core_imports_pil_only_lazily(name):
    # `if TYPE_CHECKING:` blocks are module level in the AST but never run; they are allowed.
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    type_only = {
        n.lineno
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for n in ast.walk(block)
        if isinstance(n, (ast.Import, ast.ImportFrom))
    }
    bad = [
        fmt(name, i)
        for i in third_party(name)
        if top(i.target) == "PIL" and not i.lazy and i.lineno not in type_only
    ]
    assert bad == []
