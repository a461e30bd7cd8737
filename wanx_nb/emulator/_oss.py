"""The emulated object store (OSS): upload policies and PostObject uploads, and signed result URLs.

Signatures are HMAC-SHA1 over the same string-to-sign shape as OSS's query-string signing, keyed by
a secret derived from the emulator's seed, so a client that rewrites or leaks a URL is caught.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import quote

from PIL import Image

from .._registry import ModelSpec
from . import _errors as errors
from ._clock import UTC8
from ._routes import RESULTS_PREFIX
from ._settings import EmulatorSettings

__all__ = [
    "MAX_UPLOAD_MB",
    "OSS_ACCESS_KEY_ID",
    "ObjectStore",
    "Policy",
    "UPLOAD_ACCESS_KEY_ID",
    "Upload",
]

OSS_ACCESS_KEY_ID = "emulator"
UPLOAD_ACCESS_KEY_ID = "LTAI-emulator-upload"
MAX_UPLOAD_MB = 1024
_RESULT_RE = re.compile(rf"{RESULTS_PREFIX}/\d{{8}}/([0-9a-f-]{{36}})-(\d+)\.png")


@dataclass
class Policy:
    """An upload policy issued by GET /uploads?action=getPolicy."""

    account: str
    model: str
    upload_dir: str
    policy: str
    signature: str
    expires_at: float


@dataclass
class Upload:
    """A file uploaded to the emulated OSS, usable as oss://<key> by its account and model."""

    account: str
    model: str
    key: str
    data: bytes = field(repr=False)
    content_type: str
    expires_at: float


def _oss_time(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class ObjectStore:
    """Uploads, policies and URL signing. The caller (`Backend`) holds the lock around every call."""

    def __init__(self, settings: EmulatorSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self._secret = hashlib.sha256(f"wanx_nb-emulator:{settings.seed}".encode()).digest()
        self.uploads: dict[str, Upload] = {}
        self.policies: dict[str, Policy] = {}

    def sign(self, text: str) -> str:
        return base64.b64encode(hmac.new(self._secret, text.encode(), hashlib.sha1).digest()).decode()

    # Result URLs ----------------------------------------------------------------------------------

    def result_path(self, task_id: str, index: int, end: float) -> str:
        """The signed path and query of image `index` (0-based); the URL's file name is 1-based."""
        day = datetime.fromtimestamp(end, UTC8).strftime("%Y%m%d")
        path = f"{RESULTS_PREFIX}/{day}/{task_id}-{index + 1}.png"
        expires = math.ceil(end + self.settings.url_ttl)  # whole seconds, never shorter than url_ttl
        signature = quote(self.sign(f"GET\n{expires}\n{path}"), safe="")
        return f"{path}?Expires={expires}&OSSAccessKeyId={OSS_ACCESS_KEY_ID}&Signature={signature}"

    def check_result_url(self, path: str, query: Mapping[str, str], *, has_authorization: bool) -> tuple[str, int]:
        """(task id, 0-based index) named by a signed result URL, or the OSS error the real store gives."""
        if has_authorization:
            # A request carrying both an Authorization header and a URL signature is refused by the
            # object store; here it also catches clients that leak the API key to the image host.
            raise errors.oss_invalid_argument(
                "Only one auth mechanism allowed; the Signature query parameter or the Authorization header."
            )
        expires, signature = query.get("Expires"), query.get("Signature")
        if not expires or not signature or query.get("OSSAccessKeyId") != OSS_ACCESS_KEY_ID:
            raise errors.oss_access_denied("You have no right to access this object because of bucket acl.")
        if not hmac.compare_digest(signature, self.sign(f"GET\n{expires}\n{path}")):
            raise errors.oss_signature_does_not_match()
        now = self.clock()
        if not expires.isdigit() or int(expires) < now:
            raise errors.oss_access_denied(
                "Request has expired.",
                Expires=_oss_time(int(expires) if expires.isdigit() else 0),
                ServerTime=_oss_time(now),
            )
        match = _RESULT_RE.fullmatch(path)
        if match is None:
            raise errors.oss_no_such_key()
        return match.group(1), int(match.group(2)) - 1

    # Uploads --------------------------------------------------------------------------------------

    def issue_policy(self, account: str, account_hash: str, spec: ModelSpec, upload_id: str) -> Policy:
        """An upload policy for `spec`'s model, valid 300 s, like GET /uploads?action=getPolicy."""
        now = self.clock()
        day = datetime.fromtimestamp(now, UTC8).strftime("%Y-%m-%d")
        upload_dir = f"dashscope-instant/{account_hash}/{day}/{upload_id}"
        expires_at = now + 300
        document = {
            "expiration": _oss_time(expires_at),
            "conditions": [
                ["content-length-range", 0, MAX_UPLOAD_MB * 1024 * 1024],
                ["starts-with", "$key", upload_dir],
            ],
        }
        encoded = base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()
        policy = Policy(account, spec.name, upload_dir, encoded, self.sign(encoded), expires_at)
        self.policies[encoded] = policy
        return policy

    def store_upload(self, fields: Mapping[str, str], data: bytes | None, content_type: str | None) -> Upload:
        """Accept an OSS PostObject form checked against a policy we issued."""
        missing = [f for f in ("OSSAccessKeyId", "Signature", "policy", "key") if not fields.get(f)]
        if missing or data is None:
            raise errors.oss_invalid_argument(
                f"Missing form fields: {', '.join(missing + ([] if data is not None else ['file']))}."
            )
        if fields["OSSAccessKeyId"] != UPLOAD_ACCESS_KEY_ID or not hmac.compare_digest(
            fields["Signature"], self.sign(fields["policy"])
        ):
            raise errors.oss_signature_does_not_match()
        now = self.clock()
        policy = self.policies.get(fields["policy"])
        if policy is None or policy.expires_at < now:
            raise errors.oss_access_denied("Invalid according to Policy: Policy expired.")
        key = fields["key"]
        if not key.startswith(policy.upload_dir + "/"):
            condition = f'["starts-with", "$key", "{policy.upload_dir}"]'
            raise errors.oss_access_denied(f"Invalid according to Policy: Policy Condition failed: {condition}")
        if len(data) > MAX_UPLOAD_MB * 1024 * 1024:
            raise errors.oss_entity_too_large()
        if fields.get("x-oss-forbid-overwrite", "false").lower() == "true" and key in self.uploads:
            raise errors.oss_file_already_exists()
        upload = Upload(
            account=policy.account,
            model=policy.model,
            key=key,
            data=data,
            content_type=fields.get("x-oss-content-type") or content_type or "application/octet-stream",
            expires_at=now + self.settings.upload_ttl,
        )
        self.uploads[key] = upload
        return upload

    def resolve_reference(
        self, account: str, spec: ModelSpec, url: str | None, oss_resolve: bool, now: float
    ) -> bytes | str | None:
        """The reference image a create names: uploaded bytes for oss://, the URL itself for http(s)."""
        if url is None:
            return None
        if url.startswith("oss://"):
            if not oss_resolve:
                raise errors.invalid_url(
                    f"{url} is an oss:// URL; send the header X-DashScope-OssResourceResolve: enable to use it."
                )
            upload = self.uploads.get(url[len("oss://") :])
            if upload is None or upload.account != account or upload.model != spec.name or upload.expires_at < now:
                raise errors.invalid_parameter(
                    f"Failed to resolve {url}: the file does not exist, has expired (uploads last 48 h), "
                    f"or was uploaded by another account or for another model than {spec.name}."
                )
            try:
                with Image.open(io.BytesIO(upload.data)) as img:
                    img.verify()
            except Exception:
                raise errors.unsupported_file_format(f"{url} is not a readable image.") from None
            return upload.data
        if not url.startswith(("http://", "https://")) or not url.isascii() or any(c.isspace() for c in url):
            # The V1 reference says the URL must not contain Chinese characters (§2.3).
            raise errors.invalid_url(f"{url!r} is not an http(s) or oss:// URL without spaces or non-ASCII characters.")
        # Offline, a public URL cannot be fetched; the renderer derives a stand-in from the URL itself.
        return url

    def prune(self, now: float) -> None:
        for key in [k for k, u in self.uploads.items() if u.expires_at < now]:
            del self.uploads[key]
        for key in [k for k, p in self.policies.items() if p.expires_at < now]:
            del self.policies[key]
