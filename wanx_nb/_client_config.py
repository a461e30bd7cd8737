"""Where a client's calls go (`resolve_endpoint`): DashScope in a region, a given base URL, or the emulator.

From the arguments, else the environment: DASHSCOPE_API_KEY, DASHSCOPE_HTTP_BASE_URL, DASHSCOPE_REGION
and DASHSCOPE_WORKSPACE_ID. With no key, no base URL and no transport the in-process emulator serves
every call, and the first such client logs that it does. The emulator is imported only then.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Literal
from typing import Protocol as Structural  # `Protocol` in the client's modules is the wire protocol

import httpx

from ._auth import APIKeyAuth
from ._constants import DEFAULT_REGION, ENV_API_KEY, ENV_BASE_URL, ENV_REGION, ENV_WORKSPACE, uses_emulator
from ._exceptions import ConfigurationError
from ._registry import WORKSPACE_REGIONS, get_region, workspace_base_url

__all__ = ["Endpoint", "InProcessService", "resolve_endpoint"]

log = logging.getLogger("wanx_nb")

# The emulator checks for a Bearer token but not its value; this one is shaped so `redact()` hides it.
_EMULATOR_KEY = "sk-wanx-nb-emulator"
_emulator_notice_logged = False


class InProcessService(Structural):
    """What the client needs of `wanx_nb.emulator.Emulator` (imported only when used): a transport to it.

    Its `settings.time_scale`, when it has one, scales the durations the client expects.
    """

    def transport(self) -> httpx.AsyncBaseTransport: ...


@dataclass(frozen=True)
class Endpoint:
    """The resolved configuration. `auth` is the only holder of the key (its repr is redacted)."""

    backend: Literal["emulator", "dashscope"]
    base_url: str  # without a trailing slash
    region: str
    workspace: str | None
    auth: APIKeyAuth
    transport: httpx.AsyncBaseTransport | None
    emulator: InProcessService | None
    time_scale: float  # the emulator's: its tasks take this fraction of the real durations


def resolve_endpoint(
    auth: APIKeyAuth | None,
    *,
    base_url: str | None,
    region: str | None,
    workspace: str | None,
    transport: httpx.AsyncBaseTransport | None,
    emulator: InProcessService | None,
    workspace_domain: bool,
) -> Endpoint:
    """The endpoint `AsyncWanxClient(...)` talks to; ConfigurationError saying what to set otherwise."""
    # The environment is read by helpers: a Verbose traceback shows the values on the lines around
    # the error, and `os.environ` there would show the key.
    if auth is None:
        auth = _key_from_environment()
    if auth is not None:
        auth.check()
    base = _base_url(base_url, "base_url=") or _base_url(_setting(ENV_BASE_URL), ENV_BASE_URL)
    region, shared_host = _region_name(region or _setting(ENV_REGION) or DEFAULT_REGION)
    workspace = _workspace_id(workspace or _setting(ENV_WORKSPACE))
    workspace_domain = workspace_domain or not shared_host
    if workspace_domain and base is None and transport is None and emulator is None:
        if not workspace:
            raise ConfigurationError(
                f"region {region!r} is reached through a workspace-dedicated domain: pass workspace='ws-...' "
                f"(or set {ENV_WORKSPACE})"
            )
        try:
            base = workspace_base_url(region, workspace)
        except (KeyError, ValueError) as exc:
            raise ConfigurationError(str(exc.args[0])) from None

    if emulator is None and uses_emulator("set" if auth else None, base, transport=transport):
        emulator = _default_emulator()
    if emulator is not None:
        from .emulator import EMULATOR_BASE_URL

        time_scale = float(getattr(getattr(emulator, "settings", None), "time_scale", 1.0))
        return Endpoint(
            "emulator", EMULATOR_BASE_URL.rstrip("/"), region, workspace, auth or APIKeyAuth(_EMULATOR_KEY),
            transport or emulator.transport(), emulator, time_scale,
        )
    if auth is None:
        raise ConfigurationError(
            f"no API key: set {ENV_API_KEY} or pass api_key=...; or pass neither a key nor a "
            "base_url to use the offline emulator"
        )
    base = base or get_region(region).base_url
    return Endpoint("dashscope", base.rstrip("/"), region, workspace, auth, transport, None, 1.0)


def _key_from_environment() -> APIKeyAuth | None:
    key = os.environ.get(ENV_API_KEY)
    return APIKeyAuth(key) if key else None


def _setting(name: str) -> str | None:
    return os.environ.get(name) or None


def _base_url(value: str | None, source: str) -> str | None:
    """`value` when the client can send to it: http(s), a host, a port in range, no query, no user:password.
    Refused before any call (sent, it would fail as the create goes out, which must count as possibly
    billed). A user or password in the URL is refused, and never repeated: it may be the key itself,
    which would otherwise be kept with every result as the service's name."""
    if value is None:
        return None
    text = value.strip()
    try:
        url = None if any(c.isspace() for c in text) else httpx.URL(text)
    except httpx.InvalidURL:
        url = None
    if url is not None and url.userinfo or _USERINFO.match(text):
        # Rebound before raising: a verbose traceback prints this frame's locals, and they may hold a key.
        value = text = _USERINFO.sub(r"\1…@", value)
        url = None
        raise ConfigurationError(
            f"{source} {value!r} has a user or password before '@': the key goes in {ENV_API_KEY} (or api_key=), "
            "never in the URL"
        )
    shown = repr(value)
    if url is not None and url.port is not None and not 0 < url.port < 65536:
        raise ConfigurationError(f"{source} {shown}: port {url.port} is out of range: use 1 to 65535")
    if url is None or url.scheme not in ("http", "https") or not url.host or url.query or url.fragment:
        raise ConfigurationError(
            f"{source} {shown} is not a base URL: use http(s)://host[:port]/api/v1, e.g. "
            f"https://dashscope.aliyuncs.com/api/v1 or a served emulator's http://127.0.0.1:8000/api/v1"
        )
    return text


# "scheme://user:password@" at the start of a URL, whether or not the rest parses.
_USERINFO = re.compile(r"^(\s*[A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def _workspace_id(value: str | None) -> str | None:
    """The workspace id without surrounding whitespace; one that cannot go in a header is refused before
    any call (sent, it would fail as the create goes out, which must count as possibly billed)."""
    value = value.strip() if value else None
    if value and not all("!" <= c <= "~" for c in value):
        raise ConfigurationError(
            f"workspace={value!r} ({ENV_WORKSPACE}): a workspace id is letters, digits and dashes, e.g. 'ws-1a2b3c'"
        )
    return value or None


def _region_name(name: str) -> tuple[str, bool]:
    """(region name, whether it has a shared domain); a ConfigurationError naming the regions otherwise."""
    try:
        return get_region(name).name, True
    except KeyError:
        if name.lower() in WORKSPACE_REGIONS:
            return name.lower(), False
    known = ", ".join(dict.fromkeys(("beijing", "singapore", "virginia", *WORKSPACE_REGIONS)))
    raise ConfigurationError(f"unknown region {name!r}; use one of {known}") from None


def _default_emulator() -> InProcessService:
    global _emulator_notice_logged
    from .emulator import default_emulator

    if not _emulator_notice_logged:
        _emulator_notice_logged = True
        log.info(
            "wanx_nb: no DashScope API key found (%s), so the offline emulator answers every call; "
            "its images are placeholders. Set %s to use the real service.",
            ENV_API_KEY, ENV_API_KEY,
        )
    try:
        return default_emulator()
    except ValueError as exc:  # an environment setting of the emulator it names (time scale)
        raise ConfigurationError(str(exc)) from None
