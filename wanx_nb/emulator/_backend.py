"""The emulator's state and rules, with no HTTP: accounts, tasks, limits, uploads and faults.

Time only moves through the injected clock, and state is computed lazily: each task's start and end
are scheduled when the task is created (or when a cancellation frees a slot), and a task's status is
a function of the clock reading. Nothing runs in the background, so a fake clock gives exact,
repeatable histories.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import io
import json
import math
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, NamedTuple
from urllib.parse import quote

from PIL import Image

from .._registry import V1_STYLES, ModelSpec, get_model
from . import _errors as errors
from ._faults import Fault, check_fault_route
from ._images import render_png
from ._routes import RESULTS_PREFIX, ROUTES, route_of
from ._settings import EmulatorSettings

__all__ = [
    "Backend",
    "FakeClock",
    "LoggedRequest",
    "Policy",
    "Task",
    "UTC8",
    "Upload",
    "epoch_ms",
    "format_time",
]

# The service reports wall-clock times in China Standard Time with no zone marker (§3.2, §6.13).
UTC8 = timezone(timedelta(hours=8), "UTC+08:00")
MAX_SEED = 2_147_483_647
OSS_ACCESS_KEY_ID = "emulator"
UPLOAD_ACCESS_KEY_ID = "LTAI-emulator-upload"
MAX_UPLOAD_MB = 1024
_SIZE_RE = re.compile(r"^\s*(\d+)\s*\*\s*(\d+)\s*$")
_CJK_RE = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_REF_MODES = ("repaint", "refonly")


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


class LoggedRequest(NamedTuple):
    """A request as the server saw it; the Authorization value is masked to its last 4 characters."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any

    @property
    def route(self) -> str | None:
        return route_of(self.method, self.path.split("?", 1)[0])


@dataclass
class Task:
    """One image-synthesis task and everything decided about it at creation."""

    task_id: str
    request_id: str
    account: str
    model: str  # the registry name
    model_name: str  # the name the client sent (may be an international alias)
    family: str
    prompt: str  # as sent: what orig_prompt reports
    effective_prompt: str  # truncated to the model's limit: what the image is made from
    negative_prompt: str | None
    width: int
    height: int
    n: int
    seed: int
    style: str | None
    ref: bytes | str | None
    ref_strength: float
    ref_mode: str
    watermark: bool
    prompt_extend: bool
    actual_prompt: str | None
    submit_time: float
    duration: float
    failure: tuple[str, str] | None = None  # task-level (code, message)
    failed_items: frozenset[int] = frozenset()  # 0-based indices of images that failed
    item_failure: tuple[str, str] = ("InternalError.Timeout", errors.TIMEOUT_ITEM_MESSAGE)  # their (code, message)
    lost: bool = False  # the service lost the task (Fault.outcome("UNKNOWN")): queries say UNKNOWN
    corrupt: bool = False
    start_time: float | None = None
    cancel_time: float | None = None

    @property
    def end_time(self) -> float | None:
        if self.cancel_time is not None:
            return self.cancel_time
        return None if self.start_time is None else self.start_time + self.duration

    def status_at(self, now: float) -> str:
        if self.cancel_time is not None:
            return "CANCELED"
        if self.start_time is None or now < self.start_time:
            return "PENDING"
        if now < self.start_time + self.duration:
            return "RUNNING"
        if self.failure is not None or len(self.failed_items) >= self.n:
            return "FAILED"
        return "SUCCEEDED"

    @property
    def succeeded_items(self) -> list[int]:
        return [i for i in range(self.n) if i not in self.failed_items]

    def render(self, index: int) -> bytes:
        """The PNG of image `index` (0-based); image i uses seed + i (§2.2)."""
        data = render_png(
            model=self.model,
            prompt=self.effective_prompt,
            negative_prompt=self.negative_prompt,
            width=self.width,
            height=self.height,
            seed=self.seed + index,
            style=self.style,
            ref=self.ref,
            ref_strength=self.ref_strength,
            ref_mode=self.ref_mode,
            watermark=self.watermark,
        )
        # A corrupt image is cut short, as a broken transfer or a bad object would be.
        return data[: len(data) // 2] if self.corrupt else data

    def __repr__(self) -> str:
        return f"<Task {self.task_id} {self.model_name} n={self.n} seed={self.seed}>"


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


@dataclass
class _Generation:
    """A validated create request."""

    spec: ModelSpec
    model_name: str
    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    size_error: str | None
    n: int
    seed: int | None
    style: str | None
    ref_url: str | None
    ref_strength: float
    ref_mode: str
    watermark: bool
    prompt_extend: bool


class Backend:
    """All emulator state. Thread-safe: the served app and the test thread may use it at once."""

    def __init__(self, settings: EmulatorSettings | None = None, clock: Callable[[], float] | None = None) -> None:
        self.settings = settings or EmulatorSettings()
        if clock is None:
            clock = FakeClock(self.settings.fake_clock_start) if self.settings.clock == "fake" else time.time
        self.clock = clock
        self._lock = threading.RLock()
        self._secret = hashlib.sha256(f"wanx_nb-emulator:{self.settings.seed}".encode()).digest()
        self.reset()

    def reset(self) -> None:
        """Forget everything, as if freshly created (the fake clock goes back to its start)."""
        with self._lock:
            self.tasks: dict[str, Task] = {}
            self._groups: dict[tuple[str, str], list[Task]] = {}
            self._windows: dict[tuple[str, ...], deque[float]] = {}
            self._policies: dict[str, Policy] = {}
            self.uploads: dict[str, Upload] = {}
            self._scripts: dict[str, deque[Fault]] = {route: deque() for route in ROUTES}
            seed = self.settings.seed
            self._rngs = {
                name: random.Random(f"{seed}:{name}")
                for name in ("seed", "partial", "corrupt", *(f"error:{r}" for r in ROUTES), *(f"drop:{r}" for r in ROUTES))
            }
            self.request_log: list[LoggedRequest] = []
            if isinstance(self.clock, FakeClock):
                self.clock.reset()

    # Ids ------------------------------------------------------------------------------------------

    def new_id(self, kind: str) -> str:
        """A random UUID4 string, unique across processes and restarts as the real service's ids are.

        `kind` only documents the caller's intent: two emulators sharing one store must never issue
        the same task id, so ids are not derived from the seed (images still are).
        """
        del kind
        return str(uuid.uuid4())

    def new_request_id(self) -> str:
        return self.new_id("request")

    # Faults ---------------------------------------------------------------------------------------

    def script(self, route: str, faults: Iterable[Fault]) -> None:
        _check_route(route)
        faults = list(faults)
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"script() takes Fault objects (Fault.status(500), ...), got {fault!r}")
            check_fault_route(route, fault)
        with self._lock:
            self._scripts[route].extend(faults)

    def take_drop(self, route: str) -> Literal["before", "after"] | None:
        """For the in-process transport: whether this request is dropped, consuming a scripted drop."""
        with self._lock:
            script = self._scripts[route]
            if script and script[0].kind in ("drop_before", "drop_after"):
                return "before" if script.popleft().kind == "drop_before" else "after"
            rate = self.settings.drop_rates.get(route, 0.0)
            if rate and self._rngs[f"drop:{route}"].random() < rate:
                return self.settings.drop_mode
        return None

    def take_fault(self, route: str, *, in_process: bool = False) -> Fault | None:
        """For the app: the scripted fault for this request, or a random error per `error_rates`.

        `in_process`: the request came through EmulatorTransport, which has already taken its drop
        (if any); a drop next in the script belongs to the next request.
        """
        with self._lock:
            script = self._scripts[route]
            if script and in_process and script[0].kind in ("drop_before", "drop_after"):
                return None
            if script:
                # A drop reaching the app came over real HTTP: the app plays it by closing the
                # connection mid-response (before or after processing).
                return script.popleft()
            rate = self.settings.error_rates.get(route, 0.0)
            if rate and self._rngs[f"error:{route}"].random() < rate:
                return Fault.status(self.settings.error_status)
        return None

    def log_request(self, method: str, path: str, headers: Mapping[str, str], body: Any) -> None:
        masked = {k: (_mask(v) if k.lower() == "authorization" else v) for k, v in headers.items()}
        with self._lock:
            self.request_log.append(LoggedRequest(method, path, masked, body))

    # Accounts and limits --------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> str:
        """The account (the API key) behind an Authorization header, or 401 InvalidApiKey."""
        scheme, _, key = (authorization or "").strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise errors.invalid_api_key(missing=True)
        if key in self.settings.invalid_keys:
            raise errors.invalid_api_key(missing=False)
        return key

    def _window(self, key: tuple[str, ...], now: float) -> deque[float]:
        """The times of the requests counted under `key` in the last `rate_window` seconds."""
        window = self._windows.setdefault(key, deque())
        while window and window[0] <= now - self.settings.rate_window:
            window.popleft()
        return window

    def _limit(self, key: tuple[str, ...], limit: float | None, now: float, error: errors.EmulatorError) -> None:
        """Count one request in the sliding window, or raise `error` when `limit` are already in it."""
        if limit is None or not self.settings.rate_limits:
            return
        window = self._window(key, now)
        if len(window) >= limit:
            raise error
        window.append(now)

    def check_query_rate(self, account: str) -> None:
        with self._lock:
            self._limit(
                ("query", account), self.settings.query_qps, self.clock(), errors.throttling(self.settings.retry_after)
            )

    def account_info(self, account: str) -> dict[str, str]:
        """Stable per-account identifiers for list items (the real ones are opaque numbers)."""
        digest = hashlib.sha256(f"account:{account}".encode()).hexdigest()
        uid = str(int(digest[:15], 16))[:16]
        return {
            "api_key_id": str(int(digest[15:25], 16)),
            "caller_parent_id": uid,
            "caller_uid": uid,
            "user_api_unique_key": f"apikey:v1:{digest[25:41]}",
            "account_hash": digest[:32],
        }

    # Tasks ----------------------------------------------------------------------------------------

    def create_task(self, account: str, body: Any, *, oss_resolve: bool, outcome: Fault | None = None) -> Task:
        """Validate a create body and queue the task, or raise the error the service would answer."""
        if not isinstance(body, dict):
            raise errors.invalid_parameter("The request body must be a JSON object with model, input and parameters.")
        model_name = body.get("model")
        if model_name is None or model_name == "":
            raise errors.bad_request_empty_model()
        try:
            spec = get_model(model_name) if isinstance(model_name, str) else None
        except KeyError:
            spec = None
        if spec is None:
            raise errors.invalid_parameter("Model not exist.")
        with self._lock:
            now = self.clock()
            self._prune(now)
            # The limiter counts only tasks it lets through (recorded below); a rejected or invalid
            # request does not use up the account's rate.
            window = self._window(("create", account, spec.name), now)
            if self.settings.rate_limits and len(window) >= spec.submit_rps:
                raise errors.throttling_rate_quota(self.settings.retry_after)
            gen = _parse_generation(spec, model_name, body)
            ref = self._resolve_reference(account, spec, gen.ref_url, oss_resolve, now)
            inspected = " ".join(filter(None, (gen.prompt, gen.negative_prompt)))
            if self.settings.inspection_word and self.settings.inspection_word in inspected:
                raise errors.data_inspection_failed()
            group = self._groups.setdefault((account, spec.name), [])
            if self.settings.reject_over_concurrency:
                active = sum(1 for t in group if t.status_at(now) in ("PENDING", "RUNNING"))
                if active >= spec.concurrency:
                    raise errors.throttling_allocation_quota(self.settings.retry_after)
            task = self._new_task(account, gen, ref, now)
            if outcome is not None:
                _apply_outcome(task, outcome)
            window.append(now)
            self.tasks[task.task_id] = task
            group.append(task)
            self._schedule(group, spec.concurrency, floor=now)
            return task

    def _new_task(self, account: str, gen: _Generation, ref: bytes | str | None, now: float) -> Task:
        spec, settings = gen.spec, self.settings
        task_id = self.new_id("task")
        seed = gen.seed
        if seed is None:  # the server picks one (§2.2); it is kept so the images can be rendered later
            # From the settings' seed, not the (random) task id: a fresh emulator repeats its choices.
            seed = self._rngs["seed"].randint(0, MAX_SEED)
        # Over-long prompts are cut silently (§2.2). The image follows the cut text, while orig_prompt
        # echoes what was sent (the spec is silent on which), so clients can match results to requests.
        effective = gen.prompt[: spec.prompt_limit]
        negative = None if gen.negative_prompt is None else gen.negative_prompt[: spec.negative_prompt_limit]
        duration = spec.expected_seconds(gen.prompt_extend) * settings.time_scale
        failure: tuple[str, str] | None = None
        failed: frozenset[int] = frozenset()
        partial_roll = self._rngs["partial"].random()
        corrupt_roll = self._rngs["corrupt"].random()
        if gen.size_error is not None:
            # V1 checks the size asynchronously (doc sample v1-query-failed-doc); such a check
            # fails fast, so the task fails within a (scaled) second instead of the full duration.
            failure = ("InvalidParameter", gen.size_error)
            duration = min(duration, 1.0 * settings.time_scale)
        elif settings.output_inspection_word and settings.output_inspection_word in gen.prompt:
            failure = ("DataInspectionFailed", errors.OUTPUT_INSPECTION_MESSAGE)
        elif (settings.partial_failure_word and settings.partial_failure_word in gen.prompt) or (
            partial_roll < settings.partial_failure_rate
        ):
            failed = frozenset({gen.n - 1})
            if gen.n == 1:
                failure = ("InternalError.Timeout", errors.TIMEOUT_ITEM_MESSAGE)
        corrupt = bool(settings.corrupt_image_word and settings.corrupt_image_word in gen.prompt) or (
            corrupt_roll < settings.corrupt_image_rate
        )
        return Task(
            task_id=task_id,
            request_id=self.new_request_id(),
            account=account,
            model=spec.name,
            model_name=gen.model_name,
            family=spec.family,
            prompt=gen.prompt,
            effective_prompt=effective,
            negative_prompt=negative,
            width=gen.width,
            height=gen.height,
            n=gen.n,
            seed=seed,
            style=gen.style,
            ref=ref,
            ref_strength=gen.ref_strength,
            ref_mode=gen.ref_mode,
            watermark=gen.watermark,
            prompt_extend=gen.prompt_extend,
            actual_prompt=extend_prompt(effective) if gen.prompt_extend else None,
            submit_time=now,
            duration=duration,
            failure=failure,
            failed_items=failed,
            corrupt=corrupt,
        )

    def _schedule(self, group: list[Task], concurrency: int, *, floor: float) -> None:
        """Place the group's not-yet-started tasks on `concurrency` slots, first come first served.

        Tasks that started by `floor` (the moment of the change) keep their history; the rest start
        when they are ready and a slot is free, never before `floor`. Replaying in submission order
        with a heap of slot end times gives exactly the times a real FIFO queue would produce.
        """
        slots: list[float] = []  # end times of the tasks holding the slots
        for task in group:
            if task.cancel_time is not None:
                continue
            if task.start_time is not None and task.start_time <= floor:
                start = task.start_time
                if len(slots) >= concurrency:
                    heapq.heappop(slots)
            else:
                ready = max(task.submit_time + self.settings.pending_seconds, floor)
                free = heapq.heappop(slots) if len(slots) >= concurrency else ready
                start = max(ready, free)
                task.start_time = start
            heapq.heappush(slots, start + task.duration)

    def get_task(self, account: str, task_id: str) -> tuple[Task, float] | None:
        """The account's task and the clock reading to judge it by, or None (unknown or expired)."""
        with self._lock:
            now = self.clock()
            task = self.tasks.get(task_id)
            if task is None or task.account != account or now - task.submit_time >= self.settings.task_ttl:
                return None
            if task.lost:
                return None
            return task, now

    def cancel_task(self, account: str, task_id: str) -> None:
        """PENDING -> CANCELED; anything else (including unknown ids) -> 400 UnsupportedOperation."""
        with self._lock:
            found = self.get_task(account, task_id)
            if found is None or found[0].status_at(found[1]) != "PENDING":
                raise errors.unsupported_operation()
            task, now = found
            task.cancel_time = now
            task.start_time = None
            spec = get_model(task.model)
            self._schedule(self._groups[(account, task.model)], spec.concurrency, floor=now)

    def list_tasks(
        self,
        account: str,
        *,
        start: float | None = None,
        end: float | None = None,
        model_name: str | None = None,
        status: str | None = None,
        api_key_id: str | None = None,
        region: str | None = None,
    ) -> tuple[list[tuple[Task, str]], float]:
        """The account's live tasks matching the filters, newest first, with their statuses."""
        with self._lock:
            now = self.clock()
            if api_key_id is not None and api_key_id != self.account_info(account)["api_key_id"]:
                return [], now
            if region is not None and region != "cn-beijing":
                return [], now
            if model_name is not None:
                # A Beijing name and its international alias name the same model.
                try:
                    model_name = get_model(model_name).name
                except KeyError:
                    return [], now
            found = []
            for task in self.tasks.values():
                if task.account != account or task.lost or now - task.submit_time >= self.settings.task_ttl:
                    continue
                if start is not None and task.submit_time < start:
                    continue
                if end is not None and task.submit_time > end:
                    continue
                if model_name is not None and model_name != task.model:
                    continue
                task_status = task.status_at(now)
                if status is not None and status != task_status:
                    continue
                found.append((task, task_status))
            found.sort(key=lambda pair: pair[0].submit_time, reverse=True)
            return found, now

    def _prune(self, now: float) -> None:
        """Drop tasks nobody can see any more: past the task TTL and past their URLs' expiry."""
        keep_after = now - self.settings.task_ttl
        dead = [
            t
            for t in self.tasks.values()
            if t.submit_time < keep_after and (t.end_time is None or t.end_time + self.settings.url_ttl < now)
        ]
        for task in dead:
            del self.tasks[task.task_id]
            self._groups[(task.account, task.model)].remove(task)
        for key in [k for k, u in self.uploads.items() if u.expires_at < now]:
            del self.uploads[key]
        for key in [k for k, p in self._policies.items() if p.expires_at < now]:
            del self._policies[key]

    # Result images --------------------------------------------------------------------------------

    def result_path(self, task: Task, index: int) -> str:
        """The signed path and query of image `index` (0-based); the URL's file name is 1-based."""
        end = task.end_time
        assert end is not None
        day = datetime.fromtimestamp(end, UTC8).strftime("%Y%m%d")
        path = f"{RESULTS_PREFIX}/{day}/{task.task_id}-{index + 1}.png"
        expires = math.ceil(end + self.settings.url_ttl)  # whole seconds, never shorter than url_ttl
        signature = quote(self._sign(f"GET\n{expires}\n{path}"), safe="")
        return f"{path}?Expires={expires}&OSSAccessKeyId={OSS_ACCESS_KEY_ID}&Signature={signature}"

    def result_image(self, path: str, query: Mapping[str, str], *, has_authorization: bool) -> bytes:
        """The bytes behind a signed result URL, or the OSS error the real object store gives."""
        if has_authorization:
            # A request carrying both an Authorization header and a URL signature is refused by the
            # object store; here it also catches clients that leak the API key to the image host.
            raise errors.oss_invalid_argument(
                "Only one auth mechanism allowed; the Signature query parameter or the Authorization header."
            )
        expires, signature = query.get("Expires"), query.get("Signature")
        if not expires or not signature or query.get("OSSAccessKeyId") != OSS_ACCESS_KEY_ID:
            raise errors.oss_access_denied("You have no right to access this object because of bucket acl.")
        if not hmac.compare_digest(signature, self._sign(f"GET\n{expires}\n{path}")):
            raise errors.oss_signature_does_not_match()
        now = self.clock()
        if not expires.isdigit() or int(expires) < now:
            raise errors.oss_access_denied(
                "Request has expired.",
                Expires=datetime.fromtimestamp(int(expires) if expires.isdigit() else 0, timezone.utc).strftime(
                    "%Y-%m-%dT%H:%M:%S.000Z"
                ),
                ServerTime=datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            )
        match = re.fullmatch(rf"{RESULTS_PREFIX}/\d{{8}}/([0-9a-f-]{{36}})-(\d+)\.png", path)
        with self._lock:
            task = self.tasks.get(match.group(1)) if match else None
        if task is None or match is None:
            raise errors.oss_no_such_key()
        index = int(match.group(2)) - 1
        if not 0 <= index < task.n or index in task.failed_items or task.status_at(now) != "SUCCEEDED":
            raise errors.oss_no_such_key()
        return task.render(index)

    def _sign(self, text: str) -> str:
        return base64.b64encode(hmac.new(self._secret, text.encode(), hashlib.sha1).digest()).decode()

    # Uploads --------------------------------------------------------------------------------------

    def issue_policy(self, account: str, model: str | None) -> Policy:
        """An upload policy for `model`, valid 300 s, like GET /uploads?action=getPolicy."""
        if not model:
            raise errors.invalid_parameter("Required parameter model missing from request.")
        try:
            spec = get_model(model)
        except KeyError:
            raise errors.invalid_parameter("Model not exist.") from None
        with self._lock:
            now = self.clock()
            self._limit(
                ("policy", account, spec.name),
                self.settings.policy_qps,
                now,
                errors.throttling_rate_quota(self.settings.retry_after),
            )
            day = datetime.fromtimestamp(now, UTC8).strftime("%Y-%m-%d")
            upload_dir = f"dashscope-instant/{self.account_info(account)['account_hash']}/{day}/{self.new_id('upload')}"
            expires_at = now + 300
            document = {
                "expiration": datetime.fromtimestamp(expires_at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "conditions": [
                    ["content-length-range", 0, MAX_UPLOAD_MB * 1024 * 1024],
                    ["starts-with", "$key", upload_dir],
                ],
            }
            encoded = base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()
            policy = Policy(account, spec.name, upload_dir, encoded, self._sign(encoded), expires_at)
            self._policies[encoded] = policy
            return policy

    def store_upload(self, fields: Mapping[str, str], data: bytes | None, content_type: str | None) -> Upload:
        """Accept an OSS PostObject form checked against a policy we issued."""
        missing = [f for f in ("OSSAccessKeyId", "Signature", "policy", "key") if not fields.get(f)]
        if missing or data is None:
            raise errors.oss_invalid_argument(
                f"Missing form fields: {', '.join(missing + ([] if data is not None else ['file']))}."
            )
        if fields["OSSAccessKeyId"] != UPLOAD_ACCESS_KEY_ID or not hmac.compare_digest(
            fields["Signature"], self._sign(fields["policy"])
        ):
            raise errors.oss_signature_does_not_match()
        with self._lock:
            now = self.clock()
            policy = self._policies.get(fields["policy"])
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

    def _resolve_reference(
        self, account: str, spec: ModelSpec, url: str | None, oss_resolve: bool, now: float
    ) -> bytes | str | None:
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


def _apply_outcome(task: Task, fault: Fault) -> None:
    """Make a freshly created task end as `Fault.outcome` says."""
    if fault.value == "FAILED":
        task.failure = (fault.code or "InternalError", fault.message or errors.INTERNAL_ERROR_MESSAGE)
    elif fault.value == "PARTIAL":
        failed = frozenset(i for i in (fault.failed or (task.n - 1,)) if 0 <= i < task.n)
        task.failed_items = failed
        task.item_failure = (fault.code or "InternalError.Timeout", fault.message or errors.TIMEOUT_ITEM_MESSAGE)
        if len(failed) >= task.n:
            task.failure = task.item_failure
    elif fault.value == "UNKNOWN":
        task.lost = True


def _check_route(route: str) -> None:
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; routes are {', '.join(ROUTES)}")


def _mask(value: str) -> str:
    scheme, _, key = value.partition(" ")
    return f"{scheme} ...{key[-4:]}" if key else "..."


def _param(params: Mapping[str, Any], name: str, default: Any) -> Any:
    # JSON null means "not given", as for the Java service behind the API.
    value = params.get(name)
    return default if value is None else value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_generation(spec: ModelSpec, model_name: str, body: dict[str, Any]) -> _Generation:
    """Check a create body against the model's rules (§2.2, §2.3); raise the 4xx the service would.

    Parameters a model family does not take (style on V2, watermark on V1, anything unknown) are
    ignored, as the real service does: the official SDK passes extra kwargs straight through.
    """
    inputs = body.get("input")
    if not isinstance(inputs, dict):
        raise errors.bad_request_empty_input()
    prompt = inputs.get("prompt")
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        raise errors.bad_request_empty_input()
    if not isinstance(prompt, str):
        raise errors.invalid_parameter(f"input.prompt must be a string, got {type(prompt).__name__}.")
    negative = inputs.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise errors.invalid_parameter(f"input.negative_prompt must be a string, got {type(negative).__name__}.")
    params = body.get("parameters")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise errors.invalid_parameter("parameters must be a JSON object.")

    n = _param(params, "n", spec.default_n)
    if not _is_int(n) or not 1 <= n <= spec.max_n:
        raise errors.invalid_parameter(f"The parameter n must be an integer in [1, {spec.max_n}], got {n!r}.")
    seed = params.get("seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed <= MAX_SEED):
        raise errors.invalid_parameter(f"The parameter seed must be an integer in [0, {MAX_SEED}], got {seed!r}.")

    size = _param(params, "size", spec.default_size)
    if not isinstance(size, str):
        raise errors.invalid_parameter(f"The parameter size must be a string like '1024*1024', got {size!r}.")
    width, height, size_error = _check_size(spec, size)

    v1 = spec.is_v1
    style = _param(params, "style", "<auto>") if v1 else None
    if v1 and style not in V1_STYLES:
        raise errors.invalid_parameter(
            f"The parameter style {style!r} is not supported; use one of {', '.join(V1_STYLES)}."
        )
    ref_strength = _param(params, "ref_strength", 0.5) if v1 else 0.5
    if not _is_number(ref_strength) or not 0.0 <= ref_strength <= 1.0:
        raise errors.invalid_parameter(
            f"The parameter ref_strength must be a number in [0.0, 1.0], got {ref_strength!r}."
        )
    ref_mode = _param(params, "ref_mode", "repaint") if v1 else "repaint"
    if ref_mode not in _REF_MODES:
        raise errors.invalid_parameter(f"The parameter ref_mode must be 'repaint' or 'refonly', got {ref_mode!r}.")
    # The SDKs send input.ref_img; the guide's curl examples send input.ref_image (§6.1). Which the
    # server reads is unknown, so both are accepted, ref_img first.
    ref_url = (inputs.get("ref_img") or inputs.get("ref_image")) if v1 else None
    if ref_url is not None and not isinstance(ref_url, str):
        raise errors.invalid_url(f"the reference image must be a URL string, got {type(ref_url).__name__}.")

    takes = spec.params
    watermark = _param(params, "watermark", False) if "watermark" in takes else False
    prompt_extend = _param(params, "prompt_extend", True) if "prompt_extend" in takes else False
    for name, value in (("watermark", watermark), ("prompt_extend", prompt_extend)):
        if not isinstance(value, bool):
            raise errors.invalid_parameter(f"The parameter {name} must be true or false, got {value!r}.")

    return _Generation(
        spec=spec,
        model_name=model_name,
        prompt=prompt,
        negative_prompt=negative,
        width=width,
        height=height,
        size_error=size_error,
        n=n,
        seed=seed,
        style=style,
        ref_url=ref_url or None,
        ref_strength=float(ref_strength),
        ref_mode=ref_mode,
        watermark=watermark,
        prompt_extend=prompt_extend,
    )


def _check_size(spec: ModelSpec, size: str) -> tuple[int, int, str | None]:
    """(width, height, deferred error): V2 sizes fail on create, V1 sizes fail the task later."""
    match = _SIZE_RE.match(size)
    if spec.sizes is not None:  # V1: a fixed list, checked asynchronously (doc sample v1-query-failed-doc)
        if size in spec.sizes:
            w, h = (int(x) for x in size.split("*"))
            return w, h, None
        w, h = (int(match.group(1)), int(match.group(2))) if match else (1024, 1024)
        return w, h, f"The size is not match the allowed size {list(spec.sizes)}"
    if not match:
        raise errors.invalid_parameter(f"The parameter size must look like 'W*H', e.g. '1024*1024', got {size!r}.")
    w, h = int(match.group(1)), int(match.group(2))
    ok = True
    if spec.side_range is not None:
        lo, hi = spec.side_range
        ok = lo <= w <= hi and lo <= h <= hi
    if spec.pixel_range is not None and spec.aspect_range is not None:
        lo, hi = spec.pixel_range
        a, b = spec.aspect_range
        ok = ok and lo <= w * h <= hi and h > 0 and a <= w / h <= b
    if not ok:
        raise errors.invalid_parameter(f"The size {size} is not supported by {spec.name}: use {spec.size_rule()}.")
    return w, h, None


# Prompt rewriting (prompt_extend) ----------------------------------------------------------------

_ZH_DETAILS = (
    "画面细节丰富，质感细腻",
    "色彩鲜艳，层次分明",
    "光线柔和，营造出温馨宁静的氛围",
    "背景略微虚化，突出主体",
    "整体色调温暖而和谐",
    "构图均衡，主体清晰突出",
    "氛围梦幻，富有故事感",
    "远处景物若隐若现，空间感强",
)
_ZH_STYLES = ("高清写实摄影", "电影级光照", "精致插画风格", "自然光影效果")
_ZH_SHOTS = ("近景特写构图", "中景构图", "远景全景构图", "低角度仰拍视角")
_EN_DETAILS = (
    "rich fine detail and delicate textures",
    "vivid colours with clear layering",
    "soft light creating a warm, calm atmosphere",
    "a gently blurred background that makes the subject stand out",
    "a warm, harmonious colour palette",
    "a balanced composition with a clear focal point",
    "a dreamy, story-like mood",
    "distant scenery fading into the haze for a sense of depth",
)
_EN_STYLES = (
    "high-definition realistic photography",
    "cinematic lighting",
    "refined illustration style",
    "natural light and shadow",
)
_EN_SHOTS = ("close-up shot", "medium shot", "wide panoramic shot", "low-angle shot")


def extend_prompt(prompt: str) -> str:
    """A deterministic stand-in for the service's LLM rewrite: the prompt plus picked phrases."""
    h = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")
    if _CJK_RE.search(prompt):
        details, styles, shots = _ZH_DETAILS, _ZH_STYLES, _ZH_SHOTS
        i = h % len(details)
        d1, d2 = details[i], details[(i + 1 + h // 8 % (len(details) - 1)) % len(details)]
        core = prompt.strip().rstrip("。.！!，,")
        return f"{core}。{d1}，{d2}。{styles[h // 64 % len(styles)]}，{shots[h // 256 % len(shots)]}。"
    details, styles, shots = _EN_DETAILS, _EN_STYLES, _EN_SHOTS
    i = h % len(details)
    d1, d2 = details[i], details[(i + 1 + h // 8 % (len(details) - 1)) % len(details)]
    core = prompt.strip().rstrip(".!,;")
    return f"{core}, with {d1} and {d2}. {styles[h // 64 % len(styles)].capitalize()}, {shots[h // 256 % len(shots)]}."
