"""POST /services/aigc/text2image/image-synthesis: shapes, headers, authentication, validation, limits."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

import wanx_nb

from wanx_nb.emulator import EMULATOR_HEADER, Emulator, EmulatorSettings

from .conftest import ASYNC, CREATE, task_id_of

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def assert_error(response: httpx.Response, status: int, code: str, message: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["code", "message", "request_id"]
    assert body["code"] == code
    if message is not None:
        assert message in body["message"], body["message"]
    assert UUID_RE.match(body["request_id"])
    assert response.headers["X-Request-ID"] == body["request_id"]
    assert response.headers[EMULATOR_HEADER].startswith("wanx_nb-emulator/")
    return body


async def test_create_answers_pending_task_in_wire_shape(submit, emulator):
    response = await submit("wanx2.1-t2i-plus", n=1)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers[EMULATOR_HEADER] == f"wanx_nb-emulator/{wanx_nb.__version__}"
    body = response.json()
    assert list(body) == ["output", "request_id"]
    assert list(body["output"]) == ["task_status", "task_id"]
    assert body["output"]["task_status"] == "PENDING"
    assert UUID_RE.match(body["output"]["task_id"]) and UUID_RE.match(body["request_id"])
    assert "usage" not in body
    assert set(emulator.tasks) == {body["output"]["task_id"]}


async def test_missing_api_key_is_401_no_api_key(client):
    response = await client.post(CREATE, json={}, headers={**ASYNC, "Authorization": ""})
    assert_error(response, 401, "InvalidApiKey", "No API-key provided.")


async def test_invalid_api_key_is_401_invalid_api_key(submit, emulator):
    async with emulator.client(api_key="sk-invalid") as bad:
        response = await submit(http=bad)
    assert_error(response, 401, "InvalidApiKey", "Invalid API-key provided.")
    assert emulator.tasks == {}


async def test_missing_async_header_is_403_sync_not_supported(client):
    body = {"model": "wanx2.1-t2i-turbo", "input": {"prompt": "x"}, "parameters": {}}
    response = await client.post(CREATE, json=body)
    assert_error(response, 403, "AccessDenied", "current user api does not support synchronous calls")


@pytest.mark.parametrize(
    ("model", "body_input", "parameters", "code", "message"),
    [
        ("wanx9-t2i", {"prompt": "x"}, {}, "InvalidParameter", "Model not exist."),
        ("wan2.6-t2i", {"prompt": "x"}, {}, "InvalidParameter", "Model not exist."),
        ("", {"prompt": "x"}, {}, "BadRequest.EmptyModel", "Required model parameter missing"),
        ("wanx2.1-t2i-turbo", {}, {}, "BadRequest.EmptyInput", "Required input parameter missing from request."),
        ("wanx2.1-t2i-turbo", {"prompt": ""}, {}, "BadRequest.EmptyInput", "Required input parameter missing"),
        ("wanx2.1-t2i-turbo", {"prompt": "   "}, {}, "BadRequest.EmptyInput", "Required input parameter missing"),
        ("wanx2.1-t2i-turbo", {"prompt": 42}, {}, "InvalidParameter", "input.prompt must be a string"),
        ("wanx2.1-t2i-turbo", {"prompt": "x"}, {"n": 0}, "InvalidParameter", "n must be an integer in [1, 4], got 0"),
        ("wanx2.1-t2i-turbo", {"prompt": "x"}, {"n": 5}, "InvalidParameter", "got 5"),
        ("wanx-v1", {"prompt": "x"}, {"n": "2"}, "InvalidParameter", "got '2'"),
        (
            "wanx2.1-t2i-turbo",
            {"prompt": "x"},
            {"seed": -1},
            "InvalidParameter",
            "seed must be an integer in [0, 2147483647]",
        ),
        ("wanx2.1-t2i-turbo", {"prompt": "x"}, {"seed": 2147483648}, "InvalidParameter", "got 2147483648"),
        (
            "wanx2.1-t2i-turbo",
            {"prompt": "x"},
            {"size": "1500*1024"},
            "InvalidParameter",
            "each side between 512 and 1440",
        ),
        (
            "wanx2.0-t2i-turbo",
            {"prompt": "x"},
            {"size": "256*256"},
            "InvalidParameter",
            "The size 256*256 is not supported",
        ),
        ("wanx2.1-t2i-plus", {"prompt": "x"}, {"size": "1024x1024"}, "InvalidParameter", "must look like 'W*H'"),
        (
            "wanx2.1-t2i-plus",
            {"prompt": "x"},
            {"prompt_extend": "yes"},
            "InvalidParameter",
            "prompt_extend must be true or false",
        ),
        ("wanx2.1-t2i-plus", {"prompt": "x"}, {"watermark": 1}, "InvalidParameter", "watermark must be true or false"),
        ("wanx-v1", {"prompt": "x"}, {"style": "<cubism>"}, "InvalidParameter", "style '<cubism>' is not supported"),
        (
            "wanx-v1",
            {"prompt": "x"},
            {"ref_strength": 1.5},
            "InvalidParameter",
            "ref_strength must be a number in [0.0, 1.0]",
        ),
        (
            "wanx-v1",
            {"prompt": "x"},
            {"ref_mode": "copy"},
            "InvalidParameter",
            "ref_mode must be 'repaint' or 'refonly'",
        ),
        (
            "wanx-v1",
            {"prompt": "x", "ref_img": "ftp://host/a.png"},
            {},
            "InvalidURL",
            "Invalid URL provided in your request",
        ),
        ("wanx-v1", {"prompt": "x", "ref_img": "https://例子.cn/a.png"}, {}, "InvalidURL", "non-ASCII"),
    ],
)
async def test_invalid_create_is_400_with_real_code(submit, emulator, model, body_input, parameters, code, message):
    response = await submit(model, None, input=body_input, **parameters)
    assert_error(response, 400, code, message)
    assert emulator.tasks == {}


async def test_body_that_is_not_json_is_400(client):
    response = await client.post(CREATE, content=b"{not json", headers={**ASYNC, "Content-Type": "application/json"})
    assert_error(response, 400, "InvalidParameter", "not valid JSON")


async def test_parameters_a_model_does_not_take_are_ignored(submit, emulator):
    # The SDK passes extra kwargs through; the service ignores what the model does not use.
    response = await submit("wanx2.1-t2i-turbo", style="<anime>", ref_strength=9, future_knob=True)
    task = emulator.tasks[task_id_of(response)]
    assert task.style is None and task.ref_strength == 0.5
    v1 = emulator.tasks[task_id_of(await submit("wanx-v1", watermark="not-a-bool", prompt_extend=True))]
    assert v1.watermark is False and v1.prompt_extend is False and v1.actual_prompt is None


async def test_null_parameters_mean_defaults(submit, emulator):
    task = emulator.tasks[task_id_of(await submit("wanx2.1-t2i-turbo", n=None, size=None, seed=None))]
    assert (task.n, task.width, task.height) == (4, 1024, 1024)


async def test_defaults_follow_the_spec(submit, emulator):
    v2 = emulator.tasks[task_id_of(await submit("wanx2.1-t2i-turbo"))]
    assert (v2.n, v2.width, v2.height, v2.prompt_extend, v2.watermark) == (4, 1024, 1024, True, False)
    assert 0 <= v2.seed <= 2147483647
    v1 = emulator.tasks[task_id_of(await submit("wanx-v1"))]
    assert (v1.n, v1.style, v1.ref_strength, v1.ref_mode) == (4, "<auto>", 0.5, "repaint")


async def test_international_model_name_is_accepted_and_reported_as_sent(submit, client, emulator):
    task_id = task_id_of(await submit("wan2.1-t2i-turbo"))
    assert emulator.tasks[task_id].model == "wanx2.1-t2i-turbo"
    listing = (await client.get("/tasks")).json()
    assert listing["data"][0]["model_name"] == "wan2.1-t2i-turbo"


async def test_long_prompt_is_truncated_for_the_image_but_echoed_as_sent(submit, emulator, query):
    prompt = "花" * 900
    task_id = task_id_of(await submit("wanx2.1-t2i-turbo", prompt, n=1, prompt_extend=False))
    task = emulator.tasks[task_id]
    assert task.effective_prompt == "花" * 800
    emulator.advance(60)
    result = (await query(task_id))["output"]["results"][0]
    assert result["orig_prompt"] == prompt


@pytest.mark.parametrize("field", ["prompt", "negative_prompt"])
async def test_input_inspection_refuses_the_trigger_word(submit, emulator, field):
    word = emulator.settings.inspection_word
    extra = {field: f"a cat {word}"}
    response = await submit("wanx2.1-t2i-turbo", "a cat", input=extra)
    assert_error(response, 400, "DataInspectionFailed", "Input data may contain inappropriate content.")
    assert emulator.tasks == {}


async def test_submit_rate_is_limited_per_model_and_recovers_after_the_window(submit, emulator):
    assert (await submit("wanx2.1-t2i-plus")).status_code == 200
    assert (await submit("wanx2.1-t2i-plus")).status_code == 200
    third = await submit("wanx2.1-t2i-plus")
    assert_error(third, 429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later.")
    assert "Retry-After" not in third.headers
    assert (await submit("wanx2.1-t2i-turbo")).status_code == 200  # another model has its own limit
    emulator.advance(0.999)
    assert (await submit("wanx2.1-t2i-plus")).status_code == 429
    emulator.advance(0.002)
    assert (await submit("wanx2.1-t2i-plus")).status_code == 200
    assert len(emulator.tasks) == 4


async def test_rate_limit_is_per_account(submit, emulator):
    for _ in range(2):
        assert (await submit("wanx-v1")).status_code == 200
    async with emulator.client(api_key="sk-other") as other:
        assert (await submit("wanx-v1", http=other)).status_code == 200


async def test_retry_after_setting_adds_the_header():
    emulator = Emulator(EmulatorSettings(clock="fake", retry_after=1.5))
    async with emulator.client() as http:
        body = {"model": "wanx-v1", "input": {"prompt": "x"}}
        for _ in range(2):
            await http.post(CREATE, json=body, headers=ASYNC)
        response = await http.post(CREATE, json=body, headers=ASYNC)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"


async def test_refused_requests_do_not_use_up_the_rate(submit):
    for _ in range(3):
        assert (await submit("wanx2.1-t2i-turbo", n=9)).status_code == 400
    assert (await submit("wanx2.1-t2i-turbo")).status_code == 200
    assert (await submit("wanx2.1-t2i-turbo")).status_code == 200


async def test_rate_limits_can_be_switched_off():
    emulator = Emulator(EmulatorSettings(clock="fake", rate_limits=False))
    async with emulator.client() as http:
        body = {"model": "wanx-v1", "input": {"prompt": "x"}}
        statuses = [(await http.post(CREATE, json=body, headers=ASYNC)).status_code for _ in range(5)]
    assert statuses == [200] * 5


async def test_reject_over_concurrency_answers_allocation_quota():
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=1.0, reject_over_concurrency=True))
    async with emulator.client() as http:
        body = {"model": "wanx-v1", "input": {"prompt": "x"}}
        assert (await http.post(CREATE, json=body, headers=ASYNC)).status_code == 200
        emulator.advance(1)
        refused = await http.post(CREATE, json=body, headers=ASYNC)
        assert_error(refused, 429, "Throttling.AllocationQuota", "Allocated quota exceeded")
        emulator.advance(30)  # the first task (30 s) is over: a slot is free again
        assert (await http.post(CREATE, json=body, headers=ASYNC)).status_code == 200
    assert len(emulator.tasks) == 2


@pytest.mark.parametrize("field", ["ref_img", "ref_image"])
async def test_v1_reference_url_is_read_from_either_field(submit, emulator, field):
    url = "https://help-static-aliyun-doc.aliyuncs.com/file-manage-files/zh-CN/20241031/rguyzt/girl.png"
    task_id = task_id_of(await submit("wanx-v1", input={field: url}, ref_strength=0.8, ref_mode="refonly"))
    task = emulator.tasks[task_id]
    assert (task.ref, task.ref_strength, task.ref_mode) == (url, 0.8, "refonly")


async def test_request_log_records_what_the_server_saw_without_the_key(submit, emulator):
    await submit("wanx-v1", "一只猫", n=1)
    (entry,) = emulator.requests("create")
    assert entry.method == "POST"
    assert entry.path == "/api/v1/services/aigc/text2image/image-synthesis"
    assert entry.json == {"model": "wanx-v1", "input": {"prompt": "一只猫"}, "parameters": {"n": 1}}
    assert entry.headers["authorization"] == "Bearer ...test"
    assert "sk-test" not in repr(emulator.request_log)
    assert entry.headers["x-dashscope-async"] == "enable"


async def _one_generation(seed: int | None) -> tuple[str, str, bytes]:
    """(task id, request id, image bytes) of one n=1 generation on a fresh emulator with settings seed 7."""
    emulator = Emulator(EmulatorSettings(clock="fake", seed=7, time_scale=0.0))
    async with emulator.client() as http:
        parameters = {"n": 1} if seed is None else {"n": 1, "seed": seed}
        body = {"model": "wanx2.1-t2i-turbo", "input": {"prompt": "x"}, "parameters": parameters}
        created = (await http.post(CREATE, json=body, headers=ASYNC)).json()
        task_id = created["output"]["task_id"]
        url = (await http.get(f"/tasks/{task_id}")).json()["output"]["results"][0]["url"]
    async with httpx.AsyncClient(transport=emulator.transport()) as plain:  # no key for the image host
        image = (await plain.get(url)).content
    return task_id, created["request_id"], image


async def test_task_ids_are_unique_across_fresh_emulators_while_images_follow_the_seed():
    # Two processes (or restarts) sharing one store must never see the same task id (issue 7.6).
    first, second = await _one_generation(42), await _one_generation(42)
    assert first[0] != second[0] and first[1] != second[1]
    assert all(uuid.UUID(i).version == 4 for i in (*first[:2], *second[:2]))
    assert first[2] == second[2] and first[2].startswith(b"\x89PNG")
    assert (await _one_generation(43))[2] != first[2]


async def test_server_chosen_seeds_repeat_per_settings_seed():
    # Without a request seed the server picks one; a fresh emulator with the same settings picks the same.
    assert (await _one_generation(None))[2] == (await _one_generation(None))[2]
