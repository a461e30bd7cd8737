"""Names and defaults shared across the package: environment variables, timeouts, retries, polling.

The WANX_NB_* variables are read here only (`env_mode`, `env_budget_yuan`, `env_store`), so a bad value
is one clear ConfigurationError naming the variable, wherever it is first read.
"""

import math
import os

from ._exceptions import ConfigurationError

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_REGION",
    "DEFAULT_STORE",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WAIT_TIMEOUT",
    "DOWNLOADS_AT_ONCE",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "ENV_BUDGET",
    "ENV_MODE",
    "ENV_REGION",
    "ENV_STORE",
    "ENV_WORKSPACE",
    "MODES",
    "POLL_MAX_DELAY",
    "POLL_MIN_DELAY",
    "QUERY_QPS",
    "RETRY_AFTER_CAP",
    "RETRY_INITIAL_DELAY",
    "RETRY_MAX_DELAY",
    "TASK_TTL_SECONDS",
    "env_budget_yuan",
    "env_mode",
    "env_store",
    "uses_emulator",
]

ENV_API_KEY = "DASHSCOPE_API_KEY"
ENV_BASE_URL = "DASHSCOPE_HTTP_BASE_URL"  # the official SDK's name, so one setting serves both
ENV_REGION = "DASHSCOPE_REGION"
ENV_WORKSPACE = "DASHSCOPE_WORKSPACE_ID"
ENV_MODE = "WANX_NB_MODE"
ENV_STORE = "WANX_NB_STORE"
ENV_BUDGET = "WANX_NB_BUDGET_YUAN"

MODES = ("live", "record", "replay")
DEFAULT_STORE = "wanx_store"

DEFAULT_REGION = "beijing"
DEFAULT_TIMEOUT = 60.0  # seconds for one HTTP exchange
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_WAIT_TIMEOUT = 600.0  # every wait has a deadline; tasks usually take 1-2 minutes

RETRY_INITIAL_DELAY = 0.5
RETRY_MAX_DELAY = 8.0
RETRY_AFTER_CAP = 60.0  # a Retry-After longer than this is not worth waiting for inside a cell

# GET /tasks/{id} is limited to 20 QPS per account, shared by all its users; we keep well below it.
QUERY_QPS = 10.0
# Images a client receives at once. Each is held two or three times while it arrives and is checked
# (a 1024x1024 PNG is about 2 MB, a 4K one 20 MB or more), so this bounds a batch's memory whatever
# its size; four downloads still outpace the tasks they follow.
DOWNLOADS_AT_ONCE = 4
POLL_MIN_DELAY = 0.25
POLL_MAX_DELAY = 10.0  # the docs recommend polling every 10 s

TASK_TTL_SECONDS = 24 * 3600  # task records and result URLs live 24 h


def uses_emulator(api_key: str | None, base_url: str | None, *, transport: object = None, emulator: object = None) -> bool:
    """Whether a client built with these arguments serves from the in-process emulator.

    It does when given one, or when nothing points elsewhere: no key and no base URL (arguments or
    environment) and no transport. The client and the session both decide by this one rule.
    """
    if emulator is not None:
        return True
    key = api_key or os.environ.get(ENV_API_KEY)
    base = base_url or os.environ.get(ENV_BASE_URL)
    return not key and not base and transport is None


def env_mode() -> str | None:
    """WANX_NB_MODE (live, record or replay; any case), or None when it is not set."""
    raw = os.environ.get(ENV_MODE, "").strip()
    if not raw:
        return None
    if raw.lower() not in MODES:
        raise ConfigurationError(f"{ENV_MODE}={raw!r} is not a mode: use one of {', '.join(MODES)} (or unset it)")
    return raw.lower()


def env_budget_yuan() -> float | None:
    """WANX_NB_BUDGET_YUAN as a number of yuan (0 means no budget), or None when it is not set."""
    raw = os.environ.get(ENV_BUDGET, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ConfigurationError(
            f"{ENV_BUDGET}={raw!r} is not a budget: use a number of yuan such as 5 or 2.50 (0 or unset: no budget)"
        )
    return value


def env_store() -> str:
    """WANX_NB_STORE, the store folder (default ./wanx_store)."""
    raw = os.environ.get(ENV_STORE, "")
    if "\x00" in raw:
        raise ConfigurationError(f"{ENV_STORE} holds a NUL character; set it to a folder path")
    return raw.strip() or DEFAULT_STORE
