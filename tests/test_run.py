"""The Run lifecycle: events in order, result, cancel, withdraw, timeout and interrupt.

Time is the emulator's fake clock: tasks move only when the test advances it, and the run's own
deadline is measured on the same clock, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import gc
import re
import threading
import time
import weakref

import httpx
import pytest

from wanx_nb import _loop
from wanx_nb._client import AsyncWanxClient
from wanx_nb._constants import DEFAULT_MAX_RETRIES, DOWNLOADS_AT_ONCE
from wanx_nb._error_card import error_text
from wanx_nb._exceptions import (
    APIConnectionError,
    RunInterruptedError,
    RunTimeoutError,
    TaskCanceledError,
    TaskFailedError,
    TaskUnfinishedError,
)
from wanx_nb._models import GenerationResult
from wanx_nb._request import GenerationRequest
from wanx_nb._run import Phase
from wanx_nb._session import Session
from wanx_nb._store import EntryState, Store
from wanx_nb.emulator import Emulator, EmulatorSettings, Fault

from kernel_death import kernel_dies


@pytest.fixture
def fake_emulator():
    # Tasks take their real durations, on a clock that moves only when the test says so. The client
    # paces its submits and polls in real time while that clock stands still, so the service's
    # per-second windows would only ever fill: rate limits are off here (test_client_emulator and
    # test_scheduler cover them on one clock).
    return Emulator(EmulatorSettings(clock="fake", time_scale=1.0, rate_limits=False))


def fast_client(emulator: Emulator) -> AsyncWanxClient:
    """The client plans its polls in seconds of the service's durations; here they pass 1000x faster
    in real time, while the service's own clock moves only when the test advances it."""
    client = AsyncWanxClient(emulator=emulator)
    client._sleep = lambda seconds: asyncio.sleep(seconds / 1000)
    return client


@pytest.fixture
def fake_session(tmp_path, fake_emulator):
    return Session(store=tmp_path / "store", client=fast_client(fake_emulator), clock=fake_emulator.now)


class Recorder:
    """Collects progress events from the background loop."""

    def __init__(self) -> None:
        self.events = []
        self.changed = threading.Condition()

    def __call__(self, progress) -> None:
        with self.changed:
            self.events.append(progress)
            self.changed.notify_all()

    def wait_for(self, predicate, timeout: float = 20.0) -> None:
        """Wait (in real time, generously) until the events satisfy `predicate`."""
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self.events), timeout), [e.label for e in self.events]

    def phases(self, index: int = 0) -> list[Phase]:
        out = []
        for e in self.events:
            if e.index == index and (not out or out[-1] is not e.phase):
                out.append(e.phase)
        return out


def has(phase: Phase, index: int = 0):
    return lambda events: any(e.index == index and e.phase is phase for e in events)


def test_events_come_in_lifecycle_order_and_the_result_is_saved(fake_session, fake_emulator):
    events = Recorder()
    run = fake_session.start([GenerationRequest("fox", model="wanx2.1-t2i-turbo", n=2, seed=3)], on_progress=events)
    events.wait_for(has(Phase.PENDING))
    fake_emulator.advance(3600)  # the task runs and ends on the service's clock
    (result,) = run.result()

    assert isinstance(result, GenerationResult)
    phases = events.phases()
    assert phases[:3] == [Phase.QUEUED, Phase.SENDING, Phase.PENDING]
    assert phases[-2:] == [Phase.DOWNLOADING, Phase.DONE]
    assert all(e.phase.is_final is False for e in events.events[:-1])
    assert [im.seed for im in result.images] == [3, 4] and all(im.path for im in result.images)
    summary = run.summary()
    assert (summary.billed_images, summary.saved_images, summary.unfinished) == (2, 2, ())
    (entry,) = fake_session.store.history()
    assert entry.task_id == result.task_id


def test_a_create_that_never_connected_is_refused_not_left_for_resume(fake_session, fake_emulator):
    # A refused connection on every try: the create never reached the service, so nothing can be
    # billed and resume has nothing to settle; the user is told to run it again, not to resume.
    fake_emulator.script("create", *[Fault.drop_before()] * (DEFAULT_MAX_RETRIES + 1))
    run = fake_session.start([GenerationRequest("fox", model="wanx2.1-t2i-turbo", n=1, seed=3)])
    (outcome,) = run.result()

    assert isinstance(outcome, APIConnectionError) and outcome.sent is False
    assert fake_emulator.tasks == {} and run.summary().unfinished == ()
    (entry,) = fake_session.store.history()
    assert entry.state == EntryState.REJECTED.value and fake_session.store.unfinished() == []
    assert "nothing reached the service and nothing was billed" in error_text(outcome)
    assert "resume" not in error_text(outcome)


def test_a_request_is_downloading_as_soon_as_its_task_succeeds(fake_session, fake_emulator):
    # Large images on a slow network take seconds: the status must not say "running" meanwhile.
    events = Recorder()
    images_asked_at_downloading = []

    def on_progress(event) -> None:
        if event.phase is Phase.DOWNLOADING:
            images_asked_at_downloading.append(len(fake_emulator.requests("image")))
        events(event)

    run = fake_session.start([GenerationRequest("fox", model="wanx2.1-t2i-turbo", n=2, seed=3)], on_progress=on_progress)
    events.wait_for(has(Phase.PENDING))
    fake_emulator.advance(3600)
    (result,) = run.result()

    assert isinstance(result, GenerationResult) and len(fake_emulator.requests("image")) == 2
    assert images_asked_at_downloading == [0]  # once, before the first image was asked for
    assert events.phases()[-2:] == [Phase.DOWNLOADING, Phase.DONE]


def test_the_journal_holds_each_request_before_anything_is_sent(fake_session, fake_emulator):
    run = fake_session.start([GenerationRequest("fox", model="wanx-v1", n=1, seed=1)] * 3)
    # Written synchronously by start(): present even if the process died right now.
    states = [fake_session.store.entry(s.entry_id).state for s in run._slots]
    assert len(states) == 3 and all(isinstance(s, EntryState) for s in states)
    fake_emulator.advance(3600)
    run.result(on_tick=lambda: fake_emulator.advance(3600))


def test_a_timeout_cancels_pending_tasks_and_keeps_running_ones_for_resume(fake_session, fake_emulator):
    events = Recorder()
    # wanx-v1 runs one task at a time: the second stays PENDING on the service (or queued with us).
    run = fake_session.start(
        [GenerationRequest(f"fox {i}", model="wanx-v1", n=1, seed=i) for i in range(2)], on_progress=events
    )
    events.wait_for(has(Phase.PENDING, 0))

    def tick() -> None:
        fake_emulator.advance(1)  # the run's deadline is on the fake clock too; wanx-v1 runs ~30 s

    with pytest.raises(RunTimeoutError) as caught:
        run.result(timeout=5, on_tick=tick)
    summary = caught.value.summary
    assert summary.billed_images == 0
    first, second = run.outcomes
    assert isinstance(first, TaskUnfinishedError) and first.task_id in summary.unfinished  # running: kept
    assert isinstance(second, TaskCanceledError)  # PENDING on the service, or never sent: not billed
    # Nothing is lost: whatever was sent and not canceled is kept for resume.
    creates = len(fake_emulator.requests("create"))
    fake_emulator.advance(3600)
    report = fake_session.resume()
    assert len(fake_emulator.requests("create")) == creates  # resume never re-sends
    billed = sum(t.billed_images if hasattr(t, "billed_images") else 0 for t in report.recovered)
    assert billed == sum(1 for t in fake_emulator.tasks.values() if t.status_at(fake_emulator.now()) == "SUCCEEDED")


def test_an_interrupt_withdraws_cancels_and_says_what_resume_will_save(fake_session, fake_emulator):
    events = Recorder()
    run = fake_session.start(
        [GenerationRequest(f"fox {i}", model="wanx-v1", n=1, seed=i) for i in range(4)], on_progress=events
    )
    events.wait_for(has(Phase.PENDING, 0))

    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(RunInterruptedError) as caught:
        run.result(on_tick=interrupt)
    assert isinstance(caught.value, KeyboardInterrupt)  # a blocked cell still stops
    assert caught.value._render_traceback_() == [str(caught.value.args[0])]
    first, *rest = run.outcomes
    # The first task was already running (the service cannot cancel it): it is kept for resume.
    assert isinstance(first, TaskUnfinishedError) and first.task_id in caught.value.summary.unfinished
    # The others were PENDING on the service (canceled, not billed) or never sent (withdrawn).
    assert all(isinstance(o, TaskCanceledError) for o in rest), rest
    assert "resume" in caught.value.args[0]
    statuses = [t.status_at(fake_emulator.now()) for t in fake_emulator.tasks.values()]
    assert statuses.count("RUNNING") == 1 and set(statuses) <= {"RUNNING", "CANCELED"}
    creates = len(fake_emulator.requests("create"))

    fake_emulator.advance(3600)
    report = fake_session.resume()
    (recovered,) = report.recovered
    assert recovered.task_id == first.task_id and recovered.saved_images == 1
    assert len(fake_emulator.requests("create")) == creates
    assert fake_session.resume().text().startswith("nothing to resume")


def test_cancel_and_withdraw_touch_only_their_own_run(fake_session, fake_emulator):
    # wanx-v1 runs one task at a time: "other" runs; "mine" waits behind it, on the service (PENDING)
    # when the client keeps the service's queue primed, else in the client's queue.
    other_events, my_events = Recorder(), Recorder()
    other = fake_session.start([GenerationRequest("other", model="wanx-v1", n=1, seed=2)], on_progress=other_events)
    other_events.wait_for(has(Phase.PENDING))
    mine = fake_session.start([GenerationRequest("mine", model="wanx-v1", n=1, seed=1)], on_progress=my_events)
    my_events.wait_for(lambda events: any(e.phase in (Phase.QUEUED, Phase.PENDING) for e in events))

    withdrawn = mine.withdraw()
    canceled, running = mine.cancel()
    assert running == [] and withdrawn + len(canceled) == 1
    (ours,) = mine.result()
    assert isinstance(ours, TaskCanceledError)
    assert mine.withdraw() == 0 and mine.cancel() == ([], [])  # nothing left once done

    fake_emulator.advance(3600)
    (theirs,) = other.result()
    assert isinstance(theirs, GenerationResult) and theirs.saved_images == 1
    (my_entry,) = [e for e in fake_session.store.history(limit=None) if e.prompt == "mine"]
    assert my_entry.state in ("canceled", "withdrawn") and my_entry.billed == 0


def test_withdraw_drops_every_request_still_waiting_for_a_place_and_nothing_else(fake_session, fake_emulator):
    # wanx-v1 runs one task and keeps two queued at the service: of 8 requests, most wait with us.
    events = Recorder()
    run = fake_session.start(
        [GenerationRequest(f"fox {i}", model="wanx-v1", n=1, seed=i) for i in range(8)], on_progress=events
    )
    events.wait_for(has(Phase.PENDING, 0))
    withdrawn = run.withdraw()
    run.result(on_tick=lambda: fake_emulator.advance(3600))

    creates = fake_emulator.requests("create")
    sent = len(creates)
    assert 1 <= sent <= 3 and withdrawn == 8 - sent  # nothing was sent after the withdrawal
    assert [c.json["input"]["prompt"] for c in creates] == [f"fox {i}" for i in range(sent)]  # in order
    assert all(isinstance(o, GenerationResult) and o.saved_images == 1 for o in run.outcomes[:sent])
    assert all(isinstance(o, TaskCanceledError) for o in run.outcomes[sent:])
    assert run.phases() == [Phase.DONE] * sent + [Phase.WITHDRAWN] * (8 - sent)
    states = {e.prompt: (e.state, e.billed) for e in fake_session.store.history(limit=None)}
    assert [states[f"fox {i}"] for i in range(sent, 8)] == [("withdrawn", 0)] * (8 - sent)
    for i in range(8):  # every request said QUEUED first and ended once
        phases = events.phases(i)
        assert phases[0] is Phase.QUEUED and sum(p.is_final for p in phases) == 1, phases


def test_a_run_stopped_outright_withdraws_what_it_never_sent(fake_session, fake_emulator):
    # A second Ctrl-C stops the run without the cancels: requests still waiting with us are withdrawn,
    # sent ones stay in the journal for resume.
    events = Recorder()
    run = fake_session.start(
        [GenerationRequest(f"fox {i}", model="wanx-v1", n=1, seed=i) for i in range(8)], on_progress=events
    )
    events.wait_for(has(Phase.PENDING, 0))
    run._future.cancel()
    events.wait_for(lambda _: all(phase.is_final for phase in run.phases()))

    sent = len(fake_emulator.requests("create"))
    assert 1 <= sent <= 3 and run.phases()[sent:] == [Phase.WITHDRAWN] * (8 - sent)
    assert all(isinstance(o, TaskCanceledError) for o in run.outcomes[sent:])
    states = {e.prompt: e.state for e in fake_session.store.history(limit=None)}
    assert [states[f"fox {i}"] for i in range(sent, 8)] == ["withdrawn"] * (8 - sent)
    assert sorted(e.given.prompt for e in fake_session.store.unfinished()) == [f"fox {i}" for i in range(sent)]


def test_replay_runs_end_at_once_with_replayed_events(tmp_path, fake_emulator):
    rec = Session(store=tmp_path / "s", client=fast_client(fake_emulator), clock=fake_emulator.now, mode="record")
    run = rec.start([GenerationRequest("fox", n=1, seed=5)])
    run.result(on_tick=lambda: fake_emulator.advance(3600))
    events = Recorder()
    rep = Session(store=tmp_path / "s", mode="replay")
    replay = rep.start([GenerationRequest("fox", n=1, seed=5)], on_progress=events)
    assert replay.done()
    (result,) = replay.result()
    assert result.replayed and events.phases() == [Phase.REPLAYED]


def test_a_create_answered_while_stopping_is_canceled_too(tmp_path):
    # The create is on the wire when Ctrl-C comes; it completes (a sent create always does), and its
    # task, PENDING on the service, is canceled after the workers stop instead of being left to bill.
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=1.0, rate_limits=False, pending_seconds=1e9))
    session = Session(store=tmp_path / "store", client=fast_client(emulator), clock=emulator.now)
    emulator.script("create", Fault.delay(0.3))
    events = Recorder()
    run = session.start([GenerationRequest("fox", model="wanx2.1-t2i-turbo", n=1, seed=1)], on_progress=events)
    events.wait_for(has(Phase.SENDING))

    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(RunInterruptedError) as caught:
        run.result(on_tick=interrupt, tick=0.01)
    (outcome,) = run.outcomes
    (task,) = emulator.tasks.values()
    assert isinstance(outcome, TaskCanceledError) and task.status_at(emulator.now()) == "CANCELED"
    assert caught.value.summary.unfinished == () and task.task_id in caught.value.summary.canceled


def interrupt() -> None:
    raise KeyboardInterrupt


def test_a_replayed_run_reports_each_request_with_its_task_and_recorded_time(tmp_path, fake_emulator):
    store = tmp_path / "s"
    requests = [GenerationRequest("fox", n=1, seed=5), GenerationRequest("a fox EMU_BLOCK_OUTPUT", n=1, seed=2)]
    rec = Session(store=store, client=fast_client(fake_emulator), clock=fake_emulator.now, mode="record")
    recorded = rec.start(requests).result(on_tick=lambda: fake_emulator.advance(3600))
    events, results = Recorder(), []
    replay = Session(store=store, mode="replay").start(
        requests, on_progress=events, on_result=lambda i, outcome: results.append((i, outcome))
    )
    ok, failed = replay.result()
    assert isinstance(ok, GenerationResult) and isinstance(failed, TaskFailedError)
    # Each request says REPLAYED once, with the recorded task and the time the recorded task took.
    assert [(e.index, e.phase, e.task_id, e.elapsed) for e in events.events] == [
        (0, Phase.REPLAYED, recorded[0].task_id, ok.elapsed), (1, Phase.REPLAYED, recorded[1].task_id, 0.0)
    ]
    assert results == [(0, ok), (1, failed)]
    assert replay.requests[0] == ok.request and replay.requests[0].seed == 5
    assert replay.notes == [[], []]
    summary = replay.summary()
    assert (summary.phases, summary.billed_images, summary.cost_yuan, summary.unfinished) == ({"replayed": 2}, 0, 0, ())
    seen = []
    replay.add_done_callback(seen.append)  # already done: called at once, with the run
    assert seen == [replay]


def test_the_summary_counts_each_phase_and_prices_what_was_billed(fake_session, fake_emulator):
    requests = [
        GenerationRequest("fox", model="wanx2.1-t2i-turbo", n=2, seed=3),
        GenerationRequest("fox", model="wanx2.1-t2i-turbo", n=1, seed=4),
        GenerationRequest("fox", model="z-image-turbo", n=1, seed=5, prompt_extend=True),  # rewriting costs more
    ]
    run = fake_session.start(requests)
    results = run.result(on_tick=lambda: fake_emulator.advance(3600))
    assert all(isinstance(r, GenerationResult) for r in results), results
    summary = run.summary()
    assert summary.phases == {"done": 3} and summary.requests == 3
    assert summary.billed_images == 4
    assert summary.cost_yuan == round(sum(r.cost_yuan for r in results), 4) > 0


@pytest.mark.parametrize("timeout", [-1, float("nan"), "10", True])
def test_a_mistyped_timeout_is_refused_and_the_run_goes_on(fake_session, fake_emulator, timeout):
    # -1 used to stop the run at once: withdrawn, canceled, kept for resume, for a typo.
    run = fake_session.start([GenerationRequest("fox", model="wanx-v1", n=1, seed=1)])
    with pytest.raises(ValueError, match=rf"^timeout={re.escape(repr(timeout))}: a number of seconds, 0 or more"):
        run.result(timeout=timeout)
    (outcome,) = run.result(on_tick=lambda: fake_emulator.advance(60))
    assert isinstance(outcome, GenerationResult) and outcome.saved_images == 1


def test_the_timeout_counts_on_the_runs_clock_from_the_call(fake_session, fake_emulator):
    events = Recorder()
    run = fake_session.start([GenerationRequest("fox", model="wanx-v1", n=1, seed=1)], on_progress=events)
    events.wait_for(has(Phase.PENDING))
    ticks = []

    def tick() -> None:
        ticks.append(fake_emulator.now())
        fake_emulator.advance(1)  # wanx-v1 runs ~30 s: the task is still running at the deadline

    with pytest.raises(RunTimeoutError) as caught:
        run.result(timeout=5, on_tick=tick, tick=0.01)
    assert len(ticks) == 5  # it stops as the clock reaches the deadline, not a tick before or after
    assert str(caught.value).startswith("stopped waiting after 5 s")

    again = fake_session.start([GenerationRequest("fox", model="wanx-v1", n=1, seed=2)])
    with pytest.raises(RunTimeoutError) as caught:
        again.result(timeout=0, tick=0.01)
    assert str(caught.value).startswith("stopped waiting after 0 s")


def test_an_interrupt_names_each_task_once_as_canceled_or_still_running(fake_session, fake_emulator):
    # Of 8 wanx-v1 requests one runs, two wait on the service (PENDING) and the rest wait with us.
    events = Recorder()
    run = fake_session.start(
        [GenerationRequest(f"fox {i}", model="wanx-v1", n=1, seed=i) for i in range(8)], on_progress=events
    )
    events.wait_for(has(Phase.PENDING, 1))
    with pytest.raises(RunInterruptedError) as caught:
        run.result(on_tick=interrupt, tick=0.01)
    summary = caught.value.summary
    first, *rest = run.outcomes
    assert isinstance(first, TaskUnfinishedError) and summary.still_running == (first.task_id,)
    canceled = [o for o in rest if isinstance(o, TaskCanceledError) and o.code == "Canceled"]
    assert canceled and summary.canceled == tuple(o.task_id for o in canceled)
    assert all(o.task_status == "CANCELED" for o in canceled)
    assert all(fake_emulator.tasks[o.task_id].status_at(fake_emulator.now()) == "CANCELED" for o in canceled)
    assert run.phases()[len(canceled) + 1:] == [Phase.WITHDRAWN] * (7 - len(canceled))


def test_cancel_again_cancels_what_was_sent_since_and_keeps_the_tally(fake_session, fake_emulator):
    events = Recorder()
    run = fake_session.start(
        [GenerationRequest(f"fox {i}", model="wanx-v1", n=1, seed=i) for i in range(8)], on_progress=events
    )
    events.wait_for(has(Phase.PENDING, 2))
    (running_id,) = {e.task_id for e in events.events if e.index == 0 and e.task_id}
    first, running = run.cancel()
    assert running == [running_id] and len(first) == 2
    events.wait_for(has(Phase.PENDING, 3))  # the places freed: the next requests were sent
    second, running = run.cancel()
    task_3 = next(e.task_id for e in events.events if e.index == 3 and e.task_id)
    assert running == [running_id] and task_3 in second and not set(first) & set(second)
    summary = run.summary()
    assert summary.canceled[: len(first) + len(second)] == tuple(first + second)
    assert summary.still_running == (running_id,)  # tried twice, named once
    run.withdraw()
    run.cancel()
    run.result(on_tick=lambda: fake_emulator.advance(3600))


def test_cancel_goes_past_requests_without_a_task_and_names_a_refused_cancel(fake_session, fake_emulator):
    # The first create is refused (no task); the second runs; the third waits on the service.
    fake_emulator.script("create", Fault.status(400, code="InvalidParameter"))
    events = Recorder()
    run = fake_session.start(
        [GenerationRequest(f"fox {i}", model="wanx-v1", n=1, seed=i) for i in range(3)], on_progress=events
    )
    events.wait_for(has(Phase.PENDING, 2))
    task_1, task_2 = (next(e.task_id for e in events.events if e.index == i and e.task_id) for i in (1, 2))
    canceled, running = run.cancel()
    assert (canceled, running) == ([task_2], [task_1])
    fake_emulator.advance(3600)
    third = fake_session.start([GenerationRequest("fox 3", model="wanx-v1", n=1, seed=3)], on_progress=events)
    events.wait_for(lambda evs: any(e.phase is Phase.PENDING and e.task_id not in (task_1, task_2) for e in evs))
    fake_emulator.script("cancel", Fault.status(400, code="InvalidParameter"))
    canceled, running = third.cancel()  # the service refused this cancel: the task is named, not lost
    (task_3,) = {e.task_id for e in events.events if e.task_id not in (None, task_1, task_2)}
    assert (canceled, running) == ([], [task_3])
    third.result(on_tick=lambda: fake_emulator.advance(3600))
    run.result()


def test_an_interrupted_resume_keeps_its_tasks_for_the_next_resume(tmp_path, fake_emulator):
    store = tmp_path / "store"
    crashed = Session(store=store, client=fast_client(fake_emulator), clock=fake_emulator.now)
    events = Recorder()
    run = crashed.start([GenerationRequest("fox", model="wanx-v1", n=1)], on_progress=events)  # unseeded
    events.wait_for(lambda evs: any(e.task_id for e in evs))
    kernel_dies(run)  # while the task runs (the service's clock stands still)
    events.wait_for(lambda _: all(phase.is_final for phase in run.phases()))
    (entry,) = crashed.store.unfinished()
    assert entry.given.seed is None and entry.sent.seed is not None

    restarted = Session(store=store, client=fast_client(fake_emulator), clock=fake_emulator.now)
    events = Recorder()
    resumed, _ = restarted.start_resume(on_progress=events)
    assert resumed.requests == (entry.sent,)  # the request as sent, with the seed the service got
    events.wait_for(has(Phase.PENDING, 0))
    with pytest.raises(RunInterruptedError) as caught:
        resumed.result(on_tick=interrupt, tick=0.01)
    (outcome,) = resumed.outcomes
    # The task was sent and runs: stopping the resume keeps it for the next one, never "withdrawn".
    assert isinstance(outcome, TaskUnfinishedError) and outcome.task_id == entry.task_id
    assert outcome.code == "Interrupted" and restarted.store.entry(entry.entry_id).code == "Interrupted"
    assert caught.value.summary.unfinished == (entry.task_id,) and caught.value.summary.saved_images == 0
    assert [e.entry_id for e in restarted.store.unfinished()] == [entry.entry_id]

    fake_emulator.advance(3600)
    (recovered,) = restarted.resume().recovered
    assert recovered.task_id == entry.task_id and recovered.images[0].seed == entry.sent.seed
    assert len(fake_emulator.requests("create")) == 1


async def test_cancelling_an_awaited_run_stops_it_and_keeps_what_was_sent(fake_session, fake_emulator):
    events = Recorder()
    run = fake_session.start(
        [GenerationRequest(f"fox {i}", model="wanx-v1", n=1, seed=i) for i in range(3)], on_progress=events
    )
    await asyncio.to_thread(events.wait_for, has(Phase.PENDING, 1))

    async def wait_for_run():
        return await run

    waiter = asyncio.ensure_future(wait_for_run())
    await asyncio.sleep(0.05)
    waiter.cancel()  # a notebook cell awaiting the run is interrupted
    with pytest.raises(asyncio.CancelledError):
        await waiter
    # The run stops (as with a second Ctrl-C): what was sent is kept for resume, nothing is lost.
    await asyncio.to_thread(events.wait_for, lambda _: all(phase.is_final for phase in run.phases()))
    sent = [o for o in run.outcomes if isinstance(o, TaskUnfinishedError)]
    assert len(sent) == len(fake_emulator.requests("create")) >= 2
    assert sorted(e.task_id for e in fake_session.store.unfinished()) == sorted(o.task_id for o in sent)


def test_cancel_leaves_finished_tasks_alone(fake_session, fake_emulator):
    events = Recorder()
    run = fake_session.start(
        [GenerationRequest("fox", model="wanx2.1-t2i-turbo", n=1, seed=1), GenerationRequest("fox", model="wanx-v1", n=1, seed=2)],
        on_progress=events,
    )
    events.wait_for(lambda evs: has(Phase.PENDING, 0)(evs) and has(Phase.PENDING, 1)(evs))
    for _ in range(60):  # the turbo task ends well before wanx-v1's (~30 s)
        if run.phases()[0] is Phase.DONE:
            break
        fake_emulator.advance(1)
        with events.changed:
            events.changed.wait(0.2)
    assert run.phases()[0] is Phase.DONE and not run.phases()[1].is_final  # wanx-v1's task runs on the service
    task_1 = next(e.task_id for e in events.events if e.index == 1 and e.task_id)
    assert run.cancel() == ([], [task_1])  # the saved task is not "still running"
    run.result(on_tick=lambda: fake_emulator.advance(3600))


def test_a_replayed_run_shows_each_outcome_under_its_request(tmp_path, fake_emulator):
    # A recorded result carries the request as it was sent, with the seed the service used (the request
    # asked had none); a recorded failure carries no request: the replayed run shows it under the request
    # that was asked, with that request's model, as the live run did.
    store = tmp_path / "s"
    unseeded = GenerationRequest("fox", model="wanx2.1-t2i-turbo", n=1)
    failing = GenerationRequest("a fox EMU_BLOCK_OUTPUT", model="wanx-v1", n=1, seed=2)
    rec = Session(store=store, client=fast_client(fake_emulator), clock=fake_emulator.now, mode="record")
    live_events = Recorder()
    rec.start([unseeded, failing], on_progress=live_events).result(on_tick=lambda: fake_emulator.advance(3600))
    events = Recorder()
    replay = Session(store=store, mode="replay").start([unseeded, failing], on_progress=events)
    ok, failed = replay.result()
    assert isinstance(ok, GenerationResult) and isinstance(failed, TaskFailedError)
    assert replay.requests == (ok.request, failing) and replay.requests[0].seed == ok.images[0].seed is not None
    assert [(e.index, e.model, e.phase) for e in events.events] == [
        (0, "wanx2.1-t2i-turbo", Phase.REPLAYED), (1, "wanx-v1", Phase.REPLAYED)]
    assert {e.model for e in live_events.events if e.index == 1} == {"wanx-v1"}
    assert replay.summary().cost_yuan == 0


def test_a_run_shows_how_many_requests_it_has_and_whether_it_is_done(fake_session, fake_emulator):
    run = fake_session.start([GenerationRequest(f"fox {i}", model="wanx-v1", n=1, seed=i) for i in range(2)])
    assert repr(run) == "<Run 2 request(s) running>"  # the service's clock stands still: nothing can end
    run.result(on_tick=lambda: fake_emulator.advance(3600))
    assert repr(run) == "<Run 2 request(s) done>"


def test_a_request_being_withdrawn_is_neither_withdrawn_nor_counted_twice(fake_session, fake_emulator):
    # Two withdrawals in one turn of the background loop (a panel button and a cell at once): the
    # second finds the first one's requests still held by their workers, which have not yet seen the
    # cancel, and leaves them alone. Each of wanx-v1's workers holds a request (sent, or waiting for a
    # place on the service: those are withdrawn through their worker); the rest wait in the queue.
    events = Recorder()
    run = fake_session.start(
        [GenerationRequest(f"fox {i}", model="wanx-v1", n=1, seed=i) for i in range(8)], on_progress=events
    )
    events.wait_for(has(Phase.PENDING, 0))

    async def withdraw_twice() -> tuple[int, int]:
        return await run._withdraw(), await run._withdraw()

    first, second = _loop.run_sync(withdraw_twice())
    run.result(on_tick=lambda: fake_emulator.advance(3600))
    sent = len(fake_emulator.requests("create"))
    assert (first, second) == (8 - sent, 0)
    assert run.phases() == [Phase.DONE] * sent + [Phase.WITHDRAWN] * (8 - sent)
    for i in range(8):  # each request ended once
        assert sum(p.is_final for p in events.phases(i)) == 1, events.phases(i)


def test_a_finished_run_is_freed_once_dropped_without_waiting_for_the_collector(fake_session, fake_emulator):
    # A batch's run holds a record per request: in a long notebook session, runs left in a reference
    # cycle would pile up until a full garbage collection.
    events = Recorder()
    reqs = [GenerationRequest("fox", model="wanx2.1-t2i-turbo", seed=k) for k in range(3)]
    run = fake_session.start(reqs, on_progress=events)
    events.wait_for(lambda got: all(has(Phase.PENDING, k)(got) for k in range(3)))
    fake_emulator.advance(3600)
    assert all(isinstance(o, GenerationResult) for o in run.result())
    gone = weakref.ref(run)
    gc.disable()
    try:
        del run
        deadline = time.monotonic() + 10  # the done-callbacks run on the background thread, just after
        while gone() is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gone() is None
    finally:
        gc.enable()


class ImageGets(httpx.AsyncBaseTransport):
    """Counts the image downloads that go through to the emulator."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner, self.count = inner, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith(".png"):
            self.count += 1
        return await self.inner.handle_async_request(request)


class SlowDisk(Store):
    """The real store, whose image writes wait until `open` is set."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.open, self.writing = threading.Event(), threading.Semaphore(0)

    def save_image(self, *args, **kwargs):
        self.writing.release()
        assert self.open.wait(20)
        return super().save_image(*args, **kwargs)


def start_with_a_full_room(fake_emulator, client: AsyncWanxClient, tmp_path):
    """A run of 3 x DOWNLOADS_AT_ONCE requests on a slow disk, driven until DOWNLOADS_AT_ONCE of them
    are writing their images and more tasks have ended since (they wait for room)."""
    disk = SlowDisk(tmp_path / "store")
    session = Session(store=disk, client=client, clock=fake_emulator.now)
    count = 3 * DOWNLOADS_AT_ONCE
    events = Recorder()
    run = session.start([GenerationRequest("fox", model="wanx2.1-t2i-turbo", n=1, seed=k) for k in range(count)],
                        on_progress=events)
    deadline = time.monotonic() + 20
    for _ in range(DOWNLOADS_AT_ONCE):  # the first requests' images reach the slow disk
        while not disk.writing.acquire(timeout=0.05):
            assert time.monotonic() < deadline
            fake_emulator.advance(3600)
    for _ in range(10):  # more tasks end meanwhile: succeeded and billed, waiting for room
        fake_emulator.advance(3600)
        time.sleep(0.03)
    assert sum(has(Phase.DOWNLOADING, k)(events.events) for k in range(count)) > DOWNLOADS_AT_ONCE
    return session, disk, run


def test_requests_ending_together_wait_for_room_before_downloading_while_the_disk_is_slow(tmp_path, fake_emulator):
    # Each downloaded image waits in memory until it is written: however many tasks end together, a
    # run holds the images of at most DOWNLOADS_AT_ONCE requests (a 4K PNG is 20 MB or more).
    gets = ImageGets(fake_emulator.transport())
    client = AsyncWanxClient(emulator=fake_emulator, transport=gets)
    client._sleep = lambda seconds: asyncio.sleep(seconds / 1000)
    session, disk, run = start_with_a_full_room(fake_emulator, client, tmp_path)
    assert gets.count == DOWNLOADS_AT_ONCE  # the others wait for room, not downloaded yet

    disk.open.set()
    deadline = time.monotonic() + 20
    while not run.done():  # the requests still queued go out now, and end as the clock moves
        assert time.monotonic() < deadline
        fake_emulator.advance(3600)
        time.sleep(0.02)
    assert all(isinstance(o, GenerationResult) and o.paths for o in run.result())
    assert gets.count == 3 * DOWNLOADS_AT_ONCE


def test_a_run_stopped_while_requests_wait_for_room_leaves_every_billed_image_to_resume(tmp_path, fake_emulator):
    session, disk, run = start_with_a_full_room(fake_emulator, fast_client(fake_emulator), tmp_path)
    with pytest.raises(RunTimeoutError):
        run.result(timeout=0)
    creates = len(fake_emulator.requests("create"))
    disk.open.set()
    report = session.resume()

    assert len(fake_emulator.requests("create")) == creates  # nothing sent again
    billed = {t.task_id for t in fake_emulator.tasks.values() if t.status_at(fake_emulator.now()) == "SUCCEEDED"}
    saved = {row.task_id for row in session.store.history() if row.saved == 1}
    assert billed and saved == billed, report.text()
