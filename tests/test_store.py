"""The store: provenance in PNG chunks and SQLite, write-ahead, replay lookup, history, cost, manifest.

Results are written the way a Run writes them, through the journal API (`record`, `mark_sending`,
`attach_task`, `set_billed`, `save_image`, `finish`): see `journal_result` below.
"""

import datetime as dt
import io
import json
import os
import tempfile
import uuid

import pytest
from PIL import Image

from wanx_nb._journal import EntryState, JournalEntry, utc_iso
from wanx_nb._models import GenerationResult, ImageResult, Task, TaskStatus
from wanx_nb._png import add_provenance, read_provenance, strip_provenance
from wanx_nb._registry import get_model
from wanx_nb._request import GenerationRequest
from wanx_nb._store import Store, read_png_provenance


def png(color=(200, 30, 30), size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def make_result(task_id="t-1", prompt="一只红狐狸", model="wanx2.1-t2i-turbo", seed=7, n=2, fail_last=False, color=(1, 2, 3)):
    request = GenerationRequest(prompt, model=model, n=n, seed=seed)
    images = []
    for i in range(n):
        if fail_last and i == n - 1:
            images.append(ImageResult(i, seed + i, "1024*1024", code="InternalError.Timeout", message="timeout"))
        else:
            images.append(
                ImageResult(i, seed + i, "1024*1024", url=f"https://oss/{task_id}-{i}.png", orig_prompt=prompt,
                            actual_prompt=prompt + "，高清", data=png((color[0], color[1], i)))
            )
    ok = sum(1 for im in images if im.code is None)
    task = Task(task_id, TaskStatus.SUCCEEDED, request_id="r-1", usage={"image_count": ok})
    return GenerationResult(request, task, images, backend="emulator", elapsed=1.5, created_at=utc_iso())


def write_ahead(store, task_id, sent, *, given=None, service="emulator", backend="emulator"):
    """Record a request, mark it sent and attach its task, as a Run does before and after the create."""
    entry = JournalEntry(
        entry_id=uuid.uuid4().hex, run_id="run-1", service=service, backend=backend, mode="live",
        state=EntryState.QUEUED, given=given or sent, sent=None, task_id=None, status=None, created_at=utc_iso(),
        sent_at=None, finished_at=None, request_id=None, code=None, message=None, billed_images=0, saved_images=0,
        price_yuan=get_model(sent.model).price_yuan,
    )  # fmt: skip
    store.record(entry)
    store.mark_sending(entry.entry_id, sent, utc_iso())
    store.attach_task(entry.entry_id, task_id, status="PENDING", request_id="r-create")
    return entry.entry_id


def journal_result(store, result, *, entry_id=None, given=None):
    """Save a finished result into its entry (written ahead here when not given): billed, images, DONE."""
    entry_id = entry_id or write_ahead(store, result.task_id, result.request, given=given)
    result.create_request_id = store.entry(entry_id).request_id  # as a Run does: the create's, not the last poll's
    store.set_billed(entry_id, result.task.image_count)
    record = result.provenance()
    for im in result.images:
        if im.data is not None:
            store.save_image(entry_id, im, record)
        elif im.code is not None:
            store.record_image_failure(entry_id, im.index, im.code, im.message)
    store.finish(entry_id, EntryState.DONE, status=result.task.status.value, result=result.provenance())
    return result


def test_a_finished_entry_says_where_its_images_came_from_by_its_result(tmp_path):
    # A served emulator at a base URL is journaled as the session's "dashscope" before it answers.
    store = Store(tmp_path)
    result = make_result()  # the emulator's, as its answers said
    journal_result(store, result, entry_id=write_ahead(store, "t-1", result.request, backend="dashscope"))
    (row,) = store.history()
    assert row.backend == "emulator"


def test_png_provenance_round_trip_keeps_the_served_bytes():
    raw = png()
    stamped = add_provenance(raw, {"seed": 7, "prompt": "狐狸"})
    assert read_provenance(stamped) == {"seed": 7, "prompt": "狐狸"}
    assert strip_provenance(stamped) == raw
    assert Image.open(io.BytesIO(stamped)).text["wanx_nb"]  # any PNG reader sees the chunk
    restamped = add_provenance(stamped, {"seed": 8})
    assert read_provenance(restamped) == {"seed": 8}
    assert restamped.count(b"iTXtwanx_nb\x00") == 1  # replaced, not doubled
    assert strip_provenance(restamped) == raw


def test_png_parser_rejects_garbage():
    with pytest.raises(ValueError):
        add_provenance(b"not a png", {})
    with pytest.raises(ValueError):
        add_provenance(png()[:40], {})


def test_save_writes_content_named_pngs_with_full_provenance(tmp_path):
    store = Store(tmp_path)
    result = journal_result(store, make_result())
    first = result.images[0]
    assert first.path.endswith(f"{first.sha256}.png")
    with open(first.path, "rb") as fh:  # the served bytes, byte for byte, plus our chunk
        assert strip_provenance(fh.read()) == make_result().images[0].data
    prov = read_png_provenance(first.path)
    assert prov["task_id"] == "t-1" and prov["request_id"] == "r-create"  # the create's id, not the poll's "r-1"
    (image,) = prov["images"]  # the record narrowed to this image
    assert image["seed"] == 7 and image["index"] == 0 and prov["model"] == "wanx2.1-t2i-turbo"
    assert image["orig_prompt"] == "一只红狐狸" and image["actual_prompt"] == "一只红狐狸，高清"
    assert image["sha256"] == first.sha256 and image["path"] == f"images/{first.sha256}.png"
    assert prov["request"]["seed"] == 7 and prov["request"]["n"] == 2
    assert prov["backend"] == "emulator" and prov["wanx_nb_version"]
    assert prov["created_at"].endswith("+00:00")
    (row,) = store.history()
    assert (row.status, row.state, row.billed, row.saved) == ("SUCCEEDED", "done", 2, 2)
    assert row.cost_yuan == pytest.approx(0.28)
    assert [im.seed for im in store.get("t-1").images] == [7, 8]


def test_get_reads_back_the_served_bytes(tmp_path):
    store = Store(tmp_path)
    original = make_result()
    served = [im.data for im in original.images]
    journal_result(store, original)
    again = store.get("t-1")
    assert [im.data for im in again.images] == served
    assert again.request == original.request and again.elapsed == 1.5
    assert store.get("nope") is None


def test_partial_failure_is_kept_and_only_successes_cost(tmp_path):
    store = Store(tmp_path)
    journal_result(store, make_result(fail_last=True))
    again = store.get("t-1")
    assert [im.ok for im in again.images] == [True, False]
    assert again.images[1].code == "InternalError.Timeout"
    assert store.total_cost() == (1, pytest.approx(0.14))


def test_write_ahead_then_unfinished_until_saved(tmp_path):
    store = Store(tmp_path)
    sent = GenerationRequest("fox", n=1, seed=3)
    entry_id = write_ahead(store, "t-9", sent, given=GenerationRequest("fox", n=1), service="dashscope")
    (pending,) = store.unfinished()
    assert (pending.entry_id, pending.task_id, pending.request) == (entry_id, "t-9", sent)
    # A fresh Store on the same directory (a restarted kernel) sees it too.
    assert [e.task_id for e in Store(tmp_path).unfinished()] == ["t-9"]
    journal_result(store, make_result(task_id="t-9", n=1, seed=3), entry_id=entry_id)
    assert store.unfinished() == []
    assert store.entry(entry_id).state is EntryState.DONE


def test_an_image_saves_when_the_system_temp_dir_is_on_another_filesystem(tmp_path, monkeypatch):
    # The image is written beside its final name and renamed into place: a temp file elsewhere (/tmp on
    # tmpfs, another disk) could not be renamed across filesystems, and the paid image would be lost.
    other = "/dev/shm"
    if not os.path.isdir(other) or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a temp dir on another filesystem than tmp_path")
    monkeypatch.setattr(tempfile, "tempdir", other)  # tempfile's documented setting, for this test only
    store = Store(tmp_path / "store")
    result = journal_result(store, make_result(n=1))
    (saved,) = result.images
    assert os.path.dirname(saved.path) == str(store.images_dir) and os.path.exists(saved.path)
    assert store.entry(store.find_task("t-1").entry_id).state is EntryState.DONE
    assert os.listdir(store.images_dir) == [f"{saved.sha256}.png"]  # no temp file left


def test_a_rejected_request_is_finished_at_the_time_given(tmp_path):
    store = Store(tmp_path)
    entry = JournalEntry(
        entry_id=uuid.uuid4().hex, run_id="run-1", service="emulator", backend="emulator", mode="live",
        state=EntryState.QUEUED, given=GenerationRequest("fox", n=1), sent=None, task_id=None, status=None,
        created_at=utc_iso(), sent_at=None, finished_at=None, request_id=None, code=None, message=None,
        billed_images=0, saved_images=0, price_yuan=0.14,
    )  # fmt: skip
    store.record(entry)
    store.mark_sending(entry.entry_id, GenerationRequest("fox", n=1, seed=3), utc_iso())
    at = dt.datetime(2026, 3, 1, 8, 0, 5, 250000, tzinfo=dt.timezone.utc)  # a fake clock's time, not now
    store.mark_rejected(entry.entry_id, "InvalidParameter", "size not allowed", now=at)
    rejected = store.entry(entry.entry_id)
    assert (rejected.state, rejected.code, rejected.message) == (EntryState.REJECTED, "InvalidParameter", "size not allowed")
    assert rejected.finished_at == "2026-03-01T08:00:05.250+00:00"
    assert store.unfinished() == []

def test_replay_finds_recordings_by_the_request_as_given(tmp_path):
    store = Store(tmp_path)
    given = GenerationRequest("fox", n=1)  # no seed: the client picked one
    for task_id, seed in (("a", 11), ("b", 22)):
        sent = given.replace(seed=seed)
        assert sent == make_result(task_id=task_id, prompt="fox", n=1, seed=seed).request
        journal_result(store, make_result(task_id=task_id, prompt="fox", n=1, seed=seed), given=given)
    first, second = store.replay(given, 0), store.replay(given, 1)
    assert (first.task_id, second.task_id) == ("a", "b")
    assert first.replayed
    assert store.replay(GenerationRequest("wolf", n=1), 0) is None


def test_history_filters(tmp_path):
    store = Store(tmp_path)
    journal_result(store, make_result("t-1", prompt="red fox", model="wanx2.1-t2i-turbo"))
    journal_result(store, make_result("t-2", prompt="blue whale", model="wanx2.1-t2i-plus", color=(9, 9, 9)))
    journal_result(store, make_result("t-3", prompt="green fox", model="wanx-v1", color=(5, 5, 5)))
    assert [r.task_id for r in store.history()] == ["t-3", "t-2", "t-1"]
    assert [r.task_id for r in store.history(model="wanx2.1-t2i-plus")] == ["t-2"]
    assert [r.task_id for r in store.history(text="fox")] == ["t-3", "t-1"]
    assert [r.task_id for r in store.history(text="高清")] == ["t-3", "t-2", "t-1"]  # rewritten prompts count
    assert [r.task_id for r in store.history(limit=1)] == ["t-3"]
    assert store.history(since="2999-01-01T00:00:00") == []
    row = store.history(model="wanx-v1")[0].as_dict()
    assert row["seed"] == 7 and row["images"] == 2 and row["thumbnail"].endswith(".png")


def test_manifest_lists_requests_and_image_hashes(tmp_path):
    store = Store(tmp_path)
    journal_result(store, make_result())
    manifest = store.manifest()
    (entry,) = manifest["generations"]
    assert entry["request"]["seed"] == 7
    assert [im["seed"] for im in entry["images"]] == [7, 8]
    assert all(len(im["sha256"]) == 64 for im in entry["images"])
    json.dumps(manifest)


def test_recorded_actual_prompt(tmp_path):
    store = Store(tmp_path)
    given = GenerationRequest("red fox", n=2, seed=7)
    journal_result(store, make_result(prompt="red fox"))
    assert store.recorded_actual_prompt(given) == "red fox，高清"


def test_elapsed_time_comes_back_exactly_so_replay_shows_the_same_text(tmp_path):
    store = Store(tmp_path)
    result = make_result()
    result.elapsed = 0.04999999  # shown as "0.0 s"; rounded to 3 places it would show "0.1 s"
    journal_result(store, result)
    assert store.get("t-1").elapsed == 0.04999999


def test_resume_saves_into_the_unfinished_entry_not_a_namesake(tmp_path):
    # Two services (the in-process emulator, a served one) may hand out the same task id: the
    # entry, not the task id, is what a resuming process saves into.
    first, second = Store(tmp_path), Store(tmp_path)  # two processes
    journal_result(first, make_result(task_id="dup", prompt="fox", n=1, seed=1))
    owl = write_ahead(second, "dup", GenerationRequest("owl", n=1, seed=2), service="127.0.0.1:8765")
    later = Store(tmp_path)  # a third process resumes
    (pending,) = later.unfinished()
    assert (pending.entry_id, pending.request.prompt) == (owl, "owl")
    journal_result(later, make_result(task_id="dup", prompt="owl", n=1, seed=2, color=(7, 7, 7)), entry_id=owl)
    assert later.unfinished() == []
    assert sorted(r.prompt for r in later.history()) == ["fox", "owl"]
    assert all(r.state == "done" and r.saved == 1 for r in later.history())


def test_a_noted_error_keeps_the_task_resumable_and_a_service_failure_ends_it(tmp_path):
    store = Store(tmp_path)
    entry_id = write_ahead(store, "t-5", GenerationRequest("fox", n=1, seed=3))
    store.note_error(entry_id, "WaitTimeout", "gave up waiting after 600 s (still RUNNING)")  # client-side
    assert [e.task_id for e in store.unfinished()] == ["t-5"]
    store.finish(entry_id, EntryState.FAILED, status="FAILED", code="InternalError", message="boom")
    assert store.unfinished() == []
    (row,) = store.history()
    assert (row.state, row.status) == ("failed", "FAILED")


def test_a_session_on_the_emulator_leaves_a_done_entry_billed_as_the_service_reported(session):
    result = session.generate(GenerationRequest("a lantern in snow", n=2, seed=11))
    (row,) = session.store.history()
    assert (row.task_id, row.state, row.status) == (result.task_id, "done", "SUCCEEDED")
    assert (row.billed, row.saved) == (result.task.image_count, 2)
    assert row.service == "emulator" and row.seed == 11
    again = session.store.get(result.task_id, service="emulator")
    assert [im.data for im in again.images] == [im.data for im in result.images]
