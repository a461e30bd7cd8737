"""The store's SQLite connection: opened per process, recreated when the store is deleted, checked before paying.

Several processes may share one store: WAL mode, a busy timeout, short `BEGIN IMMEDIATE` transactions for
every read-modify-write. Every sqlite3 error leaving here is a StoreError that says what to do.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._exceptions import StoreError
from ._journal import SCHEMA_VERSION, EntryState, JournalEntry, create_schema, replay_key, request_json, search_text, utc_iso
from ._registry import get_model
from ._sqlite import enter_wal
from ._store_repair import REBUILD_HINT, index_version, migrate_v1, populate_from_pngs

__all__ = ["REBUILD_HINT", "StoreConnection", "StoreFailure", "disk_refused"]

_CHECK_CACHE_SECONDS = 5.0  # quick_check reads the whole index; once per few seconds per process is enough


def disk_refused(exc: sqlite3.Error) -> bool:
    """Whether SQLite failed because the disk refused a write. It says "disk I/O error" for a write
    refused for want of room (full, quota, file size limit) as well as "database or disk is full"."""
    text = str(exc)
    return "full" in text or "disk I/O error" in text


class StoreFailure(StoreError):
    """The store itself failed (the disk, a lock, permissions, a damaged index), not a rule of the journal:
    a run that meets one sends nothing more into that store."""


class StoreConnection:
    """One store directory's index connection (thread-safe) and its pre-flight check."""

    def __init__(self, root: str | os.PathLike[str] = "wanx_store") -> None:
        self.root = Path(root)
        self.images_dir = self.root / "images"
        self.db_path = self.root / "index.sqlite"
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the index we opened
        self._lost = False  # the index we had went away (replaced, or found damaged) since we last opened one
        self._checked_at: float | None = None
        # Unfinished entries this object wrote: written again if the store is deleted under us.
        self._mine: dict[str, JournalEntry] = {}

    def __repr__(self) -> str:
        return f"<Store {str(self.root)!r}>"

    # ---- connection ------------------------------------------------------------------------------

    def _error(self, problem: str, remedy: str) -> StoreError:
        return StoreError(str(self.root), problem, remedy)

    def _failure(self, problem: str, remedy: str) -> StoreFailure:
        return StoreFailure(str(self.root), problem, remedy)

    def _db_error(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return self._failure(f"the index is busy ({text})", "another process holds it; try again in a moment")
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            return self._failure(
                f"cannot write the index {self.db_path} ({text})",
                "make the directory writable or use another store (Session(store=...) or WANX_NB_STORE)",
            )
        if disk_refused(exc):
            return self._failure(
                f"could not write the index ({text}): is the disk full?",
                "free some space, then run `%wanx resume` (or `wanx-nb resume`); if the index then reads as damaged, "
                "`wanx-nb store rebuild` restores it from the images",
            )
        return self._failure(f"the index is damaged ({text})", REBUILD_HINT.format(root=str(self.root)))

    def _current_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.db_path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def _connect(self) -> sqlite3.Connection:
        """The open connection; reopened (and the store recreated) when the index file was deleted or replaced."""
        if self._conn is not None and self._current_identity() != self._identity:
            self._conn.close()
            self._conn, self._lost = None, True
        if self._conn is None:
            try:
                conn = self._open()
            except BaseException:  # an index we had cannot be opened now (damaged, replaced): it was lost
                self._lost = self._lost or self._identity is not None
                raise
            # Another index than the one we had (deleted, replaced, rebuilt; or one we lost, whose file's
            # number the new one may reuse): this process's unfinished entries are written again.
            recreated = self._identity is not None and (self._lost or self._current_identity() != self._identity)
            self._conn, self._identity, self._lost = conn, self._current_identity(), False
            if recreated:
                self._restore_mine(conn)
        return self._conn

    def _open(self) -> sqlite3.Connection:
        try:
            self.images_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._failure(
                f"cannot create {self.images_dir} ({exc.strerror or exc})",
                "choose a writable directory (Session(store=...) or WANX_NB_STORE)",
            ) from None
        try:
            conn = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:  # not openable (a directory in its place, no permission): say so
            raise self._db_error(exc) from None
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            # Before anything is written (WAL mode included): a newer wanx_nb's index, or a file that is
            # not an index of ours, is refused as it is.
            version = index_version(conn, str(self.root), self.db_path)
            enter_wal(conn, wait_seconds=30.0)  # as long as the busy timeout above
            conn.execute("PRAGMA synchronous=FULL")  # a recorded entry survives a power cut, not just a crash
            fresh = self._prepare(conn, version)
            if fresh and any(self.images_dir.glob("*.png")):
                populate_from_pngs(conn, self.images_dir)  # an index lost but the images kept: rebuild
        except sqlite3.Error as exc:
            conn.close()
            raise self._db_error(exc) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _prepare(self, conn: sqlite3.Connection, version: int | None) -> bool:
        """Create the schema, migrating a previous one; True when the index had no tables at all."""
        if version == SCHEMA_VERSION:
            return False  # current already: opening takes no write lock
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Again under the write lock: another process may have created (or upgraded) it meanwhile.
            if index_version(conn, str(self.root), self.db_path) == SCHEMA_VERSION:
                conn.execute("COMMIT")
                return False
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "tasks" in tables and "entries" not in tables:
                migrate_v1(conn)  # the previous schema is migrated in place, rows kept (see _store_repair)
            create_schema(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return not tables

    def _restore_mine(self, conn: sqlite3.Connection) -> None:
        # The index was deleted (its images went with it: the entries come back with none saved) or
        # replaced (a rebuild elsewhere, which usually kept them: OR IGNORE, keyed on our own entry ids).
        with self._tx(conn):
            for entry in self._mine.values():
                state = EntryState.COLLECTING if entry.billed_images else entry.state
                self._insert(conn, entry, state=state, saved=0, if_absent=True)

    @contextmanager
    def _tx(self, conn: sqlite3.Connection, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        conn.execute(f"BEGIN {mode}")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short read-modify-write transaction (BEGIN IMMEDIATE: no lost update between processes)."""
        with self._lock:
            conn = self._connect()
            try:
                with self._tx(conn) as db:
                    yield db
            except sqlite3.Error as exc:
                raise self._db_error(exc) from None

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for reads of several statements.

        A store never opened whose directory does not exist reads as empty, and reading does not create
        it (`wanx-nb --store typo history`, a dry run with reuse): its first write does."""
        with self._lock:
            if self._conn is None and self._identity is None and not self.root.exists():
                empty = _empty_index()
                try:
                    yield empty
                finally:
                    empty.close()
                return
            conn = self._connect()
            try:
                with self._tx(conn, "DEFERRED") as db:
                    yield db
            except sqlite3.Error as exc:
                raise self._db_error(exc) from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ---- pre-flight ------------------------------------------------------------------------------

    def check(self, *, min_free_bytes: int = 64 << 20) -> None:
        """Raise StoreError unless the store can take a paid run: writable, index healthy, space left."""
        with self._lock:
            try:
                self.images_dir.mkdir(parents=True, exist_ok=True)
                fd, probe = tempfile.mkstemp(dir=self.images_dir, prefix=".check-")
                try:
                    os.write(fd, b"wanx_nb store check")
                    os.fsync(fd)
                finally:
                    os.close(fd)
                    os.unlink(probe)
            except OSError as exc:
                raise self._error(
                    f"cannot write in {self.images_dir} ({exc.strerror or exc})",
                    "make it writable or use another store (Session(store=...) or WANX_NB_STORE); nothing was sent",
                ) from None
            free = shutil.disk_usage(self.root).free
            if free < min_free_bytes:
                raise self._error(
                    f"only {free / 2**20:.1f} MiB free on its disk (at least {min_free_bytes / 2**20:.0f} MiB needed)",
                    "free some space or use another store; nothing was sent",
                )
            conn = self._connect()
            try:
                if self._checked_at is None or time.monotonic() - self._checked_at > _CHECK_CACHE_SECONDS:
                    verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
                    if verdict != "ok":
                        raise self._error(f"the index is damaged ({verdict})", REBUILD_HINT.format(root=str(self.root)))
                    self._checked_at = time.monotonic()
                with self._tx(conn) as db:  # really write to the index, every time
                    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('checked_at', ?)", (utc_iso(),))
            except sqlite3.Error as exc:
                self._checked_at = None
                raise self._db_error(exc) from None

    def _insert(self, db: sqlite3.Connection, entry: JournalEntry, *, state: EntryState | None = None,
                saved: int | None = None, if_absent: bool = False) -> None:  # fmt: skip
        model = get_model(entry.given.model).name
        db.execute(
            ("INSERT OR IGNORE" if if_absent else "INSERT") + " INTO entries (entry_id, run_id, service, backend, mode, state, model, prompt, replay_key,"
            " given_json, sent_json, task_id, status, created_at, sent_at, finished_at, request_id, code, message,"
            " billed_images, saved_images, price_yuan, search_text) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (entry.entry_id, entry.run_id, entry.service, entry.backend, entry.mode, (state or entry.state).value,
             model, entry.given.prompt, replay_key(entry.given), request_json(entry.given),
             request_json(entry.sent) if entry.sent else None, entry.task_id, entry.status, entry.created_at,
             entry.sent_at, entry.finished_at, entry.request_id, entry.code, entry.message, entry.billed_images,
             entry.saved_images if saved is None else saved, entry.price_yuan, search_text(entry.given.prompt)),
        )  # fmt: skip

    def _row_entry(self, db: sqlite3.Connection, entry_id: str) -> JournalEntry:
        row = db.execute("SELECT * FROM entries WHERE entry_id=?", (entry_id,)).fetchone()
        if row is None:
            raise self._error(f"no journal entry {entry_id!r}", "record() the entry before updating it")
        return JournalEntry.from_row(row)


def _empty_index() -> sqlite3.Connection:
    """An empty index in memory, with the schema every query expects."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.row_factory = sqlite3.Row
    create_schema(conn)
    return conn
