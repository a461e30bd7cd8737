"""Survivors of the mutation run over the sans-I/O wire mapping (tools/mutation.py), killed by what a caller
relies on: every field of a task, a list page, an upload policy and an image result reaches the caller, and
each malformed answer is an APIError with code InvalidResponse (or UnrecognisedStatus) and the request id.
"""

from __future__ import annotations

import pytest

from wanx_nb._exceptions import APIError
from wanx_nb._models import Task, TaskStatus
from wanx_nb._protocol import image_results, parse_policy, parse_task, parse_task_page
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
    from wanx_nb._protocol import build_cancel, build_list, build_query

    for wire in (build_cancel("t-1", workspace="ws-1"), build_query("t-1", workspace="ws-1"),
                 build_list(workspace="ws-1")):
        assert wire.headers == {"Accept": "application/json", "X-DashScope-WorkSpace": "ws-1"}
    wire = build_list(api_key_id="key-7", status="running", model_name="wanx-v1", region="cn-beijing")
    assert wire.params == {"page_no": "1", "page_size": "10", "model_name": "wanx-v1", "api_key_id": "key-7",
                           "region": "cn-beijing", "status": "RUNNING"}


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
