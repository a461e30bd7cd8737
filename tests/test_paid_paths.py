"""Paid paths a review found uncovered: each drives the real Session over the emulator into one fault
after a create was sent, then the documented recovery (resume), and counts what the service billed,
what is saved, how many creates the service received, the journal's states and what the user is told.

Faults come from the emulator's script (`Fault`), from the store's own files in tmp_path, or from the
index itself: a SQLite trigger refuses chosen writes with the error SQLite gives for a locked, full or
read-only index (`index_refuses`), so a write fails exactly where the case needs it to. Time that must
pass (a URL's 24 h) passes on the emulator's fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import time

import pytest

import wanx_nb
from wanx_nb._client import AsyncWanxClient
from wanx_nb._constants import DEFAULT_MAX_RETRIES
from wanx_nb._error_card import error_text
from wanx_nb._exceptions import (
    ReuseUnfinishedError,
    RunInterruptedError,
    StoreError,
    SyncOutcomeUnknownError,
    TaskUnfinishedError,
    TaskUnknownError,
)
from wanx_nb._models import GenerationResult
from wanx_nb._png import read_provenance
from wanx_nb._request import GenerationRequest
from wanx_nb._run import Phase
from wanx_nb._session import Session
from wanx_nb._store import EntryState, Store
from wanx_nb.emulator import Emulator, EmulatorSettings, Fault

from test_fault_matrix import in_time as run_in_time
from test_store_faults import on_a_small_disk

PROMPT = "a red fox in snow"
DEADLINE = 60.0


# ---- harness --------------------------------------------------------------------------------------


def new_emulator(**settings) -> Emulator:
    # query_qps off: with compressed sleeps the client polls faster than a real one could.
    return Emulator(EmulatorSettings(time_scale=0.001, query_qps=None, **settings))


def fast_session(store, emulator: Emulator, **kwargs) -> Session:
    """A session on `emulator` whose client sleeps (backoff, polls) are compressed 100x."""
    client = AsyncWanxClient(emulator=emulator)
    client._sleep = lambda seconds: asyncio.sleep(seconds / 100)
    return Session(store=store, client=client, **kwargs)


def fake_clock_session(store, emulator: Emulator) -> Session:
    """A session on an emulator whose clock moves only when the test (or a delay fault) moves it."""
    client = AsyncWanxClient(emulator=emulator)
    client._sleep = lambda seconds: asyncio.sleep(seconds / 1000)
    return Session(store=store, client=client, clock=emulator.now)


def fake_clock_emulator() -> Emulator:
    """Tasks take their real durations on a fake clock; a `Fault.delay` moves that clock on (a download
    held back a day answers as it would a day later)."""
    holder: list[Emulator] = []

    async def days_pass(seconds: float) -> None:
        holder[0].advance(seconds)

    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=1.0, rate_limits=False), sleep=days_pass)
    holder.append(emulator)
    return emulator


def index_refuses(store: Store, name: str, event: str, sqlite_says: str, when: str = "1") -> None:
    """From now on the index refuses `event` (e.g. "UPDATE OF billed_images ON entries") where `when`
    holds, with SQLite's own words for the failure (a trigger in the index file: the running session's
    connection sees it at its next statement, as it would a lock or a full disk)."""
    store.check()  # the index exists
    with contextlib.closing(sqlite3.connect(store.db_path)) as db:
        db.execute(f"CREATE TRIGGER {name} BEFORE {event} FOR EACH ROW WHEN {when} "
                   f"BEGIN SELECT RAISE(ABORT, '{sqlite_says}'); END")  # fmt: skip
        db.commit()


def index_accepts(store: Store, *names: str) -> None:
    """The index takes writes again (the lock released, the disk freed, the file writable)."""
    with contextlib.closing(sqlite3.connect(store.db_path)) as db:
        for name in names:
            db.execute(f"DROP TRIGGER IF EXISTS {name}")
        db.commit()


def creates(emulator: Emulator) -> int:
    """Creates the service acted on (async creates and sync calls alike): each made a task."""
    return len(emulator.tasks)  # one per create the service processed (a refused one makes none)


def paid(emulator: Emulator) -> int:
    """Images the service billed (its own records)."""
    now = emulator.now()
    return sum(len(t.succeeded_items) for t in emulator.tasks.values() if not t.lost and t.status_at(now) == "SUCCEEDED")


def saved(store: Store) -> int:
    """Images the journal says are saved, each checked on disk (present and sound)."""
    report = store.integrity()
    assert report.quick_check == "ok" and not report.missing_images and not report.corrupt_images, report
    return sum(row.saved for row in store.history(limit=None))


def shown(outcome) -> str:
    """What the user is shown of one outcome: the error card's text, or a result's warnings."""
    if isinstance(outcome, BaseException):
        return error_text(outcome)
    return "\n".join(outcome.warnings)


def says_resume_not_retry(text: str) -> None:
    assert "%wanx resume" in text, text
    assert "retry" not in text.lower() and "try again" not in text.lower(), text


def in_time(call):
    """(value, exception) of `call()` run on a thread; fails the test past DEADLINE (a hang)."""
    value, error, finished = run_in_time(call)
    assert finished, "hung"
    return value, error


def wait_until(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def interrupt_when(predicate):
    """An `on_tick` for Run.result that presses Ctrl-C once `predicate()` holds."""

    def tick() -> None:
        if predicate():
            raise KeyboardInterrupt

    return tick


# ---- 1. the bill the journal missed ----------------------------------------------------------------


def failing_bill_run(tmp_path):
    """n=2, the index refuses the write of the bill (a lock held past the busy timeout) and one image's
    download fails for good (404): the run ends with one billed image not saved."""
    emulator = new_emulator()
    session = fast_session(tmp_path / "store", emulator)
    # set_billed only: the final write carries a result record (a lock held just that long)
    index_refuses(session.store, "bill_refused", "UPDATE OF billed_images ON entries", "database is locked",
                  when="NEW.result_json IS NULL")
    emulator.script("image", Fault.status(404))  # one image's URL answers 404: not retried
    request = GenerationRequest(PROMPT, model="wanx2.1-t2i-turbo", n=2, seed=1)
    (outcome,) = session.start([request]).result()
    index_accepts(session.store, "bill_refused")
    return emulator, session, request, outcome


def test_a_bill_the_journal_missed_still_leaves_the_unsaved_image_to_resume(tmp_path):
    # Before the fix the entry was finished DONE with billed_images=0 (1 saved >= 0 billed): resume said
    # "nothing to resume" and the second billed image was lost for good.
    emulator, session, _, outcome = failing_bill_run(tmp_path)
    assert isinstance(outcome, GenerationResult) and outcome.saved_images == 1 and outcome.billed_images == 2
    says_resume_not_retry(shown(outcome))
    (entry,) = session.store.unfinished()
    assert (entry.state, entry.billed_images, entry.saved_images) == (EntryState.COLLECTING, 2, 1)

    report = Session(store=tmp_path / "store", client=session.client()).resume()  # a restarted kernel
    assert report.text() == "recovered 1 task(s), 2 image(s) saved"
    assert creates(emulator) == 1 and paid(emulator) == 2 == saved(session.store)
    (row,) = session.store.history()
    assert (row.state, row.billed, row.saved, row.cost_yuan) == ("done", 2, 2, 0.28)


def test_a_sync_call_whose_bill_write_failed_is_still_found_by_its_request_id(tmp_path):
    # A sync call has no task id: its request id, written with its answer, is how it is found again. When
    # that write fails, the final write must still carry it.
    emulator = new_emulator()
    session = fast_session(tmp_path / "store", emulator)
    index_refuses(session.store, "answer_refused", "UPDATE OF billed_images ON entries", "database is locked",
                  when="NEW.finished_at IS NULL")  # the answer's write; the final one sets finished_at
    (outcome,) = session.start([GenerationRequest(PROMPT, model=SYNC, n=1, seed=17)]).result()
    index_accepts(session.store, "answer_refused")
    assert isinstance(outcome, GenerationResult) and outcome.task_id is None and outcome.task.request_id
    found = session.store.get(outcome.task.request_id)
    assert found is not None and found.saved_images == 1 and creates(emulator) == 1


def test_reuse_of_a_request_left_unfinished_refuses_instead_of_paying_twice(tmp_path):
    # Before the fix the DONE-looking entry was neither reusable (1 of 2 saved) nor unfinished: reuse
    # sent the request again, a second bill.
    emulator, session, request, _ = failing_bill_run(tmp_path)
    with pytest.raises(ReuseUnfinishedError) as refused:
        session.start([request, request.replace(seed=2)], reuse=True)
    assert "nothing was sent" in str(refused.value) and "Resume first" in str(refused.value)
    assert creates(emulator) == 1  # not the first, nor the other request of the batch

    session.resume()
    (again,) = session.start([request], reuse=True).result()
    assert isinstance(again, GenerationResult) and again.saved_images == 2 and "not paid again" in shown(again)
    assert creates(emulator) == 1 and paid(emulator) == 2 == saved(session.store)


# ---- 2. a full images disk from the 2nd of 4 images (a real ENOSPC on a small tmpfs) -----------------


SMALL_IMAGES_DISK = r"""
import asyncio
from wanx_nb._client import AsyncWanxClient
from wanx_nb._request import GenerationRequest
from wanx_nb._session import Session
from wanx_nb.emulator import Emulator, EmulatorSettings

store, scratch = sys.argv[3], sys.argv[4]  # after the package and the tests' folder
images = os.path.join(store, "images")
request = GenerationRequest("a red fox in snow", model="wanx2.1-t2i-turbo", n=4, seed=21)

def session_on(root):
    emulator = Emulator(EmulatorSettings(time_scale=0.001, query_qps=None))
    client = AsyncWanxClient(emulator=emulator)
    client._sleep = lambda seconds: asyncio.sleep(seconds / 100)
    return emulator, Session(store=root, client=client)

# The same request elsewhere (same seed, same bytes): how large each stored image is.
_, sizer = session_on(scratch)
sizes = [os.path.getsize(im.path) for im in sizer.generate(request).images]
room = -(-sizes[0] // 4096) * 4096 + 4096  # the first image and a page: none of the others fits
assert min(sizes[1:]) > 4096, sizes

# Fill the small disk, then free just that room.
filler = os.path.join(images, "filler")
with open(filler, "wb") as fh:
    try:
        while True:
            fh.write(bytes(1 << 16))
            fh.flush()
    except OSError:
        pass
os.truncate(filler, max(os.path.getsize(filler) - room, 0))

emulator, session = session_on(store)
(outcome,) = session.start([request]).result()
entry = session.store.unfinished()[0]
on_disk = sorted(n for n in os.listdir(images) if n.endswith(".png"))
os.unlink(filler)  # the user frees some space, as told
report = session.resume()
state = session.store.history()[0]
print(json.dumps({
    "sizes": sizes, "warnings": outcome.warnings, "saved_then": outcome.saved_images,
    "entry": [entry.state.value, entry.billed_images, entry.saved_images], "on_disk_then": len(on_disk),
    "report": report.text(), "creates": len(emulator.requests("create")),
    "row": [state.state, state.billed, state.saved],
    "files": sorted(n for n in os.listdir(images) if n.endswith(".png")),
    "indexed": sorted(os.path.basename(im.path) for im in session.store.get(state.task_id).images if im.path),
}))
"""


def test_a_disk_full_from_the_second_of_four_images_keeps_them_for_resume_which_saves_all_four(tmp_path):
    store = tmp_path / "store"
    seen = on_a_small_disk(store / "images", "4m", SMALL_IMAGES_DISK, str(store), str(tmp_path / "scratch"))
    assert seen["saved_then"] == 1 and seen["on_disk_then"] == 1  # the first fit; no partial file is left
    assert seen["entry"] == ["collecting", 4, 1]
    warnings = "\n".join(seen["warnings"])
    assert "3 of 4 billed image(s) are not saved yet (StoreError)" in warnings and "disk full" in warnings
    says_resume_not_retry(warnings)
    assert seen["report"] == "recovered 1 task(s), 4 image(s) saved"
    assert seen["creates"] == 1 and seen["row"] == ["done", 4, 4]
    assert seen["indexed"] == seen["files"] and len(seen["files"]) == 4


# ---- 3. the index made read-only mid-run, recovered by a restarted kernel ---------------------------


def test_an_index_that_turns_read_only_while_the_task_runs_loses_nothing(tmp_path):
    emulator = fake_clock_emulator()
    session = fake_clock_session(tmp_path / "store", emulator)
    run = session.start([GenerationRequest(PROMPT, model="wanx2.1-t2i-turbo", n=3, seed=2)])
    wait_until(lambda: run.phases()[0] is Phase.PENDING, "the task id")
    for table in ("entries", "images"):  # every write from here on: SQLite's SQLITE_READONLY
        for event in ("UPDATE", "INSERT"):
            index_refuses(session.store, f"ro_{event}_{table}".lower(), f"{event} ON {table}",
                          "attempt to write a readonly database")  # fmt: skip
    (outcome,) = run.result(on_tick=lambda: emulator.advance(3600))
    assert isinstance(outcome, TaskUnfinishedError) or outcome.saved_images == 0
    text = shown(outcome)
    assert "cannot write the index" in text
    says_resume_not_retry(text)
    (entry,) = session.store.unfinished()  # as the journal had it when it turned read-only
    assert entry.state is EntryState.SUBMITTED and entry.task_id == outcome.task_id

    index_accepts(session.store, *(f"ro_{e}_{t}" for t in ("entries", "images") for e in ("update", "insert")))
    report = fake_clock_session(tmp_path / "store", emulator).resume()
    assert report.text() == "recovered 1 task(s), 3 image(s) saved"
    assert creates(emulator) == 1 and paid(emulator) == 3 == saved(session.store)


# ---- 4. a result URL that expires between the poll and the download -----------------------------------


def test_a_url_that_expires_before_its_download_is_said_gone_never_retried(tmp_path):
    emulator = fake_clock_emulator()
    session = fake_clock_session(tmp_path / "store", emulator)
    emulator.script("image", Fault.delay(25 * 3600))  # the download reaches the image host a day late
    run = session.start([GenerationRequest(PROMPT, model="wanx2.1-t2i-turbo", n=1, seed=3)])
    (outcome,) = run.result(on_tick=lambda: emulator.advance(5), tick=0.01)

    assert isinstance(outcome, GenerationResult) and outcome.billed_images == 1 and outcome.saved_images == 0
    (image,) = outcome.images
    assert image.gone and "expired" in image.download_error
    text = shown(outcome)
    assert "1 of 1 billed image(s) expired before they could be saved" in text and "retry" not in text.lower()
    (row,) = session.store.history()
    assert (row.state, row.billed, row.saved) == ("gone", 1, 0)  # the bill stays in the journal
    assert session.resume().text() == "nothing to resume: every task in the journal is finished"
    assert creates(emulator) == 1  # nothing sent again for it


# ---- 5. Ctrl-C while one image of four downloads ----------------------------------------------------


def test_ctrl_c_while_one_image_of_four_downloads_keeps_the_task_for_resume(tmp_path):
    emulator = new_emulator()
    session = fast_session(tmp_path / "store", emulator)
    emulator.script("image", Fault.delay(0.0), Fault.delay(2.0))  # the second image is slow to come
    run = session.start([GenerationRequest(PROMPT, model="wanx2.1-t2i-turbo", n=4, seed=4)])
    _, error = in_time(lambda: run.result(on_tick=interrupt_when(lambda: len(emulator.requests("image")) >= 4),
                                          tick=0.005))  # fmt: skip
    assert isinstance(error, RunInterruptedError)
    says_resume_not_retry(str(error).replace("`%wanx resume`", "%wanx resume"))
    (outcome,) = run.outcomes
    assert isinstance(outcome, TaskUnfinishedError) and outcome.code == "Interrupted"
    (entry,) = session.store.unfinished()
    assert entry.state is EntryState.SUBMITTED and entry.code == "Interrupted"

    report = session.resume()
    while report.text().startswith("nothing to resume: 1 request(s) belong to runs still going"):
        time.sleep(0.05)  # the stopped run lets go of its lock just after it returns
        report = session.resume()
    assert report.text() == "recovered 1 task(s), 4 image(s) saved"
    assert creates(emulator) == 1 and paid(emulator) == 4 == saved(session.store)


# ---- 6. a sync call's answer arrived, then the run stopped ------------------------------------------


SYNC = "qwen-image-2.0"  # sync-only: no task id, no task list; its answer holds the only URLs


def test_a_sync_call_answered_then_stopped_while_downloading_is_saved_by_resume(tmp_path):
    # Before the fix the answer's URLs were only in memory: the stop journaled the call as "outcome
    # unknown", told the user "billed or not is unknown", and resume could never save the 2 paid images.
    emulator = new_emulator()
    session = fast_session(tmp_path / "store", emulator)
    emulator.script("image", Fault.delay(2.0))
    run = session.start([GenerationRequest(PROMPT, model=SYNC, n=2, seed=4)])
    _, error = in_time(lambda: run.result(on_tick=interrupt_when(lambda: emulator.requests("image")), tick=0.005))
    assert isinstance(error, RunInterruptedError) and "billed 2 image(s)" in str(error)
    (outcome,) = run.outcomes
    assert isinstance(outcome, TaskUnfinishedError) and "billed or not is unknown" not in str(outcome)
    says_resume_not_retry(shown(outcome))
    (entry,) = session.store.unfinished()
    assert (entry.state, entry.billed_images, entry.task_id) == (EntryState.COLLECTING, 2, None)

    time.sleep(0.1)  # the stopped run lets go of its lock
    report = session.resume()
    assert report.text() == "recovered 1 task(s), 2 image(s) saved"
    assert creates(emulator) == 1 and paid(emulator) == 2 == saved(session.store)


@pytest.mark.parametrize("model", ["wanx2.1-t2i-turbo", SYNC])
def test_a_resume_interrupted_while_downloading_then_run_again_saves_everything(tmp_path, model):
    # Before the fix an interrupted resume of a sync call turned its COLLECTING entry (URLs journaled)
    # into OUTCOME_UNKNOWN, and the next resume only reported it: the billed image was lost.
    emulator = new_emulator()
    session = fast_session(tmp_path / "store", emulator)
    emulator.script("image", *[Fault.status(500)] * (DEFAULT_MAX_RETRIES + 1))  # every try of the download
    (outcome,) = session.start([GenerationRequest(PROMPT, model=model, n=1, seed=6)]).result()
    assert isinstance(outcome, GenerationResult) and outcome.saved_images == 0
    says_resume_not_retry(shown(outcome))

    emulator.script("image", Fault.delay(2.0))
    resuming, _ = session.start_resume()
    _, error = in_time(lambda: resuming.result(on_tick=interrupt_when(lambda: emulator.requests("image")), tick=0.005))
    assert isinstance(error, RunInterruptedError)
    (entry,) = session.store.unfinished()
    assert entry.state is EntryState.COLLECTING and entry.billed_images == 1

    time.sleep(0.1)
    report = Session(store=tmp_path / "store", client=session.client()).resume()
    assert report.text() == "recovered 1 task(s), 1 image(s) saved"
    assert creates(emulator) == 1 and paid(emulator) == 1 == saved(session.store)


# ---- 7. a transient UNKNOWN answer to a poll ---------------------------------------------------------


def test_one_unknown_answer_for_a_task_just_created_is_not_taken_as_its_end(tmp_path):
    # Before the fix the entry was finished GONE at the first UNKNOWN: the task went on, succeeded and
    # billed 2 images that resume never looked for; the card said "if it looks transient, retry".
    emulator = new_emulator()
    session = fast_session(tmp_path / "store", emulator)
    emulator.script("query", Fault.task_status("UNKNOWN"))
    (outcome,) = session.start([GenerationRequest(PROMPT, model="wanx2.1-t2i-turbo", n=2, seed=7)]).result()
    assert isinstance(outcome, TaskUnfinishedError) and outcome.code == "TaskUnknown"
    says_resume_not_retry(shown(outcome))
    (entry,) = session.store.unfinished()
    assert entry.state is EntryState.SUBMITTED and entry.status == "UNKNOWN"

    assert session.resume().text() == "recovered 1 task(s), 2 image(s) saved"
    assert creates(emulator) == 1 and paid(emulator) == 2 == saved(session.store)


def test_a_task_the_service_lost_ends_gone_once_a_resume_hears_unknown_again(tmp_path):
    emulator = new_emulator()
    session = fast_session(tmp_path / "store", emulator)
    emulator.script("create", Fault.outcome("UNKNOWN"))  # every query says UNKNOWN
    (outcome,) = session.start([GenerationRequest(PROMPT, model="wanx2.1-t2i-turbo", n=2, seed=8)]).result()
    assert isinstance(outcome, TaskUnfinishedError)
    report = session.resume()
    (ended,) = report.ended
    assert isinstance(ended, TaskUnknownError) and report.unfinished == []
    (row,) = session.store.history()
    assert (row.state, row.billed) == ("gone", 0)
    assert session.resume().text() == "nothing to resume: every task in the journal is finished"
    assert creates(emulator) == 1 and paid(emulator) == 0


# ---- 8. a batch whose store fails stops paying into it -----------------------------------------------


def test_once_the_store_fails_a_batch_sends_no_more_creates_and_resume_saves_what_was_paid(tmp_path):
    # Before the fix every request of the batch was still sent (and billed) into a store that could not
    # keep its images.
    emulator = Emulator(EmulatorSettings(time_scale=0.01, rate_limits=False))  # wanx-v1: ~0.3 s a task
    session = fast_session(tmp_path / "store", emulator)
    index_refuses(session.store, "full", "INSERT ON images", "database or disk is full")
    requests = [GenerationRequest(PROMPT, model="wanx-v1", n=1, seed=s) for s in range(6)]
    outcomes = session.start(requests).result()

    refused = [o for o in outcomes if isinstance(o, StoreError)]
    assert refused and creates(emulator) == len(requests) - len(refused) < len(requests)
    for error in refused:
        text = shown(error)
        assert "not sent" in text and "not billed" in text
    kept = [o for o in outcomes if not isinstance(o, StoreError)]
    assert all(isinstance(o, GenerationResult) and o.saved_images == 0 for o in kept)
    says_resume_not_retry(shown(kept[0]))
    states = sorted(row.state for row in session.store.history(limit=None))
    assert states == sorted(["collecting"] * len(kept) + ["rejected"] * len(refused))

    index_accepts(session.store, "full")
    report = session.resume()
    assert report.text() == f"recovered {len(kept)} task(s), {len(kept)} image(s) saved"
    assert paid(emulator) == len(kept) == saved(session.store)


# ---- 9. a sync answer received by a process that is then killed ---------------------------------------


CHILD = """
import sys
from wanx_nb import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def child(server, store, *argv: str) -> subprocess.Popen:
    env = {**os.environ, "DASHSCOPE_HTTP_BASE_URL": server.base_url, "DASHSCOPE_API_KEY": "sk-review-child-0000",
           "PYTHONPATH": os.path.dirname(os.path.dirname(wanx_nb.__file__))}
    command = [sys.executable, "-c", CHILD, "--store", str(store), *argv]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def server():
    from wanx_nb.emulator.server import running_server

    with running_server(EmulatorSettings(time_scale=0.01, query_qps=None)) as running:
        yield running


def served_session(server, store) -> Session:
    return Session(store=store, base_url=server.base_url, api_key="sk-review-child-0000")


def test_a_process_killed_while_a_sync_answer_downloads_loses_nothing(tmp_path, server):
    import signal

    store = tmp_path / "store"
    # The first image is on its way when the kernel dies (long enough for that, short enough that the
    # server's shutdown does not wait on it).
    server.emulator.script("image", Fault.delay(2.0))
    process = child(server, store, "generate", PROMPT, "-m", SYNC, "-n", "2", "--seed", "9", "-o", str(tmp_path / "out"))
    wait_until(lambda: server.emulator.requests("image"), "the first download", timeout=DEADLINE)
    time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=DEADLINE)
    assert process.returncode == -signal.SIGKILL
    (entry,) = Store(store).unfinished()
    assert (entry.state, entry.billed_images, entry.saved_images) == (EntryState.COLLECTING, 2, 0)
    # The answer's request id (what the service's support asks for about a bill) is in the history already.
    answer = Store(store).result_record(entry.entry_id)
    assert answer is not None and answer.request_id and entry.request_id == answer.request_id

    session = served_session(server, store)
    report, error = in_time(session.resume)
    assert error is None and report.text() == "recovered 1 task(s), 2 image(s) saved"
    assert creates(server.emulator) == 1 and paid(server.emulator) == 2 == saved(session.store)


# ---- 10. two processes resuming one store at once -----------------------------------------------------


def test_two_processes_resuming_one_store_at_once_save_each_image_once_and_send_nothing(tmp_path, server):
    store = tmp_path / "store"
    session = served_session(server, store)
    server.emulator.script("image", *[Fault.status(404)] * 4)  # two runs of n=2: every download refused
    for seed in (10, 11):
        (outcome,) = session.start([GenerationRequest(PROMPT, n=2, seed=seed)]).result()
        assert isinstance(outcome, GenerationResult) and outcome.saved_images == 0
    assert len(session.store.unfinished()) == 2 and creates(server.emulator) == 2

    server.emulator.script("image", *[Fault.delay(0.3)] * 8)  # slow downloads: the two resumes overlap
    processes = [child(server, store, "resume") for _ in range(2)]
    outputs = [p.communicate(timeout=DEADLINE) for p in processes]
    text = "".join(out + err for out, err in outputs)
    assert "Traceback" not in text, text
    recovered = [line.split()[2] for line in text.splitlines() if line.startswith("recovered task ")]
    leftover = session.resume()  # whatever a resume found held by the other is finished here
    recovered += [r.task_id for r in leftover.recovered]
    assert sorted(recovered) == sorted(set(recovered)) and len(recovered) == 2, text  # each task once
    assert creates(server.emulator) == 2 and paid(server.emulator) == 4 == saved(session.store)
    assert [row.state for row in session.store.history(limit=None)] == ["done", "done"]


# ---- 11. interrupts while a lost create is being looked up -------------------------------------------


def test_ctrl_c_while_a_lost_create_is_looked_up_keeps_it_for_resume_which_adopts_the_task(tmp_path):
    emulator = new_emulator()
    session = fast_session(tmp_path / "store", emulator)
    emulator.script("create", Fault.drop_after())  # the task is made, its answer lost
    emulator.script("list", Fault.delay(2.0))  # the task list is slow to answer
    run = session.start([GenerationRequest(PROMPT, model="wanx2.1-t2i-turbo", n=2, seed=12)])
    _, error = in_time(lambda: run.result(on_tick=interrupt_when(lambda: emulator.requests("list")), tick=0.005))
    assert isinstance(error, RunInterruptedError)
    (outcome,) = run.outcomes
    assert isinstance(outcome, TaskUnfinishedError) and outcome.task_id is None
    says_resume_not_retry(shown(outcome))
    (entry,) = session.store.unfinished()
    assert entry.state is EntryState.OUTCOME_UNKNOWN and entry.task_id is None

    time.sleep(0.1)
    report = session.resume()
    assert report.text() == "recovered 1 task(s), 2 image(s) saved"
    assert creates(emulator) == 1 and paid(emulator) == 2 == saved(session.store)


# ---- a lost sync answer's next step ------------------------------------------------------------------


def test_a_lost_sync_answer_is_never_told_to_retry(tmp_path):
    # It was told "read the message above; if it looks transient, retry" (the default next step).
    emulator = new_emulator()
    session = fast_session(tmp_path / "store", emulator)
    emulator.script("generate", Fault.drop_after())
    (outcome,) = session.start([GenerationRequest(PROMPT, model=SYNC, n=1, seed=13)]).result()
    assert isinstance(outcome, SyncOutcomeUnknownError) and creates(emulator) == 1
    assert "retry" not in shown(outcome).split("next step:")[1].lower()


# ---- 12. an index found damaged mid-run: the documented way out is a rebuild, then resume ------------


def test_an_index_found_damaged_mid_run_is_rebuilt_then_resume_saves_every_image(tmp_path):
    store = tmp_path / "store"
    emulator = fake_clock_emulator()
    session = fake_clock_session(store, emulator)
    run = session.start([GenerationRequest(PROMPT, model="wanx2.1-t2i-turbo", n=2, seed=14)])
    wait_until(lambda: run.phases()[0] is Phase.PENDING, "the task id")
    index_refuses(session.store, "damaged", "UPDATE ON entries", "database disk image is malformed")
    (outcome,) = run.result(on_tick=lambda: emulator.advance(3600))
    text = shown(outcome)
    assert "the index is damaged" in text and "wanx-nb store rebuild" in text
    says_resume_not_retry(text)

    rebuild_as_told(store)  # the user follows the message: rebuild, then resume
    report = fake_clock_session(store, emulator).resume()  # a restarted kernel
    assert report.text() == "recovered 1 task(s), 2 image(s) saved"
    assert creates(emulator) == 1 and paid(emulator) == 2 == saved(Store(store))


def replace_index_with_garbage(store_root) -> None:
    """The index file replaced under the running session by one that is not an index (a sync tool, a bad
    restore): the session's next write reopens it and finds it damaged."""
    garbage = store_root / "garbage"
    garbage.write_bytes(b"not an index " * 500)
    for side in ("index.sqlite-wal", "index.sqlite-shm"):
        (store_root / side).unlink(missing_ok=True)
    os.replace(garbage, store_root / "index.sqlite")


def a_run_whose_index_turns_to_garbage(tmp_path, seed: int):
    """(store, emulator, session, run): a run of 2 images on the fake clock whose index file is replaced by
    garbage once its task is created."""
    store = tmp_path / "store"
    emulator = fake_clock_emulator()
    session = fake_clock_session(store, emulator)
    run = session.start([GenerationRequest(PROMPT, model="wanx2.1-t2i-turbo", n=2, seed=seed)])
    wait_until(lambda: run.phases()[0] is Phase.PENDING, "the task id")
    replace_index_with_garbage(store)
    return store, emulator, session, run


def rebuild_as_told(store_root) -> None:
    import io

    from wanx_nb import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # another process, as the message says
        assert cli.main(["store", "rebuild", str(store_root)]) == 0


def test_images_paid_while_the_index_is_unreadable_are_still_written_for_the_rebuild(tmp_path):
    # Before the fix save_image read the entry from the index first: with the index unreadable no PNG was
    # written, the rebuild found nothing, and the 2 paid images were lost though the user did as told.
    store, emulator, session, run = a_run_whose_index_turns_to_garbage(tmp_path, seed=15)
    (outcome,) = run.result(on_tick=lambda: emulator.advance(3600))
    text = shown(outcome)
    assert "the index is damaged (file is not a database)" in text and "wanx-nb store rebuild" in text
    says_resume_not_retry(text)
    written = sorted((store / "images").glob("*.png"))  # the paid bytes are on disk, with their provenance
    assert [read_provenance(p.read_bytes())["images"][0]["sha256"] for p in written] == [p.stem for p in written]
    assert len(written) == 2
    record = read_provenance(written[0].read_bytes())  # the task's final word, not the journal's last state
    assert (record["status"], record["billed_images"], record["task_id"]) == ("SUCCEEDED", 2, outcome.task_id)

    rebuild_as_told(store)
    restarted = fake_clock_session(store, emulator)
    assert restarted.resume().text() == "nothing to resume: every task in the journal is finished"
    assert creates(emulator) == 1 and paid(emulator) == 2 == saved(restarted.store)
    (row,) = restarted.store.history()
    assert (row.state, row.billed, row.saved, row.task_id) == ("done", 2, 2, outcome.task_id)


def test_a_task_still_running_when_the_index_broke_is_resumed_after_the_rebuild(tmp_path):
    # Before the fix the session whose open of the index had failed reconnected to the rebuilt index as if it
    # were its first: its unfinished entry (in memory only, nothing saved yet) was not written back, and
    # resume found nothing to do while the task was billed.
    store, emulator, session, run = a_run_whose_index_turns_to_garbage(tmp_path, seed=16)
    (task,) = emulator.tasks.values()

    def running_then_interrupt() -> None:
        if task.status_at(emulator.now()) == "PENDING":
            emulator.advance(1)  # it starts: no longer cancelable
        elif run.phases()[0] is Phase.RUNNING:
            raise KeyboardInterrupt

    _, error = in_time(lambda: run.result(on_tick=running_then_interrupt, tick=0.01))
    assert isinstance(error, RunInterruptedError) and task.status_at(emulator.now()) == "RUNNING"

    rebuild_as_told(store)
    time.sleep(0.1)  # the stopped run lets go of its lock
    resuming, _ = session.start_resume()
    (outcome,) = resuming.result(on_tick=lambda: emulator.advance(3600))
    assert isinstance(outcome, GenerationResult) and outcome.saved_images == 2
    assert creates(emulator) == 1 and paid(emulator) == 2 == saved(session.store)
