"""`wanx_nb.history()` refuses a bad filter or page naming the keyword, the value and what is allowed,
as `%wanx history` does for its options (they share the checks)."""

import datetime as dt
import re

import pytest

from wanx_nb._history import history
from wanx_nb._request import GenerationRequest


@pytest.fixture
def store(session):
    session.generate(GenerationRequest("a fox", model="wanx2.1-t2i-turbo", n=1, seed=1))
    return session.store


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"since": "yesterday"}, ValueError, "since='yesterday': an ISO 8601 time such as 2025-01-31T08:00"),
        ({"until": 5}, TypeError, "until=5: an ISO 8601 time such as 2025-01-31T08:00 (UTC unless it gives an "
                                  "offset), or a datetime"),
        ({"model": "nope"}, ValueError, "model='nope': unknown model 'nope'"),
        ({"model": "wanx2.1-t2i-trubo"}, ValueError, "did you mean 'wanx2.1-t2i-turbo'"),
        ({"limit": "5"}, TypeError, "limit='5': a whole number from 1 to 100000, or None for every row"),
        ({"limit": -1}, ValueError, "limit=-1: a whole number from 1 to 100000"),
        ({"limit": 0}, ValueError, "limit=0: a whole number from 1 to 100000"),
        ({"offset": -5}, ValueError, "offset=-5: a whole number of rows to skip, 0 or more"),
        ({"offset": 1.5}, TypeError, "offset=1.5: a whole number of rows to skip"),
        ({"status": "nope"}, ValueError, "status='nope': one of PENDING, RUNNING"),
        ({"text": 3}, TypeError, "text=3: text (str)"),
    ],
)
def test_a_bad_filter_names_the_keyword_the_value_and_what_is_allowed(store, kwargs, error, words):
    with pytest.raises(error, match=re.escape(words)):
        history(store=store, **kwargs)


def test_good_filters_still_find_the_rows(store):
    assert len(history(store=store)) == 1
    assert len(history(store=store, status="succeeded", limit=None, offset=0)) == 1
    assert len(history(store=store, status="DONE", model="wanx2.1-t2i-turbo", text="fox")) == 1
    assert history(store=store, since=dt.datetime(2999, 1, 1)) == []
    assert len(history(store=store, since="2000-01-01T00:00+08:00", until="2999-01-01")) == 1
    assert history(store=store, offset=1) == []
