"""`wanx_nb.history()`: the store's generations as plain rows, ready for pandas; and the checks of its
filters, which `%wanx history` shares (`check_filters`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from ._journal import EntryState, as_utc_iso
from ._models import TaskStatus
from ._params import HISTORY_LIMIT_MAX
from ._registry import get_model
from ._session import get_session
from ._store import Store

__all__ = ["STATUSES", "check_filters", "history"]

# What `status=` matches: the service's status of a task, or the journal's state of a request.
STATUSES: tuple[str, ...] = (*(s.value for s in TaskStatus), *(s.value for s in EntryState))


def history(
    *,
    model: str | None = None,
    text: str | None = None,
    since: str | dt.datetime | None = None,
    until: str | dt.datetime | None = None,
    status: str | None = None,
    offset: int = 0,
    limit: int | None = 50,
    store: Store | None = None,
) -> list[dict[str, Any]]:
    """Stored generations, newest first, as dicts: `pandas.DataFrame(wanx_nb.history(model="wanx-v1"))`.

    Filters: model, text (in the prompt or the rewritten prompt), since/until (UTC, ISO strings or
    datetimes), status (the service's, e.g. "SUCCEEDED", or the journal's state, e.g. "collecting").
    Pages: `offset` rows skipped, at most `limit` returned (None: every row). Each row has the journal
    `state` and the images `billed` (what `cost_yuan` counts) and `saved`. Uses the session's store
    unless `store` is given. A bad filter is a ValueError or TypeError naming the keyword.
    """
    check_filters(model=model, text=text, since=since, until=until, status=status)
    if limit is not None:
        every = f"a whole number from 1 to {HISTORY_LIMIT_MAX}, or None for every row"
        _check_count("limit", limit, 1, HISTORY_LIMIT_MAX, every)
    _check_count("offset", offset, 0, 2**62, "a whole number of rows to skip, 0 or more")
    store = store or get_session().store
    rows = store.history(model=model, text=text, since=since, until=until, status=status, offset=offset,
                         limit=limit)
    return [row.as_dict() for row in rows]


def check_filters(
    *,
    model: Any = None,
    text: Any = None,
    since: Any = None,
    until: Any = None,
    status: Any = None,
    names: Mapping[str, str] | None = None,
) -> None:
    """Raise ValueError (a bad value) or TypeError (a wrong type) for the first bad filter, naming it as
    `names` spells it (the keyword by default; `--since` for `%wanx history`), the value and what is allowed."""
    names = names or {}

    def refuse(key: str, value: Any, allowed: str, error: type[Exception] = ValueError) -> Exception:
        return error(f"{names.get(key, key)}={value!r}: {allowed}")

    if model is not None:
        if not isinstance(model, str):
            raise refuse("model", model, "a model id (str), e.g. wanx-v1", TypeError)
        try:
            get_model(model)
        except KeyError as exc:
            raise refuse("model", model, str(exc.args[0])) from None
    if text is not None and not isinstance(text, str):
        raise refuse("text", text, "text (str) to find in the prompt or the rewritten prompt", TypeError)
    for key, bound in (("since", since), ("until", until)):
        if bound is None or isinstance(bound, dt.datetime):
            continue
        iso = "an ISO 8601 time such as 2025-01-31T08:00 (UTC unless it gives an offset)"
        if not isinstance(bound, str):
            raise refuse(key, bound, f"{iso}, or a datetime", TypeError)
        try:
            as_utc_iso(bound)
        except ValueError:
            raise refuse(key, bound, iso) from None
    if status is not None:
        if not isinstance(status, str):
            raise refuse("status", status, "a status (str)", TypeError)
        if status.upper() not in STATUSES and status.lower() not in STATUSES:
            raise refuse("status", status, "one of " + ", ".join(STATUSES) + " (in any case)")


def past_the_end(page: int, limit: int, matching: int) -> str:
    """What to say when page `page` (of `limit` rows) is empty though `matching` rows match."""
    pages = -(-matching // limit)
    return (
        f"--page {page}: past the end; {matching} stored generation{'s' if matching != 1 else ''} match, "
        f"{pages} page{'s' if pages != 1 else ''} of {limit} (--page 1 to {pages})"
    )


def _check_count(key: str, value: Any, least: int, most: int, allowed: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{key}={value!r}: {allowed}")
    if not least <= value <= most:
        raise ValueError(f"{key}={value!r}: {allowed}")
