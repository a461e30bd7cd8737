"""The local store: the run journal in SQLite, and every image as a content-named PNG with its provenance.

Layout of a store directory:
    images/<sha256 of the served PNG>.png   the served bytes plus one iTXt "wanx_nb" provenance chunk
    index.sqlite                            the journal (entries) and the saved images (WAL mode)

Every request is an entry recorded before anything is sent (see `_journal`). Several processes may share
one store: WAL mode, a busy timeout, short `BEGIN IMMEDIATE` transactions, and rows only ever written by
their own entry (identity of a task is (service, task_id)). A store deleted under a running session is
recreated and this process's unfinished entries are written again. Nothing here holds the API key.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._exceptions import StoreError, TaskCanceledError, TaskError, TaskFailedError, TaskUnknownError
from ._journal import (
    UNFINISHED_STATES,
    EntryState,
    JournalEntry,
    as_utc_iso,
    create_schema,
    replay_key,
    request_json,
    search_text,
    utc_iso,
)
from ._models import GenerationResult, ImageResult
from ._png import add_provenance, read_provenance
from ._registry import get_model
from ._request import GenerationRequest
from ._store_legacy import LegacyStoreMixin, UnfinishedTask
from ._store_read import HistoryRow, read_stored_image, result_from_rows, stored_path
from ._store_repair import RebuildReport, StoreReport, integrity, migrate_v1, populate_from_pngs, rebuild
from ._version import __version__

__all__ = [
    "EntryState",
    "HistoryRow",
    "JournalEntry",
    "RebuildReport",
    "Store",
    "StoreReport",
    "UnfinishedTask",
    "new_entry_id",
    "read_png_provenance",
]

REBUILD_HINT = "run `wanx-nb store rebuild {root}` (or `Store({root!r}).rebuild()`) to rebuild it from the images' provenance"
_CHECK_CACHE_SECONDS = 5.0  # quick_check reads the whole index; once per few seconds per process is enough


def read_png_provenance(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The provenance wanx_nb wrote into a PNG file, or None."""
    return read_provenance(Path(path).read_bytes())


class Store(LegacyStoreMixin):
    """The journal and the images of one store directory. Safe across threads and processes."""

    def __init__(self, root: str | os.PathLike[str] = "wanx_store") -> None:
        self.root = Path(root)
        self.images_dir = self.root / "images"
        self.db_path = self.root / "index.sqlite"
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the index we opened
        self._checked_at: float | None = None
        # Unfinished entries this object wrote: written again if the store is deleted under us.
        self._mine: dict[str, JournalEntry] = {}

    def __repr__(self) -> str:
        return f"<Store {str(self.root)!r}>"

    # ---- connection ------------------------------------------------------------------------------

    def _error(self, problem: str, remedy: str) -> StoreError:
        return StoreError(str(self.root), problem, remedy)

    def _db_error(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return self._error(f"the index is busy ({text})", "another process holds it; try again in a moment")
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            return self._error(
                f"cannot write the index {self.db_path} ({text})",
                "make the directory writable or use another store (Session(store=...) or WANX_NB_STORE)",
            )
        if "full" in text:
            return self._error(f"the disk is full ({text})", "free some space, then run `wanx-nb resume`")
        return self._error(f"the index is damaged ({text})", REBUILD_HINT.format(root=str(self.root)))

    def _current_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.db_path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def _connect(self) -> sqlite3.Connection:
        """The open connection; reopened (and the store recreated) when the index file was deleted or replaced."""
        recreated = False
        if self._conn is not None and self._current_identity() != self._identity:
            self._conn.close()
            self._conn, recreated = None, True
        if self._conn is None:
            try:
                self.images_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise self._error(
                    f"cannot create {self.images_dir} ({exc.strerror or exc})",
                    "choose a writable directory (Session(store=...) or WANX_NB_STORE)",
                ) from None
            conn = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            try:
                conn.execute("PRAGMA busy_timeout=30000")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")  # a recorded entry survives a power cut, not just a crash
                fresh = self._prepare(conn)
                if fresh and any(self.images_dir.glob("*.png")):
                    populate_from_pngs(conn, self.images_dir)  # an index lost but the images kept: rebuild
            except sqlite3.Error as exc:
                conn.close()
                raise self._db_error(exc) from None
            self._conn, self._identity = conn, self._current_identity()
            if recreated:
                self._restore_mine(conn)
        return self._conn

    @staticmethod
    def _prepare(conn: sqlite3.Connection) -> bool:
        """Create the schema, migrating a previous one; True when the index had no tables at all."""
        conn.execute("BEGIN IMMEDIATE")
        try:
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
        # The directory was deleted: its images went with it, so the entries come back with none saved.
        with self._tx(conn):
            for entry in self._mine.values():
                state = EntryState.COLLECTING if entry.state is EntryState.COLLECTING or entry.billed_images else entry.state
                self._insert(conn, entry, state=state, saved=0)

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
        """A consistent snapshot for reads of several statements."""
        with self._lock:
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

    # ---- the journal: writing ------------------------------------------------------------------

    def _insert(self, db: sqlite3.Connection, entry: JournalEntry, *, state: EntryState | None = None,
                saved: int | None = None) -> None:  # fmt: skip
        model = get_model(entry.given.model).name
        db.execute(
            "INSERT INTO entries (entry_id, run_id, service, backend, mode, state, model, prompt, replay_key,"
            " given_json, sent_json, task_id, status, created_at, sent_at, finished_at, request_id, code, message,"
            " billed_images, saved_images, price_yuan, search_text) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (entry.entry_id, entry.run_id, entry.service, entry.backend, entry.mode, (state or entry.state).value,
             model, entry.given.prompt, self.replay_key(entry.given), request_json(entry.given),
             request_json(entry.sent) if entry.sent else None, entry.task_id, entry.status, entry.created_at,
             entry.sent_at, entry.finished_at, entry.request_id, entry.code, entry.message, entry.billed_images,
             entry.saved_images if saved is None else saved, entry.price_yuan, search_text(entry.given.prompt)),
        )  # fmt: skip

    def _remember(self, db: sqlite3.Connection, entry_id: str) -> JournalEntry:
        entry = self._row_entry(db, entry_id)
        if entry.state.is_final:
            self._mine.pop(entry_id, None)
        else:
            self._mine[entry_id] = entry
        return entry

    def _row_entry(self, db: sqlite3.Connection, entry_id: str) -> JournalEntry:
        row = db.execute("SELECT * FROM entries WHERE entry_id=?", (entry_id,)).fetchone()
        if row is None:
            raise self._error(f"no journal entry {entry_id!r}", "record() the entry before updating it")
        return JournalEntry.from_row(row)

    @contextmanager
    def _update(self, entry_id: str, *, allow_final: bool = False) -> Iterator[tuple[sqlite3.Connection, JournalEntry]]:
        """Read-modify-write one entry; refuses to move a final entry unless allowed."""
        with self._write() as db:
            entry = self._row_entry(db, entry_id)
            if entry.state.is_final and not allow_final:
                raise self._error(f"entry {entry_id} is already final ({entry.state.value})", "it cannot change again")
            yield db, entry
            self._remember(db, entry_id)

    def record(self, entry: JournalEntry) -> None:
        """Write a new entry (state QUEUED, before anything is sent), durably."""
        with self._write() as db:
            if db.execute("SELECT 1 FROM entries WHERE entry_id=?", (entry.entry_id,)).fetchone():
                raise self._error(f"entry {entry.entry_id} is already recorded", "make a new entry_id (uuid4 hex)")
            self._check_task_free(db, entry.service, entry.task_id, entry.entry_id)
            self._insert(db, entry)
            self._remember(db, entry.entry_id)

    def mark_sending(self, entry_id: str, sent: GenerationRequest, sent_at: str) -> None:
        with self._update(entry_id) as (db, _):
            db.execute("UPDATE entries SET state=?, sent_json=?, sent_at=? WHERE entry_id=?",
                       (EntryState.SENDING.value, request_json(sent), as_utc_iso(sent_at), entry_id))  # fmt: skip

    def mark_withdrawn(self, entry_id: str) -> None:
        """Final: never sent. Refused once the create may be on the wire (it may be billed)."""
        with self._update(entry_id) as (db, entry):
            if entry.state is not EntryState.QUEUED:
                raise self._error(f"entry {entry_id} is {entry.state.value}, not queued", "only unsent requests can be withdrawn")
            db.execute("UPDATE entries SET state=?, finished_at=? WHERE entry_id=?",
                       (EntryState.WITHDRAWN.value, utc_iso(), entry_id))  # fmt: skip

    def mark_rejected(self, entry_id: str, code: str | None, message: str) -> None:
        with self._update(entry_id) as (db, _):
            db.execute("UPDATE entries SET state=?, code=?, message=?, finished_at=? WHERE entry_id=?",
                       (EntryState.REJECTED.value, code, message, utc_iso(), entry_id))  # fmt: skip

    def mark_outcome_unknown(self, entry_id: str, code: str | None, message: str) -> None:
        with self._update(entry_id) as (db, _):
            db.execute("UPDATE entries SET state=?, code=?, message=? WHERE entry_id=?",
                       (EntryState.OUTCOME_UNKNOWN.value, code, message, entry_id))  # fmt: skip

    def _check_task_free(self, db: sqlite3.Connection, service: str, task_id: str | None, entry_id: str) -> None:
        if task_id is None:
            return
        other = db.execute("SELECT entry_id FROM entries WHERE service=? AND task_id=? AND entry_id<>?",
                           (service, task_id, entry_id)).fetchone()  # fmt: skip
        if other is not None:
            raise self._error(
                f"task {task_id} on {service} is already recorded by entry {other[0]} (not overwritten)",
                "this entry keeps no task id; report the duplicate task id",
            )

    def attach_task(self, entry_id: str, task_id: str, *, status: str, request_id: str | None) -> None:
        """The service returned a task id: state SUBMITTED. (service, task_id) belongs to one entry only."""
        with self._update(entry_id) as (db, entry):
            if entry.task_id not in (None, task_id):
                raise self._error(f"entry {entry_id} already holds task {entry.task_id}", "record a new entry")
            self._check_task_free(db, entry.service, task_id, entry_id)
            state = entry.state if entry.state is EntryState.COLLECTING else EntryState.SUBMITTED
            db.execute("UPDATE entries SET state=?, task_id=?, status=?, request_id=COALESCE(?, request_id),"
                       " sent_at=COALESCE(sent_at, created_at) WHERE entry_id=?",
                       (state.value, task_id, status, request_id, entry_id))  # fmt: skip

    def update_status(self, entry_id: str, status: str) -> None:
        """The last service status seen; never finishes the entry."""
        with self._update(entry_id) as (db, _):
            db.execute("UPDATE entries SET status=? WHERE entry_id=?", (status, entry_id))

    def note_error(self, entry_id: str, code: str | None, message: str) -> None:
        """A client-side error (poll, timeout, interrupt, download): kept for the user, state unchanged."""
        with self._update(entry_id, allow_final=True) as (db, _):
            db.execute("UPDATE entries SET code=?, message=? WHERE entry_id=?", (code, message, entry_id))

    def set_billed(self, entry_id: str, billed_images: int) -> None:
        """What the service billed; the entry is COLLECTING while fewer images are saved."""
        with self._update(entry_id, allow_final=True) as (db, entry):
            state = entry.state
            if not state.is_final and entry.saved_images < billed_images:
                state = EntryState.COLLECTING
            db.execute("UPDATE entries SET billed_images=?, state=? WHERE entry_id=?",
                       (int(billed_images), state.value, entry_id))  # fmt: skip

    def save_image(self, entry_id: str, image: ImageResult, provenance: dict[str, Any]) -> str:
        """Write one served image (with provenance) atomically and record it; idempotent per (entry, index)."""
        if image.data is None:
            raise self._error(f"image {image.index} of entry {entry_id} has no bytes", "download it before saving")
        with self._read() as db:
            entry = self._row_entry(db, entry_id)
            row = db.execute("SELECT path, sha256 FROM images WHERE entry_id=? AND idx=? AND path IS NOT NULL",
                             (entry_id, image.index)).fetchone()  # fmt: skip
        if row is not None:
            done = stored_path(self.images_dir, row["path"])
            if read_stored_image(done)[0] is not None:
                image.path, image.sha256 = done, row["sha256"]
                return done
        sha = hashlib.sha256(image.data).hexdigest()
        path = self.images_dir / f"{sha}.png"
        if read_stored_image(str(path))[0] is None:  # absent (or damaged): write it
            self._write_file(path, self._stamp(image, entry, provenance))
        with self._write() as db:
            inserted = db.execute(
                "INSERT INTO images (entry_id, idx, sha256, path, seed, size, url, orig_prompt, actual_prompt)"
                " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(entry_id, idx) DO UPDATE SET sha256=excluded.sha256,"
                " path=excluded.path, code=NULL, message=NULL WHERE images.path IS NULL",
                (entry_id, image.index, sha, str(path), image.seed, image.size, image.url, image.orig_prompt,
                 image.actual_prompt),
            ).rowcount  # fmt: skip
            if inserted:
                text = db.execute("SELECT search_text FROM entries WHERE entry_id=?", (entry_id,)).fetchone()[0]
                db.execute(
                    "UPDATE entries SET saved_images=saved_images+1, thumbnail=COALESCE(thumbnail, ?),"
                    " actual_prompt=COALESCE(actual_prompt, ?), search_text=? WHERE entry_id=?",
                    (str(path), image.actual_prompt, search_text(*text.split("\n"), image.actual_prompt), entry_id),
                )
                self._remember(db, entry_id)
        image.path, image.sha256 = str(path), sha
        return str(path)

    def _stamp(self, image: ImageResult, entry: JournalEntry, provenance: dict[str, Any]) -> bytes:
        # Everything rebuild() needs to bring the entry back, next to the caller's provenance.
        chunk = {
            **provenance,
            "wanx_nb_version": provenance.get("wanx_nb_version", __version__),
            "entry_id": entry.entry_id, "run_id": entry.run_id, "service": entry.service, "backend": entry.backend,
            "mode": entry.mode, "task_id": entry.task_id, "request_id": entry.request_id, "index": image.index,
            "seed": image.seed, "size": image.size, "orig_prompt": image.orig_prompt or entry.given.prompt,
            "actual_prompt": image.actual_prompt, "given": entry.given.to_dict(), "sent": entry.request.to_dict(),
            "billed_images": entry.billed_images, "price_yuan": entry.price_yuan, "entry_created_at": entry.created_at,
        }  # fmt: skip
        chunk.setdefault("model", entry.request.model)
        chunk.setdefault("request", entry.request.canonical())
        try:
            return add_provenance(image.data or b"", chunk)
        except ValueError:
            return image.data or b""  # not a PNG we can annotate: keep what was paid for, as served

    def _write_file(self, path: Path, data: bytes) -> None:
        """Atomic: a temp file in the same directory, fsync, rename; nothing half-written is left behind."""
        tmp = None
        try:
            self.images_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.images_dir, prefix=".tmp-", suffix=".png")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise self._error(
                f"could not write {path} ({'disk full' if full else exc.strerror or exc})",
                ("free some space, then " if full else "fix the directory, then ")
                + "run `wanx-nb resume` (or %wanx resume) within 24 h: the task is kept and its images are fetched again",
            ) from None
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    def record_image_failure(self, entry_id: str, index: int, code: str | None, message: str | None) -> None:
        """A per-image failure the service reported (not billed). Never replaces a saved image."""
        with self._update(entry_id, allow_final=True) as (db, _):
            db.execute("INSERT INTO images (entry_id, idx, code, message) VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                       (entry_id, index, code, message))  # fmt: skip

    def finish(self, entry_id: str, state: EntryState, *, status: str | None = None, code: str | None = None,
               message: str | None = None, result: dict[str, Any] | None = None) -> None:  # fmt: skip
        """A final state. DONE while fewer images are saved than billed records COLLECTING instead."""
        if not state.is_final:
            raise ValueError(f"finish() takes a final state, not {state.value!r}")
        with self._update(entry_id) as (db, entry):
            if state is EntryState.DONE and entry.saved_images < entry.billed_images:
                state = EntryState.COLLECTING
            db.execute(
                "UPDATE entries SET state=?, status=COALESCE(?, status), code=COALESCE(?, code),"
                " message=COALESCE(?, message), finished_at=?, result_json=COALESCE(?, result_json) WHERE entry_id=?",
                (state.value, status, code, message, utc_iso() if state.is_final else None,
                 json.dumps(result, ensure_ascii=False) if result is not None else None, entry_id),
            )  # fmt: skip

    # ---- the journal: reading ------------------------------------------------------------------

    def entry(self, entry_id: str) -> JournalEntry:
        with self._read() as db:
            return self._row_entry(db, entry_id)

    def find_task(self, task_id: str, service: str | None = None) -> JournalEntry | None:
        sql, args = "SELECT * FROM entries WHERE task_id=?", [task_id]
        if service is not None:
            sql, args = sql + " AND service=?", [task_id, service]
        with self._read() as db:
            row = db.execute(sql + " ORDER BY created_at DESC, rowid DESC LIMIT 1", args).fetchone()
        return JournalEntry.from_row(row) if row else None

    def _unfinished(self, newer: bool, max_age_hours: float, now: dt.datetime | None) -> list[JournalEntry]:
        cutoff = utc_iso((now or dt.datetime.now(dt.timezone.utc)) - dt.timedelta(hours=max_age_hours))
        states = [s.value for s in UNFINISHED_STATES]
        with self._read() as db:
            rows = db.execute(
                f"SELECT * FROM entries WHERE state IN ({','.join('?' * len(states))})"
                f" AND COALESCE(sent_at, created_at) {'>=' if newer else '<'} ? ORDER BY COALESCE(sent_at, created_at), rowid",
                [*states, cutoff],
            ).fetchall()
        return [JournalEntry.from_row(r) for r in rows]

    def unfinished(self, *, max_age_hours: float = 24.0, now: dt.datetime | None = None) -> list[JournalEntry]:
        """Entries that may hold a task with billed images not saved, young enough for the service; oldest first."""
        return self._unfinished(True, max_age_hours, now)

    def expired_unfinished(self, *, max_age_hours: float = 24.0, now: dt.datetime | None = None) -> list[JournalEntry]:
        """The same states but older than the service keeps tasks: resume marks them GONE."""
        return self._unfinished(False, max_age_hours, now)

    def known_task_ids(self, service: str) -> set[str]:
        with self._read() as db:
            rows = db.execute("SELECT task_id FROM entries WHERE service=? AND task_id IS NOT NULL", (service,))
            return {r[0] for r in rows}

    # ---- results, replay, history, cost --------------------------------------------------------

    @staticmethod
    def replay_key(request: GenerationRequest) -> str:
        """The key replay looks a request up by: the request as given (an unset seed stays unset)."""
        return replay_key(request)

    def _result(self, db: sqlite3.Connection, row: sqlite3.Row) -> GenerationResult:
        images = db.execute("SELECT * FROM images WHERE entry_id=? ORDER BY idx", (row["entry_id"],)).fetchall()
        return result_from_rows(row, images, self.images_dir)

    def get(self, task_id: str, service: str | None = None) -> GenerationResult | None:
        """A saved result by task id (or entry id); a bad stored file comes back as `data=None` with a code."""
        sql = "SELECT * FROM entries WHERE (task_id=? OR entry_id=?) AND result_json IS NOT NULL"
        args: list[Any] = [task_id, task_id]
        if service is not None:
            sql, args = sql + " AND service=?", [*args, service]
        with self._read() as db:
            row = db.execute(sql + " ORDER BY created_at DESC, rowid DESC LIMIT 1", args).fetchone()
            return self._result(db, row) if row else None

    def read_image(self, path: str | None) -> bytes | None:
        """A stored image's served bytes when the file is sound (structure, CRCs, size limits), else None.

        For thumbnails and previews: never hand a stored file to a decoder or a browser unchecked.
        """
        return read_stored_image(stored_path(self.images_dir, path))[0]

    def replay(self, request: GenerationRequest, nth: int = 0) -> GenerationResult | TaskError | None:
        """The nth outcome recorded for this request (as given), oldest first; None on a miss.

        A task that ended without images comes back as the TaskError it raised when recorded.
        """
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM entries WHERE replay_key=? AND (result_json IS NOT NULL OR state IN ('failed',"
                " 'canceled', 'gone')) ORDER BY created_at, rowid",
                (self.replay_key(request),),
            ).fetchall()
            if not rows:
                return None
            row = rows[min(nth, len(rows) - 1)]
            if row["result_json"] is None:
                error_class = {"CANCELED": TaskCanceledError, "UNKNOWN": TaskUnknownError}.get(row["status"], TaskFailedError)
                return error_class(row["task_id"] or "(no task)", row["status"] or row["state"].upper(), row["code"],
                                   row["message"] or "", row["request_id"])  # fmt: skip
            result = self._result(db, row)
        result.replayed = True
        return result

    def recorded_actual_prompt(self, request: GenerationRequest) -> str | None:
        """The rewritten prompt the server used the last time this request (as given) ran."""
        with self._read() as db:
            row = db.execute(
                "SELECT actual_prompt FROM entries WHERE replay_key=? AND actual_prompt IS NOT NULL"
                " ORDER BY created_at DESC LIMIT 1",
                (self.replay_key(request),),
            ).fetchone()
        return row["actual_prompt"] if row else None

    def history(self, *, model: str | None = None, text: str | None = None, since: str | dt.datetime | None = None,
                until: str | dt.datetime | None = None, status: str | None = None, offset: int = 0,
                limit: int | None = 50) -> list[HistoryRow]:  # fmt: skip
        """Journal entries, newest first, filtered by model, prompt text, UTC time range and status; paged.

        Served from indexes (created_at, model) with no per-row subquery, so it stays fast on large stores.
        """
        where, args = [], []
        if model:
            where.append("model=?")
            args.append(get_model(model).name)
        if text:
            where.append("search_text LIKE ? ESCAPE '\\'")
            args.append("%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        for op, bound in ((">=", since), ("<=", until)):
            if bound is not None:
                where.append(f"created_at{op}?")
                args.append(as_utc_iso(bound))
        if status:
            where.append("(status=? OR state=?)")
            args += [status.upper(), status.lower()]
        sql = "SELECT * FROM entries" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?"
        args += [int(limit) if limit else -1, max(int(offset), 0)]
        with self._read() as db:
            rows = db.execute(sql, args).fetchall()
        return [HistoryRow.from_row(r, get_model(r["model"]).default_size, self.images_dir) for r in rows]

    def total_cost(self, *, since: str | dt.datetime | None = None) -> tuple[int, float]:
        """(images, yuan) billed for everything in the store (or since a UTC time): the bill, not downloads."""
        sql, args = "SELECT COALESCE(SUM(billed_images),0), COALESCE(SUM(billed_images*price_yuan),0) FROM entries", []
        if since is not None:
            sql += " WHERE created_at>=?"
            args.append(as_utc_iso(since))
        with self._read() as db:
            images, yuan = db.execute(sql, args).fetchone()
        return int(images), round(float(yuan), 4)

    def manifest(self, task_ids: list[str] | None = None) -> dict[str, Any]:
        """A JSON-ready manifest of saved generations: each request as sent and its images' hashes."""
        with self._read() as db:
            if task_ids is None:
                rows = db.execute("SELECT * FROM entries WHERE result_json IS NOT NULL ORDER BY created_at, rowid").fetchall()
            else:
                rows = [r for t in task_ids for r in db.execute(
                    "SELECT * FROM entries WHERE (task_id=? OR entry_id=?) AND result_json IS NOT NULL"
                    " ORDER BY created_at DESC LIMIT 1", (t, t))]  # fmt: skip
            results = [(r, self._result(db, r)) for r in rows]
        entries = [
            {
                "task_id": result.task_id,
                "service": row["service"],
                "backend": result.backend,
                "request": result.request.to_dict(),
                "images": [
                    {"index": im.index, "seed": im.seed, "sha256": im.sha256, "actual_prompt": im.actual_prompt,
                     "path": os.path.relpath(im.path, self.root) if im.path else None,
                     **({"code": im.code, "message": im.message} if im.code else {})}
                    for im in result.images
                ],
            }  # fmt: skip
            for row, result in results
        ]
        return {"wanx_nb_manifest": 1, "wanx_nb_version": __version__, "generations": entries}

    # ---- repair ----------------------------------------------------------------------------------

    def rebuild(self) -> RebuildReport:
        """Move the index aside (index.sqlite.damaged-<UTC time>) and rebuild it from the PNGs' provenance."""
        with self._lock:
            self.close()
            self._checked_at = None
            report = rebuild(self.root, self.images_dir, self.db_path)
            self._connect()
            return report

    def integrity(self) -> StoreReport:
        """quick_check's verdict, indexed images missing on disk, and image files nobody indexed."""
        with self._lock:
            return integrity(self)


def new_entry_id() -> str:
    return uuid.uuid4().hex
