"""The provenance record: how each image of one request was made, in one shape with one JSON round trip.

Output metadata, the store's record, each PNG's iTXt chunk (`for_image(i)`), the manifest and the CLI's
JSON files are all `Provenance.to_dict()`. `from_dict` also reads the shapes written before schema 2
(`GenerationResult.metadata()` of earlier versions and the store's earlier PNG chunks), so old stores
keep working. Nothing here holds the API key: a record is built from the request and the service's answer.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import PurePath
from typing import Any

from ._request import GenerationRequest
from ._version import __version__

__all__ = ["ImageProvenance", "Provenance", "SCHEMA_VERSION", "store_relative"]

SCHEMA_VERSION = 2  # 1: the shapes before this module (no "schema" key)


def store_relative(path: str | None) -> str | None:
    """A stored image's path as the record keeps it: relative to the store (images/<content name>)."""
    return f"images/{PurePath(path).name}" if path else None


@dataclass(frozen=True)
class ImageProvenance:
    """One image of a request. `code`/`message`: the service's per-image failure (not billed);
    `download_code`/`download_error`: a billed image whose download failed (its URL is kept)."""

    index: int
    seed: int | None
    size: str
    orig_prompt: str | None = None
    actual_prompt: str | None = None
    sha256: str | None = None
    path: str | None = None  # relative to the store: images/<sha256>.png
    url: str | None = None  # the service's result URL (lives 24 h): resume of a sync call reads it here
    code: str | None = None
    message: str | None = None
    download_code: str | None = None
    download_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageProvenance:
        return cls(
            index=int(data["index"]), seed=data.get("seed"), size=data.get("size") or "",
            orig_prompt=data.get("orig_prompt"), actual_prompt=data.get("actual_prompt"), sha256=data.get("sha256"),
            path=store_relative(data.get("path")), url=data.get("url"), code=data.get("code"),
            message=data.get("message"), download_code=data.get("download_code"),
            download_error=data.get("download_error"),
        )  # fmt: skip


@dataclass(frozen=True)
class Provenance:
    """Everything needed to know how each image of one request was made (never the API key).

    `request_id` is the create call's (for a sync call, the call's own), not the last poll's. The journal
    fields (`entry_id`, `run_id`, `mode`, `service`) are set by the store, so an index can be rebuilt
    from the PNGs alone; elsewhere they are None.
    """

    backend: str
    model: str
    given: GenerationRequest  # as the user gave it (the seed may be unset)
    sent: GenerationRequest  # as sent: seed set, reference images uploaded
    task_id: str | None  # None for a synchronous call
    request_id: str | None
    status: str
    submit_time: str | None = None
    end_time: str | None = None
    created_at: str | None = None
    usage: dict[str, Any] | None = None
    billed_images: int = 0
    cost_yuan: float = 0.0
    elapsed_s: float = 0.0
    warnings: tuple[str, ...] = ()
    replayed: bool = False
    images: tuple[ImageProvenance, ...] = ()
    wanx_nb_version: str = __version__
    service: str | None = None
    entry_id: str | None = None
    run_id: str | None = None
    mode: str | None = None
    recorded_at: str | None = None  # when the journal took the request (the store's; orders history)
    schema: int = field(default=SCHEMA_VERSION, compare=False)

    def for_image(self, index: int) -> Provenance:
        """This record narrowed to image `index` (what one PNG's chunk holds)."""
        chosen = tuple(im for im in self.images if im.index == index)
        if not chosen:
            raise ValueError(f"no image {index} in this record (indexes: {[im.index for im in self.images]})")
        return replace(self, images=chosen)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "wanx_nb_version": self.wanx_nb_version,
            "backend": self.backend,
            "model": self.model,
            "request": self.sent.to_dict(),
            "given": self.given.to_dict(),
            "task_id": self.task_id,
            "request_id": self.request_id,
            "status": self.status,
            "submit_time": self.submit_time,
            "end_time": self.end_time,
            "created_at": self.created_at,
            "usage": self.usage,
            "billed_images": self.billed_images,
            "cost_yuan": self.cost_yuan,
            "elapsed_s": self.elapsed_s,  # unrounded: replay must show exactly what was shown
            "warnings": list(self.warnings),
            "images": [im.to_dict() for im in self.images],
        }
        if self.replayed:
            out["replayed"] = True
        for key in ("service", "entry_id", "run_id", "mode", "recorded_at"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Provenance:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, sent: GenerationRequest | None = None,
                  given: GenerationRequest | None = None) -> Provenance:  # fmt: skip
        """A record of this schema or of the shapes before it. `sent`/`given` (the store's journal row)
        stand in for an earlier record that kept only the canonical request."""
        if not isinstance(data, dict):
            raise ValueError(f"a provenance record is a JSON object, not {type(data).__name__}")
        schema = int(data.get("schema") or 1)
        if schema > SCHEMA_VERSION:
            raise ValueError(f"provenance schema {schema} is newer than this wanx_nb reads ({SCHEMA_VERSION}); upgrade wanx_nb")
        if schema == 1:
            data = _from_schema_1(data)
        request = data.get("request") or {"prompt": data.get("orig_prompt") or ""}
        sent = GenerationRequest.from_dict(request) if schema > 1 or sent is None else sent
        given_dict = data.get("given")
        given = GenerationRequest.from_dict(given_dict) if given_dict else (given or sent)
        return cls(
            backend=data.get("backend") or "dashscope", model=data.get("model") or sent.model, given=given, sent=sent,
            task_id=data.get("task_id"), request_id=data.get("request_id"), status=data.get("status") or "SUCCEEDED",
            submit_time=data.get("submit_time"), end_time=data.get("end_time"), created_at=data.get("created_at"),
            usage=data.get("usage"), billed_images=int(data.get("billed_images") or 0),
            cost_yuan=float(data.get("cost_yuan") or 0.0), elapsed_s=float(data.get("elapsed_s") or 0.0),
            warnings=tuple(data.get("warnings") or ()), replayed=bool(data.get("replayed")),
            images=tuple(ImageProvenance.from_dict(im) for im in data.get("images") or ()),
            wanx_nb_version=data.get("wanx_nb_version") or "unknown", service=data.get("service"),
            entry_id=data.get("entry_id"), run_id=data.get("run_id"), mode=data.get("mode"),
            recorded_at=data.get("recorded_at"), schema=schema,
        )  # fmt: skip


def _from_schema_1(data: dict[str, Any]) -> dict[str, Any]:
    """The earlier shapes as schema-2 keys: a result record ("images" list, canonical "request") or a
    PNG chunk (the image's fields at the top level, "sent"/"given", "billed_images", "price_yuan")."""
    out = dict(data)
    if data.get("sent"):
        out["request"] = data["sent"]
    if "images" not in data and data.get("index") is not None:
        out["images"] = [{k: data.get(k) for k in ("index", "seed", "size", "orig_prompt", "actual_prompt")}]
    usage = data.get("usage")
    if not data.get("billed_images"):
        if isinstance(usage, dict) and "image_count" in usage:
            out["billed_images"] = usage["image_count"]
        else:
            out["billed_images"] = sum(1 for im in out.get("images") or () if not im.get("code"))
    if "cost_yuan" not in data and data.get("price_yuan") is not None:
        out["cost_yuan"] = round(float(data["price_yuan"]) * int(out["billed_images"] or 0), 4)
    if not data.get("created_at") and data.get("entry_created_at"):
        out["created_at"] = data["entry_created_at"]
    return out
