"""The messages-based endpoints of the 2026 spec: sync multimodal-generation, async image-generation
polled at /tasks/{id}, their answer shapes per family, errors and limits (2026 spec §3, §4, §6, §9, §11)."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image

from wanx_nb.emulator import Emulator, EmulatorSettings, Fault

from .conftest import ASYNC, CREATE
from .test_emulator_create import assert_error

MMG = "/services/aigc/multimodal-generation/generation"
IMG = "/services/aigc/image-generation/generation"


@pytest.fixture
def settings() -> EmulatorSettings:
    return EmulatorSettings(clock="fake", time_scale=1.0)


def body(model: str, text: Any = "一只猫", **parameters: Any) -> dict[str, Any]:
    return {"model": model, "input": {"messages": [{"role": "user", "content": [{"text": text}]}]}, "parameters": parameters}


async def image_of(emulator: Emulator, url: str) -> Image.Image:
    async with httpx.AsyncClient(transport=emulator.transport()) as plain:
        response = await plain.get(url)
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content))


# ---- sync: answer shapes per family (2026 §3.4) -----------------------------------------------------------


async def test_qwen_image_max_sync_answer_is_shaped_like_the_recording(client, emulator):
    response = await client.post(MMG, json=body("qwen-image-max", size="1664*928", n=1, seed=233))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert list(answer) == ["output", "usage", "request_id"]  # A1's order
    assert response.headers["X-Request-ID"] == answer["request_id"]
    (choice,) = answer["output"]["choices"]
    assert choice["finish_reason"] == "stop" and list(choice["message"]) == ["content", "role"]
    (item,) = choice["message"]["content"]
    assert list(item) == ["image"]  # no "type" on qwen answers
    assert answer["output"]["task_metric"] == {"FAILED": 0, "SUCCEEDED": 1, "TOTAL": 1}
    assert answer["usage"] == {"height": 928, "image_count": 1, "width": 1664}
    assert (await image_of(emulator, item["image"])).size == (1664, 928)
    meta = json.loads(response.headers["x-dashscope-inner-flow-control-meta"])  # as recorded (A1)
    assert meta["model"] == "qwen-image-max" and meta["user_spec"]["count_limit"] == 2
    assert meta["user_spec"]["count_limit_period"] == 60


async def test_wan26_sync_answer(client):
    answer = (await client.post(MMG, json=body("wan2.6-t2i", n=1, size="1280*1280", negative_prompt=""))).json()
    assert answer["output"]["finished"] is True
    assert answer["output"]["choices"][0]["message"]["content"][0]["type"] == "image"
    assert answer["usage"] == {"image_count": 1, "input_tokens": 0, "output_tokens": 0, "size": "1280*1280", "total_tokens": 0}


async def test_wan26_makes_four_images_by_default_one_choice_each(client):
    answer = (await client.post(MMG, json=body("wan2.6-t2i"))).json()
    assert len(answer["output"]["choices"]) == 4 and answer["usage"]["image_count"] == 4


async def test_wan27_tiers_and_token_usage(client, emulator):
    answer = (await client.post(MMG, json=body("wan2.7-image-pro", n=1, size="2K", thinking_mode=True))).json()
    usage = answer["usage"]
    assert usage["size"] == "2048*2048" and usage["input_tokens"] > 18000 and usage["output_tokens"] == 2
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    url = answer["output"]["choices"][0]["message"]["content"][0]["image"]
    assert (await image_of(emulator, url)).size == (2048, 2048)


async def test_z_image_answers_the_prompt_as_text_and_reasoning(client):
    plain = (await client.post(MMG, json=body("z-image-turbo", "an orange cat", prompt_extend=False))).json()
    message = plain["output"]["choices"][0]["message"]
    assert message["content"][1] == {"text": "an orange cat"} and message["reasoning_content"] == ""
    assert plain["usage"] == {"width": 1024, "height": 1536, "image_count": 1, "input_tokens": 0, "output_tokens": 0,
                              "total_tokens": 0}  # fmt: skip
    rewritten = (await client.post(MMG, json=body("z-image-turbo", "an orange cat", prompt_extend=True))).json()
    message = rewritten["output"]["choices"][0]["message"]
    assert message["content"][1]["text"].startswith("an orange cat, with") and message["reasoning_content"]
    assert rewritten["usage"]["output_tokens_details"]["reasoning_tokens"] > 0


async def test_qwen_2_has_no_task_metric_and_n_up_to_6(client):
    answer = (await client.post(MMG, json=body("qwen-image-2.0", n=6, size="1024*1024"))).json()
    assert "task_metric" not in answer["output"] and len(answer["output"]["choices"]) == 6
    assert answer["usage"] == {"width": 1024, "height": 1024, "image_count": 6}


# ---- async image-generation, polled at /tasks/{id} (2026 §4) ------------------------------------------------


async def test_image_generation_task_moves_through_states_with_choices(client, emulator):
    created = await client.post(IMG, json=body("wan2.6-t2i", n=2, size="1280*1280"), headers=ASYNC)
    assert created.status_code == 200 and list(created.json()["output"]) == ["task_status", "task_id"]
    task_id = created.json()["output"]["task_id"]
    pending = (await client.get(f"/tasks/{task_id}")).json()["output"]
    assert pending["task_status"] in ("PENDING", "RUNNING") and "choices" not in pending
    emulator.advance(1)
    running = (await client.get(f"/tasks/{task_id}")).json()["output"]
    assert running["task_status"] == "RUNNING" and "task_metrics" not in running
    emulator.advance(60)
    done = (await client.get(f"/tasks/{task_id}")).json()
    output = done["output"]
    assert list(output)[:7] == ["task_id", "task_status", "submit_time", "scheduled_time", "end_time", "finished", "choices"]
    assert output["task_status"] == "SUCCEEDED" and len(output["choices"]) == 2
    assert done["usage"]["image_count"] == 2 and done["usage"]["size"] == "1280*1280"
    listed = (await client.get("/tasks")).json()
    assert [item["task_id"] for item in listed["data"]] == [task_id]


async def test_qwen_3_async_answer_has_rewrite_status_and_tiered_usage(client, emulator):
    created = await client.post(IMG, json=body("qwen-image-3.0-pro", "puppies", prompt_extend=True), headers=ASYNC)
    task_id = created.json()["output"]["task_id"]
    emulator.advance(120)
    done = (await client.get(f"/tasks/{task_id}")).json()
    assert done["output"]["rewrite_status"] == "not_use"
    assert done["usage"] == {"output_height": 1024, "output_width": 1024, "input_image_count": 0,
                             "input_image_type": "qima_input_1k", "output_image_count": 1,
                             "output_image_type": "qima_output_1k"}  # fmt: skip


async def test_image_generation_tasks_can_be_cancelled_while_pending(client, emulator):
    ids = [
        (await client.post(IMG, json=body("wan2.7-image", size="1K"), headers=ASYNC)).json()["output"]["task_id"]
        for _ in range(5)
    ]
    emulator.advance(1)
    sixth = (await client.post(IMG, json=body("wan2.7-image", size="1K"), headers=ASYNC)).json()["output"]["task_id"]
    assert (await client.post(f"/tasks/{sixth}/cancel")).status_code == 200  # queued behind 5 running
    assert (await client.get(f"/tasks/{sixth}")).json()["output"]["task_status"] == "CANCELED"
    assert (await client.post(f"/tasks/{ids[0]}/cancel")).status_code == 400  # already running


async def test_failed_image_generation_task_has_the_legacy_failure_shape(client, emulator):
    emulator.script("create", Fault.outcome("FAILED", code="InternalError.Algo", message="algo"))
    task_id = (await client.post(IMG, json=body("wan2.6-t2i", n=1), headers=ASYNC)).json()["output"]["task_id"]
    emulator.advance(120)
    output = (await client.get(f"/tasks/{task_id}")).json()["output"]
    assert (output["task_status"], output["code"], output["message"]) == ("FAILED", "InternalError.Algo", "algo")


# ---- header rules and wrong endpoints (2026 §1.1, §11.3, §11.4) ------------------------------------------


async def test_the_sync_endpoint_refuses_the_async_header(client, emulator):
    assert_error(await client.post(MMG, json=body("qwen-image-max"), headers=ASYNC), 403, "AccessDenied",
                 "current user api does not support asynchronous calls")  # fmt: skip
    assert emulator.tasks == {}


async def test_the_async_endpoint_needs_the_async_header(client):
    assert_error(await client.post(IMG, json=body("wan2.6-t2i")), 403, "AccessDenied",
                 "current user api does not support synchronous calls")  # fmt: skip


@pytest.mark.parametrize("model", ["qwen-image-max", "qwen-image-2.0", "qwen-image-2.0-pro", "z-image-turbo"])
async def test_sync_only_models_refuse_the_async_endpoint(client, emulator, model):
    assert_error(await client.post(IMG, json=body(model), headers=ASYNC), 403, "AccessDenied",
                 "current user api does not support asynchronous calls")  # fmt: skip
    assert emulator.tasks == {}


async def test_qwen_plus_is_also_accepted_on_the_async_messages_endpoint(client):
    # Only third parties report it (2026 §13.9): accepted, the server has the last word.
    assert (await client.post(IMG, json=body("qwen-image-plus"), headers=ASYNC)).status_code == 200


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        (CREATE, {"model": "wan2.6-t2i", "input": {"prompt": "x"}}),  # messages-only model, legacy endpoint
        (CREATE, {"model": "qwen-image-max", "input": {"prompt": "x"}}),  # what the SDK 2.x does (2026 §10.2)
        (MMG, body("wanx2.1-t2i-turbo")),  # legacy model, messages endpoint
        (MMG, body("no-such-model")),
    ],
)
async def test_a_model_on_an_endpoint_that_does_not_serve_it_does_not_exist(client, path, payload):
    assert_error(await client.post(path, json=payload, headers=ASYNC if path == CREATE else {}), 400,
                 "InvalidParameter", "Model not exist")  # fmt: skip


async def test_qwen_plus_on_the_legacy_task_api(client, emulator):
    # Appendix A9: negative_prompt inside parameters, fixed size, n 1.
    payload = {"model": "qwen-image-plus", "input": {"prompt": "一副典雅庄重的对联"},
               "parameters": {"negative_prompt": " ", "size": "1664*928", "n": 1, "prompt_extend": True,
                              "watermark": False}}  # fmt: skip
    task_id = (await client.post(CREATE, json=payload, headers=ASYNC)).json()["output"]["task_id"]
    emulator.advance(60)
    done = (await client.get(f"/tasks/{task_id}")).json()
    (result,) = done["output"]["results"]
    assert {"orig_prompt", "actual_prompt", "url"} == set(result) and done["usage"] == {"image_count": 1}
    assert (await image_of(emulator, result["url"])).size == (1664, 928)
    assert emulator.tasks[task_id].negative_prompt == " "  # read from parameters (2026 §13.6)


# ---- body rules (2026 §3.2, §3.3, §6) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "code", "says"),
    [
        (body("qwen-image-max", n=2), "InvalidParameter", "num_images_per_prompt must be 1"),
        (body("qwen-image-plus", n=4), "InvalidParameter", "num_images_per_prompt must be 1"),
        (body("wan2.6-t2i", n=5), "InvalidParameter", "n must be an integer in [1, 4]"),
        (body("wan2.6-t2i", size="1*1"), "InvalidParameter", "not supported by wan2.6-t2i"),
        (body("wan2.6-t2i", size="1280x1280"), "InvalidParameter", "must look like 'W*H'"),
        (body("qwen-image-plus", size="1024*1024"), "InvalidParameter", "one of 1664*928"),
        (body("wan2.7-image", size="4K"), "InvalidParameter", "1K / 2K"),
        (body("qwen-image-3.0", size="256*2304"), "InvalidParameter", "aspect ratio between 1:8 and 8:1"),
        (body("wan2.6-t2i", seed=-1), "InvalidParameter", "seed"),
        (body("wan2.6-t2i", watermark="yes"), "InvalidParameter", "watermark must be true or false"),
        (body("qwen-image-3.0", prompt_extend_mode="wild"), "InvalidParameter", "prompt_extend_mode"),
        (body("wan2.6-t2i", ""), "BadRequest.EmptyInput", None),
        ({"model": "wan2.6-t2i", "input": {"prompt": "x"}}, "BadRequest.EmptyInput", None),
        ({"model": "wan2.6-t2i", "input": {"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}},
         "InvalidParameter", "role must be 'user'"),
        ({"model": "wan2.6-t2i", "input": {"messages": [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}]}},
         "InvalidParameter", "exactly one text item"),
        ({"model": "wan2.6-t2i", "input": {"messages": [{"role": "user", "content": [{"text": "a"}]}] * 2}},
         "InvalidParameter", "exactly one message"),
        ({"model": "wan2.6-t2i", "input": {"messages": [{"role": "user", "content": [{"image": "https://x/y.png"}, {"text": "a"}]}]}},
         "InvalidParameter", "no input image"),
    ],
)  # fmt: skip
async def test_bad_bodies_are_refused_before_anything_is_made(client, emulator, payload, code, says):
    assert_error(await client.post(MMG, json=payload), 400, code, says)
    assert emulator.tasks == {}


async def test_sdk_extras_and_unknown_parameters_are_ignored(client):
    # The SDK leaks is_async into parameters and the docs send result_format (2026 §10.1).
    response = await client.post(MMG, json=body("wan2.6-t2i", n=1, result_format="message", is_async=True, foo=1))
    assert response.status_code == 200, response.text


async def test_qwen_3_picks_a_size_when_none_is_sent(client):
    answer = (await client.post(MMG, json=body("qwen-image-3.0"))).json()
    assert answer["usage"]["output_width"] == 1024 and answer["usage"]["output_height"] == 1024


# ---- limits (2026 §9, §11.8) and regions (§2.2, §11.4) ---------------------------------------------------------


async def test_qwen_image_max_allows_two_requests_per_minute(client, emulator):
    ok = [(await client.post(MMG, json=body("qwen-image-max"))).status_code for _ in range(2)]
    emulator.advance(59)
    assert_error(await client.post(MMG, json=body("qwen-image-max")), 429, "Throttling.RateQuota")
    emulator.advance(1.5)
    assert ok == [200, 200] and (await client.post(MMG, json=body("qwen-image-max"))).status_code == 200
    assert len(emulator.tasks) == 3  # the throttled call made nothing


async def test_wan26_allows_one_submit_per_second_in_beijing():
    emulator = Emulator(EmulatorSettings(clock="fake"))
    async with emulator.client() as http:
        assert (await http.post(IMG, json=body("wan2.6-t2i", n=1), headers=ASYNC)).status_code == 200
        assert_error(await http.post(IMG, json=body("wan2.6-t2i", n=1), headers=ASYNC), 429, "Throttling.RateQuota")
        emulator.advance(1)
        assert (await http.post(IMG, json=body("wan2.6-t2i", n=1), headers=ASYNC)).status_code == 200


async def test_regions_serve_their_models_and_limits():
    emulator = Emulator(EmulatorSettings(clock="fake", region="singapore"))
    async with emulator.client() as http:
        statuses = [(await http.post(IMG, json=body("wan2.6-t2i", n=1), headers=ASYNC)).status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]  # 5 per second outside Beijing
        listed = (await http.get("/tasks")).json()
        assert listed["total"] == 5 and {item["region"] for item in listed["data"]} == {"ap-southeast-1"}
        assert (await http.get("/tasks", params={"region": "cn-beijing"})).json()["total"] == 0
        assert_error(await http.post(MMG, json=body("qwen-image-3.0")), 400, "InvalidParameter", "Model not exist")
    virginia = Emulator(EmulatorSettings(clock="fake", region="virginia"))
    async with virginia.client() as http:
        assert_error(await http.post(MMG, json=body("qwen-image-max")), 400, "InvalidParameter", "Model not exist")
        assert (await http.post(MMG, json=body("wan2.6-t2i", n=1))).status_code == 200
    with pytest.raises(ValueError, match="region must be one of beijing, singapore, virginia, frankfurt"):
        EmulatorSettings(region="mars")


# ---- sync calls: no task to poll, faults on the generate route ------------------------------------------------


async def test_a_sync_call_leaves_no_task_to_poll_or_list(client, emulator):
    answer = (await client.post(MMG, json=body("qwen-image-2.0", size="1024*1024"))).json()
    (task,) = emulator.tasks.values()  # the emulator made it (and the images stay downloadable) ...
    assert task.request_id == answer["request_id"]
    assert (await client.get(f"/tasks/{task.task_id}")).json()["output"]["task_status"] == "UNKNOWN"  # ... no task id
    assert (await client.get("/tasks")).json()["total"] == 0
    assert emulator.requests("generate")[0].json["model"] == "qwen-image-2.0"


async def test_a_sync_5xx_after_the_image_was_made(client, emulator):
    emulator.script("generate", Fault.status(504, after=True))
    assert_error(await client.post(MMG, json=body("qwen-image-max")), 504, "GatewayTimeout")
    assert len(emulator.tasks) == 1  # made, and billed: a blind retry pays twice


async def test_sync_outcomes_failed_and_partial(client, emulator):
    emulator.script("generate", Fault.outcome("FAILED", code="DataInspectionFailed", message="Output data may contain"))
    assert_error(await client.post(MMG, json=body("z-image-turbo")), 400, "DataInspectionFailed")
    emulator.script("generate", Fault.outcome("PARTIAL", failed=(1,)))
    answer = (await client.post(MMG, json=body("qwen-image-2.0", n=3, size="1024*1024"))).json()
    assert len(answer["output"]["choices"]) == 2 and answer["usage"]["image_count"] == 2


def test_a_sync_call_over_real_http_answers_once_the_image_is_made():
    import time

    from wanx_nb.emulator import running_server

    with running_server(EmulatorSettings(time_scale=0.02, rate_limits=False)) as live:
        response = httpx.post(live.base_url + MMG, json=body("qwen-image-max"), trust_env=False,
                              headers={"Authorization": "Bearer sk-x"}, timeout=30)  # fmt: skip
        answered = time.time()
        (task,) = live.emulator.tasks.values()
    assert response.status_code == 200 and task.duration > 0
    assert task.end_time is not None and task.end_time <= answered  # the real clock: it blocked until done


async def test_old_sync_calls_are_forgotten_like_old_tasks(client, emulator):
    assert (await client.post(MMG, json=body("qwen-image-2.0", size="1024*1024"))).status_code == 200
    emulator.advance(49 * 3600)  # past the task's 24 h and its URLs' 24 h
    assert (await client.post(MMG, json=body("qwen-image-2.0", size="1024*1024"))).status_code == 200
    assert len(emulator.tasks) == 1
