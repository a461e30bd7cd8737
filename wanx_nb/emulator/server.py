"""Serve the emulator over real HTTP on the loopback interface (uvicorn)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from ._emulator import Emulator
from ._settings import EmulatorSettings

__all__ = ["RunningServer", "running_server", "serve"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class RunningServer:
    """A live emulator: point a client at `base_url`; inspect or steer it through `emulator`."""

    base_url: str
    origin: str
    emulator: Emulator


def serve(host: str = "127.0.0.1", port: int = 8000, settings: EmulatorSettings | None = None) -> None:
    """Run the emulator until interrupted. Only loopback addresses: it has no real authentication."""
    if host not in _LOOPBACK:
        raise ValueError(f"the emulator binds loopback only ({', '.join(_LOOPBACK)}), not {host!r}")
    uvicorn.run(Emulator(settings).app, host=host, port=port, log_level="info", lifespan="off")


@contextlib.contextmanager
def running_server(
    settings: EmulatorSettings | None = None, port: int = 0, *, emulator: Emulator | None = None
) -> Iterator[RunningServer]:
    """Serve an emulator on 127.0.0.1 (a free port by default) in a background thread.

    Example:
        with running_server(EmulatorSettings(time_scale=0.01)) as server:
            httpx.get(f"{server.base_url}/tasks/abc", headers={"Authorization": "Bearer sk-1"})
    """
    emulator = emulator or Emulator(settings)
    # Bind first so port 0 resolves to a known port before uvicorn starts.
    # IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets made with it (else ~44 ms per keep-alive request).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    actual_port = sock.getsockname()[1]
    config = uvicorn.Config(emulator.app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"wanx-emulator-{actual_port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the emulator server on 127.0.0.1:{actual_port} did not start")
            time.sleep(0.005)
        origin = f"http://127.0.0.1:{actual_port}"
        yield RunningServer(base_url=f"{origin}/api/v1", origin=origin, emulator=emulator)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
