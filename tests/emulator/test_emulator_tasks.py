"""GET /tasks/{id}, POST /tasks/{id}/cancel and GET /tasks: progression, queueing, expiry, listing."""

from __future__ import annotations

import pytest

from wanx_nb.emulator import Emulator, EmulatorSettings

from .conftest import task_id_of
from .test_emulator_create import assert_error

TIMEOUT_MESSAGE = (
    "An internal timeout error has occured during execution, please try again later or contact service support."
)


@pytest.fixture
def settings() -> EmulatorSettings:
    # A 2 s queue latency makes PENDING observable; durations are the registry's typical seconds.
    return EmulatorSettings(clock="fake", time_scale=1.0, pending_seconds=2.0)


async def test_task_moves_pending_running_succeeded_with_documented_shapes(submit, query, emulator, client):
    response = await submit("wanx2.1-t2i-turbo", "一间有着精致窗户的花店", n=2, size="1024*768")
    task_id = task_id_of(response)

    pending = await query(task_id)
    assert list(pending) == ["request_id", "output"]
    assert pending["output"] == {"task_id": task_id, "task_status": "PENDING", "submit_time": "2025-01-08 16:00:00.000"}

    emulator.advance(2.0)
    running = await query(task_id)
    assert running["output"] == {
        "task_id": task_id,
        "task_status": "RUNNING",
        "submit_time": "2025-01-08 16:00:00.000",
        "scheduled_time": "2025-01-08 16:00:02.000",
        "task_metrics": {"TOTAL": 2, "SUCCEEDED": 0, "FAILED": 0},
    }
    assert "usage" not in running

    emulator.advance(15.4999)  # turbo: 12 s + 3.5 s of prompt rewriting
    assert (await query(task_id))["output"]["task_status"] == "RUNNING"
    emulator.advance(0.0001)
    done_response = await client.get(f"/tasks/{task_id}")
    assert done_response.headers["content-type"] == "application/json;charset=UTF-8"
    done = done_response.json()
    assert list(done) == ["request_id", "output", "usage"]
    output = done["output"]
    assert list(output) == [
        "task_id",
        "task_status",
        "submit_time",
        "scheduled_time",
        "end_time",
        "results",
        "task_metrics",
    ]
    assert output["task_status"] == "SUCCEEDED"
    assert output["end_time"] == "2025-01-08 16:00:17.500"
    assert output["task_metrics"] == {"TOTAL": 2, "SUCCEEDED": 2, "FAILED": 0}
    assert done["usage"] == {"image_count": 2}
    first, second = output["results"]
    assert list(first) == ["orig_prompt", "actual_prompt", "url"]
    assert first["orig_prompt"] == "一间有着精致窗户的花店"
    assert first["actual_prompt"].startswith("一间有着精致窗户的花店。") and len(first["actual_prompt"]) > 20
    assert first["url"].startswith(
        f"http://emulator.wanx-nb.invalid/emulator-results/20250108/{task_id}-1.png?Expires="
    )
    assert second["url"].split("?")[0].endswith(f"{task_id}-2.png")


async def test_actual_prompt_is_deterministic_and_in_the_prompt_language(submit, query, emulator):
    ids = [
        task_id_of(await submit("wanx2.1-t2i-plus", p, n=1))
        for p in ("a quiet harbour at dawn", "外景，香水瓶，产品照片，暖色调")
    ]
    emulator.advance(60)
    english, chinese = [(await query(i))["output"]["results"][0]["actual_prompt"] for i in ids]
    assert english.startswith("a quiet harbour at dawn, with ") and english.isascii()
    assert chinese.startswith("外景，香水瓶，产品照片，暖色调。") and chinese.endswith("。")
    assert emulator.tasks[ids[0]].actual_prompt == english


async def test_prompt_extend_off_omits_actual_prompt_and_shortens_the_task(submit, query, emulator):
    task_id = task_id_of(await submit("wanx2.1-t2i-turbo", "x", n=1, prompt_extend=False))
    emulator.advance(2 + 12)
    output = (await query(task_id))["output"]
    assert output["task_status"] == "SUCCEEDED"
    assert list(output["results"][0]) == ["orig_prompt", "url"]


async def test_v1_results_carry_only_urls(submit, query, emulator):
    task_id = task_id_of(await submit("wanx-v1", "x", n=2))
    emulator.advance(2 + 30)
    results = (await query(task_id))["output"]["results"]
    assert [list(r) for r in results] == [["url"], ["url"]]


async def test_time_scale_shortens_durations():
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=0.1))
    async with emulator.client() as http:
        body = {"model": "wanx2.1-t2i-plus", "input": {"prompt": "x"}, "parameters": {"n": 1}}
        task_id = task_id_of(
            await http.post(
                "/services/aigc/text2image/image-synthesis", json=body, headers={"X-DashScope-Async": "enable"}
            )
        )
        emulator.advance(2.84)
        assert (await http.get(f"/tasks/{task_id}")).json()["output"]["task_status"] == "RUNNING"
        emulator.advance(0.01)  # (25 + 3.5) * 0.1 = 2.85 s
        assert (await http.get(f"/tasks/{task_id}")).json()["output"]["task_status"] == "SUCCEEDED"


async def test_third_plus_task_waits_for_a_free_slot(submit, query, emulator):
    # wanx2.1-t2i-plus: 2 concurrent tasks, 28.5 s each; 2 submits per second.
    a, b = [task_id_of(await submit("wanx2.1-t2i-plus", "x", n=1)) for _ in range(2)]
    emulator.advance(1)
    c = task_id_of(await submit("wanx2.1-t2i-plus", "x", n=1))
    emulator.advance(2)  # t = 3
    assert [(await query(i))["output"]["task_status"] for i in (a, b, c)] == ["RUNNING", "RUNNING", "PENDING"]
    emulator.advance(30.5 - 3 - 0.001)
    assert (await query(c))["output"]["task_status"] == "PENDING"
    emulator.advance(0.001)  # t = 30.5: a and b end (started at 2 s), c starts
    statuses = [(await query(i))["output"]["task_status"] for i in (a, b, c)]
    assert statuses == ["SUCCEEDED", "SUCCEEDED", "RUNNING"]
    assert (await query(c))["output"]["scheduled_time"] == "2025-01-08 16:00:30.500"


async def test_wanx_v1_runs_one_task_at_a_time(submit, query, emulator):
    first, second = [task_id_of(await submit("wanx-v1", "x", n=1)) for _ in range(2)]
    emulator.advance(31.999)
    assert [(await query(i))["output"]["task_status"] for i in (first, second)] == ["RUNNING", "PENDING"]
    emulator.advance(0.001)  # first ends at 2 + 30 s, second starts
    assert [(await query(i))["output"]["task_status"] for i in (first, second)] == ["SUCCEEDED", "RUNNING"]
    assert (await query(second))["output"]["scheduled_time"] == "2025-01-08 16:00:32.000"


async def test_concurrency_is_per_account(submit, emulator):
    await submit("wanx-v1", "x")
    async with emulator.client(api_key="sk-other") as other:
        task_id = task_id_of(await submit("wanx-v1", "x", http=other))
        emulator.advance(2)
        assert (await other.get(f"/tasks/{task_id}")).json()["output"]["task_status"] == "RUNNING"


async def test_cancel_pending_task_and_the_queue_moves_up(submit, query, emulator, client):
    _, b = [task_id_of(await submit("wanx-v1", "x", n=1)) for _ in range(2)]
    emulator.advance(1)
    c = task_id_of(await submit("wanx-v1", "x", n=1))
    emulator.advance(4)  # t = 5: the first runs, b and c wait
    response = await client.post(f"/tasks/{b}/cancel")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json;charset=UTF-8"
    assert list(response.json()) == ["request_id"]
    assert (await query(b))["output"] == {
        "task_id": b,
        "task_status": "CANCELED",
        "submit_time": "2025-01-08 16:00:00.000",
        "end_time": "2025-01-08 16:00:05.000",
    }
    emulator.advance(27)  # t = 32: the first ends; c, not the cancelled b, takes the slot
    assert (await query(c))["output"]["task_status"] == "RUNNING"
    assert (await query(c))["output"]["scheduled_time"] == "2025-01-08 16:00:32.000"
    assert (await client.post(f"/tasks/{b}/cancel")).status_code == 400  # already cancelled


@pytest.mark.parametrize("when", ["running", "succeeded", "unknown"])
async def test_cancel_of_a_task_not_pending_is_unsupported_operation(submit, emulator, client, when):
    task_id = task_id_of(await submit("wanx2.1-t2i-turbo", "x", n=1))
    emulator.advance({"running": 3, "succeeded": 60, "unknown": 0}[when])
    target = task_id if when != "unknown" else "00000000-0000-4000-8000-000000000000"
    response = await client.post(f"/tasks/{target}/cancel")
    assert response.headers["content-type"] == "application/json;charset=UTF-8"
    assert_error(
        response,
        400,
        "UnsupportedOperation",
        "Failed to cancel the task, please confirm if the task is in PENDING status.",
    )


async def test_unknown_task_reads_unknown(query):
    body = await query("no-such-task")
    assert list(body) == ["request_id", "output"]
    assert body["output"] == {"task_id": "no-such-task", "task_status": "UNKNOWN"}


async def test_another_accounts_task_reads_unknown(submit, emulator):
    task_id = task_id_of(await submit())
    async with emulator.client(api_key="sk-other") as other:
        body = (await other.get(f"/tasks/{task_id}")).json()
    assert body["output"] == {"task_id": task_id, "task_status": "UNKNOWN"}


async def test_task_expires_after_24_hours(submit, query, emulator):
    task_id = task_id_of(await submit("wanx2.1-t2i-turbo", "x", n=1))
    emulator.advance(24 * 3600 - 0.001)
    assert (await query(task_id))["output"]["task_status"] == "SUCCEEDED"
    emulator.advance(0.001)
    assert (await query(task_id))["output"] == {"task_id": task_id, "task_status": "UNKNOWN"}


async def test_query_rate_is_limited_per_account(submit, emulator, client):
    task_id = task_id_of(await submit())
    statuses = [(await client.get(f"/tasks/{task_id}")).status_code for _ in range(21)]
    assert statuses == [200] * 20 + [429]
    assert_error(await client.get(f"/tasks/{task_id}"), 429, "Throttling", "Requests throttling triggered.")
    emulator.advance(1)
    assert (await client.get(f"/tasks/{task_id}")).status_code == 200


async def test_partial_failure_marks_the_last_image_failed(submit, query, emulator):
    word = emulator.settings.partial_failure_word
    task_id = task_id_of(await submit("wanx-v1", f"a fox {word}", n=2))
    emulator.advance(60)
    body = await query(task_id)
    output = body["output"]
    assert output["task_status"] == "SUCCEEDED"
    assert output["results"][1] == {"code": "InternalError.Timeout", "message": TIMEOUT_MESSAGE}
    assert list(output["results"][0]) == ["url"]
    assert output["task_metrics"] == {"TOTAL": 2, "SUCCEEDED": 1, "FAILED": 1}
    assert body["usage"] == {"image_count": 1}


async def test_partial_failure_of_a_single_image_fails_the_task(submit, query, emulator):
    task_id = task_id_of(await submit("wanx2.1-t2i-turbo", f"x {emulator.settings.partial_failure_word}", n=1))
    emulator.advance(60)
    body = await query(task_id)
    assert "usage" not in body
    assert body["output"]["task_status"] == "FAILED"
    assert (body["output"]["code"], body["output"]["message"]) == ("InternalError.Timeout", TIMEOUT_MESSAGE)
    assert body["output"]["task_metrics"] == {"TOTAL": 1, "SUCCEEDED": 0, "FAILED": 1}


async def test_partial_failure_rate_hits_every_task_at_one():
    emulator = Emulator(EmulatorSettings(clock="fake", partial_failure_rate=1.0, rate_limits=False))
    async with emulator.client() as http:
        for _ in range(3):
            body = {"model": "wanx2.1-t2i-turbo", "input": {"prompt": "x"}, "parameters": {"n": 3}}
            await http.post(
                "/services/aigc/text2image/image-synthesis", json=body, headers={"X-DashScope-Async": "enable"}
            )
    assert [t.failed_items for t in emulator.tasks.values()] == [frozenset({2})] * 3


async def test_output_inspection_fails_the_task(submit, query, emulator):
    task_id = task_id_of(await submit("wanx2.1-t2i-plus", f"x {emulator.settings.output_inspection_word}", n=4))
    emulator.advance(60)
    body = await query(task_id)
    assert "usage" not in body
    output = body["output"]
    assert list(output) == [
        "task_id",
        "task_status",
        "submit_time",
        "scheduled_time",
        "end_time",
        "code",
        "message",
        "task_metrics",
    ]
    assert (output["task_status"], output["code"]) == ("FAILED", "DataInspectionFailed")
    assert output["message"] == "Output data may contain inappropriate content."
    assert output["task_metrics"] == {"TOTAL": 4, "SUCCEEDED": 0, "FAILED": 4}


async def test_v1_unsupported_size_is_accepted_then_fails_the_task(submit, query, emulator):
    response = await submit("wanx-v1", "x", size="1024*768")
    task_id = task_id_of(response)
    emulator.advance(2 + 1)  # the size check fails fast, not after the full 30 s
    output = (await query(task_id))["output"]
    assert output["task_status"] == "FAILED"
    assert output["code"] == "InvalidParameter"
    assert (
        output["message"] == "The size is not match the allowed size ['1024*1024', '720*1280', '768*1152', '1280*720']"
    )
    assert output["task_metrics"] == {"TOTAL": 4, "SUCCEEDED": 0, "FAILED": 4}


class TestList:
    async def _populate(self, submit, emulator) -> dict[str, str]:
        ids = {}
        ids["v1"] = task_id_of(await submit("wanx-v1", "x", n=1))
        ids["turbo"] = task_id_of(await submit("wanx2.1-t2i-turbo", "x", n=1))
        emulator.advance(10)
        ids["plus"] = task_id_of(await submit("wanx2.1-t2i-plus", "x", n=1))
        ids["v1_queued"] = task_id_of(await submit("wanx-v1", "x", n=1))
        emulator.advance(10)  # t = 20: turbo done (2 + 15.5), v1 running, plus running, v1_queued pending
        return ids

    async def test_list_shows_own_tasks_newest_first_in_the_recorded_shape(self, submit, emulator, client):
        ids = await self._populate(submit, emulator)
        async with emulator.client(api_key="sk-other") as other:
            await submit("wanx-v1", "x", http=other)
        response = await client.get("/tasks", params={"page_no": 1, "page_size": 10})
        assert response.headers["content-type"] == "application/json;charset=UTF-8"
        body = response.json()
        assert list(body) == ["total", "data", "total_page", "page_no", "request_id", "page_size"]
        assert (body["total"], body["total_page"], body["page_no"], body["page_size"]) == (4, 1, 1, 10)
        assert [item["task_id"] for item in body["data"]][2:] in ([ids["v1"], ids["turbo"]], [ids["turbo"], ids["v1"]])
        assert {item["task_id"] for item in body["data"][:2]} == {ids["plus"], ids["v1_queued"]}
        by_id = {item["task_id"]: item for item in body["data"]}
        done = by_id[ids["turbo"]]
        assert done["status"] == "SUCCEEDED" and "task_status" not in done
        assert done["gmt_create"] == 1736323200000
        assert done["start_time"] == 1736323202000 and done["end_time"] == 1736323217500
        assert all(
            isinstance(done[k], str)
            for k in (
                "api_key_id",
                "caller_parent_id",
                "caller_uid",
                "region",
                "request_id",
                "user_api_unique_key",
                "model_name",
            )
        )
        assert done["region"] == "cn-beijing"
        queued = by_id[ids["v1_queued"]]
        assert queued["status"] == "PENDING" and "start_time" not in queued and "end_time" not in queued

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({"status": "PENDING"}, ["v1_queued"]),
            ({"status": "RUNNING"}, ["plus", "v1"]),
            ({"model_name": "wanx-v1"}, ["v1_queued", "v1"]),
            ({"model_name": "wan2.1-t2i-plus"}, ["plus"]),  # the international alias of the same model
            ({"start_time": "20250108160005"}, ["plus", "v1_queued"]),
            ({"end_time": "20250108160005"}, ["turbo", "v1"]),
            ({"region": "ap-southeast-1"}, []),
            ({"api_key_id": "123"}, []),
        ],
    )
    async def test_list_filters(self, submit, emulator, client, params, expected):
        ids = await self._populate(submit, emulator)
        body = (await client.get("/tasks", params={"page_no": 1, "page_size": 10, **params})).json()
        assert sorted(item["task_id"] for item in body["data"]) == sorted(ids[k] for k in expected)
        assert body["total"] == len(expected)

    async def test_list_pages(self, submit, emulator, client):
        await self._populate(submit, emulator)
        pages = [(await client.get("/tasks", params={"page_no": n, "page_size": 3})).json() for n in (1, 2, 3)]
        assert [len(p["data"]) for p in pages] == [3, 1, 0]
        assert {p["total_page"] for p in pages} == {2}
        everything = (await client.get("/tasks", params={"page_size": 10})).json()["data"]
        assert [i["task_id"] for p in pages for i in p["data"]] == [i["task_id"] for i in everything]

    @pytest.mark.parametrize(
        "params", [{"page_no": "0"}, {"page_size": "101"}, {"status": "DONE"}, {"start_time": "2025-01-08"}]
    )
    async def test_list_rejects_bad_parameters(self, client, params):
        assert_error(await client.get("/tasks", params=params), 400, "InvalidParameter")

    async def test_list_forgets_expired_tasks(self, submit, emulator, client):
        await submit("wanx-v1", "x", n=1)
        emulator.advance(24 * 3600)
        assert (await client.get("/tasks")).json()["total"] == 0
