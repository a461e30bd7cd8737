"""What every SQLite file of the package (the store's index, the emulator's kept tasks) needs from SQLite
beyond the sqlite3 module: entering WAL mode when another process may be creating the same file, telling
a file of ours from another program's."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Set

__all__ = ["enter_wal", "foreign_tables"]


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


def foreign_tables(conn: sqlite3.Connection, ours: Mapping[str, Set[str]]) -> list[str]:
    """The tables (sorted) that are not among `ours` (table name -> columns it has at least); SQLite's
    own (sqlite_sequence, sqlite_stat1...) aside. Empty for a file with no tables yet."""
    foreign = []
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name").fetchall():
        if name.startswith("sqlite_"):
            continue
        columns = {c for (c,) in conn.execute("SELECT name FROM pragma_table_info(?)", (name,))}
        if name not in ours or not ours[name] <= columns:
            foreign.append(name)
    return foreign
