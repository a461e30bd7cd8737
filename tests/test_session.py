"""The session: budget, replay, write-ahead + resume, reproducible mode, key hygiene (issue 4)."""

import asyncio
import dataclasses
import datetime as dt
import gc
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from wanx_nb import _loop, _session
from wanx_nb._client import AsyncWanxClient
from wanx_nb._exceptions import (
    BudgetExceededError,
    ReplayMissError,
    ReuseUnfinishedError,
    TaskFailedError,
    TaskUnfinishedError,
    ValidationError,
)
from wanx_nb._request import GenerationRequest
from wanx_nb._session import ResumeReport, Session, get_session, set_session
from wanx_nb._run import Phase
from wanx_nb._store import EntryState, Store, read_png_provenance
from wanx_nb.emulator import Emulator, EmulatorSettings, Fault

from kernel_death import kernel_dies

CANARY = "sk-" + "canary_" + "7f3e9b2c_4d5a6e8f"  # built at run time


def fast_client(emulator: Emulator) -> AsyncWanxClient:
    """Polls planned in the service's seconds pass 1000x faster in real time; the service's fake
    clock moves only when the test advances it."""
    client = AsyncWanxClient(emulator=emulator)
    client._sleep = lambda seconds: asyncio.sleep(seconds / 1000)
    return client


def test_generate_stores_images_before_returning(session):
    result = session.generate(GenerationRequest("red fox", n=2, seed=5))
    assert result.backend == "emulator"
    assert [im.seed for im in result.images] == [5, 6]
    for im in result.images:
        assert read_png_provenance(im.path)["task_id"] == result.task_id
    assert session.spent_yuan == pytest.approx(0.28)


def test_unseeded_requests_get_a_known_seed(session):
    result = session.generate(GenerationRequest("red fox", n=2))
    seeds = [im.seed for im in result.images]
    assert seeds[0] is not None and seeds[1] == seeds[0] + 1
    assert result.request.seed == seeds[0]


def test_budget_refuses_before_any_request(tmp_path, emulator):
    session = Session(store=tmp_path / "s", emulator=emulator, budget_yuan=0.5)
    with pytest.raises(BudgetExceededError) as info:
        session.generate_many([GenerationRequest("fox", model="wanx2.1-t2i-plus", n=4)])  # ¥0.80
    assert "¥0.80" in str(info.value) and "budget" in str(info.value) and "Raise it" in str(info.value)
    assert emulator.request_log == []
    session.generate(GenerationRequest("fox", model="wanx2.1-t2i-plus", n=2, seed=1))  # ¥0.40 fits
    with pytest.raises(BudgetExceededError):
        session.generate(GenerationRequest("fox", model="wanx2.1-t2i-plus", n=1))  # ¥0.20 > ¥0.10 left


def test_validation_fails_before_any_request(session, emulator):
    with pytest.raises(ValidationError):
        session.generate(GenerationRequest("fox", model="wanx-v1", watermark=True))
    assert emulator.request_log == []


@pytest.mark.parametrize(
    ("requests", "says"),
    [
        (["a fox"], "requests[0]='a fox': a GenerationRequest, not a str; e.g. [GenerationRequest("),
        ("a fox", "requests='a fox': a list of GenerationRequest, not a str"),
        (GenerationRequest("a fox"), "requests=GenerationRequest(prompt='a fox', "),
        ([GenerationRequest("a fox"), None], "requests[1]=None: a GenerationRequest, not a NoneType"),
    ],
)
def test_what_is_not_a_list_of_requests_is_named_before_anything_is_sent(session, emulator, requests, says):
    # It was an AttributeError ('str' object has no attribute 'model') from deep inside validation.
    with pytest.raises(TypeError) as info:
        session.generate_many(requests)
    assert str(info.value).startswith(says)
    assert emulator.request_log == [] and session.store.history() == []


def test_reuse_looks_in_the_store_for_this_sessions_service(tmp_path, emulator):
    request = GenerationRequest("fox", model="wanx2.1-t2i-turbo", n=1, seed=3)
    live = Session(store=tmp_path / "s", emulator=emulator)
    made = live.generate(request)
    assert live.reusable(request).task_id == made.task_id
    assert live.reusable(request.replace(seed=4)) is None


def test_reuse_settles_what_an_earlier_run_made_and_sends_only_the_rest(tmp_path, emulator):
    made = GenerationRequest("fox", model="wanx2.1-t2i-plus", n=2, seed=5)
    new = GenerationRequest("owl", model="wanx2.1-t2i-plus", n=1, seed=6)
    earlier = Session(store=tmp_path / "s", emulator=emulator).generate(made)
    # ¥0.20 left: enough for the new request only, since the made one is not sent again.
    session = Session(store=tmp_path / "s", emulator=emulator, budget_yuan=0.2)
    phases, told = [], []
    run = session.start([made, new], reuse=True, on_progress=lambda p: phases.append((p.index, p.phase, p.task_id)),
                        on_result=lambda i, outcome: told.append(i))  # fmt: skip
    first, second = run.result()
    assert len(emulator.requests("create")) == 2  # one earlier, one now
    assert first.task_id == earlier.task_id and first.saved_images == 2
    assert first.warnings[-1] == "made by an earlier run, shown from the store: not paid again (reuse)"
    assert second.saved_images == 1 and not second.warnings
    assert (0, Phase.REUSED, earlier.task_id) in phases and sorted(told) == [0, 1]
    assert run.notes == [[], []] and run.phases() == [Phase.REUSED, Phase.DONE]
    summary = run.summary()
    assert summary.phases == {"reused": 1, "done": 1} and summary.billed_images == 1 and summary.cost_yuan == 0.2
    assert len(session.store.history()) == 2  # the reused request is not journaled again
    # Everything made before: nothing is sent, and the run is done at once.
    (only,) = session.generate_many([made], reuse=True)
    assert only.task_id == earlier.task_id and len(emulator.requests("create")) == 2
    with pytest.raises(BudgetExceededError):  # without reuse it would be sent, and it does not fit
        session.generate_many([made])


async def test_every_generate_form_passes_reuse_through_and_none_reuses_unasked(tmp_path, emulator):
    request = GenerationRequest("fox", model="wanx-v1", n=1, seed=8)
    session = Session(store=tmp_path / "s", emulator=emulator)
    made = session.generate(request)
    assert session.generate(request).task_id != made.task_id  # not asked: sent again
    assert len(emulator.requests("create")) == 2
    newest = session.store.reusable(request, session.service).task_id
    forms = [session.generate(request, reuse=True), (await session.agenerate_many([request], reuse=True))[0],
             await session.agenerate(request, reuse=True), session.generate_many([request], reuse=True)[0]]
    assert [r.task_id for r in forms] == [newest] * 4 and len(emulator.requests("create")) == 2


def test_a_recorded_reuse_of_one_request_replays_the_same_task(tmp_path, emulator):
    request = GenerationRequest("fox", model="wanx-v1", n=1, seed=9)

    def notebook(session):  # made, reused, made again: the replay must not move on at the reuse
        return [session.generate(request).task_id, session.generate(request, reuse=True).task_id,
                session.generate(request).task_id]

    recorded = notebook(Session(store=tmp_path / "s", emulator=emulator, mode="record"))
    assert recorded[0] == recorded[1] != recorded[2]
    assert notebook(Session(store=tmp_path / "s", mode="replay")) == recorded


def test_a_recorded_grid_that_reused_an_earlier_cells_images_replays_the_same(tmp_path, emulator):
    from wanx_nb.comparison import grid

    def notebook(session, before_seed_4=lambda: None):
        """Cells: a grid; one request made again; both with reuse; made again; a new seed with reuse;
        then seed 4, whose first make fails (when recording), and seed 4 with reuse."""
        def cell(seeds, **kw):
            g = grid("fox", x=f"seed={seeds}", session=session, display=False, model="wanx-v1", n=1, **kw)
            return g.text(), [c.result.task_id if c.result else getattr(c.error, "task_id", None) for c in g.cells]

        cells = [cell("1,2"), cell("1"), cell("1,2", reuse=True), cell("1"), cell("2,3", reuse=True)]
        before_seed_4()
        return [*cells, cell("4"), cell("4", reuse=True)]

    recorded = notebook(Session(store=tmp_path / "s", emulator=emulator, mode="record"),
                        lambda: emulator.script("create", Fault.outcome("FAILED")))  # fmt: skip
    assert "2 of 2 requests made by an earlier run" in recorded[2][0] and len(emulator.requests("create")) == 7
    assert recorded[2][1] == [recorded[1][1][0], recorded[0][1][1]]  # the newest make of each request
    assert "failed" in recorded[5][0] and "from the store" not in recorded[6][0]  # a failure is not reused
    replayed = notebook(Session(store=tmp_path / "s", mode="replay"))
    assert replayed == recorded and len(emulator.requests("create")) == 7
    # Replay looks up nothing a cell of this replay has not served yet.
    fresh = Session(store=tmp_path / "s", mode="replay")
    assert fresh.reusable(GenerationRequest("fox", model="wanx-v1", n=1, seed=1)) is None


def test_replay_serves_recorded_bytes_and_never_sends(tmp_path, emulator):
    store = tmp_path / "store"
    recorded = Session(store=store, emulator=emulator, mode="record").generate(GenerationRequest("fox", n=1))
    sent_before = len(emulator.request_log)
    replay = Session(store=store, emulator=emulator, mode="replay")
    again = replay.generate(GenerationRequest("fox", n=1))
    assert again.replayed and again.backend == "emulator"  # renders exactly as recorded
    assert [im.data for im in again.images] == [im.data for im in recorded.images]
    assert again.images[0].seed == recorded.images[0].seed
    assert len(emulator.request_log) == sent_before


def test_replay_miss_fails_loudly_without_sending(tmp_path, emulator):
    replay = Session(store=tmp_path / "empty", emulator=emulator, mode="replay")
    with pytest.raises(ReplayMissError) as info:
        replay.generate(GenerationRequest("never recorded", n=1, seed=3))
    assert "no recording" in str(info.value) and "WANX_NB_MODE=record" in str(info.value)
    assert emulator.request_log == []


def test_resume_after_a_crash_recovers_without_a_second_submit(tmp_path):
    # The service's clock is fake: the task cannot finish before the "crash", however slow the machine.
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=1.0, rate_limits=False))
    store = tmp_path / "store"
    crashed = Session(store=store, client=fast_client(emulator), clock=emulator.now)
    sent = threading.Event()
    run = crashed.start([GenerationRequest("fox", model="wanx-v1", n=2, seed=9)],
                        on_progress=lambda p: sent.set() if p.task_id else None)
    assert sent.wait(30), "the task was never created"
    kernel_dies(run)  # the wait never finishes, nothing is downloaded
    emulator.advance(3600)  # meanwhile the service finishes the task
    (pending,) = Store(store).unfinished()
    assert pending.sent.seed == 9

    restarted = Session(store=store, client=fast_client(emulator), clock=emulator.now)
    report = restarted.resume()
    (recovered,) = report.recovered
    assert recovered.task_id == pending.task_id
    assert [im.seed for im in recovered.images] == [9, 10]
    assert all(read_png_provenance(im.path)["task_id"] == pending.task_id for im in recovered.images)
    assert len(emulator.requests("create")) == 1
    assert Store(store).unfinished() == []
    assert report.text() == "recovered 1 task(s), 2 image(s) saved"


def test_reproducible_turns_rewriting_off_then_resends_the_recorded_prompt(session, emulator):
    first = session.generate(GenerationRequest("fox", n=1, seed=1), reproducible=True)
    assert any("prompt rewriting turned off" in w for w in first.warnings)
    assert emulator.requests("create")[0].json["parameters"]["prompt_extend"] is False
    rewritten = session.generate(GenerationRequest("wolf", n=1, seed=2))
    assert rewritten.images[0].actual_prompt and rewritten.images[0].actual_prompt != "wolf"
    again = session.generate(GenerationRequest("wolf", n=1, seed=2), reproducible=True)
    assert any("re-sent the recorded rewritten prompt" in w for w in again.warnings)
    assert emulator.requests("create")[-1].json["input"]["prompt"] == rewritten.images[0].actual_prompt


async def test_top_level_await_works_from_another_loop(session):
    result = await session.agenerate(GenerationRequest("fox", n=1, seed=4))
    assert result.images[0].seed == 4


def test_the_key_never_reaches_the_store_outputs_or_logs(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    emulator = Emulator(EmulatorSettings(time_scale=0.001))
    session = Session(api_key=CANARY, store=tmp_path / "store", emulator=emulator)
    result = session.generate(GenerationRequest("fox", n=2, seed=1))
    bundle, meta = result._repr_mimebundle_()
    with pytest.raises(Exception) as info:
        session.generate(GenerationRequest("EMU_BLOCK_INPUT fox", n=1))
    texts = [json.dumps(bundle), json.dumps(meta), repr(result), str(info.value), repr(info.value), caplog.text]
    for path in (tmp_path / "store").rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("latin-1"))
    assert all(CANARY not in t for t in texts)
    assert all(CANARY[3:] not in t for t in texts)


def test_a_recorded_task_failure_replays_as_the_same_error(tmp_path, emulator):
    store = tmp_path / "store"
    failing = GenerationRequest("a fox EMU_BLOCK_OUTPUT", n=1, seed=2)  # the task FAILS on the server
    (recorded,) = Session(store=store, emulator=emulator, mode="record").generate_many([failing])
    sent = len(emulator.request_log)
    (replayed,) = Session(store=store, emulator=emulator, mode="replay").generate_many([failing])
    assert type(replayed) is type(recorded) and str(replayed) == str(recorded)
    assert (replayed.task_id, replayed.code, replayed.server_message) == (
        recorded.task_id, "DataInspectionFailed", recorded.server_message)
    assert len(emulator.request_log) == sent


def test_backend_is_known_before_the_client_exists(tmp_path, emulator, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.delenv("DASHSCOPE_HTTP_BASE_URL", raising=False)
    assert Session(store=tmp_path / "a").backend == "emulator"
    assert Session(store=tmp_path / "b", api_key="sk-test", emulator=emulator).backend == "emulator"
    assert Session(store=tmp_path / "c", api_key="sk-test").backend == "dashscope"
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", "http://127.0.0.1:9/api/v1")
    assert Session(store=tmp_path / "d").backend == "dashscope"


def test_the_client_gets_the_sessions_connection_settings(tmp_path, emulator):
    key = "sk-" + "canary_" + "session_args"
    settings = dict(api_key=key, region="singapore", workspace="ws-canary", base_url="http://127.0.0.1:9/api/v1")
    session = Session(store=tmp_path / "store", **settings)
    client, direct = session.client(), AsyncWanxClient(**settings)
    assert (client.region, client.workspace, client.base_url) == (direct.region, direct.workspace, direct.base_url)
    assert client.workspace == "ws-canary" and client.base_url == "http://127.0.0.1:9/api/v1"
    session.close()  # closes the client it built
    Session(store=tmp_path / "other").close()  # nothing built yet: nothing to close, no error


def test_a_store_object_is_used_as_given_and_the_budget_comes_from_the_environment(tmp_path, emulator, monkeypatch):
    store = Store(tmp_path / "store")
    assert Session(store=store, emulator=emulator).store is store
    monkeypatch.setenv("WANX_NB_BUDGET_YUAN", "0.1")
    session = Session(store=store, emulator=emulator)
    assert session.budget_yuan == 0.1
    with pytest.raises(BudgetExceededError):
        session.generate(GenerationRequest("fox", model="wanx2.1-t2i-turbo", n=4))
    assert emulator.request_log == []


def test_every_generate_form_passes_callbacks_and_reproducible_through(session, emulator):
    def check(call) -> None:
        events, results = [], []
        outcome = call(events.append, lambda i, o: results.append((i, o)))
        result = outcome[0] if isinstance(outcome, list) else outcome
        assert events and results == [(0, result)]
        assert "reproducible: prompt rewriting turned off (prompt_extend=False)" in result.warnings
        assert emulator.requests("create")[-1].json["parameters"]["prompt_extend"] is False

    request = GenerationRequest("fox", model="wanx2.1-t2i-turbo", n=1, seed=1)
    forms = {
        "generate": lambda p, r: session.generate(request, reproducible=True, on_progress=p, on_result=r),
        "generate_many": lambda p, r: session.generate_many([request], reproducible=True, on_progress=p, on_result=r),
        "agenerate": lambda p, r: asyncio.run(session.agenerate(request, reproducible=True, on_progress=p, on_result=r)),
        "agenerate_many": lambda p, r: asyncio.run(
            session.agenerate_many([request], reproducible=True, on_progress=p, on_result=r)
        ),
    }
    for form in forms.values():
        check(form)
    # Without reproducible, rewriting is left to the model's default in every form.
    session.generate(request)
    asyncio.run(session.agenerate(request))
    asyncio.run(session.agenerate_many([request]))
    assert all(c.json["parameters"].get("prompt_extend") is not False for c in emulator.requests("create")[-3:])


def test_reproducible_resends_the_recorded_prompt_with_rewriting_off_and_says_so(session, emulator):
    rewritten = session.generate(GenerationRequest("wolf", n=1, seed=2))
    again = session.generate(GenerationRequest("wolf", n=1, seed=2), reproducible=True)
    assert "reproducible: re-sent the recorded rewritten prompt with prompt_extend off" in again.warnings
    sent = emulator.requests("create")[-1].json
    assert sent["input"]["prompt"] == rewritten.images[0].actual_prompt and sent["parameters"]["prompt_extend"] is False


def test_replay_serves_each_repeat_of_a_request_in_recorded_order_and_names_a_miss(tmp_path, emulator):
    store = tmp_path / "store"
    rec = Session(store=store, emulator=emulator, mode="record")
    seeds = [rec.generate(GenerationRequest("fox", n=1)).images[0].seed for _ in range(3)]
    rep = Session(store=store, emulator=emulator, mode="replay")
    assert [rep.generate(GenerationRequest("fox", n=1)).images[0].seed for _ in range(3)] == seeds
    missing = GenerationRequest("a wolf never recorded", n=1, seed=4)
    with pytest.raises(ReplayMissError) as info:
        rep.generate(missing)
    assert missing.summary() in str(info.value)  # the error says which request has no recording


def test_a_live_run_journals_its_tasks_under_the_sessions_service(session):
    session.generate(GenerationRequest("fox", n=1, seed=1))
    (entry,) = session.store.history()
    assert session.service == "emulator" and entry.service == session.service
    assert session.store.known_task_ids(session.service) == {entry.task_id}


def crash_after_sending(store, emulator: Emulator, requests: list[GenerationRequest]) -> None:
    """Start `requests`, and let the kernel die once the service has every task (nothing is collected)."""
    crashed = Session(store=store, client=fast_client(emulator), clock=emulator.now)
    created = threading.Semaphore(0)
    run = crashed.start(requests, on_progress=lambda p: created.release() if p.task_id and p.phase.value == "pending" else None)
    for _ in requests:
        assert created.acquire(timeout=30), "a task was never created"
    kernel_dies(run)


def test_resume_reports_what_it_saved_and_what_the_service_ended(tmp_path):
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=1.0, rate_limits=False))
    store = tmp_path / "store"
    ok, blocked = GenerationRequest("fox", n=1, seed=1), GenerationRequest("a fox EMU_BLOCK_OUTPUT", n=1, seed=2)
    crash_after_sending(store, emulator, [ok, blocked])
    emulator.advance(3600)  # one task succeeds, the other FAILS on the service

    saved = []
    report = Session(store=store, client=fast_client(emulator), clock=emulator.now).resume(on_result=saved.append)
    (recovered,) = report.recovered
    (ended,) = report.ended
    assert saved == [recovered] and recovered.request.prompt == "fox"  # on_result gets results only
    assert isinstance(ended, TaskFailedError) and report.unfinished == []
    assert report.text() == "recovered 1 task(s), 1 image(s) saved; 1 ended without images on the service's side (not billed)"
    assert ResumeReport([], [], [ended], []).text() == "1 ended without images on the service's side (not billed)"
    entries = Store(store).history(limit=None)
    gone = [entries[0], dataclasses.replace(entries[1], task_id=None)]
    assert ResumeReport([], [], [], gone).text() == (
        f"2 gone for good (older than the service's 24 h): {entries[0].task_id}, {entries[1].entry_id}"
    )


def test_resume_says_what_is_still_unfinished_and_why(tmp_path):
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=1.0, rate_limits=False))
    store = tmp_path / "store"
    crash_after_sending(store, emulator, [GenerationRequest("fox", n=1, seed=1)])
    emulator.advance(3600)
    emulator.script("query", Fault.status(400, code="InvalidParameter"))  # the service refuses the poll once
    session = Session(store=store, client=fast_client(emulator), clock=emulator.now)
    report = session.resume()
    (unfinished,) = report.unfinished
    assert isinstance(unfinished, TaskUnfinishedError) and (report.recovered, report.ended) == ([], [])
    assert report.text() == "1 still unfinished (InvalidParameter: run `%wanx resume` again later)"
    (recovered,) = session.resume().recovered  # the next resume saves it, without a second create
    assert recovered.task_id == unfinished.task_id and len(emulator.requests("create")) == 1
    # The same reason is given once.
    twice = [TaskUnfinishedError("t1", "no answer"), TaskUnfinishedError("t2", "no answer")]
    assert ResumeReport([], twice, [], []).text() == "2 still unfinished (Unfinished: run `%wanx resume` again later)"
    both = [TaskUnfinishedError("t1", "throttled", code="Throttling"), *twice]
    assert ResumeReport([], both, [], []).text() == (
        "3 still unfinished (Throttling, Unfinished: run `%wanx resume` again later)"
    )


def test_prepare_leaves_rewriting_alone_unless_asked_and_the_budget_allows_float_noise(tmp_path, emulator):
    session = Session(store=tmp_path / "store", emulator=emulator, budget_yuan=0.14 - 1e-9)
    request = GenerationRequest("fox", model="wanx2.1-t2i-turbo", n=1, seed=1)
    assert session.prepare(request) == (request, [])
    # One 0.14-yuan image against a budget short of it only by float noise: it runs.
    assert session.generate(request).saved_images == 1


def test_resume_that_saves_only_some_of_a_tasks_images_says_which_are_left_and_the_next_saves_them(tmp_path):
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=1.0, rate_limits=False))
    store = tmp_path / "store"
    crash_after_sending(store, emulator, [GenerationRequest("fox", n=2, seed=1)])
    emulator.advance(3600)
    # One download is not an image, the other keeps failing (a 500 on each of its 4 tries).
    emulator.script("image", Fault.body(b"<html>busy</html>"), *[Fault.status(500, code="InternalError")] * 4)
    session = Session(store=store, client=fast_client(emulator), clock=emulator.now)
    report = session.resume()
    (recovered,) = report.recovered
    (left,) = report.unfinished
    assert recovered.saved_images == 0 and recovered.billed_images == 2
    assert isinstance(left, TaskUnfinishedError) and left.task_id == recovered.task_id
    assert "2 of 2 billed image(s) still not saved (InvalidImage, DownloadFailed)" in str(left), str(left)
    assert left.code == "InvalidImage"  # the first image's reason names the entry
    assert report.text() == (
        "recovered 1 task(s), 0 image(s) saved; 1 still unfinished (InvalidImage: run `%wanx resume` again later)"
    )
    (again,) = session.resume().recovered  # the images left behind, from the same task: nothing created again
    assert again.saved_images == 2 and len(emulator.requests("create")) == 1
    assert session.resume().text() == "nothing to resume: every task in the journal is finished"


def test_resume_marks_a_task_older_than_the_services_24_hours_gone_and_says_why(tmp_path):
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=1.0, rate_limits=False))
    store = tmp_path / "store"
    crash_after_sending(store, emulator, [GenerationRequest("fox", n=1, seed=1)])
    (entry,) = Store(store).unfinished()
    two_days_ago = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)).isoformat(timespec="milliseconds")
    old = dataclasses.replace(entry, entry_id="old-entry", task_id="old-task", created_at=two_days_ago, sent_at=two_days_ago)
    Store(store).record(old)
    emulator.advance(3600)
    report = Session(store=store, client=fast_client(emulator), clock=emulator.now).resume()
    assert [e.entry_id for e in report.expired] == ["old-entry"] and len(report.recovered) == 1
    gone = Store(store).entry("old-entry")
    assert gone.state.value == "gone" and gone.code == "Expired"
    assert gone.message == "older than the service's 24 h: the task and its images can no longer be fetched"
    assert report.text().endswith("1 gone for good (older than the service's 24 h): old-task")


def test_a_resumed_task_counts_as_on_the_service_from_the_start(tmp_path):
    # Until resume has looked at an entry it is neither queued nor sent again: it is on the service.
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=1.0, rate_limits=False))
    store = tmp_path / "store"
    crash_after_sending(store, emulator, [GenerationRequest("fox", n=1, seed=1)])
    (entry,) = Store(store).unfinished()
    unknown = dataclasses.replace(entry, entry_id="unknown-outcome", task_id=None, state=EntryState.OUTCOME_UNKNOWN)
    Store(store).record(unknown)
    emulator.script("list", Fault.delay(3.0))  # resume is still reading the task list to reconcile it
    session = Session(store=store, client=fast_client(emulator), clock=emulator.now)
    run, _ = session.start_resume()
    phases = run.phases()
    summary = run.summary()
    assert len(phases) == 2 and set(phases) <= {Phase.PENDING, Phase.RUNNING}, phases
    assert summary.phases.get("queued") is None and "unknown-outcome" in summary.unfinished
    emulator.advance(3600)
    run.result(on_tick=lambda: emulator.advance(3600))
    assert len(emulator.requests("create")) == 1  # nothing was sent again


async def test_an_awaited_resume_saves_what_a_crashed_run_left_and_says_what_is_gone(tmp_path):
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=1.0, rate_limits=False))
    store = tmp_path / "store"
    ok, blocked = GenerationRequest("fox", n=1, seed=1), GenerationRequest("a fox EMU_BLOCK_OUTPUT", n=1, seed=2)
    crash_after_sending(store, emulator, [ok, blocked])
    entry = Store(store).unfinished()[0]
    two_days_ago = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)).isoformat(timespec="milliseconds")
    Store(store).record(dataclasses.replace(entry, entry_id="old-entry", task_id="old-task", created_at=two_days_ago,
                                            sent_at=two_days_ago))
    emulator.advance(3600)  # one task succeeds, the other FAILS on the service
    report = await Session(store=store, client=fast_client(emulator), clock=emulator.now).aresume()
    (recovered,) = report.recovered
    (ended,) = report.ended
    assert recovered.request.prompt == "fox" and recovered.saved_images == 1
    assert isinstance(ended, TaskFailedError) and report.unfinished == []
    assert [e.entry_id for e in report.expired] == ["old-entry"]
    assert Store(store).unfinished() == [] and len(emulator.requests("create")) == 2


def test_the_process_wide_session_is_made_once_from_the_environment_and_can_be_replaced(tmp_path, monkeypatch):
    monkeypatch.setattr(_session, "_SESSION", None)  # this test's own; the process's is put back after
    monkeypatch.setenv("WANX_NB_STORE", str(tmp_path / "from-env"))
    monkeypatch.setenv("WANX_NB_MODE", "replay")
    made = get_session()
    assert get_session() is made and made.mode == "replay" and made.store.root == tmp_path / "from-env"
    mine = Session(store=tmp_path / "mine", mode="record")
    set_session(mine)
    assert get_session() is mine
    set_session(None)  # a configuration change: the next use makes a new one
    assert get_session() not in (made, mine)


def loop_turn() -> None:
    """Let the background loop start what was handed to it before (it runs callbacks in order)."""
    _loop.run_sync(asyncio.sleep(0))


def test_the_client_a_session_built_is_closed_by_close_or_when_the_session_is_dropped(tmp_path, emulator):
    session = Session(store=tmp_path / "a", emulator=emulator)
    client = session.client()
    loop_turn()
    assert not client.is_closed
    session.close()
    loop_turn()
    assert client.is_closed
    dropped = Session(store=tmp_path / "b", emulator=emulator)
    forgotten = dropped.client()
    del dropped  # a session nobody closes must not keep its connections
    gc.collect()
    loop_turn()
    assert forgotten.is_closed
    given = fast_client(emulator)
    Session(store=tmp_path / "c", client=given).close()  # a client passed in stays the caller's
    loop_turn()
    assert not given.is_closed


# A run still polls when the process exits. Closing the client at exit would gain nothing (the process
# ends, and its connections with it) but fail those polls: the task would be journaled with "this client
# is closed; create a new one", a false note on a task the service still runs and resume will save.
_POLLING_AT_EXIT = textwrap.dedent("""
    import atexit, sys, threading

    def after_the_exit_handlers():  # registered first, so it runs after those wanx_nb registers
        emulator.advance(5)  # the task starts running: the run's next poll says so, or fails
        assert moved.wait(30), "no poll came back"
        (entry,) = Store(sys.argv[1]).unfinished()
        print(phases[-1], entry.message)

    atexit.register(after_the_exit_handlers)

    import asyncio
    from wanx_nb._request import GenerationRequest
    from wanx_nb._session import Session
    from wanx_nb._store import Store
    from wanx_nb.emulator import Emulator, EmulatorSettings

    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=1.0, rate_limits=False))
    session = Session(store=sys.argv[1], emulator=emulator, clock=emulator.now)
    session.client()._sleep = lambda seconds: asyncio.sleep(seconds / 1000)
    sent, moved, phases = threading.Event(), threading.Event(), []

    def progress(p):
        phases.append(p.phase.value)
        if p.phase.value in ("running", "unfinished"):
            moved.set()
        elif p.task_id:
            sent.set()

    session.start([GenerationRequest("fox", model="wanx-v1", n=1, seed=1)], on_progress=progress)
    assert sent.wait(30), "the task was never created"
""")


def test_the_interpreters_exit_leaves_the_client_open_for_a_run_still_polling(tmp_path, emulator):
    session = Session(store=tmp_path / "here", emulator=emulator)
    assert session.client() is session.client()  # built once, closed by close() (above), not at exit
    session.close()
    # The child imports the package this process imports (under mutmut: the mutated copy).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    child = subprocess.run([sys.executable, "-c", _POLLING_AT_EXIT, str(tmp_path / "store")], env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode == 0 and child.stdout.split() == ["running", "None"], child.stdout + child.stderr


def test_two_lost_creates_never_adopt_the_same_task(tmp_path):
    # Two requests alike (model, prompt, n) whose creates' answers were lost, and one task on the
    # service: it was billed once, so it is adopted once, by one of them; the other made none.
    # The service's clock starts at the wall time the journal is written in (the store ages entries by it).
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=1.0, rate_limits=False, fake_clock_start=time.time()))
    crash_after_sending(tmp_path / "elsewhere", emulator, [GenerationRequest("fox", model="wanx-v1", n=1, seed=1)])
    (made,) = Store(tmp_path / "elsewhere").unfinished()
    # Sent when the service made its task, by the service's (fake) clock, which the client reads too.
    sent_at = dt.datetime.fromtimestamp(emulator.tasks[made.task_id].submit_time, dt.timezone.utc).isoformat()
    store = Store(tmp_path / "store")
    for entry_id in ("lost-1", "lost-2"):
        store.record(dataclasses.replace(made, entry_id=entry_id, task_id=None, state=EntryState.OUTCOME_UNKNOWN,
                                         sent_at=sent_at))  # fmt: skip
    emulator.advance(600)
    client = fast_client(emulator)
    client._wall = emulator.now
    report = Session(store=store, client=client, clock=emulator.now).resume()
    (adopted,) = report.recovered
    (none,) = report.ended
    assert adopted.task_id == made.task_id and "does not name the prompt" in " ".join(adopted.warnings)
    assert "nothing was billed" in str(none)
    assert store.known_task_ids(made.service) == {made.task_id} and len(emulator.requests("create")) == 1


def test_resume_leaves_tasks_sent_to_another_service_alone_and_says_where(tmp_path):
    # Asked of this service, another one's task would be "not found", and its billed images lost.
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=1.0, rate_limits=False))
    store = tmp_path / "store"
    crash_after_sending(store, emulator, [GenerationRequest("fox", n=1, seed=1)])
    (entry,) = Store(store).unfinished()
    Store(store).record(dataclasses.replace(entry, entry_id="theirs", task_id="their-task", service="other.example:8000"))
    emulator.advance(3600)
    report = Session(store=store, client=fast_client(emulator), clock=emulator.now).resume()
    assert len(report.recovered) == 1 and report.left_to_other_services == 1
    assert report.text().endswith(
        "1 sent to another service (other.example:8000): resume them with its base URL (DASHSCOPE_HTTP_BASE_URL) and key"
    )
    assert [e.entry_id for e in Store(store).unfinished()] == ["theirs"]
    assert all("their-task" not in r.path for r in emulator.requests("query"))


def test_reuse_of_a_request_an_earlier_run_left_unfinished_sends_nothing_until_resumed(tmp_path):
    # Its task may be billed and its images not saved: sent again, it would be paid twice.
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=1.0, rate_limits=False))
    store = tmp_path / "store"
    request = GenerationRequest("reuse me", model="wanx-v1", n=2, seed=800)
    crash_after_sending(store, emulator, [request])
    session = Session(store=store, client=fast_client(emulator), clock=emulator.now)
    with pytest.raises(ReuseUnfinishedError) as refused:
        session.start([request], reuse=True)
    (entry,) = Store(store).unfinished()
    assert refused.value.task_id == entry.task_id and not refused.value.sent and refused.value.billed is False
    assert "nothing was sent. Resume first" in str(refused.value) and len(emulator.requests("create")) == 1
    assert f"an earlier run sent this request ({request.summary()}) and task {entry.task_id}" in str(refused.value)
    emulator.advance(3600)
    assert len(session.resume().recovered) == 1
    (again,) = session.generate_many([request], reuse=True)
    assert again.task_id == entry.task_id and again.saved_images == 2 and len(emulator.requests("create")) == 1


def test_a_sync_calls_result_is_found_by_its_request_id_the_id_history_shows(session):
    # A synchronous call has no task: its request id is its only id, and history showed none.
    from wanx_nb._history_html import history_mimebundle

    result = session.generate(GenerationRequest("a fox", model="z-image-turbo", seed=3))
    assert result.task_id is None and result.request_id
    (row,) = session.store.history()
    assert row.task_id is None and row.request_id == result.request_id
    shown = session.store.get(result.request_id)
    assert shown is not None and shown.request_id == result.request_id and shown.saved_images == 1
    bundle, metadata = history_mimebundle([row])
    assert result.request_id in bundle["text/plain"] and metadata["wanx_nb"]["history"] == [result.request_id]


def test_a_resume_report_names_every_other_service_it_left_alone():
    report = ResumeReport([], [], [], [], left_to_other_services=3, other_services=("a.example:8000", "emulator"))
    assert report.text() == ("3 sent to another service (a.example:8000, emulator): resume them with its base URL "
                             "(DASHSCOPE_HTTP_BASE_URL) and key")
