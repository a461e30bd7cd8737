"""Plain data the client returns: Task, ImageResult, GenerationResult (its record: `_provenance`)."""

from __future__ import annotations

import datetime as dt
import enum
import io
import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ._exceptions import ImageExpiredError
from ._png import strip_provenance
from ._provenance import ImageProvenance, Provenance, store_relative
from ._request import GenerationRequest

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["GenerationResult", "ImageResult", "ListedTask", "Task", "TaskStatus"]


class TaskStatus(str, enum.Enum):
    """The server's task states. UNKNOWN means a wrong or expired (over 24 h) task id."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    UNKNOWN = "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        return self in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED, TaskStatus.UNKNOWN)

    @classmethod
    def parse(cls, value: str | None) -> TaskStatus:
        try:
            return cls(value or "UNKNOWN")
        except ValueError:
            return cls.UNKNOWN


@dataclass(frozen=True)
class ListedTask:
    """What only a row of the task list (`GET /tasks`, §1.5) says. Times are epoch ms, as sent."""

    model_name: str | None = None
    gmt_create: int | None = None
    start_time: int | None = None
    end_time: int | None = None
    region: str | None = None

    @property
    def created(self) -> dt.datetime | None:
        """`gmt_create` as an aware UTC datetime."""
        if self.gmt_create is None:
            return None
        return dt.datetime.fromtimestamp(self.gmt_create / 1000, dt.timezone.utc)


@dataclass(frozen=True, slots=True)
class Task:
    """One task as the server last reported it (`GET /tasks/{id}`, the create response, or a list row).

    `listed` holds the list row's own fields; it is None for a task read any other way. (Slots: every
    result of a batch keeps one.)
    """

    task_id: str | None  # None for a synchronous call (sync-only models): there is no task
    status: TaskStatus
    request_id: str | None = None
    submit_time: str | None = None
    scheduled_time: str | None = None
    end_time: str | None = None
    results: tuple[dict[str, Any], ...] = ()
    metrics: dict[str, int] | None = None
    code: str | None = None
    message: str | None = None
    usage: dict[str, Any] | None = None
    emulator: bool = False
    listed: ListedTask | None = None

    @property
    def image_count(self) -> int:
        """Images billed: `usage.image_count` (successful images only)."""
        if self.usage and "image_count" in self.usage:
            return int(self.usage["image_count"])
        return sum(1 for r in self.results if r.get("url"))

    def __repr__(self) -> str:
        return f"<Task {self.task_id!r} [{self.status.value}]>"


@dataclass
class ImageResult:
    """One image of a task, with its provenance.

    `code`/`message` are the service's own per-image failure (not billed). `download_error`/
    `download_code` say why a billed image could not be downloaded (ImageExpiredError's code when its
    URL expired); the service's fields are kept, so it can be downloaded again while the URL lives.
    """

    index: int
    seed: int | None
    size: str
    url: str | None = None
    orig_prompt: str | None = None
    actual_prompt: str | None = None
    code: str | None = None
    message: str | None = None
    data: bytes | None = field(default=None, repr=False)
    path: str | None = None
    sha256: str | None = None
    export_path: str | None = field(default=None, compare=False)  # a readable copy (the magic's output_dir)
    download_error: str | None = None
    download_code: str | None = None
    if TYPE_CHECKING:  # behind the `data` property (below), set by its setter: not dataclass fields
        _data: bytes | None = field(default=None, init=False)
        _released: bool = field(default=False, init=False)

    @property
    def ok(self) -> bool:
        """No service failure, and bytes or a URL to get them from (a failed download is still `ok`)."""
        return self.code is None and (self.url is not None or self.data is not None)

    @property
    def billed(self) -> bool:
        """The service reported this image succeeded, so it was billed (whether or not it was saved)."""
        return self.code is None and (self.url is not None or self.data is not None or self.path is not None)

    @property
    def missing(self) -> bool:
        """Billed but not downloaded: no bytes and no stored file."""
        return self.billed and self.data is None and self.path is None

    @property
    def gone(self) -> bool:
        """Its result URL expired before it was downloaded: it cannot be had any more."""
        return self.download_code == ImageExpiredError.code

    @property
    def image(self) -> Image:
        """The image as a PIL image (decoded from the stored bytes)."""
        from PIL import Image as PILImage

        data = self.data
        if data is None:
            if self.path is None:
                failed = (self.download_code, self.download_error) if self.download_error else (self.code, self.message)
                raise ValueError(f"image {self.index} has no data: {failed[0]}: {failed[1]}")
            with open(self.path, "rb") as fh:  # not kept: a batch's images need not all fit in memory
                data = fh.read()
        return PILImage.open(io.BytesIO(data))

    def release(self) -> bool:
        """Drop the in-memory bytes once they are in the stored file at `path`; `data` then reads them
        back from it on use (the served bytes, without our provenance chunk). Returns whether it did."""
        if self._data is None or not self.path or not os.path.isfile(self.path):
            return False
        self._data, self._released = None, True
        return True

    def provenance(self) -> ImageProvenance:
        """This image's part of the provenance record (its path relative to the store)."""
        return ImageProvenance(
            index=self.index, seed=self.seed, size=self.size, orig_prompt=self.orig_prompt,
            actual_prompt=self.actual_prompt, sha256=self.sha256, path=store_relative(self.path), url=self.url,
            code=self.code, message=self.message, download_code=self.download_code,
            download_error=self.download_error,
        )  # fmt: skip

    def __repr__(self) -> str:
        if not self.ok:
            state = f"failed {self.code}"
        elif self.missing and self.download_code:
            state = f"not downloaded {self.download_code}"
        else:
            state = "ok"
        return f"<ImageResult #{self.index} {self.size} seed={self.seed} {state}>"


# Plain attributes, never `__dict__`: reading it would give every image a dict of its own.
def _read_data(self: ImageResult) -> bytes | None:
    held = self._data
    if held is not None or not self._released or not self.path:
        return held
    try:
        with open(self.path, "rb") as fh:
            stored = fh.read()
    except OSError:
        return None
    try:
        return strip_provenance(stored)
    except ValueError:  # not a PNG (the store keeps corrupt bytes as they were paid for)
        return stored


def _write_data(self: ImageResult, value: bytes | None) -> None:
    self._data, self._released = value, False


# `data` stays a dataclass field (ImageResult(data=...) and replace() work) backed by a property, so
# bytes released after storing are read back lazily wherever `image.data` is used.
ImageResult.data = property(_read_data, _write_data, doc="The image bytes as served (None when there are none).")  # type: ignore[assignment]


@dataclass
class GenerationResult:
    """The outcome of one request: the terminal task, its images, cost and provenance."""

    request: GenerationRequest
    task: Task
    images: list[ImageResult]
    backend: str = "dashscope"
    elapsed: float = 0.0
    warnings: list[str] = field(default_factory=list)
    created_at: str | None = None
    # Served from the local store in replay mode. It renders exactly as when it was recorded (a
    # replayed notebook gives the same outputs, byte for byte); the flag and the metadata say so.
    replayed: bool = False
    # The request as the user gave it (None: as sent, `request`), and the create call's request id
    # (`task.request_id` is the last poll's). Set by the Run; the client's own results leave them None.
    given: GenerationRequest | None = None
    create_request_id: str | None = None

    @property
    def model(self) -> str:
        return self.request.model

    @property
    def task_id(self) -> str | None:
        """The service's task id; None for a synchronous call (it has none: see `task.request_id`)."""
        return self.task.task_id

    @property
    def succeeded(self) -> list[ImageResult]:
        return [im for im in self.images if im.ok]

    @property
    def failed(self) -> list[ImageResult]:
        return [im for im in self.images if not im.ok]

    @property
    def billed_images(self) -> int:
        """Images the service billed: its usage count, else the images it reports as made."""
        if self.task.usage and "image_count" in self.task.usage:
            return int(self.task.usage["image_count"])
        return sum(1 for im in self.images if im.billed)

    @property
    def saved_images(self) -> int:
        return sum(1 for im in self.images if im.path)

    @property
    def cost_yuan(self) -> float:
        """What the service bills: price per image times the billed images (not the downloaded ones)."""
        # z-image-turbo costs more with prompt rewriting on (2026 §8); other models have one price.
        price = self.request.price_per_image
        return round(price * self.billed_images, 4)

    @property
    def from_emulator(self) -> bool:
        return self.backend == "emulator"

    @property
    def pil_images(self) -> list[Image]:
        return [im.image for im in self.succeeded]

    @property
    def paths(self) -> list[str]:
        return [im.path for im in self.images if im.path]

    @property
    def request_id(self) -> str | None:
        """The create call's request id (a sync call's own); None for a task whose create id is unknown."""
        return self.create_request_id if self.task.task_id is not None else self.task.request_id

    def provenance(self) -> Provenance:
        """The provenance record: everything needed to know how each image was made (never the API key)."""
        return Provenance(
            backend=self.backend, model=self.request.model, given=self.given or self.request, sent=self.request,
            task_id=self.task.task_id, request_id=self.request_id, status=self.task.status.value,
            submit_time=self.task.submit_time, end_time=self.task.end_time, created_at=self.created_at,
            usage=self.task.usage, billed_images=self.billed_images, cost_yuan=self.cost_yuan,
            elapsed_s=self.elapsed, warnings=tuple(self.warnings), replayed=self.replayed,
            images=tuple(im.provenance() for im in self.images),
        )  # fmt: skip

    def metadata(self) -> dict[str, Any]:
        """The provenance record as a JSON-ready dict (output metadata, the CLI's records)."""
        return self.provenance().to_dict()

    @classmethod
    def from_provenance(cls, record: Provenance, images: list[ImageResult]) -> GenerationResult:
        """The result a record describes; `images` carry what the record does not (bytes, absolute paths)."""
        task = Task(
            task_id=record.task_id, status=TaskStatus.parse(record.status), request_id=record.request_id,
            submit_time=record.submit_time, end_time=record.end_time,
            usage=record.usage, results=tuple({"url": im.url} for im in images if im.url),
            emulator=record.backend == "emulator",
        )  # fmt: skip
        if task.usage is None and sum(1 for im in images if im.billed) != record.billed_images:
            task = replace(task, usage={"image_count": record.billed_images})  # the bill wins over what is kept
        return cls(
            request=record.sent, task=task, images=images, backend=record.backend, elapsed=record.elapsed_s,
            warnings=list(record.warnings), created_at=record.created_at, replayed=record.replayed,
            given=record.given, create_request_id=record.request_id if record.task_id is not None else None,
        )  # fmt: skip

    def __repr__(self) -> str:
        ok, total = len(self.succeeded), len(self.images)
        src = " (emulator)" if self.from_emulator else ""
        return f"<GenerationResult {self.request.model} {ok}/{total} images ¥{self.cost_yuan:.2f}{src}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        from .rendering import result_mimebundle

        return result_mimebundle(self)
