"""The emulator's state, with no HTTP: accounts, tasks, rate limits, faults and the request log.

The rules live beside it, one job per module: `_rules` checks request bodies, `_task_rules` decides
what a new task will do (seed, cut prompts, duration, failures), `_tasks` runs tasks on the clock
and counts limits, `_oss` signs URLs and keeps uploads, `_rewrite` rewrites prompts,
`_images` paints the images. `Backend` ties them together under one lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal

from .._registry import Protocol, catalog_model, submit_limits
from . import _errors as errors
from ._clock import FakeClock
from ._faults import Fault, check_fault_route
from ._oss import ObjectStore, Policy, Upload
from ._persist import KeptTasks
from ._routes import ROUTES, LoggedRequest
from ._rules import parse_generation, parse_messages, served_model
from ._settings import EmulatorSettings
from ._task_rules import new_task
from ._tasks import RateWindows, Task, apply_outcome, schedule

__all__ = ["API_KEY_HEADER", "Backend"]

# The documented alternative to `Authorization: Bearer` (2026 §3.1), lower-case as Starlette reads it.
API_KEY_HEADER = "x-dashscope-apikey"

_REGION_IDS = {
    "beijing": "cn-beijing",
    "singapore": "ap-southeast-1",
    "virginia": "us-east-1",
    "frankfurt": "eu-central-1",
}


class Backend:
    """All emulator state. Thread-safe: the served app and the test thread may use it at once."""

    def __init__(
        self,
        settings: EmulatorSettings | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings or EmulatorSettings()
        self.sleep = sleep  # how an answer waits out `latency` and delay faults (tests record it)
        if clock is None:
            clock = FakeClock(self.settings.fake_clock_start) if self.settings.clock == "fake" else time.time
        self.clock = clock
        self._lock = threading.RLock()
        self._kept = KeptTasks(self.settings.state_path)
        self.reset()

    def reset(self) -> None:
        """Forget everything, as if freshly created (the fake clock goes back to its start)."""
        with self._lock:
            self.tasks: dict[str, Task] = {}
            self._groups: dict[tuple[str, str], list[Task]] = {}
            self._windows = RateWindows()
            self.oss = ObjectStore(self.settings, self.clock)
            self._scripts: dict[str, deque[Fault]] = {route: deque() for route in ROUTES}
            seed = self.settings.seed
            self._rngs = {
                name: random.Random(f"{seed}:{name}")
                for name in (
                    "seed",
                    "partial",
                    "corrupt",
                    *(f"error:{r}" for r in ROUTES),
                    *(f"drop:{r}" for r in ROUTES),
                )
            }
            self.request_log: list[LoggedRequest] = []
            self._adopted: set[str] = set()  # accounts whose kept tasks are loaded
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
        masked = {
            k: (_mask(v) if k.lower() == "authorization" else f"...{v[-4:]}" if k.lower() == API_KEY_HEADER else v)
            for k, v in headers.items()
        }
        with self._lock:
            self.request_log.append(LoggedRequest(method, path, masked, body))

    # Accounts and limits --------------------------------------------------------------------------

    @property
    def region_id(self) -> str:
        """The DashScope id of the region this host plays ("cn-beijing", ...), as task listings show it."""
        return _REGION_IDS[self.settings.region]

    def authenticate(self, authorization: str | None, api_key: str | None = None) -> str:
        """The account (the API key) behind an Authorization header, or 401 InvalidApiKey.

        `api_key`: the `X-DashScope-ApiKey` header, read when there is no Authorization header. One
        official page documents it as the alternative to `Authorization: Bearer` ("Alternatively,
        pass it via the X-DashScope-ApiKey request header", 2026 §3.1, M5); the project accepts what
        any source accepts.
        """
        scheme, _, key = (authorization or "").strip().partition(" ")
        key = key.strip()
        if not (authorization or "").strip() and (api_key or "").strip():
            scheme, key = "bearer", (api_key or "").strip()
        if scheme.lower() != "bearer" or not key:
            raise errors.invalid_api_key(missing=True)
        if key in self.settings.invalid_keys:
            raise errors.invalid_api_key(missing=False)
        return key

    def _limit(self, key: tuple[str, ...], limit: float | None, now: float, error: errors.EmulatorError) -> None:
        """Count one request in its sliding window, or raise `error` when `limit` are already in it."""
        if limit is not None and self.settings.rate_limits:
            self._windows.count(key, limit, now, self.settings.rate_window, error)

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

    def create_task(
        self,
        account: str,
        body: Any,
        *,
        oss_resolve: bool,
        outcome: Fault | None = None,
        protocol: Protocol = Protocol.T2I,
        blocking: bool = False,
    ) -> Task:
        """Validate a create body and queue the task, or raise the error the service would answer.

        `protocol` is the endpoint the body came to. A sync (MMG) task runs at once, outside the
        model's queue (sync calls have no documented concurrency cap, 2026 §9); so does a `blocking`
        one (a legacy create sent without the async header, for the models that allow it).
        """
        if not isinstance(body, dict):
            raise errors.invalid_parameter("The request body must be a JSON object with model, input and parameters.")
        model_name = body.get("model")
        if model_name is None or model_name == "":
            raise errors.bad_request_empty_model()
        spec = served_model(model_name, protocol, self.settings.region)
        with self._lock:
            now = self.clock()
            self._prune(now)
            self._adopt(account, now)  # tasks queued before a kernel restart still hold their slots
            # The limiter counts only tasks it lets through (committed below); a rejected or invalid
            # request does not use up the account's rate.
            windows = self._windows.submit_windows(
                ("create", account, spec.name),
                submit_limits(spec, self.settings.region),
                now,
                self.settings.rate_window,
                error=errors.throttling_rate_quota(self.settings.retry_after) if self.settings.rate_limits else None,
            )
            gen = (
                parse_messages(spec, model_name, body)
                if protocol.uses_messages
                else parse_generation(spec, model_name, body)
            )
            ref = self.oss.resolve_reference(account, spec, gen.ref_url, oss_resolve, now)
            inspected = " ".join(filter(None, (gen.prompt, gen.negative_prompt)))
            if self.settings.inspection_word and self.settings.inspection_word in inspected:
                raise errors.data_inspection_failed()
            group = self._groups.setdefault((account, spec.name), [])
            if self.settings.reject_over_concurrency and protocol.is_async and not blocking:
                active = sum(1 for t in group if t.status_at(now) in ("PENDING", "RUNNING"))
                if active >= spec.concurrency:
                    raise errors.throttling_allocation_quota(self.settings.retry_after)
            task = new_task(
                gen,
                account=account,
                ref=ref,
                now=now,
                task_id=self.new_id("task"),
                request_id=self.new_request_id(),
                settings=self.settings,
                rngs=self._rngs,
            )
            task.protocol = protocol.name
            if outcome is not None:
                apply_outcome(task, outcome)
            for window in windows:
                window.append(now)
            self.tasks[task.task_id] = task
            if blocking or not protocol.is_async:
                if not isinstance(self.clock, FakeClock) or task.duration == 0:
                    task.start_time = now
                else:  # a fake clock cannot pass while the call blocks: the call answers at once
                    task.start_time, task.duration = now, 0.0
                self._kept.keep([task])
                return task
            group.append(task)
            schedule(group, spec.concurrency, floor=now, pending_seconds=self.settings.pending_seconds)
            self._kept.keep([task])  # a task joining the end of the queue moves no other task's start
            return task

    def get_task(self, account: str, task_id: str) -> tuple[Task, float] | None:
        """The account's task and the clock reading to judge it by, or None (unknown or expired)."""
        with self._lock:
            now = self.clock()
            self._adopt(account, now, again=task_id not in self.tasks)
            task = self.tasks.get(task_id)
            if task is None or task.account != account or now - task.submit_time >= self.settings.task_ttl:
                return None
            if task.lost or task.protocol == "MMG":  # lost, or a sync call: there is no task to query
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
            spec = catalog_model(task.model)
            group = self._groups[(account, task.model)]
            schedule(group, spec.concurrency, floor=now, pending_seconds=self.settings.pending_seconds)
            self._kept.keep(group)  # the cancellation freed a slot: the tasks behind it start sooner

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
            self._adopt(account, now, again=True)
            if api_key_id is not None and api_key_id != self.account_info(account)["api_key_id"]:
                return [], now
            if region is not None and region != self.region_id:
                return [], now
            if model_name is not None:
                # A Beijing name and its international alias name the same model.
                try:
                    model_name = catalog_model(model_name).name
                except KeyError:
                    return [], now
            found = []
            for task in self.tasks.values():
                if task.account != account or task.lost or task.protocol == "MMG":
                    continue
                if now - task.submit_time >= self.settings.task_ttl:
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
            group = self._groups.get((task.account, task.model), [])
            if task in group:  # sync calls never join a queue
                group.remove(task)
        self.oss.prune(now)

    # Tasks kept on disk (settings.state_path) ----------------------------------------------------

    def _adopt(self, account: str, now: float, *, again: bool = False) -> None:
        """Take in the account's kept tasks this emulator does not hold (made before a restart, or by
        another kernel on the same file): once per account, and `again` when a lookup missed."""
        if not self._kept or (account in self._adopted and not again):
            return
        self._adopted.add(account)
        ttl, url_ttl = self.settings.task_ttl, self.settings.url_ttl
        touched: set[tuple[str, str]] = set()
        for task in self._kept.load(account, live_after=now - ttl, forget_before=now - ttl - url_ttl):
            if task.task_id in self.tasks:
                continue
            self.tasks[task.task_id] = task
            if task.protocol != "MMG":
                self._groups.setdefault((account, task.model), []).append(task)
                touched.add((account, task.model))
        for key in touched:  # a queue is first come, first served: kept tasks take their places by submit time
            self._groups[key].sort(key=lambda t: t.submit_time)

    # Result images and uploads --------------------------------------------------------------------

    @property
    def uploads(self) -> Mapping[str, Upload]:
        return self.oss.uploads

    def result_path(self, task: Task, index: int) -> str:
        """The signed path and query of image `index` (0-based) of a task that has ended."""
        assert task.end_time is not None
        return self.oss.result_path(task.task_id, index, task.end_time)

    def result_image(self, path: str, query: Mapping[str, str], *, has_authorization: bool) -> bytes:
        """The bytes behind a signed result URL, or the OSS error the real object store gives."""
        with self._lock:
            task_id, index = self.oss.check_result_url(path, query, has_authorization=has_authorization)
            task, now = self.tasks.get(task_id), self.clock()
        if task is None or not 0 <= index < task.n or index in task.failed_items or task.status_at(now) != "SUCCEEDED":
            raise errors.oss_no_such_key()
        return task.render(index)

    def issue_policy(self, account: str, model: str | None) -> Policy:
        """An upload policy for `model`, valid 300 s, like GET /uploads?action=getPolicy."""
        if not model:
            raise errors.invalid_parameter("Required parameter model missing from request.")
        try:
            spec = catalog_model(model)
        except KeyError:
            raise errors.invalid_parameter("Model not exist.") from None
        with self._lock:
            self._limit(
                ("policy", account, spec.name),
                self.settings.policy_qps,
                self.clock(),
                errors.throttling_rate_quota(self.settings.retry_after),
            )
            return self.oss.issue_policy(
                account, self.account_info(account)["account_hash"], spec, self.new_id("upload")
            )

    def store_upload(self, fields: Mapping[str, str], data: bytes | None, content_type: str | None) -> Upload:
        """Accept an OSS PostObject form checked against a policy we issued."""
        with self._lock:
            return self.oss.store_upload(fields, data, content_type)


def _check_route(route: str) -> None:
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; routes are {', '.join(ROUTES)}")


def _mask(value: str) -> str:
    scheme, _, key = value.partition(" ")
    return f"{scheme} ...{key[-4:]}" if key else "..."
