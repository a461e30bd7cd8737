"""Reading the store back (`_store_read`): a saved result comes back image by image as it was recorded
(saved, failed on the service, billed but not downloaded, saved later by resume), history rows say what
the journal knows, and a bad stored file is named exactly."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace

from wanx_nb._journal import EntryState
from wanx_nb._provenance import ImageProvenance
from wanx_nb._store import Store
from wanx_nb._store_read import read_stored_image

from test_journal import T0, image, new_entry, png, sent_entry


def three_image_result(store: Store, *, seed=42):
    """Entry "task-3": image 0 saved, image 1 failed on the service, image 2 billed but its download failed."""
    entry = new_entry(n=3)
    store.record(entry)
    store.mark_sending(entry.entry_id, entry.given.replace(seed=seed), T0.isoformat())
    store.attach_task(entry.entry_id, "task-3", status="PENDING", request_id="req-3")
    store.set_billed(entry.entry_id, 2)
    first = image(0)
    first.seed = seed
    store.save_image(entry.entry_id, first)
    store.record_image_failure(entry.entry_id, 1, "InternalError.Timeout", "image 1 timed out on the service")
    record = replace(store.journal_record(entry.entry_id), status="SUCCEEDED", images=(
        first.provenance(),
        ImageProvenance(index=1, seed=None if seed is None else seed + 1, size="1024*1024"),
        ImageProvenance(index=2, seed=None if seed is None else seed + 2, size="1024*1024", orig_prompt="a red fox",
                        url="https://oss.example/2.png", download_code="DownloadError", download_error="HTTP 403"),
    ))  # fmt: skip
    store.finish(entry.entry_id, EntryState.DONE, status="SUCCEEDED", result=record)
    return entry, first


def test_a_saved_result_comes_back_image_by_image_as_it_was_recorded(tmp_path):
    store = Store(tmp_path)
    entry, first = three_image_result(store)
    result = store.get("task-3")
    assert (result.task_id, result.request, result.given) == ("task-3", entry.given.replace(seed=42), entry.given)
    saved, failed, missing = result.images
    assert (saved.index, saved.seed, saved.size, saved.url, saved.orig_prompt, saved.actual_prompt) == (
        0, 42, "1024*1024", "https://oss.example/0.png", "a red fox", "rendered in detail 0")
    assert (saved.data, saved.path, saved.sha256, saved.code) == (png((0, 20, 30)), first.path, first.sha256, None)
    # A failure the service reported for one image, recorded on its own: the image says so.
    assert (failed.index, failed.seed, failed.code, failed.message, failed.data) == (
        1, 43, "InternalError.Timeout", "image 1 timed out on the service", None)
    # Billed but not downloaded: the record says why, and keeps the URL resume fetches it from.
    assert (missing.index, missing.seed, missing.url, missing.orig_prompt) == (2, 44, "https://oss.example/2.png", "a red fox")
    assert (missing.code, missing.download_code, missing.download_error, missing.data) == (None, "DownloadError", "HTTP 403", None)
    assert result.billed_images == 2


def test_an_image_resume_saves_later_reads_back_with_its_file_and_no_download_error(tmp_path):
    store = Store(tmp_path)
    entry, _ = three_image_result(store)
    late = image(2, color=(1, 2, 3))
    store.save_image(entry.entry_id, late)  # resume fetched it from its URL
    fetched = store.get("task-3").images[2]
    assert (fetched.data, fetched.path, fetched.sha256) == (png((1, 2, 3)), late.path, late.sha256)
    assert (fetched.download_code, fetched.download_error, fetched.code) == (None, None, None)


def test_images_saved_after_the_record_follow_the_request_for_seed_and_size(tmp_path):
    for seed, expected in ((42, 45), (None, None)):
        store = Store(tmp_path / f"seed-{seed}")
        entry, _ = three_image_result(store, seed=seed)
        store.save_image(entry.entry_id, image(3, color=(9, 9, 9)))  # the record lists images 0-2 only
        extra = store.get("task-3").images[3]
        assert (extra.index, extra.seed, extra.size, extra.data) == (3, expected, "1024*1024", png((9, 9, 9)))


def test_a_record_written_before_the_task_was_known_reads_back_with_the_task(tmp_path):
    store = Store(tmp_path)
    entry = sent_entry(store, task_id="task-late")
    store.set_billed(entry.entry_id, 1)
    saved = image(0)
    store.save_image(entry.entry_id, saved)
    record = replace(store.journal_record(entry.entry_id), task_id=None, images=(saved.provenance(),))
    store.finish(entry.entry_id, EntryState.DONE, status="SUCCEEDED", result=record)
    assert store.get("task-late").task_id == "task-late"
    assert store.get(entry.entry_id).task.task_id == "task-late"


def test_an_image_recorded_but_never_saved_says_so(tmp_path):
    store = Store(tmp_path)
    entry = sent_entry(store, task_id="task-n")
    store.set_billed(entry.entry_id, 1)
    record = replace(store.journal_record(entry.entry_id), images=(ImageProvenance(index=0, seed=42, size="1024*1024"),))
    store.finish(entry.entry_id, EntryState.FAILED, status="SUCCEEDED", result=record)
    (im,) = store.get("task-n").images
    assert (im.data, im.code, im.message) == (None, "StoredFileMissing", "no file was saved for this image")


def test_a_bad_stored_file_is_named_exactly(tmp_path):
    missing = str(tmp_path / "gone.png")
    assert read_stored_image(missing) == (
        None, "StoredFileMissing", f"{missing}: No such file or directory; `wanx-nb store check` lists missing files")
    limit = 64 << 20
    big = tmp_path / "big.png"
    with open(big, "wb") as fh:  # sparse: no 64 MiB written
        fh.truncate(limit + 1)
    assert read_stored_image(str(big)) == (
        None, "StoredFileCorrupt", f"{big}: {limit + 1:,} bytes is over the {limit:,}-byte limit")
    os.truncate(big, limit)  # exactly at the limit: read and checked like any other file
    assert read_stored_image(str(big)) == (None, "StoredFileCorrupt", f"{big}: not a PNG file (no IHDR header)")


def test_history_rows_say_what_the_journal_knows(tmp_path):
    store = Store(tmp_path)
    done = new_entry(at=T0)
    store.record(done)
    store.mark_sending(done.entry_id, done.given.replace(seed=42), (T0 + dt.timedelta(seconds=30)).isoformat())
    store.attach_task(done.entry_id, "task-h", status="PENDING", request_id="req-h")
    store.set_billed(done.entry_id, 1)
    saved = image(0)
    store.save_image(done.entry_id, saved)
    queued = new_entry("a grey wolf", at=T0 + dt.timedelta(minutes=5), n=1, seed=7)
    queued = replace(queued, price_yuan=0.12345, given=queued.given.replace(size="1280*720"))
    store.record(queued)
    store.set_billed(queued.entry_id, 1)  # as a sync call billed before its task was known
    rows = {r.entry_id: r.as_dict() for r in store.history()}
    assert rows[done.entry_id] == {
        "task_id": "task-h", "model": "wanx2.1-t2i-turbo", "prompt": "a red fox", "status": "PENDING",
        "submitted_at": store.entry(done.entry_id).sent_at, "images": 1, "cost_yuan": 0.14, "seed": 42, "size": "1024*1024",
        "backend": "emulator", "actual_prompt": "rendered in detail 0", "thumbnail": saved.path, "state": "collecting",
        "billed": 1, "saved": 1, "entry_id": done.entry_id, "service": "emulator", "request_id": "req-h",
    }  # fmt: skip
    assert rows[done.entry_id]["submitted_at"].startswith("2026-03-01T08:00:30")  # sent, not recorded
    wolf = rows[queued.entry_id]
    # Never sent: the time it was recorded, the request as given, the journal's state (no service status yet).
    assert (wolf["status"], wolf["submitted_at"], wolf["seed"], wolf["size"], wolf["task_id"]) == (
        "COLLECTING", queued.created_at, 7, "1280*720", None)
    assert wolf["cost_yuan"] == store.entry(queued.entry_id).cost_yuan == 0.1235  # every cost to 4 places


def test_reading_a_store_that_is_not_there_makes_no_file_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a mistyped in-memory database name would land as a file
    store = Store(tmp_path / "wanx_stroe")
    assert store.history() == [] and store.history_count() == 0 and store.unfinished() == []
    assert os.listdir(tmp_path) == []
