"""The store's connection and pre-flight check (`_store_db`): what `check()` says for each way a store can
be unfit for a paid run, what an index that cannot be opened says, and what comes back when the store
directory is deleted under a running session."""

from __future__ import annotations

import re
import shutil
import sqlite3
import struct
from contextlib import closing
from dataclasses import replace

import pytest

from wanx_nb._exceptions import StoreError
from wanx_nb._journal import EntryState
from wanx_nb._store import Store

from test_journal import T0, image, new_entry, sent_entry
from test_store_faults import on_a_small_disk
from test_store_repair import v1_store, v1_task


def rebuild_hint(root) -> str:
    return f"run `wanx-nb store rebuild {root}` (or `Store({str(root)!r}).rebuild()`) to rebuild it from the images' provenance"


def store_under_a_file(tmp_path) -> Store:
    """A store whose directory cannot exist: its parent is a file."""
    (tmp_path / "file").write_text("x")
    return Store(tmp_path / "file" / "store")


def test_check_names_a_directory_it_cannot_write_in(tmp_path):
    store = store_under_a_file(tmp_path)
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
    store = store_under_a_file(tmp_path)
    assert store.history() == []  # reading finds nothing there; the first write says why it cannot be
    with pytest.raises(StoreError) as info:
        store.record(new_entry("a fox"))
    assert (info.value.problem, info.value.remedy) == (
        f"cannot create {store.images_dir} (Not a directory)",
        "choose a writable directory (Session(store=...) or WANX_NB_STORE)")


def test_the_default_store_is_wanx_store_in_the_working_directory():
    assert str(Store().root) == "wanx_store"  # nothing is created until it is used


def test_check_passes_with_exactly_the_space_needed_and_refuses_one_byte_more(tmp_path):
    script = """
        root = sys.argv[3]
        os.makedirs(os.path.join(root, "images"))
        store, free = Store(root), shutil.disk_usage(root).free  # a disk of its own: nothing else writes there
        short = outcome(lambda: store.check(min_free_bytes=free + 1))
        print(json.dumps({"free": free, "short": short, "exact": outcome(lambda: store.check(min_free_bytes=free))}))
    """
    seen = on_a_small_disk(tmp_path / "store", "2m", script, str(tmp_path / "store"))
    assert seen["free"] == 2 << 20  # the empty 2 MiB disk
    assert seen["short"] == ["only 2.0 MiB free on its disk (at least 2 MiB needed)",
                             "free some space or use another store; nothing was sent"]
    assert seen["exact"] == "ok"
    Store(tmp_path / "store").check(min_free_bytes=shutil.disk_usage(tmp_path).free // 2)  # the real disk has room


def test_a_second_kernel_opens_and_reads_the_store_while_another_one_writes(tmp_path):
    # Opening a current index takes no write lock and does not re-index the images: a kernel starting up
    # (or `wanx-nb history`) is not held up for up to 30 s by another one's write.
    writer = Store(tmp_path / "store")
    entry = sent_entry(writer)
    writer.save_image(entry.entry_id, image(0))
    with writer._write():  # the other kernel, mid-write: it holds the index's write lock
        reader = Store(tmp_path / "store")
        assert [row.task_id for row in reader.history()] == ["task-1"]
        assert reader.entry(entry.entry_id).saved_images == 1


def test_an_index_that_lost_its_schema_version_opens_with_its_entries_and_is_stamped_current(tmp_path):
    store = Store(tmp_path / "store")
    entry = sent_entry(store)
    store.close()
    db = tmp_path / "store" / "index.sqlite"
    with closing(sqlite3.connect(db)) as raw:
        raw.execute("DELETE FROM meta WHERE key='schema_version'")  # a hand-edited or half-copied index
        raw.commit()
    assert Store(tmp_path / "store").entry(entry.entry_id).task_id == "task-1"
    with closing(sqlite3.connect(db)) as raw:
        assert raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)


def test_a_v1_index_the_migration_cannot_read_is_left_as_it_was_and_named_damaged(tmp_path):
    root = tmp_path / "v1"
    v1_store(root, [v1_task("ok-1", "SUCCEEDED")])
    db = root / "index.sqlite"
    with closing(sqlite3.connect(db)) as raw:
        raw.execute("DROP TABLE images")  # v1's second table lost: the migration stops half-way
        raw.commit()
    with pytest.raises(StoreError) as info:
        Store(root).history()
    assert (info.value.problem, info.value.remedy) == ("the index is damaged (no such table: images)", rebuild_hint(root))
    with closing(sqlite3.connect(db)) as raw:  # rolled back: nothing half-migrated, the v1 rows still there
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert (tables, raw.execute("SELECT task_id FROM tasks").fetchall()) == ({"tasks"}, [("ok-1",)])
    report = Store(root).rebuild()  # the way out it names
    assert report.moved_aside and Store(root).integrity().quick_check == "ok"


def test_a_busy_index_says_another_process_holds_it_and_to_try_again(tmp_path):
    # SQLite gives up after the 30 s busy timeout; what the user then reads, word for word.
    store = Store(tmp_path / "store")
    err = store._db_error(sqlite3.OperationalError("database is locked"))
    assert str(err) == (f"store {tmp_path / 'store'}: the index is busy (database is locked); another process holds it;"
                        " try again in a moment")  # fmt: skip


def test_a_store_shows_as_its_directory(tmp_path):
    assert repr(Store(tmp_path / "store")) == f"<Store {str(tmp_path / 'store')!r}>"


def test_a_store_a_newer_wanx_nb_wrote_is_refused_and_left_as_it_was(tmp_path):
    """Kernels share stores; one may run a newer wanx_nb. Stamping its index back to this version's format
    would break that one: opening says what to do instead and changes nothing."""
    Store(tmp_path).history()
    with closing(sqlite3.connect(tmp_path / "index.sqlite")) as db:
        db.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
        db.commit()
    with pytest.raises(StoreError) as caught:
        Store(tmp_path).history()
    assert (caught.value.problem, caught.value.remedy) == (
        "the index was written by a newer wanx_nb (store format 3; this version reads up to 2)",
        "upgrade wanx_nb where you opened it (pip install -U wanx_nb), then restart the kernel; the store is left "
        "as it was",
    )
    with closing(sqlite3.connect(tmp_path / "index.sqlite")) as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("3",)


def test_a_store_opens_while_another_kernel_is_creating_it(tmp_path):
    """Two kernels opening a new store at once: SQLite refuses the switch to WAL mode at once ("database is
    locked", its busy timeout not applied) while the other holds a lock; the open waits for it instead."""
    import threading

    tmp_path.mkdir(exist_ok=True)
    other = sqlite3.connect(tmp_path / "index.sqlite", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # the other kernel, mid-creation of a new index (not in WAL mode yet)
    other.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    released = threading.Timer(0.3, lambda: (other.execute("COMMIT"), other.close()))
    released.start()
    try:
        assert Store(tmp_path).history() == []
    finally:
        released.join()
    with closing(sqlite3.connect(tmp_path / "index.sqlite")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
