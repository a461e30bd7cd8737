"""`wanx_nb.history()`: the store's generations as plain rows, ready for pandas."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ._session import get_session
from ._store import Store

__all__ = ["history"]


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
    Pages: `offset` rows skipped, at most `limit` returned. Each row has the journal `state` and the images
    `billed` (what `cost_yuan` counts) and `saved`. Uses the session's store unless `store` is given.
    """
    store = store or get_session().store
    rows = store.history(model=model, text=text, since=since, until=until, status=status, offset=offset,
                         limit=limit)
    return [row.as_dict() for row in rows]
