"""Survivors of the mutation run over the sans-I/O wire mapping (tools/mutation.py), killed by what a caller
relies on: every field of a task, a list page, an upload policy and an image result reaches the caller, and
each malformed answer is an APIError with code InvalidResponse (or UnrecognisedStatus) and the request id.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from wanx_nb._exceptions import APIError
from wanx_nb._models import Task, TaskStatus
from wanx_nb._protocol import (
    build_cancel,
    build_query,
    image_results,
    parse_error,
    parse_server_time,
    parse_size,
    parse_task,
    says_expired,
    status_error,
)
from wanx_nb._protocol_list import parse_task_page
from wanx_nb._protocol_upload import build_policy, parse_policy, upload_form
from wanx_nb._request import GenerationRequest


@pytest.mark.parametrize("body", [None, [], {"output": "x"}, {"request_id": "r"}])
def test_an_answer_without_an_output_object_is_an_invalid_response(body):
    with pytest.raises(APIError) as info:
        parse_task(body)
    assert info.value.code == "InvalidResponse" and "no 'output' object" in str(info.value)


def test_an_answer_without_a_task_id_is_an_invalid_response():
    with pytest.raises(APIError) as info:
        parse_task({"output": {"task_status": "PENDING"}, "request_id": "r-1"})
    assert info.value.code == "InvalidResponse" and "no task_id" in str(info.value)


def test_an_unknown_status_keeps_the_task_id_and_the_request_id_for_resume():
    with pytest.raises(APIError) as info:
        parse_task({"output": {"task_id": "t-9", "task_status": "PAUSED"}, "request_id": "r-9"})
    err = info.value
    assert (err.code, err.task_id, err.request_id) == ("UnrecognisedStatus", "t-9", "r-9")
    assert "task status 'PAUSED'" in str(err)


def test_every_field_of_a_task_answer_reaches_the_task():
    task = parse_task({
        "request_id": "r-1", "usage": {"image_count": 1},
        "output": {"task_id": "t-1", "task_status": "SUCCEEDED", "submit_time": "2025-01-08 16:00:00.000",
                   "scheduled_time": "2025-01-08 16:00:01.000", "end_time": "2025-01-08 16:00:09.000",
                   "results": [{"url": "https://x/1.png"}, "junk"], "task_metrics": {"TOTAL": 1}},
    })  # fmt: skip
    assert (task.task_id, task.status, task.request_id) == ("t-1", TaskStatus.SUCCEEDED, "r-1")
    assert (task.submit_time, task.scheduled_time, task.end_time) == (
        "2025-01-08 16:00:00.000", "2025-01-08 16:00:01.000", "2025-01-08 16:00:09.000")
    assert task.results == ({"url": "https://x/1.png"},) and task.metrics == {"TOTAL": 1}
    assert task.usage == {"image_count": 1}


def test_a_list_page_reads_data_or_tasks_inside_or_outside_an_output_wrapper():
    row = {"task_id": "t-1", "task_status": "RUNNING", "model_name": "wanx-v1", "gmt_create": "1736409600000",
           "start_time": 1736409601000, "end_time": None, "region": "cn-beijing", "request_id": "r-row"}
    for body in ({"request_id": "r", "data": [row], "total": 5, "page_size": 2, "page_no": 2},
                 {"request_id": "r", "output": {"tasks": [row], "total": 5, "page_size": 2, "page_no": 2}}):
        page = parse_task_page(body)
        (item,) = page.items
        assert (page.total, page.page_no, page.page_size, page.total_page, page.request_id) == (5, 2, 2, 3, "r")
        assert item.listed is not None
        assert (item.task_id, item.status, item.listed.model_name, item.listed.region, item.request_id) == (
            "t-1", TaskStatus.RUNNING, "wanx-v1", "cn-beijing", "r-row")
        assert (item.listed.gmt_create, item.listed.start_time, item.listed.end_time) == (
            1736409600000, 1736409601000, None)
    assert parse_task_page({"data": [{"task_id": "t", "status": "FAILED"}]}).items[0].status is TaskStatus.FAILED
    assert isinstance(parse_task_page({"total": 7, "page_size": 3, "data": []}).total_page, int)
    with pytest.raises(APIError) as info:
        parse_task_page(["not", "a", "page"])
    assert info.value.code == "InvalidResponse"


def test_an_upload_policy_keeps_every_field_and_the_services_defaults():
    data = {"upload_host": "https://oss", "upload_dir": "dashscope-instant/abc/", "policy": "p", "signature": "s",
            "oss_access_key_id": "k", "expire_in_seconds": "300", "max_file_size_mb": 100}
    for body in ({"data": data, "request_id": "r"}, {"output": data}):
        policy = parse_policy(body)
        assert (policy.upload_host, policy.upload_dir, policy.policy, policy.signature) == (
            "https://oss", "dashscope-instant/abc", "p", "s")
        assert (policy.oss_access_key_id, policy.x_oss_object_acl, policy.x_oss_forbid_overwrite) == ("k", "private", "true")
        assert (policy.expire_in_seconds, policy.max_file_size_mb) == (300, 100)
    with pytest.raises(APIError) as info:
        parse_policy({"request_id": "r"})
    assert info.value.code == "InvalidResponse" and "unexpected upload-policy response" in str(info.value)


def test_image_results_carry_prompts_seeds_and_say_why_an_item_has_no_image():
    task = Task("t-1", TaskStatus.SUCCEEDED, results=(
        {"url": "https://x/0.png", "orig_prompt": "fox", "actual_prompt": "a fox, detailed"},
        {"code": "DataInspectionFailed", "message": "blocked"}, {}))  # fmt: skip
    first, blocked, empty = image_results(task, GenerationRequest("fox", n=3, seed=7, size="1280x720"))
    assert (first.seed, first.size, first.orig_prompt, first.actual_prompt) == (7, "1280*720", "fox", "a fox, detailed")
    assert (blocked.seed, blocked.code, blocked.message) == (8, "DataInspectionFailed", "blocked")
    assert (empty.seed, empty.code, empty.message, empty.url) == (9, "NoImage", "the result item has no url", None)
    extra = image_results(Task("t", TaskStatus.SUCCEEDED, results=({"url": "u"},) * 2), GenerationRequest("f", n=1, seed=3))
    assert [im.seed for im in extra] == [3, 4]  # more items than asked: the seeds go on


def test_images_left_out_of_an_answer_leave_every_seed_unknown_rather_than_shifted():
    # The `choices` answers (2026 §4.2) list the images made only: with one of four missing, which
    # one is not said, so no image may claim seed + i in its provenance.
    made = Task("t", TaskStatus.SUCCEEDED, results=({"url": "u0"}, {"url": "u2"}, {"url": "u3"}))
    assert [im.seed for im in image_results(made, GenerationRequest("f", n=4, seed=3))] == [None, None, None]
    every = Task("t", TaskStatus.SUCCEEDED, results=({"url": "u0"}, {"url": "u1"}))
    assert [im.seed for im in image_results(every, GenerationRequest("f", n=2, seed=3))] == [3, 4]
    # A list that reports its failures in place (the task answer's layout) keeps its order: the seeds hold.
    reported = Task("t", TaskStatus.SUCCEEDED, results=({"url": "u0"}, {"code": "DataInspectionFailed"}))
    assert [im.seed for im in image_results(reported, GenerationRequest("f", n=3, seed=3))] == [3, 4]


# ---- the scheduler's bookkeeping -------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now, self.slept = 100.0, []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_a_free_submit_waits_nothing_and_a_throttle_is_never_shortened():
    from wanx_nb._scheduler import Scheduler

    clock = _Clock()
    scheduler = Scheduler(clock=lambda: clock.now, sleep=clock.sleep)
    assert scheduler.active("wanx-v1") == 0
    assert await scheduler.submit_turn("wanx-v1", 2) == 0.0 and clock.slept == []
    scheduler.throttled("wanx-v1", 30)
    scheduler.throttled("wanx-v1", 5)  # a later, shorter hint does not cut the first pause short
    scheduler.throttled("other-model", 100)  # another model's pause is its own
    assert await scheduler.submit_turn("wanx-v1", 2) == pytest.approx(30.0)


def test_a_task_behind_a_finished_one_starts_at_once_and_a_zero_duration_stays_zero():
    from wanx_nb._scheduler import Slot

    queue: dict = {}
    first, second = Slot(queue, 1), Slot(queue, 1)
    assert first.submitted("t-1", at=10.0, duration=0.0) == 10.0
    assert queue["t-1"] == (10.0, 10.0)  # a task the service says takes no time takes none here
    assert second.submitted("t-2", at=10.0, duration=5.0) == 10.0  # t-1 ends exactly when t-2 arrives


# ---- requests as built, error answers as read ------------------------------------------------------


def test_every_request_names_its_workspace_and_a_list_sends_each_filter():
    from wanx_nb._protocol import build_cancel, build_query
    from wanx_nb._protocol_list import build_list

    for wire in (build_cancel("t-1", workspace="ws-1"), build_query("t-1", workspace="ws-1"),
                 build_list(workspace="ws-1")):
        assert wire.headers == {"Accept": "application/json", "X-DashScope-WorkSpace": "ws-1"}
    wire = build_list(api_key_id="key-7", status="running", model_name="wanx-v1", region="cn-beijing")
    assert wire.params == {"page_no": "1", "page_size": "10", "model_name": "wanx-v1", "api_key_id": "key-7",
                           "region": "cn-beijing", "status": "RUNNING"}


def test_a_workspace_id_that_cannot_go_in_a_header_is_refused_before_any_call(monkeypatch):
    # Sent, it would fail inside httpx as the create goes out: a create that might have been billed.
    import httpx

    from wanx_nb._client import AsyncWanxClient
    from wanx_nb._exceptions import ConfigurationError

    transport = httpx.MockTransport(lambda r: httpx.Response(500))
    monkeypatch.setenv("DASHSCOPE_WORKSPACE_ID", "ws 1")
    with pytest.raises(ConfigurationError, match=r"workspace='ws 1' \(DASHSCOPE_WORKSPACE_ID\): a workspace id is"):
        AsyncWanxClient("sk-test-0000000", transport=transport)
    monkeypatch.setenv("DASHSCOPE_WORKSPACE_ID", " ws-1a2b\n")  # read from a file: its line break dropped
    assert AsyncWanxClient("sk-test-0000000", transport=transport).workspace == "ws-1a2b"


def test_an_error_answer_keeps_its_headers_and_a_bounded_body():
    from wanx_nb._protocol import parse_error, status_error

    long = "x" * 5000
    err = status_error(502, long, {"x-request-id": "r-7", "retry-after": "3"})  # as httpx gives them
    assert err.headers == {"x-request-id": "r-7", "retry-after": "3"} and err.request_id == "r-7"
    assert err.body == "x" * 4000 + "…"
    assert status_error(500, b"", None).headers == {} and status_error(500, b"").message
    xml = "  \n<Error><Code>AccessDenied</Code><Message>Request has expired.</Message></Error>"
    assert parse_error(xml.encode()).code == "AccessDenied"


def test_a_malformed_answer_is_quoted_in_full_up_to_200_characters():
    body = {"unexpected": "y" * 300}
    with pytest.raises(APIError) as info:
        parse_task(body)
    quoted = str(info.value).split("no 'output' object in ", 1)[1]
    assert len(quoted) == 200 and quoted.endswith("…")


def test_sizes_and_server_times_are_read_as_written():
    from wanx_nb._protocol import parse_server_time, parse_size

    assert parse_size("1024x768") == (1024, 768) and parse_size(" 720 * 1280 ") == (720, 1280)
    when = parse_server_time("2025-01-08 16:00:00.123")
    assert (when.year, when.month, when.day, when.minute, when.microsecond) == (2025, 1, 8, 0, 123000)


# ---- the survivors of the full run (tools/mutation.py protocol --full) -------------------------------


def test_a_malformed_answer_is_quoted_as_written_and_cut_only_past_200_characters():
    def quoted(body):
        with pytest.raises(APIError) as info:
            parse_task(body)
        return str(info.value).split("no 'output' object in ", 1)[1]

    # {"k": "..."} is 9 characters around the value: 191 fill it to exactly 200.
    exact, over = {"k": "y" * 191}, {"k": "y" * 192}
    assert quoted(exact) == '{"k": "' + "y" * 191 + '"}'  # 200 characters: whole
    assert quoted(over) == ('{"k": "' + "y" * 192 + '"}')[:199] + "…"
    assert quoted({"错误": "服务繁忙"}) == '{"错误": "服务繁忙"}'  # readable, not \\u escapes
    assert quoted("<html>busy</html>") == "<html>busy</html>"  # a JSON string answer, without JSON quotes


def test_each_malformed_answer_names_what_was_received():
    with pytest.raises(APIError, match="PENDING"):
        parse_task({"output": {"task_status": "PENDING"}})  # no task_id: the body is quoted
    with pytest.raises(APIError) as page:
        parse_task_page(["not", "a", "page"])
    assert '["not", "a", "page"]' in str(page.value)
    for body in (None, ["x"], "busy"):
        with pytest.raises(APIError) as policy:
            parse_policy(body)
        assert policy.value.code == "InvalidResponse"
    assert "busy" in str(policy.value)
    for data in ({"policy": "p"}, {"upload_host": "h", "upload_dir": "d", "policy": "p", "signature": "s"}):
        with pytest.raises(APIError) as lacking:
            parse_policy({"data": data})
        assert lacking.value.code == "InvalidResponse" and "upload policy lacks" in str(lacking.value)


def test_an_unknown_status_is_quoted_up_to_40_characters_with_what_happens_next():
    status = "S" * 40 + "TAIL"
    with pytest.raises(APIError) as info:
        parse_task({"output": {"task_id": "t-1", "task_status": status}})
    message = str(info.value)
    assert f"task status {'S' * 40!r}, which this client does not know" in message
    assert message.endswith("; the task is kept and `%wanx resume` looks at it again")


def test_task_ids_with_capitals_are_taken_and_a_refusal_names_the_id():
    assert build_query("Task-ABC_1.2").path == "/tasks/Task-ABC_1.2"
    with pytest.raises(ValueError, match=r"task_id 'a/b' is not a task id \(letters, digits"):
        build_cancel("a/b")


def test_an_image_generation_answer_reads_its_choices_unless_results_are_given():
    choices = [{"message": {"content": [{"text": "a fox, detailed"}, {"image": "https://x/c.png"}]}}]
    task = parse_task({"output": {"task_id": "t-1", "task_status": "SUCCEEDED", "choices": choices}})
    assert task.results == ({"url": "https://x/c.png", "actual_prompt": "a fox, detailed"},)
    both = parse_task({"output": {"task_id": "t-1", "task_status": "SUCCEEDED", "choices": choices,
                                  "results": [{"url": "https://x/r.png"}]}})
    assert both.results == ({"url": "https://x/r.png"},)  # the legacy shape is read first


def test_a_list_page_fills_what_the_answer_leaves_out():
    row = {"task_id": "t", "status": "SUCCEEDED"}
    empty = parse_task_page({"request_id": "r"})  # no rows at all, no paging fields, no wrapper
    assert (empty.items, empty.total, empty.page_no, empty.page_size, empty.total_page) == ((), 0, 1, 10, 0)
    three = parse_task_page({"data": [row] * 3, "total": 7})
    assert (three.page_no, three.page_size, three.total_page) == (1, 3, 3)  # page size: the rows received
    assert parse_task_page({"data": [], "total": 5, "page_size": 0}).total_page == 1
    said = parse_task_page({"data": [row], "total": 11, "page_size": 10, "total_page": 5})
    assert said.total_page == 5  # the service's count is kept, not recomputed
    assert parse_task_page({"data": "oops", "total": 0}).items == ()


def test_a_list_page_reads_top_level_rows_before_an_output_object():
    row = {"task_id": "t-top", "status": "RUNNING"}
    for key in ("data", "tasks"):
        page = parse_task_page({key: [row], "output": {"data": [{"task_id": "t-inner"}]}, "total": 1})
        assert [item.task_id for item in page] == ["t-top"]


def test_a_listed_row_keeps_its_end_time_and_a_missing_id_stays_empty():
    page = parse_task_page({"data": [{"status": "SUCCEEDED", "end_time": "1736323231000"}]})
    (item,) = page.items
    assert item.listed is not None and item.listed.end_time == 1736323231000
    assert item.task_id == ""  # not the text "None": nothing to look up


def test_an_upload_policy_keeps_the_acl_and_overwrite_rule_the_service_sends():
    data = {"upload_host": "https://oss", "upload_dir": "dashscope-instant/BOX/", "policy": "p", "signature": "s",
            "oss_access_key_id": "k", "x_oss_object_acl": "public-read", "x_oss_forbid_overwrite": "false"}
    policy = parse_policy({"data": data})
    assert (policy.x_oss_object_acl, policy.x_oss_forbid_overwrite) == ("public-read", "false")
    assert policy.upload_dir == "dashscope-instant/BOX"  # only the trailing slash goes
    _key, fields = upload_form(policy, "cat.png", "image/png")
    assert (fields["x-oss-object-acl"], fields["x-oss-forbid-overwrite"]) == ("public-read", "false")


def test_the_policy_request_names_its_workspace():
    assert build_policy("wanx-v1", workspace="ws-1").headers == {
        "Accept": "application/json", "X-DashScope-WorkSpace": "ws-1"}


def test_image_results_take_the_size_the_service_made_unless_the_request_named_pixels():
    made = {"url": "https://x/0.png"}
    task = Task("t", TaskStatus.SUCCEEDED, results=(made,), usage={"width": 1328, "height": 1328})
    chosen = image_results(task, GenerationRequest("fox", model="qwen-image-plus"))  # no size: the model chose
    assert chosen[0].size == "1328*1328"
    tier = Task("t", TaskStatus.SUCCEEDED, results=(made,), usage={"size": "2048*2048"})
    assert image_results(tier, GenerationRequest("fox", model="wan2.7-image", size="2K"))[0].size == "2048*2048"
    named = Task("t", TaskStatus.SUCCEEDED, results=(made,), usage={"size": "1440*1440"})
    named_size = image_results(named, GenerationRequest("fox", model="wan2.6-t2i", size="1280*1280"))[0].size
    assert named_size == "1280*1280"
    assert image_results(Task("t", TaskStatus.SUCCEEDED, results=(made,)),
                         GenerationRequest("fox", model="qwen-image-plus"))[0].size == "1664*928"  # usage silent


def test_image_results_without_a_seed_have_none_and_a_good_image_has_no_message():
    task = Task("t", TaskStatus.SUCCEEDED, results=({"url": "https://x/0.png"}, {"url": "https://x/1.png"}))
    images = image_results(task, GenerationRequest("fox", model="wanx-v1", n=1))  # more items than asked
    assert [(im.seed, im.code, im.message) for im in images] == [(None, None, None), (None, None, None)]


def test_error_bodies_that_are_not_utf8_are_read_with_replacement_characters():
    err = status_error(502, b"bad \xff gateway", {"x-request-id": "r-1"})
    assert err.server_message == "bad \ufffd gateway" and err.body == "bad \ufffd gateway"
    latin1 = parse_error(b'{"code": "X", "message": "caf\xe9"}')  # a Latin-1 body is still read as JSON
    assert (latin1.code, latin1.message) == ("X", "caf\ufffd")


def test_an_error_body_is_kept_whole_up_to_4000_characters():
    assert status_error(500, b"short").body == "short"
    assert status_error(500, "y" * 4000).body == "y" * 4000
    assert status_error(500, "y" * 4001).body == "y" * 4000 + "…"


def test_parse_error_gives_none_for_what_the_answer_does_not_say():
    plain = parse_error(b"upstream busy")
    assert (plain.code, plain.message, plain.request_id) == (None, "upstream busy", None)
    empty_code = parse_error(b'{"code": "", "message": "m"}')
    assert (empty_code.code, empty_code.request_id) == (None, None)
    no_message = parse_error(b' {"code": "Throttling"}\n')
    assert (no_message.code, no_message.message) == ("Throttling", '{"code": "Throttling"}')
    only_code = parse_error(b"<Error><Code>NoSuchKey</Code></Error>")
    assert (only_code.code, only_code.message, only_code.request_id) == ("NoSuchKey", "", None)
    assert parse_error(b"<Error/>", {"x-oss-request-id": "oss-7"}).request_id == "oss-7"


def test_an_empty_error_message_is_replaced_by_the_status_reason():
    assert status_error(503, b"").server_message == "Service Unavailable"
    assert status_error(403, b"<Error><Code>AccessDenied</Code></Error>").server_message == "Forbidden"
    assert status_error(418, b"").server_message == "no message"


def test_a_status_error_says_which_call_failed_without_the_query():
    err = status_error(500, b'{"code": "InternalError", "message": "m"}', method="GET",
                       url="https://h/api/v1/tasks/t-1?Signature=s")
    assert (err.method, err.url) == ("GET", "https://h/api/v1/tasks/t-1?Signature=s")
    assert "on GET /api/v1/tasks/t-1" in str(err) and "Signature" not in str(err)


def test_an_expired_url_is_told_by_a_403_or_404_whose_code_or_message_says_so():
    expired = b"<Error><Code>AccessDenied</Code><Message>Request has expired.</Message></Error>"
    assert says_expired(404, b"<Error><Code>NoSuchKey</Code><Message>Request has expired.</Message></Error>")
    assert says_expired(403, b'{"code": "RequestExpired", "message": "denied"}')
    assert not says_expired(403, b'{"code": "AccessDenied", "message": "denied"}')
    assert says_expired(403, expired)
    for status in (400, 405, 410, 500):
        assert not says_expired(status, expired)


def test_server_times_with_or_without_milliseconds_are_beijing_time():
    beijing_4pm = dt.datetime(2025, 1, 8, 8, 0, tzinfo=dt.timezone.utc)
    assert parse_server_time("2025-01-08 16:00:00.000") == beijing_4pm
    assert parse_server_time("2025-01-08 16:00:00") == beijing_4pm
    assert parse_server_time("2025-01-08 16:00:00").utcoffset() == dt.timedelta(hours=8)
    assert parse_server_time("yesterday") is None and parse_server_time(None) is None
    assert parse_size("2K") is None and parse_size("") is None


def test_polls_of_a_batch_share_their_keys_and_prompts_but_not_their_urls():
    # Memory (README, the bench/memory.py row): every poll's answer is new JSON; what repeats (keys, a
    # grid's prompts) is kept once, while each image's URL, unique anyway, stays out of the intern table.
    raw = json.dumps({"request_id": "r", "usage": {"image_count": 1}, "output": {
        "task_id": "t-1", "task_status": "SUCCEEDED", "task_metrics": {"TOTAL": 1, "SUCCEEDED": 1},
        "results": [{"orig_prompt": "fox", "actual_prompt": "a fox in snow", "url": "https://x/0.png"}]}})
    first, second = parse_task(json.loads(raw)), parse_task(json.loads(raw))
    (one,), (two,) = first.results, second.results
    assert one == two and first.metrics == {"TOTAL": 1, "SUCCEEDED": 1} and first.usage == {"image_count": 1}
    assert all(a is b for a, b in zip(one, two))  # the keys
    assert one["orig_prompt"] is two["orig_prompt"] and one["actual_prompt"] is two["actual_prompt"]
    assert one["url"] is not two["url"]
