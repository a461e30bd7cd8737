"""Fixtures shared by the tests of the session and the notebook surfaces."""

import os
import shutil
import tempfile

import pytest

from wanx_nb._session import Session
from wanx_nb.emulator import Emulator, EmulatorSettings

from cli_env import use_default_emulator


_STATE_DIR = tempfile.mkdtemp(prefix="wanx-nb-emulator-state-")


def pytest_configure(config):
    # The keyless default emulator keeps its tasks in a file (the user's cache by default): this run,
    # and the notebook kernels it starts, keep theirs in a file of their own.
    os.environ["WANX_NB_EMULATOR_STATE"] = os.path.join(_STATE_DIR, "emulator-tasks.sqlite")
    # Its tasks at a tenth of its default durations (the notebooks' grids still wait on the real submit
    # rates): the outputs are the same, the suite a few dozen seconds shorter.
    os.environ.setdefault("WANX_NB_EMULATOR_TIME_SCALE", "0.005")


def pytest_unconfigure(config):
    shutil.rmtree(_STATE_DIR, ignore_errors=True)


@pytest.fixture
def cli_emulator(monkeypatch, tmp_path):
    """The CLI's (and any keyless session's) default emulator, fast, one the test can watch."""
    return use_default_emulator(monkeypatch, tmp_path, Emulator(EmulatorSettings(time_scale=0.001)))


@pytest.fixture
def emulator():
    """An in-process emulator fast enough for tests (a wanx2.1-t2i-plus task takes ~30 ms)."""
    return Emulator(EmulatorSettings(time_scale=0.001))


@pytest.fixture
def session(tmp_path, emulator):
    """A session on that emulator with its own store."""
    return Session(store=tmp_path / "store", emulator=emulator)


@pytest.fixture
def ipython_shell(tmp_path_factory):
    """The process's InteractiveShell (IPython keeps one); when made here it writes nothing to ~/.ipython."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    if InteractiveShell.initialized():
        return InteractiveShell.instance()
    config = Config()
    config.HistoryManager.enabled = False
    return InteractiveShell.instance(config=config, ipython_dir=str(tmp_path_factory.mktemp("ipython")))


@pytest.fixture
def wanx_shell(ipython_shell, tmp_path, monkeypatch):
    """That shell with `%load_ext wanx_nb` and a fresh WanxMagics (no %config left by an earlier test),
    in the test's folder, with no DASHSCOPE_* / WANX_NB_* settings. Names a test adds to the user
    namespace, and the session it sets, are dropped afterwards."""
    from wanx_nb._session import set_session
    from wanx_nb.magics import WanxMagics

    monkeypatch.chdir(tmp_path)
    for name in ("DASHSCOPE_API_KEY", "DASHSCOPE_HTTP_BASE_URL", "WANX_NB_MODE", "WANX_NB_BUDGET_YUAN"):
        monkeypatch.delenv(name, raising=False)
    ip = ipython_shell
    ip.run_line_magic("load_ext", "wanx_nb")
    ip.config.pop("WanxMagics", None)
    ip.configurables = [c for c in ip.configurables if not isinstance(c, WanxMagics)]
    ip.register_magics(WanxMagics)
    names = set(ip.user_ns)
    yield ip
    for name in set(ip.user_ns) - names:
        ip.user_ns.pop(name, None)
    set_session(None)
