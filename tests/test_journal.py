"""The run journal: an entry's life, what resume sees, identity by (service, task id), the bill."""

import datetime as dt
import io
import time
import uuid
from dataclasses import replace

import pytest
from PIL import Image

from wanx_nb._exceptions import StoreError
from wanx_nb._journal import EntryState, JournalEntry
from wanx_nb._models import ImageResult
from wanx_nb._request import GenerationRequest
from wanx_nb._store import Store

T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.timezone.utc)


def png(color=(200, 30, 30), size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def new_entry(prompt="a red fox", *, service="emulator", at=T0, n=2, seed=None, model="wanx2.1-t2i-turbo", run_id="run-1"):
    given = GenerationRequest(prompt, model=model, n=n, seed=seed)
    return JournalEntry(
        entry_id=uuid.uuid4().hex, run_id=run_id, service=service, backend="emulator", mode="live",
        state=EntryState.QUEUED, given=given, sent=None, task_id=None, status=None,
        created_at=at.isoformat(timespec="milliseconds"), sent_at=None, finished_at=None, request_id=None, code=None,
        message=None, billed_images=0, saved_images=0, price_yuan=0.14,
    )  # fmt: skip


def sent_entry(store, *, task_id="task-1", at=T0, **kwargs):
    entry = new_entry(at=at, **kwargs)
    store.record(entry)
    store.mark_sending(entry.entry_id, entry.given.replace(seed=42), at.isoformat())
    store.attach_task(entry.entry_id, task_id, status="PENDING", request_id="req-1")
    return entry


def image(index, color=None):
    return ImageResult(index, 42 + index, "1024*1024", url=f"https://oss.example/{index}.png", orig_prompt="a red fox",
                       actual_prompt=f"rendered in detail {index}", data=png(color or (10 * index, 20, 30)))  # fmt: skip


def test_an_entry_goes_from_queued_to_done_and_costs_what_was_billed(tmp_path):
    store = Store(tmp_path)
    entry = new_entry()
    store.record(entry)
    assert store.entry(entry.entry_id).state is EntryState.QUEUED
    store.mark_sending(entry.entry_id, entry.given.replace(seed=42), T0.isoformat())
    assert store.entry(entry.entry_id).state is EntryState.SENDING
    store.attach_task(entry.entry_id, "task-1", status="PENDING", request_id="req-1")
    store.update_status(entry.entry_id, "RUNNING")
    store.set_billed(entry.entry_id, 2)
    assert store.entry(entry.entry_id).state is EntryState.COLLECTING
    paths = [store.save_image(entry.entry_id, image(i)) for i in range(2)]
    store.finish(entry.entry_id, EntryState.DONE, status="SUCCEEDED", result=store.journal_record(entry.entry_id))
    done = store.entry(entry.entry_id)
    assert (done.state, done.status, done.task_id, done.request_id) == (EntryState.DONE, "SUCCEEDED", "task-1", "req-1")
    assert (done.billed_images, done.saved_images, done.cost_yuan) == (2, 2, 0.28)
    assert done.sent.seed == 42 and done.given.seed is None and done.finished_at
    result = store.get("task-1")
    assert [im.path for im in result.images] == paths and [im.data for im in result.images] == [image(0).data, image(1).data]
    (row,) = store.history()
    assert (row.state, row.billed, row.saved, row.task_id) == ("done", 2, 2, "task-1")


def test_done_is_refused_while_billed_images_are_not_saved_and_resume_sees_it(tmp_path):
    store = Store(tmp_path)
    entry = sent_entry(store)
    store.set_billed(entry.entry_id, 2)
    store.save_image(entry.entry_id, image(0))
    store.note_error(entry.entry_id, "DownloadError", "503 on image 1")
    store.finish(entry.entry_id, EntryState.DONE, status="SUCCEEDED")
    assert store.entry(entry.entry_id).state is EntryState.COLLECTING
    assert [e.entry_id for e in store.unfinished(now=T0 + dt.timedelta(hours=1))] == [entry.entry_id]
    assert store.total_cost() == (2, 0.28)  # the bill, not the one download
    store.save_image(entry.entry_id, image(1))
    store.finish(entry.entry_id, EntryState.DONE, status="SUCCEEDED")
    assert store.entry(entry.entry_id).state is EntryState.DONE
    assert store.unfinished(now=T0 + dt.timedelta(hours=1)) == []


def test_client_side_errors_never_finish_an_entry(tmp_path):
    store = Store(tmp_path)
    entry = sent_entry(store)
    for code in ("ServerError", "WaitTimeout", "KeyboardInterrupt"):
        store.note_error(entry.entry_id, code, f"{code} while polling")
    got = store.entry(entry.entry_id)
    assert got.state is EntryState.SUBMITTED and got.code == "KeyboardInterrupt"
    assert [e.task_id for e in store.unfinished(now=T0)] == ["task-1"]


def test_unfinished_and_expired_split_at_the_services_24_hours(tmp_path):
    store = Store(tmp_path)
    old = sent_entry(store, task_id="old", at=T0)
    young = sent_entry(store, task_id="young", at=T0 + dt.timedelta(hours=20))
    outcome = new_entry(at=T0 + dt.timedelta(hours=21))
    store.record(outcome)
    store.mark_sending(outcome.entry_id, outcome.given.replace(seed=1), (T0 + dt.timedelta(hours=21)).isoformat())
    store.mark_outcome_unknown(outcome.entry_id, None, "connection dropped after sending")
    queued = new_entry(at=T0 + dt.timedelta(hours=22))
    store.record(queued)  # never sent: nothing for resume
    now = T0 + dt.timedelta(hours=25)
    assert [e.entry_id for e in store.unfinished(now=now)] == [young.entry_id, outcome.entry_id]
    assert [e.entry_id for e in store.expired_unfinished(now=now)] == [old.entry_id]
    store.finish(old.entry_id, EntryState.GONE, message="older than 24 h")
    assert store.expired_unfinished(now=now) == []


def test_withdraw_only_what_was_never_sent(tmp_path):
    store = Store(tmp_path)
    queued = new_entry()
    store.record(queued)
    store.mark_withdrawn(queued.entry_id)
    assert store.entry(queued.entry_id).state is EntryState.WITHDRAWN
    sending = new_entry()
    store.record(sending)
    store.mark_sending(sending.entry_id, sending.given.replace(seed=3), T0.isoformat())
    with pytest.raises(StoreError, match="not queued"):
        store.mark_withdrawn(sending.entry_id)
    assert store.entry(sending.entry_id).state is EntryState.SENDING


def test_a_final_entry_does_not_change_again(tmp_path):
    store = Store(tmp_path)
    entry = sent_entry(store)
    store.finish(entry.entry_id, EntryState.FAILED, status="FAILED", code="InternalError", message="boom")
    with pytest.raises(StoreError, match="already final"):
        store.attach_task(entry.entry_id, "task-2", status="PENDING", request_id=None)
    with pytest.raises(ValueError, match="final state"):
        store.finish(entry.entry_id, EntryState.SUBMITTED)
    failed = store.replay(entry.given)
    assert (failed.code, failed.server_message, failed.task_status) == ("InternalError", "boom", "FAILED")


def test_the_same_task_id_from_two_services_is_two_tasks(tmp_path):
    store = Store(tmp_path)
    a = sent_entry(store, task_id="same", service="emulator", prompt="fox")
    b = sent_entry(store, task_id="same", service="dashscope.aliyuncs.com", prompt="whale")
    assert store.find_task("same", "emulator").entry_id == a.entry_id
    assert store.find_task("same", "dashscope.aliyuncs.com").entry_id == b.entry_id
    assert store.known_task_ids("emulator") == {"same"}
    c = new_entry(prompt="owl")
    store.record(c)
    with pytest.raises(StoreError, match=f"already recorded by entry {a.entry_id}"):
        store.attach_task(c.entry_id, "same", status="PENDING", request_id=None)
    assert store.entry(a.entry_id).given.prompt == "fox"  # never overwritten
    assert store.entry(c.entry_id).task_id is None


def test_save_image_is_idempotent_per_entry_and_index(tmp_path):
    store = Store(tmp_path)
    entry = sent_entry(store)
    store.set_billed(entry.entry_id, 1)
    first = store.save_image(entry.entry_id, image(0))
    again = image(0)
    assert store.save_image(entry.entry_id, again) == first == again.path
    assert store.entry(entry.entry_id).saved_images == 1
    assert len(list((tmp_path / "images").glob("*.png"))) == 1


def test_the_image_file_carries_the_entry_so_the_index_can_be_rebuilt(tmp_path):
    from wanx_nb._png import read_file_provenance

    store = Store(tmp_path)
    entry = sent_entry(store, seed=None)
    store.set_billed(entry.entry_id, 1)
    record = replace(store.journal_record(entry.entry_id), elapsed_s=2.5)
    path = store.save_image(entry.entry_id, image(0), record)
    chunk = read_file_provenance(path)
    (im,) = chunk["images"]
    assert (chunk["entry_id"], chunk["service"], chunk["task_id"], im["index"]) == (entry.entry_id, "emulator", "task-1", 0)
    assert chunk["given"].get("seed") is None and chunk["request"]["seed"] == 42 and chunk["billed_images"] == 1
    assert chunk["elapsed_s"] == 2.5 and chunk["request_id"] == "req-1"


def test_history_pages_filters_and_shows_state(tmp_path):
    store = Store(tmp_path)
    for i in range(7):
        e = sent_entry(store, task_id=f"t{i}", at=T0 + dt.timedelta(minutes=i), prompt="fox" if i % 2 else "whale",
                       model="wanx2.1-t2i-plus" if i == 3 else "wanx2.1-t2i-turbo")  # fmt: skip
        if i == 6:
            store.set_billed(e.entry_id, 1)
            store.save_image(e.entry_id, image(0))
    assert [r.task_id for r in store.history(limit=3)] == ["t6", "t5", "t4"]
    assert [r.task_id for r in store.history(limit=3, offset=3)] == ["t3", "t2", "t1"]
    assert [r.task_id for r in store.history(text="fox")] == ["t5", "t3", "t1"]
    assert [r.task_id for r in store.history(text="in detail")] == ["t6"]  # rewritten prompts count
    assert [r.task_id for r in store.history(model="wanx2.1-t2i-plus")] == ["t3"]
    assert [r.task_id for r in store.history(status="collecting")] == ["t6"]  # saved, but not finished yet
    assert store.history(text="100%") == []  # LIKE wildcards are taken literally
    top = store.history(limit=1)[0]
    assert (top.state, top.billed, top.saved, top.images, top.cost_yuan) == ("collecting", 1, 1, 1, 0.14)
    assert top.thumbnail.endswith(".png") and store.history(limit=1, offset=1)[0].thumbnail is None


# ---- times, keys and how an entry shows --------------------------------------------------------------


def test_times_are_stored_in_utc_whatever_the_offset_or_the_local_zone(monkeypatch):
    from wanx_nb._journal import as_utc_iso, utc_iso

    assert as_utc_iso("2026-03-01T16:00:00+08:00") == "2026-03-01T08:00:00.000+00:00"
    monkeypatch.setenv("TZ", "Asia/Shanghai")  # UTC+8: a naive time read as local, or a local clock, is 8 h off
    time.tzset()
    try:
        assert as_utc_iso("2026-03-01T08:00:00") == "2026-03-01T08:00:00.000+00:00"  # naive values are UTC
        before = dt.datetime.now(dt.timezone.utc)
        now = dt.datetime.fromisoformat(utc_iso())
        after = dt.datetime.now(dt.timezone.utc)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert before - dt.timedelta(milliseconds=1) <= now <= after


def test_the_replay_key_is_the_one_earlier_versions_stored():
    from wanx_nb._journal import replay_key

    # Keys already in users' stores: a change to how the key is made loses every recorded replay.
    request = GenerationRequest("一只红狐狸", model="wanx2.1-t2i-plus", n=2, seed=7, negative_prompt="模糊")
    assert replay_key(request) == "ee3054165131cab50a277d94e448263b5499a6c08a037d259e53b88f48a54b75"


def test_an_entry_shows_its_id_state_task_and_images_saved(tmp_path):
    store = Store(tmp_path)
    entry = sent_entry(store, task_id="task-9")
    store.set_billed(entry.entry_id, 2)
    assert repr(store.entry(entry.entry_id)) == f"<JournalEntry {entry.entry_id[:8]} collecting task task-9 0/2 saved>"
    queued = new_entry()
    store.record(queued)
    assert repr(store.entry(queued.entry_id)) == f"<JournalEntry {queued.entry_id[:8]} queued 0/0 saved>"
