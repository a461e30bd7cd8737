"""What every SQLite file of the package (the store's index, the emulator's kept tasks) needs from SQLite
beyond the sqlite3 module: entering WAL mode when another process may be creating the same file."""

from __future__ import annotations

import sqlite3
import time

__all__ = ["enter_wal"]


def enter_wal(conn: sqlite3.Connection, *, wait_seconds: float) -> None:
    """`PRAGMA journal_mode=WAL`, waiting up to `wait_seconds` for a lock as every other statement does.

    While another connection holds a lock on a file not yet in WAL mode (two kernels opening a new store,
    or starting the emulator, at the same moment), SQLite answers "database is locked" at once: its busy
    timeout does not apply to this pragma."""
    deadline, delay = time.monotonic() + wait_seconds, 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not ("locked" in str(exc) or "busy" in str(exc)) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
