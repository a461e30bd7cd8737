"""Reading the store back: stored files checked before use, results rebuilt from rows, history rows.

No stored file, however bad (missing, truncated, HTML bytes, a 20000x20000 header), may break history,
show, export or replay: such an image comes back with `data=None` and a code that says why, and is never
decoded (only its chunk structure and IHDR header are read).
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._models import GenerationResult, ImageResult, Task, TaskStatus
from ._png import MAX_STORED_BYTES, check_png, strip_provenance
from ._request import GenerationRequest

__all__ = ["HistoryRow", "image_from_row", "read_stored_image", "result_from_rows", "stored_path"]

STORED_MISSING = "StoredFileMissing"
STORED_CORRUPT = "StoredFileCorrupt"


def read_stored_image(path: str | None) -> tuple[bytes | None, str | None, str | None]:
    """(served bytes, None, None) for a sound stored PNG, else (None, code, message)."""
    if not path:
        return None, STORED_MISSING, "no file was saved for this image"
    try:
        size = os.path.getsize(path)
        if size > MAX_STORED_BYTES:
            return None, STORED_CORRUPT, f"{path}: {size:,} bytes is over the {MAX_STORED_BYTES:,}-byte limit"
        data = Path(path).read_bytes()
    except OSError as exc:
        return None, STORED_MISSING, f"{path}: {exc.strerror or exc}; `wanx-nb store check` lists missing files"
    try:
        check_png(data)
        return strip_provenance(data), None, None
    except ValueError as exc:
        return None, STORED_CORRUPT, f"{path}: {exc}"


def stored_path(images_dir: Path, path: str | None) -> str | None:
    """Where a recorded image file is now: by its content name in this store's images/ (stores can move)."""
    return str(images_dir / Path(path).name) if path else None


def image_from_row(row: sqlite3.Row, images_dir: Path) -> ImageResult:
    """One image row as an ImageResult, its bytes read and checked now (None with a code if unusable)."""
    data, code, message = (None, row["code"], row["message"])
    path = stored_path(images_dir, row["path"])
    if row["code"] is None:
        data, code, message = read_stored_image(path)
        if data is None:
            path = None  # never hand a bad file on: ImageResult.image would open (and maybe decode) it
    return ImageResult(
        index=row["idx"], seed=row["seed"], size=row["size"], url=row["url"], orig_prompt=row["orig_prompt"],
        actual_prompt=row["actual_prompt"], code=code, message=message, data=data, path=path, sha256=row["sha256"],
    )  # fmt: skip


def result_from_rows(entry: sqlite3.Row, images: list[sqlite3.Row], images_dir: Path) -> GenerationResult:
    """The saved result of an entry, as it was when recorded."""
    meta = json.loads(entry["result_json"])
    request = GenerationRequest.from_dict(json.loads(entry["sent_json"] or entry["given_json"]))
    task = Task(
        task_id=entry["task_id"] or meta.get("task_id") or entry["entry_id"],
        status=TaskStatus.parse(meta.get("status") or entry["status"]),
        request_id=meta.get("request_id", entry["request_id"]),
        submit_time=meta.get("submit_time"),
        end_time=meta.get("end_time"),
        usage=meta.get("usage") or {"image_count": entry["billed_images"]},
        emulator=entry["backend"] == "emulator",
    )
    return GenerationResult(
        request=request, task=task, images=[image_from_row(r, images_dir) for r in images],
        backend=meta.get("backend", entry["backend"]), elapsed=meta.get("elapsed_s", 0.0),
        warnings=meta.get("warnings", []), created_at=meta.get("created_at"),
    )  # fmt: skip


@dataclass(frozen=True)
class HistoryRow:
    """One journal entry, flat and ready for `pandas.DataFrame(rows)`.

    `images` are the images saved in the store; `billed` what the service billed, which `cost_yuan` counts.
    """

    task_id: str | None
    model: str
    prompt: str
    status: str  # the last service status seen, or the journal state before any was seen
    submitted_at: str
    images: int
    cost_yuan: float
    seed: int | None
    size: str
    backend: str
    actual_prompt: str | None
    thumbnail: str | None  # path of the first stored image
    state: str = ""
    billed: int = 0
    saved: int = 0
    entry_id: str = ""
    service: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_row(cls, r: sqlite3.Row, default_size: str, images_dir: Path) -> HistoryRow:
        req = json.loads(r["sent_json"] or r["given_json"])
        return cls(
            task_id=r["task_id"], model=r["model"], prompt=r["prompt"], status=r["status"] or r["state"].upper(),
            submitted_at=r["sent_at"] or r["created_at"], images=r["saved_images"],
            cost_yuan=round(r["billed_images"] * r["price_yuan"], 4), seed=req.get("seed"),
            size=req.get("size") or default_size, backend=r["backend"], actual_prompt=r["actual_prompt"],
            thumbnail=stored_path(images_dir, r["thumbnail"]), state=r["state"], billed=r["billed_images"], saved=r["saved_images"],
            entry_id=r["entry_id"], service=r["service"],
        )  # fmt: skip
