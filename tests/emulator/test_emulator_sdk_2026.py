"""The official `dashscope` SDK (2.0.2, unmodified) and the docs' curl bodies (2026 spec Appendix A)
against the served emulator, for the messages-based models."""

from __future__ import annotations

import io
import time
from http import HTTPStatus

import httpx
import pytest
from PIL import Image

from wanx_nb.emulator import EmulatorSettings, running_server

dashscope = pytest.importorskip("dashscope")
from dashscope import MultiModalConversation  # noqa: E402
from dashscope.aigc.image_generation import ImageGeneration  # noqa: E402

from .doc_examples_2026 import DOC_EXAMPLES  # noqa: E402

KEY = "sk-sdk-test"


@pytest.fixture(scope="module")
def server():
    # time_scale 0.02: a wan2.6 task takes about half a second, so wait() polls it through RUNNING.
    with running_server(EmulatorSettings(time_scale=0.02, rate_limits=False)) as live:
        yield live


@pytest.fixture
def sdk_at(monkeypatch):
    def point(base_url: str) -> None:
        monkeypatch.setattr(dashscope, "base_http_api_url", base_url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    return point


def messages(text: str = "一间有着精致窗户的花店") -> list[dict]:
    return [{"role": "user", "content": [{"text": text}]}]


def image_size(url: str) -> tuple[int, int]:
    response = httpx.get(url, trust_env=False)
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content)).size


def images_of(output) -> list[str]:
    return [item["image"] for choice in output["choices"] for item in choice["message"]["content"] if "image" in item]


def test_image_generation_call_wan26_sync(server, sdk_at):
    sdk_at(server.base_url)
    rsp = ImageGeneration.call(model="wan2.6-t2i", api_key=KEY, messages=messages(), negative_prompt="",
                               prompt_extend=True, watermark=False, n=1, size="1280*1280")  # fmt: skip
    assert rsp.status_code == HTTPStatus.OK, rsp
    (url,) = images_of(rsp.output)
    assert image_size(url) == (1280, 1280)
    assert rsp.usage["image_count"] == 1


@pytest.mark.parametrize(("model", "extra"), [("wan2.6-t2i", {"size": "1280*1280", "n": 1}),
                                              ("wan2.7-image", {"size": "1K", "n": 1}),
                                              ("qwen-image-3.0-pro", {"prompt_extend": True})])  # fmt: skip
def test_image_generation_async_call_and_wait(server, sdk_at, model, extra):
    sdk_at(server.base_url)
    created = ImageGeneration.async_call(model=model, api_key=KEY, messages=messages(), **extra)
    assert created.status_code == HTTPStatus.OK, created
    assert created.output.task_status == "PENDING"
    done = ImageGeneration.wait(created, api_key=KEY)
    assert done.status_code == HTTPStatus.OK, done
    assert done.output["task_status"] == "SUCCEEDED"
    (url,) = images_of(done.output)
    assert image_size(url) == (1024, 1024) if model != "wan2.6-t2i" else image_size(url) == (1280, 1280)
    sent = [r for r in server.emulator.requests("create") if r.json and r.json.get("model") == model][-1]
    assert sent.json["parameters"]["is_async"] is True  # the SDK's leak is tolerated (2026 §10.1)


@pytest.mark.parametrize(
    ("model", "size", "expected"),
    [("qwen-image-max", "1664*928", (1664, 928)), ("qwen-image-plus", "1328*1328", (1328, 1328)),
     ("qwen-image-2.0", "1024*1024", (1024, 1024)), ("z-image-turbo", "1024*1536", (1024, 1536)),
     ("wan2.7-image-pro", "2K", (2048, 2048))],
)  # fmt: skip
def test_multimodal_conversation_call(server, sdk_at, model, size, expected):
    sdk_at(server.base_url)
    extra = {} if model == "z-image-turbo" else {"watermark": False}
    rsp = MultiModalConversation.call(api_key=KEY, model=model, messages=messages(), result_format="message",
                                      stream=False, prompt_extend=False, negative_prompt="低分辨率", size=size,
                                      n=1, seed=42, **extra)  # fmt: skip
    assert rsp.status_code == HTTPStatus.OK, rsp
    (url,) = images_of(rsp.output)
    assert image_size(url) == expected


def test_the_sdk_sees_a_sync_only_model_refuse_the_async_call(server, sdk_at):
    sdk_at(server.base_url)
    rsp = ImageGeneration.async_call(model="qwen-image-max", api_key=KEY, messages=messages())
    assert rsp.status_code == 403 and rsp.code == "AccessDenied"
    assert "does not support asynchronous calls" in rsp.message


# ---- the docs' curl bodies, sent as written (Appendix A) -------------------------------------------------------


@pytest.mark.parametrize("name", list(DOC_EXAMPLES))
def test_doc_examples_get_answers_shaped_like_the_docs(server, name):
    example = DOC_EXAMPLES[name]
    headers = {"Authorization": f"Bearer {KEY}", **({"X-DashScope-Async": "enable"} if example["async"] else {})}
    with httpx.Client(base_url=server.origin, trust_env=False, timeout=60) as http:
        response = http.post(example["path"], json=example["body"], headers=headers)
        assert response.status_code == 200, response.text
        answer = response.json()
        if example["async"]:  # poll until the task ends, as the docs say (the server runs on the real clock)
            task_id = answer["output"]["task_id"]
            for _ in range(600):
                answer = http.get(f"/api/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {KEY}"}).json()
                if answer["output"]["task_status"] not in ("PENDING", "RUNNING"):
                    break
                time.sleep(0.02)
            assert answer["output"]["task_status"] == "SUCCEEDED", answer
    shape = example.get("shape")
    if shape is None:  # A9: the legacy task API answers results, not choices
        assert {"orig_prompt", "url"} <= set(answer["output"]["results"][0])
        return
    assert sorted(answer) == shape["top"]
    expected_output = set(shape["output"])
    if example["async"]:  # the query answer's task fields, which the docs' examples show with the result
        expected_output |= {"task_id", "task_status", "submit_time", "scheduled_time", "end_time"}
    assert set(answer["output"]) == expected_output
    assert sorted(answer["usage"]) == shape["usage"]
    message = answer["output"]["choices"][0]["message"]
    assert sorted(message) == shape["message"]
    assert [sorted(item) for item in message["content"]] == shape["content"]
