"""Reading results back from the store: get, replay, history, cost and the manifest."""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import replace
from typing import Any

from ._exceptions import TaskCanceledError, TaskError, TaskFailedError, TaskUnknownError
from ._journal import UNFINISHED_STATES, EntryState, JournalEntry, as_utc_iso, replay_key
from ._models import GenerationResult
from ._provenance import Provenance
from ._registry import get_model
from ._request import GenerationRequest
from ._store_db import StoreConnection
from ._store_read import HistoryRow, read_stored_image, result_from_rows, stored_path
from ._version import __version__

__all__ = ["MANIFEST_FORMAT", "StoreQueries"]

MANIFEST_FORMAT = 2  # of `manifest()`: a reader refuses a higher one (a newer wanx_nb wrote it)


class StoreQueries(StoreConnection):
    """Saved results and history, read in consistent snapshots; a bad stored file never raises here."""

    # ---- results, replay, history, cost --------------------------------------------------------

    @staticmethod
    def replay_key(request: GenerationRequest) -> str:
        """The key replay looks a request up by: the request as given (an unset seed stays unset)."""
        return replay_key(request)

    def _result(self, db: sqlite3.Connection, row: sqlite3.Row) -> GenerationResult:
        images = db.execute("SELECT * FROM images WHERE entry_id=? ORDER BY idx", (row["entry_id"],)).fetchall()
        return result_from_rows(row, images, self.images_dir)

    def get(self, task_id: str, service: str | None = None) -> GenerationResult | None:
        """A saved result by task id (or entry id, or a sync call's request id: it has no task); a bad stored
        file comes back as `data=None` with a code."""
        sql = ("SELECT * FROM entries WHERE (task_id=? OR entry_id=? OR (task_id IS NULL AND request_id=?))"
               " AND result_json IS NOT NULL")
        args: list[Any] = [task_id, task_id, task_id]
        if service is not None:
            sql, args = sql + " AND service=?", [*args, service]
        with self._read() as db:
            row = db.execute(sql + " ORDER BY created_at DESC, rowid DESC LIMIT 1", args).fetchone()
            return self._result(db, row) if row else None

    def result_record(self, entry_id: str) -> Provenance | None:
        """The provenance record `finish(result=...)` kept for an entry (every image, saved or not, with
        its URL), or None. Resume uses it for a sync call, which has no task to look up again."""
        with self._read() as db:
            row = db.execute("SELECT result_json FROM entries WHERE entry_id=?", (entry_id,)).fetchone()
        return Provenance.from_json(row[0]) if row and row[0] else None

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

    def reusable(self, request: GenerationRequest, service: str) -> GenerationResult | None:
        """The newest result of this request (as given) made by `service` whose every billed image is
        saved and sound, or None: what a re-run with `reuse` shows instead of paying again.

        Only the same service: an emulator's placeholder never stands in for the real service's image.
        Its bytes are left on disk (read back on use), so a large grid's reuse does not hold them all.
        """
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM entries WHERE replay_key=? AND service=? AND state=? AND result_json IS NOT NULL"
                " ORDER BY created_at DESC, rowid DESC",
                (self.replay_key(request), service, EntryState.DONE.value),
            ).fetchall()
            for row in rows:
                result = self._result(db, row)
                # A stored file found damaged now comes back without its path, so it counts as not saved.
                if result.billed_images and result.saved_images >= result.billed_images:
                    for image in result.images:
                        image.release()
                    return result
        return None

    def unfinished_send(self, request: GenerationRequest, service: str) -> JournalEntry | None:
        """The newest entry of this request (as given) sent to `service` and not finished within the
        service's 24 h: its task may be billed, its images not saved. `reuse` must not pay for it again."""
        cutoff = as_utc_iso(dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=24))
        states = [s.value for s in UNFINISHED_STATES]
        with self._read() as db:
            row = db.execute(
                f"SELECT * FROM entries WHERE replay_key=? AND service=? AND state IN ({','.join('?' * len(states))})"
                " AND COALESCE(sent_at, created_at) >= ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
                (self.replay_key(request), service, *states, cutoff),
            ).fetchone()
        return JournalEntry.from_row(row) if row is not None else None

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
        where, args = _history_filter(model, text, since, until, status)
        sql = "SELECT * FROM entries" + where + " ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?"
        with self._read() as db:
            rows = db.execute(sql, [*args, int(limit) if limit else -1, max(int(offset), 0)]).fetchall()
        return [HistoryRow.from_row(r, _default_size(r["model"]), self.images_dir) for r in rows]

    def history_count(self, *, model: str | None = None, text: str | None = None,
                      since: str | dt.datetime | None = None, until: str | dt.datetime | None = None,
                      status: str | None = None) -> int:  # fmt: skip
        """How many entries `history` with these filters lists in all (to say how many pages there are)."""
        where, args = _history_filter(model, text, since, until, status)
        with self._read() as db:
            return int(db.execute("SELECT COUNT(*) FROM entries" + where, args).fetchone()[0])

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
        """A JSON-ready manifest of saved generations: one provenance record (`Provenance.to_dict()`) each,
        its "request" as sent and its images' hashes and paths (relative to the store)."""
        with self._read() as db:
            if task_ids is None:
                rows = db.execute("SELECT * FROM entries WHERE result_json IS NOT NULL ORDER BY created_at, rowid").fetchall()
            else:
                rows = [r for t in task_ids for r in db.execute(
                    "SELECT * FROM entries WHERE (task_id=? OR entry_id=?) AND result_json IS NOT NULL"
                    " ORDER BY created_at DESC LIMIT 1", (t, t))]  # fmt: skip
            results = [(r, self._result(db, r)) for r in rows]
        entries = [replace(result.provenance(), service=row["service"]).to_dict() for row, result in results]
        return {"wanx_nb_manifest": MANIFEST_FORMAT, "wanx_nb_version": __version__, "generations": entries}


def _history_filter(model: str | None, text: str | None, since: str | dt.datetime | None,
                    until: str | dt.datetime | None, status: str | None) -> tuple[str, list[str]]:
    """The WHERE clause (empty, or starting with a space) and its arguments for history's filters."""
    where: list[str] = []
    args: list[str] = []
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
    return (" WHERE " + " AND ".join(where) if where else ""), args


def _default_size(model: str) -> str:
    try:
        return get_model(model).default_size
    except KeyError:  # a model since removed from the registry: history still lists its rows
        return ""
