"""Keeping a store sound (`_store_repair`): a v1 store migrated field by field, what `store check` finds and
says, what `store rebuild` says, and where a rebuilt entry's task lives."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import time

import pytest

from wanx_nb._exceptions import StoreError, TaskCanceledError, TaskFailedError, TaskUnknownError
from wanx_nb._journal import EntryState, create_schema
from wanx_nb._png import add_provenance
from wanx_nb._request import GenerationRequest
from wanx_nb._store import Store
from wanx_nb._store_repair import populate_from_pngs

from test_journal import T0, image, png, sent_entry
from test_regressions_store import recorded  # noqa: F401  (a fixture)
from test_store_faults import V1_SCHEMA

NOW = T0 + dt.timedelta(hours=1)  # the v1 tasks below were submitted at T0: young enough to resume


# ---- the v1 schema ----------------------------------------------------------------------------------


def v1_task(task_id, status, *, prompt="a red fox", model="wanx2.1-t2i-turbo", backend="emulator", **fields):
    """A row of v1's `tasks` table, as wanx_nb 0.x wrote it."""
    given = GenerationRequest(prompt, model=model, n=fields.pop("n", 1))
    sent = given.replace(seed=fields.pop("seed", 7))
    known = "replay_key" not in fields  # a model since removed from the registry has no key to compute
    row = dict(
        task_id=task_id, replay_key=Store.replay_key(given) if known else None,
        request_key=sent.key() if known else None, model=model, prompt=prompt,
        request_json=json.dumps(sent.to_dict()), given_json=json.dumps(given.to_dict()), backend=backend,
        mode="live", status=status, code=None, message=None, request_id=None, submitted_at=T0.isoformat(),
        finished_at=None, cost_yuan=0, image_count=0, result_json=None,
    )  # fmt: skip
    row.update(fields)
    return row


def v1_image(task_id, idx, path=None, **fields):
    row = dict(task_id=task_id, idx=idx, sha256=None, path=path, seed=7 + idx, size="1024*1024", url=None,
               orig_prompt="a red fox", actual_prompt=None, code=None, message=None)  # fmt: skip
    row.update(fields)
    return row


def v1_store(root, tasks, images=()) -> Store:
    """A store left by wanx_nb 0.x (schema 1), opened now: the open migrates it."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(root / "index.sqlite")
    db.executescript(V1_SCHEMA)
    for table, rows in (("tasks", tasks), ("images", images)):
        for row in rows:
            db.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    db.commit()
    db.close()
    return Store(root)


def saved_file(root, name, color):
    path = root / "images" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png(color))
    return str(path)


def test_every_field_of_a_finished_v1_task_is_carried_to_its_place(tmp_path):
    root = tmp_path / "v1"
    first, second = saved_file(root, "aaa", (1, 2, 3)), saved_file(root, "bbb", (4, 5, 6))
    task = v1_task("ok-2", "SUCCEEDED", prompt="a red fox in deep snow", model="wanx2.1-t2i-plus", backend="dashscope",
                   n=2, seed=11, mode="record", request_id="req-ok", submitted_at=(T0 + dt.timedelta(minutes=1)).isoformat(),
                   finished_at=(T0 + dt.timedelta(minutes=2)).isoformat(), cost_yuan=0.5, image_count=2,
                   result_json='{"status": "SUCCEEDED", "backend": "dashscope"}')  # fmt: skip
    images = [v1_image("ok-2", 0, first, sha256="aaa", actual_prompt="a red fox, rewritten under falling flakes"),
              v1_image("ok-2", 1, second, sha256="bbb", actual_prompt="a red fox, rewritten among pines")]  # fmt: skip
    store = v1_store(root, [task], images)

    entry = store.find_task("ok-2")
    assert (entry.run_id, entry.service, entry.backend, entry.mode) == ("v1", "dashscope", "dashscope", "record")
    assert (entry.state, entry.status, entry.task_id, entry.request_id) == (EntryState.DONE, "SUCCEEDED", "ok-2", "req-ok")
    assert entry.given == GenerationRequest("a red fox in deep snow", model="wanx2.1-t2i-plus", n=2)
    assert entry.sent == entry.given.replace(seed=11)
    assert entry.created_at == entry.sent_at == task["submitted_at"] and entry.finished_at == task["finished_at"]
    # The bill as v1 recorded it: ¥0.50 for two images is ¥0.25 each, not today's list price (¥0.20).
    assert (entry.billed_images, entry.saved_images, entry.price_yuan, entry.cost_yuan) == (2, 2, 0.25, 0.5)
    assert store.total_cost() == (2, 0.5)

    (row,) = store.history()
    assert (row.status, row.prompt, row.model, row.images, row.seed) == ("SUCCEEDED", "a red fox in deep snow",
                                                                          "wanx2.1-t2i-plus", 2, 11)
    assert (row.actual_prompt, row.thumbnail) == ("a red fox, rewritten under falling flakes", first)
    for word in ("deep snow", "falling flakes", "pines"):  # the prompt and every rewritten prompt are searchable
        assert [h.task_id for h in store.history(text=word)] == ["ok-2"], word
    assert store.recorded_actual_prompt(entry.given) == "a red fox, rewritten under falling flakes"

    result = store.get("ok-2")  # v1's result record held no request: the journal's stand in for it
    assert (result.request, result.given) == (entry.sent, entry.given)
    replayed = store.replay(entry.given)  # found by the request as the user gave it
    assert replayed.task_id == "ok-2" and [im.data is not None for im in replayed.images] == [True, True]
    assert [im.sha256 for im in replayed.images] == ["aaa", "bbb"]


def test_v1_tasks_that_ended_without_images_replay_as_the_error_they_raised(tmp_path):
    tasks = [
        v1_task("failed-1", "FAILED", prompt="fox one", code="DataInspectionFailed", message="input flagged",
                request_id="req-f", finished_at=T0.isoformat()),
        v1_task("canceled-1", "CANCELED", prompt="fox two"),
        v1_task("unknown-1", "UNKNOWN", prompt="fox three"),
    ]  # fmt: skip
    store = v1_store(tmp_path / "v1", tasks)
    failed = store.find_task("failed-1")
    assert (failed.state, failed.status, failed.code, failed.message) == (EntryState.FAILED, "FAILED",
                                                                         "DataInspectionFailed", "input flagged")
    assert (failed.service, failed.billed_images, failed.cost_yuan) == ("emulator", 0, 0)
    assert failed.price_yuan == 0.14  # no bill recorded: the model's price, should resume ever bill it
    error = store.replay(failed.given)
    assert isinstance(error, TaskFailedError)
    assert (error.task_id, error.code, error.request_id) == ("failed-1", "DataInspectionFailed", "req-f")
    assert "input flagged" in str(error)
    assert store.find_task("canceled-1").state is EntryState.CANCELED
    assert isinstance(store.replay(GenerationRequest("fox two", n=1)), TaskCanceledError)
    assert store.find_task("unknown-1").state is EntryState.GONE
    assert isinstance(store.replay(GenerationRequest("fox three", n=1)), TaskUnknownError)
    assert {h.task_id: h.status for h in store.history()} == {"failed-1": "FAILED", "canceled-1": "CANCELED",
                                                              "unknown-1": "UNKNOWN"}
    assert store.unfinished(now=NOW) == []


def test_v1_tasks_with_billed_images_not_saved_are_left_for_resume(tmp_path):
    root = tmp_path / "v1"
    kept = saved_file(root, "ccc", (7, 8, 9))
    tasks = [
        # SUCCEEDED, two billed, one saved (the other's download failed): resume must fetch the second.
        v1_task("part-1", "SUCCEEDED", n=2, cost_yuan=0.28, image_count=2, result_json='{"status": "SUCCEEDED"}'),
        v1_task("sent-1", "SUBMITTED", prompt="a grey wolf"),  # sent; v1 never heard back
    ]
    images = [v1_image("part-1", 0, kept, sha256="ccc", actual_prompt="a red fox, rewritten"),
              v1_image("part-1", 1, None, code="DownloadError", message="503 on image 1")]  # fmt: skip
    store = v1_store(root, tasks, images)
    part = store.find_task("part-1")
    assert (part.state, part.status, part.billed_images, part.saved_images) == (EntryState.COLLECTING, "SUCCEEDED", 2, 1)
    sent = store.find_task("sent-1")
    # "SUBMITTED" was v1's own word, not a status the service reported: none has been seen yet.
    assert (sent.state, sent.status, sent.price_yuan) == (EntryState.SUBMITTED, None, 0.14)
    assert [e.task_id for e in store.unfinished(now=NOW)] == ["part-1", "sent-1"]
    rows = {h.task_id: h for h in store.history()}
    assert (rows["part-1"].thumbnail, rows["part-1"].actual_prompt, rows["part-1"].saved) == (kept, "a red fox, rewritten", 1)
    assert (rows["sent-1"].status, rows["sent-1"].thumbnail, rows["sent-1"].actual_prompt) == ("SUBMITTED", None, None)
    images = store.get("part-1").images
    assert images[0].data is not None and (images[1].code, images[1].message) == ("DownloadError", "503 on image 1")


def test_a_v1_task_of_a_model_no_longer_offered_migrates_with_no_price(tmp_path):
    store = v1_store(tmp_path / "v1", [v1_task("old-1", "SUBMITTED", model="wanx-retired", replay_key="k", request_key="k")])
    (row,) = store.history()
    assert (row.model, row.task_id, row.state) == ("wanx-retired", "old-1", "submitted")
    with sqlite3.connect(store.db_path) as db:  # JournalEntry cannot be built: the model is unknown
        assert db.execute("SELECT price_yuan FROM entries WHERE task_id='old-1'").fetchone() == (0.0,)


# ---- store check -------------------------------------------------------------------------------------


def two_entries(tmp_path):
    """A store with one finished entry (two images saved) and one still waiting on the service."""
    store = Store(tmp_path / "store")
    done = sent_entry(store, task_id="done-1")
    store.set_billed(done.entry_id, 2)
    paths = [store.save_image(done.entry_id, image(i)) for i in range(2)]
    store.finish(done.entry_id, EntryState.DONE, status="SUCCEEDED", result=store.journal_record(done.entry_id))
    sent_entry(store, task_id="waiting-1")
    return store, paths


def test_a_sound_store_checks_ok_and_counts_what_resume_would_look_at(tmp_path):
    store, _ = two_entries(tmp_path)
    report = store.integrity()
    assert report.ok and (report.entries, report.images, report.unfinished) == (2, 2, 1)
    assert report.text() == "index: ok; 2 entries, 2 images, 1 unfinished (recover with `wanx-nb resume`)"


def test_check_names_missing_files_apart_from_damaged_and_stray_ones(tmp_path):
    store, (gone, kept) = two_entries(tmp_path)
    os.unlink(gone)
    report = store.integrity()
    # A missing file is only missing; rebuilding the index would not bring it back, so it is not advised.
    assert (report.missing_images, report.corrupt_images, report.unindexed_files) == ([gone], [], [])
    assert not report.ok
    assert report.text() == ("index: ok; 2 entries, 2 images, 1 unfinished (recover with `wanx-nb resume`)\n"
                             f"missing on disk: {gone}")  # fmt: skip

    with open(kept, "wb") as fh:
        fh.write(b"<html>AccessDenied</html>")
    stray = tmp_path / "store" / "images" / "stray.png"
    stray.write_bytes(b"<html>not an image either</html>")
    report = store.integrity()
    assert (report.missing_images, report.corrupt_images, report.unindexed_files) == ([gone], [kept], [str(stray)])
    assert report.text().splitlines()[1:] == [
        f"missing on disk: {gone}", f"damaged file: {kept}", f"not indexed: {stray}",
        "fix: `wanx-nb store rebuild DIR` rebuilds the index from the images' provenance",
    ]


def test_check_of_a_store_with_a_stray_image_advises_a_rebuild(tmp_path):
    store, _ = two_entries(tmp_path)
    stray = tmp_path / "store" / "images" / "stray.png"
    stray.write_bytes(png((1, 1, 1)))
    report = store.integrity()
    assert report.quick_check == "ok" and report.unindexed_files == [str(stray)] and not report.ok
    assert report.text().splitlines()[-2:] == [
        f"not indexed: {stray}", "fix: `wanx-nb store rebuild DIR` rebuilds the index from the images' provenance"]


def test_check_of_a_damaged_index_says_what_is_wrong_and_lists_every_image_for_the_rebuild(tmp_path):
    store, paths = two_entries(tmp_path)
    store.close()
    (tmp_path / "store" / "index.sqlite").write_bytes(b"<html>not a database</html>" * 200)
    report = Store(tmp_path / "store").integrity()
    assert report.quick_check == "the index is damaged (file is not a database)" and not report.ok
    assert report.unindexed_files == sorted(paths) and (report.entries, report.images) == (0, 0)
    assert report.text().splitlines() == [
        "index: the index is damaged (file is not a database); 0 entries, 0 images, 0 unfinished"
        " (recover with `wanx-nb resume`)",
        *[f"not indexed: {p}" for p in sorted(paths)],
        "fix: `wanx-nb store rebuild DIR` rebuilds the index from the images' provenance",
    ]


# ---- store rebuild -------------------------------------------------------------------------------------


def test_rebuild_says_what_it_indexed_what_it_read_back_and_where_the_old_index_went(tmp_path):
    store, _ = two_entries(tmp_path)
    report = store.rebuild()
    assert report.text() == ("rebuilt the index: 2 entries, 2 images (2 entries read back from the old index)\n"
                             f"the previous index is kept as {report.moved_aside}")  # fmt: skip
    store.close()
    (tmp_path / "store" / "index.sqlite").write_bytes(b"<html>not a database</html>" * 200)
    plain = tmp_path / "store" / "images" / "plain.png"
    plain.write_bytes(png((8, 8, 8)))
    report = Store(tmp_path / "store").rebuild()
    assert report.salvaged == 0
    assert report.text().splitlines() == [
        "rebuilt the index: 1 entries, 2 images", f"the previous index is kept as {report.moved_aside}",
        f"no provenance (not indexed): {plain}"]  # fmt: skip


def test_a_rebuilt_entry_keeps_the_service_its_task_lives_on(tmp_path):
    store = Store(tmp_path / "store")
    live = sent_entry(store, task_id="task-h", service="dashscope-intl.aliyuncs.com")
    store.set_billed(live.entry_id, 1)
    store.save_image(live.entry_id, image(0))
    store.close()
    (tmp_path / "store" / "index.sqlite").write_bytes(b"<html>not a database</html>" * 200)
    store = Store(tmp_path / "store")
    store.rebuild()
    assert store.find_task("task-h", service="dashscope-intl.aliyuncs.com").entry_id == live.entry_id


def v1_chunk(backend, index, task_id="v1-task", **fields):
    """The provenance chunk wanx_nb 0.x wrote into an image: no entry, no service, no run; no bill either."""
    chunk = {"wanx_nb_version": "0.3.0", "backend": backend, "model": "wanx2.1-t2i-turbo", "task_id": task_id,
             "index": index, "seed": 7 + index, "size": "1024*1024", "orig_prompt": "a fox",
             "actual_prompt": f"a fox, detailed {index}", "created_at": T0.isoformat(),
             "sent": {"prompt": "a fox", "model": "wanx2.1-t2i-turbo", "n": 2, "seed": 7}}  # fmt: skip
    return {**chunk, **fields}


@pytest.mark.parametrize("backend", ["emulator", "dashscope"])
def test_images_saved_by_v1_are_rebuilt_into_one_entry_under_the_service_of_their_backend(tmp_path, backend):
    (tmp_path / "images").mkdir()
    for index in (0, 1):
        chunk = v1_chunk(backend, index, replayed=True)  # saved from a replayed result: still not a replay here
        (tmp_path / "images" / f"v1-{index}.png").write_bytes(add_provenance(png((index, 0, 0)), chunk))
    store = Store(tmp_path)
    report = store.rebuild()  # no index yet: nothing to read back, nothing moved aside
    assert report.text() == "rebuilt the index: 1 entries, 2 images"
    entry = store.find_task("v1-task", service=backend)  # where resume and `show` look for the task
    assert (entry.service, entry.backend, entry.run_id, entry.mode) == (backend, backend, "rebuilt", "live")
    assert (entry.state, entry.created_at, entry.billed_images, entry.saved_images) == (EntryState.DONE, T0.isoformat(), 2, 2)
    assert (entry.price_yuan, entry.cost_yuan) == (0.14, 0.28)  # no price recorded: the model's price
    record = store.result_record(entry.entry_id)
    assert (record.status, record.billed_images, record.cost_yuan, record.replayed) == ("SUCCEEDED", 2, 0.28, False)
    result = store.get("v1-task")
    assert [im.actual_prompt for im in result.images] == ["a fox, detailed 0", "a fox, detailed 1"]
    assert (result.billed_images, result.replayed) == (2, False)


def test_two_tasks_recorded_under_one_id_are_both_rebuilt_and_told_apart(tmp_path):
    # Emulators before unique task ids handed the same id out in two sessions: neither entry may be dropped.
    images = tmp_path / "store" / "images"
    images.mkdir(parents=True)
    made = []
    for k in range(2):
        session_store = Store(tmp_path / f"session-{k}")
        entry = sent_entry(session_store, task_id="task-1", prompt=f"fox {k}")
        session_store.set_billed(entry.entry_id, 1)
        path = session_store.save_image(entry.entry_id, image(0, color=(k, 9, 9)))
        os.replace(path, images / os.path.basename(path))
        made.append(entry.entry_id)
    store = Store(tmp_path / "store")
    report = store.rebuild()
    assert (report.entries, report.images, report.unreadable) == (2, 2, [])
    services = {eid: store.entry(eid).service for eid in made}
    (moved,) = [eid for eid, service in services.items() if service != "emulator"]
    assert services[moved] == f"emulator/dup-{moved[:8]}"
    assert {r.prompt for r in store.history()} == {"fox 0", "fox 1"}


def test_a_rebuilt_index_gives_back_each_result_record_and_the_manifest_as_they_were(recorded):
    root, _ = recorded
    store = Store(root)
    records = {h.entry_id: store.result_record(h.entry_id) for h in store.history()}
    manifest = store.manifest()
    store.close()
    (root / "index.sqlite").write_bytes(b"<html>not a database</html>" * 200)
    store = Store(root)
    store.rebuild()
    assert {eid: store.result_record(eid) for eid in records} == records
    assert store.manifest() == manifest


def test_a_result_saved_while_the_task_ran_is_rebuilt_as_succeeded(tmp_path):
    store = Store(tmp_path / "store")
    entry = sent_entry(store, task_id="task-r")
    store.update_status(entry.entry_id, "RUNNING")
    store.set_billed(entry.entry_id, 1)
    store.save_image(entry.entry_id, image(0))  # no result yet: the image's chunk says what the journal knew
    store.close()
    (tmp_path / "store" / "index.sqlite").unlink()
    store = Store(tmp_path / "store")
    store.rebuild()
    assert store.result_record(entry.entry_id).status == "SUCCEEDED"  # its image exists: the task succeeded
    assert store.get("task-r").task.status.value == "SUCCEEDED"


def test_entries_rebuilt_from_v1_images_get_ids_like_any_other_and_keep_them(tmp_path):
    # The first 8 characters tell entries apart (the repr, a duplicate's service name): not "v1:emula".
    (tmp_path / "images").mkdir()
    for task_id in ("v1-a", "v1-b"):
        chunk = v1_chunk("emulator", 0, task_id=task_id)
        (tmp_path / "images" / f"{task_id}.png").write_bytes(add_provenance(png(), chunk))
    store = Store(tmp_path)
    store.rebuild()
    ids = {task_id: store.find_task(task_id).entry_id for task_id in ("v1-a", "v1-b")}
    assert all(re.fullmatch(r"[0-9a-f]{32}", eid) for eid in ids.values()) and len({e[:8] for e in ids.values()}) == 2
    (tmp_path / "index.sqlite").write_bytes(b"<html>not a database</html>" * 200)
    store.rebuild()
    assert {task_id: store.find_task(task_id).entry_id for task_id in ids} == ids  # the same after every rebuild


def test_rebuild_lists_what_is_not_an_image_and_indexes_every_file_after_it(tmp_path):
    store, paths = two_entries(tmp_path)
    junk = [tmp_path / "store" / "images" / name for name in ("0-error-page.png", "0-no-provenance.png")]
    junk[0].write_bytes(b"<html>AccessDenied</html>")
    junk[1].write_bytes(png((5, 5, 5)))
    report = store.rebuild()
    assert (report.entries, report.images, report.unreadable) == (2, 2, [str(p) for p in junk])
    assert [im.path for im in store.get("done-1").images] == paths


def test_rebuild_beside_an_index_of_another_shape_indexes_the_images_and_reads_nothing_back(tmp_path):
    root = tmp_path / "store"
    (root / "images").mkdir(parents=True)
    (root / "images" / "v1.png").write_bytes(add_provenance(png(), v1_chunk("emulator", 0, task_id="ok-1")))
    db = sqlite3.connect(root / "index.sqlite")  # a sound SQLite file, but not tables this version can copy
    db.executescript("CREATE TABLE entries (entry_id TEXT, note TEXT); INSERT INTO entries VALUES ('e', 'n');"
                     "CREATE TABLE images (entry_id TEXT);")  # fmt: skip
    db.close()
    report = Store(root).rebuild()
    assert report.salvaged == 0 and (report.entries, report.images) == (1, 1)
    assert report.text().splitlines()[0] == "rebuilt the index: 1 entries, 1 images"
    assert Store(root).find_task("ok-1").state is EntryState.DONE
    with sqlite3.connect(report.moved_aside) as kept:  # kept as it was, for whoever looks at it later
        assert kept.execute("SELECT * FROM entries").fetchall() == [("e", "n")]


def test_the_index_moved_aside_is_named_by_the_time_and_kept_whole_with_its_log(tmp_path):
    writer, _ = two_entries(tmp_path)  # still open: its last writes are in index.sqlite-wal, not checkpointed
    root = tmp_path / "store"
    assert (root / "index.sqlite-wal").exists()
    report = Store(root).rebuild()
    old = report.moved_aside
    assert re.fullmatch(r"index\.sqlite\.damaged-\d{8}T\d{6}\.\d{6}Z", os.path.basename(old))
    assert os.path.exists(f"{old}-wal") and os.path.exists(f"{old}-shm")
    with sqlite3.connect(old) as kept:  # the old index reads back whole, its logged writes included
        assert kept.execute("SELECT COUNT(*) FROM entries").fetchone() == (2,)
    writer.close()
    again = Store(root)
    assert again.integrity().ok and {h.task_id for h in again.history()} == {"done-1", "waiting-1"}
    second = again.rebuild().moved_aside  # a second rebuild keeps the first one's old index too
    assert second != old and os.path.exists(old) and os.path.exists(second)


def test_a_store_directory_deleted_before_the_rebuild_comes_back_usable_with_this_process_unfinished_task(tmp_path):
    store, _ = two_entries(tmp_path)
    store.close()
    shutil.rmtree(tmp_path / "store")
    report = store.rebuild()
    assert (report.entries, report.images, report.moved_aside) == (0, 0, None)
    # Usable, and the task this process sent and has not finished is written back: it may be billed,
    # and resume can still collect it. The finished entry went with the directory.
    assert [r.task_id for r in store.history()] == ["waiting-1"] and store.integrity().ok


class SameFileNumber(Store):
    """A store whose index file always has the same file number, as when a new index reuses the number of
    the one deleted (the file system's choice, so a real test cannot count on it either way)."""

    def _current_identity(self):
        return (0, 0) if self.db_path.exists() else None


def test_a_rebuilt_index_gets_this_process_unfinished_task_even_under_the_old_file_number(tmp_path):
    store = SameFileNumber(tmp_path / "store")
    sent_entry(store, task_id="waiting-1")
    store.close()
    shutil.rmtree(tmp_path / "store")
    store.rebuild()
    assert [r.task_id for r in store.history()] == ["waiting-1"]  # it may be billed: resume still finds it


def test_an_index_another_process_replaced_gets_this_process_unfinished_task_back(tmp_path):
    root = tmp_path / "store"
    mine = Store(root)
    sent_entry(mine, task_id="waiting-1")
    mine.close()
    # Another process moves the index aside (kept: its file number cannot be reused) and starts a new one.
    os.rename(root / "index.sqlite", tmp_path / "moved-aside.sqlite")
    assert Store(root).history() == []
    assert [r.task_id for r in mine.history()] == ["waiting-1"]  # a new file: this process writes its task back


def test_an_index_found_damaged_then_rebuilt_by_another_process_gets_this_process_unfinished_task_back(tmp_path):
    root = tmp_path / "store"
    mine = SameFileNumber(root)  # the rebuilt index may take the damaged one's file number
    sent_entry(mine, task_id="waiting-1")
    mine.close()
    (root / "index.sqlite").write_bytes(b"garbage" * 1000)  # damaged in place
    with pytest.raises(StoreError):
        mine.history()  # this process finds it damaged: what it had is lost
    Store(root).rebuild()  # `wanx-nb store rebuild` in a terminal
    assert [r.task_id for r in mine.history()] == ["waiting-1"]


def test_an_index_write_refused_half_way_leaves_nothing_half_indexed(tmp_path):
    store, _ = two_entries(tmp_path)
    store.close()
    conn = sqlite3.connect(tmp_path / "fresh.sqlite", isolation_level=None)
    conn.row_factory = sqlite3.Row
    create_schema(conn)
    # The index refuses the first image row (as a full disk or a lost lock would refuse some write).
    conn.set_authorizer(lambda action, table, *_: sqlite3.SQLITE_DENY
                        if action == sqlite3.SQLITE_INSERT and table == "images" else sqlite3.SQLITE_OK)  # fmt: skip
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        populate_from_pngs(conn, tmp_path / "store" / "images")
    conn.set_authorizer(None)
    assert not conn.in_transaction and conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 0
    conn.close()


def test_the_old_index_is_named_by_the_utc_time_whatever_the_local_zone(tmp_path, monkeypatch):
    store, _ = two_entries(tmp_path)
    monkeypatch.setenv("TZ", "Asia/Shanghai")  # UTC+8 all year: a local stamp would be 8 h off
    time.tzset()
    try:
        before = dt.datetime.now(dt.timezone.utc)
        moved = store.rebuild().moved_aside
        after = dt.datetime.now(dt.timezone.utc)
    finally:
        monkeypatch.undo()
        time.tzset()
    stamp = dt.datetime.strptime(moved.rsplit("damaged-", 1)[1], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=dt.timezone.utc)
    assert before <= stamp <= after


def test_rebuilding_a_v1_index_this_version_never_opened_keeps_its_tasks_for_resume(tmp_path):
    # `wanx-nb store rebuild` on a store last written by 0.x: its rows are migrated, not dropped (a task
    # sent and never saved lives only there, and resume must still collect its images).
    root = tmp_path / "v1"
    (root / "images").mkdir(parents=True)
    db = sqlite3.connect(root / "index.sqlite")
    db.executescript(V1_SCHEMA)
    row = v1_task("sent-9", "SUBMITTED", prompt="a grey wolf")
    db.execute(f"INSERT INTO tasks ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    db.commit()
    db.close()

    report = Store(root).rebuild()
    assert report.salvaged == 1 and report.entries == 1
    store = Store(root)
    assert [e.task_id for e in store.unfinished(now=NOW)] == ["sent-9"]
    assert not list(root.glob("index.sqlite.v1-migrating-*"))  # the migrated copy is not left behind
