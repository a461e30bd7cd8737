"""Re-run a manifest's generations and report which images now differ."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._models import GenerationResult
from ._request import GenerationRequest
from ._store_queries import MANIFEST_FORMAT

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["RerunReport", "check_manifest_format", "rerun_manifest"]


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


def rerun_manifest(manifest: dict[str, Any], *, session: Session) -> RerunReport:
    """Run every generation of `manifest` again through `session` and compare image hashes."""
    check_manifest_format(manifest)
    entries = manifest.get("generations", [])
    requests = [GenerationRequest.from_dict(e["request"]) for e in entries]
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
