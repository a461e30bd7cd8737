"""Writing the journal and the images (`_store.Store`): what each step records, which steps a final entry
still takes, what an image's chunk holds, how a write that fails is reported, and what is refused."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from dataclasses import replace

import pytest

from wanx_nb._exceptions import StoreError
from wanx_nb._journal import EntryState, utc_iso
from wanx_nb._models import ImageResult
from wanx_nb._store import Store, read_png_provenance

from test_journal import T0, image, new_entry, png, sent_entry

LATER = T0 + dt.timedelta(minutes=3)


def test_the_journal_record_of_an_entry_holds_what_the_journal_knows(tmp_path):
    store = Store(tmp_path)
    queued = new_entry(run_id="run-9")
    store.record(queued)
    record = store.journal_record(queued.entry_id)
    assert (record.task_id, record.status, record.request_id, record.billed_images) == (None, "PENDING", None, 0)
    entry = sent_entry(store, task_id="task-j")
    store.update_status(entry.entry_id, "RUNNING")
    store.set_billed(entry.entry_id, 2)
    record = store.journal_record(entry.entry_id)
    assert (record.backend, record.model, record.given, record.sent) == (
        "emulator", "wanx2.1-t2i-turbo", entry.given, entry.given.replace(seed=42))
    assert (record.task_id, record.request_id, record.status, record.created_at) == (
        "task-j", "req-1", "RUNNING", store.entry(entry.entry_id).created_at)
    assert (record.billed_images, record.cost_yuan, record.service, record.entry_id, record.run_id, record.mode) == (
        2, 0.28, "emulator", entry.entry_id, "run-1", "live")


def test_an_images_chunk_carries_the_journal_facts_a_rebuild_needs(tmp_path):
    store = Store(tmp_path)
    entry = sent_entry(store, task_id="task-c")
    store.set_billed(entry.entry_id, 2)
    # A record as a result builds it: the request as sent stands for the given one, no request id, no bill yet.
    record = replace(store.journal_record(entry.entry_id), given=entry.given.replace(seed=42), request_id=None,
                     billed_images=0, cost_yuan=0.0)  # fmt: skip
    chunk = read_png_provenance(store.save_image(entry.entry_id, image(0), record))
    assert chunk["given"] == entry.given.to_dict()  # the request as given: replay finds it after a rebuild
    assert (chunk["request_id"], chunk["billed_images"], chunk["entry_id"]) == ("req-1", 2, entry.entry_id)


def test_served_bytes_that_are_not_a_png_are_kept_as_served(tmp_path):
    store = Store(tmp_path)
    entry = sent_entry(store, task_id="task-b", n=2)
    store.set_billed(entry.entry_id, 2)
    for index, served in enumerate((b"\xff\xd8\xff\xe0 a JPEG, say", b"")):
        stored = store.save_image(entry.entry_id, ImageResult(index, 42, "1024*1024", data=served))
        with open(stored, "rb") as fh:
            assert fh.read() == served


def test_saving_an_image_again_keeps_the_sound_file_and_rewrites_a_damaged_one(tmp_path):
    store = Store(tmp_path)
    entry = sent_entry(store, task_id="task-i")
    store.set_billed(entry.entry_id, 2)
    first = store.save_image(entry.entry_id, image(0))
    assert store.save_image(entry.entry_id, image(0, color=(1, 1, 1))) == first  # once per (entry, index)
    assert store.entry(entry.entry_id).saved_images == 1
    with open(first, "wb") as fh:
        fh.write(b"<html>damaged</html>")
    assert store.save_image(entry.entry_id, image(0)) == first and store.read_image(first) == image(0).data
    # The same served bytes for another entry: one content-named file, written once, its chunk kept.
    other = sent_entry(store, task_id="task-o", prompt="a red fox again")
    store.set_billed(other.entry_id, 1)
    assert store.save_image(other.entry_id, image(0)) == first
    assert read_png_provenance(first)["entry_id"] == entry.entry_id


def test_saving_an_image_without_bytes_is_refused_with_what_to_do(tmp_path):
    store = Store(tmp_path)
    entry = sent_entry(store)
    with pytest.raises(StoreError) as info:
        store.save_image(entry.entry_id, ImageResult(1, 43, "1024*1024", url="https://oss.example/1.png"))
    assert (info.value.problem, info.value.remedy) == (
        f"image 1 of entry {entry.entry_id} has no bytes", "download it before saving")


RESUME_LATER = ("run `wanx-nb resume` (or %wanx resume) within 24 h: the task is kept and its images are fetched"
                " again")  # fmt: skip


def test_a_write_that_fails_names_the_file_and_the_recovery_and_leaves_no_temporary_file(tmp_path):
    store = Store(tmp_path)
    entry = sent_entry(store)
    store.set_billed(entry.entry_id, 2)
    served = image(0)
    target = tmp_path / "images" / f"{hashlib.sha256(served.data).hexdigest()}.png"
    target.mkdir()  # something else holds the image's name
    with pytest.raises(StoreError) as info:
        store.save_image(entry.entry_id, served)
    assert (info.value.problem, info.value.remedy) == (
        f"could not write {target} (Is a directory)", "fix the directory, then " + RESUME_LATER)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [target.name]  # no temporary file left
    os.rmdir(target)
    (tmp_path / "images").rename(tmp_path / "images-moved")
    (tmp_path / "images").write_bytes(b"")  # the images directory replaced by a file
    with pytest.raises(StoreError) as info:
        store.save_image(entry.entry_id, image(1))
    assert info.value.problem.endswith("(File exists)") and info.value.remedy == "fix the directory, then " + RESUME_LATER
    assert store.entry(entry.entry_id).state is EntryState.COLLECTING  # still resumable


def test_a_task_adopted_after_its_bill_keeps_the_entry_collecting(tmp_path):
    # A sync call billed before its task id was known (reconciled later): resume must still fetch the images.
    store = Store(tmp_path)
    entry = new_entry()
    store.record(entry)
    store.mark_sending(entry.entry_id, entry.given.replace(seed=42), T0.isoformat())
    store.set_billed(entry.entry_id, 2)
    store.attach_task(entry.entry_id, "task-a", status="SUCCEEDED", request_id=None)
    assert store.entry(entry.entry_id).state is EntryState.COLLECTING
    with pytest.raises(StoreError) as info:
        store.attach_task(entry.entry_id, "task-other", status="PENDING", request_id=None)
    assert (info.value.problem, info.value.remedy) == (
        f"entry {entry.entry_id} already holds task task-a", "record a new entry")


def test_a_final_entry_still_takes_notes_the_bill_and_image_failures_but_keeps_its_state(tmp_path):
    store = Store(tmp_path)
    entry = sent_entry(store, task_id="task-f")
    store.finish(entry.entry_id, EntryState.FAILED, status="FAILED", code="InternalError", message="boom")
    store.note_error(entry.entry_id, "DownloadError", "late note")
    store.set_billed(entry.entry_id, 2)
    store.record_image_failure(entry.entry_id, 0, "DataInspectionFailed", "image 0 flagged")
    back = store.entry(entry.entry_id)
    assert (back.state, back.billed_images, back.code, back.message) == (EntryState.FAILED, 2, "DownloadError", "late note")
    assert store.unfinished(now=T0) == []


def test_a_bill_met_by_the_images_saved_does_not_make_the_entry_collecting(tmp_path):
    store = Store(tmp_path)
    entry = sent_entry(store, task_id="task-m")
    store.save_image(entry.entry_id, image(0))  # saved before the bill was read (a sync call)
    store.set_billed(entry.entry_id, 1)
    assert store.entry(entry.entry_id).state is EntryState.SUBMITTED


def test_finishing_times_are_the_given_clock_and_an_entry_kept_collecting_has_none(tmp_path):
    store = Store(tmp_path)
    done = sent_entry(store, task_id="task-d")
    store.finish(done.entry_id, EntryState.DONE, status="SUCCEEDED", now=LATER)
    assert store.entry(done.entry_id).finished_at == utc_iso(LATER)
    short = sent_entry(store, task_id="task-s")
    store.set_billed(short.entry_id, 1)
    store.finish(short.entry_id, EntryState.DONE, status="SUCCEEDED", now=LATER)
    assert (store.entry(short.entry_id).state, store.entry(short.entry_id).finished_at) == (EntryState.COLLECTING, None)
    queued = new_entry()
    store.record(queued)
    store.mark_withdrawn(queued.entry_id, now=LATER)
    assert store.entry(queued.entry_id).finished_at == utc_iso(LATER)
    with pytest.raises(StoreError) as info:
        store.mark_withdrawn(short.entry_id)
    assert (info.value.problem, info.value.remedy) == (
        f"entry {short.entry_id} is collecting, not queued", "only unsent requests can be withdrawn")


def test_an_unknown_task_is_not_found(tmp_path):
    store = Store(tmp_path)
    sent_entry(store, task_id="task-k")
    assert store.find_task("no-such-task") is None and store.find_task("task-k", service="elsewhere") is None


def test_unfinished_entries_are_those_sent_within_a_day_by_the_utc_clock(tmp_path, monkeypatch):
    store = Store(tmp_path)
    now = dt.datetime.now(dt.timezone.utc)
    young = sent_entry(store, task_id="task-young", at=now - dt.timedelta(hours=23))
    monkeypatch.setenv("TZ", "Asia/Shanghai")  # UTC+8: a local clock read as UTC would be 8 h off
    time.tzset()
    try:
        assert [e.entry_id for e in store.unfinished()] == [young.entry_id]
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_rebuild_that_cannot_write_says_what_to_do(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError) as info:
        Store(tmp_path / "file" / "store").rebuild()
    assert (info.value.problem, info.value.remedy) == (
        "cannot rebuild the index (Not a directory)", "make the store directory writable and run the rebuild again")


def test_recording_is_refused_for_a_taken_entry_id_or_a_task_another_entry_holds(tmp_path):
    store = Store(tmp_path)
    entry = sent_entry(store, task_id="task-t")
    with pytest.raises(StoreError) as info:
        store.record(entry)
    assert (info.value.problem, info.value.remedy) == (
        f"entry {entry.entry_id} is already recorded", "make a new entry_id (uuid4 hex)")
    twin = replace(new_entry(), task_id="task-t")  # an entry that names a task another entry holds
    with pytest.raises(StoreError) as info:
        store.record(twin)
    assert (info.value.problem, info.value.remedy) == (
        f"task task-t on emulator is already recorded by entry {entry.entry_id} (not overwritten)",
        "this entry keeps no task id; report the duplicate task id")
    elsewhere = replace(new_entry(service="dashscope.aliyuncs.com"), task_id="task-t")
    store.record(elsewhere)  # the same id on another service is another task
    assert store.find_task("task-t", service="dashscope.aliyuncs.com").entry_id == elsewhere.entry_id
