"""Size rules as data, and the pure functions every surface shares: parse, check, describe, adapt.

One `SizeRule` per model (in `_registry`) says which sizes the service takes: a fixed list, per-side
ranges, a total-pixel band with aspect-ratio limits, named tiers ("1K", "2K"), or a mix. The client's
validation, the panel's controls, the grid's per-model adaptation and the emulator all ask the same
rule, so they cannot drift apart.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["SizeRule", "parse_wh"]

_WH_RE = re.compile(r"^\s*(\d{1,6})\s*[*xX×]\s*(\d{1,6})\s*$")
_STEP = 16  # adapted sizes are multiples of 16, as every documented size is


def parse_wh(size: str) -> tuple[int, int] | None:
    """(width, height) of "W*H" (also "WxH", "W×H", spaces around), or None."""
    match = _WH_RE.match(size) if isinstance(size, str) else None
    return (int(match.group(1)), int(match.group(2))) if match else None


@dataclass(frozen=True)
class SizeRule:
    """Which sizes a model takes. A size passes when it matches any part of the rule.

    Parameters:
        fixed: sizes the service lists ("1664*928", ...).
        side_range: (min, max) pixels of each side, for free W*H sizes.
        pixel_range: (min, max) of W*H, for free sizes ruled by area.
        aspect_range: (min, max) of W/H, with `pixel_range`; None: any ratio.
        tiers: named sizes sent as-is ("1K", "2K", "4K"), each with the square size it stands for.
        default: the size the service uses when none is sent.
        optional: the model picks a size itself when none is sent (qwen-image-3.0).
        deferred: a size outside the rule is accepted on create and the task then FAILS (wanx-v1),
            instead of the create being refused.
    """

    fixed: tuple[str, ...] = ()
    side_range: tuple[int, int] | None = None
    pixel_range: tuple[int, int] | None = None
    aspect_range: tuple[float, float] | None = None
    tiers: tuple[tuple[str, str], ...] = ()
    default: str = "1024*1024"
    optional: bool = False
    deferred: bool = False

    @property
    def free(self) -> bool:
        """Whether sizes outside the fixed list and the tiers can pass."""
        return self.side_range is not None or self.pixel_range is not None

    @property
    def tier_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.tiers)

    def dimensions(self, size: str) -> tuple[int, int] | None:
        """(width, height) a size stands for: a tier's square, or the parsed W*H."""
        for name, wh in self.tiers:
            if isinstance(size, str) and size.strip().upper() == name:
                return parse_wh(wh)
        return parse_wh(size)

    def problem(self, size: str) -> str | None:
        """None when the service takes `size`, else what it takes instead (for an error message)."""
        if isinstance(size, str) and size.strip().upper() in self.tier_names:
            return None
        parsed = parse_wh(size)
        if parsed is None:
            return f"a size written W*H, e.g. {self.default}; {self.describe()}"
        w, h = parsed
        if f"{w}*{h}" in self.fixed or self._free_ok(w, h):
            return None
        return self.describe()

    def _free_ok(self, w: int, h: int) -> bool:
        if not self.free or w <= 0 or h <= 0:
            return False
        if self.side_range is not None:
            lo, hi = self.side_range
            if not (lo <= w <= hi and lo <= h <= hi):
                return False
        if self.pixel_range is not None:
            lo, hi = self.pixel_range
            if not lo <= w * h <= hi:
                return False
        if self.aspect_range is not None:
            a, b = self.aspect_range
            if not a <= w / h <= b:
                return False
        return True

    def describe(self) -> str:
        """The rule in words, for errors, tables and pickers."""
        parts: list[str] = []
        if self.fixed:
            parts.append("one of " + ", ".join(self.fixed))
        if self.tiers:
            parts.append(" / ".join(self.tier_names))
        free: list[str] = []
        if self.side_range is not None:
            free.append(f"each side between {self.side_range[0]} and {self.side_range[1]} pixels")
        if self.pixel_range is not None:
            lo, hi = self.pixel_range
            free.append(f"W*H between {lo} and {hi} pixels")
        if self.aspect_range is not None:
            a, b = self.aspect_range
            free.append(f"aspect ratio between 1:{_ratio(1 / a)} and {_ratio(b)}:1")
        if free:
            parts.append("W*H with " + " and ".join(free))
        text = " or ".join(parts)
        return text + ("; omit it to let the model choose" if self.optional else "")

    def adapt(self, size: str) -> str:
        """The allowed size closest to `size` in aspect ratio, then area; `size` itself when allowed.

        For a grid across model families: one requested size becomes what each model takes.
        """
        if self.problem(size) is None:
            if isinstance(size, str) and size.strip().upper() in self.tier_names:
                return size.strip().upper()
            w, h = parse_wh(size) or (0, 0)
            return f"{w}*{h}"
        parsed = self.dimensions(size)
        if parsed is None or parsed[0] <= 0 or parsed[1] <= 0:
            return self.default
        w, h = parsed
        candidates = list(self.fixed)
        if self.free:
            free = self._fit(w, h)
            if free is not None:
                candidates.append(free)
        if not candidates:
            return self.default
        want = math.log(w / h)
        return min(candidates, key=lambda c: _distance(c, want, w * h))

    def _fit(self, w: int, h: int) -> str | None:
        """A free size with `w/h`'s ratio (clamped) and area (clamped), on the 16-pixel grid."""
        ratio = w / h
        if self.aspect_range is not None:
            ratio = min(max(ratio, self.aspect_range[0]), self.aspect_range[1])
        area = float(w * h)
        if self.pixel_range is not None:
            area = min(max(area, self.pixel_range[0]), self.pixel_range[1])
        width, height = math.sqrt(area * ratio), math.sqrt(area / ratio)
        if self.side_range is not None:
            lo, hi = self.side_range
            scale = max(lo / min(width, height), 1.0) * min(hi / max(width, height), 1.0)
            width, height = width * scale, height * scale
        # Try the grid points around the ideal; keep the valid one closest to it.
        options = [
            (gw, gh)
            for gw in (math.floor(width / _STEP) * _STEP, math.ceil(width / _STEP) * _STEP)
            for gh in (math.floor(height / _STEP) * _STEP, math.ceil(height / _STEP) * _STEP)
            if gw > 0 and gh > 0 and self._free_ok(gw, gh)
        ]
        if not options:
            return None
        gw, gh = min(options, key=lambda o: abs(o[0] - width) + abs(o[1] - height))
        return f"{gw}*{gh}"


def _distance(size: str, want_log_ratio: float, want_area: int) -> tuple[float, float]:
    w, h = parse_wh(size) or (1, 1)
    return (round(abs(math.log(w / h) - want_log_ratio), 6), abs(math.log(w * h / want_area)))


def _ratio(value: float) -> str:
    return f"{value:g}" if abs(value - round(value)) > 1e-9 else str(round(value))
