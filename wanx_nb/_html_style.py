"""The inline styles of every HTML output, and the escaping helpers. Pure constants.

Inline styles only. JupyterLab drops `<style>` blocks (so classes have no CSS) in an untrusted
notebook, which is how every fresh clone opens; its sanitizer keeps a `style=` attribute whose
properties and values match its whitelist: no var(), no `inherit`/`currentColor` colours, `position`
without sticky, `word-break` without break-word. Text colour is never set, so it inherits the
theme's (light or dark); tints are semi-transparent so they read on both.
The `wanx-*` classes stay as hooks for tests and users' own CSS.
"""

from __future__ import annotations

import html

__all__ = [
    "BADGE_TEXTS",
    "BADGE_TINTS",
    "PHASE_TINTS",
    "S_BADGE",
    "S_CAP",
    "S_CELL",
    "S_FAILED",
    "S_GALLERY",
    "S_HEAD",
    "S_IMG",
    "S_LABEL",
    "S_MSG",
    "S_MUTED",
    "S_NOTICE",
    "S_PATH",
    "S_RESULT",
    "S_TABLE",
    "S_THUMB",
    "S_TILE",
    "S_WARN",
    "escape",
    "yuan",
]

_GREY = "rgba(128,128,128,0.45)"
S_RESULT = "font-size:12px;line-height:1.4;margin:4px 0"
S_HEAD = "margin:2px 0 6px"
S_GALLERY = "display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start"
S_TILE = f"margin:0;padding:4px;border:1px solid {_GREY};border-radius:4px;box-sizing:border-box;max-width:100%"
S_IMG = "display:block;max-width:100%;height:auto;border:0"
S_THUMB = "display:block;max-width:none;border:0"  # a fixed size, never squeezed by its table column
S_CAP = "font-size:11px;line-height:1.35;margin-top:4px;overflow-wrap:break-word"
S_MUTED = "opacity:0.75"
S_LABEL = "font-weight:bold;margin:0 0 4px;overflow-wrap:break-word"
S_PATH = "font-family:monospace;font-size:10px;word-break:break-all;opacity:0.75"
S_FAILED = (
    "margin:0;padding:6px;border:1px solid rgba(217,83,79,0.9);border-radius:4px;box-sizing:border-box;"
    "background-color:rgba(217,83,79,0.12);min-width:160px;max-width:400px"
)
S_NOTICE = (
    "margin:4px 0;padding:6px 8px;border:1px solid rgba(224,168,0,0.85);border-radius:4px;"
    "background-color:rgba(255,193,7,0.12);max-width:720px"
)
S_MSG = "margin:2px 0;white-space:pre-wrap;overflow-wrap:break-word"
S_WARN = "margin:4px 0;padding-left:18px"
S_TABLE = "border-collapse:collapse;font-size:12px"
S_CELL = f"padding:2px 8px;text-align:left;vertical-align:top;border-bottom:1px solid {_GREY}"
S_BADGE = "display:inline-block;padding:0 6px;margin-left:6px;border-radius:8px;font-size:11px;font-weight:normal;white-space:nowrap"
BADGE_TINTS = {
    "emulator": "background-color:rgba(255,193,7,0.25);border:1px solid rgba(224,168,0,0.85)",
    "replay": "background-color:rgba(13,110,253,0.18);border:1px solid rgba(13,110,253,0.7)",
}
PHASE_TINTS = {
    "failed": "background-color:rgba(217,83,79,0.18)",
    "done": "background-color:rgba(40,167,69,0.18)",
    "replayed": "background-color:rgba(40,167,69,0.18)",
    "reused": "background-color:rgba(40,167,69,0.18)",
}

BADGE_TEXTS = {
    "emulator": "emulator: not the real service",
    "replay": "replay: from the local store",
}


def escape(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def yuan(value: float) -> str:
    return f"¥{value:.2f}"
