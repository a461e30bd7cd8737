"""The Session: the single path the magics, the panel, compare and the CLI generate through.

One Session per kernel (`get_session()`): it owns the client (which runs on the background loop of
`_loop`), the local store and its journal, the mode (live / record / replay), the budget and what the
service billed. `start()` checks everything it can, then hands the requests to a `Run` (`_run`).
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._constants import ENV_API_KEY, env_budget_yuan, env_mode, env_store, uses_emulator
from ._exceptions import BudgetExceededError, ConfigurationError, ReplayMissError, ReuseUnfinishedError
from ._models import GenerationResult
from ._registry import get_model
from ._request import GenerationRequest
from ._resume import NEVER_SENT, ResumeReport, Takeover, resume_report
from ._run import Outcome, Phase, Progress, Run
from ._run_events import is_sync
from ._store import EntryState, JournalEntry, Store
from ._validation import validate

if TYPE_CHECKING:
    from ._client import AsyncWanxClient, InProcessService

__all__ = ["MODES", "Phase", "Progress", "ResumeReport", "Run", "Session", "Takeover", "get_session", "set_session"]

MODES = ("live", "record", "replay")
# Said with a result `reuse` took from the store (a grid says it per cell instead).
REUSED_NOTE = "made by an earlier run, shown from the store: not paid again (reuse)"

ProgressCallback = Callable[[Progress], None]
ResultCallback = Callable[[int, Outcome], None]


class Session:
    """Generates, stores, replays and accounts for images.

    Parameters:
        api_key, base_url, region, workspace: passed to the client; with no key at all the in-process
            emulator is used and every result says so.
        store: a Store or a directory (default `$WANX_NB_STORE` or `./wanx_store`).
        mode: "live" (default), "record" or "replay" (default `$WANX_NB_MODE`).
        budget_yuan: refuse a run whose estimate exceeds what is left of this (0 or None: no budget).
        client: an AsyncWanxClient to use instead of building one (tests).
        clock: the monotonic clock runs time out by (tests pass a fake one).
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
        client: AsyncWanxClient | None = None,
        emulator: InProcessService | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client_args: dict[str, Any] = dict(api_key=api_key, base_url=base_url, region=region, workspace=workspace, emulator=emulator)
        api_key = None  # kept in _client_args only: a verbose traceback (%xmode Verbose) prints frame locals
        self._client = client
        # Set when this session builds its own client (see `client()`).
        self._close_owned_client: weakref.finalize[[AsyncWanxClient], Session] | None = None
        self.store = store if isinstance(store, Store) else Store(store or env_store())
        self.mode = mode or env_mode() or "live"
        if self.mode not in MODES:
            raise ConfigurationError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        self.budget_yuan = budget_yuan if budget_yuan is not None else env_budget_yuan()
        self.spent_yuan = 0.0  # what the service billed this session's runs
        self._reserved: dict[str, float] = {}  # run id -> estimate, while the run is under way
        self._clock = clock
        self._replay_counts: dict[str, int] = {}

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

    def client(self) -> AsyncWanxClient:
        """The client (built on first use; it runs on the background loop)."""
        if self._client is None:
            from ._client import AsyncWanxClient

            self._client = AsyncWanxClient(**{k: v for k, v in self._client_args.items() if v is not None})
            # A session dropped without close() must not leak the client's pooled connections.
            self._close_owned_client = weakref.finalize(self, _close_client, self._client)
            self._close_owned_client.atexit = False  # at exit the loop thread is going away with the process
        return self._client

    def close(self) -> None:
        """Close the connections of the client this session built (a client passed in stays the caller's)."""
        if self._close_owned_client is not None:
            self._close_owned_client()

    @property
    def service(self) -> str:
        """Where this session's tasks live (part of a stored task's identity, with its task id)."""
        client = self.client()
        return "emulator" if client.backend == "emulator" and client._emulator is not None else urlsplit(client.base_url).netloc

    def reusable(self, request: GenerationRequest) -> GenerationResult | None:
        """This request (as given) as an earlier run made it, from the store, when every billed image is
        saved and this session's service made it; None otherwise. Raises ReuseUnfinishedError when an
        earlier run sent it and did not finish it (sent again, it would be paid twice).

        In replay mode: the outcome last replayed for it, when an earlier cell replayed one. A
        recording's reuse found what an earlier cell of the notebook made, and recorded nothing new;
        so the replay shows the same, marked the same way, without moving on to the next repeat.
        """
        if self.mode != "replay":
            found = self.store.reusable(request, self.service)
            if found is None and (pending := self.sent_unfinished(request)) is not None:
                raise ReuseUnfinishedError(request.summary(), pending.task_id)
            return found
        served = self._replay_counts.get(self.store.replay_key(request), 0)
        outcome = self.store.replay(request, served - 1) if served else None
        return outcome if isinstance(outcome, GenerationResult) else None

    def sent_unfinished(self, request: GenerationRequest) -> JournalEntry | None:
        """An earlier run's send of this request (as given) to this service, not finished within 24 h,
        that resume can still settle: its task may be billed and its images not saved, so sending the
        request again would pay twice. None when there is none.

        A sync call whose answer was lost is not one: it has no task to look up, resume can never
        settle it (whatever it made is out of reach), and refusing the request would only block it
        for 24 h.
        """
        entry = self.store.unfinished_send(request, self.service)
        lost_sync = entry is not None and entry.task_id is None and is_sync(request) and entry.state in (
            EntryState.SENDING, EntryState.OUTCOME_UNKNOWN)  # fmt: skip
        return None if lost_sync else entry

    # ---- cost ----------------------------------------------------------------------------------

    @staticmethod
    def estimate_cost(requests: Sequence[GenerationRequest]) -> tuple[int, float]:
        """(images, yuan) if every image of every request succeeds."""
        images = sum(r.effective_n for r in requests)
        yuan = sum(r.price_per_image * r.effective_n for r in requests)
        return images, round(yuan, 4)

    def check_budget(self, requests: Sequence[GenerationRequest]) -> None:
        """Raise BudgetExceededError before anything is sent when the estimate exceeds the budget.

        What is left counts what the service billed this session plus the estimates of runs still
        under way, so two runs started side by side cannot both spend the same yuan.
        """
        if not self.budget_yuan or self.mode == "replay":
            return
        _, estimate = self.estimate_cost(requests)
        remaining = self.budget_yuan - self.spent_yuan - sum(self._reserved.values())
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

    def start(
        self,
        requests: Sequence[GenerationRequest],
        *,
        reproducible: bool = False,
        reuse: bool = False,
        on_progress: ProgressCallback | None = None,
        on_result: ResultCallback | None = None,
    ) -> Run:
        """Start a Run of `requests` in the background and return it at once.

        Everything that can be checked is checked first, and raises before anything is sent: every
        request's rules, the budget, the store (writable, index healthy, space), a replay miss.
        Then each request is written to the journal, and only then sent. With `reuse`, a request an
        earlier run made (`reusable`) is settled from the store: not journaled, sent or paid again.
        """
        prepared = [self.prepare(r, reproducible=reproducible) for r in _request_list(requests)]
        reused = self._reused(prepared) if reuse else {}
        if self.mode == "replay":
            # Look every request up first: a miss fails loudly before anything is shown.
            replayed = [reused[i] if i in reused else self._replay(r) for i, (r, _) in enumerate(prepared)]
            run = self._new_run(on_progress, on_result)
            run._finish_replayed([r for r, _ in prepared], replayed)
            return run
        sent = [r for i, (r, _) in enumerate(prepared) if i not in reused]
        self.check_budget(sent)
        self.store.check()
        run = self._new_run(on_progress, on_result)
        run._journal(prepared, reused)
        run._launch()
        self._reserve(run, self.estimate_cost(sent)[1])
        return run

    def _reused(self, prepared: Sequence[tuple[GenerationRequest, list[str]]]) -> dict[int, GenerationResult]:
        """The requests (by index) an earlier run made, each result saying so where it is shown."""
        found = {i: result for i, (request, _) in enumerate(prepared) if (result := self.reusable(request)) is not None}
        for result in found.values():
            result.warnings.append(REUSED_NOTE)
        return found

    async def agenerate_many(
        self,
        requests: Sequence[GenerationRequest],
        *,
        reproducible: bool = False,
        reuse: bool = False,
        on_progress: ProgressCallback | None = None,
        on_result: ResultCallback | None = None,
    ) -> list[Outcome]:
        """Run every request concurrently within the limits; failures come back as exceptions in place."""
        return await self.start(requests, reproducible=reproducible, reuse=reuse, on_progress=on_progress,
                                on_result=on_result)  # fmt: skip

    async def agenerate(
        self,
        request: GenerationRequest,
        *,
        reproducible: bool = False,
        reuse: bool = False,
        on_progress: ProgressCallback | None = None,
        on_result: ResultCallback | None = None,
    ) -> GenerationResult:
        """Generate one request; raises on failure. Works with top-level `await` in a notebook."""
        (result,) = await self.agenerate_many(
            [request], reproducible=reproducible, reuse=reuse, on_progress=on_progress, on_result=on_result
        )
        if isinstance(result, BaseException):
            raise result
        return result

    def generate_many(
        self,
        requests: Sequence[GenerationRequest],
        *,
        reproducible: bool = False,
        reuse: bool = False,
        on_progress: ProgressCallback | None = None,
        on_result: ResultCallback | None = None,
    ) -> list[Outcome]:
        """Blocking form: Ctrl-C cancels this run's PENDING tasks and keeps running ones for resume."""
        run = self.start(requests, reproducible=reproducible, reuse=reuse, on_progress=on_progress, on_result=on_result)
        return run.result()

    def generate(
        self,
        request: GenerationRequest,
        *,
        reproducible: bool = False,
        reuse: bool = False,
        on_progress: ProgressCallback | None = None,
        on_result: ResultCallback | None = None,
    ) -> GenerationResult:
        """Blocking form of `agenerate`: raises on failure."""
        (result,) = self.generate_many(
            [request], reproducible=reproducible, reuse=reuse, on_progress=on_progress, on_result=on_result
        )
        if isinstance(result, BaseException):
            raise result
        return result

    # ---- resume --------------------------------------------------------------------------------

    def start_resume(self, *, on_progress: ProgressCallback | None = None, on_result: ResultCallback | None = None) -> tuple[Run, Takeover]:
        """Start a Run over the unfinished journal entries, within the service's 24 h, of runs that stopped.

        A run still going (in this kernel or another) keeps its entries: resuming a create it has on the
        wire would find no task yet and finish the entry as unbilled. Requests a stopped run never sent
        are withdrawn (not billed). Returns the run and what else was found (`Takeover`).
        """
        self.store.check()
        expired = self.store.expired_unfinished()
        for entry in expired:
            self.store.finish(
                entry.entry_id, EntryState.GONE, code="Expired",
                message="older than the service's 24 h: the task and its images can no longer be fetched",
            )
        waiting = self.store.unfinished() + self.store.queued()
        locks = {run_id: lock for run_id in dict.fromkeys(e.run_id for e in waiting)
                 if (lock := self.store.hold_run(run_id)) is not None}  # fmt: skip
        try:
            # Read again under the locks: a run that ended meanwhile has finished its entries.
            unfinished, queued = self.store.unfinished(), self.store.queued()
            # A task lives on the service it was sent to: asked elsewhere, it would be "not found".
            service = self.service
            elsewhere = sorted({e.service for e in unfinished if e.run_id in locks and e.service != service})
            entries = [e for e in unfinished if e.run_id in locks and e.service == service]
            never_sent = [e for e in queued if e.run_id in locks]
            for entry in never_sent:
                self.store.mark_withdrawn(entry.entry_id, message=NEVER_SENT)
            left = sum(1 for e in unfinished + queued if e.run_id not in locks)
            other = sum(1 for e in unfinished if e.run_id in locks and e.service != service)
            run = self._new_run(on_progress, on_result)
        except BaseException:  # kept, they would make those runs look alive to every later resume
            for lock in locks.values():
                lock.release()
            raise
        run._adopt(entries, list(locks.values()))
        run._launch(resume=True)
        return run, Takeover(expired, never_sent, left, other, tuple(elsewhere))

    def resume(self, *, on_result: Callable[[GenerationResult], None] | None = None) -> ResumeReport:
        """Finish every unfinished task of the journal: save billed images, reconcile unknown creates."""
        run, takeover = self.start_resume(
            on_result=(lambda i, outcome: on_result(outcome) if isinstance(outcome, GenerationResult) else None)
            if on_result else None
        )
        return resume_report(run.result(), takeover)

    async def aresume(self) -> ResumeReport:
        run, takeover = self.start_resume()
        return resume_report(await run, takeover)

    # ---- internals -----------------------------------------------------------------------------

    def _new_run(self, on_progress: ProgressCallback | None, on_result: ResultCallback | None) -> Run:
        live = self.mode != "replay"
        return Run(
            store=self.store,
            client=self.client() if live else None,
            mode=self.mode,
            backend=self.backend,
            service=self.service if live else "replay",
            on_progress=on_progress,
            on_result=on_result,
            on_billed=self._billed,
            clock=self._clock,
        )

    def _billed(self, yuan: float) -> None:
        self.spent_yuan = round(self.spent_yuan + yuan, 4)

    def _reserve(self, run: Run, estimate: float) -> None:
        self._reserved[run.run_id] = estimate

        def release(_: Run) -> None:
            self._reserved.pop(run.run_id, None)

        run.add_done_callback(release)

    def _replay(self, request: GenerationRequest) -> Outcome:
        key = self.store.replay_key(request)
        nth = self._replay_counts.get(key, 0)
        outcome = self.store.replay(request, nth)
        if outcome is None:
            raise ReplayMissError(key, request.summary())
        self._replay_counts[key] = nth + 1
        return outcome


def _request_list(requests: object) -> list[GenerationRequest]:
    """The requests of a run, or a TypeError saying what was passed instead (before anything is sent)."""
    example = "e.g. [GenerationRequest('a red fox', model='wanx-v1')]"
    if isinstance(requests, (str, bytes, GenerationRequest)) or not isinstance(requests, Iterable):
        raise TypeError(f"requests={requests!r:.80}: a list of GenerationRequest, not a {type(requests).__name__}; {example}")
    listed = list(requests)
    for i, request in enumerate(listed):
        if not isinstance(request, GenerationRequest):
            raise TypeError(f"requests[{i}]={request!r:.80}: a GenerationRequest, not a {type(request).__name__}; {example}")
    return listed


def _close_client(client: AsyncWanxClient) -> None:
    from ._loop import submit

    try:
        submit(client.aclose())  # on the background loop, which owns the connections
    except RuntimeError:
        pass  # the loop is gone, and its connections with it


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
