"""`EmulatorSettings`: every knob of the emulator in one frozen dataclass."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from ._routes import ROUTES
from ._serve_options import REGIONS

__all__ = ["ENV_EMULATOR_TIME_SCALE", "EmulatorSettings", "REGIONS", "time_scale_from_environment"]

ENV_EMULATOR_TIME_SCALE = "WANX_NB_EMULATOR_TIME_SCALE"

# 2025-01-08 16:00:00 in Beijing (UTC+8), the day of the documentation samples. A fixed start makes
# fake-clock runs produce the same timestamps and dates in result URLs on every machine.
_FAKE_CLOCK_START = 1_736_323_200.0


@dataclass(frozen=True)
class EmulatorSettings:
    """How the emulator behaves. The defaults play the real service, only faster.

    Parameters:
        seed: drives server-chosen seeds and every random fault decision (task and request ids are
            random uuid4s, unique across processes, as the real service's are).
        clock: "real" (time.time) or "fake" (starts at `fake_clock_start`, moves only on
            `Emulator.advance`). An explicit `clock=` callable given to `Emulator` wins over both.
        fake_clock_start: epoch seconds where the fake clock starts.
        time_scale: factor on each model's typical duration (0.05: a wanx2.1-t2i-plus task takes
            about 1.4 s; 0: tasks finish the moment they are submitted).
        pending_seconds: queue latency before a task may start running (real seconds, not scaled).
        rate_limits: enforce the per-model submit RPS and the query/policy QPS limits.
        rate_window: length in seconds of the sliding window the limits count in.
        query_qps: GET /tasks/{id} per account per window; None disables.
        policy_qps: upload policies per account and model per window; None disables.
        retry_after: when set, 429 responses carry `Retry-After` (whole seconds, rounded up).
        reject_over_concurrency: answer 429 Throttling.AllocationQuota instead of queueing a task
            when the account already has `concurrency` active tasks for the model.
        task_ttl: seconds after submission until a task reads as UNKNOWN.
        url_ttl: seconds after a task ends until its result URLs expire.
        upload_ttl: seconds an uploaded file stays usable as oss://.
        invalid_keys: API keys answered with 401 "Invalid API-key provided.".
        inspection_word: a prompt containing it is refused with 400 DataInspectionFailed.
        output_inspection_word: a task whose prompt contains it FAILS with DataInspectionFailed.
        partial_failure_word / partial_failure_rate: the task's last image fails with
            InternalError.Timeout (with n=1 the whole task FAILS).
        corrupt_image_word / corrupt_image_rate: the task's PNGs are served truncated.
        error_rates: route -> probability of answering `error_status` instead of serving.
        error_status: 500 (InternalError) by default; 503 gives ServiceUnavailable, etc.
        latency: seconds added to every request (asyncio.sleep).
        drop_rates: route -> probability that `EmulatorTransport` drops the request.
        drop_mode: "before" (httpx.ConnectError, nothing happened on the server) or "after"
            (httpx.ReadTimeout after the server processed the request).
        region: the region this emulated host plays ("beijing", "singapore", "virginia",
            "frankfurt"): models the region does not serve answer "Model not exist.", and
            per-region submit limits apply (wan2.6-t2i: 1/s in Beijing, 5/s elsewhere).
        image_weight: "light" (placeholders that compress well: a 1024x1024 PNG is 60-150 kB, fast to
            make) or "service" (the same pictures with per-pixel grain, so a PNG weighs what the
            service's do, about 2 MB at 1024x1024: for sizing downloads, stores and memory offline).
        state_path: a SQLite file keeping the tasks (see `_persist`), so another emulator on the same
            file (a restarted kernel) knows them, as the service does for 24 h. None: memory only.
            The keyless default emulator uses `$WANX_NB_EMULATOR_STATE` or the user's cache folder.
    """

    seed: int = 0
    clock: Literal["real", "fake"] = "real"
    fake_clock_start: float = _FAKE_CLOCK_START
    time_scale: float = 0.05
    pending_seconds: float = 0.0
    rate_limits: bool = True
    rate_window: float = 1.0
    query_qps: float | None = 20
    policy_qps: float | None = 100
    retry_after: float | None = None
    reject_over_concurrency: bool = False
    task_ttl: float = 24 * 3600
    url_ttl: float = 24 * 3600
    upload_ttl: float = 48 * 3600
    invalid_keys: frozenset[str] = frozenset({"sk-invalid"})
    # The trigger words are tokens no real prompt contains, so the default emulator can demonstrate
    # each failure on demand while ordinary prompts never hit one. Set a word to None to disable it.
    inspection_word: str | None = "EMU_BLOCK_INPUT"
    output_inspection_word: str | None = "EMU_BLOCK_OUTPUT"
    partial_failure_word: str | None = "EMU_PARTIAL_FAILURE"
    partial_failure_rate: float = 0.0
    corrupt_image_word: str | None = "EMU_CORRUPT_IMAGE"
    corrupt_image_rate: float = 0.0
    error_rates: Mapping[str, float] = field(default_factory=dict)
    error_status: int = 500
    latency: float = 0.0
    drop_rates: Mapping[str, float] = field(default_factory=dict)
    drop_mode: Literal["before", "after"] = "before"
    region: str = "beijing"
    image_weight: Literal["light", "service"] = "light"
    state_path: str | None = None

    def __post_init__(self) -> None:
        if self.clock not in ("real", "fake"):
            raise ValueError(f"clock must be 'real' or 'fake', got {self.clock!r}")
        if self.drop_mode not in ("before", "after"):
            raise ValueError(f"drop_mode must be 'before' or 'after', got {self.drop_mode!r}")
        if self.state_path is not None and self.clock == "fake":
            # A fake clock starts over in every process: tasks kept from another one would be in its future.
            raise ValueError("state_path needs the real clock (clock='real'): fake-clock times do not carry over")
        if self.image_weight not in ("light", "service"):
            raise ValueError(f"image_weight must be 'light' or 'service', got {self.image_weight!r}")
        if self.region not in REGIONS:
            raise ValueError(f"region must be one of {', '.join(REGIONS)}, got {self.region!r}")
        if not (400 <= self.error_status <= 599):
            raise ValueError(f"error_status must be an HTTP error status (400-599), got {self.error_status}")
        for name in ("time_scale", "pending_seconds", "latency", "task_ttl", "url_ttl", "upload_ttl"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not self.rate_window > 0:
            raise ValueError(f"rate_window must be > 0, got {self.rate_window!r}")
        for name in ("partial_failure_rate", "corrupt_image_rate"):
            _check_rate(name, getattr(self, name))
        for name in ("error_rates", "drop_rates"):
            rates = dict(getattr(self, name))
            for route, rate in rates.items():
                if route not in ROUTES:
                    raise ValueError(f"{name} has unknown route {route!r}; routes are {', '.join(ROUTES)}")
                _check_rate(f"{name}[{route!r}]", rate)
            # Frozen all the way down: a shared settings object must not change under a running emulator.
            object.__setattr__(self, name, MappingProxyType(rates))
        object.__setattr__(self, "invalid_keys", frozenset(self.invalid_keys))


def _check_rate(name: str, rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {rate!r}")


def time_scale_from_environment() -> float | None:
    """`$WANX_NB_EMULATOR_TIME_SCALE` for the keyless default emulator (None when unset): how fast its tasks
    run, e.g. 0.005 for a notebook that should run through at once. ValueError naming it when it is not
    a number in [0, 1] (above 1 the emulator would be slower than the service)."""
    raw = os.environ.get(ENV_EMULATOR_TIME_SCALE, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:  # NaN fails both
        raise ValueError(
            f"{ENV_EMULATOR_TIME_SCALE}={raw!r} is not a time scale: use a number from 0 to 1, the fraction of the "
            f"real task durations the emulator takes (default {EmulatorSettings.time_scale}), or unset it"
        )
    return value
