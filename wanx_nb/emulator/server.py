"""Serve the emulator over real HTTP on the loopback interface (uvicorn)."""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import uvicorn

from ._emulator import Emulator
from ._settings import EmulatorSettings

__all__ = ["RunningServer", "loopback_socket", "running_server", "serve"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class RunningServer:
    """A live emulator: point a client at `base_url`; inspect or steer it through `emulator`."""

    base_url: str
    origin: str
    emulator: Emulator


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: EmulatorSettings | None = None,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the emulator until interrupted. Only loopback addresses: it has no real authentication.

    `on_ready(base_url)` is called once the port is bound (so a "use it at ..." line is never printed
    for a port another program holds). A port in use is an OSError that says so.
    """
    if host not in _LOOPBACK:
        raise ValueError(f"the emulator binds loopback only ({', '.join(_LOOPBACK)}), not {host!r}")
    sock = loopback_socket(host, port)
    address = f"[{host}]" if ":" in host else host
    if on_ready is not None:
        on_ready(f"http://{address}:{sock.getsockname()[1]}/api/v1")
    try:
        uvicorn.Server(uvicorn.Config(Emulator(settings).app, log_level="info", lifespan="off")).run(sockets=[sock])
    finally:
        sock.close()


def loopback_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host:port` (0: a free port), or an OSError naming the port when it is taken.

    IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets made with it (else ~44 ms per keep-alive request).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise OSError(exc.errno, f"port {port} is in use (another emulator?); pick another with --port") from None
        raise
    return sock


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
    sock = loopback_socket("127.0.0.1", port)  # bound first: port 0 resolves to a known port before uvicorn starts
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
