"""Reading the store back: stored files checked before use, results rebuilt from rows, history rows.

No stored file, however bad (missing, truncated, HTML bytes, a 20000x20000 header), may break history,
show, export or replay: such an image comes back with `data=None` and a code that says why, and is never
decoded (only its chunk structure and IHDR header are read).
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ._models import GenerationResult, ImageResult
from ._png import MAX_STORED_BYTES, check_png, strip_provenance
from ._provenance import ImageProvenance, Provenance
from ._request import GenerationRequest

__all__ = ["HistoryRow", "read_stored_image", "result_from_rows", "stored_path"]

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


def _image(record: ImageProvenance, row: sqlite3.Row | None, images_dir: Path) -> ImageResult:
    """One recorded image with its stored bytes read and checked now (None with a code if unusable)."""
    image = ImageResult(
        index=record.index, seed=record.seed, size=record.size, url=record.url, orig_prompt=record.orig_prompt,
        actual_prompt=record.actual_prompt, code=record.code, message=record.message, sha256=record.sha256,
        download_code=record.download_code, download_error=record.download_error,
    )  # fmt: skip
    if row is not None and row["code"] is not None and record.code is None:
        image.code, image.message = row["code"], row["message"]  # a per-image failure recorded on its own
    if image.code is not None:
        return image
    path = stored_path(images_dir, row["path"] if row is not None and row["path"] else record.path)
    if path is None and image.download_code is not None:
        return image  # billed, never saved: the record says why (resume may fetch it while its URL lives)
    data, code, message = read_stored_image(path)
    if data is None:  # never hand a bad file on: ImageResult.image would open (and maybe decode) it
        image.code, image.message = code, message
        return image
    image.data, image.path = data, path
    image.sha256 = (row["sha256"] if row is not None else None) or image.sha256
    image.download_code = image.download_error = None  # saved since (resume)
    return image


def result_from_rows(entry: sqlite3.Row, images: list[sqlite3.Row], images_dir: Path) -> GenerationResult:
    """The saved result of an entry, rebuilt from its provenance record; the images table says which
    files are stored now (resume may have saved more since the record was written)."""
    sent_json, given_json = entry["sent_json"] or entry["given_json"], entry["given_json"]
    record = Provenance.from_dict(
        json.loads(entry["result_json"]),
        sent=GenerationRequest.from_dict(json.loads(sent_json)),
        given=GenerationRequest.from_dict(json.loads(given_json)),
    )
    rows = {r["idx"]: r for r in images}
    recorded = {im.index: im for im in record.images}
    sent = record.sent
    for index in rows:  # an image saved after the record was written: its seed and size follow the request
        if index not in recorded:
            seed = sent.seed + index if sent.seed is not None else None
            recorded[index] = ImageProvenance(index=index, seed=seed, size=sent.effective_size)
    if record.task_id is None and entry["task_id"] is not None:
        record = replace(record, task_id=entry["task_id"])  # adopted after the record was written
    return GenerationResult.from_provenance(
        record, [_image(recorded[i], rows.get(i), images_dir) for i in sorted(recorded)]
    )


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
    request_id: str | None = None  # a sync call's only id (it has no task): `show` takes it

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
            entry_id=r["entry_id"], service=r["service"], request_id=r["request_id"],
        )  # fmt: skip
