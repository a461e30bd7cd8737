"""`Emulator`: one emulated service (settings, clock, state) with its ASGI app and test helpers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

import httpx
from starlette.applications import Starlette

from ._backend import Backend
from ._clock import FakeClock
from ._faults import Fault
from ._persist import default_state_path
from ._routes import LoggedRequest
from ._settings import EmulatorSettings, time_scale_from_environment
from ._tasks import Task
from ._transport import EMULATOR_BASE_URL, EmulatorTransport
from .app import create_app

__all__ = ["Emulator", "default_emulator"]


class Emulator:
    """An offline DashScope text-to-image service.

    Parameters:
        settings: the knobs (see `EmulatorSettings`); defaults play the real service, faster.
        clock: a callable giving epoch seconds; overrides `settings.clock`.
        sleep: how an answer waits out `settings.latency` and delay faults (asyncio.sleep).

    Example:
        emu = Emulator(EmulatorSettings(clock="fake"))
        async with emu.client() as http:
            created = (await http.post("/services/aigc/text2image/image-synthesis", ...)).json()
        emu.advance(60)
    """

    def __init__(
        self,
        settings: EmulatorSettings | None = None,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.backend = Backend(settings, clock, sleep)
        self.settings = self.backend.settings
        self.app: Starlette = create_app(backend=self.backend)

    @property
    def clock(self) -> Callable[[], float]:
        return self.backend.clock

    def now(self) -> float:
        return self.backend.clock()

    def transport(self) -> EmulatorTransport:
        """A new in-process httpx transport to this emulator (use with base URL `EMULATOR_BASE_URL`)."""
        return EmulatorTransport(self.app, self.backend)

    def client(self, api_key: str | None = "sk-emulator", **kwargs: Any) -> httpx.AsyncClient:
        """An httpx.AsyncClient wired to this emulator, sending `api_key` as a Bearer token."""
        headers = dict(kwargs.pop("headers", {}))
        if api_key is not None:
            headers.setdefault("Authorization", f"Bearer {api_key}")
        return httpx.AsyncClient(transport=self.transport(), base_url=EMULATOR_BASE_URL, headers=headers, **kwargs)

    def advance(self, seconds: float) -> float:
        """Move the fake clock forward; tasks progress as if that much time had passed."""
        if not isinstance(self.backend.clock, FakeClock):
            raise RuntimeError(
                "advance() needs the emulator's fake clock: use Emulator(EmulatorSettings(clock='fake')); "
                "a clock you pass in yourself is yours to move"
            )
        return self.backend.clock.advance(seconds)

    def script(self, route: str, *faults: Fault) -> None:
        """Queue `faults` for the next requests on `route` ("create": either async create,
        "generate": the sync call, "query", "cancel", "list", "policy", "upload", "image"), one per
        request, in order. Every kind, with an example, is in
        the `Fault` docstring; a fault that cannot act on `route` is refused with a ValueError."""
        self.backend.script(route, faults)

    @property
    def tasks(self) -> Mapping[str, Task]:
        """Every task the emulator holds, by id (a live, read-only view)."""
        return MappingProxyType(self.backend.tasks)

    @property
    def request_log(self) -> list[LoggedRequest]:
        """(method, path, headers, json) of every request the server received, oldest first."""
        with self.backend._lock:
            return list(self.backend.request_log)

    def requests(self, route: str) -> list[LoggedRequest]:
        """The logged requests on one route, e.g. `emu.requests("create")`."""
        return [r for r in self.request_log if r.route == route]

    def reset(self) -> None:
        """Forget all tasks, uploads, logs and scripts; the fake clock and the seeded choices start over."""
        self.backend.reset()

    def __repr__(self) -> str:
        clock = "fake" if isinstance(self.backend.clock, FakeClock) else "real"
        return f"<Emulator seed={self.settings.seed} clock={clock} tasks={len(self.backend.tasks)}>"


_default: Emulator | None = None
_default_lock = threading.Lock()


def default_emulator() -> Emulator:
    """The process-wide emulator with default settings (the backend used when no API key is set).

    Its tasks are kept in a file (`default_state_path`), so after a kernel restart `%wanx resume`
    finds them as it would on the service; `$WANX_NB_EMULATOR_TIME_SCALE` sets how fast they run."""
    global _default
    with _default_lock:
        if _default is None:
            state = default_state_path()
            scale = time_scale_from_environment()
            _default = Emulator(
                EmulatorSettings(
                    state_path=None if state is None else str(state),
                    time_scale=EmulatorSettings.time_scale if scale is None else scale,
                )
            )
        return _default
