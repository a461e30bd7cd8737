"""The wire mapping: requests built, responses and errors parsed (no I/O)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from wanx_nb._exceptions import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ContentInspectionError,
    RateLimitError,
    ServerError,
    UnsupportedOperationError,
)
from wanx_nb._models import TaskStatus
from wanx_nb._protocol import (
    CREATE_PATH,
    build_cancel,
    build_create,
    build_query,
    image_results,
    is_local_path,
    parse_error,
    parse_task,
    status_error,
)
from wanx_nb._protocol_list import build_list, format_list_time, parse_task_page
from wanx_nb._protocol_upload import build_policy, parse_policy, upload_form
from wanx_nb._request import GenerationRequest



def test_create_request_has_the_async_headers_and_the_body():
    req = GenerationRequest("一只猫", model="wanx2.1-t2i-turbo", n=2, size="1024x768", seed=7)
    wire = build_create(req, wire_model="wan2.1-t2i-turbo")
    assert (wire.method, wire.path) == ("POST", CREATE_PATH)
    assert "Authorization" not in wire.headers  # added at send time by the client's httpx.Auth
    assert wire.headers["Content-Type"] == "application/json"
    assert wire.headers["X-DashScope-Async"] == "enable"
    assert "X-DashScope-WorkSpace" not in wire.headers
    assert "X-DashScope-OssResourceResolve" not in wire.headers
    assert wire.json == {
        "model": "wan2.1-t2i-turbo",
        "input": {"prompt": "一只猫"},
        "parameters": {"n": 2, "size": "1024*768", "seed": 7},
    }


def test_create_request_sends_workspace_and_oss_resolve_when_needed():
    req = GenerationRequest("x", model="wanx-v1", ref_img="oss://dashscope-instant/a/b.png")
    wire = build_create(req, workspace="llm-abc")
    assert wire.headers["X-DashScope-WorkSpace"] == "llm-abc"
    assert wire.headers["X-DashScope-OssResourceResolve"] == "enable"
    assert wire.json["input"]["ref_img"] == "oss://dashscope-instant/a/b.png"
    http = build_create(req.replace(ref_img="https://example.com/a.png"))
    assert "X-DashScope-OssResourceResolve" not in http.headers


def test_wire_requests_never_carry_a_key():
    wire = build_query("t-1")
    assert repr(wire) == "<WireRequest GET /tasks/t-1>"
    for built in (wire, build_cancel("t-1"), build_list(), build_policy("wanx-v1"),
                  build_create(GenerationRequest("x", model="wanx-v1"))):
        assert "Authorization" not in built.headers


def test_query_and_cancel_have_no_content_type_and_refuse_path_tricks():
    assert build_query("abc-1").path == "/tasks/abc-1"
    cancel = build_cancel("abc-1")
    assert (cancel.method, cancel.path, cancel.json) == ("POST", "/tasks/abc-1/cancel", None)
    assert "Content-Type" not in cancel.headers
    for bad in ("", "../uploads", "a/b", "a?b=1"):
        with pytest.raises(ValueError):
            build_query(bad)


@pytest.mark.parametrize(
    ("value", "local"),
    [("/tmp/a.png", True), ("file:///tmp/a.png", True), ("a.png", True), ("oss://x/y", False),
     ("https://e.com/a.png", False), ("http://e.com/a.png", False)],
)
def test_is_local_path_follows_the_sdk_rule(value, local):
    assert is_local_path(value) is local


def test_parse_task_v2_succeeded_keeps_prompts_metrics_and_usage():
    body = {
        "request_id": "r1",
        "output": {
            "task_id": "t1", "task_status": "SUCCEEDED", "submit_time": "2025-01-08 16:03:59.840",
            "scheduled_time": "2025-01-08 16:03:59.863", "end_time": "2025-01-08 16:04:10.660",
            "results": [{"orig_prompt": "花店", "actual_prompt": "精致的花店", "url": "https://h/1.png"}],
            "task_metrics": {"TOTAL": 1, "SUCCEEDED": 1, "FAILED": 0},
        },
        "usage": {"image_count": 1},
    }
    task = parse_task(body)
    assert task.status is TaskStatus.SUCCEEDED and task.task_id == "t1" and task.request_id == "r1"
    assert task.results[0]["actual_prompt"] == "精致的花店"
    assert task.metrics == {"TOTAL": 1, "SUCCEEDED": 1, "FAILED": 0}
    assert task.usage == {"image_count": 1} and task.image_count == 1
    assert task.end_time == "2025-01-08 16:04:10.660"
    assert task.emulator is False
    assert parse_task(body, emulator=True).emulator is True


def test_parse_task_failed_and_unknown_and_odd_status():
    failed = parse_task({"output": {"task_id": "t", "task_status": "FAILED", "code": "InvalidParameter",
                                    "message": "The size is not match"}})
    assert failed.status is TaskStatus.FAILED
    assert (failed.code, failed.message) == ("InvalidParameter", "The size is not match")
    assert parse_task({"output": {"task_id": "t", "task_status": "UNKNOWN"}}).status is TaskStatus.UNKNOWN
    # A status this client does not know must not end the task (it may still run and be billed).
    with pytest.raises(APIError) as odd:
        parse_task({"output": {"task_id": "t", "task_status": "WEIRD"}})
    assert (odd.value.code, odd.value.task_id) == ("UnrecognisedStatus", "t") and "resume" in str(odd.value)
    assert parse_task({"output": {"task_id": "t", "task_status": "PENDING"}}).status is TaskStatus.PENDING


def test_parse_task_rejects_bodies_without_a_task():
    with pytest.raises(APIError, match="no 'output'"):
        parse_task({"code": "X", "message": "y"})
    with pytest.raises(APIError, match="no task_id"):
        parse_task({"output": {"task_status": "PENDING"}})


def test_image_results_give_seed_plus_i_and_the_effective_size_and_keep_failures():
    body = {"output": {"task_id": "t", "task_status": "SUCCEEDED", "results": [
        {"url": "https://h/a1.png"},
        {"code": "InternalError.Timeout", "message": "An internal timeout error has occured"},
    ]}, "usage": {"image_count": 1}}
    task = parse_task(body)
    images = image_results(task, GenerationRequest("x", model="wanx-v1", n=2, seed=100))
    assert [(im.index, im.seed, im.size, im.ok) for im in images] == [
        (0, 100, "1024*1024", True), (1, 101, "1024*1024", False)]
    assert images[1].code == "InternalError.Timeout" and "occured" in images[1].message


def test_parse_error_reads_code_message_or_msg_and_request_id():
    info = parse_error(b'{"code":"InvalidApiKey","message":"Invalid API-key provided.","request_id":"r9"}')
    assert (info.code, info.message, info.request_id) == ("InvalidApiKey", "Invalid API-key provided.", "r9")
    info = parse_error(json.dumps({"code": "Throttling", "msg": "限流了"}).encode())
    assert (info.code, info.message) == ("Throttling", "限流了")


def test_parse_error_non_json_gives_no_code_and_the_raw_text():
    info = parse_error(b"<html>502 Bad Gateway</html>\n", {"x-request-id": "hdr-1"})
    assert info.code is None and info.message == "<html>502 Bad Gateway</html>" and info.request_id == "hdr-1"


def test_parse_error_reads_oss_xml():
    xml = b"<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>Request has expired.</Message>" \
          b"<RequestId>oss-1</RequestId></Error>"
    info = parse_error(xml)
    assert (info.code, info.message, info.request_id) == ("AccessDenied", "Request has expired.", "oss-1")


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [(401, "InvalidApiKey", AuthenticationError), (400, "InvalidParameter", BadRequestError),
     (400, "DataInspectionFailed", ContentInspectionError), (429, "Throttling.RateQuota", RateLimitError),
     (500, "InternalError", ServerError), (503, None, ServerError),
     (400, "UnsupportedOperation", UnsupportedOperationError)],
)
def test_status_error_picks_the_typed_error_and_keeps_the_message_verbatim(status, code, cls):
    body = json.dumps({"code": code, "message": "服务器说的话", "request_id": "r-1"}).encode()
    err = status_error(status, body, method="GET", url="https://h/api/v1/tasks/t-1?x=1", task_id="t-1")
    assert type(err) is cls
    assert err.status_code == status and err.code == code and err.request_id == "r-1" and err.task_id == "t-1"
    assert err.server_message == "服务器说的话" and "服务器说的话" in str(err)
    assert "?x=1" not in str(err)


def test_list_request_params_in_sdk_order_and_time_format():
    aware = dt.datetime(2025, 1, 8, 8, 0, 0, tzinfo=dt.timezone.utc)  # 16:00 in Beijing
    wire = build_list(page_no=2, page_size=5, start_time=aware, end_time="20250109000000",
                      model_name="wanx-v1", status=TaskStatus.SUCCEEDED)
    assert (wire.method, wire.path) == ("GET", "/tasks")
    assert list(wire.params.items()) == [
        ("page_no", "2"), ("page_size", "5"), ("start_time", "20250108160000"),
        ("end_time", "20250109000000"), ("model_name", "wanx-v1"), ("status", "SUCCEEDED")]
    assert build_list().params == {"page_no": "1", "page_size": "10"}
    assert format_list_time(dt.date(2025, 1, 8)) == "20250108000000"
    assert format_list_time(dt.datetime(2025, 1, 8, 1, 2, 3)) == "20250108010203"


def test_parse_task_page_accepts_data_and_tasks():
    row = {"task_id": "t1", "status": "SUCCEEDED", "model_name": "wanx-v1", "gmt_create": 1736323200000,
           "start_time": 1736323201000, "end_time": 1736323231000, "region": "cn-beijing", "request_id": "r"}
    page = parse_task_page({"total": 11, "data": [row], "total_page": 2, "page_no": 1, "request_id": "x",
                            "page_size": 10})
    assert (page.total, page.page_no, page.page_size, page.total_page) == (11, 1, 10, 2)
    (item,) = page.items
    assert item.task_id == "t1" and item.status is TaskStatus.SUCCEEDED and item.request_id == "r"
    assert item.listed is not None and item.listed.model_name == "wanx-v1" and item.listed.region == "cn-beijing"
    assert item.listed.created == dt.datetime(2025, 1, 8, 8, 0, tzinfo=dt.timezone.utc)
    alt = parse_task_page({"total": 1, "tasks": [row], "page_no": 1, "page_size": 10})
    assert [i.task_id for i in alt] == ["t1"] and alt.total_page == 1 and len(alt) == 1
    assert parse_task_page({"total": 0, "data": [], "page_no": 1, "page_size": 10}).items == ()


def test_policy_and_upload_form_follow_the_sdk():
    body = {"data": {"policy": "cG9s", "signature": "c2ln", "upload_dir": "dashscope-instant/h/2025-01-08/u",
                     "upload_host": "https://dashscope-file-mgr.oss-cn-beijing.aliyuncs.com",
                     "expire_in_seconds": 300, "max_file_size_mb": 1024, "capacity_limit_mb": 999999999,
                     "oss_access_key_id": "LTAI", "x_oss_object_acl": "private", "x_oss_forbid_overwrite": "true"},
            "request_id": "r"}
    policy = parse_policy(body)
    assert policy.upload_host.endswith("aliyuncs.com") and policy.expire_in_seconds == 300
    key, fields = upload_form(policy, "cat.png", "image/png")
    assert key == "dashscope-instant/h/2025-01-08/u/cat.png"
    assert list(fields) == ["OSSAccessKeyId", "Signature", "policy", "key", "x-oss-object-acl",
                            "x-oss-forbid-overwrite", "success_action_status", "x-oss-content-type"]
    assert fields["key"] == key and fields["success_action_status"] == "200"
    assert upload_form(policy, "x.bin", None)[1]["x-oss-content-type"] == "application/octet-stream"
    with pytest.raises(APIError):
        parse_policy({"data": {"policy": "p"}})


def test_policy_request():
    wire = build_policy("wanx-v1")
    assert (wire.method, wire.path, wire.params) == ("GET", "/uploads", {"action": "getPolicy", "model": "wanx-v1"})
