"""Every fault kind the fault matrix needs (issue 7): before or after the side effect, per route."""

from __future__ import annotations

import io
import struct
import zlib

import httpx
import pytest
from PIL import Image

from wanx_nb.emulator import Emulator, EmulatorSettings, Fault

from .conftest import ASYNC, CREATE, task_id_of
from .test_emulator_create import assert_error


@pytest.fixture
def settings() -> EmulatorSettings:
    return EmulatorSettings(clock="fake", time_scale=0.0)  # tasks end the moment they are created


@pytest.fixture
async def plain(emulator):
    """A client for result URLs: no Authorization header, as the object store requires."""
    async with httpx.AsyncClient(transport=emulator.transport()) as http:
        yield http


async def url_of(submit, client) -> str:
    task_id = task_id_of(await submit(n=1))
    return (await client.get(f"/tasks/{task_id}")).json()["output"]["results"][0]["url"]


@pytest.mark.parametrize(("status", "code"), [(500, "InternalError"), (502, "BadGateway"), (504, "GatewayTimeout")])
async def test_status_after_the_side_effect_still_creates_the_task(submit, emulator, status, code):
    emulator.script("create", Fault.status(status, after=True))
    assert_error(await submit(), status, code)
    assert len(emulator.tasks) == 1  # created and billable: a blind retry would pay twice


async def test_status_before_the_side_effect_creates_nothing(submit, emulator):
    emulator.script("create", Fault.status(500))
    assert_error(await submit(), 500, "InternalError")
    assert emulator.tasks == {}


async def test_429_with_and_without_retry_after(submit, emulator):
    emulator.script("create", Fault.status(429, retry_after=2.5), Fault.status(429))
    with_hint, without = await submit(), await submit()
    assert with_hint.headers["Retry-After"] == "3"  # whole seconds, rounded up
    assert_error(without, 429, "Throttling.RateQuota")
    assert "Retry-After" not in without.headers


@pytest.mark.parametrize("after", [False, True])
async def test_a_200_that_is_not_json(submit, emulator, after):
    emulator.script("create", Fault.body(after=after))
    response = await submit()
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    with pytest.raises(ValueError):
        response.json()
    assert len(emulator.tasks) == (1 if after else 0)


async def test_in_process_drop_after_on_create_leaves_the_task(submit, emulator):
    emulator.script("create", Fault.drop_after())
    with pytest.raises(httpx.ReadTimeout):
        await submit()
    (task,) = emulator.tasks.values()
    assert task.prompt == "a red fox in the snow"


async def test_truncated_image_with_an_honest_length(submit, client, emulator, plain):
    url = await url_of(submit, client)
    whole = (await plain.get(url)).content
    emulator.script("image", Fault.truncated(0.5))
    cut = await plain.get(url)
    assert cut.status_code == 200 and cut.content == whole[: len(whole) // 2]
    assert int(cut.headers["content-length"]) == len(cut.content)
    with pytest.raises(OSError):
        Image.open(io.BytesIO(cut.content)).load()


async def test_truncated_image_with_a_dishonest_length_ends_the_connection(submit, client, emulator, plain):
    url = await url_of(submit, client)
    emulator.script("image", Fault.truncated(0.5, honest_length=False))
    with pytest.raises(httpx.RemoteProtocolError):
        await plain.get(url)
    assert (await plain.get(url)).status_code == 200  # the URL itself is fine: a retry succeeds


async def test_corrupt_image_keeps_its_length_but_not_its_pixels(submit, client, emulator, plain):
    url = await url_of(submit, client)
    whole = (await plain.get(url)).content
    emulator.script("image", Fault.corrupt())
    bad = (await plain.get(url)).content
    assert len(bad) == len(whole) and bad != whole and bad[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(Exception):  # zlib or CRC errors surface as various Pillow exceptions
        Image.open(io.BytesIO(bad)).load()


async def test_an_html_page_instead_of_the_image(submit, client, emulator, plain):
    url = await url_of(submit, client)
    emulator.script("image", Fault.body())
    page = await plain.get(url)
    assert page.status_code == 200 and page.content.startswith(b"<!DOCTYPE html>")


async def test_expired_url_is_the_object_stores_access_denied(submit, client, emulator, plain):
    url = await url_of(submit, client)
    emulator.script("image", Fault.url_expired())
    response = await plain.get(url)
    assert response.status_code == 403 and response.headers["content-type"] == "application/xml"
    assert "<Code>AccessDenied</Code>" in response.text and "<Message>Request has expired.</Message>" in response.text
    assert "<Expires>" in response.text and "<ServerTime>" in response.text


async def test_404_on_the_image_route_is_no_such_key(submit, client, emulator, plain):
    url = await url_of(submit, client)
    emulator.script("image", Fault.status(404))
    response = await plain.get(url)
    assert response.status_code == 404 and "<Code>NoSuchKey</Code>" in response.text


async def test_decompression_bomb_is_a_small_valid_png_of_400_megapixels(submit, client, emulator, plain):
    url = await url_of(submit, client)
    emulator.script("image", Fault.decompression_bomb())
    response = await plain.get(url)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert len(response.content) < 200_000
    assert struct.unpack(">II", response.content[16:24]) == (20000, 20000)  # IHDR width, height
    assert zlib.decompressobj().decompress(response.content[41:200], 100) == b"\x00" * 100  # real pixel rows
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(response.content))  # Pillow's own guard refuses it outright


@pytest.mark.parametrize("value", ["QUEUED", "UNKNOWN"])
async def test_query_answers_a_scripted_task_status(submit, client, emulator, value):
    task_id = task_id_of(await submit(n=1))
    emulator.script("query", Fault.task_status(value))
    body = (await client.get(f"/tasks/{task_id}")).json()
    assert body["output"]["task_status"] == value and body["output"]["task_id"] == task_id
    if value == "UNKNOWN":
        assert set(body["output"]) == {"task_id", "task_status"} and "usage" not in body
    assert (await client.get(f"/tasks/{task_id}")).json()["output"]["task_status"] == "SUCCEEDED"


async def test_outcome_failed(submit, client, emulator):
    emulator.script("create", Fault.outcome("FAILED", code="InternalError.Algo", message="algo failed"))
    output = (await client.get(f"/tasks/{task_id_of(await submit(n=2))}")).json()["output"]
    assert (output["task_status"], output["code"], output["message"]) == ("FAILED", "InternalError.Algo", "algo failed")


async def test_outcome_partial_with_a_per_image_code(submit, client, emulator):
    emulator.script("create", Fault.outcome("PARTIAL", failed=(0, 2), code="DataInspectionFailed"))
    body = (await client.get(f"/tasks/{task_id_of(await submit(n=3))}")).json()
    results = body["output"]["results"]
    assert [r.get("code") for r in results] == ["DataInspectionFailed", None, "DataInspectionFailed"]
    assert "url" in results[1] and body["usage"] == {"image_count": 1}
    assert body["output"]["task_metrics"] == {"TOTAL": 3, "SUCCEEDED": 1, "FAILED": 2}


async def test_outcome_unknown_loses_the_task(submit, client, emulator):
    emulator.script("create", Fault.outcome("UNKNOWN"))
    task_id = task_id_of(await submit(n=1))
    assert task_id in emulator.tasks  # it was created (and may be billed) ...
    assert (await client.get(f"/tasks/{task_id}")).json()["output"]["task_status"] == "UNKNOWN"  # ... then lost
    assert (await client.get("/tasks")).json()["total"] == 0


def test_a_fault_on_a_route_where_it_cannot_act_is_refused():
    emulator = Emulator(EmulatorSettings(clock="fake"))
    with pytest.raises(ValueError, match="'task_status' fault acts only on the query route, not 'image'"):
        emulator.script("image", Fault.task_status("QUEUED"))
    with pytest.raises(ValueError, match="outcome"):
        emulator.script("query", Fault.outcome("FAILED"))
    with pytest.raises(ValueError, match="unknown route 'download'"):
        emulator.script("download", Fault.corrupt())
    with pytest.raises(ValueError, match="outcome takes one of FAILED, PARTIAL, UNKNOWN"):
        Fault.outcome("LOST")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Fault objects"):
        emulator.script("create", 500)  # type: ignore[arg-type]


def test_the_bomb_is_a_well_formed_png():
    from wanx_nb.emulator._faults import decompression_bomb_png

    with Image.open(io.BytesIO(decompression_bomb_png(3001, 2002))) as small:  # same builder, decodable size
        small.load()
        assert small.size == (3001, 2002) and small.mode == "1" and small.getextrema() == (0, 0)


async def test_a_cancel_that_happened_but_answered_500():
    slow = Emulator(EmulatorSettings(clock="fake", pending_seconds=60))
    async with slow.client() as http:
        created = await http.post(CREATE, json={"model": "wanx-v1", "input": {"prompt": "x"}}, headers=ASYNC)
        task_id = task_id_of(created)
        slow.script("cancel", Fault.status(500, after=True))
        assert_error(await http.post(f"/tasks/{task_id}/cancel"), 500, "InternalError")
        assert (await http.get(f"/tasks/{task_id}")).json()["output"]["task_status"] == "CANCELED"


async def test_list_answers_html_after_reading_the_tasks(client, emulator, submit):
    task_id_of(await submit(n=1))
    emulator.script("list", Fault.body(status=502))
    response = await client.get("/tasks")
    assert response.status_code == 502 and response.text.startswith("<!DOCTYPE html>")
    assert (await client.get("/tasks")).json()["total"] == 1


async def test_the_sync_call_dropped_after_the_image_was_made(client, emulator):
    emulator.script("generate", Fault.drop_after())
    payload = {"model": "qwen-image-max", "input": {"messages": [{"role": "user", "content": [{"text": "x"}]}]}}
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/services/aigc/multimodal-generation/generation", json=payload)
    assert len(emulator.tasks) == 1  # made and billed, and a sync call has no task id to look up
