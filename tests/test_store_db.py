"""The store's connection and pre-flight check (`_store_db`): what `check()` says for each way a store can
be unfit for a paid run, what an index that cannot be opened says, and what comes back when the store
directory is deleted under a running session."""

from __future__ import annotations

import re
import shutil
import sqlite3
import struct
from dataclasses import replace

import pytest

from wanx_nb._exceptions import StoreError
from wanx_nb._journal import EntryState
from wanx_nb._store import Store

from test_journal import T0, image, new_entry, sent_entry


def rebuild_hint(root) -> str:
    return f"run `wanx-nb store rebuild {root}` (or `Store({str(root)!r}).rebuild()`) to rebuild it from the images' provenance"


def test_check_names_a_directory_it_cannot_write_in(tmp_path):
    (tmp_path / "file").write_text("x")
    store = Store(tmp_path / "file" / "store")
    with pytest.raises(StoreError) as info:
        store.check()
    assert (info.value.problem, info.value.remedy) == (
        f"cannot write in {store.images_dir} (Not a directory)",
        "make it writable or use another store (Session(store=...) or WANX_NB_STORE); nothing was sent")


def test_check_says_how_much_space_is_free_and_how_much_is_needed(tmp_path):
    store = Store(tmp_path)
    free_mib = shutil.disk_usage(tmp_path).free / 2**20
    with pytest.raises(StoreError) as info:
        store.check(min_free_bytes=1 << 62)
    shown = re.fullmatch(r"only ([\d.]+) MiB free on its disk \(at least 4398046511104 MiB needed\)", info.value.problem)
    assert shown and float(shown[1]) == pytest.approx(free_mib, rel=0.05)  # other processes write meanwhile
    assert info.value.remedy == "free some space or use another store; nothing was sent"


def test_check_reports_what_quick_check_found_and_how_to_rebuild(tmp_path):
    store = Store(tmp_path / "store")
    sent_entry(store)
    store.close()
    db = tmp_path / "store" / "index.sqlite"
    data = bytearray(db.read_bytes())
    data[36:40] = struct.pack(">I", 3)  # the header claims three free pages the index does not have
    db.write_bytes(bytes(data))
    with sqlite3.connect(db) as raw:
        (verdict,) = raw.execute("PRAGMA quick_check").fetchone()
    assert verdict != "ok"
    with pytest.raises(StoreError) as info:
        Store(tmp_path / "store").check()
    assert (info.value.problem, info.value.remedy) == (f"the index is damaged ({verdict})", rebuild_hint(tmp_path / "store"))


def test_check_of_a_malformed_index_says_so_every_time_it_is_asked(tmp_path):
    store = Store(tmp_path / "store")
    for k in range(40):
        sent_entry(store, task_id=f"task-{k}", prompt=f"fox {k} " * 20)
    store.close()
    db = tmp_path / "store" / "index.sqlite"
    data = bytearray(db.read_bytes())
    page = max(p for p in range(1, len(data) // 4096) if data[p * 4096] == 0x0D)  # a leaf of the entries
    data[page * 4096] = 0  # no longer a b-tree page: opening works, reading it through does not
    db.write_bytes(bytes(data))
    damaged = Store(tmp_path / "store")
    for _ in range(2):
        with pytest.raises(StoreError) as info:
            damaged.check()
        assert (info.value.problem, info.value.remedy) == (
            "the index is damaged (database disk image is malformed)", rebuild_hint(tmp_path / "store"))


def test_an_index_that_cannot_be_opened_says_what_to_do(tmp_path):
    (tmp_path / "store" / "index.sqlite").mkdir(parents=True)  # not a file SQLite can open
    with pytest.raises(StoreError) as info:
        Store(tmp_path / "store").history()
    assert info.value.problem.startswith(f"cannot write the index {tmp_path / 'store' / 'index.sqlite'} (")
    assert info.value.remedy == "make the directory writable or use another store (Session(store=...) or WANX_NB_STORE)"


def test_a_deleted_store_gets_back_this_sessions_entries_each_as_resume_must_see_it(tmp_path):
    store = Store(tmp_path / "store")
    waiting = sent_entry(store, task_id="task-w")  # no bill yet
    billed = sent_entry(store, task_id="task-b", prompt="a billed fox")
    store.save_image(billed.entry_id, image(0))  # saved, then billed: all its images were in the directory
    store.set_billed(billed.entry_id, 1)
    assert store.entry(billed.entry_id).state is EntryState.SUBMITTED
    shutil.rmtree(tmp_path / "store")
    back = {e.task_id: e for e in store.unfinished(now=T0)}
    assert (back["task-w"].state, back["task-w"].saved_images) == (EntryState.SUBMITTED, 0)
    # Its image went with the directory: billed, none saved, so resume fetches it again.
    assert (back["task-b"].state, back["task-b"].billed_images, back["task-b"].saved_images) == (
        EntryState.COLLECTING, 1, 0)
    assert back["task-b"].sent == billed.given.replace(seed=42)  # the request as sent, seed and all


def test_an_entry_recorded_with_its_request_as_sent_keeps_it(tmp_path):
    store = Store(tmp_path)
    entry = new_entry(seed=None)
    sent = entry.given.replace(seed=11)
    store.record(replace(entry, sent=sent))
    assert store.entry(entry.entry_id).sent == sent


def test_an_entry_never_recorded_is_a_clear_error(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(StoreError) as info:
        store.update_status("no-such-entry", "RUNNING")
    assert (info.value.problem, info.value.remedy) == (
        "no journal entry 'no-such-entry'", "record() the entry before updating it")


def test_a_store_whose_directory_cannot_be_made_says_where_else_to_go(tmp_path):
    (tmp_path / "file").write_text("x")
    store = Store(tmp_path / "file" / "store")
    with pytest.raises(StoreError) as info:
        store.history()
    assert (info.value.problem, info.value.remedy) == (
        f"cannot create {store.images_dir} (Not a directory)",
        "choose a writable directory (Session(store=...) or WANX_NB_STORE)")


def test_the_default_store_is_wanx_store_in_the_working_directory():
    assert str(Store().root) == "wanx_store"  # nothing is created until it is used
