"""Fixtures: an emulator on a fake clock with time_scale 1 (durations equal the registry's typical
seconds, so expected times are exact), an httpx client wired to it in-process, and request helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from wanx_nb.emulator import Emulator, EmulatorSettings

CREATE = "/services/aigc/text2image/image-synthesis"
ASYNC = {"X-DashScope-Async": "enable"}

Submit = Callable[..., Awaitable[httpx.Response]]


@pytest.fixture
def settings() -> EmulatorSettings:
    return EmulatorSettings(clock="fake", time_scale=1.0)


@pytest.fixture
def emulator(settings: EmulatorSettings) -> Emulator:
    return Emulator(settings)


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with emulator.client(api_key="sk-test") as http:
        yield http


@pytest.fixture
def submit(client: httpx.AsyncClient) -> Submit:
    """POST a create request: submit(model, prompt, input={...extra}, headers={...}, **parameters)."""

    async def submit(
        model: str = "wanx2.1-t2i-turbo",
        prompt: str | None = "a red fox in the snow",
        *,
        input: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        http: httpx.AsyncClient | None = None,
        **parameters: Any,
    ) -> httpx.Response:
        body_input = {} if prompt is None else {"prompt": prompt}
        body_input.update(input or {})
        body = {"model": model, "input": body_input, "parameters": parameters}
        return await (http or client).post(CREATE, json=body, headers={**ASYNC, **(headers or {})})

    return submit


@pytest.fixture
def query(client: httpx.AsyncClient) -> Callable[[str], Awaitable[dict[str, Any]]]:
    async def query(task_id: str) -> dict[str, Any]:
        response = await client.get(f"/tasks/{task_id}")
        assert response.status_code == 200, response.text
        return response.json()

    return query


def task_id_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["output"]["task_id"]
