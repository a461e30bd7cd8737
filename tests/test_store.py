"""The store: provenance in PNG chunks and SQLite, write-ahead, replay lookup, history, cost, manifest."""

import io
import json

import pytest
from PIL import Image

from wanx_nb._models import GenerationResult, ImageResult, Task, TaskStatus
from wanx_nb._png import add_provenance, read_provenance, strip_provenance
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
    return GenerationResult(request, task, images, backend="emulator", elapsed=1.5)


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
    result = store.save_result(make_result())
    first = result.images[0]
    assert first.path.endswith(f"{first.sha256}.png")
    prov = read_png_provenance(first.path)
    assert prov["task_id"] == "t-1" and prov["request_id"] == "r-1"
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
    store.save_result(original)
    again = store.get("t-1")
    assert [im.data for im in again.images] == served
    assert again.request == original.request and again.elapsed == 1.5
    assert store.get("nope") is None


def test_partial_failure_is_kept_and_only_successes_cost(tmp_path):
    store = Store(tmp_path)
    store.save_result(make_result(fail_last=True))
    again = store.get("t-1")
    assert [im.ok for im in again.images] == [True, False]
    assert again.images[1].code == "InternalError.Timeout"
    assert store.total_cost() == (1, pytest.approx(0.14))


def test_write_ahead_then_unfinished_until_saved(tmp_path):
    store = Store(tmp_path)
    sent = GenerationRequest("fox", n=1, seed=3)
    store.record_submitted(Task("t-9", TaskStatus.PENDING), sent, backend="dashscope", given=GenerationRequest("fox", n=1))
    (pending,) = store.unfinished_tasks()
    assert pending.task_id == "t-9" and pending.request == sent
    # A fresh Store on the same directory (a restarted kernel) sees it too.
    assert [t.task_id for t in Store(tmp_path).unfinished_tasks()] == ["t-9"]
    result = make_result(task_id="t-9", n=1, seed=3)
    store.save_result(result)
    assert store.unfinished_tasks() == []


def test_replay_finds_recordings_by_the_request_as_given(tmp_path):
    store = Store(tmp_path)
    given = GenerationRequest("fox", n=1)  # no seed: the client picked one
    for task_id, seed in (("a", 11), ("b", 22)):
        sent = given.replace(seed=seed)
        store.record_submitted(Task(task_id, TaskStatus.PENDING), sent, backend="emulator", given=given)
        store.save_result(make_result(task_id=task_id, prompt="fox", n=1, seed=seed))
    first, second = store.replay(given, 0), store.replay(given, 1)
    assert (first.task_id, second.task_id) == ("a", "b")
    assert first.replayed
    assert store.replay(GenerationRequest("wolf", n=1), 0) is None


def test_history_filters(tmp_path):
    store = Store(tmp_path)
    store.save_result(make_result("t-1", prompt="red fox", model="wanx2.1-t2i-turbo"))
    store.save_result(make_result("t-2", prompt="blue whale", model="wanx2.1-t2i-plus", color=(9, 9, 9)))
    store.save_result(make_result("t-3", prompt="green fox", model="wanx-v1", color=(5, 5, 5)))
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
    store.save_result(make_result())
    manifest = store.manifest()
    (entry,) = manifest["generations"]
    assert entry["request"]["seed"] == 7
    assert [im["seed"] for im in entry["images"]] == [7, 8]
    assert all(len(im["sha256"]) == 64 for im in entry["images"])
    json.dumps(manifest)


def test_recorded_actual_prompt(tmp_path):
    store = Store(tmp_path)
    given = GenerationRequest("red fox", n=2, seed=7)
    store.save_result(make_result(prompt="red fox"))
    assert store.recorded_actual_prompt(given) == "red fox，高清"


def test_elapsed_time_comes_back_exactly_so_replay_shows_the_same_text(tmp_path):
    store = Store(tmp_path)
    result = make_result()
    result.elapsed = 0.04999999  # shown as "0.0 s"; rounded to 3 places it would show "0.1 s"
    store.save_result(result)
    assert store.get("t-1").elapsed == 0.04999999


def test_legacy_resume_saves_into_the_unfinished_entry_not_a_namesake(tmp_path):
    # Old emulators gave every process the same first task id; legacy writers must keep the records apart.
    first, second = Store(tmp_path), Store(tmp_path)  # two processes
    first.record_submitted(Task("dup", TaskStatus.PENDING), GenerationRequest("fox", n=1, seed=1), backend="emulator")
    first.save_result(make_result(task_id="dup", prompt="fox", n=1, seed=1))
    second.record_submitted(Task("dup", TaskStatus.PENDING), GenerationRequest("owl", n=1, seed=2), backend="emulator")
    later = Store(tmp_path)  # a third process resumes
    (pending,) = later.unfinished_tasks()
    assert pending.request.prompt == "owl"
    later.save_result(make_result(task_id="dup", prompt="owl", n=1, seed=2, color=(7, 7, 7)))
    assert later.unfinished_tasks() == []
    assert sorted(r.prompt for r in later.history()) == ["fox", "owl"]
    assert all(r.state == "done" and r.saved == 1 for r in later.history())


def test_legacy_client_side_errors_keep_the_task_resumable(tmp_path):
    from wanx_nb._exceptions import TaskFailedError, WaitTimeoutError

    store = Store(tmp_path)
    store.record_submitted(Task("t-5", TaskStatus.PENDING), GenerationRequest("fox", n=1, seed=3), backend="emulator")
    store.record_failure("t-5", WaitTimeoutError("t-5", 600.0, "RUNNING"))
    assert [t.task_id for t in store.unfinished_tasks()] == ["t-5"]
    store.record_failure("t-5", TaskFailedError("t-5", "FAILED", "InternalError", "boom"))
    assert store.unfinished_tasks() == []
    assert store.history()[0].state == "failed"


def test_a_session_on_the_emulator_leaves_a_done_entry_billed_as_the_service_reported(session):
    result = session.generate(GenerationRequest("a lantern in snow", n=2, seed=11))
    (row,) = session.store.history()
    assert (row.task_id, row.state, row.status) == (result.task_id, "done", "SUCCEEDED")
    assert (row.billed, row.saved) == (result.task.image_count, 2)
    assert row.service == "emulator" and row.seed == 11
    again = session.store.get(result.task_id, service="emulator")
    assert [im.data for im in again.images] == [im.data for im in result.images]
