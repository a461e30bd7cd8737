"""Temporary uploads on the wire (§1.6), without I/O: the policy request, its answer and the OSS form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._exceptions import APIError
from ._protocol import UPLOAD_PATH, WireRequest, excerpt, optional_int, request_headers

__all__ = ["UploadPolicy", "build_policy", "parse_policy", "upload_form"]


def build_policy(model: str, *, workspace: str | None = None) -> WireRequest:
    """GET the temporary-upload policy for files used with `model` (§1.6, Beijing only)."""
    return WireRequest("GET", UPLOAD_PATH, request_headers(workspace), {"action": "getPolicy", "model": model})


@dataclass(frozen=True)
class UploadPolicy:
    """The temporary-upload policy (`GET /uploads?action=getPolicy`, the `data` object, §1.6)."""

    upload_host: str
    upload_dir: str
    policy: str
    signature: str
    oss_access_key_id: str
    x_oss_object_acl: str = "private"
    x_oss_forbid_overwrite: str = "true"
    expire_in_seconds: int | None = None
    max_file_size_mb: float | None = None

    def __repr__(self) -> str:
        return f"<UploadPolicy {self.upload_host} {self.upload_dir}>"


def parse_policy(body: Any) -> UploadPolicy:
    """The policy from `{"data": {...}, "request_id": ...}` (an `output` wrapper is accepted too)."""
    data = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(data, Mapping) and isinstance(body, Mapping):
        data = body.get("output")
    if not isinstance(data, Mapping):
        raise APIError(f"unexpected upload-policy response: {excerpt(body)}", code="InvalidResponse")
    try:
        return UploadPolicy(
            upload_host=str(data["upload_host"]),
            upload_dir=str(data["upload_dir"]).rstrip("/"),
            policy=str(data["policy"]),
            signature=str(data["signature"]),
            oss_access_key_id=str(data["oss_access_key_id"]),
            x_oss_object_acl=str(data.get("x_oss_object_acl", "private")),
            x_oss_forbid_overwrite=str(data.get("x_oss_forbid_overwrite", "true")),
            expire_in_seconds=optional_int(data.get("expire_in_seconds")),
            max_file_size_mb=data.get("max_file_size_mb"),
        )
    except KeyError as exc:
        raise APIError(f"upload policy lacks {exc.args[0]!r}", code="InvalidResponse") from None


def upload_form(policy: UploadPolicy, filename: str, content_type: str | None) -> tuple[str, dict[str, str]]:
    """(object key, form fields in the SDK's order) for the multipart POST to `upload_host` (§1.6).

    The file itself goes last, as the field `file`. The API key is never part of this form.
    """
    key = f"{policy.upload_dir}/{filename}"
    fields = {
        "OSSAccessKeyId": policy.oss_access_key_id,
        "Signature": policy.signature,
        "policy": policy.policy,
        "key": key,
        "x-oss-object-acl": policy.x_oss_object_acl,
        "x-oss-forbid-overwrite": policy.x_oss_forbid_overwrite,
        "success_action_status": "200",
        "x-oss-content-type": content_type or "application/octet-stream",
    }
    return key, fields
