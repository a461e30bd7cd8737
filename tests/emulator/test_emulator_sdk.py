"""The official `dashscope` SDK (2.0.2, test-only) against the served emulator: an independent client
of the same wire contract, so these tests catch emulator drift from what real clients send and read."""

from __future__ import annotations

import io
from http import HTTPStatus

import httpx
import pytest
from PIL import Image

from wanx_nb.emulator import Emulator, EmulatorSettings, running_server

dashscope = pytest.importorskip("dashscope")
from dashscope import ImageSynthesis  # noqa: E402
from dashscope.common.error import InvalidTask  # noqa: E402

KEY = "sk-sdk-test"
MODELS = ["wanx2.1-t2i-plus", "wanx2.1-t2i-turbo", "wanx2.0-t2i-turbo", "wanx-v1"]


@pytest.fixture(scope="module")
def server():
    # time_scale 0.02: a plus task takes 0.57 s, so the SDK's 1 s poll sees RUNNING and then SUCCEEDED.
    with running_server(EmulatorSettings(time_scale=0.02, rate_limits=False)) as live:
        yield live


@pytest.fixture
def sdk_at(monkeypatch):
    """Point the SDK at a base URL; the SDK reads dashscope.base_http_api_url on every call."""

    def point(base_url: str) -> None:
        monkeypatch.setattr(dashscope, "base_http_api_url", base_url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # requests must not send loopback to a proxy

    return point


def download(url: str) -> Image.Image:
    response = httpx.get(url, trust_env=False)
    assert response.status_code == 200
    return Image.open(io.BytesIO(response.content))


@pytest.mark.parametrize("model", MODELS)
def test_sdk_call_async_call_fetch_wait_and_list(server, sdk_at, model):
    sdk_at(server.base_url)
    extra = {"style": "<watercolor>"} if model == "wanx-v1" else {"prompt_extend": False, "watermark": True}
    rsp = ImageSynthesis.call(
        api_key=KEY, model=model, prompt="一间有着精致窗户的花店", n=1, size="1024*1024", seed=7, **extra
    )
    assert rsp.status_code == HTTPStatus.OK, rsp
    assert rsp.output.task_status == "SUCCEEDED"
    assert rsp.usage.image_count == 1
    (result,) = rsp.output.results
    assert download(result.url).size == (1024, 1024)
    task = server.emulator.tasks[rsp.output.task_id]
    assert task.seed == 7 and (task.style == "<watercolor>" if model == "wanx-v1" else task.watermark)

    created = ImageSynthesis.async_call(
        api_key=KEY, model=model, prompt="a lighthouse", n=2, size="1280*720" if model == "wanx-v1" else "768*1024"
    )
    assert created.status_code == HTTPStatus.OK and created.output.task_status == "PENDING"
    fetched = ImageSynthesis.fetch(created, api_key=KEY)
    assert fetched.output.task_status in ("PENDING", "RUNNING", "SUCCEEDED")
    done = ImageSynthesis.wait(created, api_key=KEY)
    assert done.output.task_status == "SUCCEEDED" and done.usage.image_count == 2
    if model != "wanx-v1":
        assert done.output.results[0].actual_prompt.startswith("a lighthouse, with ")  # prompt_extend defaults on

    listed = ImageSynthesis.list(api_key=KEY, model_name=model, page_size=50)
    assert listed.status_code == HTTPStatus.OK
    ids = {item["task_id"] for item in listed.output["data"]}
    assert {rsp.output.task_id, created.output.task_id} <= ids


def test_sdk_cancel_pending_and_running_tasks(sdk_at):
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=1.0))
    with running_server(emulator=emulator) as live:
        sdk_at(live.base_url)
        running = ImageSynthesis.async_call(api_key=KEY, model="wanx-v1", prompt="x", n=1)
        queued = ImageSynthesis.async_call(api_key=KEY, model="wanx-v1", prompt="y", n=1)
        cancel = ImageSynthesis.cancel(queued, api_key=KEY)
        assert cancel.status_code == HTTPStatus.OK
        assert ImageSynthesis.fetch(queued, api_key=KEY).output.task_status == "CANCELED"
        refused = ImageSynthesis.cancel(running, api_key=KEY)
        assert refused.status_code == HTTPStatus.BAD_REQUEST and refused.code == "UnsupportedOperation"
        emulator.advance(30)
        assert ImageSynthesis.wait(running, api_key=KEY).output.task_status == "SUCCEEDED"
        listed = ImageSynthesis.list(api_key=KEY, status="CANCELED")
        assert [item["task_id"] for item in listed.output["data"]] == [queued.output.task_id]


def test_sdk_sees_errors_as_the_real_service_gives_them(server, sdk_at):
    sdk_at(server.base_url)
    bad_key = ImageSynthesis.async_call(api_key="sk-invalid", model="wanx-v1", prompt="x")
    assert (bad_key.status_code, bad_key.code, bad_key.message) == (401, "InvalidApiKey", "Invalid API-key provided.")
    with pytest.raises(InvalidTask):
        ImageSynthesis.call(api_key=KEY, model="wanx9", prompt="x")
    failed = ImageSynthesis.call(api_key=KEY, model="wanx-v1", prompt="x", size="512*512")
    assert failed.status_code == HTTPStatus.OK  # a failed task is a 200 with the failure inside
    assert (failed.output.task_status, failed.output.code) == ("FAILED", "InvalidParameter")
    unknown = ImageSynthesis.fetch("00000000-0000-4000-8000-000000000000", api_key=KEY)
    assert unknown.output.task_status == "UNKNOWN"


def test_sdk_uploads_a_local_reference_image(server, sdk_at, tmp_path):
    sdk_at(server.base_url)
    reference = tmp_path / "girl.png"
    Image.new("RGB", (300, 400), (200, 30, 30)).save(reference)
    rsp = ImageSynthesis.call(
        api_key=KEY, model="wanx-v1", prompt="a portrait", n=1, ref_img=str(reference), ref_strength=1.0
    )
    assert rsp.status_code == HTTPStatus.OK and rsp.output.task_status == "SUCCEEDED", rsp
    task = server.emulator.tasks[rsp.output.task_id]
    assert task.ref == reference.read_bytes()
    (create,) = [
        r for r in server.emulator.requests("create") if r.json["input"].get("ref_img", "").startswith("oss://")
    ]
    assert create.headers["x-dashscope-ossresourceresolve"] == "enable"
    assert create.json["input"]["ref_img"].endswith("/girl.png")
    r, g, b = download(rsp.output.results[0].url).convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    assert r > g and r > b  # the red reference dominates at strength 1
