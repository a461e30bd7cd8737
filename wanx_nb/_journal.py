"""The run journal's vocabulary: an entry's states, the entry itself, and the SQLite schema it lives in.

One entry is one request, recorded before anything is sent and updated as its task goes: the task id
the moment the service returns it, the bill when the service reports it, each image when it is saved.
An entry is final only when the service said so and every billed image is saved, or the service can no
longer serve it; client-side errors (poll errors, timeouts, interrupts, failed downloads) are noted on
the entry and never finish it, so resume always finds what was paid for and not yet saved.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import sqlite3
from dataclasses import dataclass

from ._request import GenerationRequest

__all__ = [
    "EntryState",
    "JournalEntry",
    "SCHEMA",
    "SCHEMA_VERSION",
    "UNFINISHED_STATES",
    "as_utc_iso",
    "create_schema",
    "replay_key",
    "utc_iso",
]

SCHEMA_VERSION = 2  # 1: tables `tasks` and `images` keyed by task id alone (wanx_nb <= 0.x); migrated on open

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    entry_id       TEXT PRIMARY KEY,   -- made by the caller before anything is sent
    run_id         TEXT NOT NULL,
    service        TEXT NOT NULL,      -- where the task lives: "emulator" or the API host
    backend        TEXT NOT NULL,
    mode           TEXT NOT NULL,
    state          TEXT NOT NULL,      -- EntryState
    model          TEXT NOT NULL,
    prompt         TEXT NOT NULL,
    replay_key     TEXT NOT NULL,      -- the request as the user gave it (seed may be unset)
    given_json     TEXT NOT NULL,
    sent_json      TEXT,               -- the request as sent (seed set), once known
    task_id        TEXT,
    status         TEXT,               -- the last service status seen
    created_at     TEXT NOT NULL,      -- UTC ISO, ms
    sent_at        TEXT,
    finished_at    TEXT,
    request_id     TEXT,
    code           TEXT,
    message        TEXT,
    billed_images  INTEGER NOT NULL DEFAULT 0,
    saved_images   INTEGER NOT NULL DEFAULT 0,
    price_yuan     REAL NOT NULL DEFAULT 0,
    result_json    TEXT,               -- GenerationResult.metadata() once finished with images
    actual_prompt  TEXT,               -- the first saved image's rewritten prompt (for history)
    search_text    TEXT NOT NULL DEFAULT '',  -- prompt and every rewritten prompt, for history(text=)
    thumbnail      TEXT                -- path of the first saved image
);
-- Identity of a task is (service, task_id): two services (or two emulators) may issue the same id.
CREATE UNIQUE INDEX IF NOT EXISTS entries_task ON entries(service, task_id) WHERE task_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS entries_created ON entries(created_at);
CREATE INDEX IF NOT EXISTS entries_model ON entries(model, created_at);
CREATE INDEX IF NOT EXISTS entries_replay ON entries(replay_key, created_at);
CREATE INDEX IF NOT EXISTS entries_state ON entries(state, sent_at);
CREATE TABLE IF NOT EXISTS images (
    entry_id       TEXT NOT NULL,
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
    PRIMARY KEY (entry_id, idx)
);
CREATE INDEX IF NOT EXISTS images_path ON images(path);
"""


def create_schema(conn: sqlite3.Connection) -> None:
    """Create what is missing (idempotent). Statement by statement: executescript() would COMMIT the caller's transaction."""
    for statement in SCHEMA.split(";\n"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


class EntryState(str, enum.Enum):
    """One request's place in its life, in the journal."""

    QUEUED = "queued"  # recorded before anything is sent (waiting for a slot)
    WITHDRAWN = "withdrawn"  # final: never sent, never billed
    SENDING = "sending"  # the create is on the wire; outcome not known yet
    OUTCOME_UNKNOWN = "outcome_unknown"  # the create may have made a task; resume must reconcile it
    REJECTED = "rejected"  # final: the service refused the create (no task, not billed)
    SUBMITTED = "submitted"  # task id known, service not final (or a client-side error hit us)
    COLLECTING = "collecting"  # service SUCCEEDED, some billed images not saved yet
    DONE = "done"  # final: SUCCEEDED and every billed image saved
    FAILED = "failed"  # final: the service says FAILED
    CANCELED = "canceled"  # final: the service says CANCELED
    GONE = "gone"  # final: the service can no longer serve it (UNKNOWN, >24 h, URL expired)

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset(
    {EntryState.WITHDRAWN, EntryState.REJECTED, EntryState.DONE, EntryState.FAILED, EntryState.CANCELED, EntryState.GONE}
)
# What resume must look at: a task may exist and hold billed images not saved yet.
UNFINISHED_STATES = (EntryState.SENDING, EntryState.OUTCOME_UNKNOWN, EntryState.SUBMITTED, EntryState.COLLECTING)


@dataclass(frozen=True)
class JournalEntry:
    """One request as the journal knows it. Never holds the API key (built from the request and server fields)."""

    entry_id: str
    run_id: str
    service: str
    backend: str
    mode: str
    state: EntryState
    given: GenerationRequest
    sent: GenerationRequest | None
    task_id: str | None
    status: str | None
    created_at: str
    sent_at: str | None
    finished_at: str | None
    request_id: str | None
    code: str | None
    message: str | None
    billed_images: int
    saved_images: int
    price_yuan: float

    @property
    def cost_yuan(self) -> float:
        """What the service billed for this entry (billed images, not downloads)."""
        return round(self.billed_images * self.price_yuan, 4)

    @property
    def request(self) -> GenerationRequest:
        """The request as sent when known, else as given."""
        return self.sent or self.given

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> JournalEntry:
        return cls(
            entry_id=row["entry_id"], run_id=row["run_id"], service=row["service"], backend=row["backend"],
            mode=row["mode"], state=EntryState(row["state"]),
            given=GenerationRequest.from_dict(json.loads(row["given_json"])),
            sent=GenerationRequest.from_dict(json.loads(row["sent_json"])) if row["sent_json"] else None,
            task_id=row["task_id"], status=row["status"], created_at=row["created_at"], sent_at=row["sent_at"],
            finished_at=row["finished_at"], request_id=row["request_id"], code=row["code"], message=row["message"],
            billed_images=row["billed_images"], saved_images=row["saved_images"], price_yuan=row["price_yuan"],
        )  # fmt: skip

    def __repr__(self) -> str:
        task = f" task {self.task_id}" if self.task_id else ""
        return f"<JournalEntry {self.entry_id[:8]} {self.state.value}{task} {self.saved_images}/{self.billed_images} saved>"


def utc_iso(now: dt.datetime | None = None) -> str:
    """UTC ISO time with milliseconds: the one time format in the store."""
    return as_utc_iso(now or dt.datetime.now(dt.timezone.utc))


def as_utc_iso(value: str | dt.datetime) -> str:
    """Any ISO string or datetime as UTC ISO with milliseconds (naive values are taken as UTC)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")


def replay_key(request: GenerationRequest) -> str:
    """The key replay looks a request up by: the request as given (an unset seed stays unset)."""
    blob = json.dumps(request.canonical(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def request_json(request: GenerationRequest) -> str:
    return json.dumps(request.to_dict(), ensure_ascii=False)


def search_text(*texts: object) -> str:
    """Prompt and rewritten prompts, one per line, for `history(text=)`."""
    return "\n".join(dict.fromkeys(str(t) for t in texts if t))
