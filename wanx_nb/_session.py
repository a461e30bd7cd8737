"""The Session: the single path the magics, the panel, compare and the CLI generate through.

One Session per kernel (`get_session()`): it owns the client on a background event loop (`_loop`), the
local store, the mode (live / record / replay), the budget and the running cost totals.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import _loop
from ._constants import ENV_API_KEY, env_budget_yuan, env_mode, env_store, uses_emulator
from ._exceptions import BudgetExceededError, ConfigurationError, ReplayMissError, TaskCanceledError, WanxError
from ._models import GenerationResult, Task
from ._registry import get_model
from ._request import GenerationRequest
from ._store import Store
from ._validation import validate

__all__ = ["MODES", "Progress", "Session", "get_session", "set_session"]

MODES = ("live", "record", "replay")


@dataclass(frozen=True)
class Progress:
    """A status update for one request while it runs (sent from the background loop).

    phase: "queued" (waiting for a rate or concurrency slot), "pending", "running", "downloading",
    "done", "failed" or "replayed". `label` says which request (its index in a batch and model).
    """

    index: int
    model: str
    phase: str
    task_id: str | None = None
    elapsed: float = 0.0

    @property
    def label(self) -> str:
        tid = f" {self.task_id[:8]}" if self.task_id else ""
        return f"#{self.index} {self.model}{tid}: {self.phase} {self.elapsed:.1f}s"


ProgressCallback = Callable[[Progress], None]


class Session:
    """Generates, stores, replays and accounts for images.

    Parameters:
        api_key, base_url, region, workspace: passed to the client; with no key at all the in-process
            emulator is used and every result says so.
        store: a Store or a directory (default `$WANX_NB_STORE` or `./wanx_store`).
        mode: "live" (default), "record" or "replay" (default `$WANX_NB_MODE`).
        budget_yuan: refuse a run whose estimate exceeds what is left of this (0 or None: no budget).
        client: an AsyncWanxClient to use instead of building one (tests).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        region: str | None = None,
        workspace: str | None = None,
        store: Store | str | os.PathLike[str] | None = None,
        mode: str | None = None,
        budget_yuan: float | None = None,
        client: Any = None,
        emulator: Any = None,
    ) -> None:
        self._client_args = dict(api_key=api_key, base_url=base_url, region=region, workspace=workspace, emulator=emulator)
        self._client = client
        self.store = store if isinstance(store, Store) else Store(store or env_store())
        self.mode = mode or env_mode() or "live"
        if self.mode not in MODES:
            raise ConfigurationError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        self.budget_yuan = budget_yuan if budget_yuan is not None else env_budget_yuan()
        self.spent_yuan = 0.0
        self._replay_counts: dict[str, int] = {}
        self._inflight: dict[str, Task] = {}  # task id -> last seen, until the result is saved
        self._queued: dict[int, asyncio.Task[Any]] = {}  # requests not sent yet (waiting for a slot)
        self._withdrawn: set[int] = set()

    # ---- backend -------------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """"replay", "emulator" or "dashscope": where results come from."""
        if self.mode == "replay":
            return "replay"
        if self._client is not None:
            return self._client.backend
        args = self._client_args
        return "emulator" if uses_emulator(args["api_key"], args["base_url"], emulator=args["emulator"]) else "dashscope"

    @property
    def has_key(self) -> bool:
        return bool(self._client_args.get("api_key") or os.environ.get(ENV_API_KEY))

    async def _get_client(self) -> Any:
        if self._client is None:
            from ._client import AsyncWanxClient

            self._client = AsyncWanxClient(**{k: v for k, v in self._client_args.items() if v is not None})
        return self._client

    # ---- cost ----------------------------------------------------------------------------------

    @staticmethod
    def estimate_cost(requests: Sequence[GenerationRequest]) -> tuple[int, float]:
        """(images, yuan) if every image of every request succeeds."""
        images = sum(r.effective_n for r in requests)
        yuan = sum(get_model(r.model).price_yuan * r.effective_n for r in requests)
        return images, round(yuan, 4)

    def check_budget(self, requests: Sequence[GenerationRequest]) -> None:
        """Raise BudgetExceededError before anything is sent when the estimate exceeds the budget."""
        if not self.budget_yuan or self.mode == "replay":
            return
        _, estimate = self.estimate_cost(requests)
        remaining = self.budget_yuan - self.spent_yuan
        if estimate > remaining + 1e-9:
            raise BudgetExceededError(estimate, max(remaining, 0.0), self.budget_yuan)

    # ---- generation ----------------------------------------------------------------------------

    def prepare(self, request: GenerationRequest, *, reproducible: bool = False) -> tuple[GenerationRequest, list[str]]:
        """Validate (raising before anything is sent) and apply --reproducible. Returns (request, notes)."""
        notes = list(validate(request))
        if reproducible and "prompt_extend" in get_model(request.model).params:
            recorded = self.store.recorded_actual_prompt(request)
            if recorded:
                request = request.replace(prompt=recorded, prompt_extend=False)
                notes.append("reproducible: re-sent the recorded rewritten prompt with prompt_extend off")
            else:
                request = request.replace(prompt_extend=False)
                notes.append("reproducible: prompt rewriting turned off (prompt_extend=False)")
        return request, notes

    async def agenerate_many(
        self,
        requests: Sequence[GenerationRequest],
        *,
        reproducible: bool = False,
        on_progress: ProgressCallback | None = None,
        on_result: Callable[[int, GenerationResult | BaseException], None] | None = None,
    ) -> list[GenerationResult | BaseException]:
        """Run every request concurrently within the limits; failures come back as exceptions in place."""
        prepared = [self.prepare(r, reproducible=reproducible) for r in requests]
        self.check_budget([r for r, _ in prepared])
        if self.mode == "replay":
            # Look every request up first: a miss fails loudly before anything is shown.
            replayed = [self._replay(r) for r, _ in prepared]
            for i, ((request, _), outcome) in enumerate(zip(prepared, replayed)):
                if on_progress:
                    elapsed = outcome.elapsed if isinstance(outcome, GenerationResult) else 0.0
                    on_progress(Progress(i, request.model, "replayed", getattr(outcome, "task_id", None), elapsed))
                if on_result:
                    on_result(i, outcome)
            return list(replayed)
        return await _loop.run_in_background(self._run_live(prepared, on_progress, on_result))

    async def agenerate(self, request: GenerationRequest, **kwargs: Any) -> GenerationResult:
        """Generate one request; raises on failure. Works with top-level `await` in a notebook."""
        (result,) = await self.agenerate_many([request], **kwargs)
        if isinstance(result, BaseException):
            raise result
        return result

    def generate_many(self, requests: Sequence[GenerationRequest], **kwargs: Any) -> list[GenerationResult | BaseException]:
        """Blocking form of agenerate_many. Ctrl-C / kernel interrupt cancels PENDING tasks."""
        return _loop.run_sync(self.agenerate_many(requests, **kwargs), on_interrupt=self.interrupt_message)

    def generate(self, request: GenerationRequest, **kwargs: Any) -> GenerationResult:
        (result,) = self.generate_many([request], **kwargs)
        if isinstance(result, BaseException):
            raise result
        return result

    def start(self, requests: Sequence[GenerationRequest], **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Start agenerate_many in the background; returns a Future (the panel uses this)."""
        return _loop.submit(self.agenerate_many(requests, **kwargs))

    def withdraw_queued(self) -> int:
        """Drop the requests still waiting for their turn (never sent, never billed). Returns how many."""
        return _loop.run_sync(self._withdraw_queued())

    def cancel_pending(self) -> tuple[list[str], list[str]]:
        """Cancel every PENDING task of this session. Returns (canceled ids, ids still running)."""
        return _loop.run_sync(self._cancel_inflight())

    # ---- internals -----------------------------------------------------------------------------

    async def _run_live(
        self,
        prepared: list[tuple[GenerationRequest, list[str]]],
        on_progress: ProgressCallback | None,
        on_result: Callable[[int, GenerationResult | BaseException], None] | None,
    ) -> list[GenerationResult | BaseException]:
        client = await self._get_client()

        async def one(i: int, request: GenerationRequest, notes: list[str]) -> GenerationResult | BaseException:
            start = time.monotonic()
            model = request.model
            token = id(asyncio.current_task())
            self._queued[token] = asyncio.current_task()  # type: ignore[assignment]
            sent_id: str | None = None

            def emit(phase: str, task_id: str | None = None) -> None:
                if on_progress:
                    on_progress(Progress(i, model, phase, task_id, time.monotonic() - start))

            def submitted(task: Task, sent: GenerationRequest) -> None:
                nonlocal sent_id
                sent_id = task.task_id
                self._queued.pop(token, None)
                self._inflight[task.task_id] = task
                # Write-ahead: the task id is on disk before we wait, so a crash cannot lose it.
                self.store.record_submitted(task, sent, backend=client.backend, given=request, mode=self.mode)
                emit("pending", task.task_id)

            def status(task: Task) -> None:
                self._inflight[task.task_id] = task
                emit(task.status.value.lower(), task.task_id)

            emit("queued")
            try:
                result = await client.generate(request, on_submitted=submitted, on_status=status)
            except asyncio.CancelledError:
                if token not in self._withdrawn:
                    raise  # the whole run was cancelled (an interrupt): let it end
                self._withdrawn.discard(token)
                if sent_id is None:
                    withdrawn = TaskCanceledError("(not sent)", "CANCELED", "Withdrawn", "withdrawn before it was sent")
                else:  # the submit was already under way: the task exists and is cancelled if still PENDING
                    withdrawn = TaskCanceledError(sent_id, "CANCELED", "Withdrawn", "withdrawn just after it was sent")
                emit("canceled", sent_id)
                if on_result:
                    on_result(i, withdrawn)
                return withdrawn
            except WanxError as exc:
                task_id = getattr(exc, "task_id", None)
                if task_id:
                    self.store.record_failure(task_id, exc)
                    self._inflight.pop(task_id, None)
                emit("failed", task_id)
                if on_result:
                    on_result(i, exc)
                return exc
            finally:
                self._queued.pop(token, None)
            self._inflight.pop(result.task_id, None)
            result.warnings[:0] = [n for n in notes if n not in result.warnings]
            emit("downloading", result.task_id)
            self.store.save_result(result)  # stored before it is shown
            self.spent_yuan += result.cost_yuan
            emit("done", result.task_id)
            if on_result:
                on_result(i, result)
            return result

        return list(await asyncio.gather(*(one(i, r, notes) for i, (r, notes) in enumerate(prepared))))

    def _replay(self, request: GenerationRequest) -> GenerationResult | BaseException:
        key = self.store.replay_key(request)
        nth = self._replay_counts.get(key, 0)
        outcome = self.store.replay(request, nth)
        if outcome is None:
            raise ReplayMissError(key, request.summary())
        self._replay_counts[key] = nth + 1
        return outcome

    async def _withdraw_queued(self) -> int:
        queued = list(self._queued.items())
        for token, task in queued:
            self._withdrawn.add(token)
            task.cancel()  # a submit already under way still completes and is written ahead
        return len(queued)

    async def _cancel_inflight(self) -> tuple[list[str], list[str]]:
        client = await self._get_client()
        canceled, running = [], []
        for task_id, task in list(self._inflight.items()):
            try:
                await client.cancel(task_id)
                canceled.append(task_id)
            except WanxError:
                running.append(task_id)
        return canceled, running

    def interrupt_message(self) -> str:
        """Cancel PENDING tasks (after an interrupt) and say what was canceled and what still runs."""
        canceled, running = self.cancel_pending()
        parts = []
        if canceled:
            parts.append(f"canceled PENDING task(s) {', '.join(canceled)}")
        if running:
            parts.append(
                f"still running (not cancellable, will be billed; recover with %wanx resume): {', '.join(running)}"
            )
        return "; ".join(parts) or "no task was in flight"

    # ---- store-backed views --------------------------------------------------------------------

    async def aresume(self, *, on_result: Callable[[GenerationResult], None] | None = None) -> list[GenerationResult]:
        """Re-attach to tasks written ahead but never saved (within 24 h) and save their images."""
        return await _loop.run_in_background(self._resume(on_result))

    def resume(self, **kwargs: Any) -> list[GenerationResult]:
        return _loop.run_sync(self.aresume(**kwargs))

    async def _resume(self, on_result: Callable[[GenerationResult], None] | None) -> list[GenerationResult]:
        client = await self._get_client()
        recovered = []
        for row in self.store.unfinished_tasks():
            try:
                result = await client.collect(row.task_id, row.request)
            except WanxError as exc:
                self.store.record_failure(row.task_id, exc)
                continue
            self.store.save_result(result)
            recovered.append(result)
            if on_result:
                on_result(result)
        return recovered


_SESSION: Session | None = None


def get_session() -> Session:
    """The process-wide session (created on first use from the environment)."""
    global _SESSION
    if _SESSION is None:
        _SESSION = Session()
    return _SESSION


def set_session(session: Session | None) -> None:
    """Replace the process-wide session (configuration changes, tests)."""
    global _SESSION
    _SESSION = session
