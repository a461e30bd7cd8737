"""Divergences found by a field-by-field review of the emulator against the specs
(`shared/spec/dashscope-t2i-protocol.md` §n, `shared/spec/dashscope-image-generation-2026.md` "2026 §n"),
each pinned by a test that failed before the fix."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import httpx
import pytest

from wanx_nb.emulator import Emulator, EmulatorSettings, running_server

from .conftest import ASYNC, CREATE, task_id_of
from .test_emulator_create import assert_error

MMG = "/services/aigc/multimodal-generation/generation"
IMG = "/services/aigc/image-generation/generation"


def messages_body(model: str, text: str = "一只猫", **parameters: Any) -> dict[str, Any]:
    return {"model": model, "input": {"messages": [{"role": "user", "content": [{"text": text}]}]}, "parameters": parameters}


# ---- headers: the documented alternative to Authorization (2026 §3.1) ------------------------------------------


async def test_the_x_dashscope_apikey_header_authenticates_like_a_bearer_token(emulator):
    # 2026 §3.1 (M5): "Alternatively, pass it via the X-DashScope-ApiKey request header".
    async with emulator.client(api_key=None) as http:
        body = {"model": "wanx2.1-t2i-turbo", "input": {"prompt": "x"}, "parameters": {"n": 1}}
        created = await http.post(CREATE, json=body, headers={**ASYNC, "X-DashScope-ApiKey": "sk-alt"})
        task_id = task_id_of(created)
        assert emulator.tasks[task_id].account == "sk-alt"
        queried = await http.get(f"/tasks/{task_id}", headers={"X-DashScope-ApiKey": "sk-alt"})
        assert queried.json()["output"]["task_status"] in ("RUNNING", "PENDING")
        # The same account as a Bearer token of the same key; a bad key is still refused.
        same = await http.get(f"/tasks/{task_id}", headers={"Authorization": "Bearer sk-alt"})
        assert same.json()["output"]["task_status"] != "UNKNOWN"
        bad = await http.post(CREATE, json=body, headers={**ASYNC, "X-DashScope-ApiKey": "sk-invalid"})
        assert_error(bad, 401, "InvalidApiKey", "Invalid API-key provided.")
        none = await http.post(CREATE, json=body, headers=ASYNC)
        assert_error(none, 401, "InvalidApiKey", "No API-key provided.")
    (logged,) = [r for r in emulator.request_log if r.headers.get("x-dashscope-apikey") and r.route == "create"][:1]
    assert logged.headers["x-dashscope-apikey"] == "...-alt"  # masked in the request log, like Authorization


# ---- disagreements: accept what any source accepts ------------------------------------------------------------


async def test_wan26_t2i_takes_the_wider_pixel_band_of_the_older_reference(client, emulator):
    # 2026 §13.1: [1280², 1440²] (2026 copies) or [768², 1440²] (an older copy): the wider band is accepted, by the client (registry) and the emulator alike.
    answer = await client.post(MMG, json=messages_body("wan2.6-t2i", n=1, size="1024*1024"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["size"] == "1024*1024"
    emulator.advance(1)  # wan2.6-t2i: 1 submit per second in Beijing (2026 §9)
    below = await client.post(MMG, json=messages_body("wan2.6-t2i", n=1, size="700*700"))
    assert_error(below, 400, "InvalidParameter", "not supported by wan2.6-t2i")


async def test_wan27_makes_up_to_twelve_images_with_enable_sequential(client):
    # 2026 §3.3 / §13.7: n 1-4, "with enable_sequential=true up to 12" (third parties; no source refuses it).
    many = await client.post(MMG, json=messages_body("wan2.7-image", n=12, size="1K", enable_sequential=True))
    assert many.status_code == 200, many.text
    assert len(many.json()["output"]["choices"]) == 12
    plain = await client.post(MMG, json=messages_body("wan2.7-image", n=5, size="1K"))
    assert_error(plain, 400, "InvalidParameter", "[1, 4]")
    too_many = await client.post(MMG, json=messages_body("wan2.7-image", n=13, size="1K", enable_sequential=True))
    assert_error(too_many, 400, "InvalidParameter", "[1, 12]")


# ---- uploads exist only in Beijing (§1.2, §1.6) ------------------------------------------------------------------


@pytest.mark.parametrize("region", ["singapore", "virginia", "frankfurt"])
async def test_upload_policies_are_served_only_in_beijing(region):
    emulator = Emulator(EmulatorSettings(clock="fake", region=region))
    async with emulator.client() as http:
        response = await http.get("/uploads", params={"action": "getPolicy", "model": "wan2.6-t2i"})
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "NotFound"
    beijing = Emulator(EmulatorSettings(clock="fake"))
    async with beijing.client() as http:
        assert (await http.get("/uploads", params={"action": "getPolicy", "model": "wanx-v1"})).status_code == 200


# ---- the legacy endpoint's sync mode for wan2.2 (§1.2) -----------------------------------------------------------


@pytest.mark.parametrize("model", ["wan2.2-t2i-flash", "wan2.2-t2i-plus"])
async def test_wan22_takes_a_sync_call_on_the_legacy_endpoint(client, emulator, model):
    # §1.2: ImageSynthesis.sync_call posts without the async header; only wan2.2-t2i-flash/plus allow it.
    body = {"model": model, "input": {"prompt": "a red fox"}, "parameters": {"n": 2, "size": "1024*768"}}
    response = await client.post(CREATE, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    output = answer["output"]
    assert output["task_status"] == "SUCCEEDED"
    assert [sorted(item) for item in output["results"]] == [["actual_prompt", "orig_prompt", "url"]] * 2
    assert output["task_metrics"] == {"TOTAL": 2, "SUCCEEDED": 2, "FAILED": 0}
    assert answer["usage"] == {"image_count": 2} and answer["request_id"]
    # The answer names a task, and the task reads the same when queried.
    queried = (await client.get(f"/tasks/{output['task_id']}")).json()
    assert queried["output"]["task_status"] == "SUCCEEDED"
    async with httpx.AsyncClient(transport=emulator.transport()) as plain:
        image = await plain.get(output["results"][0]["url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"


async def test_other_models_still_refuse_a_sync_call_on_the_legacy_endpoint(client, emulator):
    body = {"model": "wanx2.1-t2i-turbo", "input": {"prompt": "x"}, "parameters": {}}
    assert_error(await client.post(CREATE, json=body), 403, "AccessDenied", "does not support synchronous calls")
    not_json = await client.post(CREATE, content=b"{oops")
    assert_error(not_json, 403, "AccessDenied", "does not support synchronous calls")
    assert emulator.tasks == {}


def test_the_official_sdk_sync_call_works_for_wan22():
    dashscope = pytest.importorskip("dashscope")
    with running_server(EmulatorSettings(time_scale=0.01, rate_limits=False)) as live:
        rsp = dashscope.ImageSynthesis.sync_call(
            api_key="sk-sdk", model="wan2.2-t2i-flash", prompt="一间花店", n=1, size="1024*1024",
            base_address=live.base_url,
        )
        assert rsp.status_code == HTTPStatus.OK, rsp
        assert rsp.output.task_status == "SUCCEEDED" and rsp.usage.image_count == 1
        (result,) = rsp.output.results
        assert result.url.startswith(live.origin) and result.orig_prompt == "一间花店"
        (sent,) = live.emulator.requests("create")
        assert "x-dashscope-async" not in sent.headers
