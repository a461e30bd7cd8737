"""Edge cases that mutation testing found unguarded (issue 11): each test here fails against the named mutant.

Every test says the mutation it kills. They use the real emulator (fake clock where time matters), the
real store and the real session; the wire-level one uses a strict scripted transport.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
from pathlib import Path
import time
import uuid

import httpx
import pytest
from PIL import Image

from wanx_nb._client import AsyncWanxClient
from wanx_nb._exceptions import (
    AuthenticationError,
    BudgetExceededError,
    ConfigurationError,
    RunInterruptedError,
    TaskCanceledError,
    TaskError,
    TaskFailedError,
    TaskUnknownError,
    TaskUnfinishedError,
)
from wanx_nb._journal import EntryState, JournalEntry
from wanx_nb._models import GenerationResult
from wanx_nb._png import KEYWORD, read_provenance, strip_provenance
from wanx_nb._request import GenerationRequest
from wanx_nb._run import Phase
from wanx_nb._session import Session
from wanx_nb._store import Store
from wanx_nb._validation import validate
from wanx_nb.emulator import Emulator, EmulatorSettings, Fault

from kernel_death import kernel_dies


def canary_key() -> str:
    return "sk-" + "canary" + uuid.uuid4().hex[:16]


async def _no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def fake_clock_session(tmp_path, **kwargs) -> tuple[Session, Emulator]:
    """A session whose service runs on a fake clock; the client's retry and poll sleeps take no time."""
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=1.0, rate_limits=False))
    client = AsyncWanxClient(emulator=emulator)
    client._sleep = lambda seconds: asyncio.sleep(seconds / 1000)
    return Session(store=tmp_path / "store", client=client, clock=emulator.now, **kwargs), emulator


def wait_until(condition, seconds: float = 30.0) -> None:
    """Wait for the background run to reach a state (the deadline is a watchdog, not a timing assumption)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the run never got there"
        time.sleep(0.005)


def finish_run(session: Session, emulator: Emulator, requests: list[GenerationRequest]) -> list:
    run = session.start(requests)
    return run.result(on_tick=lambda: emulator.advance(3600))


def _advancing(run, emulator: Emulator):
    """The run, its result() advancing the service's fake clock on every tick."""
    blocking = run.result
    run.result = lambda timeout=None, **kw: blocking(timeout, on_tick=lambda: emulator.advance(3600))
    return run


# ---- the client ----------------------------------------------------------------------------------


async def test_a_connect_timeout_on_submit_is_retried_because_nothing_reached_the_server():
    # Mutant: ConnectTimeout classed as "may have been sent" -> the submit is not retried.
    replies: list[httpx.Response | Exception] = [
        httpx.ConnectTimeout("timed out connecting"),
        httpx.Response(200, json={"output": {"task_status": "PENDING", "task_id": "t-1"}, "request_id": "r-1"}),
    ]

    def strict(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/image-synthesis"), f"unexpected request {request.method} {request.url}"
        assert replies, "a request after the script ended"
        reply = replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    client = AsyncWanxClient(canary_key(), transport=httpx.MockTransport(strict), max_retries=2)
    client._sleep = _no_sleep
    submission = await client.submit(GenerationRequest("a red fox", model="wanx2.1-t2i-turbo", n=1))
    assert submission.task_id == "t-1" and replies == []
    await client.aclose()


async def test_an_upload_whose_answer_was_lost_is_not_an_error_when_the_retry_finds_the_file(tmp_path):
    # Mutant: a 409 FileAlreadyExists on the upload retry raised. The first POST stored the object on
    # the (emulated) OSS host but the connection dropped before the answer; the retry is told it exists.
    emulator = Emulator(EmulatorSettings(clock="fake"))
    client = AsyncWanxClient(canary_key(), emulator=emulator)
    client._sleep = _no_sleep
    ref = tmp_path / "ref.png"
    Image.new("RGB", (256, 256), "blue").save(ref)
    emulator.script("upload", Fault.drop_after())
    oss = await client.upload(ref, "wanx-v1")
    uploads = emulator.requests("upload")
    assert len(uploads) == 2 and oss.startswith("oss://") and oss.endswith("/ref.png")
    assert oss.removeprefix("oss://") in emulator.backend.uploads  # the object the first attempt stored
    await client.aclose()


async def test_a_key_echoed_by_the_server_never_reaches_the_error_text():
    # Mutant: redact() returns its input unchanged.
    key = canary_key()

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"code": "InvalidApiKey", "message": f"Invalid API-key provided: {key}"})

    client = AsyncWanxClient(key, transport=httpx.MockTransport(echo), max_retries=0)
    with pytest.raises(AuthenticationError) as info:
        await client.get_task("t-1")
    err = info.value
    for text in (str(err), repr(err), err.message, err.body or "", "".join(err._render_traceback_())
                 if hasattr(err, "_render_traceback_") else ""):
        assert key not in text and key[3:] not in text
    assert "sk-***" in str(err)  # the place is still visible, the key is not
    await client.aclose()


# ---- validation and the budget -------------------------------------------------------------------


def test_seed_zero_is_a_valid_seed_end_to_end(tmp_path):
    # Mutant: the seed range starts at 1.
    assert list(validate(GenerationRequest("fox", model="wanx2.1-t2i-turbo", n=2, seed=0))) == []
    session, emulator = fake_clock_session(tmp_path)
    (result,) = finish_run(session, emulator, [GenerationRequest("fox", model="wanx2.1-t2i-turbo", n=2, seed=0)])
    assert [im.seed for im in result.images] == [0, 1]
    assert emulator.requests("create")[0].json["parameters"]["seed"] == 0


def test_a_budget_accepts_a_run_that_fits_exactly_even_after_spending(tmp_path):
    # Mutants: `estimate >= remaining`, or the tolerance for float residue dropped or reversed.
    session, emulator = fake_clock_session(tmp_path, budget_yuan=0.42)
    turbo = "wanx2.1-t2i-turbo"  # ¥0.14 an image
    finish_run(session, emulator, [GenerationRequest("fox", model=turbo, n=2, seed=1)])  # ¥0.28 of ¥0.42
    assert session.spent_yuan == pytest.approx(0.28)
    (last,) = finish_run(session, emulator, [GenerationRequest("fox", model=turbo, n=1, seed=3)])  # ¥0.14 left
    assert isinstance(last, GenerationResult) and session.spent_yuan == pytest.approx(0.42)
    exact, emulator2 = fake_clock_session(tmp_path / "exact", budget_yuan=0.28)
    (fits,) = finish_run(exact, emulator2, [GenerationRequest("fox", model=turbo, n=2, seed=1)])
    assert isinstance(fits, GenerationResult)


def test_the_budget_counts_the_price_as_billed_with_prompt_rewriting(tmp_path):
    # z-image-turbo is ¥0.10 an image, ¥0.20 with prompt rewriting on (2026 §8): a ¥0.15 budget must
    # refuse the rewritten one before sending, not find out after it was billed.
    session, emulator = fake_clock_session(tmp_path, budget_yuan=0.15)
    rewritten = GenerationRequest("a kite", model="z-image-turbo", prompt_extend=True)
    assert session.estimate_cost([rewritten]) == (1, 0.2)
    with pytest.raises(BudgetExceededError):
        session.check_budget([rewritten])
    assert session.estimate_cost([rewritten.replace(prompt_extend=False)]) == (1, 0.1)
    assert emulator.request_log == []


def test_replay_costs_nothing_so_no_budget_can_refuse_it(tmp_path):
    # Mutant: the budget checked in replay mode too.
    recorder, emulator = fake_clock_session(tmp_path, mode="record")
    request = GenerationRequest("fox", model="wanx2.1-t2i-plus", n=2, seed=5)
    (recorded,) = finish_run(recorder, emulator, [request])
    sent = len(emulator.request_log)
    replay = Session(store=tmp_path / "store", mode="replay", budget_yuan=0.01)  # far below the ¥0.40 estimate
    again = replay.generate(request)
    assert again.replayed and [im.sha256 for im in again.images] == [im.sha256 for im in recorded.images]
    assert len(emulator.request_log) == sent and replay.spent_yuan == 0
    replay.check_budget([request] * 10)  # what a dry run asks: nothing a replay serves is paid for


def test_a_comparison_replays_under_a_budget_smaller_than_its_live_cost(tmp_path):
    # Same mutant, through compare(), which checks the budget itself before it starts the run.
    from wanx_nb.comparison import compare

    recorder, emulator = fake_clock_session(tmp_path, mode="record")
    models = ["wanx2.1-t2i-turbo", "wanx2.0-t2i-turbo"]
    run_done = recorder.start  # compare() blocks in run.result(): let the service's clock run while it waits
    recorder.start = lambda *a, **k: _advancing(run_done(*a, **k), emulator)  # type: ignore[method-assign]
    live = compare(["a fox"], models=models, session=recorder, display=False)
    sent = len(emulator.request_log)
    replay = Session(store=tmp_path / "store", mode="replay", budget_yuan=0.01)
    again = compare(["a fox"], models=models, session=replay, display=False)
    assert [again[0, m].images[0].sha256 for m in models] == [live[0, m].images[0].sha256 for m in models]
    assert len(emulator.request_log) == sent


# ---- the store -----------------------------------------------------------------------------------


def _entry(store: Store, given: GenerationRequest, sent_at: dt.datetime, task_id: str) -> JournalEntry:
    entry = JournalEntry(
        entry_id=uuid.uuid4().hex, run_id="run-1", service="emulator", backend="emulator", mode="record",
        state=EntryState.QUEUED, given=given, sent=None, task_id=None, status=None,
        created_at=sent_at.isoformat(timespec="milliseconds"), sent_at=None, finished_at=None, request_id=None,
        code=None, message=None, billed_images=0, saved_images=0, price_yuan=0.14,
    )  # fmt: skip
    store.record(entry)
    store.mark_sending(entry.entry_id, given, sent_at.isoformat(timespec="milliseconds"))
    store.attach_task(entry.entry_id, task_id, status="PENDING", request_id="req-1")
    return entry


def test_resume_reaches_back_the_services_full_24_hours(tmp_path):
    # Mutant: the resume window cut from 24 h to 1 h (in `unfinished` or `expired_unfinished`).
    store = Store(tmp_path)
    now = dt.datetime.now(dt.timezone.utc)
    request = GenerationRequest("fox", model="wanx2.1-t2i-turbo", n=1, seed=1)
    young = _entry(store, request, now - dt.timedelta(hours=23), "task-young")
    old = _entry(store, request.replace(seed=2), now - dt.timedelta(hours=25), "task-old")
    assert [e.entry_id for e in store.unfinished()] == [young.entry_id]
    assert [e.entry_id for e in store.expired_unfinished()] == [old.entry_id]


@pytest.mark.parametrize(
    "status, state, error", [("CANCELED", EntryState.CANCELED, TaskCanceledError),
                             ("UNKNOWN", EntryState.GONE, TaskUnknownError),
                             ("FAILED", EntryState.FAILED, TaskFailedError)],
)  # fmt: skip
def test_a_recorded_end_without_images_replays_as_the_same_kind_of_error(tmp_path, status, state, error):
    # Mutant: every recording without images replayed as TaskFailedError.
    store = Store(tmp_path / "store")
    request = GenerationRequest("fox", model="wanx2.1-t2i-turbo", n=1, seed=4)
    entry = _entry(store, request, dt.datetime.now(dt.timezone.utc), "task-1")
    store.finish(entry.entry_id, state, status=status, code="Ended", message="ended without images")
    (replayed,) = Session(store=tmp_path / "store", mode="replay").generate_many([request])
    assert type(replayed) is error and isinstance(replayed, TaskError) and replayed.task_id == "task-1"


def test_a_saved_image_carries_exactly_one_provenance_chunk_right_after_its_header(tmp_path):
    # Mutants: the chunk written after every chunk, or an earlier chunk kept beside the new one.
    session, emulator = fake_clock_session(tmp_path)
    (result,) = finish_run(session, emulator, [GenerationRequest("fox", model="wanx2.1-t2i-turbo", n=1, seed=2)])
    path = result.images[0].path
    data = Path(path).read_bytes()
    assert data.count(b"iTXt" + KEYWORD + b"\x00") == 1
    assert data[33 + 4 : 33 + 8] == b"iTXt"  # signature (8) + IHDR (25), then our chunk
    served = strip_provenance(data)
    assert read_provenance(served) is None and Image.open(io.BytesIO(served)).size == (1024, 1024)
    assert read_provenance(data)["task_id"] == result.task_id
    # Saving the stored file's bytes again (a re-import) still leaves one chunk, the new one.
    from wanx_nb._png import add_provenance

    again = add_provenance(data, {"task_id": "other"})
    assert again.count(b"iTXt" + KEYWORD + b"\x00") == 1 and read_provenance(again) == {"task_id": "other"}
    assert json.loads(json.dumps(read_provenance(data)))["images"][0]["seed"] == 2  # the record, narrowed to it


# ---- the run ---------------------------------------------------------------------------------


def test_ctrl_c_in_a_blocked_result_cancels_pending_tasks_and_keeps_the_running_one(tmp_path):
    # Mutant: Run.result() lets KeyboardInterrupt through without stopping the run.
    session, emulator = fake_clock_session(tmp_path)
    seen: list = []
    run = session.start([GenerationRequest(f"fox {i}", model="wanx-v1", n=1, seed=i) for i in range(3)],
                        on_progress=seen.append)

    def interrupt() -> None:  # what a kernel interrupt does to the blocked cell, once the first task runs
        if any(e.index == 0 and e.phase is Phase.PENDING for e in list(seen)):
            raise KeyboardInterrupt

    with pytest.raises(RunInterruptedError) as caught:
        run.result(on_tick=interrupt, tick=0.01)
    outcomes, summary = run.outcomes, caught.value.summary
    # Each request was canceled while PENDING (or never sent), or is running and kept for resume.
    kept = [o.task_id for o in outcomes if isinstance(o, TaskUnfinishedError)]
    assert all(isinstance(o, (TaskCanceledError, TaskUnfinishedError)) for o in outcomes), outcomes
    assert set(kept) <= set(summary.unfinished) and summary.billed_images == 0
    status = {tid: t.status_at(emulator.now()) for tid, t in emulator.tasks.items()}
    # (A create answered while the run was stopping can leave its task PENDING: it is kept for resume too.)
    assert "CANCELED" in status.values() and all(status[tid] in ("RUNNING", "PENDING") for tid in kept), status
    assert run.done()  # nothing left running in the background


# ---- resume and cancel: what they leave in the journal and say ---------------------------------


def test_resume_hands_each_recovered_result_to_its_callback_and_marks_expired_entries_gone(tmp_path):
    session, emulator = fake_clock_session(tmp_path)
    seen: list = []
    run = session.start([GenerationRequest("fox", model="wanx-v1", n=1, seed=9)], on_progress=seen.append)
    wait_until(lambda: any(e.task_id for e in list(seen)))  # the task exists on the service and in the journal
    kernel_dies(run)  # before the result is saved
    emulator.advance(3600)
    old = _entry(session.store, GenerationRequest("owl", n=1, seed=3),
                 dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=25), "task-too-old")
    got: list = []
    report = session.resume(on_result=got.append)
    (recovered,) = report.recovered
    assert got == [recovered] and recovered.saved_images == 1
    assert [e.entry_id for e in report.expired] == [old.entry_id]
    gone = session.store.entry(old.entry_id)
    assert gone.state is EntryState.GONE and gone.code == "Expired" and "24 h" in gone.message
    assert report.text() == ("recovered 1 task(s), 1 image(s) saved; "
                             "1 gone for good (older than the service's 24 h): task-too-old")


def test_a_canceled_task_is_recorded_canceled_and_the_summary_counts_every_request(tmp_path):
    session, emulator = fake_clock_session(tmp_path)
    seen: list = []
    requests = [GenerationRequest(f"fox {i}", model="wanx-v1", n=1, seed=i) for i in range(3)]
    run = session.start(requests, on_progress=seen.append)
    # The second request waits PENDING on the service behind the first (wanx-v1 runs one at a time).
    wait_until(lambda: any(e.index == 1 and e.phase is Phase.PENDING for e in list(seen)))
    canceled, running = run.cancel()
    assert canceled
    summary = run.summary()
    assert summary.requests == 3 and list(summary.canceled) == canceled and list(summary.still_running) == running
    for task_id in canceled:
        entry = session.store.find_task(task_id)
        assert (entry.state, entry.status, entry.message) == (EntryState.CANCELED, "CANCELED", "canceled while PENDING")
    run.withdraw()
    run.cancel()
    emulator.advance(3600)
    outcomes = run.result(on_tick=lambda: emulator.advance(3600))
    for outcome in outcomes:
        if isinstance(outcome, TaskCanceledError) and outcome.task_id in canceled:
            assert outcome.code == "Canceled" and outcome.server_message == "canceled while PENDING (not billed)"


# ---- what a session promises before anything is sent --------------------------------------------


def test_two_runs_started_side_by_side_cannot_both_spend_the_same_budget(tmp_path):
    session, emulator = fake_clock_session(tmp_path, budget_yuan=0.30)
    turbo = "wanx2.1-t2i-turbo"  # ¥0.14 an image
    assert session.estimate_cost([GenerationRequest("a", model=turbo, n=2), GenerationRequest("b", model=turbo, n=1)]) \
        == (3, pytest.approx(0.42))
    first = session.start([GenerationRequest("fox", model=turbo, n=2, seed=1)])  # ¥0.28 reserved, not yet billed
    with pytest.raises(BudgetExceededError) as info:
        session.start([GenerationRequest("fox", model=turbo, n=1, seed=5)])  # ¥0.14 > the ¥0.02 left
    assert info.value.remaining == pytest.approx(0.02)
    first.result(on_tick=lambda: emulator.advance(3600))
    (entry,) = session.store.history(limit=None)
    assert entry.state == "done" and entry.images == 2


def test_the_journal_says_nothing_was_saved_before_anything_was_sent(tmp_path):
    session, emulator = fake_clock_session(tmp_path)
    seen: list = []
    session.start([GenerationRequest("fox", model="wanx-v1", n=1, seed=1)], on_progress=seen.append)
    wait_until(lambda: any(e.task_id for e in list(seen)))
    (entry,) = session.store.unfinished()
    assert (entry.saved_images, entry.billed_images) == (0, 0)


def test_an_unknown_mode_is_refused_naming_it_and_the_choices(tmp_path):
    with pytest.raises(ConfigurationError) as info:
        Session(store=tmp_path / "store", mode="playback")
    assert "'playback'" in str(info.value) and "live, record, replay" in str(info.value)


def test_a_retry_after_of_zero_means_retry_now():
    from wanx_nb._backoff import parse_retry_after

    assert parse_retry_after({"retry-after": "0"}) == 0.0
    assert parse_retry_after({"retry-after-ms": "0"}) == 0.0
    assert parse_retry_after({"retry-after": "-3"}) == 0.0
