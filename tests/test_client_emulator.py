"""AsyncWanxClient end to end against the offline emulator (in-process, fake clock).

Time is virtual: the client's clock is the emulator's fake clock, and the client's sleeps are woken
by a driver that moves that clock to the next wake-up whenever the event loop is idle. Nothing here
depends on wall time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from PIL import Image

import wanx_nb._client_config as client_config
from wanx_nb import _protocol
from wanx_nb._protocol_list import format_list_time
from wanx_nb._client import AsyncWanxClient
from wanx_nb._client_sync import WanxClient
from wanx_nb._exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContentInspectionError,
    ImageExpiredError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SubmitOutcomeUnknownError,
    TaskCanceledError,
    TaskFailedError,
    TaskUnknownError,
    UnsupportedOperationError,
    ValidationError,
    WaitTimeoutError,
)
from wanx_nb._models import GenerationResult, Task, TaskStatus
from wanx_nb._registry import get_model
from wanx_nb._request import GenerationRequest
from wanx_nb._scheduler import queue_ahead
from fake_time import FakeTime
from wanx_nb.emulator import EMULATOR_HEADER, Emulator, EmulatorSettings, Fault

KEY = "sk-emutest-0123456789SECRET"
MODELS = ("wanx2.1-t2i-plus", "wanx2.1-t2i-turbo", "wanx2.0-t2i-turbo", "wanx-v1")


class Harness:
    def __init__(
        self, settings: EmulatorSettings, api_key: str | None, seed: int = 0, **client_kwargs: object
    ) -> None:
        self.emu = Emulator(settings)
        self.time = FakeTime(self.emu)
        self.client = AsyncWanxClient(api_key, emulator=self.emu, **client_kwargs)  # type: ignore[arg-type]
        self.client._rng.seed(seed)  # the poll jitter and drawn seeds: the same run every time
        self.client._clock = self.time.now
        self.client._wall = self.time.now  # the fake clock is epoch seconds too
        self.client._sleep = self.time.sleep

    def creates(self) -> int:
        return len(self.emu.requests("create"))


MakeHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make() -> AsyncIterator[MakeHarness]:
    harnesses: list[Harness] = []
    drivers: list[asyncio.Task[None]] = []

    async def factory(api_key: str | None = KEY, max_retries: int = 3, seed: int = 0, **settings: object) -> Harness:
        settings.setdefault("clock", "fake")
        h = Harness(EmulatorSettings(**settings), api_key, seed, max_retries=max_retries)  # type: ignore[arg-type]
        harnesses.append(h)
        drivers.append(asyncio.create_task(h.time.drive()))
        return h

    yield factory
    for d in drivers:
        d.cancel()
    for h in harnesses:
        await h.client.aclose()


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.size


# ---- every endpoint, every model -------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
async def test_every_endpoint_works_for_each_model(make, model, tmp_path):
    h = await make(pending_seconds=5.0)
    c = h.client
    size = "720*1280" if model == "wanx-v1" else "768*1152"
    req = GenerationRequest("a lighthouse at dusk", model=model, n=2, size=size)

    submitted: list[tuple[str, GenerationRequest]] = []
    create_ids: list[str | None] = []
    statuses: list[str] = []

    def on_submitted(task: Task, sent: GenerationRequest) -> None:
        submitted.append((task.task_id, sent))
        create_ids.append(task.request_id)

    result = await c.generate(req, on_submitted=on_submitted, on_status=lambda t: statuses.append(t.status.value))
    assert isinstance(result, GenerationResult) and result.backend == "emulator" and result.task.emulator
    assert result.task.status is TaskStatus.SUCCEEDED and submitted[0][0] == result.task_id
    assert statuses[-1] == "SUCCEEDED" and "PENDING" in statuses
    # The create call's request id is kept (the one support asks about), not the last poll's.
    assert create_ids[0] and result.create_request_id == create_ids[0] != result.task.request_id
    seed = result.request.seed
    assert seed is not None and submitted[0][1].seed == seed
    assert [(im.index, im.seed, im.size) for im in result.images] == [(0, seed, size), (1, seed + 1, size)]
    w, h_ = (int(x) for x in size.split("*"))
    assert all(im.ok and png_size(im.data) == (w, h_) for im in result.images)
    if get_model(model).is_v1:
        assert all(im.actual_prompt is None for im in result.images)
    else:  # prompt_extend defaults on: the rewritten prompt comes back
        assert all(im.orig_prompt == req.prompt and im.actual_prompt for im in result.images)
    sent = h.emu.requests("create")[0]
    assert sent.json["parameters"]["seed"] == seed and sent.json["model"] == model

    assert (await c.get_task(result.task_id)).status is TaskStatus.SUCCEEDED
    page = await c.list_tasks(model_name=model)
    assert [i.task_id for i in page.items] == [result.task_id] and page.items[0].status is TaskStatus.SUCCEEDED
    assert (await c.download(result.images[0].url)) == result.images[0].data

    pending = await c.submit(req.replace(prompt="to be cancelled"))
    await c.cancel(pending.task_id)
    assert (await c.wait(pending)).status is TaskStatus.CANCELED
    canceled = await c.list_tasks(model_name=model, status="CANCELED")
    assert [i.task_id for i in canceled] == [pending.task_id]

    ref = tmp_path / "ref.png"
    Image.new("RGB", (256, 256), "red").save(ref)
    oss = await c.upload(ref, model)
    assert oss.startswith("oss://dashscope-instant/") and oss.endswith("/ref.png")
    assert f"model={model}" in h.emu.requests("policy")[-1].path


async def test_the_emulator_header_name_matches():
    assert _protocol.EMULATOR_HEADER == EMULATOR_HEADER


async def test_without_a_key_the_client_uses_the_emulator_and_says_so(monkeypatch, caplog):
    for var in ("DASHSCOPE_API_KEY", "DASHSCOPE_HTTP_BASE_URL", "DASHSCOPE_REGION", "DASHSCOPE_WORKSPACE_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(client_config, "_emulator_notice_logged", False)
    caplog.set_level(logging.INFO, logger="wanx_nb")
    a, b = AsyncWanxClient(), AsyncWanxClient()
    try:
        assert a.backend == b.backend == "emulator" and a.base_url == "http://emulator.wanx-nb.invalid/api/v1"
        assert caplog.text.count("offline emulator") == 1
        task = await a.get_task("no-such-task")
        assert task.emulator and task.status is TaskStatus.UNKNOWN
    finally:
        await a.aclose()
        await b.aclose()


# ---- upload ------------------------------------------------------------------------------------


async def test_a_local_ref_img_is_uploaded_and_sent_as_oss_with_the_resolve_header(make, tmp_path):
    h = await make()
    ref = tmp_path / "参考.png"
    Image.new("RGB", (300, 300), "blue").save(ref)
    req = GenerationRequest("a cat in this style", model="wanx-v1", n=1, ref_img=str(ref), ref_mode="refonly")
    result = await h.client.generate(req)
    assert result.images[0].ok
    assert result.request.ref_img.startswith("oss://") and result.request.ref_img.endswith("/参考.png")
    routes = [r.route for r in h.emu.request_log]
    assert routes[:3] == ["policy", "upload", "create"]
    policy, upload, create = h.emu.request_log[:3]
    assert "model=wanx-v1" in policy.path
    assert not any(k.lower() == "authorization" for k in upload.headers)  # the upload host never sees the key
    assert create.json["input"]["ref_img"] == result.request.ref_img
    assert create.headers["x-dashscope-ossresourceresolve"] == "enable"


async def test_submit_uploads_file_urls_too(make, tmp_path):
    h = await make()
    ref = tmp_path / "r.png"
    Image.new("RGB", (256, 256), "green").save(ref)
    sub = await h.client.submit(GenerationRequest("x", model="wanx-v1", n=1, ref_img=f"file://{ref}"))
    assert sub.request.ref_img.startswith("oss://") and h.emu.requests("upload")


# ---- cancel, list, expiry ----------------------------------------------------------------------


async def test_cancelling_a_running_task_is_refused_and_a_cancelled_generate_raises(make):
    h = await make(pending_seconds=5.0)
    c = h.client
    running = await c.submit(GenerationRequest("x", model="wanx2.1-t2i-turbo", n=1))
    h.emu.advance(6.0)
    with pytest.raises(UnsupportedOperationError) as info:
        await c.cancel(running.task_id)
    assert info.value.code == "UnsupportedOperation" and "PENDING" in info.value.server_message

    async def cancel_it(task, sent):  # type: ignore[no-untyped-def]
        await c.cancel(task.task_id)

    with pytest.raises(TaskCanceledError) as cancel_info:
        await c.generate(GenerationRequest("y", model="wanx2.1-t2i-turbo", n=1), on_submitted=cancel_it)
    assert cancel_info.value.task_status == "CANCELED" and cancel_info.value.task_id


async def test_list_tasks_pages_and_filters(make):
    h = await make()
    c = h.client
    results = await c.generate_many([GenerationRequest(f"p{i}", model="wanx2.0-t2i-turbo", n=1) for i in range(3)]
                                    + [GenerationRequest("v", model="wanx-v1", n=1)])
    assert all(isinstance(r, GenerationResult) for r in results)
    page = await c.list_tasks(page_size=2)
    assert (page.total, page.total_page, len(page)) == (4, 2, 2)
    page2 = await c.list_tasks(page_no=2, page_size=2)
    assert {i.task_id for i in page} | {i.task_id for i in page2} == {r.task_id for r in results}
    only_v1 = await c.list_tasks(model_name="wanx-v1", status=TaskStatus.SUCCEEDED)
    assert [i.listed and i.listed.model_name for i in only_v1] == ["wanx-v1"]
    later = await c.list_tasks(start_time=format_list_time(
        __import__("datetime").datetime.fromtimestamp(h.emu.now() + 3600, _protocol.SERVER_TZ)))
    assert later.total == 0


async def test_expired_tasks_are_unknown_and_expired_urls_fail(make):
    h = await make()
    c = h.client
    req = GenerationRequest("old news", model="wanx2.1-t2i-turbo", n=1)
    result = await c.generate(req)
    h.emu.advance(24 * 3600 + 60)
    assert (await c.get_task(result.task_id)).status is TaskStatus.UNKNOWN
    with pytest.raises(TaskUnknownError) as info:
        await c.collect(result.task_id, result.request)
    assert info.value.task_id == result.task_id and "24 h" in str(info.value)
    with pytest.raises(ImageExpiredError) as expired:
        await c.download(result.images[0].url)
    err = expired.value
    assert not isinstance(err, PermissionDeniedError) and "activated" not in err.message
    assert err.code == "ImageExpired" and err.status == 403 and err.billed is True
    assert "expired" in err.message and "24 h" in err.message and "Request has expired." in err.message
    assert "Signature" not in str(err) and "Signature" not in (err.url or "")  # signed query strings stay out
    # fetch() records it on the image instead of raising: billed, not downloaded, and gone for good.
    image = dataclasses.replace(result.images[0], data=None)
    await c.fetch(image)
    assert image.billed and image.missing and image.gone and image.ok
    assert image.download_code == "ImageExpired" and "expired" in (image.download_error or "")


async def test_collect_resumes_a_task_submitted_earlier(make):
    h = await make()
    sub = await h.client.submit(GenerationRequest("resume me", model="wanx-v1", n=2))
    h.client._expectations.tasks.clear()  # as after a kernel restart: nothing known but the id and the request
    result = await h.client.collect(sub.task_id, sub.request)
    assert [im.seed for im in result.images] == [sub.request.seed, sub.request.seed + 1]
    assert all(im.ok for im in result.images)


# ---- failures ----------------------------------------------------------------------------------


async def test_partial_failure_keeps_the_failed_image_with_its_code(make):
    h = await make()
    result = await h.client.generate(GenerationRequest("EMU_PARTIAL_FAILURE fox", model="wanx2.1-t2i-plus", n=3))
    assert [im.ok for im in result.images] == [True, True, False]
    failed = result.images[2]
    assert failed.code == "InternalError.Timeout" and "occured" in failed.message and failed.seed == result.request.seed + 2
    assert len(result.succeeded) == 2 and result.cost_yuan == pytest.approx(0.40)
    assert result.task.usage == {"image_count": 2}


async def test_a_failed_task_raises_with_the_server_code_and_message(make):
    h = await make()
    with pytest.raises(TaskFailedError) as info:
        await h.client.generate(GenerationRequest("EMU_BLOCK_OUTPUT 一只猫", model="wanx2.1-t2i-turbo", n=1))
    assert info.value.code == "DataInspectionFailed"
    assert info.value.server_message == "Output data may contain inappropriate content."
    # wait() itself returns the failed task without raising.
    sub = await h.client.submit(GenerationRequest("EMU_BLOCK_OUTPUT again", model="wanx2.1-t2i-turbo", n=1))
    assert (await h.client.wait(sub)).status is TaskStatus.FAILED


async def test_input_inspection_is_a_content_inspection_error(make):
    h = await make()
    with pytest.raises(ContentInspectionError) as info:
        await h.client.submit(GenerationRequest("EMU_BLOCK_INPUT", model="wanx2.1-t2i-turbo"))
    assert info.value.status_code == 400 and info.value.code == "DataInspectionFailed" and info.value.request_id


async def test_an_invalid_key_is_an_authentication_error_without_the_key(make):
    h = await make(api_key="sk-invalid")
    with pytest.raises(AuthenticationError) as info:
        await h.client.submit(GenerationRequest("x", model="wanx2.1-t2i-turbo"))
    assert info.value.code == "InvalidApiKey" and info.value.server_message == "Invalid API-key provided."
    assert h.creates() == 1  # never retried


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [(403, "AccessDenied", PermissionDeniedError), (400, "InvalidParameter", BadRequestError),
     (400, "Arrearage", BadRequestError)],
)
async def test_status_errors_on_submit_are_typed_and_not_retried(make, status, code, cls):
    h = await make()
    h.emu.script("create", Fault.status(status, code=code, message="服务端消息"))
    with pytest.raises(cls) as info:
        await h.client.submit(GenerationRequest("x", model="wanx-v1"))
    assert type(info.value) is cls and info.value.code == code and info.value.server_message == "服务端消息"
    assert h.creates() == 1 and not h.emu.tasks


async def test_429_on_submit_waits_retry_after_then_succeeds(make):
    h = await make()
    h.emu.script("create", Fault.status(429, code="Throttling.RateQuota", retry_after=3))
    start = h.time.now()
    sub = await h.client.submit(GenerationRequest("x", model="wanx2.1-t2i-turbo", n=1))
    assert h.creates() == 2 and len(h.emu.tasks) == 1
    assert h.emu.tasks[sub.task_id].submit_time - start >= 3.0


async def test_429_surfaces_as_rate_limit_error_when_retries_run_out(make):
    h = await make(max_retries=2)
    h.emu.script("create", *[Fault.status(429, code="Throttling.RateQuota", retry_after=1)] * 3)
    with pytest.raises(RateLimitError) as info:
        await h.client.submit(GenerationRequest("x", model="wanx2.1-t2i-turbo"))
    assert info.value.code == "Throttling.RateQuota" and info.value.retry_after == 1.0
    assert h.creates() == 3 and not h.emu.tasks


async def test_a_poll_500_is_retried(make):
    h = await make()
    h.emu.script("query", Fault.status(500))
    result = await h.client.generate(GenerationRequest("x", model="wanx2.0-t2i-turbo", n=1))
    assert result.images[0].ok
    assert len(h.emu.requests("query")) >= 2


async def test_a_poll_429_with_retry_after_is_honoured(make):
    h = await make()
    sub = await h.client.submit(GenerationRequest("x", model="wanx2.0-t2i-turbo", n=1))
    h.emu.script("query", Fault.status(429, code="Throttling", retry_after=4))
    before = h.time.now()
    task = await h.client.get_task(sub.task_id)
    assert task.task_id == sub.task_id and h.time.now() - before >= 4.0


async def test_5xx_on_polls_surfaces_as_server_error_with_the_task_id(make):
    h = await make(max_retries=1)
    sub = await h.client.submit(GenerationRequest("x", model="wanx2.0-t2i-turbo", n=1))
    h.emu.script("query", Fault.status(500), Fault.status(502))
    with pytest.raises(ServerError) as info:
        await h.client.wait(sub)
    assert info.value.status_code == 502 and info.value.task_id == sub.task_id


async def test_connection_failures_on_polls_become_api_connection_errors(make):
    h = await make(max_retries=1)
    h.emu.script("query", Fault.drop_before(), Fault.drop_before())
    with pytest.raises(APIConnectionError) as info:
        await h.client.get_task("t-1")
    assert not isinstance(info.value, APITimeoutError) and info.value.task_id == "t-1"
    # (One drop_after at a time: in-process, the emulator app also consumes the next scripted drop.)
    h.client.max_retries = 0
    h.emu.script("query", Fault.drop_after())
    with pytest.raises(APITimeoutError) as timeout:
        await h.client.get_task("t-1")
    assert timeout.value.task_id == "t-1"


async def test_a_dropped_connection_on_submit_is_retried_and_creates_exactly_one_task(make):
    h = await make()
    h.emu.script("create", Fault.drop_before())
    sub = await h.client.submit(GenerationRequest("x", model="wanx2.1-t2i-turbo", n=1))
    assert list(h.emu.tasks) == [sub.task_id] and h.creates() == 1


async def test_a_lost_submit_response_is_never_resubmitted_and_reconcile_adopts_the_task(make):
    h = await make()
    h.emu.script("create", Fault.drop_after())
    req = GenerationRequest("a heron at dawn", model="wanx2.1-t2i-turbo", n=1)
    with pytest.raises(SubmitOutcomeUnknownError) as info:
        await h.client.submit(req)
    assert h.creates() == 1 and len(h.emu.tasks) == 1  # the server did create it; we did not repeat
    err = info.value
    assert err.request.seed is not None and err.request.prompt == req.prompt
    # Another task of the same model created meanwhile is known to the journal: excluded.
    h.emu.advance(0.5)
    other = await h.client.submit(GenerationRequest("another", model="wanx2.1-t2i-turbo", n=1))
    found = await h.client.reconcile(
        err.request, sent_after=err.sent_after, sent_before=err.sent_before, exclude={other.task_id}
    )
    lost_id = next(t for t in h.emu.tasks if t != other.task_id)
    assert found.decided and found.task is not None and found.task.task_id == lost_id
    assert found.candidates == (lost_id,)
    result = await h.client.collect(found.task, err.request)  # resume: its images, no second create
    assert len(result.images) == 1 and result.images[0].data and h.creates() == 2


async def test_reconcile_matches_the_prompt_when_the_service_names_it(make):
    h = await make()
    h.emu.script("create", Fault.drop_after())
    req = GenerationRequest("a lantern in fog", model="wanx2.1-t2i-plus", n=1)
    with pytest.raises(SubmitOutcomeUnknownError) as info:
        await h.client.submit(req)
    err = info.value
    # An unrelated task of the same model in the same second, unknown to the journal.
    twin = await h.client.submit(GenerationRequest("something else", model="wanx2.1-t2i-plus", n=1))
    await h.client.wait(twin.task_id)  # both finished: their records name their prompts
    found = await h.client.reconcile(err.request, sent_after=err.sent_after, sent_before=err.sent_before)
    assert found.decided and found.task is not None and found.task.task_id != twin.task_id
    assert "prompt" in found.reason


async def test_reconcile_says_when_no_task_was_created_and_when_it_cannot_tell(make):
    h = await make()
    h.emu.script("create", Fault.status(500))  # refused before anything was created (the emulator's 500)
    req = GenerationRequest("nothing here", model="wanx-v1", n=1)
    with pytest.raises(SubmitOutcomeUnknownError) as info:
        await h.client.submit(req)
    err = info.value
    none = await h.client.reconcile(err.request, sent_after=err.sent_after, sent_before=err.sent_before)
    assert none.decided and none.task is None and none.candidates == ()
    # Two candidates of a model whose records never name the prompt: cannot tell.
    a = await h.client.submit(GenerationRequest("one", model="wanx-v1", n=1))
    b = await h.client.submit(GenerationRequest("two", model="wanx-v1", n=1))
    unsure = await h.client.reconcile(err.request, sent_after=err.sent_after, sent_before=err.sent_before)
    assert not unsure.decided and unsure.task is None and set(unsure.candidates) == {a.task_id, b.task_id}
    # The listing failing is "cannot tell" too, never "no task".
    h.emu.script("list", *[Fault.status(500)] * 4)
    failed = await h.client.reconcile(err.request, sent_after=err.sent_after, sent_before=err.sent_before)
    assert not failed.decided and "could not be read" in failed.reason
    # Past the service's 24 h nothing can be told.
    h.emu.advance(24 * 3600 + 60)
    old = await h.client.reconcile(err.request, sent_after=err.sent_after, sent_before=err.sent_before)
    assert not old.decided and "24 h" in old.reason
    with pytest.raises(ValueError, match="sent_after must be an aware datetime"):
        await h.client.reconcile(err.request, sent_after=err.sent_after.replace(tzinfo=None), sent_before=err.sent_before)


@pytest.mark.parametrize(("model", "theirs"), [
    ("wanx2.1-t2i-turbo", dict(n=1)),  # a V2 record names its prompt once the task has finished
    ("wanx-v1", dict(n=2)),  # a V1 record never does; its number of images does
])
async def test_reconcile_waits_for_a_running_candidate_and_leaves_another_requests_task(make, model, theirs):
    # The key is shared: another process's task of the same model lands in the window of a create
    # that never reached the service. Still running, its record named nothing, and it was adopted.
    h = await make()
    h.emu.script("create", Fault.status(500))  # refused: nothing was created
    with pytest.raises(SubmitOutcomeUnknownError) as info:
        await h.client.submit(GenerationRequest("a lighthouse", model=model, n=1))
    err = info.value
    foreign = await h.client.submit(GenerationRequest("a private family photo", model=model, **theirs))
    assert not (await h.client.get_task(foreign.task_id)).status.is_terminal
    found = await h.client.reconcile(err.request, sent_after=err.sent_after, sent_before=err.sent_before)
    assert found.decided and found.task is None and "other requests'" in found.reason


async def test_reconcile_adopts_the_one_task_of_a_v1_request_and_says_its_prompt_was_not_named(make):
    h = await make()
    h.emu.script("create", Fault.drop_after())  # created, the answer lost
    with pytest.raises(SubmitOutcomeUnknownError) as info:
        await h.client.submit(GenerationRequest("a lighthouse", model="wanx-v1", n=1))
    err = info.value
    found = await h.client.reconcile(err.request, sent_after=err.sent_after, sent_before=err.sent_before)
    assert found.decided and found.task is not None and found.task.task_id == next(iter(h.emu.tasks))
    assert found.task.status.value == "SUCCEEDED"  # waited for: its record is complete
    assert not found.prompt_named and "does not name the prompt" in found.reason


async def test_wait_timeout(make):
    h = await make(time_scale=1.0)
    sub = await h.client.submit(GenerationRequest("slow", model="wanx2.1-t2i-plus", n=1))
    with pytest.raises(WaitTimeoutError) as info:
        await h.client.wait(sub, timeout=5.0)
    assert info.value.task_id == sub.task_id and info.value.task_status == "RUNNING"
    with pytest.raises(WaitTimeoutError):
        await h.client.generate(GenerationRequest("slow", model="wanx2.1-t2i-plus", n=1), timeout=5.0)


async def test_validation_happens_before_any_request(make):
    h = await make()
    with pytest.raises(ValidationError):
        await h.client.generate(GenerationRequest("x", model="wanx2.1-t2i-turbo", size="100*100", n=9))
    with pytest.raises(ValidationError):
        await h.client.submit(GenerationRequest("x", model="wanx-v1", ref_img="/no/such/file.png"))
    assert h.emu.request_log == []


# ---- scheduling --------------------------------------------------------------------------------


async def test_a_batch_across_models_keeps_every_limit_and_is_never_throttled(make):
    h = await make(time_scale=1.0)
    plan = {"wanx-v1": 3, "wanx2.1-t2i-turbo": 5, "wanx2.1-t2i-plus": 4}
    requests = [GenerationRequest(f"{m} #{i}", model=m, n=1, prompt_extend=None) for m, k in plan.items() for i in range(k)]
    done: list[int] = []
    results = await h.client.generate_many(requests, on_result=lambda i, r: done.append(i))
    assert all(isinstance(r, GenerationResult) for r in results) and sorted(done) == list(range(len(requests)))
    tasks = list(h.emu.tasks.values())
    assert h.creates() == len(requests) == len(tasks)  # no create was ever refused
    for model in plan:
        spec = get_model(model)
        mine = sorted((t for t in tasks if t.model == model), key=lambda t: t.submit_time)
        submits = [t.submit_time for t in mine]
        # submit rate: never more than submit_rps in any one-second window
        assert all(submits[i + 2] - submits[i] > 1.0 for i in range(len(submits) - 2))
        # in flight: the concurrency plus a small queue kept primed at the service...
        events = sorted([(t.end_time, -1) for t in mine] + [(t.submit_time, 1) for t in mine])
        in_flight = list(itertools.accumulate(e[1] for e in events))
        assert max(in_flight) <= spec.concurrency + queue_ahead(spec.concurrency)
        # ...so a queued task starts the moment an earlier one ends: a slot never waits for our polling
        ends = {t.end_time for t in mine}
        assert all(t.start_time == t.submit_time or t.start_time in ends for t in mine)
    # wanx-v1 runs one at a time: its three 30 s tasks run back to back, with no idle gap between them.
    v1 = sorted((t for t in tasks if t.model == "wanx-v1"), key=lambda t: t.start_time)
    assert [t.start_time for t in v1[1:]] == [t.end_time for t in v1[:-1]]


async def test_raw_submits_respect_the_rate(make):
    h = await make()
    subs = await asyncio.gather(*(h.client.submit(GenerationRequest(f"r{i}", model="wanx2.0-t2i-turbo", n=1))
                                  for i in range(6)))
    assert len({s.task_id for s in subs}) == 6 and h.creates() == 6
    submits = sorted(t.submit_time for t in h.emu.tasks.values())
    assert all(submits[i + 2] - submits[i] > 1.0 for i in range(4))


async def test_generate_many_returns_errors_in_place(make):
    h = await make()
    requests = [GenerationRequest("fine", model="wanx2.1-t2i-turbo", n=1),
                GenerationRequest("x", model="wanx-v1", style="<nope>"),
                GenerationRequest("EMU_BLOCK_OUTPUT", model="wanx2.1-t2i-turbo", n=1)]
    results = await h.client.generate_many(requests)
    assert isinstance(results[0], GenerationResult)
    assert isinstance(results[1], ValidationError)
    assert isinstance(results[2], TaskFailedError)


# ---- secrets -----------------------------------------------------------------------------------


async def test_the_key_never_appears_in_logs_errors_or_reprs(make, caplog):
    caplog.set_level(logging.DEBUG)
    h = await make()
    h.emu.script("create", Fault.drop_before(), Fault.status(503))
    h.emu.script("query", Fault.status(500), Fault.status(429, retry_after=1))
    result = await h.client.generate(GenerationRequest("secret-free", model="wanx2.1-t2i-turbo", n=1))
    errors: list[Exception] = []
    h.emu.script("query", *[Fault.status(500)] * 4)
    try:
        await h.client.get_task(result.task_id)
    except ServerError as exc:
        errors.append(exc)
    h.emu.script("create", Fault.drop_after())
    try:
        await h.client.submit(GenerationRequest("again", model="wanx2.1-t2i-turbo", n=1))
    except SubmitOutcomeUnknownError as exc:
        errors.append(exc)
    assert len(errors) == 2 and "retrying" in caplog.text
    texts = [caplog.text, repr(h.client), repr(result), repr(result.task), str(result.metadata())]
    texts += [str(e) for e in errors] + [repr(e) for e in errors] + [str(e.__cause__) for e in errors]
    for text in texts:
        assert KEY not in text and KEY[3:] not in text


# ---- over real loopback ------------------------------------------------------------------------


def test_over_real_loopback_and_the_schedule_learns():
    from wanx_nb.emulator import running_server

    with running_server(EmulatorSettings(clock="fake")) as server:
        emu = server.emulator
        with WanxClient(KEY, base_url=server.base_url) as client:
            inner = client.async_client
            inner._clock = emu.now
            inner._wall = emu.now
            polls: list[float] = []

            async def sleep(seconds: float) -> None:  # one task at a time: advancing directly is exact
                polls.append(seconds)
                emu.advance(seconds)

            inner._sleep = sleep
            assert client.backend == "dashscope"  # configured like the real service...
            first = client.generate(GenerationRequest("loopback", model="wanx2.1-t2i-turbo", n=1))
            # ...but the emulator's header marks the results
            assert first.backend == "emulator" and first.task.emulator and first.images[0].ok
            # The served emulator says it runs at time_scale 0.05, so the first wait already expects
            # 0.6 s instead of the real 12 s, and what it observed agrees (no correction needed).
            assert inner._expectations.time_scale == pytest.approx(0.05)
            assert sum(polls) < 2.0
            assert inner._expectations.durations.correction("wanx2.1-t2i-turbo") == pytest.approx(1.0, rel=0.05)
            polls.clear()
            second = client.generate(GenerationRequest("loopback 2", model="wanx2.1-t2i-turbo", n=1))
            assert second.images[0].ok and len(polls) <= 4 and sum(polls) < 2.0
            assert len(emu.requests("create")) == 2



async def test_a_queued_task_is_polled_sparingly_and_its_end_noticed_quickly(make):
    # The service queues the task for a minute (another client holds the slots), then it runs 12 s.
    # The polls are jittered, so the lag is a spread: several seeded runs show it.
    lags: list[float] = []
    for seed in range(6):
        h = await make(pending_seconds=60.0, time_scale=1.0, seed=seed)
        polled: list[float] = []
        sub = await h.client.submit(GenerationRequest("queued", model="wanx2.1-t2i-turbo", n=1, prompt_extend=False))
        final = await h.client.wait(sub, on_status=lambda t: polled.append(h.time.now()))
        assert final.status is TaskStatus.SUCCEEDED
        lags.append(polled[-1] - h.emu.tasks[sub.task_id].end_time)
        assert len(polled) <= 16  # about half the polls of a schedule that ignores PENDING
    # Each PENDING sighting restarts the expectation, so the run's end is seen within ~10% of its
    # duration (12 s) instead of 10% of the whole wait (a 6-7 s lag); jitter makes the worst ~20%.
    assert sorted(lags)[len(lags) // 2] <= 1.5 and max(lags) <= 2.5, lags


# ---- cancellation ------------------------------------------------------------------------------


async def test_a_cancel_during_a_sent_submit_still_reports_the_task_then_cancels():
    from wanx_nb.emulator import running_server

    # Over real HTTP the server goes on with a request whatever the client does: it holds the create
    # for 0.3 s, creates the task and answers; the caller is cancelled meanwhile.
    with running_server(EmulatorSettings(time_scale=0.001)) as server:
        emu = server.emulator
        emu.script("create", Fault.delay(0.3))
        reported: list[str] = []
        async with AsyncWanxClient(KEY, base_url=server.base_url) as client:
            job = asyncio.create_task(
                client.generate(
                    GenerationRequest("fox", n=1), on_submitted=lambda task, sent: reported.append(task.task_id)
                )
            )
            while not emu.requests("create"):
                await asyncio.sleep(0.01)
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job
        # The task the server created was still handed to on_submitted (the write-ahead), once.
        assert len(emu.tasks) == 1 and reported == list(emu.tasks)


async def test_a_cancel_while_queued_for_a_slot_sends_nothing():
    # The service's clock stands still: no task ever ends (and per-second rate windows would only fill).
    emu = Emulator(EmulatorSettings(clock="fake", rate_limits=False))
    async with AsyncWanxClient(KEY, emulator=emu) as client:
        # wanx-v1 runs one task at a time, and the client keeps queue_ahead(1) more queued at the service.
        places = 1 + queue_ahead(1)
        sent = [asyncio.create_task(client.generate(GenerationRequest(f"#{i}", model="wanx-v1", n=1)))
                for i in range(places)]
        queued = asyncio.create_task(client.generate(GenerationRequest("one too many", model="wanx-v1", n=1)))
        while len(emu.requests("create")) < places:
            await asyncio.sleep(0.01)
        queued.cancel()  # this one is still waiting client-side for a place
        with pytest.raises(asyncio.CancelledError):
            await queued
        for job in sent:  # stop waiting for them (they stay on the server)
            job.cancel()
        await asyncio.gather(*sent, return_exceptions=True)
    assert len(emu.requests("create")) == places


# ---- the hook before sending, and billed images whose download fails ---------------------------


async def test_on_sending_sees_the_prepared_request_before_anything_is_sent(make, tmp_path):
    h = await make()
    ref = tmp_path / "ref.png"
    Image.new("RGB", (64, 64), "blue").save(ref)
    seen = []

    async def on_sending(prepared: GenerationRequest) -> None:
        seen.append((prepared, h.creates()))

    result = await h.client.generate(
        GenerationRequest("a fox like this", model="wanx-v1", n=1, ref_img=str(ref)), on_sending=on_sending
    )
    [(prepared, creates_before)] = seen
    assert creates_before == 0 and h.creates() == 1
    assert prepared.seed is not None and prepared.ref_img.startswith("oss://")
    assert prepared == result.request


async def test_a_raising_on_sending_aborts_with_nothing_sent(make):
    h = await make()

    def refuse(prepared: GenerationRequest) -> None:
        raise OSError("journal not writable")

    with pytest.raises(OSError, match="journal not writable"):
        await h.client.generate(GenerationRequest("x", model="wanx-v1", n=1), on_sending=refuse)
    assert h.creates() == 0 and h.emu.tasks == {}


async def test_an_unknown_outcome_out_of_generate_carries_the_request_the_hook_wrote_down(make):
    h = await make()
    h.emu.script("create", Fault.drop_after())
    written: list[GenerationRequest] = []
    with pytest.raises(SubmitOutcomeUnknownError) as info:
        await h.client.generate(GenerationRequest("x", model="wanx2.1-t2i-turbo", n=1), on_sending=written.append)
    assert info.value.request == written[0] and info.value.request.seed is not None
    found = await h.client.reconcile(
        info.value.request, sent_after=info.value.sent_after, sent_before=info.value.sent_before
    )
    assert found.decided and found.task is not None and found.task.task_id in h.emu.tasks


async def test_a_billed_image_whose_download_keeps_failing_is_kept_with_its_url(make):
    h = await make(max_retries=1)
    inner = h.emu.transport()

    async def cut_images(request: httpx.Request) -> httpx.Response:
        response = await inner.handle_async_request(request)
        body = await response.aread()
        if "/emulator-results/" in request.url.path:
            body = body[: len(body) // 2]  # every image arrives cut off
        return httpx.Response(response.status_code, headers={"content-type": "image/png"}, content=body)

    h.client._files = httpx.AsyncClient(transport=httpx.MockTransport(cut_images))
    result = await h.client.generate(GenerationRequest("half a fox", model="wanx2.1-t2i-turbo", n=2))
    assert [im.download_code for im in result.images] == ["InvalidImage", "InvalidImage"]
    assert all(im.billed and im.missing and im.ok and im.url and im.code is None for im in result.images)
    assert result.task.image_count == 2  # the bill, whatever was downloaded
    h.client._files = httpx.AsyncClient(transport=inner)  # the host recovers: a resume fetches them
    for im in result.images:
        await h.client.fetch(im, expect=(1024, 1024))
    assert all(not im.missing and im.download_code is None for im in result.images)


async def test_queued_tasks_are_polled_from_when_the_tasks_ahead_end_and_seen_just_after_their_end(make):
    # wanx-v1 runs one task at a time: the client sends three at once, the service queues two, and
    # each is expected to start when the one ahead of it should end.
    h = await make(time_scale=1.0)
    polls: dict[str, list[float]] = {}
    requests = [GenerationRequest(f"v1 #{i}", model="wanx-v1", n=1) for i in range(3)]
    results = await h.client.generate_many(
        requests, on_status=lambda t: polls.setdefault(t.task_id, []).append(h.time.now())
    )
    assert all(isinstance(r, GenerationResult) for r in results)
    for task in h.emu.tasks.values():
        seen = polls[task.task_id]
        assert 0 <= seen[-1] - task.end_time <= 0.03 * 30  # the look just after the expected end
        assert len(seen) <= 5  # and no polling while it waited in the queue
