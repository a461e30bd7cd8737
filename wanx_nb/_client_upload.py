"""Uploading a local reference image: a policy from the API, then a form POST to the upload host.

The upload host gets the file through the client without auth: it never receives the API key.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
from pathlib import Path

from ._client_http import Sender, response_json
from ._exceptions import APIStatusError, ConfigurationError
from ._protocol import WireRequest
from ._protocol_upload import build_policy, parse_policy, upload_form
from ._registry import get_model, get_region

__all__ = ["upload"]

log = logging.getLogger("wanx_nb")


async def upload(
    api: Sender,
    files: Sender,
    path: str | os.PathLike[str],
    model: str,
    *,
    workspace: str | None,
    official_host: bool,
) -> str:
    """Upload `path` for `model` and return its `oss://` URL (see `AsyncWanxClient.upload`).

    `official_host`: `api` talks to the region's own DashScope URL, so the region's rules apply
    (only Beijing offers uploads); a proxy or the emulator is left to answer for itself.
    """
    local = Path(os.fspath(path).removeprefix("file://"))
    if not local.is_file():
        raise FileNotFoundError(f"no such file to upload: {str(local)!r}")
    if official_host and not get_region(api.region).supports_upload:
        raise ConfigurationError(
            f"temporary file upload exists only in the Beijing region, not {api.region}; "
            "pass ref_img as an http(s) URL instead"
        )
    try:
        wire_model = get_model(model).wire_name(api.region)
    except KeyError:
        wire_model = model
    policy_response = await api.request(build_policy(wire_model, workspace=workspace), kind="read")
    policy = parse_policy(response_json(policy_response))
    content = await asyncio.to_thread(local.read_bytes)
    content_type = mimetypes.guess_type(local.name)[0]
    key, fields = upload_form(policy, local.name, content_type)
    form = {"file": (local.name, content, content_type or "application/octet-stream")}
    wire = WireRequest("POST", policy.upload_host, {"Accept": "application/json"})
    try:
        await files.request(wire, kind="read", data=fields, files=form)
    except APIStatusError as exc:
        # The object key is unique per policy, so "already exists" means an earlier attempt landed.
        if not (exc.status_code == 409 and exc.code == "FileAlreadyExists"):
            raise
    log.debug("uploaded %s for %s as oss://%s", local.name, wire_model, key)
    return f"oss://{key}"
