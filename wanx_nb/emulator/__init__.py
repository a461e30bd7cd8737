"""An offline emulator of the DashScope text-to-image service.

It speaks the wire protocols of `shared/spec/dashscope-t2i-protocol.md` (the legacy task API) and
`shared/spec/dashscope-image-generation-2026.md` (the messages-based sync and async endpoints):
create, query, cancel and list tasks, upload policies and an OSS-like upload sink, and signed result
image URLs, with the real limits, state progression, error bodies and failure modes. It is the
default backend when no API key is set, and the test double for the client.

Layout (moto's split, one job per module):
- `_settings` the knobs; `_routes` paths, route names and the request log; `_errors` the real error codes;
- `_backend` the state under one lock, using `_rules` (request bodies and size rules), `_tasks` (task
  state, scheduling, rate windows), `_oss` (uploads and URL signing), `_rewrite` (prompt rewriting),
  `_images` (placeholder PNGs), `_clock` (service times, the fake clock);
- `_faults` scripted faults as data, `_fault_responses` what they do to an answer;
- `app` the Starlette app, `_views` the legacy task API's handlers, `_messages` the sync
  multimodal-generation and async image-generation endpoints; `_transport` the in-process httpx transport;
  `_emulator` the `Emulator` facade; `server` loopback HTTP (uvicorn).

Names load lazily: `import wanx_nb.emulator` imports nothing heavy, and a keyless client (which
uses `default_emulator()` in-process) never loads uvicorn, only `server` does.

It imports nothing from wanx_nb except `_registry` and `_version`: an independent implementation
of the wire contract catches client bugs that a shared one would hide.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._clock import FakeClock
    from ._emulator import Emulator, default_emulator
    from ._faults import Fault
    from ._routes import ROUTES, LoggedRequest
    from ._settings import EmulatorSettings
    from ._tasks import Task
    from ._transport import EMULATOR_BASE_URL, EmulatorTransport
    from .app import EMULATOR_HEADER, create_app
    from .server import RunningServer, running_server, serve

# Public name -> the submodule defining it.
_WHERE: dict[str, str] = {
    "EMULATOR_BASE_URL": "._transport",
    "EMULATOR_HEADER": ".app",
    "Emulator": "._emulator",
    "EmulatorSettings": "._settings",
    "EmulatorTransport": "._transport",
    "FakeClock": "._clock",
    "Fault": "._faults",
    "LoggedRequest": "._routes",
    "ROUTES": "._routes",
    "RunningServer": ".server",
    "Task": "._tasks",
    "create_app": ".app",
    "default_emulator": "._emulator",
    "running_server": ".server",
    "serve": ".server",
}

__all__ = [
    "EMULATOR_BASE_URL",
    "EMULATOR_HEADER",
    "Emulator",
    "EmulatorSettings",
    "EmulatorTransport",
    "FakeClock",
    "Fault",
    "LoggedRequest",
    "ROUTES",
    "RunningServer",
    "Task",
    "create_app",
    "default_emulator",
    "running_server",
    "serve",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
