"""wanx_nb: Tongyi Wanxiang text-to-image in Jupyter.

`%load_ext wanx_nb` registers `%%wanx` and `%wanx`. Importing the package is cheap: the client, the
widgets, the emulator and PIL load on first use (module `__getattr__` below).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncWanxClient",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ConfigurationError",
    "ContentInspectionError",
    "DownloadError",
    "GenerationRequest",
    "GenerationResult",
    "ImageExpiredError",
    "ImageResult",
    "InvalidImageError",
    "MODELS",
    "NotFoundError",
    "Panel",
    "PermissionDeniedError",
    "Phase",
    "RateLimitError",
    "Reconciliation",
    "ReplayMissError",
    "ReuseUnfinishedError",
    "Run",
    "RunInterruptedError",
    "RunTimeoutError",
    "ServerError",
    "Session",
    "Store",
    "StoreError",
    "SubmitOutcomeUnknownError",
    "SyncOutcomeUnknownError",
    "Task",
    "TaskCanceledError",
    "TaskError",
    "TaskFailedError",
    "TaskNotCreatedError",
    "TaskStatus",
    "TaskUnfinishedError",
    "TaskUnknownError",
    "UnsupportedOperationError",
    "ValidationError",
    "WaitTimeoutError",
    "WanxClient",
    "WanxError",
    "__version__",
    "compare",
    "get_session",
    "grid",
    "history",
    "load_ipython_extension",
    "read_png_provenance",
    "unload_ipython_extension",
]

# name -> module that defines it; imported on first attribute access.
_LAZY = {
    "AsyncWanxClient": "._client",
    "WanxClient": "._client_sync",
    "GenerationRequest": "._request",
    "GenerationResult": "._models",
    "ImageResult": "._models",
    "Task": "._models",
    "TaskStatus": "._models",
    "MODELS": "._registry",
    "Session": "._session",
    "Run": "._run",
    "Phase": "._run",
    "get_session": "._session",
    "Store": "._store",
    "read_png_provenance": "._store",
    "history": "._history",
    "Panel": ".panel",
    "compare": ".comparison",
    "grid": ".comparison",
    # Every error, so callers write `except wanx_nb.SubmitOutcomeUnknownError` (see _exceptions' tree).
    "APIConnectionError": "._exceptions",
    "APIError": "._exceptions",
    "APIStatusError": "._exceptions",
    "APITimeoutError": "._exceptions",
    "AuthenticationError": "._exceptions",
    "BadRequestError": "._exceptions",
    "BudgetExceededError": "._exceptions",
    "ConfigurationError": "._exceptions",
    "ContentInspectionError": "._exceptions",
    "DownloadError": "._exceptions",
    "ImageExpiredError": "._exceptions",
    "InvalidImageError": "._exceptions",
    "NotFoundError": "._exceptions",
    "PermissionDeniedError": "._exceptions",
    "RateLimitError": "._exceptions",
    "ReplayMissError": "._exceptions",
    "ReuseUnfinishedError": "._exceptions",
    "ServerError": "._exceptions",
    "SubmitOutcomeUnknownError": "._exceptions",
    "SyncOutcomeUnknownError": "._exceptions",
    "TaskCanceledError": "._exceptions",
    "TaskError": "._exceptions",
    "TaskFailedError": "._exceptions",
    "TaskUnknownError": "._exceptions",
    "UnsupportedOperationError": "._exceptions",
    "ValidationError": "._exceptions",
    "WaitTimeoutError": "._exceptions",
    "TaskUnfinishedError": "._exceptions",
    "TaskNotCreatedError": "._exceptions",
    "StoreError": "._exceptions",
    "RunTimeoutError": "._exceptions",
    "RunInterruptedError": "._exceptions",
    "WanxError": "._exceptions",
    "Reconciliation": "._reconcile",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wanx_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """`%load_ext wanx_nb`: register the magics (the heavy modules load on first use)."""
    from .magics import WanxMagics

    ipython.register_magics(WanxMagics)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """`%unload_ext wanx_nb`: nothing to undo beyond IPython's own bookkeeping."""
