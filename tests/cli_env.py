"""A command line's environment in tests: no key or service of the machine's, the store and the cwd in
the test's folder, and an emulator the test can watch as the keyless default."""

from wanx_nb.emulator import Emulator

# What a command line reads from the environment: cleared, so a test never reaches a real key or service.
ENV_CLEARED = ("DASHSCOPE_API_KEY", "DASHSCOPE_HTTP_BASE_URL", "DASHSCOPE_REGION", "DASHSCOPE_WORKSPACE_ID",
               "WANX_NB_MODE", "WANX_NB_BUDGET_YUAN")  # fmt: skip


def use_default_emulator(monkeypatch, tmp_path, emulator: Emulator) -> Emulator:
    """No key anywhere, the store and the cwd in tmp, and `emulator` as the keyless default one."""
    for name in ENV_CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANX_NB_STORE", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("wanx_nb.emulator._emulator._default", emulator)
    return emulator
