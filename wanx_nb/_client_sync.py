"""`WanxClient`: the blocking form of AsyncWanxClient, on the package's one background loop.

The async client lives on `_loop`'s event loop (the same one the Session uses), so a blocking call
works inside Jupyter's running loop without `asyncio.run` or nest_asyncio, and there is one bridge
between blocking code and the async client, not one per object. `_loop.run_sync` turns Ctrl-C into
a cancel of the call in progress. Callbacks run on the background loop's thread.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Collection, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from . import _loop
from ._auth import APIKeyAuth
from ._client import AsyncWanxClient, InProcessService, OnSending, OnStatus, OnSubmitted, Submission
from ._constants import DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, DEFAULT_WAIT_TIMEOUT
from ._models import GenerationResult, ImageResult, Task, TaskStatus
from ._protocol_list import TaskPage
from ._reconcile import Reconciliation
from ._request import GenerationRequest

if TYPE_CHECKING:
    import httpx

__all__ = ["WanxClient"]

T = TypeVar("T")


class WanxClient:
    """The blocking form of AsyncWanxClient, for scripts and notebook cells: same arguments and methods.

    Close it with `close()` or `with WanxClient() as client:`. Ctrl-C (a kernel interrupt) cancels the
    call in progress. A method called from one of this client's own callbacks is refused (it would
    wait for itself).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        region: str | None = None,
        workspace: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        wait_timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        emulator: InProcessService | None = None,
        workspace_domain: bool = False,
    ) -> None:
        auth = APIKeyAuth(api_key) if api_key else None  # no frame local holds the key (see _auth)
        del api_key
        self._closed = False

        async def make() -> AsyncWanxClient:  # built on the loop it will run on
            return AsyncWanxClient(
                auth, base_url=base_url, region=region, workspace=workspace, timeout=timeout,
                connect_timeout=connect_timeout, max_retries=max_retries, wait_timeout=wait_timeout,
                transport=transport, emulator=emulator, workspace_domain=workspace_domain,
            )

        self._client = self._run(make())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("this WanxClient is closed; create a new one")
        try:
            return _loop.run_sync(coro)
        except RuntimeError as exc:
            if "cannot be called from the wanx_nb loop" in str(exc):
                coro.close()
                raise RuntimeError(
                    "a WanxClient method was called from one of its own callbacks; that would deadlock"
                ) from None
            raise

    @property
    def backend(self) -> str:
        return self._client.backend

    @property
    def region(self) -> str:
        return self._client.region

    @property
    def async_client(self) -> AsyncWanxClient:
        """The AsyncWanxClient underneath (it lives on the background loop)."""
        return self._client

    def submit(self, request: GenerationRequest) -> Submission:
        return self._run(self._client.submit(request))

    def get_task(self, task_id: str) -> Task:
        return self._run(self._client.get_task(task_id))

    def wait(
        self, task: Task | Submission | str, *, timeout: float | None = None, on_status: OnStatus | None = None
    ) -> Task:
        return self._run(self._client.wait(task, timeout=timeout, on_status=on_status))

    def cancel(self, task_id: str) -> None:
        return self._run(self._client.cancel(task_id))

    def list_tasks(
        self,
        *,
        page_no: int = 1,
        page_size: int = 10,
        start_time: dt.datetime | dt.date | str | None = None,
        end_time: dt.datetime | dt.date | str | None = None,
        model_name: str | None = None,
        status: TaskStatus | str | None = None,
        api_key_id: str | None = None,
        region: str | None = None,
    ) -> TaskPage:
        return self._run(
            self._client.list_tasks(
                page_no=page_no, page_size=page_size, start_time=start_time, end_time=end_time,
                model_name=model_name, status=status, api_key_id=api_key_id, region=region,
            )
        )

    def upload(self, path: str | os.PathLike[str], model: str) -> str:
        return self._run(self._client.upload(path, model))

    def download(self, url: str, *, expect: tuple[int, int] | None = None) -> bytes:
        return self._run(self._client.download(url, expect=expect))

    def fetch(self, image: ImageResult, *, expect: tuple[int, int] | None = None) -> None:
        return self._run(self._client.fetch(image, expect=expect))

    def reconcile(
        self, request: GenerationRequest, *, sent_after: dt.datetime, sent_before: dt.datetime,
        exclude: Collection[str] = (),
    ) -> Reconciliation:  # fmt: skip
        return self._run(
            self._client.reconcile(request, sent_after=sent_after, sent_before=sent_before, exclude=exclude)
        )

    def generate(
        self,
        request: GenerationRequest,
        *,
        timeout: float | None = None,
        on_submitted: OnSubmitted | None = None,
        on_status: OnStatus | None = None,
        on_sending: OnSending | None = None,
    ) -> GenerationResult:
        return self._run(
            self._client.generate(
                request, timeout=timeout, on_submitted=on_submitted, on_status=on_status, on_sending=on_sending
            )
        )

    def collect(
        self, task: Task | Submission | str, request: GenerationRequest, *, timeout: float | None = None,
        on_status: OnStatus | None = None,
    ) -> GenerationResult:  # fmt: skip
        return self._run(self._client.collect(task, request, timeout=timeout, on_status=on_status))

    def generate_many(
        self,
        requests: Sequence[GenerationRequest],
        *,
        timeout: float | None = None,
        on_submitted: OnSubmitted | None = None,
        on_status: OnStatus | None = None,
        on_result: Callable[[int, GenerationResult | Exception], Any] | None = None,
        on_sending: OnSending | None = None,
    ) -> list[GenerationResult | Exception]:
        return self._run(
            self._client.generate_many(
                requests, timeout=timeout, on_submitted=on_submitted, on_status=on_status, on_result=on_result,
                on_sending=on_sending,
            )
        )

    def close(self) -> None:
        """Close the connections (the background loop is shared and stays)."""
        if self._closed:
            return
        try:
            self._run(self._client.aclose())
        finally:
            self._closed = True

    def __enter__(self) -> WanxClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        inner = repr(self._client) if hasattr(self, "_client") else "<unconfigured>"
        return inner.replace("<AsyncWanxClient", "<WanxClient", 1)
