"""An offline emulator of the DashScope text-to-image service (the Tongyi Wanxiang async API).

It speaks the wire protocol of `shared/spec/dashscope-t2i-protocol.md`: create, query, cancel and
list tasks, upload policies and an OSS-like upload sink, and signed result image URLs, with the real
limits, state progression, error bodies and failure modes. It is the default backend when no API
key is set, and the test double for the client.

Layout (moto's split): `_settings` knobs, `_routes` paths and route names, `_errors` the real
error codes, `_backend` pure state and rules, `_images` PNG rendering, `app` HTTP translation,
`_transport` the in-process httpx transport, `_emulator` the `Emulator` facade, `server` loopback
HTTP.

It imports nothing from wanx_nb except `_registry` and `_version`: an independent implementation
of the wire contract catches client bugs that a shared one would hide.
"""

from ._backend import FakeClock, LoggedRequest, Task
from ._faults import Fault
from ._emulator import Emulator, default_emulator
from ._routes import ROUTES
from ._settings import EmulatorSettings
from ._transport import EMULATOR_BASE_URL, EmulatorTransport
from .app import EMULATOR_HEADER, create_app
from .server import RunningServer, running_server, serve

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
