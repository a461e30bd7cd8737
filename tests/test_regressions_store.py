"""Survivors of the mutation run over the store (tools/mutation.py), killed by what a user relies on: an
index rebuilt from the PNGs alone gives back every fact the lost one held, so history, cost, search and
replay are the same afterwards.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from pathlib import Path
import sqlite3
import uuid

import pytest
from PIL import Image

import wanx_nb
from wanx_nb._client import AsyncWanxClient
from wanx_nb._journal import EntryState, JournalEntry
from wanx_nb._models import ImageResult
from wanx_nb._request import GenerationRequest
from wanx_nb._session import Session
from wanx_nb._store import Store
from wanx_nb.emulator import Emulator, EmulatorSettings

# What a rebuild cannot know and does not claim to: the moments of sending and finishing (it has the
# entry's creation time), the result URLs (expired within 24 h anyway), the stored result record.
ENTRY_FACTS = (
    "entry_id, run_id, service, backend, mode, state, model, prompt, replay_key, given_json, sent_json, task_id,"
    " status, created_at, request_id, billed_images, saved_images, price_yuan, actual_prompt, search_text,"
    " thumbnail, code, message"
)
IMAGE_FACTS = "entry_id, idx, sha256, path, seed, size, actual_prompt, code, message"

REQUESTS = [
    GenerationRequest("一只红狐狸", model="wanx2.1-t2i-turbo", n=2, seed=5),
    GenerationRequest("a cat", model="wanx-v1", n=1, seed=9, style="<sketch>", size="1280*720"),
    GenerationRequest("a dog", model="wanx2.1-t2i-plus", n=1, seed=3, negative_prompt="blurry", prompt_extend=False),
]


def facts(db_path) -> tuple[dict, dict]:
    con = sqlite3.connect(db_path)
    con.row_factory = sqlite3.Row
    try:
        entries = {r["entry_id"]: dict(r) for r in con.execute(f"SELECT {ENTRY_FACTS} FROM entries")}
        images = {(r["entry_id"], r["idx"]): dict(r) for r in con.execute(f"SELECT {IMAGE_FACTS} FROM images")}
    finally:
        con.close()
    return entries, images


@pytest.fixture
def recorded(tmp_path):
    """A store holding three recorded runs (V2 with rewriting, V1 with a style, V2 without rewriting)."""
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=1.0, rate_limits=False))
    client = AsyncWanxClient(emulator=emulator)
    client._sleep = lambda seconds: asyncio.sleep(seconds / 1000)
    session = Session(store=tmp_path / "store", client=client, clock=emulator.now, mode="record")
    outcomes = session.start(REQUESTS).result(on_tick=lambda: emulator.advance(3600))
    session.store.close()
    return tmp_path / "store", outcomes


@pytest.mark.parametrize("loss", ["deleted", "garbage"])
def test_an_index_rebuilt_from_the_pngs_holds_every_fact_the_lost_one_did(recorded, loss):
    root, outcomes = recorded
    db = root / "index.sqlite"
    before = facts(db)
    history_before = [(h.prompt, h.model, h.state, h.cost_yuan) for h in Store(root).history(limit=None)]
    if loss == "deleted":
        for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
            (root / name).unlink(missing_ok=True)
        store = Store(root)  # rebuilt on open
        store.history()
    else:
        db.write_bytes(b"<html>not a database</html>" * 200)
        store = Store(root)
        report = store.rebuild()
        assert (report.entries, report.images, report.salvaged, report.unreadable) == (3, 4, 0, [])
    store.close()
    after = facts(db)
    for table, was, now in (("entries", before[0], after[0]), ("images", before[1], after[1])):
        assert sorted(now) == sorted(was), table
        for key, row in was.items():
            assert {c: v for c, v in now[key].items() if v != row[c]} == {}, (table, row)
    again = Store(root)
    assert [(h.prompt, h.model, h.state, h.cost_yuan) for h in again.history(limit=None)] == history_before
    for request, outcome in zip(REQUESTS, outcomes):
        replayed = again.replay(request)
        assert [im.sha256 for im in replayed.images] == [im.sha256 for im in outcome.images]
        assert [im.seed for im in replayed.images] == [im.seed for im in outcome.images]
        assert replayed.task_id == outcome.task_id


def test_a_rebuilt_entry_keeps_its_bill_when_fewer_images_were_saved_than_billed(tmp_path):
    # Two images billed, one saved (the other's download failed): after a rebuild the entry still says
    # two were paid for and one is missing, so nobody reads the bill as one image.
    store = Store(tmp_path / "store")
    given = GenerationRequest("a fox", model="wanx2.1-t2i-turbo", n=2, seed=42)
    at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
    entry = JournalEntry(
        entry_id=uuid.uuid4().hex, run_id="run-7", service="dashscope", backend="dashscope", mode="live",
        state=EntryState.QUEUED, given=given, sent=None, task_id=None, status=None, created_at=at, sent_at=None,
        finished_at=None, request_id=None, code=None, message=None, billed_images=0, saved_images=0,
        price_yuan=0.2,  # the price when it was billed, not today's list price (¥0.14)
    )  # fmt: skip
    store.record(entry)
    store.mark_sending(entry.entry_id, given, at)
    store.attach_task(entry.entry_id, "task-7", status="PENDING", request_id="req-7")
    store.set_billed(entry.entry_id, 2)
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (9, 8, 7)).save(buf, format="PNG")
    image = ImageResult(0, 42, "1024*1024", url="https://oss.example/0.png", orig_prompt="a fox",
                        actual_prompt="a fox, detailed", data=buf.getvalue())  # fmt: skip
    store.save_image(entry.entry_id, image, {})
    store.close()
    (tmp_path / "store" / "index.sqlite").write_bytes(b"not a database" * 100)
    rebuilt = Store(tmp_path / "store")
    rebuilt.rebuild()
    back = rebuilt.entry(entry.entry_id)
    assert (back.billed_images, back.saved_images, back.state) == (2, 1, EntryState.COLLECTING)
    assert (back.task_id, back.request_id, back.run_id, back.service) == ("task-7", "req-7", "run-7", "dashscope")
    assert back.cost_yuan == pytest.approx(0.4)


# ---- what an index failure tells the user ------------------------------------------------------------

FAILURES = [
    ("database is locked", "the index is busy (database is locked)", "another process holds it; try again in a moment"),
    ("database table is busy", "the index is busy", "try again in a moment"),
    ("attempt to write a readonly database", "cannot write the index", "make the directory writable or use another"
     " store (Session(store=...) or WANX_NB_STORE)"),
    ("attempt to write a read-only database", "cannot write the index", "make the directory writable"),
    ("unable to open database file", "cannot write the index", "make the directory writable"),
    ("database or disk is full", "could not write the index (database or disk is full): is the disk full?",
     "free some space, then run `%wanx resume` (or `wanx-nb resume`); if the index then reads as damaged,"
     " `wanx-nb store rebuild` restores it from the images"),
    ("disk I/O error", "is the disk full?", "free some space"),
    ("file is not a database", "the index is damaged (file is not a database)", "run `wanx-nb store rebuild"),
]  # fmt: skip


@pytest.mark.parametrize("sqlite_says, problem, remedy", FAILURES, ids=[f[0] for f in FAILURES])
def test_each_index_failure_names_its_cause_and_the_way_out(tmp_path, sqlite_says, problem, remedy):
    store = Store(tmp_path / "store")
    err = store._db_error(sqlite3.OperationalError(sqlite_says))
    assert problem in err.problem and remedy in err.remedy
    assert err.root == str(tmp_path / "store") and str(tmp_path / "store") in str(err)
    if "cannot write" in problem:
        assert str(store.db_path) in err.problem
    if "damaged" in problem:
        assert f"wanx-nb store rebuild {tmp_path / 'store'}" in err.remedy


# ---- the manifest: a JSON others read ------------------------------------------------------------------


def test_the_manifest_lists_each_generation_as_sent_with_its_images(tmp_path):
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=1.0, rate_limits=False))
    client = AsyncWanxClient(emulator=emulator)
    client._sleep = lambda seconds: asyncio.sleep(seconds / 1000)
    session = Session(store=tmp_path / "store", client=client, clock=emulator.now)
    requests = [GenerationRequest("a fox", model="wanx2.1-t2i-turbo", n=1, seed=4),
                GenerationRequest("a cat EMU_PARTIAL_FAILURE", model="wanx2.1-t2i-turbo", n=2, seed=8)]
    fox, cat = session.start(requests).result(on_tick=lambda: emulator.advance(3600))
    store = session.store
    manifest = store.manifest()
    assert manifest["wanx_nb_manifest"] == 2 and manifest["wanx_nb_version"] == wanx_nb.__version__
    first, second = manifest["generations"]  # each one the generation's provenance record
    assert (first["task_id"], first["service"], first["backend"]) == (fox.task_id, "emulator", "emulator")
    assert first["request"] == fox.request.to_dict() and first["given"] == requests[0].to_dict()
    (image,) = first["images"]
    assert (image["index"], image["seed"], image["sha256"], image["actual_prompt"], image["path"]) == (
        0, 4, fox.images[0].sha256, fox.images[0].actual_prompt, f"images/{fox.images[0].sha256}.png"
    )
    failed = [im for im in second["images"] if "code" in im]
    assert len(failed) == 1 and failed[0].get("path") is None and failed[0]["code"] and failed[0]["message"]
    assert [im["index"] for im in second["images"]] == [0, 1]
    only_cat = store.manifest([cat.task_id])
    assert [g["task_id"] for g in only_cat["generations"]] == [cat.task_id]
    assert store.manifest(["no-such-task"])["generations"] == []


# ---- PNG provenance: the chunk's contents and the parser's messages ----------------------------------


def _png(size=(300, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_stored_pngs_chunk_says_where_it_came_from_and_what_was_asked(recorded):
    from wanx_nb._png import read_provenance

    root, outcomes = recorded
    for request, outcome in zip(REQUESTS, outcomes):
        chunk = read_provenance(Path(outcome.images[0].path).read_bytes())
        assert (chunk["backend"], chunk["service"], chunk["mode"]) == ("emulator", "emulator", "record")
        assert chunk["request"] == outcome.request.to_dict() and chunk["model"] == outcome.request.model
        assert chunk["given"] == request.to_dict() and chunk["wanx_nb_version"] == wanx_nb.__version__


def test_the_png_parser_reads_dimensions_from_the_header_alone_and_names_what_is_wrong(tmp_path):
    from wanx_nb._png import add_provenance, png_dimensions, read_file_provenance

    data = _png()
    assert png_dimensions(data[:24]) == (300, 200)  # signature + IHDR's length, type, width and height
    with pytest.raises(ValueError, match=r"^not a PNG file \(no IHDR header\)$"):
        png_dimensions(data[:23])
    with pytest.raises(ValueError, match=r"^truncated PNG chunk header$"):
        add_provenance(data[:12], {})
    with pytest.raises(ValueError, match=r"^truncated PNG chunk b'IHDR'$"):
        add_provenance(data[:20], {})
    text = tmp_path / "not.png"
    text.write_bytes(b"hello, not an image")
    with pytest.raises(ValueError, match=r"^not a PNG file$"):
        read_file_provenance(str(text))


def test_a_chunk_claiming_more_than_2_gib_is_truncated_not_read_backwards():
    import struct

    from wanx_nb._png import add_provenance

    data = _png()
    hostile = data[:33] + struct.pack(">I", 0x8000_0000) + b"tEXt" + b"x" * 16  # length with the top bit set
    with pytest.raises(ValueError, match=r"^truncated PNG chunk b'tEXt'$"):
        add_provenance(hostile, {})
