"""The local store: every image as a content-named PNG with its provenance, and a SQLite index.

Layout of a store directory:
    images/<sha256 of the served PNG>.png   the served bytes plus one iTXt "wanx_nb" provenance chunk
    index.sqlite                            tasks (written ahead at submit) and images

Tasks are recorded the moment they are created (write-ahead), so `unfinished_tasks()` finds what a
crash or a kernel restart left behind. Nothing here ever holds the API key: rows and chunks are built
from the request, the server's task fields and our own bookkeeping only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._exceptions import TaskCanceledError, TaskError, TaskFailedError, TaskUnknownError
from ._models import GenerationResult, ImageResult, Task, TaskStatus
from ._png import add_provenance, read_provenance, strip_provenance
from ._registry import get_model
from ._request import GenerationRequest
from ._version import __version__

__all__ = ["HistoryRow", "Store", "UnfinishedTask", "read_png_provenance"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id        TEXT PRIMARY KEY,
    replay_key     TEXT NOT NULL,      -- the request as the user gave it (seed may be unset)
    request_key    TEXT NOT NULL,      -- the request as sent (seed always set)
    model          TEXT NOT NULL,
    prompt         TEXT NOT NULL,
    request_json   TEXT NOT NULL,      -- canonical request as sent
    given_json     TEXT NOT NULL,      -- the request as the user gave it
    backend        TEXT NOT NULL,
    mode           TEXT NOT NULL,
    status         TEXT NOT NULL,      -- SUBMITTED until the result is saved, then the task status
    code           TEXT,
    message        TEXT,
    request_id     TEXT,
    submitted_at   TEXT NOT NULL,      -- UTC ISO time
    finished_at    TEXT,
    cost_yuan      REAL NOT NULL DEFAULT 0,
    image_count    INTEGER NOT NULL DEFAULT 0,
    result_json    TEXT                -- provenance of the saved result (GenerationResult.metadata())
);
CREATE INDEX IF NOT EXISTS tasks_replay ON tasks(replay_key, submitted_at);
CREATE TABLE IF NOT EXISTS images (
    task_id        TEXT NOT NULL,
    idx            INTEGER NOT NULL,
    sha256         TEXT,
    path           TEXT,
    seed           INTEGER,
    size           TEXT,
    url            TEXT,
    orig_prompt    TEXT,
    actual_prompt  TEXT,
    code           TEXT,
    message        TEXT,
    PRIMARY KEY (task_id, idx)
);
"""

SUBMITTED = "SUBMITTED"


def _utcnow() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def read_png_provenance(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The provenance wanx_nb wrote into a PNG file, or None."""
    return read_provenance(Path(path).read_bytes())


@dataclass(frozen=True)
class UnfinishedTask:
    """A task written ahead whose result was never saved."""

    task_id: str
    request: GenerationRequest
    submitted_at: str


@dataclass(frozen=True)
class HistoryRow:
    """One stored task, flat and ready for `pandas.DataFrame(rows)`."""

    task_id: str
    model: str
    prompt: str
    status: str
    submitted_at: str
    images: int
    cost_yuan: float
    seed: int | None
    size: str
    backend: str
    actual_prompt: str | None
    thumbnail: str | None  # path of the first stored image

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Store:
    """A directory of images with provenance, indexed in SQLite. Safe to use from several threads."""

    def __init__(self, root: str | os.PathLike[str] = "wanx_store") -> None:
        self.root = Path(root)
        self.images_dir = self.root / "images"
        self.db_path = self.root / "index.sqlite"
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"<Store {str(self.root)!r}>"

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                self.images_dir.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(self.db_path, check_same_thread=False)
                self._conn.row_factory = sqlite3.Row
                self._conn.executescript(_SCHEMA)
            with self._conn:
                yield self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ---- keys ----------------------------------------------------------------------------------

    @staticmethod
    def replay_key(request: GenerationRequest) -> str:
        """The key replay looks a request up by: the request as given (an unset seed stays unset)."""
        canon = request.canonical()
        blob = json.dumps(canon, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    # ---- writing -------------------------------------------------------------------------------

    def record_submitted(
        self, task: Task, sent: GenerationRequest, *, backend: str, given: GenerationRequest | None = None, mode: str = "live"
    ) -> None:
        """Write the task id ahead, the moment the task is created."""
        given = given or sent
        with self._db() as db:
            db.execute(
                "INSERT OR IGNORE INTO tasks (task_id, replay_key, request_key, model, prompt, request_json, given_json,"
                " backend, mode, status, request_id, submitted_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    task.task_id,
                    self.replay_key(given),
                    sent.key(),
                    get_model(sent.model).name,
                    sent.prompt,
                    json.dumps(sent.to_dict(), ensure_ascii=False),
                    json.dumps(given.to_dict(), ensure_ascii=False),
                    backend,
                    mode,
                    SUBMITTED,
                    task.request_id,
                    _utcnow(),
                ),
            )

    def record_failure(self, task_id: str, error: BaseException) -> None:
        """Mark a written-ahead task as ended without images (failed, canceled, unknown).

        The server's code and message are kept verbatim, so replay can raise the same error.
        """
        status = getattr(error, "status", None) or "FAILED"
        message = getattr(error, "server_message", None) or str(error)
        with self._db() as db:
            db.execute(
                "UPDATE tasks SET status=?, code=?, message=?, finished_at=? WHERE task_id=?",
                (str(status), getattr(error, "code", None), message, _utcnow(), task_id),
            )

    def save_result(self, result: GenerationResult) -> GenerationResult:
        """Write every image (with provenance) and index the task; sets each image's path and sha256."""
        created = result.created_at or _utcnow()
        result.created_at = created
        for im in result.images:
            if im.data is None:
                continue
            im.sha256 = hashlib.sha256(im.data).hexdigest()
            path = self.images_dir / f"{im.sha256}.png"
            im.path = str(path)
            if not path.exists():
                try:
                    stamped = add_provenance(im.data, self._image_provenance(result, im))
                except ValueError:
                    stamped = im.data  # not a PNG we can annotate (corrupt bytes): keep what was paid for
                self.images_dir.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(stamped)
                os.replace(tmp, path)
            im.release()  # on disk now: read back on use, so a long batch does not hold every image in memory
        meta = result.metadata()
        given = result.request
        with self._db() as db:
            exists = db.execute("SELECT 1 FROM tasks WHERE task_id=?", (result.task_id,)).fetchone()
            if not exists:
                self.record_submitted(result.task, result.request, backend=result.backend, given=given)
            db.execute(
                "UPDATE tasks SET status=?, code=?, message=?, finished_at=?, cost_yuan=?, image_count=?,"
                " result_json=? WHERE task_id=?",
                (
                    result.task.status.value,
                    result.task.code,
                    result.task.message,
                    created,
                    result.cost_yuan,
                    len(result.succeeded),
                    json.dumps(meta, ensure_ascii=False),
                    result.task_id,
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO images (task_id, idx, sha256, path, seed, size, url, orig_prompt,"
                " actual_prompt, code, message) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (result.task_id, im.index, im.sha256, im.path, im.seed, im.size, im.url, im.orig_prompt,
                     im.actual_prompt, im.code, im.message)
                    for im in result.images
                ],
            )
        return result

    @staticmethod
    def _image_provenance(result: GenerationResult, im: ImageResult) -> dict[str, Any]:
        return {
            "wanx_nb_version": __version__,
            "backend": result.backend,
            "model": result.request.model,
            "request": result.request.canonical(),
            "seed": im.seed,
            "index": im.index,
            "size": im.size,
            "orig_prompt": im.orig_prompt or result.request.prompt,
            "actual_prompt": im.actual_prompt,
            "task_id": result.task.task_id,
            "request_id": result.task.request_id,
            "created_at": result.created_at,
        }

    # ---- reading -------------------------------------------------------------------------------

    def unfinished_tasks(self, *, max_age_hours: float = 24.0) -> list[UnfinishedTask]:
        """Tasks written ahead and never saved, young enough for the server to still know them."""
        cutoff = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=max_age_hours)).isoformat()
        with self._db() as db:
            rows = db.execute(
                "SELECT task_id, request_json, submitted_at FROM tasks WHERE status=? AND submitted_at>=?"
                " ORDER BY submitted_at",
                (SUBMITTED, cutoff),
            ).fetchall()
        return [
            UnfinishedTask(r["task_id"], GenerationRequest.from_dict(json.loads(r["request_json"])), r["submitted_at"])
            for r in rows
        ]

    def get(self, task_id: str) -> GenerationResult | None:
        """A saved result, with its image bytes read back from disk (as the service sent them)."""
        with self._db() as db:
            row = db.execute("SELECT * FROM tasks WHERE task_id=? AND result_json IS NOT NULL", (task_id,)).fetchone()
            if row is None:
                return None
            images = db.execute("SELECT * FROM images WHERE task_id=? ORDER BY idx", (task_id,)).fetchall()
        return self._result_from_rows(row, images)

    def replay(self, request: GenerationRequest, nth: int = 0) -> GenerationResult | TaskError | None:
        """The nth outcome recorded for this request (as given), oldest first; None on a miss.

        A task that ended without images comes back as the TaskError it raised when recorded.
        """
        with self._db() as db:
            rows = db.execute(
                "SELECT task_id, status, code, message, request_id, result_json FROM tasks WHERE replay_key=?"
                " AND (result_json IS NOT NULL OR status IN ('FAILED', 'CANCELED', 'UNKNOWN'))"
                " ORDER BY submitted_at, rowid",
                (self.replay_key(request),),
            ).fetchall()
        if not rows:
            return None
        row = rows[min(nth, len(rows) - 1)]
        if row["result_json"] is None:
            error_class = {"CANCELED": TaskCanceledError, "UNKNOWN": TaskUnknownError}.get(row["status"], TaskFailedError)
            return error_class(row["task_id"], row["status"], row["code"], row["message"] or "", row["request_id"])
        result = self.get(row["task_id"])
        if result is not None:
            result.replayed = True
        return result

    def recorded_actual_prompt(self, request: GenerationRequest) -> str | None:
        """The rewritten prompt the server used the last time this request (as given) ran."""
        with self._db() as db:
            row = db.execute(
                "SELECT i.actual_prompt FROM tasks t JOIN images i ON i.task_id=t.task_id WHERE t.replay_key=?"
                " AND i.actual_prompt IS NOT NULL ORDER BY t.submitted_at DESC LIMIT 1",
                (self.replay_key(request),),
            ).fetchone()
        return row["actual_prompt"] if row else None

    def _result_from_rows(self, row: sqlite3.Row, images: list[sqlite3.Row]) -> GenerationResult:
        meta = json.loads(row["result_json"])
        request = GenerationRequest.from_dict(json.loads(row["request_json"]))
        task = Task(
            task_id=row["task_id"],
            status=TaskStatus.parse(meta.get("status")),
            request_id=meta.get("request_id"),
            submit_time=meta.get("submit_time"),
            end_time=meta.get("end_time"),
            usage=meta.get("usage"),
            emulator=meta.get("backend") == "emulator",
        )
        results = []
        for im in images:
            data = None
            if im["path"] and Path(im["path"]).exists():
                data = strip_provenance(Path(im["path"]).read_bytes())
            results.append(
                ImageResult(
                    index=im["idx"], seed=im["seed"], size=im["size"], url=im["url"], orig_prompt=im["orig_prompt"],
                    actual_prompt=im["actual_prompt"], code=im["code"], message=im["message"], data=data,
                    path=im["path"], sha256=im["sha256"],
                )
            )
        return GenerationResult(
            request=request, task=task, images=results, backend=meta.get("backend", row["backend"]),
            elapsed=meta.get("elapsed_s", 0.0), warnings=meta.get("warnings", []), created_at=meta.get("created_at"),
        )

    def history(
        self,
        *,
        model: str | None = None,
        text: str | None = None,
        since: str | dt.datetime | None = None,
        until: str | dt.datetime | None = None,
        status: str | None = None,
        limit: int | None = 50,
    ) -> list[HistoryRow]:
        """Stored tasks, newest first, filtered by model, prompt text, UTC time range and status."""
        where, args = [], []
        if model:
            where.append("t.model=?")
            args.append(get_model(model).name)
        if text:
            where.append("(t.prompt LIKE ? OR EXISTS (SELECT 1 FROM images i WHERE i.task_id=t.task_id AND i.actual_prompt LIKE ?))")
            args += [f"%{text}%", f"%{text}%"]
        for op, bound in ((">=", since), ("<=", until)):
            if bound is not None:
                where.append(f"t.submitted_at{op}?")
                args.append(_as_utc_iso(bound))
        if status:
            where.append("t.status=?")
            args.append(status.upper())
        sql = "SELECT t.* FROM tasks t" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY t.submitted_at DESC, t.rowid DESC" + (f" LIMIT {int(limit)}" if limit else "")
        with self._db() as db:
            rows = db.execute(sql, args).fetchall()
            first = {
                r["task_id"]: r
                for r in db.execute(
                    "SELECT task_id, path, actual_prompt FROM images WHERE idx=(SELECT MIN(idx) FROM images j WHERE"
                    " j.task_id=images.task_id AND j.path IS NOT NULL)"
                ).fetchall()
            }
        out = []
        for r in rows:
            req = json.loads(r["request_json"])
            img = first.get(r["task_id"])
            out.append(
                HistoryRow(
                    task_id=r["task_id"], model=r["model"], prompt=r["prompt"], status=r["status"],
                    submitted_at=r["submitted_at"], images=r["image_count"], cost_yuan=r["cost_yuan"],
                    seed=req.get("seed"), size=req.get("size") or get_model(r["model"]).default_size,
                    backend=r["backend"], actual_prompt=img["actual_prompt"] if img else None,
                    thumbnail=img["path"] if img else None,
                )
            )
        return out

    def total_cost(self, *, since: str | dt.datetime | None = None) -> tuple[int, float]:
        """(images, yuan) billed for everything in the store (or since a UTC time)."""
        sql, args = "SELECT COALESCE(SUM(image_count),0), COALESCE(SUM(cost_yuan),0) FROM tasks", []
        if since is not None:
            sql += " WHERE submitted_at>=?"
            args.append(_as_utc_iso(since))
        with self._db() as db:
            images, yuan = db.execute(sql, args).fetchone()
        return int(images), round(float(yuan), 4)

    def manifest(self, task_ids: list[str] | None = None) -> dict[str, Any]:
        """A JSON-ready manifest of saved generations: each request as sent and its images' hashes."""
        with self._db() as db:
            if task_ids is None:
                rows = db.execute(
                    "SELECT task_id FROM tasks WHERE result_json IS NOT NULL ORDER BY submitted_at, rowid"
                ).fetchall()
                task_ids = [r["task_id"] for r in rows]
        entries = []
        for task_id in task_ids:
            result = self.get(task_id)
            if result is None:
                continue
            entries.append(
                {
                    "task_id": task_id,
                    "backend": result.backend,
                    "request": result.request.to_dict(),
                    "images": [
                        {"index": im.index, "seed": im.seed, "sha256": im.sha256, "actual_prompt": im.actual_prompt,
                         "path": os.path.relpath(im.path, self.root) if im.path else None}
                        for im in result.images
                    ],
                }
            )
        return {"wanx_nb_manifest": 1, "wanx_nb_version": __version__, "generations": entries}


def _as_utc_iso(value: str | dt.datetime) -> str:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")
