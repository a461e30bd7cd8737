"""Text the `wanx-nb` command prints: control characters shown escaped, counts with their plural, and
the notice under what the emulator made."""

from __future__ import annotations

import os
import unicodedata

from ._constants import ENV_API_KEY

__all__ = ["counted", "emulator_notice", "terminal_safe"]

# Characters that reorder the text around them on screen ("Trojan Source"), though they print nothing.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def terminal_safe(text: str) -> str:
    """`text` with each control character written as Python writes it (ESC as `\\x1b`): a prompt could
    otherwise recolour, move or clear the terminal. Line breaks and tabs are kept; what is stored or
    sent is never changed, only what is printed."""
    return "".join(repr(c)[1:-1] if _is_control(c) else c for c in text)


def _is_control(char: str) -> bool:
    if char in "\n\t":
        return False
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI_CONTROLS


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """"1 cell", "2 cells", "0 cells" (`plural` for a noun that does not take an s)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def emulator_notice() -> str:
    """Said under anything the emulator made: why it answered (no key), or that a served one did."""
    which = f"the offline emulator (no {ENV_API_KEY} set)" if not os.environ.get(ENV_API_KEY) else (
        "a wanx_nb emulator at the base URL, not the real service"
    )
    return f"note: made by {which}: placeholder images, not model output"
