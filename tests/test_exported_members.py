"""The public surface is explicit: every module's `__all__` is sorted and real, and `wanx_nb`'s lazy
re-exports resolve without importing anything heavy up front (httpx's `test_exported_members.py`).

Sorting rule: plain case-sensitive `sorted()` (ASCII order: UPPER_CASE, then CamelCase, then
lower_case, with `_` between upper and lower case), as `wanx_nb.__all__` and most modules already do.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
import textwrap

import pytest

import wanx_nb

HEAVY = ["IPython", "ipywidgets", "httpx", "PIL", "starlette", "uvicorn"]

MODULES = sorted(
    ["wanx_nb"] + [m.name for m in pkgutil.walk_packages(wanx_nb.__path__, "wanx_nb.")]
)

# `_version` is the one-line `__version__ = "..."` that setuptools reads; it has no `__all__`.
WITHOUT_ALL = {"wanx_nb._version"}

UNSORTED: dict[str, str] = {}  # modules allowed to break the rule (none)


def _sorted_param(name):
    if name in UNSORTED:
        return pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=f"{name}.__all__: {UNSORTED[name]}"))
    return name


@pytest.mark.parametrize("name", [m for m in MODULES if m not in WITHOUT_ALL])
def test_module_declares_all_without_duplicates(name):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, (list, tuple)), f"{name} has no __all__"
    assert all(isinstance(n, str) for n in exported)
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"


@pytest.mark.parametrize("name", [_sorted_param(m) for m in MODULES if m not in WITHOUT_ALL])
def test_all_is_sorted(name):
    exported = list(importlib.import_module(name).__all__)
    assert exported == sorted(exported)


# Packages that resolve their names lazily (module __getattr__); hasattr checks them elsewhere.
LAZY_PACKAGES = ("wanx_nb", "wanx_nb.emulator")


@pytest.mark.parametrize("name", [m for m in MODULES if m not in WITHOUT_ALL and m not in LAZY_PACKAGES])
def test_all_names_only_things_that_exist(name):
    module = importlib.import_module(name)
    missing = [n for n in module.__all__ if n not in vars(module)]
    assert missing == []


def test_version_module_has_only_the_version():
    module = importlib.import_module("wanx_nb._version")
    assert [n for n in vars(module) if not n.startswith("__")] == []
    assert isinstance(module.__version__, str) and module.__version__ == wanx_nb.__version__


# ---- the package's lazy re-exports --------------------------------------------------------------------

EAGER = {"__version__", "load_ipython_extension", "unload_ipython_extension"}


def test_package_all_is_exactly_the_lazy_table_plus_the_eager_names():
    assert set(wanx_nb.__all__) == set(wanx_nb._LAZY) | EAGER
    assert set(dir(wanx_nb)) >= set(wanx_nb.__all__)


@pytest.mark.parametrize("name", sorted(wanx_nb._LAZY))
def test_lazy_name_is_public_in_its_defining_module(name):
    module = importlib.import_module(wanx_nb._LAZY[name], "wanx_nb")
    assert name in module.__all__


def run_fresh(code: str, tmp_path) -> object:
    """Run `code` in a fresh interpreter (modules imported by other tests cannot mask a regression)."""
    env = dict(os.environ, HOME=str(tmp_path), IPYTHONDIR=str(tmp_path / "ipython"))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_public_name_resolves_through_the_lazy_getattr(tmp_path):
    result = run_fresh(
        """
        import importlib, json
        import wanx_nb
        bad = []
        for name in wanx_nb.__all__:
            was_cached = name in vars(wanx_nb)
            value = getattr(wanx_nb, name)
            if name in wanx_nb._LAZY:
                if was_cached:
                    bad.append(f"{name}: bound before first access")
                origin = getattr(importlib.import_module(wanx_nb._LAZY[name], "wanx_nb"), name)
                if value is not origin:
                    bad.append(f"{name}: not the object from {wanx_nb._LAZY[name]}")
                if vars(wanx_nb).get(name) is not value:
                    bad.append(f"{name}: not cached after first access")
        try:
            wanx_nb.no_such_name
            bad.append("no AttributeError for an unknown name")
        except AttributeError as exc:
            if "no_such_name" not in str(exc):
                bad.append(f"unhelpful AttributeError: {exc}")
        print(json.dumps(bad))
        """,
        tmp_path,
    )
    assert result == []


def test_import_wanx_nb_imports_nothing_heavy(tmp_path):
    loaded = run_fresh(
        f"""
        import json, sys
        import wanx_nb
        print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
        """,
        tmp_path,
    )
    assert loaded == []


@pytest.mark.parametrize("name", ["GenerationRequest", "GenerationResult", "MODELS", "Session", "Store", "history"])
def test_core_names_import_nothing_heavy(name, tmp_path):
    # The session, store and models are usable from a plain script: the client (httpx) loads when the first
    # request is sent, the widgets only with Panel.
    loaded = run_fresh(
        f"""
        import json, sys
        import wanx_nb
        wanx_nb.{name}
        print(json.dumps([m for m in {HEAVY + ["wanx_nb._client", "wanx_nb.emulator"]!r} if m in sys.modules]))
        """,
        tmp_path,
    )
    assert loaded == []


# ---- errors are part of the API --------------------------------------------------------------------


def _error_classes() -> list[str]:
    from wanx_nb import _exceptions

    return sorted(
        name for name, value in vars(_exceptions).items()
        if isinstance(value, type) and issubclass(value, _exceptions.WanxError) and not name.startswith("_")
    )


def test_every_error_class_is_exported_from_the_package():
    from wanx_nb import _exceptions

    missing = [n for n in _error_classes() if n not in wanx_nb.__all__ or wanx_nb._LAZY.get(n) != "._exceptions"]
    assert missing == []
    assert all(getattr(wanx_nb, n) is getattr(_exceptions, n) for n in _error_classes())


def test_catching_an_error_imports_nothing_heavy(tmp_path):
    loaded = run_fresh(
        f"""
        import json, sys
        import wanx_nb
        try:
            raise wanx_nb.SubmitOutcomeUnknownError("wanx-v1", None, sent_after=__import__("datetime").datetime.now(),
                                                    sent_before=__import__("datetime").datetime.now(), cause="test")
        except wanx_nb.APIError:
            pass
        print(json.dumps([m for m in {HEAVY + ["wanx_nb._client", "wanx_nb.emulator"]!r} if m in sys.modules]))
        """,
        tmp_path,
    )
    assert loaded == []
