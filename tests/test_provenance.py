"""One provenance record: its JSON round trip, the PNG chunk, the create's request id, records written before."""

import dataclasses
import io
import json
import sqlite3

import pytest
from PIL import Image

from wanx_nb._models import GenerationResult
from wanx_nb._png import add_provenance
from wanx_nb._provenance import SCHEMA_VERSION, Provenance
from wanx_nb._catalog_2026 import CATALOG_2026
from wanx_nb._registry import get_model, preferred_protocol
from wanx_nb._request import GenerationRequest
from wanx_nb._session import Session
from wanx_nb._store import Store, read_png_provenance

SYNC_MODEL = next(spec.name for spec in CATALOG_2026 if not preferred_protocol(get_model(spec.name)).is_async)
JOURNAL_FIELDS = {"service": None, "entry_id": None, "run_id": None, "mode": None, "recorded_at": None}


def png(color=(30, 60, 90)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(buf, format="PNG")
    return buf.getvalue()


def results_of_every_kind(tmp_path, emulator) -> dict[str, GenerationResult]:
    store = tmp_path / "store"
    session = Session(store=store, emulator=emulator, mode="record")
    ok = session.generate(GenerationRequest("a red fox", n=2, seed=5))
    partial = session.generate(GenerationRequest("EMU_PARTIAL_FAILURE owl", model="wanx2.1-t2i-plus", n=3, seed=9))
    sync = session.generate(GenerationRequest("a lighthouse", model=SYNC_MODEL, n=1, seed=3))
    replayed = Session(store=store, emulator=emulator, mode="replay").generate(GenerationRequest("a red fox", n=2, seed=5))
    return {"ok": ok, "partial": partial, "sync": sync, "replayed": replayed}


def test_the_record_round_trips_through_json_for_every_kind_of_result(tmp_path, emulator):
    results = results_of_every_kind(tmp_path, emulator)
    assert [im.ok for im in results["partial"].images] == [True, True, False]
    assert results["sync"].task_id is None and results["replayed"].replayed
    for kind, result in results.items():
        record = result.provenance()
        assert Provenance.from_json(record.to_json()) == record, kind
        assert Provenance.from_dict(json.loads(json.dumps(record.to_dict()))).to_dict() == record.to_dict(), kind
        assert result.metadata() == record.to_dict() and record.to_dict()["schema"] == SCHEMA_VERSION
    partial = results["partial"].provenance()
    assert [im.code for im in partial.images] == [None, None, "InternalError.Timeout"]
    assert partial.billed_images == 2 and partial.cost_yuan == pytest.approx(0.40)
    assert results["sync"].provenance().task_id is None and results["sync"].provenance().request_id
    assert results["replayed"].metadata() == {**results["ok"].metadata(), "replayed": True}


def test_the_store_rebuilds_the_full_result_from_its_record(tmp_path, emulator):
    results = results_of_every_kind(tmp_path, emulator)
    store = Store(tmp_path / "store")
    for kind in ("ok", "partial"):
        result = results[kind]
        again = store.get(result.task_id)
        assert again.metadata() == result.metadata(), kind
        assert [im.data for im in again.images] == [im.data for im in result.images]
    (sync_row,) = [r for r in store.history() if r.task_id is None]
    assert store.get(sync_row.entry_id).metadata() == results["sync"].metadata()
    manifest = store.manifest()  # one record per generation, the same shape, the service added
    kept = [results[k].provenance() for k in ("ok", "partial", "sync")]
    assert [dataclasses.replace(Provenance.from_dict(e), service=None) for e in manifest["generations"]] == kept
    assert {e["service"] for e in manifest["generations"]} == {"emulator"}


def test_each_stored_png_carries_the_record_narrowed_to_its_image(tmp_path, emulator):
    result = Session(store=tmp_path / "store", emulator=emulator).generate(
        GenerationRequest("a red fox", n=2)  # unseeded: given and sent differ
    )
    record = result.provenance()
    assert record.given.seed is None and record.sent.seed is not None
    for im in result.images:
        chunk = Provenance.from_dict(read_png_provenance(im.path))
        assert chunk.service == "emulator" and chunk.entry_id and chunk.mode == "live"
        assert dataclasses.replace(chunk, **JOURNAL_FIELDS) == record.for_image(im.index)
        (only,) = chunk.images
        assert (only.index, only.seed, only.sha256, only.path) == (im.index, im.seed, im.sha256, f"images/{im.sha256}.png")


def test_the_record_keeps_the_create_calls_request_id_not_the_last_polls(tmp_path, emulator):
    session = Session(store=tmp_path / "store", emulator=emulator)
    result = session.generate(GenerationRequest("a red fox", model="wanx2.1-t2i-plus", n=1, seed=1))
    create_id = session.store.find_task(result.task_id).request_id  # written when the create answered
    assert create_id and result.task.request_id and result.task.request_id != create_id  # the last poll's
    assert result.provenance().request_id == create_id
    assert result.metadata()["request_id"] == create_id
    assert read_png_provenance(result.images[0].path)["request_id"] == create_id
    assert session.store.get(result.task_id).provenance().request_id == create_id


def test_for_image_names_the_indexes_it_has():
    record = Provenance(backend="emulator", model="wanx2.1-t2i-turbo", given=GenerationRequest("fox"),
                        sent=GenerationRequest("fox", seed=1), task_id="t", request_id="r", status="SUCCEEDED")  # fmt: skip
    with pytest.raises(ValueError, match=r"no image 3 in this record \(indexes: \[\]\)"):
        record.for_image(3)
    with pytest.raises(ValueError, match="schema 99 is newer"):
        Provenance.from_dict({**record.to_dict(), "schema": 99})


# ---- records written before schema 2 ------------------------------------------------------------

# What GenerationResult.metadata() wrote before (the store's result_json and output metadata).
OLD_RESULT = {
    "wanx_nb_version": "0.4.0", "backend": "emulator", "model": "wanx2.1-t2i-turbo",
    "request": {"model": "wanx2.1-t2i-turbo", "prompt": "a fox", "n": 2, "seed": 7, "size": "1024*1024",
                "prompt_extend": True, "watermark": False},
    "task_id": "old-task", "request_id": "old-req", "status": "SUCCEEDED", "submit_time": "2026-01-01 10:00:00.000",
    "end_time": "2026-01-01 10:00:05.000", "created_at": "2026-01-01T02:00:06.000+00:00",
    "usage": {"image_count": 1}, "cost_yuan": 0.14, "elapsed_s": 6.25, "warnings": ["a note"],
    "images": [
        {"index": 0, "seed": 7, "size": "1024*1024", "url": "https://oss.example/0.png", "orig_prompt": "a fox",
         "actual_prompt": "a fox, detailed", "path": "/somewhere/else/images/abc.png", "sha256": "abc"},
        {"index": 1, "seed": 8, "size": "1024*1024", "code": "InternalError.Timeout", "message": "timed out"},
    ],
}  # fmt: skip

# What Store._stamp wrote into each PNG before.
OLD_CHUNK = {
    "wanx_nb_version": "0.4.0", "backend": "emulator", "model": "wanx2.1-t2i-turbo",
    "request": {"model": "wanx2.1-t2i-turbo", "prompt": "a fox", "n": 1, "seed": 7},
    "created_at": "2026-01-01T02:00:06.000+00:00", "elapsed_s": 6.25, "entry_id": "e" * 32, "run_id": "run-old",
    "service": "emulator", "mode": "live", "task_id": "old-task", "request_id": "old-req", "index": 0, "seed": 7,
    "size": "1024*1024", "orig_prompt": "a fox", "actual_prompt": "a fox, detailed",
    "given": {"prompt": "a fox", "model": "wanx2.1-t2i-turbo", "n": 1},
    "sent": {"prompt": "a fox", "model": "wanx2.1-t2i-turbo", "n": 1, "seed": 7},
    "billed_images": 1, "price_yuan": 0.14, "entry_created_at": "2026-01-01T01:59:58.000+00:00",
}  # fmt: skip


def test_a_result_record_of_the_previous_shape_still_reads():
    record = Provenance.from_dict(OLD_RESULT)
    assert (record.task_id, record.request_id, record.status, record.billed_images) == ("old-task", "old-req", "SUCCEEDED", 1)
    assert record.sent.seed == 7 and record.elapsed_s == 6.25 and record.warnings == ("a note",)
    assert [im.path for im in record.images] == ["images/abc.png", None]  # now relative to the store
    assert record.images[1].code == "InternalError.Timeout"
    assert Provenance.from_json(record.to_json()) == record  # and it is written back in the current shape


def test_a_png_chunk_of_the_previous_shape_still_reads_and_rebuilds_the_index(tmp_path):
    record = Provenance.from_dict(OLD_CHUNK)
    assert (record.entry_id, record.service, record.run_id, record.mode) == ("e" * 32, "emulator", "run-old", "live")
    assert record.given.seed is None and record.sent.seed == 7 and record.cost_yuan == pytest.approx(0.14)
    (image,) = record.images
    assert (image.index, image.seed, image.actual_prompt) == (0, 7, "a fox, detailed")

    served = png()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "abc.png").write_bytes(add_provenance(served, OLD_CHUNK))
    store = Store(tmp_path)
    report = store.rebuild()
    assert (report.entries, report.images, report.unreadable) == (1, 1, [])
    back = store.get("old-task")
    assert [im.data for im in back.images] == [served] and back.images[0].seed == 7
    assert (back.task.request_id, back.request.seed, store.entry("e" * 32).given.seed) == ("old-req", 7, None)


def test_a_store_holding_a_record_of_the_previous_shape_still_serves_it(tmp_path, emulator):
    session = Session(store=tmp_path / "store", emulator=emulator)
    result = session.generate(GenerationRequest("a fox", n=2, seed=7))
    entry = session.store.find_task(result.task_id)
    old = {**OLD_RESULT, "task_id": result.task_id, "images": [
        {**OLD_RESULT["images"][0], "path": result.images[0].path, "sha256": result.images[0].sha256},
        {"index": 1, "seed": 8, "size": "1024*1024", "path": result.images[1].path, "sha256": result.images[1].sha256},
    ]}  # fmt: skip
    session.store.close()
    with sqlite3.connect(tmp_path / "store" / "index.sqlite") as db:
        db.execute("UPDATE entries SET result_json=? WHERE entry_id=?", (json.dumps(old), entry.entry_id))
    db.close()
    back = Store(tmp_path / "store").get(result.task_id)
    assert [im.data for im in back.images] == [im.data for im in result.images]
    assert [im.seed for im in back.images] == [7, 8] and back.request == result.request  # the journal's request
    assert back.provenance().request_id == "old-req" and back.elapsed == 6.25
