"""The one bridge between blocking notebook code and the async client.

A single daemon thread runs one event loop for the whole process; the session's client lives on it.
- `run_sync(coro)` blocks the caller (a magic), and turns Ctrl-C / a kernel interrupt into a cancel.
- `submit(coro)` returns a concurrent Future at once (the panel: widgets stay responsive).
- `run_in_background(coro)` awaits it from any other loop (top-level `await` in a notebook).
Nobody calls `asyncio.run` inside Jupyter's running loop, and nest_asyncio is not needed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["get_loop", "run_in_background", "run_sync", "submit"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def get_loop() -> asyncio.AbstractEventLoop:
    """The background loop, started on first use."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="wanx_nb-loop", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def _on_background_loop() -> bool:
    try:
        return asyncio.get_running_loop() is _loop
    except RuntimeError:
        return False


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Schedule `coro` on the background loop; returns immediately."""
    return asyncio.run_coroutine_threadsafe(coro, get_loop())


async def run_in_background(coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro` on the background loop from whatever loop the caller runs on."""
    if _on_background_loop():
        return await coro
    return await asyncio.wrap_future(submit(coro))


def run_sync(
    coro: Coroutine[Any, Any, T],
    *,
    on_interrupt: Callable[[], str] | None = None,
    on_tick: Callable[[], None] | None = None,
    tick: float = 0.2,
) -> T:
    """Run `coro` on the background loop and block until it is done.

    `on_tick` runs on the calling thread every `tick` seconds (live progress displays). On
    KeyboardInterrupt the work is cancelled, `on_interrupt()` runs (it cancels PENDING tasks and says
    which are still running), and KeyboardInterrupt is re-raised with that message.
    """
    if _on_background_loop():
        raise RuntimeError("run_sync() cannot be called from the wanx_nb loop itself; await the coroutine")
    future = submit(coro)
    try:
        # wait() rather than result(timeout=): on 3.11+ a TimeoutError raised by the work itself would
        # be indistinguishable from the tick timing out.
        while not concurrent.futures.wait([future], timeout=tick if on_tick else None).done:
            if on_tick:
                on_tick()
        return future.result()
    except KeyboardInterrupt:
        future.cancel()
        message = on_interrupt() if on_interrupt else ""
        raise KeyboardInterrupt(message) from None
