"""An index.sqlite that is not one this version may use: its schema version is no number (damaged: rebuild
it), a newer wanx_nb wrote it (upgrade: neither check nor rebuild touches it), or it is another program's
SQLite file (refused, named, left as it was). What is still opened: a new store, a current index, a v1
index (migrated), an empty file."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from wanx_nb._exceptions import StoreError
from wanx_nb._journal import EntryState
from wanx_nb._store import Store
from wanx_nb.cli import main

from test_journal import image, sent_entry
from test_store_db import rebuild_hint
from test_store_repair import v1_store, v1_task

UPGRADE = ("upgrade wanx_nb where you opened it (pip install -U wanx_nb), then restart the kernel; the store is left "
           "as it was")  # fmt: skip
MOVE_IT = ("move that file out of the store directory, or use another store (Session(store=...) or WANX_NB_STORE);"
           " it is left as it was")  # fmt: skip


@pytest.fixture(autouse=True)
def no_key(monkeypatch):
    """The CLI with no key: the emulator would answer, were anything sent."""
    for name in ("DASHSCOPE_API_KEY", "DASHSCOPE_HTTP_BASE_URL", "WANX_NB_MODE", "WANX_NB_BUDGET_YUAN", "WANX_NB_STORE"):
        monkeypatch.delenv(name, raising=False)


def saved_store(root: Path) -> str:
    """A store with one saved image; its entry id."""
    store = Store(root)
    entry = sent_entry(store)
    store.set_billed(entry.entry_id, 1)
    store.save_image(entry.entry_id, image(0))
    store.finish(entry.entry_id, EntryState.DONE, status="SUCCEEDED")
    store.close()
    return entry.entry_id


def set_version(root: Path, value: str) -> None:
    with closing(sqlite3.connect(root / "index.sqlite")) as db:
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (value,))
        db.commit()


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the store directory (not images/, runs/) and its bytes."""
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file()}


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---- a schema version that is no number ------------------------------------------------------------


def test_a_schema_version_that_is_no_number_is_a_damaged_index_with_the_rebuild_named(tmp_path, capsys):
    root = tmp_path / "store"
    entry_id = saved_store(root)
    set_version(root, "abc")
    problem = "the index is damaged (its schema version 'abc' is not a number)"
    for use in (lambda s: s.history(), lambda s: s.total_cost(), lambda s: s.check()):
        with pytest.raises(StoreError) as info:
            use(Store(root))
        assert (info.value.problem, info.value.remedy) == (problem, rebuild_hint(root))
    for command in ("history", "cost", "show", "generate"):
        code, out, err = cli(capsys, "--store", str(root), command, *(["task-1"] if command == "show" else []),
                             *(["a fox"] if command == "generate" else []))  # fmt: skip
        assert code != 0 and f"store {root}: {problem}" in err, (command, err)
        assert "Traceback" not in err and "--since" not in err and "ISO 8601" not in err
    code, out, _ = cli(capsys, "store", "check", str(root))
    assert code == 1 and out.splitlines()[0].startswith(f"index: {problem};")
    assert out.splitlines()[-1] == "fix: `wanx-nb store rebuild DIR` rebuilds the index from the images' provenance"
    assert cli(capsys, "store", "rebuild", str(root))[0] == 0  # the way out it names: nothing lost
    assert Store(root).entry(entry_id).state is EntryState.DONE and Store(root).integrity().ok


# ---- a store a newer wanx_nb wrote -----------------------------------------------------------------


def test_store_check_of_a_newer_store_says_to_upgrade_not_to_rebuild(tmp_path, capsys):
    root = tmp_path / "store"
    saved_store(root)
    set_version(root, "99")
    before = snapshot(root)
    report = Store(root).integrity()
    problem = "the index was written by a newer wanx_nb (store format 99; this version reads up to 2)"
    assert not report.ok and report.text() == f"index: {problem}\nfix: {UPGRADE}"
    code, out, err = cli(capsys, "store", "check", str(root))
    assert code == 1 and out == f"index: {problem}\nfix: {UPGRADE}\n" and "rebuild" not in out + err
    assert snapshot(root) == before


def test_rebuild_refuses_a_newer_store_and_leaves_it_as_it_was(tmp_path, capsys):
    root = tmp_path / "store"
    entry_id = saved_store(root)
    set_version(root, "99")
    before = snapshot(root)
    for use in (lambda s: s.rebuild(), lambda s: s.history()):
        with pytest.raises(StoreError) as info:
            use(Store(root))
        assert info.value.problem.startswith("the index was written by a newer wanx_nb (store format 99")
        assert info.value.remedy == UPGRADE and info.value.root == str(root)  # which store, in every message
    code, out, err = cli(capsys, "--store", str(root), "store", "rebuild")
    assert code != 0 and "newer wanx_nb" in err and "rebuilt" not in out and "Traceback" not in err
    assert snapshot(root) == before  # not moved aside, not downgraded
    with closing(sqlite3.connect(root / "index.sqlite")) as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("99",)
        assert db.execute("SELECT entry_id FROM entries").fetchall() == [(entry_id,)]


# ---- another program's SQLite file -------------------------------------------------------------------


def foreign_index(root: Path, schema: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    db = root / "index.sqlite"
    with closing(sqlite3.connect(db)) as raw:
        raw.executescript(schema)
    return db


def test_another_programs_sqlite_file_is_refused_by_name_and_left_as_it_was(tmp_path, capsys):
    root = tmp_path / "store"
    db = foreign_index(root, "CREATE TABLE foo (x); INSERT INTO foo VALUES (1);")
    before = snapshot(root)
    problem = f"{db} is not a wanx_nb index (it holds table foo)"
    for use in (lambda s: s.history(), lambda s: s.check(), lambda s: s.rebuild()):
        with pytest.raises(StoreError) as info:
            use(Store(root))
        assert (info.value.root, info.value.problem, info.value.remedy) == (str(root), problem, MOVE_IT)
    assert Store(root).integrity().text() == f"index: {problem}\nfix: {MOVE_IT}"
    code, out, err = cli(capsys, "--store", str(root), "generate", "a fox")
    assert code != 0 and problem in err and "Traceback" not in err and "wrote" not in out
    assert cli(capsys, "store", "check", str(root))[0] == 1
    assert cli(capsys, "store", "rebuild", str(root))[0] != 0
    assert snapshot(root) == before  # no tables added, not switched to WAL, not moved aside
    with closing(sqlite3.connect(db)) as raw:
        assert raw.execute("SELECT name FROM sqlite_master").fetchall() == [("foo",)]
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_a_foreign_tasks_or_meta_table_is_not_taken_for_a_wanx_nb_index(tmp_path):
    """Common table names: a to-do list's `tasks` is not a v1 index to migrate, a key/value `meta` beside
    other tables not a current index that lost its tables."""
    for name, schema, listed in [
        ("todo", "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT); INSERT INTO tasks VALUES (1, 'milk');",
         "table tasks"),
        ("kv", "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT); CREATE TABLE notes (body TEXT);", "table notes"),
        ("mixed", "CREATE TABLE images (path TEXT); CREATE TABLE albums (name TEXT);", "tables albums, images"),
    ]:  # fmt: skip
        db = foreign_index(tmp_path / name, schema)
        before = snapshot(tmp_path / name)
        with pytest.raises(StoreError) as info:
            Store(tmp_path / name).history()
        assert info.value.problem == f"{db} is not a wanx_nb index (it holds {listed})"
        assert snapshot(tmp_path / name) == before


def test_a_journal_of_another_shape_is_named_damaged_and_left_for_the_rebuild(tmp_path):
    root = tmp_path / "store"
    db = foreign_index(root, "CREATE TABLE entries (entry_id TEXT, note TEXT); INSERT INTO entries VALUES ('e', 'n');")
    before = snapshot(root)
    with pytest.raises(StoreError) as info:
        Store(root).history()
    assert (info.value.problem, info.value.remedy) == (
        "the index is damaged (table entries not as wanx_nb writes them)", rebuild_hint(root))
    assert snapshot(root) == before
    report = Store(root).rebuild()  # the old file is kept aside, whole
    assert report.moved_aside and Path(report.moved_aside).read_bytes() == before["index.sqlite"] and db.exists()


# ---- what is still opened ----------------------------------------------------------------------------


def test_a_new_store_an_empty_file_a_current_and_a_v1_index_all_open(tmp_path):
    assert Store(tmp_path / "new").history() == []
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "index.sqlite").touch()  # an index created and never written
    assert Store(tmp_path / "empty").history() == []
    entry_id = saved_store(tmp_path / "current")
    assert Store(tmp_path / "current").entry(entry_id).state is EntryState.DONE
    v1 = v1_store(tmp_path / "v1", [v1_task("ok-1", "SUCCEEDED")])
    assert v1.find_task("ok-1") is not None
    with closing(sqlite3.connect(tmp_path / "v1" / "index.sqlite")) as raw:
        assert raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)
