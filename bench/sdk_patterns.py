"""The ways users really run a batch with the official `dashscope` SDK, as baselines for bench/batch.py.

Each pattern takes the emulator's base URL, an API key (its own account, so the patterns never share
limits) and the requests; it returns `{task_id: time.time() when the caller had the finished task}`,
after downloading every image (as the guide's sample code does). A create refused with 429 is retried
after 1 s, and so is a poll answered 429, as a user's loop would (not scaled: see bench/batch.py).

- `pool`: a 16-thread pool, each thread running `ImageSynthesis.call()` (its create, then its wait);
- `submit_all`: `async_call()` for every request, then `wait()` on each in turn;
- `loop`: one `call()` after another (the guide's sample code).

The SDK's wait sleeps 1, 1, 2, 2, 2, 4, 4, 4, 5... real seconds between polls. Against an emulator whose
tasks run at `time_scale` of their real durations, `scaled_sdk_sleeps(time_scale)` scales those sleeps
the same way (only inside the SDK's polling module), so the comparison is the SDK's schedule on tasks of
the real length, compressed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from wanx_nb._request import GenerationRequest

__all__ = ["PATTERNS", "scaled_sdk_sleeps"]

THREADS = 16
RETRY_429_AFTER = 1.0


@contextlib.contextmanager
def scaled_sdk_sleeps(time_scale: float) -> Iterator[None]:
    """Scale the sleeps of the SDK's `wait()` by `time_scale` (its clock readings stay real)."""
    from dashscope.client import base_api

    real = base_api.time
    base_api.time = SimpleNamespace(time=time.time, sleep=lambda s: time.sleep(s * time_scale))
    try:
        yield
    finally:
        base_api.time = real


def _setup(base_url: str) -> Any:
    import dashscope
    from dashscope import ImageSynthesis

    dashscope.base_http_api_url = base_url
    return ImageSynthesis


def _kwargs(request: GenerationRequest) -> dict[str, Any]:
    return {k: v for k, v in request.given().items() if k != "prompt"}


def _throttled(rsp: Any) -> bool:
    return getattr(rsp, "status_code", None) == 429


def _download_all(rsp: Any) -> None:
    import requests as http

    if rsp.status_code != 200 or rsp.output.task_status != "SUCCEEDED":
        raise SystemExit(f"sdk: {rsp.status_code} {rsp.code} {rsp.message} {rsp.output}")
    for item in rsp.output.results:
        http.get(item.url, timeout=30).raise_for_status()


def _create(synthesis: Any, api_key: str, request: GenerationRequest) -> Any:
    while True:
        rsp = synthesis.async_call(api_key=api_key, model=request.model, prompt=request.prompt, **_kwargs(request))
        if not _throttled(rsp):
            return rsp
        time.sleep(RETRY_429_AFTER)


def _wait(synthesis: Any, api_key: str, task: Any) -> Any:
    while True:
        rsp = synthesis.wait(task, api_key=api_key)
        if not _throttled(rsp):  # wait() hands a 429 on its poll back to the caller
            return rsp
        time.sleep(RETRY_429_AFTER)


def _call(synthesis: Any, api_key: str, request: GenerationRequest) -> tuple[str, float]:
    """What `ImageSynthesis.call()` does (`async_call` then `wait`), spelled out so that a 429 at either
    step can be retried: `call()` itself drops the task id when its wait gets a 429."""
    task = _create(synthesis, api_key, request)
    rsp = _wait(synthesis, api_key, task)
    seen = time.time()
    _download_all(rsp)
    return rsp.output.task_id, seen


def pool(base_url: str, api_key: str, requests: list[GenerationRequest]) -> dict[str, float]:
    synthesis = _setup(base_url)
    with concurrent.futures.ThreadPoolExecutor(THREADS) as executor:
        return dict(executor.map(lambda r: _call(synthesis, api_key, r), requests))


def submit_all(base_url: str, api_key: str, requests: list[GenerationRequest]) -> dict[str, float]:
    synthesis = _setup(base_url)
    created = [_create(synthesis, api_key, r) for r in requests]
    seen = {}
    for task in created:
        rsp = _wait(synthesis, api_key, task)
        seen[rsp.output.task_id] = time.time()
        _download_all(rsp)
    return seen


def loop(base_url: str, api_key: str, requests: list[GenerationRequest]) -> dict[str, float]:
    synthesis = _setup(base_url)
    return dict(_call(synthesis, api_key, r) for r in requests)


PATTERNS = {
    "SDK 16-thread pool of call()": pool,
    "SDK async_call all, then wait": submit_all,
    "SDK sequential call() loop": loop,
}
