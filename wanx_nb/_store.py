"""The local store: the run journal in SQLite, and every image as a content-named PNG with its provenance.

Layout of a store directory:
    images/<sha256 of the served PNG>.png   the served bytes plus one iTXt "wanx_nb" provenance chunk
    index.sqlite                            the journal (entries) and the saved images (WAL mode)

Every request is an entry recorded before anything is sent (see `_journal`). Several processes may share
one store: WAL mode, a busy timeout, short `BEGIN IMMEDIATE` transactions, and rows only ever written by
their own entry (identity of a task is (service, task_id)). A store deleted under a running session is
recreated and this process's unfinished entries are written again. Nothing here holds the API key.

This module writes the journal; around it: `_store_db` (connection, pre-flight check), `_store_queries`
(get, replay, history, cost, manifest), `_store_read` (stored files checked before use), `_store_repair`
(migration, rebuild, integrity).
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from ._exceptions import StoreError
from ._journal import UNFINISHED_STATES, EntryState, JournalEntry, as_utc_iso, request_json, search_text, utc_iso
from ._models import ImageResult
from ._png import provenance_parts, read_provenance
from ._provenance import Provenance, store_relative
from ._request import GenerationRequest
from ._run_locks import LOCKS_DIR, RunLock, hold
from ._store_db import disk_refused
from ._store_queries import StoreQueries
from ._store_read import HistoryRow, read_stored_image, stored_path
from ._store_repair import RebuildReport, StoreReport, integrity, rebuild

__all__ = [
    "EntryState",
    "HistoryRow",
    "JournalEntry",
    "RebuildReport",
    "Store",
    "StoreReport",
    "new_entry_id",
    "read_png_provenance",
]


def read_png_provenance(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The provenance wanx_nb wrote into a PNG file, or None (`Provenance.from_dict` reads a store's)."""
    return read_provenance(Path(path).read_bytes())


def new_entry_id() -> str:
    """A fresh entry id (uuid4 hex), made by the caller before anything is sent."""
    return uuid.uuid4().hex


class Store(StoreQueries):
    """The journal and the images of one store directory. Safe across threads and processes."""

    # ---- the journal: writing ------------------------------------------------------------------

    def _remember(self, db: sqlite3.Connection, entry_id: str) -> JournalEntry:
        entry = self._row_entry(db, entry_id)
        if entry.state.is_final:
            self._mine.pop(entry_id, None)
        else:
            self._mine[entry_id] = entry
        return entry

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

    def mark_withdrawn(self, entry_id: str, *, now: dt.datetime | None = None, message: str | None = None) -> None:
        """Final: never sent. Refused once the create may be on the wire (it may be billed)."""
        with self._update(entry_id) as (db, entry):
            if entry.state is not EntryState.QUEUED:
                raise self._error(f"entry {entry_id} is {entry.state.value}, not queued", "only unsent requests can be withdrawn")
            db.execute("UPDATE entries SET state=?, finished_at=?, message=COALESCE(?, message) WHERE entry_id=?",
                       (EntryState.WITHDRAWN.value, utc_iso(now), message, entry_id))  # fmt: skip

    def hold_run(self, run_id: str) -> RunLock | None:
        """The lock a run holds while its requests are in its hands (see `_run_locks`); None while a live
        run (in this process or another) holds it."""
        try:
            return hold(self.root, run_id)
        except OSError as exc:
            raise self._error(
                f"cannot make the lock of run {run_id} in {self.root / LOCKS_DIR} ({exc.strerror or exc})",
                "make the store's folder writable, or use another store",
            ) from None

    def mark_rejected(self, entry_id: str, code: str | None, message: str, *, now: dt.datetime | None = None) -> None:
        with self._update(entry_id) as (db, _):
            db.execute("UPDATE entries SET state=?, code=?, message=?, finished_at=? WHERE entry_id=?",
                       (EntryState.REJECTED.value, code, message, utc_iso(now), entry_id))  # fmt: skip

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

    def set_billed(self, entry_id: str, billed_images: int, *, result: Provenance | None = None) -> None:
        """What the service billed; the entry is COLLECTING while fewer images are saved. `result`: the
        answer's record (a sync call's image URLs, its only way back to them) kept before downloading."""
        with self._update(entry_id, allow_final=True) as (db, entry):
            state = entry.state
            if not state.is_final and entry.saved_images < billed_images:
                state = EntryState.COLLECTING
            db.execute("UPDATE entries SET billed_images=?, state=?, result_json=COALESCE(?, result_json),"
                       " request_id=COALESCE(request_id, ?) WHERE entry_id=?",
                       (int(billed_images), state.value, result.to_json() if result is not None else None,
                        result.request_id if result is not None else None, entry_id))  # fmt: skip

    def save_image(self, entry_id: str, image: ImageResult, record: Provenance | None = None) -> str:
        """Write one served image, with `record.for_image(index)` in its chunk, atomically and index it;
        idempotent per (entry, index). The index keeps where the file is; the record keeps the rest.
        Without a record (the result not built yet) the chunk holds what the journal knows."""
        if image.data is None:
            raise self._error(f"image {image.index} of entry {entry_id} has no bytes", "download it before saving")
        try:
            with self._read() as db:
                entry = self._row_entry(db, entry_id)
                row = db.execute("SELECT path, sha256 FROM images WHERE entry_id=? AND idx=? AND path IS NOT NULL",
                                 (entry_id, image.index)).fetchone()  # fmt: skip
        except StoreError:
            if (mine := self._mine.get(entry_id)) is None:
                raise
            # The index cannot be read (damaged, replaced): the paid bytes still go on disk, where a
            # rebuild finds them by their provenance; then say the index failed.
            self._write_image_file(image, mine, record)
            raise
        if row is not None:
            done = stored_path(self.images_dir, row["path"])  # not None: the query asks for a path
            if done is not None and read_stored_image(done)[0] is not None:
                image.path, image.sha256 = done, row["sha256"]
                return done
        sha, path = self._write_image_file(image, entry, record)
        with self._write() as db:
            inserted = db.execute(
                "INSERT INTO images (entry_id, idx, sha256, path) VALUES (?,?,?,?) ON CONFLICT(entry_id, idx)"
                " DO UPDATE SET sha256=excluded.sha256, path=excluded.path, code=NULL, message=NULL"
                " WHERE images.path IS NULL",
                (entry_id, image.index, sha, str(path)),
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
        image.release()  # on disk now: read back on use, so a long batch does not hold every image in memory
        return str(path)

    def _write_image_file(self, image: ImageResult, entry: JournalEntry, record: Provenance | None) -> tuple[str, Path]:
        """(sha256, path) of the image's file, named by its content; written, with its provenance, unless a
        sound one is there already (absent or damaged: written)."""
        assert image.data is not None
        sha = hashlib.sha256(image.data).hexdigest()
        path = self.images_dir / f"{sha}.png"
        if read_stored_image(str(path))[0] is None:
            self._write_file(path, self._stamp(image, sha, entry, record or entry_record(entry)))
        return sha, path

    def _stamp(
        self, image: ImageResult, sha: str, entry: JournalEntry, record: Provenance
    ) -> Sequence[bytes | memoryview]:
        # The record narrowed to this image, with the journal's facts rebuild() needs to bring the entry back.
        mine = replace(image.provenance(), sha256=sha, path=store_relative(f"{sha}.png"))
        chunk = replace(
            record, images=(mine,), given=entry.given, request_id=record.request_id or entry.request_id,
            billed_images=max(record.billed_images, entry.billed_images), service=entry.service,
            entry_id=entry.entry_id, run_id=entry.run_id, mode=entry.mode, recorded_at=entry.created_at,
        )  # fmt: skip
        try:
            return provenance_parts(image.data or b"", chunk.for_image(image.index).to_dict())
        except ValueError:
            return [image.data or b""]  # not a PNG we can annotate: keep what was paid for, as served

    def _write_file(self, path: Path, parts: Sequence[bytes | memoryview]) -> None:
        """Atomic: a temp file in the same directory, fsync, rename; nothing half-written is left behind."""
        tmp = None
        try:
            self.images_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.images_dir, prefix=".tmp-", suffix=".png")
            with os.fdopen(fd, "wb") as fh:
                fh.writelines(parts)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise self._failure(
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
               message: str | None = None, result: Provenance | None = None,
               now: dt.datetime | None = None, billed_images: int = 0) -> None:  # fmt: skip
        """A final state. DONE while fewer images are saved than billed records COLLECTING instead.
        `billed_images`: the bill, written with the state (an earlier `set_billed` may have failed)."""
        if not state.is_final:
            raise ValueError(f"finish() takes a final state, not {state.value!r}")
        with self._update(entry_id) as (db, entry):
            billed = max(entry.billed_images, int(billed_images))
            if state is EntryState.DONE and entry.saved_images < billed:
                state = EntryState.COLLECTING
            db.execute(
                "UPDATE entries SET billed_images=?, state=?, status=COALESCE(?, status), code=COALESCE(?, code),"
                " message=COALESCE(?, message), finished_at=?, result_json=COALESCE(?, result_json),"
                " backend=COALESCE(?, backend), request_id=COALESCE(request_id, ?) WHERE entry_id=?",
                # The result knows where its images came from: a served emulator at a base URL was
                # journaled as the session's "dashscope" before its first answer said otherwise. A sync
                # call's request id, its only id, is known only now (`get` finds it by it).
                (billed, state.value, status, code, message, utc_iso(now) if state.is_final else None,
                 result.to_json() if result is not None else None, result.backend if result is not None else None,
                 result.request_id if result is not None else None, entry_id),
            )  # fmt: skip

    # ---- the journal: reading ------------------------------------------------------------------

    def entry(self, entry_id: str) -> JournalEntry:
        with self._read() as db:
            return self._row_entry(db, entry_id)

    def journal_record(self, entry_id: str) -> Provenance:
        """What the journal knows of an entry as a provenance record (no images yet)."""
        return entry_record(self.entry(entry_id))

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

    def queued(self) -> list[JournalEntry]:
        """Entries recorded but never sent (their run has them queued, or stopped before sending them)."""
        with self._read() as db:
            rows = db.execute("SELECT * FROM entries WHERE state=? ORDER BY created_at, rowid",
                              (EntryState.QUEUED.value,)).fetchall()  # fmt: skip
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

    # ---- repair ----------------------------------------------------------------------------------

    def rebuild(self) -> RebuildReport:
        """Move the index aside (index.sqlite.damaged-<UTC time>) and rebuild it from the PNGs' provenance."""
        with self._lock:
            self.close()
            # The index we had is replaced, whatever file number the new one gets: this process's
            # unfinished entries are written into it on reconnecting (their tasks may be billed).
            self._lost = self._lost or self._identity is not None
            self._checked_at = None
            try:
                report = rebuild(self.root, self.images_dir, self.db_path)
            except sqlite3.Error as exc:
                if disk_refused(exc):
                    raise self._error(f"could not write the new index ({exc}): is the disk full?",
                                      "free some space, then run `wanx-nb store rebuild` again; the old index is as "
                                      "it was") from None  # fmt: skip
                raise self._db_error(exc) from None
            except OSError as exc:
                raise self._error(f"cannot rebuild the index ({exc.strerror or exc})",
                                  "make the store directory writable and run the rebuild again") from None  # fmt: skip
            self._connect()
            return report

    def integrity(self) -> StoreReport:
        """quick_check's verdict, indexed images missing on disk, and image files nobody indexed."""
        with self._lock:
            return integrity(self)


def entry_record(entry: JournalEntry) -> Provenance:
    """A journal entry as a provenance record without images: the request as given and as sent, the
    task, the create's request id and the bill."""
    sent = entry.request
    return Provenance(
        backend=entry.backend, model=sent.model, given=entry.given, sent=sent, task_id=entry.task_id,
        request_id=entry.request_id, status=entry.status or "PENDING", created_at=entry.created_at,
        billed_images=entry.billed_images, cost_yuan=entry.cost_yuan, service=entry.service,
        entry_id=entry.entry_id, run_id=entry.run_id, mode=entry.mode,
    )  # fmt: skip
