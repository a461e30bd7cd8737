"""Keeping a store sound: migrating the previous schema, rebuilding the index from the PNGs, checking it.

Every saved PNG carries its entry in its provenance chunk (entry id, service, task id, the request as
given and as sent, the bill), so the index can always be rebuilt from the images alone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ._exceptions import StoreError
from ._journal import SCHEMA_VERSION, EntryState, create_schema, replay_key, search_text, utc_iso
from ._png import read_file_provenance
from ._provenance import Provenance
from ._registry import get_model
from ._sqlite import foreign_tables
from ._store_read import read_stored_image, stored_path

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["REBUILD_HINT", "RebuildReport", "StoreReport", "index_version", "integrity", "migrate_v1",
           "populate_from_pngs", "rebuild"]  # fmt: skip

REBUILD_HINT = "run `wanx-nb store rebuild {root}` (or `Store({root!r}).rebuild()`) to rebuild it from the images' provenance"

_V1_STATES = {"SUCCEEDED": EntryState.DONE, "FAILED": EntryState.FAILED, "CANCELED": EntryState.CANCELED,
              "UNKNOWN": EntryState.GONE}  # fmt: skip  (anything else was still on its way: SUBMITTED)


@dataclass(frozen=True)
class RebuildReport:
    """What `Store.rebuild()` did."""

    moved_aside: str | None  # where the previous index went (None when there was none)
    entries: int  # entries in the new index
    images: int  # image files indexed
    salvaged: int  # entries read back from the previous index (0 when it could not be read)
    unreadable: list[str] = field(default_factory=list)  # PNG files without readable provenance

    def text(self) -> str:
        lines = [f"rebuilt the index: {self.entries} entries, {self.images} images"
                 + (f" ({self.salvaged} entries read back from the old index)" if self.salvaged else "")]  # fmt: skip
        if self.moved_aside:
            lines.append(f"the previous index is kept as {self.moved_aside}")
        lines += [f"no provenance (not indexed): {p}" for p in self.unreadable]
        return "\n".join(lines)


@dataclass(frozen=True)
class StoreReport:
    """What `Store.integrity()` found."""

    quick_check: str  # "ok", or what is wrong with the index
    entries: int = 0
    images: int = 0
    unfinished: int = 0
    missing_images: list[str] = field(default_factory=list)  # indexed, not on disk
    corrupt_images: list[str] = field(default_factory=list)  # on disk, but not a sound PNG
    unindexed_files: list[str] = field(default_factory=list)  # on disk, not indexed
    remedy: str | None = None  # what to do when the index was refused rather than found damaged (newer, foreign)

    @property
    def ok(self) -> bool:
        return self.quick_check == "ok" and not (self.missing_images or self.corrupt_images or self.unindexed_files)

    def text(self) -> str:
        if self.remedy is not None:  # not read at all: counting, listing or rebuilding would mislead
            return f"index: {self.quick_check}\nfix: {self.remedy}"
        lines = [f"index: {self.quick_check}; {self.entries} entries, {self.images} images,"
                 f" {self.unfinished} unfinished (recover with `wanx-nb resume`)"]  # fmt: skip
        lines += [f"missing on disk: {p}" for p in self.missing_images]
        lines += [f"damaged file: {p}" for p in self.corrupt_images]
        lines += [f"not indexed: {p}" for p in self.unindexed_files]
        if self.quick_check != "ok" or self.unindexed_files:
            lines.append("fix: `wanx-nb store rebuild DIR` rebuilds the index from the images' provenance")
        return "\n".join(lines)


def _price(model: str) -> float:
    try:
        return get_model(model).price_yuan
    except KeyError:
        return 0.0


# ---- what an index is ----------------------------------------------------------------------------

# The columns that make a table of these names ours (v1: `tasks` and `images` keyed by task id).
_OURS = {"meta": {"key", "value"}, "entries": {"entry_id", "state", "replay_key", "given_json"},
         "images": {"entry_id", "idx"}}  # fmt: skip
_OURS_V1 = {"tasks": {"task_id", "replay_key", "given_json", "submitted_at"}, "images": {"task_id", "idx"}}


def index_version(conn: sqlite3.Connection, root: str, db_path: Path) -> int | None:
    """The schema version of the index open on `conn` (read only): SCHEMA_VERSION, or None for one to create
    or migrate (no tables yet, v1, its version row lost). StoreError for one to leave as it is (a newer
    wanx_nb's, or not wanx_nb's at all); sqlite3.DatabaseError for a damaged one (its version no number,
    its journal table not as this version writes it: a rebuild is the way out)."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.OperationalError:  # no meta table: a new, a v1, or a foreign index
        row = None
    if row is not None:
        try:
            version = int(row[0])
        except (TypeError, ValueError):
            raise sqlite3.DatabaseError(f"its schema version {row[0]!r} is not a number") from None
        if version > SCHEMA_VERSION:  # another kernel's newer wanx_nb wrote it: stamping it back would break that one
            raise StoreError(
                root, f"the index was written by a newer wanx_nb (store format {version}; this version reads up "
                f"to {SCHEMA_VERSION})", "upgrade wanx_nb where you opened it (pip install -U wanx_nb), then restart "
                "the kernel; the store is left as it was",
            )  # fmt: skip
        if version == SCHEMA_VERSION:
            return version
    foreign = min(foreign_tables(conn, _OURS), foreign_tables(conn, _OURS_V1), key=len)  # ours: all v2's or all v1's
    if foreign:
        listed = f"table{'s' if len(foreign) > 1 else ''} {', '.join(foreign)}"
        if conn.execute("SELECT 1 FROM pragma_table_info('entries') WHERE name='entry_id' UNION ALL"
                        " SELECT 1 FROM pragma_table_info('tasks') WHERE name='task_id'").fetchone():
            raise sqlite3.DatabaseError(f"{listed} not as wanx_nb writes them")  # a journal of another shape
        raise StoreError(
            root, f"{db_path} is not a wanx_nb index (it holds {listed})", "move that file out of the store "
            "directory, or use another store (Session(store=...) or WANX_NB_STORE); it is left as it was",
        )  # fmt: skip
    return None


# ---- the previous schema -------------------------------------------------------------------------


def migrate_v1(conn: sqlite3.Connection) -> None:
    """Migrate tables `tasks`/`images` (keyed by task id alone) in place, inside the caller's transaction.

    Migrated, not rebuilt: v1 rows hold what PNGs cannot (failed tasks, tasks never saved). A v1 task
    still SUBMITTED (or left RUNNING by a poll error) becomes SUBMITTED, so resume now finds it.
    """
    conn.execute("ALTER TABLE tasks RENAME TO v1_tasks")
    conn.execute("ALTER TABLE images RENAME TO v1_images")
    conn.execute("DROP INDEX IF EXISTS tasks_replay")
    create_schema(conn)
    for t in conn.execute("SELECT * FROM v1_tasks ORDER BY rowid").fetchall():
        entry_id = uuid.uuid4().hex
        images = conn.execute("SELECT * FROM v1_images WHERE task_id=? ORDER BY idx", (t["task_id"],)).fetchall()
        saved = sum(1 for i in images if i["path"])
        billed = int(t["image_count"] or 0)
        state = _V1_STATES.get(t["status"], EntryState.SUBMITTED)
        if state is EntryState.DONE and saved < billed:
            state = EntryState.COLLECTING
        first = next((i for i in images if i["path"]), None)
        price = (t["cost_yuan"] / billed) if billed else _price(t["model"])
        conn.execute(
            "INSERT INTO entries (entry_id, run_id, service, backend, mode, state, model, prompt, replay_key, given_json,"
            " sent_json, task_id, status, created_at, sent_at, finished_at, request_id, code, message, billed_images,"
            " saved_images, price_yuan, result_json, actual_prompt, search_text, thumbnail)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (entry_id, "v1", "emulator" if t["backend"] == "emulator" else "dashscope", t["backend"], t["mode"],
             state.value, t["model"], t["prompt"], t["replay_key"], t["given_json"], t["request_json"], t["task_id"],
             None if t["status"] == "SUBMITTED" else t["status"], t["submitted_at"], t["submitted_at"],
             t["finished_at"], t["request_id"], t["code"], t["message"], billed, saved, price, t["result_json"],
             first["actual_prompt"] if first else None,
             search_text(t["prompt"], *(i["actual_prompt"] for i in images)), first["path"] if first else None),
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO images (entry_id, idx, sha256, path, seed, size, url, orig_prompt, actual_prompt, code, message)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [(entry_id, i["idx"], i["sha256"], i["path"], i["seed"], i["size"], i["url"], i["orig_prompt"],
              i["actual_prompt"], i["code"], i["message"]) for i in images],
        )  # fmt: skip
    conn.execute("DROP TABLE v1_images")
    conn.execute("DROP TABLE v1_tasks")


# ---- rebuilding from the PNGs -------------------------------------------------------------------


def _group_key(record: Provenance) -> str:
    if record.entry_id:
        return record.entry_id
    # A v1 chunk: one entry per (backend, task id).
    return f"v1:{record.backend}:{record.task_id}"


def populate_from_pngs(conn: sqlite3.Connection, images_dir: Path) -> tuple[int, int, list[str]]:
    """Index every PNG by its provenance chunk: (entries added, images indexed, files without provenance).

    An entry already in the index only gains the image rows it lacks; a new one comes back DONE.
    """
    groups: dict[str, list[tuple[str, Provenance]]] = {}
    unreadable = []
    for png in sorted(images_dir.glob("*.png")):
        try:
            chunk = read_file_provenance(str(png))
            record = Provenance.from_dict(chunk) if chunk else None
        except (OSError, ValueError, KeyError, TypeError):
            record = None
        if record is None or len(record.images) != 1:
            unreadable.append(str(png))
            continue
        groups.setdefault(_group_key(record), []).append((str(png), record))
    added = indexed = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        for key, files in groups.items():
            entry_id = key if not key.startswith("v1:") else uuid.uuid5(uuid.NAMESPACE_URL, key).hex
            conn.execute("SAVEPOINT entry")
            try:
                if conn.execute("SELECT 1 FROM entries WHERE entry_id=?", (entry_id,)).fetchone() is None:
                    _insert_rebuilt(conn, entry_id, files)
                    added += 1
                for path, record in files:
                    indexed += conn.execute(
                        "INSERT OR IGNORE INTO images (entry_id, idx, sha256, path) VALUES (?,?,?,?)",
                        (entry_id, record.images[0].index, Path(path).stem, path),
                    ).rowcount  # fmt: skip
                conn.execute("UPDATE entries SET saved_images=(SELECT COUNT(*) FROM images WHERE entry_id=? AND"
                             " path IS NOT NULL) WHERE entry_id=?", (entry_id, entry_id))  # fmt: skip
                conn.execute("RELEASE entry")
            except (KeyError, TypeError, ValueError, AttributeError, sqlite3.IntegrityError):
                # A chunk we cannot make sense of (unknown model, wrong types): list its files, go on.
                conn.execute("ROLLBACK TO entry")
                conn.execute("RELEASE entry")
                unreadable += [path for path, _ in files]
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return added, indexed, unreadable


def _insert_rebuilt(conn: sqlite3.Connection, entry_id: str, files: list[tuple[str, Provenance]]) -> None:
    files.sort(key=lambda f: f[1].images[0].index)
    path, first = files[0]
    sent, given = first.sent, first.given
    model = get_model(sent.model).name
    service = first.service or ("emulator" if first.backend == "emulator" else "dashscope")
    created = first.recorded_at or first.created_at or utc_iso()
    billed = max(first.billed_images, len(files))
    price = first.cost_yuan / first.billed_images if first.billed_images and first.cost_yuan else _price(model)
    # The record of the whole request, put back together from its images' chunks.
    record = replace(
        first, images=tuple(f[1].images[0] for f in files), billed_images=billed, status="SUCCEEDED",
        cost_yuan=round(price * billed, 4), service=None, entry_id=None, run_id=None, mode=None, recorded_at=None,
        replayed=False,
    )  # fmt: skip
    taken = conn.execute("SELECT 1 FROM entries WHERE service=? AND task_id=?", (service, first.task_id)).fetchone()
    if taken:
        service = f"{service}/dup-{entry_id[:8]}"  # the same id recorded twice (emulators before unique ids)
    actual = [f[1].images[0].actual_prompt for f in files]
    conn.execute(
        "INSERT INTO entries (entry_id, run_id, service, backend, mode, state, model, prompt, replay_key, given_json,"
        " sent_json, task_id, status, created_at, sent_at, finished_at, request_id, billed_images, saved_images,"
        " price_yuan, result_json, actual_prompt, search_text, thumbnail)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (entry_id, first.run_id or "rebuilt", service, first.backend, first.mode or "live",
         EntryState.DONE.value if len(files) >= billed else EntryState.COLLECTING.value, model, given.prompt,
         replay_key(given), json.dumps(given.to_dict(), ensure_ascii=False),
         json.dumps(sent.to_dict(), ensure_ascii=False), first.task_id, "SUCCEEDED", created, created, created,
         first.request_id, billed, 0, float(price), record.to_json(), next((a for a in actual if a), None),
         search_text(given.prompt, *actual), path),
    )  # fmt: skip


def _salvage(conn: sqlite3.Connection, old: Path) -> int:
    """Copy what can still be read from the previous index (all or nothing); the number of entries."""
    if not old.exists():
        return 0
    migrated = _migrated_v1_copy(old)
    try:
        return _copy_rows(conn, migrated or old)
    finally:
        if migrated is not None:
            migrated.unlink(missing_ok=True)


def _migrated_v1_copy(old: Path) -> Path | None:
    """A v1 index (never opened by this version) copied and migrated, so a rebuild keeps its rows: they
    hold what no PNG does, such as a task sent and never saved that resume must still collect. None for
    an index of any other shape (or an unreadable one: the rebuild then goes by the PNGs alone)."""
    copy = old.with_name(f"{old.name}.v1-migrating-{os.getpid()}")
    try:
        with contextlib.closing(sqlite3.connect(old)) as source:
            tables = {r[0] for r in source.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "tasks" not in tables or "entries" in tables:
                return None
            with contextlib.closing(sqlite3.connect(copy, isolation_level=None)) as target:
                source.backup(target)
                target.row_factory = sqlite3.Row
                target.execute("BEGIN IMMEDIATE")
                migrate_v1(target)
                target.execute("COMMIT")
    except sqlite3.Error:
        copy.unlink(missing_ok=True)
        return None
    return copy


def _copy_rows(conn: sqlite3.Connection, old: Path) -> int:
    try:
        conn.execute("ATTACH DATABASE ? AS old", (str(old),))
    except sqlite3.Error:
        return 0
    try:
        conn.execute("BEGIN IMMEDIATE")
        count = conn.execute("INSERT OR IGNORE INTO main.entries SELECT * FROM old.entries").rowcount
        conn.execute("INSERT OR IGNORE INTO main.images SELECT * FROM old.images")
        conn.execute("COMMIT")
    except sqlite3.Error:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        count = 0
    try:
        conn.execute("DETACH DATABASE old")
    except sqlite3.Error:
        pass
    return max(count, 0)


def rebuild(root: Path, images_dir: Path, db_path: Path) -> RebuildReport:
    """Build a new index beside the old one, move the old one aside, put the new one in place.
    StoreError, nothing touched, for an index a newer wanx_nb wrote or one that is not wanx_nb's."""
    _refuse_what_is_not_ours(root, db_path)
    images_dir.mkdir(parents=True, exist_ok=True)
    tmp = root / f"index.sqlite.rebuild-{os.getpid()}"
    for leftover in (tmp, Path(f"{tmp}-journal")):
        leftover.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp, isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("BEGIN IMMEDIATE")
        create_schema(conn)
        conn.execute("COMMIT")
        salvaged = _salvage(conn, db_path)
        _added, _indexed, unreadable = populate_from_pngs(conn, images_dir)
        entries = conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        images = conn.execute("SELECT COUNT(*) FROM images WHERE path IS NOT NULL").fetchone()[0]
    except BaseException:
        conn.close()
        # The old index is untouched; a half-built one would only take the space (often a full disk's).
        for leftover in (tmp, Path(f"{tmp}-journal")):
            leftover.unlink(missing_ok=True)
        raise
    conn.close()
    moved = None
    if db_path.exists():
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        moved = root / f"index.sqlite.damaged-{stamp}"
        os.replace(db_path, moved)
        for suffix in ("-wal", "-shm"):  # keep the old index whole, for whoever looks at it later
            side = Path(f"{db_path}{suffix}")
            if side.exists():
                os.replace(side, Path(f"{moved}{suffix}"))
    os.replace(tmp, db_path)
    return RebuildReport(str(moved) if moved else None, entries, images, salvaged, unreadable)


def _refuse_what_is_not_ours(root: Path, db_path: Path) -> None:
    if not db_path.is_file():
        return
    try:
        with contextlib.closing(sqlite3.connect(db_path)) as old:  # only read: the last to close removes its -wal
            index_version(old, str(root), db_path)
    except sqlite3.Error:
        pass  # unreadable, or its version no number: damaged, which is what a rebuild is for


# ---- checking ------------------------------------------------------------------------------------


def integrity(store: Store) -> StoreReport:
    """The index's quick_check, and the files it points at compared with the files on disk."""

    files = {str(p) for p in store.images_dir.glob("*.png")} if store.images_dir.exists() else set()
    try:
        with store._read() as db:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            counts = db.execute("SELECT COUNT(*), COALESCE(SUM(state IN ('sending','outcome_unknown','submitted',"
                                "'collecting')),0) FROM entries").fetchone()  # fmt: skip
            paths = [r[0] for r in db.execute("SELECT DISTINCT path FROM images WHERE path IS NOT NULL")]
    except StoreError as exc:
        if exc.remedy != REBUILD_HINT.format(root=str(store.root)):  # refused (newer, foreign, busy...): say its way out
            return StoreReport(quick_check=exc.problem, remedy=exc.remedy)
        return StoreReport(quick_check=exc.problem, unindexed_files=sorted(files))
    indexed = {s for s in (stored_path(store.images_dir, p) for p in paths) if s is not None}
    missing = sorted(p for p in indexed if p not in files)
    corrupt = sorted(p for p in indexed & files if read_stored_image(p)[0] is None)
    return StoreReport(
        quick_check=verdict, entries=counts[0], images=len(indexed), unfinished=counts[1], missing_images=missing,
        corrupt_images=corrupt, unindexed_files=sorted(files - indexed),
    )  # fmt: skip
