"""The emulator's tasks on disk, so a restarted kernel's emulator still knows them.

The real service keeps a task for 24 h whatever happens to the client; the in-process emulator used to
keep its tasks only as long as the kernel, so `%wanx resume` after a restart found nothing to recover
(the documented recovery failed on exactly the path new users take first). `TaskFile` keeps every task
in a small SQLite file shared by all the kernels of a user, the way one account's tasks are shared on
the service.

A task's account is the API key it was created with: only its SHA-256 is written, and a kernel adopts
the tasks of an account when a request with that key arrives (`tasks_of`).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from .._sqlite import enter_wal
from ._tasks import Task

__all__ = ["ENV_EMULATOR_STATE", "KeptTasks", "TaskFile", "default_state_path"]

log = logging.getLogger("wanx_nb.emulator")

ENV_EMULATOR_STATE = "WANX_NB_EMULATOR_STATE"
_SCHEMA = "CREATE TABLE IF NOT EXISTS tasks (task_id TEXT PRIMARY KEY, account_hash TEXT NOT NULL, task TEXT NOT NULL)"


def default_state_path() -> Path | None:
    """Where the keyless default emulator keeps its tasks: `$WANX_NB_EMULATOR_STATE` ("off": nowhere),
    else `wanx_nb/emulator-tasks.sqlite` in the user's cache folder ($XDG_CACHE_HOME or ~/.cache)."""
    raw = os.environ.get(ENV_EMULATOR_STATE, "").strip()
    if raw.lower() == "off":
        return None
    if raw:
        return Path(raw).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(cache) / "wanx_nb" / "emulator-tasks.sqlite"


def _account_hash(account: str) -> str:
    return hashlib.sha256(f"wanx_nb-emulator-account:{account}".encode()).hexdigest()


class TaskFile:
    """Tasks by id in one SQLite file (WAL, so several kernels read and write it at once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            enter_wal(self._db, wait_seconds=10)  # as long as its busy timeout
            self._db.execute("PRAGMA synchronous=NORMAL")  # no fsync per task: a power cut may lose the last few
            self._db.execute(_SCHEMA)

    def save(self, tasks: list[Task]) -> None:
        """Write (or rewrite) these tasks: on create, and when a cancellation moves a queue's start times."""
        rows = [(t.task_id, _account_hash(t.account), json.dumps(_to_json(t))) for t in tasks]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO tasks VALUES (?, ?, ?)", rows)

    def tasks_of(self, account: str, submitted_after: float) -> list[Task]:
        """The account's tasks submitted after `submitted_after` (the others have expired), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT task FROM tasks WHERE account_hash = ?", (_account_hash(account),)
            ).fetchall()
        found = [task for row in rows if (task := _from_json(row[0], account)) is not None]
        return sorted((t for t in found if t.submit_time > submitted_after), key=lambda t: t.submit_time)

    def forget_before(self, submitted_before: float) -> None:
        """Drop expired tasks, so the file holds about a day of tasks at most."""
        with self._lock:
            self._db.execute("DELETE FROM tasks WHERE json_extract(task, '$.submit_time') < ?", (submitted_before,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class KeptTasks:
    """The backend's side of a `TaskFile`: a file that cannot be opened, read or written is logged and
    passed over, never an error the emulated service answers (it only costs the next kernel its memory)."""

    def __init__(self, path: str | None) -> None:
        self._file: TaskFile | None = None
        if path is not None:
            try:
                self._file = TaskFile(Path(path))
            except (OSError, sqlite3.Error) as exc:
                log.warning("emulator: tasks kept in memory only: cannot use %s (%s)", path, exc)

    def __bool__(self) -> bool:
        return self._file is not None

    def keep(self, tasks: list[Task]) -> None:
        if self._file is None:
            return
        try:
            self._file.save(tasks)
        except sqlite3.Error as exc:  # a full disk or a locked file: the answer still goes out
            log.warning("emulator: cannot keep tasks on disk (%s)", exc)

    def load(self, account: str, *, live_after: float, forget_before: float) -> list[Task]:
        """The account's tasks submitted after `live_after`; rows older than `forget_before` are dropped."""
        if self._file is None:
            return []
        try:
            self._file.forget_before(forget_before)
            return self._file.tasks_of(account, live_after)
        except sqlite3.Error as exc:
            log.warning("emulator: cannot read the kept tasks (%s)", exc)
            return []


def _to_json(task: Task) -> dict[str, Any]:
    data = dataclasses.asdict(task)
    del data["account"]  # the API key: never written
    data["failed_items"] = sorted(task.failed_items)
    if isinstance(task.ref, bytes):  # an uploaded reference image, kept so the image can be painted again
        data["ref"] = {"base64": base64.b64encode(task.ref).decode()}
    return data


_FIELDS = frozenset(f.name for f in dataclasses.fields(Task))


def _from_json(text: str, account: str) -> Task | None:
    """The task a row holds, or None for a row this version cannot read (it is skipped, not fatal)."""
    try:
        return _task(json.loads(text), account)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def _task(data: dict[str, Any], account: str) -> Task:
    data = {k: v for k, v in data.items() if k in _FIELDS}  # fields a newer version added are ignored
    ref = data["ref"]
    data |= {
        "account": account,
        "failed_items": frozenset(data["failed_items"]),
        "failure": None if data["failure"] is None else tuple(data["failure"]),
        "item_failure": tuple(data["item_failure"]),
        "ref": base64.b64decode(ref["base64"]) if isinstance(ref, dict) else ref,
    }
    return Task(**data)
