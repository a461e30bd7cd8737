"""GET /uploads?action=getPolicy, the OSS form upload, and oss:// references on create."""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
from PIL import Image

from .conftest import task_id_of
from .test_emulator_create import assert_error


def png_bytes(colour=(0, 128, 255)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (256, 256), colour).save(out, "PNG")
    return out.getvalue()


async def get_policy(client: httpx.AsyncClient, model: str = "wanx-v1") -> dict:
    response = await client.get("/uploads", params={"action": "getPolicy", "model": model})
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def upload(emulator, issued: dict, data: bytes, name: str = "girl.png", **overrides: str) -> httpx.Response:
    """POST the form exactly as dashscope's OssUtils.upload builds it (field order included)."""
    form = {
        "OSSAccessKeyId": issued["oss_access_key_id"],
        "Signature": issued["signature"],
        "policy": issued["policy"],
        "key": f"{issued['upload_dir']}/{name}",
        "x-oss-object-acl": issued["x_oss_object_acl"],
        "x-oss-forbid-overwrite": issued["x_oss_forbid_overwrite"],
        "success_action_status": "200",
        "x-oss-content-type": "image/png",
    }
    form.update(overrides)
    async with httpx.AsyncClient(transport=emulator.transport()) as http:
        return await http.post(issued["upload_host"], data=form, files={"file": (name, data)})


async def test_policy_has_the_recorded_shape(client, emulator):
    response = await client.get("/uploads", params={"action": "getPolicy", "model": "wanx-v1"})
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["data", "request_id"]
    data = body["data"]
    assert list(data) == [
        "policy", "signature", "upload_dir", "upload_host", "expire_in_seconds", "max_file_size_mb",
        "capacity_limit_mb", "oss_access_key_id", "x_oss_object_acl", "x_oss_forbid_overwrite",
    ]  # fmt: skip
    assert data["upload_host"] == "http://emulator.wanx-nb.invalid/emulator-oss"
    assert (data["expire_in_seconds"], data["x_oss_object_acl"], data["x_oss_forbid_overwrite"]) == (
        300,
        "private",
        "true",
    )
    assert data["upload_dir"].startswith("dashscope-instant/") and "/2025-01-08/" in data["upload_dir"]
    document = json.loads(base64.b64decode(data["policy"]))
    assert ["starts-with", "$key", data["upload_dir"]] in document["conditions"]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"action": "getPolicy"}, "InvalidParameter"),
        ({"action": "list", "model": "wanx-v1"}, "InvalidParameter"),
        ({"action": "getPolicy", "model": "nope"}, "InvalidParameter"),
    ],
)
async def test_policy_rejects_bad_requests(client, params, code):
    assert_error(await client.get("/uploads", params=params), 400, code)


async def test_policy_needs_an_api_key(emulator):
    async with emulator.client(api_key=None) as anonymous:
        response = await anonymous.get("/uploads", params={"action": "getPolicy", "model": "wanx-v1"})
    assert_error(response, 401, "InvalidApiKey", "No API-key provided.")


async def test_uploaded_file_is_usable_as_oss_url_with_the_resolve_header(client, emulator, submit):
    policy = await get_policy(client)
    data = png_bytes()
    response = await upload(emulator, policy, data)
    assert response.status_code == 200 and response.content == b""
    url = f"oss://{policy['upload_dir']}/girl.png"

    refused = await submit("wanx-v1", "x", input={"ref_img": url})
    assert_error(refused, 400, "InvalidURL", "X-DashScope-OssResourceResolve")

    accepted = await submit(
        "wanx-v1", "x", input={"ref_img": url}, headers={"X-DashScope-OssResourceResolve": "enable"}
    )
    assert emulator.tasks[task_id_of(accepted)].ref == data


@pytest.mark.parametrize("case", ["other_model", "other_account", "expired", "missing"])
async def test_oss_url_must_be_a_live_upload_of_this_account_and_model(client, emulator, submit, case):
    policy = await get_policy(client)
    assert (await upload(emulator, policy, png_bytes())).status_code == 200
    url = f"oss://{policy['upload_dir']}/girl.png"
    headers = {"X-DashScope-OssResourceResolve": "enable"}
    if case == "other_model":
        response = await submit("wanx2.1-t2i-turbo", "x", input={"ref_img": url}, headers=headers)
        assert response.status_code == 200  # V2 takes no reference image: the field is ignored
        # Bound to wanx-v1 at upload; a policy for another model makes another binding.
        other_policy = await get_policy(client, "wanx2.1-t2i-turbo")
        assert (await upload(emulator, other_policy, png_bytes())).status_code == 200
        url = f"oss://{other_policy['upload_dir']}/girl.png"
        response = await submit("wanx-v1", "x", input={"ref_img": url}, headers=headers)
    elif case == "other_account":
        async with emulator.client(api_key="sk-other") as other:
            response = await submit("wanx-v1", "x", input={"ref_img": url}, headers=headers, http=other)
    elif case == "expired":
        emulator.advance(48 * 3600 + 1)
        response = await submit("wanx-v1", "x", input={"ref_img": url}, headers=headers)
    else:
        response = await submit("wanx-v1", "x", input={"ref_img": url + ".missing"}, headers=headers)
    assert_error(response, 400, "InvalidParameter", "Failed to resolve oss://")


async def test_upload_that_is_not_an_image_is_refused_on_create(client, emulator, submit):
    policy = await get_policy(client)
    await upload(emulator, policy, b"just text", name="notes.txt")
    response = await submit(
        "wanx-v1",
        "x",
        input={"ref_img": f"oss://{policy['upload_dir']}/notes.txt"},
        headers={"X-DashScope-OssResourceResolve": "enable"},
    )
    assert_error(response, 415, "BadRequest.UnsupportedFileFormat")


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"Signature": "AAAA"}, 403, "SignatureDoesNotMatch"),
        ({"key": "dashscope-instant/elsewhere/girl.png"}, 403, "AccessDenied"),
        ({"policy": ""}, 400, "InvalidArgument"),
    ],
)
async def test_upload_is_checked_against_the_issued_policy(client, emulator, overrides, status, code):
    policy = await get_policy(client)
    response = await upload(emulator, policy, png_bytes(), **overrides)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/xml"
    assert f"<Code>{code}</Code>" in response.text
    assert emulator.backend.uploads == {}


async def test_upload_policy_expires_after_300_seconds(client, emulator):
    policy = await get_policy(client)
    emulator.advance(301)
    response = await upload(emulator, policy, png_bytes())
    assert response.status_code == 403 and "Policy expired" in response.text


async def test_upload_does_not_overwrite(client, emulator):
    policy = await get_policy(client)
    assert (await upload(emulator, policy, png_bytes())).status_code == 200
    again = await upload(emulator, policy, png_bytes((1, 2, 3)))
    assert again.status_code == 409 and "<Code>FileAlreadyExists</Code>" in again.text
