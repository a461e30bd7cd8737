"""Deciding which task, if any, a create with an unknown outcome made (no I/O; `_client` lists and asks).

A create that may have reached the service (SubmitOutcomeUnknownError) is looked up among the
account's tasks: the list endpoint (§1.5) gives, per task, its model, status and `gmt_create` (epoch
ms) but neither the prompt nor the parameters. So the window [sent_after, sent_before] (widened by
CLOCK_SLACK for the difference between our clock and the server's) and the model select the
candidates; ids the journal already knows are dropped; and each candidate's own finished record
(`GET /tasks/{id}`) must agree: the prompt where it names one (V2 models: `orig_prompt`), and the
number of images. A candidate still running is waited for first (`_client_reconcile`): its record
names nothing yet, and the key may be shared with another process that made it. Seeds are not
reported by the service, so they cannot be matched; a task adopted without its prompt named (wanx-v1
records never name it) says so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from ._models import ListedTask, Task, TaskStatus
from ._registry import get_model
from ._request import GenerationRequest

__all__ = ["CLOCK_SLACK", "Reconciliation", "decide", "in_window", "list_window"]

# Seconds either side of the send window: our wall clock and the server's may differ this much.
CLOCK_SLACK = 5.0


@dataclass(frozen=True)
class Reconciliation:
    """What became of a create whose outcome was unknown.

    - `decided` and `task`: the task it created (adopt it: wait, download, record).
    - `decided` and no task: no task was created in the window, so nothing was billed.
    - not `decided`: cannot tell (several candidates, or the listing failed); `candidates` lists the
      ids that could be it, `reason` says why. Keep the record and try again later (within 24 h).
    """

    task: Task | None
    decided: bool
    candidates: tuple[str, ...]
    reason: str
    prompt_named: bool = False  # the adopted task's record names this request's prompt


def list_window(sent_after: dt.datetime, sent_before: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The list filter's [start, end], widened by CLOCK_SLACK and to whole seconds (the filter's grain)."""
    start = sent_after - dt.timedelta(seconds=CLOCK_SLACK)
    end = sent_before + dt.timedelta(seconds=CLOCK_SLACK + 1)
    return start.replace(microsecond=0), end.replace(microsecond=0)


def in_window(
    rows: Iterable[Task],
    model: str,
    *,
    sent_after: dt.datetime,
    sent_before: dt.datetime,
    exclude: Collection[str] = (),
) -> list[str]:
    """Ids of listed tasks of `model` created within the send window (± CLOCK_SLACK), minus `exclude`.

    A row without its list fields (`listed`), or with some missing, is not ruled out by them.
    """
    slack = dt.timedelta(seconds=CLOCK_SLACK)
    found: list[str] = []
    for row in rows:
        if not row.task_id or row.task_id in exclude or row.task_id in found:
            continue
        listed = row.listed or ListedTask()
        if listed.model_name is not None and _model_of(listed.model_name) != model:
            continue
        created = listed.created
        if created is not None and not sent_after - slack <= created <= sent_before + slack:
            continue
        found.append(row.task_id)
    return found


def decide(request: GenerationRequest, tasks: Sequence[Task], *, window: str) -> Reconciliation:
    """Pick the task among the candidates' finished records: the prompt where a record names it, and the
    number of images, must be this request's."""
    ids = tuple(t.task_id for t in tasks)
    evidence = {t.task_id: _evidence(t, request) for t in tasks}
    left = [t for t in tasks if evidence[t.task_id] is not False]
    if not tasks:
        return Reconciliation(None, True, (), f"no task of {request.model} was created {window}: nothing was billed")
    if not left:
        return Reconciliation(
            None, True, (), f"the {len(tasks)} task(s) of {request.model} created {window} are other requests' "
            "(another prompt or number of images)",
        )  # fmt: skip
    if len(left) == 1:
        named = bool(evidence[left[0].task_id])
        how = "its prompt matches" if named else (
            f"the only task of {request.model} created {window} with this number of images (its record does not "
            "name the prompt)"
        )  # fmt: skip
        return Reconciliation(left[0], True, tuple(t.task_id for t in left if t.task_id), f"task {left[0].task_id}: {how}",
                              prompt_named=named)  # fmt: skip
    return Reconciliation(
        None,
        False,
        tuple(t.task_id for t in left if t.task_id),
        f"{len(left)} tasks of {request.model} were created {window} and the service does not say which is this "
        f"request's (of {len(ids)} candidates)",
    )


def _evidence(task: Task, request: GenerationRequest) -> bool | None:
    """True: the record names this prompt; False: it is another request's (another prompt, or a finished
    task with another number of images); None: it names neither."""
    named = {r.get("orig_prompt") for r in task.results if r.get("orig_prompt")}
    if named and request.prompt not in named:
        return False
    # A succeeded task lists one result per image asked for, made or failed.
    if task.status is TaskStatus.SUCCEEDED and task.results and len(task.results) != request.effective_n:
        return False
    return True if named else None


def _model_of(name: str) -> str:
    try:
        return get_model(name).name
    except KeyError:
        return name
