"""Timing decisions as pure functions: retry delays, what to retry, and when to poll.

Nothing here sleeps or reads a clock: callers pass `now`, `elapsed` and a random source in.

Retries (`retry_delay`, `should_retry_read`, `should_retry_submit`):
- Reads (poll, list, download, upload policy) are retried after a connection error or a 408, 429 or
  5xx answer. Submits are retried only when the server cannot have created a task: the connection
  was never made (`Failure.NOT_SENT`), or an explicit 429 / 503 rejection.
- Delay of retry k (0-based): `min(RETRY_INITIAL_DELAY * 2**k, RETRY_MAX_DELAY)` times a jitter in
  (0.75, 1.0]: 0.5, 1, 2, 4, 8, 8 ... s minus up to a quarter. A server `retry-after-ms` or
  `Retry-After` (seconds or an HTTP date) wins when it is at most RETRY_AFTER_CAP (60 s); a longer
  one means "give up now" (`retry_delay` returns None), since it is not worth blocking a cell for.

Polling (`next_poll_delay`, `DurationModel`): see `next_poll_delay`.
"""

from __future__ import annotations

import email.utils
import enum
import math
import random
from collections.abc import Callable, Mapping

from ._constants import POLL_MAX_DELAY, POLL_MIN_DELAY, RETRY_AFTER_CAP, RETRY_INITIAL_DELAY, RETRY_MAX_DELAY

__all__ = [
    "DurationModel",
    "Failure",
    "POLL_DUE_MARGIN",
    "POLL_GROWTH",
    "POLL_LEAD",
    "next_poll_delay",
    "parse_retry_after",
    "retry_delay",
    "should_retry_read",
    "should_retry_submit",
]

Rng = Callable[[], float]  # like random.random: a float in [0, 1)


class Failure(str, enum.Enum):
    """How a request failed without an HTTP answer (the client classifies transport errors)."""

    NOT_SENT = "not_sent"  # the connection was never made (refused, DNS, connect timeout): nothing reached the server
    AFTER_SENT = "after_sent"  # the request may have reached the server (read timeout, reset, broken response)
    FATAL = "fatal"  # a local mistake retrying cannot fix (unsupported protocol, bad URL)


def should_retry_read(status: int | None = None, *, failure: Failure | None = None) -> bool:
    """Reads are idempotent: retry connection problems and 408, 429 and 5xx answers."""
    if failure is not None:
        return failure is not Failure.FATAL
    return status is not None and (status in (408, 429) or status >= 500)


def should_retry_submit(status: int | None = None, *, failure: Failure | None = None) -> bool:
    """Retry a submit only when the server cannot have created (and billed) a task.

    That is: the connection was never made, or the server said 429 (throttled) or 503 (unavailable).
    A timeout or broken connection after sending, or any other status, is never retried.
    """
    if failure is not None:
        return failure is Failure.NOT_SENT
    return status in (429, 503)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks us to wait, from `retry-after-ms`, or `Retry-After` in seconds or as an
    HTTP date (which needs `now`, epoch seconds). None when absent or unreadable."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
            if math.isfinite(value):
                return max(value, 0.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
        return max(value, 0.0) if math.isfinite(value) else None
    except ValueError:
        pass
    if now is None:
        return None
    parsed = email.utils.parsedate_tz(raw)
    if parsed is None:
        return None
    return max(email.utils.mktime_tz(parsed) - now, 0.0)


def retry_delay(attempt: int, *, retry_after: float | None = None, rng: Rng = random.random) -> float | None:
    """Seconds to wait before retry number `attempt` (0 for the first retry), or None to give up.

    A server hint (`retry_after`) up to RETRY_AFTER_CAP is obeyed exactly; a longer hint returns None.
    Otherwise: exponential from RETRY_INITIAL_DELAY, capped at RETRY_MAX_DELAY, times a jitter factor
    in (0.75, 1.0] so concurrent clients do not retry in lockstep.
    """
    if retry_after is not None:
        if retry_after > RETRY_AFTER_CAP:
            return None
        return retry_after
    base = min(RETRY_INITIAL_DELAY * (2.0 ** max(attempt, 0)), RETRY_MAX_DELAY)
    return base * (1.0 - 0.25 * rng())


# ---- polling -----------------------------------------------------------------------------------

POLL_LEAD = 0.8  # sleep until 80% of the expected duration before the first real look
POLL_GROWTH = 0.1  # afterwards, wait 10% of the time elapsed so far
POLL_JITTER = 0.1  # +-10%, so the tasks of a batch do not poll in lockstep
# The look at the expected end is 1% after it. The task started when the create arrived, a one-way
# trip after we sent it; the poll's own one-way trip makes up for that, so the margin is for jitter.
POLL_DUE_MARGIN = 0.01


def next_poll_delay(
    elapsed: float, expected: float, attempt: int, *, queued: float = 0.0, rng: Rng | None = None
) -> float:
    """Seconds to sleep before the next poll of a task that is not finished yet.

    `elapsed` is the time since the task could have started running (the submit, or the last time it
    was seen PENDING); `expected` the duration we expect (model estimate times a learned correction,
    see `DurationModel`); `attempt` the number of polls made so far (informational: the rule needs
    only the times); `queued` how long the task has been seen waiting PENDING (0 once it runs).

    1. Before POLL_LEAD * expected (less its jitter): sleep until then (the jitter moves that point).
       The task is very unlikely to be done, so one sleep replaces the SDK's 1-2-4-5 s ladder.
    2. After it: poll every POLL_GROWTH * elapsed, clamped to [floor, POLL_MAX_DELAY]. Near
       the expected end that is about a tenth of the duration (lag <= ~10%); a task that runs long is
       polled less and less often, never less often than every POLL_MAX_DELAY (10 s, the docs' rate).
    3. While the task is queued (PENDING after the lead), it cannot end sooner than `expected` after
       it starts, so `elapsed` restarts at each PENDING sighting, and polls are also at least
       POLL_GROWTH * `queued` apart: a long queue is polled ever less often, and the fine-grained
       polling starts again once the task is seen RUNNING.
    4. No delay jumps over the expected end: when the next look would pass `(1 + POLL_DUE_MARGIN) *
       expected`, it happens there instead (not while queued: then the end is not known). With a
       learned duration a task that ends on time is seen a few percent of its duration late.
    5. Every delay gets +-10% jitter from `rng` (if given) and is at least the floor:
       min(POLL_MIN_DELAY, POLL_GROWTH * expected), so 0 when the task is expected to take no time;
       only the look at the expected end may come sooner.

    Example, wanx2.1-t2i-turbo (expected 12 s): polls at about 9.6, 10.6, 11.6, 12.12, 13.3 s...;
    a task done at 12.1 s is seen at 12.12 s after 4 GETs. The SDK's ladder (GETs at 0, 1, 2, 4, 6, 8,
    12, 16, 20... s) needs 8 GETs and sees it at 16 s. wanx2.1-t2i-plus with prompt_extend (28.5 s):
    22.8, 25.1, 27.6, 28.8 s... A task running 10 minutes late is polled every 10 s. A task queued
    for 60 s before its 12 s run: about 12 GETs, and its end is seen within ~1 s (without restarting
    at each PENDING sighting: ~23 GETs and ~6 s late). A 0.6 s task queued 60 s: ~38 GETs, intervals
    growing to 6 s while it waits.
    """
    # The floor keeps a tiny task from being polled in a tight loop, but never exceeds a tenth of the
    # expected duration: a 0.3 s task (an emulator at time_scale 0.01) is not seen 0.25 s late, and a
    # task expected to take no time at all is looked at at once.
    floor = min(POLL_MIN_DELAY, POLL_GROWTH * expected)
    jitter = 1.0 if rng is None else 1.0 + POLL_JITTER * (2.0 * rng() - 1.0)
    lead = POLL_LEAD * expected
    # The jitter moves the lead point itself (not the whole sleep, which may include a long queue), and
    # a look already within the jitter of the lead point counts as the lead look.
    if elapsed < (1.0 - POLL_JITTER) * lead:
        delay = lead * jitter - elapsed
    else:
        delay = min(max(POLL_GROWTH * elapsed, floor), POLL_MAX_DELAY) * jitter
    if queued > 0:
        delay = max(delay, min(POLL_GROWTH * queued, POLL_MAX_DELAY) * jitter)
    delay = max(delay, floor)
    due = (1.0 + POLL_DUE_MARGIN) * expected
    # Only from clearly before it: a look that landed there (up to clock rounding) is not repeated.
    if queued <= 0 and elapsed < due - 0.5 * POLL_DUE_MARGIN * expected and due < elapsed + delay:
        delay = due - elapsed  # one look just after the expected end
    return delay


class DurationModel:
    """Learns, per model, how long tasks really take compared with the registry's estimate.

    `expected(model, base)` = base seconds times the model's correction (1.0 until it has seen a task).
    `observe(model, base, observed)` folds in the ratio observed/base with an exponential moving
    average in log space (half weight to the newest task), clamped to [1/100, 100] so one outlier
    cannot wreck the schedule. An emulator run at `time_scale` 0.01 converges to about 0.01 in a few
    tasks.
    """

    ALPHA = 0.5
    MIN_RATIO, MAX_RATIO = 0.01, 100.0

    def __init__(self) -> None:
        self._log_ratio: dict[str, float] = {}

    def correction(self, model: str) -> float:
        return math.exp(self._log_ratio.get(model, 0.0))

    def expected(self, model: str, base: float) -> float:
        return base * self.correction(model)

    def observe(self, model: str, base: float, observed: float) -> None:
        if base <= 0 or not math.isfinite(observed) or observed <= 0:
            return
        ratio = min(max(observed / base, self.MIN_RATIO), self.MAX_RATIO)
        new = math.log(ratio)
        old = self._log_ratio.get(model)
        self._log_ratio[model] = new if old is None else (1 - self.ALPHA) * old + self.ALPHA * new
