"""Resume takes over only what runs that stopped left: a run still going, in this kernel or another,
keeps its requests (`_run_locks`). Before runs had locks, a resume while a create was on the wire found
no task yet, told the user "nothing was billed" and finished the entry under the run about to get it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from wanx_nb._request import GenerationRequest
from wanx_nb._run import Phase
from wanx_nb._run_locks import hold
from wanx_nb._resume import NEVER_SENT, resume_report
from wanx_nb._session import Session
from wanx_nb._store import EntryState, JournalEntry, Store
from wanx_nb.emulator import Emulator, EmulatorSettings, Fault

from test_run import fast_client


@pytest.fixture
def emulator():
    return Emulator(EmulatorSettings(clock="fake", time_scale=1.0, rate_limits=False))


@pytest.fixture
def session(tmp_path, emulator):
    return Session(store=tmp_path / "store", client=fast_client(emulator), clock=emulator.now)


def started(session: Session, phase: Phase, requests: list[GenerationRequest]):
    reached = threading.Semaphore(0)
    run = session.start(requests, on_progress=lambda p: reached.release() if p.phase is phase else None)
    for _ in requests:
        assert reached.acquire(timeout=30), f"never reached {phase}"
    return run


def test_a_lock_is_held_once_and_its_file_goes_with_it(tmp_path):
    lock = hold(tmp_path, "run-1")
    assert lock is not None and hold(tmp_path, "run-1") is None  # a second open file of this process too
    lock.release()
    assert not (tmp_path / "runs" / "run-1.lock").exists()
    again = hold(tmp_path, "run-1")
    assert again is not None
    again.release()


def test_a_lock_held_by_another_process_is_free_once_that_process_is_gone(tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, pathlib
            from wanx_nb._run_locks import hold
            lock = hold(pathlib.Path({str(tmp_path)!r}), "run-1")
            print("held" if lock else "refused", flush=True)
            sys.stdin.read()  # until the parent closes it, or kills us
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "held"
        assert hold(tmp_path, "run-1") is None
    finally:
        child.kill()  # as a kernel dies: no release, the operating system drops the lock
        child.communicate(timeout=30)  # and closes our ends of its pipes
    lock = hold(tmp_path, "run-1")
    assert lock is not None
    lock.release()


def test_resume_leaves_a_create_on_the_wire_to_its_run(session, emulator):
    emulator.script("create", Fault.delay(0.5))  # the create is on the wire while resume looks
    run = started(session, Phase.SENDING, [GenerationRequest("fox", model="wanx2.1-t2i-turbo", n=1, seed=1)])
    resumed, takeover = session.start_resume()
    assert resumed.requests == () and takeover.left_to_live_runs == 1
    assert emulator.requests("list") == []  # nothing reconciled, nothing concluded
    assert resume_report(resumed.result(), takeover).text() == (
        "nothing to resume: 1 request(s) belong to runs still going (in this kernel or another), which finish them"
    )
    (result,) = run.result(on_tick=lambda: emulator.advance(3600))
    assert result.saved_images == 1 and result.warnings == []  # no "the store could not record it"
    (row,) = session.store.history()
    assert row.state == EntryState.DONE.value and row.task_id == result.task_id
    assert session.resume().text() == "nothing to resume: every task in the journal is finished"


def test_two_resumes_at_once_do_not_collect_the_same_tasks(tmp_path, session, emulator):
    from test_session import crash_after_sending

    crash_after_sending(session.store.root, emulator, [GenerationRequest("fox", n=1, seed=s) for s in (1, 2)])
    first, _ = session.start_resume()  # its tasks run until the service's clock moves
    other = Session(store=session.store.root, client=fast_client(emulator), clock=emulator.now)
    second, takeover = other.start_resume()
    assert len(first.requests) == 2 and second.requests == () and takeover.left_to_live_runs == 2
    second.result()
    outcomes = first.result(on_tick=lambda: emulator.advance(3600))
    assert [o.saved_images for o in outcomes] == [1, 1] and len(emulator.requests("image")) == 2


def test_requests_a_stopped_run_never_sent_are_withdrawn_and_said(session, emulator):
    live = started(session, Phase.PENDING, [GenerationRequest("fox", n=1, seed=1)])
    stopped = JournalEntry(
        entry_id="never-sent", run_id="a-run-that-stopped", service="emulator", backend="emulator", mode="live",
        state=EntryState.QUEUED, given=GenerationRequest("owl", n=1, seed=2), sent=None, task_id=None,
        status=None, created_at="2026-11-30T12:00:00.000+00:00", sent_at=None, finished_at=None, request_id=None,
        code=None, message=None, billed_images=0, saved_images=0, price_yuan=0.14,
    )
    Store(session.store.root).record(stopped)

    resumed, takeover = session.start_resume()
    assert [e.entry_id for e in takeover.never_sent] == ["never-sent"] and takeover.left_to_live_runs == 1
    entry = session.store.entry("never-sent")
    assert entry.state is EntryState.WITHDRAWN and entry.message == NEVER_SENT
    report = resume_report(resumed.result(), takeover)
    assert report.text() == (
        "1 never sent (their run stopped before sending them; not billed): run them again to have them; "
        "1 left to runs still going (in this kernel or another)"
    )
    live.result(on_tick=lambda: emulator.advance(3600))
    assert len(emulator.requests("create")) == 1  # resume never sends


def test_a_resume_that_cannot_start_lets_go_of_the_runs_it_took(tmp_path, emulator, monkeypatch):
    # Kept, those runs would look alive to every later resume of this kernel.
    from test_session import crash_after_sending

    from wanx_nb._exceptions import ConfigurationError

    store = tmp_path / "store"
    crash_after_sending(store, emulator, [GenerationRequest("fox", n=1, seed=1)])
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-with a space")
    with pytest.raises(ConfigurationError, match="has a space"):
        Session(store=store).start_resume()  # the client cannot be made: nothing was sent
    monkeypatch.delenv("DASHSCOPE_API_KEY")
    resumed, takeover = Session(store=store, client=fast_client(emulator), clock=emulator.now).start_resume()
    assert len(resumed.requests) == 1 and takeover.left_to_live_runs == 0
    (result,) = resumed.result(on_tick=lambda: emulator.advance(3600))
    assert result.saved_images == 1


def test_a_run_the_store_could_not_record_sends_nothing_and_leaves_nothing_queued(session, emulator):
    from wanx_nb._exceptions import StoreError

    record, written = session.store.record, []

    def record_one_then_fail(entry) -> None:  # the disk fills up after the first entry
        if written:
            raise StoreError(str(session.store.root), "cannot write the index (database or disk is full)", "free space")
        record(entry)
        written.append(entry.entry_id)

    session.store.record = record_one_then_fail
    with pytest.raises(StoreError, match="disk is full"):
        session.start([GenerationRequest("fox", n=1, seed=s) for s in (1, 2, 3)])
    del session.store.record
    assert emulator.request_log == []
    entry = session.store.entry(written[0])
    assert entry.state is EntryState.WITHDRAWN and entry.message.startswith("not sent")
    assert session.resume().text() == "nothing to resume: every task in the journal is finished"

    # The store refuses the withdrawals too: the first error is the one said, and the lock is let go
    # (a later resume withdraws what is left).
    written.clear()

    def refuse(entry_id, **kwargs) -> None:
        raise StoreError(str(session.store.root), "cannot write the index (disk I/O error)", "free space")

    session.store.record, session.store.mark_withdrawn = record_one_then_fail, refuse
    with pytest.raises(StoreError, match="disk is full"):
        session.start([GenerationRequest("owl", n=1, seed=s) for s in (1, 2)])
    del session.store.record, session.store.mark_withdrawn
    assert list((session.store.root / "runs").iterdir()) == []
    report = session.resume()
    assert [e.entry_id for e in report.never_sent] == written and report.left_to_live_runs == 0


def test_a_reused_request_before_a_store_failure_leaves_the_journaled_ones_withdrawn(session, emulator):
    from wanx_nb._exceptions import StoreError

    made = GenerationRequest("fox", n=1, seed=9)
    session.start([made]).result(on_tick=lambda: emulator.advance(3600))  # made before: reuse settles it
    record, written, withdrawn = session.store.record, [], []
    mark_withdrawn = session.store.mark_withdrawn

    def record_one_then_fail(entry) -> None:
        if written:
            raise StoreError(str(session.store.root), "cannot write the index (database or disk is full)", "free space")
        record(entry)
        written.append(entry.entry_id)

    def noting(entry_id, **kwargs) -> None:
        withdrawn.append(entry_id)
        mark_withdrawn(entry_id, **kwargs)

    session.store.record, session.store.mark_withdrawn = record_one_then_fail, noting
    with pytest.raises(StoreError, match="disk is full"):
        session.start([made, GenerationRequest("owl", n=1, seed=1), GenerationRequest("cat", n=1, seed=2)], reuse=True)
    del session.store.record, session.store.mark_withdrawn
    assert withdrawn == written and session.store.entry(written[0]).state is EntryState.WITHDRAWN
    assert len(emulator.requests("create")) == 1  # the earlier run's only


def test_a_run_id_from_someone_elses_store_cannot_name_a_file_outside_its_runs_folder(tmp_path):
    victim = tmp_path / "victim.lock"
    victim.write_text("keep me")
    store = tmp_path / "store"
    lock = hold(store, "../../victim")  # a crafted index: the run id is read back from it
    assert lock is not None and lock.path.parent == store / "runs"
    lock.release()
    assert victim.read_text() == "keep me" and list((store / "runs").iterdir()) == []
    again = hold(store, "../../victim")  # the same id, the same (hashed) file
    assert again is not None and again.path == lock.path
    again.release()


def test_a_store_where_no_run_lock_can_be_made_refuses_the_run_before_sending(session, emulator):
    from wanx_nb._exceptions import StoreError

    session.store.check()  # the store itself is fine
    (session.store.root / "runs").write_text("a file where the locks' folder goes")
    with pytest.raises(StoreError) as info:
        session.start([GenerationRequest("fox", n=1, seed=1)])
    assert info.value.problem.startswith("cannot make the lock of run ")
    assert info.value.problem.endswith(f" in {session.store.root / 'runs'} (File exists)")
    assert info.value.remedy == "make the store's folder writable, or use another store"
    assert emulator.request_log == [] and session.store.history() == []
