"""Re-run a manifest's generations and report which images now differ."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_args, get_type_hints

from ._exceptions import ValidationError
from ._models import GenerationResult
from ._request import GenerationRequest
from ._store_queries import MANIFEST_FORMAT
from ._validation import validate

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["RerunReport", "check_manifest", "check_manifest_format", "rerun_manifest"]

# Each request field and the JSON types it takes (bool is an int to Python, never to a manifest).
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    name: tuple(t for t in get_args(hint) or (hint,) if t is not type(None))
    for name, hint in get_type_hints(GenerationRequest).items()
}
_KINDS = {str: "a text", int: "a whole number", float: "a number", bool: "true or false"}
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class RerunReport:
    """Per image of the manifest: "same", "differs", "missing" (no image now) or "failed" (request failed)."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def all_same(self) -> bool:
        return all(r["outcome"] == "same" for r in self.rows)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r["outcome"]] = out.get(r["outcome"], 0) + 1
        return out

    def text(self) -> str:
        lines = [f"{r['outcome']:8} {r['model']:20} seed {r['seed']}  {r['detail']}" for r in self.rows]
        summary = ", ".join(f"{v} {k}" for k, v in sorted(self.counts().items())) or "nothing to re-run"
        return "\n".join(lines + [summary])


def check_manifest_format(manifest: dict[str, Any]) -> None:
    """A ValueError for a manifest format this version does not read (a newer wanx_nb wrote it): its
    requests may mean more than this version would send, and re-running them is paid, so never guess."""
    written = manifest.get("wanx_nb_manifest", MANIFEST_FORMAT)  # a hand-made one may leave it out
    if type(written) is not int or not 1 <= written <= MANIFEST_FORMAT:
        raise ValueError(
            f"is format {written!r}, and this wanx_nb reads formats 1 to {MANIFEST_FORMAT}: upgrade wanx_nb "
            "(a newer one wrote it)"
        )


def check_manifest(manifest: Any) -> list[GenerationRequest]:
    """The request of each generation, once every one has all that re-running and comparing it needs.

    Re-running is paid, so a generation is refused before anything is sent when its request has a
    field this version does not send (it would be dropped) or a value of the wrong type, breaks its
    model's rules, or has no model and seed to make the same images again; or when it has no images to
    compare with (each an `index` of the request and its `sha256`, null for one that had failed).
    A ValueError names the generation (from 1), the image (from 1) and the field.
    """
    if not isinstance(manifest, dict) or not isinstance(manifest.get("generations"), list):
        raise ValueError('has no "generations" list')
    check_manifest_format(manifest)
    return [_checked(entry, f"generation {i}") for i, entry in enumerate(manifest["generations"], 1)]


def _checked(entry: Any, where: str) -> GenerationRequest:
    fields = entry.get("request") if isinstance(entry, dict) else None
    if not isinstance(fields, dict) or not isinstance(fields.get("prompt"), str):
        raise ValueError(f'{where} has no "request" with a "prompt"')
    unknown = sorted(set(fields) - set(_FIELD_TYPES))
    if unknown:
        raise ValueError(f"{where}: request has {', '.join(map(repr, unknown))}, not a request parameter; "
                         f"a request takes {', '.join(_FIELD_TYPES)}")  # fmt: skip
    for name, value in fields.items():
        allowed = _FIELD_TYPES[name]
        if value is not None and not _has_type(value, allowed):
            raise ValueError(f"{where}: request {name}={value!r} is not {_KINDS.get(allowed[0], allowed[0].__name__)}")
    request = GenerationRequest.from_dict(fields)
    try:
        validate(request)
    except ValidationError as exc:
        raise ValueError(f"{where}: {exc}") from None
    for name in ("model", "seed"):  # without them the service makes other images: nothing to compare
        if fields.get(name) is None:
            raise ValueError(f'{where}: request has no "{name}", so its images cannot be made again to compare')
    _check_images(entry.get("images"), request, where)
    return request


def _has_type(value: Any, allowed: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # true is an int to Python, never a seed or an n
        return bool in allowed
    return isinstance(value, allowed) or (float in allowed and type(value) is int)


def _check_images(images: Any, request: GenerationRequest, where: str) -> None:
    if not isinstance(images, list) or not images:
        raise ValueError(f'{where} has no "images" to compare with (a list of {{"index": ..., "sha256": ...}}, '
                         "as `wanx-nb export` writes)")  # fmt: skip
    seen: set[int] = set()
    n = request.effective_n
    for i, image in enumerate(images, 1):
        at = f"{where}, image {i}"
        if not isinstance(image, dict):
            raise ValueError(f"{at} is {image!r}, not an object with an index and a sha256")
        index = image.get("index")
        if index is None:
            raise ValueError(f'{at} has no "index" (which image of the request it is: 0 to {n - 1})')
        if type(index) is not int or not 0 <= index < n:
            raise ValueError(f"{at}: index={index!r} is not an image of the request: use a whole number 0 to {n - 1}")
        if index in seen:
            raise ValueError(f"{at}: index={index} is listed twice")
        seen.add(index)
        sha = image.get("sha256")
        if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
            raise ValueError(f"{at}: sha256={sha!r} is not a SHA-256 (64 hex digits) nor null (an image that failed)")
        if image.get("seed") is not None and type(image["seed"]) is not int:
            raise ValueError(f"{at}: seed={image['seed']!r} is not a whole number")


def rerun_manifest(manifest: dict[str, Any], *, session: Session) -> RerunReport:
    """Run every generation of `manifest` again through `session` and compare image hashes.

    The manifest is checked whole first (`check_manifest`): a ValueError, and nothing is sent."""
    requests = check_manifest(manifest)
    entries = manifest["generations"]
    results = session.generate_many(requests)
    report = RerunReport()
    for entry, request, result in zip(entries, requests, results):
        for old in entry["images"]:
            row = {"model": request.model, "seed": old.get("seed"), "index": old["index"], "old": old.get("sha256")}
            if not isinstance(result, GenerationResult):
                row.update(outcome="failed", new=None, detail=str(result).splitlines()[0])
            else:
                new = next((im for im in result.images if im.index == old["index"]), None)
                row["new"] = new.sha256 if new else None
                if new is None or new.sha256 is None:
                    row.update(outcome="missing", detail=(new.code if new else "no such image") or "no image")
                elif old.get("sha256") is None:
                    row.update(outcome="differs", detail="the recorded image had failed")
                elif new.sha256 == old["sha256"]:
                    row.update(outcome="same", detail=new.sha256[:12])
                else:
                    row.update(outcome="differs", detail=f"{old['sha256'][:12]} -> {new.sha256[:12]}")
            report.rows.append(row)
    return report
