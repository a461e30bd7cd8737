"""Scripted faults, fault rates, network drops through EmulatorTransport, settings and helpers."""

from __future__ import annotations


import httpx
import pytest

from wanx_nb.emulator import Emulator, EmulatorSettings, Fault, default_emulator

from .conftest import ASYNC, CREATE, task_id_of
from .test_emulator_create import assert_error


async def test_scripted_status_faults_are_consumed_in_order(submit, emulator):
    emulator.script("create", Fault.status(429, retry_after=3), Fault.status(503))
    first = await submit()
    assert_error(first, 429, "Throttling.RateQuota", "Requests rate limit exceeded")
    assert first.headers["Retry-After"] == "3"
    assert_error(await submit(), 503, "ServiceUnavailable")
    assert (await submit()).status_code == 200
    assert len(emulator.tasks) == 1  # refused requests created nothing
    assert len(emulator.requests("create")) == 3  # but the server saw them all


async def test_scripted_fault_with_custom_code_and_message(client, emulator):
    emulator.script("query", Fault.status(500, code="InternalError.Algo", message="boom"))
    assert_error(await client.get("/tasks/x"), 500, "InternalError.Algo", "boom")
    body = (await client.get("/tasks/x")).json()
    assert body["output"]["task_status"] == "UNKNOWN"


async def test_internal_error_uses_the_real_message(client, emulator):
    emulator.script("list", Fault.status(500))
    response = await client.get("/tasks")
    assert_error(
        response,
        500,
        "InternalError",
        "An internal error has occured, please try again later or contact service support.",
    )
    assert response.headers["content-type"] == "application/json;charset=UTF-8"


async def test_drop_before_never_reaches_the_server(submit, emulator):
    emulator.script("create", Fault.drop_before())
    with pytest.raises(httpx.ConnectError):
        await submit()
    assert emulator.tasks == {} and emulator.request_log == []
    assert (await submit()).status_code == 200


async def test_drop_after_creates_the_task_but_loses_the_response(submit, emulator):
    emulator.script("create", Fault.drop_after())
    with pytest.raises(httpx.ReadTimeout):
        await submit()
    assert len(emulator.tasks) == 1  # a client that blindly retries would now create a second, billed task
    assert len(emulator.requests("create")) == 1


async def test_drop_applies_to_the_scripted_route_only(submit, client, emulator):
    emulator.script("query", Fault.drop_before())
    task_id = task_id_of(await submit())
    with pytest.raises(httpx.ConnectError):
        await client.get(f"/tasks/{task_id}")
    assert (await client.get(f"/tasks/{task_id}")).status_code == 200


async def test_delay_fault_and_latency_slow_requests_down():
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    emulator = Emulator(EmulatorSettings(clock="fake", latency=0.02), sleep=sleep)
    emulator.script("list", Fault.delay(0.05))
    async with emulator.client() as http:
        assert (await http.get("/tasks")).status_code == 200
        assert (await http.get("/tasks")).status_code == 200
    assert waits == [pytest.approx(0.07), pytest.approx(0.02)]  # the delay fault once, the latency on each


async def test_scripted_fault_on_the_image_route_is_oss_xml(client, emulator):
    emulator.script("image", Fault.status(503))
    async with httpx.AsyncClient(transport=emulator.transport()) as plain:
        response = await plain.get("http://emulator.wanx-nb.invalid/emulator-results/20250108/x-1.png")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/xml"
    assert "<Code>ServiceUnavailable</Code>" in response.text


@pytest.mark.parametrize(("status", "code"), [(500, "InternalError"), (503, "ServiceUnavailable")])
async def test_error_rate_answers_the_configured_status(status, code):
    emulator = Emulator(EmulatorSettings(clock="fake", error_rates={"query": 1.0}, error_status=status))
    async with emulator.client() as http:
        assert_error(await http.get("/tasks/x"), status, code)
        assert (await http.get("/tasks")).status_code == 200  # other routes are unaffected


async def test_rates_are_deterministic_per_seed():
    async def pattern(seed: int) -> list[str]:
        emulator = Emulator(
            EmulatorSettings(
                clock="fake", seed=seed, query_qps=None, drop_rates={"query": 0.5}, error_rates={"query": 0.3}
            )
        )
        outcomes = []
        async with emulator.client() as http:
            for _ in range(30):
                try:
                    outcomes.append(str((await http.get("/tasks/x")).status_code))
                except httpx.ConnectError:
                    outcomes.append("drop")
        return outcomes

    first = await pattern(1)
    assert first == await pattern(1)
    assert {"drop", "500", "200"} <= set(first)
    assert first != await pattern(2)


async def test_drop_mode_after_raises_read_timeout():
    emulator = Emulator(EmulatorSettings(clock="fake", drop_rates={"create": 1.0}, drop_mode="after"))
    async with emulator.client() as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(CREATE, json={"model": "wanx-v1", "input": {"prompt": "x"}}, headers=ASYNC)
    assert len(emulator.tasks) == 1


async def test_reset_forgets_everything_and_restarts_the_clock_but_never_reuses_ids(submit, emulator):
    first_id = task_id_of(await submit())
    emulator.script("create", Fault.status(500))
    emulator.advance(100)
    emulator.reset()
    assert emulator.tasks == {} and emulator.request_log == []
    assert emulator.now() == emulator.settings.fake_clock_start
    again = task_id_of(await submit())  # succeeds: the script was dropped too
    assert again != first_id and list(emulator.tasks) == [again]


def test_advance_needs_the_fake_clock():
    with pytest.raises(RuntimeError, match="fake clock"):
        Emulator().advance(1)
    ticks = iter(range(1_700_000_000, 1_800_000_000))
    emulator = Emulator(clock=lambda: float(next(ticks)))
    assert emulator.now() < emulator.now()


def test_script_rejects_unknown_routes():
    with pytest.raises(ValueError, match="unknown route 'download'"):
        Emulator().script("download", Fault.status(500))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"error_rates": {"download": 0.1}}, "unknown route"),
        ({"drop_rates": {"query": 1.5}}, "probability"),
        ({"clock": "wall"}, "clock"),
        ({"drop_mode": "sometimes"}, "drop_mode"),
        ({"time_scale": -1}, "time_scale"),
        ({"error_status": 200}, "error_status"),
        ({"image_weight": "heavy"}, "image_weight must be 'light' or 'service'"),
    ],
)
def test_settings_reject_nonsense(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EmulatorSettings(**kwargs)


def test_settings_are_immutable():
    settings = EmulatorSettings(error_rates={"query": 0.5})
    with pytest.raises(TypeError):
        settings.error_rates["query"] = 1.0  # type: ignore[index]


def test_default_emulator_is_one_shared_instance_with_default_settings():
    import os

    assert default_emulator() is default_emulator()
    # Default settings, with its tasks kept where $WANX_NB_EMULATOR_STATE says (the tests' own file) and
    # as fast as $WANX_NB_EMULATOR_TIME_SCALE says (conftest).
    state, scale = os.environ["WANX_NB_EMULATOR_STATE"], float(os.environ["WANX_NB_EMULATOR_TIME_SCALE"])
    assert default_emulator().settings == EmulatorSettings(state_path=state, time_scale=scale)


@pytest.mark.parametrize("raw", ["fast", "-1", "2", "nan", "inf"])
def test_a_bad_emulator_time_scale_is_named_with_what_is_allowed_before_anything_is_sent(monkeypatch, raw):
    from wanx_nb._client import AsyncWanxClient
    from wanx_nb._exceptions import ConfigurationError

    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.delenv("DASHSCOPE_BASE_URL", raising=False)
    monkeypatch.setenv("WANX_NB_EMULATOR_TIME_SCALE", raw)
    monkeypatch.setattr("wanx_nb.emulator._emulator._default", None)  # this process's default, made anew
    with pytest.raises(ConfigurationError) as caught:
        AsyncWanxClient()
    assert str(caught.value) == (
        f"WANX_NB_EMULATOR_TIME_SCALE={raw!r} is not a time scale: use a number from 0 to 1, the fraction of the "
        "real task durations the emulator takes (default 0.05), or unset it"
    )
    monkeypatch.setenv("WANX_NB_EMULATOR_TIME_SCALE", " 0.25 ")
    assert AsyncWanxClient()._emulator.settings.time_scale == 0.25  # fixed: the next client has it


MODULES = [
    "",
    "._routes",
    "._settings",
    "._errors",
    "._images",
    "._backend",
    "._clock",
    "._faults",
    "._fault_responses",
    "._oss",
    "._rewrite",
    "._rules",
    "._tasks",
    "._views",
    "._messages",
    "._caption",
    ".app",
    "._transport",
    "._emulator",
]


@pytest.mark.parametrize("module", [*MODULES, ".server"])
def test_every_module_declares_a_sorted_complete_all(module):
    import importlib

    mod = importlib.import_module(f"wanx_nb.emulator{module}")
    assert mod.__all__ == sorted(mod.__all__)
    assert all(hasattr(mod, name) for name in mod.__all__)


def test_public_api_is_exported():
    import wanx_nb.emulator as package

    for name in (
        "Emulator",
        "EmulatorSettings",
        "Fault",
        "create_app",
        "default_emulator",
        "serve",
        "running_server",
        "EMULATOR_BASE_URL",
        "EMULATOR_HEADER",
    ):
        assert name in package.__all__
    assert [name for name in package.__all__ if not hasattr(package, name)] == []  # lazy names resolve


def test_emulator_imports_only_registry_version_and_sqlite_from_the_package():
    import ast
    import pathlib

    import wanx_nb.emulator as package

    allowed = {"wanx_nb._registry", "wanx_nb._version", "wanx_nb._sqlite"}  # _sqlite: no wire code, SQLite's WAL
    for path in pathlib.Path(package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            elif isinstance(node, ast.ImportFrom) and node.level == 2:  # from .. / from ..x
                base = "wanx_nb" + (f".{node.module}" if node.module else "")
                names = [base] if node.module else [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "wanx_nb" and not name.startswith("wanx_nb.emulator"):
                    assert name in allowed, f"{path.name} imports {name}"


async def test_corrupt_image_rate_truncates_every_image_at_one():
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=0.0, corrupt_image_rate=1.0))
    async with emulator.client() as http, httpx.AsyncClient(transport=emulator.transport()) as plain:
        body = {"model": "wanx2.1-t2i-turbo", "input": {"prompt": "x"}, "parameters": {"n": 1}}
        task_id = task_id_of(await http.post(CREATE, json=body, headers=ASYNC))
        url = (await http.get(f"/tasks/{task_id}")).json()["output"]["results"][0]["url"]
        data = (await plain.get(url)).content
    assert data.startswith(b"\x89PNG") and not data.rstrip().endswith(b"IEND\xaeB`\x82")


def test_scripted_drops_over_real_http_close_the_connection_mid_response():
    from wanx_nb.emulator import running_server

    emulator = Emulator(EmulatorSettings(clock="fake"))
    emulator.script("list", Fault.drop_before(), Fault.status(500))
    emulator.script("create", Fault.drop_after())
    body = {"model": "wanx-v1", "input": {"prompt": "x"}}
    with running_server(emulator=emulator) as live:
        auth = {"Authorization": "Bearer k"}
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"{live.base_url}/tasks", headers=auth, trust_env=False)
        statuses = [httpx.get(f"{live.base_url}/tasks", headers=auth, trust_env=False).status_code for _ in range(2)]
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(f"{live.base_url}{CREATE}", json=body, headers={**auth, **ASYNC}, trust_env=False)
    assert statuses == [500, 200]
    assert len(emulator.tasks) == 1  # dropped after the server created the task
