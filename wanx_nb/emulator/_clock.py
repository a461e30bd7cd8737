"""Time as the service shows it, and the fake clock that tests move by hand."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

__all__ = [
    "FakeClock",
    "UTC8",
    "epoch_ms",
    "format_time",
]

# The service reports wall-clock times in China Standard Time with no zone marker (§3.2, §6.13).
UTC8 = timezone(timedelta(hours=8), "UTC+08:00")
def format_time(t: float) -> str:
    """`YYYY-MM-DD HH:mm:ss.SSS` in UTC+8, as the service writes submit/scheduled/end times."""
    ms = math.floor(t * 1000 + 1e-6)
    return datetime.fromtimestamp(ms // 1000, UTC8).strftime("%Y-%m-%d %H:%M:%S") + f".{ms % 1000:03d}"


def epoch_ms(t: float) -> int:
    return math.floor(t * 1000 + 1e-6)


class FakeClock:
    """A clock that only moves when told to: `clock()` reads it, `clock.advance(s)` moves it."""

    def __init__(self, start: float) -> None:
        self._start = float(start)
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: advance({seconds!r})")
        self._now += seconds
        return self._now

    def reset(self) -> None:
        self._now = self._start

    def __repr__(self) -> str:
        return f"<FakeClock {format_time(self._now)} UTC+8>"
