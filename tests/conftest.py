"""Fixtures shared by the tests of the session and the notebook surfaces."""

import pytest

from wanx_nb._session import Session
from wanx_nb.emulator import Emulator, EmulatorSettings


@pytest.fixture
def emulator():
    """An in-process emulator fast enough for tests (a wanx2.1-t2i-plus task takes ~30 ms)."""
    return Emulator(EmulatorSettings(time_scale=0.001))


@pytest.fixture
def session(tmp_path, emulator):
    """A session on that emulator with its own store."""
    return Session(store=tmp_path / "store", emulator=emulator)
