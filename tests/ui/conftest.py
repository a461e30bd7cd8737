"""Fixtures for the browser tests: a throwaway JupyterLab server and a headless Debian Chromium.

Recipe: /work/shared/notes/toolchain.md §3. Debian's /usr/bin/chromium is driven by the `playwright`
Python package; `playwright install` is never run (its browser download cannot work here).

Isolation: every test gets its own server, root dir, HOME, Jupyter/IPython dirs and wanx store, on a
free loopback port, so it neither sees nor leaves state (sessions outlive the browser: a reused
server would reuse the kernel). The server env has no DASHSCOPE_* / WANX_NB_* settings, so the
kernel's session uses the in-process emulator and nothing is billed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NOTEBOOK_NAME = "panel_ui.ipynb"
SERVER_START_TIMEOUT = 60.0  # s; about 1.5 s on a quiet machine
# The "get notified about official Jupyter news?" toast covers the bottom right of the notebook.
NOTIFICATION_SETTINGS = {"fetchNews": "false", "checkForUpdates": False}


def missing_prerequisite() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (Debian's chromium: `make chromium` or apt-get install chromium)"
    for module, extra in (("playwright.sync_api", "playwright"), ("jupyterlab", "jupyterlab")):
        try:
            __import__(module)
        except ImportError:
            return f"{extra} is not installed (pip install -e '.[ui]'; never `playwright install`)"
    return None


# ---- the notebook -----------------------------------------------------------------------------------


def build_notebook(path: Path) -> Path:
    """The small notebook the test drives: load the extension, show a Panel."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(
        cells=[
            new_code_cell("%load_ext wanx_nb"),
            new_code_cell("import wanx_nb\npanel = wanx_nb.Panel()\npanel"),
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    nbformat.write(nb, str(path))
    return path


# ---- the JupyterLab server --------------------------------------------------------------------------


@dataclass
class LabServer:
    url: str  # http://127.0.0.1:PORT
    root: Path  # the server's root dir (holds the notebook)
    notebook: str  # the notebook's path relative to root
    store: Path  # WANX_NB_STORE of the kernel
    log: Path  # the server's stdout+stderr
    proc: subprocess.Popen[bytes]

    def notebook_url(self) -> str:
        return f"{self.url}/lab/tree/{self.notebook}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no server log>"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_env(home: Path, store: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # No key, no base URL, no mode/budget: the kernel's session must pick the in-process emulator.
        if not k.startswith(("DASHSCOPE_", "WANX_NB_", "JUPYTER", "JPY_", "IPYTHON"))
    }
    jupyter = home / "jupyter"
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        JUPYTER_CONFIG_DIR=str(jupyter / "config"),
        JUPYTER_DATA_DIR=str(jupyter / "data"),
        JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(jupyter / "lab-user-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(jupyter / "lab-workspaces"),
        IPYTHONDIR=str(home / "ipython"),
        WANX_NB_STORE=str(store),
        PYTHONUNBUFFERED="1",
    )
    settings = Path(env["JUPYTERLAB_SETTINGS_DIR"]) / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps(NOTIFICATION_SETTINGS))
    return env


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Poll /api/status until 200; False when the server exited (e.g. the port was taken)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=2) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"JupyterLab at {url} did not answer /api/status within {timeout:.0f} s")


def _descendants(pid: int) -> list[int]:
    """PIDs of the processes below `pid` (Linux /proc; kernels run in their own sessions)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server (it shuts its kernels down); SIGKILL whatever it started that is left."""
    leftovers = {pid: _cmdline(pid) for pid in _descendants(proc.pid)}
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    for pid, cmdline in leftovers.items():  # normally none: the server stops its kernels on SIGTERM
        if cmdline is None or _cmdline(pid) != cmdline:  # gone (or the pid was reused)
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@contextlib.contextmanager
def running_lab(root: Path, work: Path, notebook: str) -> Iterator[LabServer]:
    """A JupyterLab server on `root` with its own HOME, settings and store under `work`; stopped after.

    `window.jupyterapp` is exposed so a test can run JupyterLab commands (e.g. change the theme).
    """
    home = work / "home"
    home.mkdir(exist_ok=True)
    store = work / "wanx_store"
    env = _server_env(home, store)
    log = work / "jupyterlab.log"

    proc = None
    for _attempt in range(3):  # the free port can be taken between probing and binding
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [
            sys.executable, "-m", "jupyterlab",
            "--no-browser", "--allow-root",
            "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
            "--IdentityProvider.token=", "--ServerApp.password=",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.open_browser=False",
            "--LabApp.news_url=None",
            "--LabApp.expose_app_in_browser=True",
        ]  # fmt: skip
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )  # fmt: skip
        try:
            ready = _wait_ready(url, proc, SERVER_START_TIMEOUT)
        except BaseException:
            _stop(proc)
            raise
        if ready:
            break
        _stop(proc)
    else:
        pytest.fail(f"JupyterLab did not start; log tail:\n{log.read_text(errors='replace')[-3000:]}")

    try:
        yield LabServer(url=url, root=root, notebook=notebook, store=store, log=log, proc=proc)
    finally:
        _stop(proc)


@pytest.fixture
def lab_server(tmp_path: Path) -> Iterator[LabServer]:
    root = tmp_path / "root"
    root.mkdir()
    build_notebook(root / NOTEBOOK_NAME)
    with running_lab(root, tmp_path, NOTEBOOK_NAME) as server:
        yield server


# ---- the browser ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    home = tmp_path_factory.mktemp("chromium-home")  # Chromium writes ~/.config, ~/.cache, crashpad
    env = {k: v for k, v in os.environ.items() if k != "HOME"} | {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
    }
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, env=env, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 1400})  # type: ignore[attr-defined]
    context.set_default_timeout(30_000)
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()
