"""`%load_ext wanx_nb` stays cheap: no HTTP stack, no PIL, no widgets, no client, no emulator.

Each check runs in a fresh interpreter, so modules other tests imported cannot hide a regression.
"""

import json
import os
import subprocess
import sys
import textwrap

HEAVY = [
    "httpx",
    "PIL",
    "ipywidgets",
    "starlette",
    "uvicorn",
    "wanx_nb._client",
    "wanx_nb.emulator",
    "wanx_nb.panel",
    "wanx_nb.comparison",
]


def run_fresh(code, tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), IPYTHONDIR=str(tmp_path / "ipython"))
    env.pop("DASHSCOPE_API_KEY", None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_and_load_ext_import_nothing_heavy(tmp_path):
    loaded = run_fresh(
        f"""
        import json, sys
        heavy = {HEAVY!r}
        import wanx_nb
        after_import = [m for m in heavy + ["IPython"] if m in sys.modules]
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "wanx_nb")
        registered = "wanx" in shell.magics_manager.magics["cell"] and "wanx" in shell.magics_manager.magics["line"]
        after_load = [m for m in heavy if m in sys.modules]
        print(json.dumps({{"import": after_import, "load": after_load, "registered": registered}}))
        """,
        tmp_path,
    )
    assert loaded == {"import": [], "load": [], "registered": True}


def test_rendering_imports_no_ipython_widgets_or_pil(tmp_path):
    loaded = run_fresh(
        """
        import json, sys
        import wanx_nb.rendering
        print(json.dumps([m for m in ("IPython", "ipywidgets", "PIL", "httpx") if m in sys.modules]))
        """,
        tmp_path,
    )
    assert loaded == []


def test_the_extension_registers_exactly_wanx_as_line_and_cell_magic():
    # The line subcommands live in a mixin: none of its methods may become a magic of its own.
    from wanx_nb.magics import WanxMagics

    assert {kind: set(names) for kind, names in WanxMagics.magics.items()} == {"line": {"wanx"}, "cell": {"wanx"}}
