"""Retry delays, retry rules and the poll schedule (pure functions)."""

from __future__ import annotations

import email.utils

import pytest

from wanx_nb._backoff import (
    POLL_DUE_MARGIN,
    POLL_GROWTH,
    POLL_JITTER,
    POLL_LEAD,
    DurationModel,
    Failure,
    next_poll_delay,
    parse_retry_after,
    retry_delay,
    should_retry_read,
    should_retry_submit,
)
from wanx_nb._constants import POLL_MAX_DELAY, POLL_MIN_DELAY, RETRY_AFTER_CAP, RETRY_INITIAL_DELAY, RETRY_MAX_DELAY


def test_retry_delay_is_exponential_capped_and_jittered_down_by_at_most_a_quarter():
    no_jitter = [retry_delay(k, rng=lambda: 0.0) for k in range(7)]
    assert no_jitter == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert no_jitter[0] == RETRY_INITIAL_DELAY and max(no_jitter) == RETRY_MAX_DELAY
    full = [retry_delay(k, rng=lambda: 0.999999) for k in range(3)]
    assert full == pytest.approx([0.375, 0.75, 1.5], rel=1e-4)


def test_retry_after_wins_up_to_the_cap_and_a_longer_one_gives_up():
    assert retry_delay(0, retry_after=3.0) == 3.0
    assert retry_delay(5, retry_after=0.0) == 0.0
    assert retry_delay(0, retry_after=RETRY_AFTER_CAP) == RETRY_AFTER_CAP
    assert retry_delay(0, retry_after=RETRY_AFTER_CAP + 1) is None


def test_parse_retry_after_seconds_ms_and_http_date():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    now = 1_736_323_200.0
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(7.0)
    assert parse_retry_after({"retry-after": email.utils.formatdate(now - 30, usegmt=True)}, now=now) == 0.0
    assert parse_retry_after({"retry-after": date}) is None  # a date needs `now`
    assert parse_retry_after({"retry-after": "soon"}, now=now) is None
    assert parse_retry_after({}) is None


@pytest.mark.parametrize(("status", "retry"), [(408, True), (429, True), (500, True), (502, True), (503, True),
                                                (504, True), (400, False), (401, False), (403, False), (404, False)])
def test_reads_retry_408_429_and_5xx(status, retry):
    assert should_retry_read(status) is retry


@pytest.mark.parametrize(("status", "retry"), [(429, True), (503, True), (500, False), (502, False), (504, False),
                                                (408, False), (400, False)])
def test_submits_retry_only_what_cannot_have_created_a_task(status, retry):
    assert should_retry_submit(status) is retry


def test_transport_failures():
    assert should_retry_submit(failure=Failure.NOT_SENT)
    assert not should_retry_submit(failure=Failure.AFTER_SENT)
    assert not should_retry_submit(failure=Failure.FATAL)
    assert should_retry_read(failure=Failure.NOT_SENT) and should_retry_read(failure=Failure.AFTER_SENT)
    assert not should_retry_read(failure=Failure.FATAL)


def simulate(expected: float, finishes_at: float) -> tuple[list[float], float]:
    """Poll times until the first poll at or after `finishes_at`."""
    t, polls = 0.0, []
    while not polls or polls[-1] < finishes_at:
        t += next_poll_delay(t, expected, len(polls))
        polls.append(t)
    return polls, polls[-1] - finishes_at


def test_first_poll_is_shortly_before_the_expected_end():
    assert next_poll_delay(0.0, 12.0, 0) == pytest.approx(POLL_LEAD * 12.0)
    assert next_poll_delay(5.0, 12.0, 1) == pytest.approx(POLL_LEAD * 12.0 - 5.0)


def test_schedule_notices_completion_quickly_with_few_requests():
    polls, lag = simulate(expected=12.0, finishes_at=12.0)
    assert polls == pytest.approx([9.6, 10.56, 11.616, 12.12])  # the last look is just after the expected end
    assert lag <= POLL_DUE_MARGIN * 12.0 + 1e-9
    # Jitter never makes a look skip over the expected end.
    assert next_poll_delay(11.9, 12.0, 3, rng=lambda: 0.999) == pytest.approx(0.22)
    # A task taking twice as long as expected: still noticed within ~10% of its duration.
    polls, lag = simulate(expected=12.0, finishes_at=24.0)
    assert len(polls) <= 12 and lag <= 0.11 * 24.0


def test_poll_intervals_grow_and_are_clamped():
    assert next_poll_delay(1000.0, 12.0, 50) == POLL_MAX_DELAY
    assert next_poll_delay(2.0, 2.5, 3) == POLL_MIN_DELAY  # 10% of 2 s would be 0.2 s: clamped up
    assert next_poll_delay(20.0, 12.0, 5) < next_poll_delay(40.0, 12.0, 6)


def test_the_floor_never_exceeds_a_tenth_of_the_expected_duration():
    # A task expected to take no time is polled at once (no 0.25 s wait before the first look)...
    assert next_poll_delay(0.0, 0.0, 0) == 0.0
    assert next_poll_delay(0.0, 0.0, 0, rng=lambda: 0.99) == 0.0
    # ...and a 0.3 s task (an emulator at time_scale 0.01) is looked at every ~0.03 s near its end,
    # not 0.25 s, which would be most of its duration again.
    assert next_poll_delay(0.31, 0.3, 2) == pytest.approx(0.031)
    assert next_poll_delay(0.29, 0.3, 2) == pytest.approx(0.013)  # the look just after the expected end...
    assert next_poll_delay(0.303 - 1e-12, 0.3, 3) == pytest.approx(0.0303)  # ...once, not again at clock rounding
    assert next_poll_delay(0.24, 0.3, 1) == pytest.approx(0.03)  # at the lead: the floor, not zero
    polls, lag = simulate(expected=0.3, finishes_at=0.3)
    assert lag <= 0.1 * 0.3 + 1e-9


def test_a_queued_task_is_polled_less_often_the_longer_it_waits():
    assert next_poll_delay(0.0, 0.6, 3) == pytest.approx(0.48)
    assert next_poll_delay(0.0, 0.6, 3, queued=30.0) == pytest.approx(3.0)
    assert next_poll_delay(0.0, 0.6, 9, queued=600.0) == POLL_MAX_DELAY
    assert next_poll_delay(0.0, 30.0, 3, queued=30.0) == pytest.approx(24.0)  # the lead still wins


def test_poll_jitter_stays_within_ten_percent():
    lo = next_poll_delay(20.0, 12.0, 3, rng=lambda: 0.0)
    hi = next_poll_delay(20.0, 12.0, 3, rng=lambda: 0.999999)
    assert lo == pytest.approx(1.8) and hi == pytest.approx(2.2, rel=1e-4)


def test_duration_model_learns_a_per_model_correction():
    model = DurationModel()
    assert model.expected("m", 10.0) == 10.0
    model.observe("m", 10.0, 20.0)
    assert model.expected("m", 10.0) == pytest.approx(20.0)
    model.observe("m", 10.0, 20.0)
    assert model.correction("m") == pytest.approx(2.0)
    model.observe("m", 10.0, 5.0)  # half weight to the newest, in log space: sqrt(2 * 0.5) = 1
    assert model.correction("m") == pytest.approx(1.0)
    assert model.correction("other") == 1.0
    model.observe("z", 10.0, 1e9)
    assert model.correction("z") == pytest.approx(DurationModel.MAX_RATIO)
    model.observe("z", 10.0, 0.0)  # ignored
    assert model.correction("z") == pytest.approx(DurationModel.MAX_RATIO)


# ---- edges of the poll schedule and the duration model (each pins a rule of `next_poll_delay`) ----

def test_the_jitter_moves_the_lead_point_by_its_factor():
    # rng 0.75 is a jitter factor of 1 + POLL_JITTER * 0.5: the first look moves later by that factor.
    factor = 1 + POLL_JITTER * 0.5
    assert next_poll_delay(0.0, 10.0, 0, rng=lambda: 0.75) == pytest.approx(POLL_LEAD * 10.0 * factor)


def test_a_look_at_the_jittered_lead_point_counts_as_the_lead_look():
    # Exactly at the earliest jittered lead point the schedule is already in its growth phase.
    at_lead = (1.0 - POLL_JITTER) * (POLL_LEAD * 10.0)
    assert next_poll_delay(at_lead, 10.0, 1) == pytest.approx(POLL_GROWTH * at_lead)


def test_a_task_queued_under_a_second_is_still_polled_at_queue_pace():
    # Expected to take no time, so no floor: only the queue rule spaces the polls.
    assert next_poll_delay(0.0, 0.0, 1, queued=1.0) == pytest.approx(POLL_GROWTH * 1.0)
    factor = 1 + POLL_JITTER * 0.5
    assert next_poll_delay(0.0, 0.0, 1, queued=1.0, rng=lambda: 0.75) == pytest.approx(POLL_GROWTH * factor)


def test_a_queued_task_gets_no_look_at_the_expected_end():
    # While the task waits PENDING its end is unknown: no extra look is squeezed in at `due`.
    assert next_poll_delay(9.5, 10.0, 3, queued=0.5) == pytest.approx(POLL_GROWTH * 9.5)


def test_the_look_at_the_expected_end_is_taken_from_within_the_margin_and_not_repeated_there():
    due = (1 + POLL_DUE_MARGIN) * 10.0
    assert next_poll_delay(10.0, 10.0, 3) == pytest.approx(due - 10.0)
    landed = due - 0.5 * POLL_DUE_MARGIN * 10.0  # a look that landed at the end, up to clock rounding
    assert next_poll_delay(landed, 10.0, 4) == pytest.approx(POLL_GROWTH * landed)


def test_parse_retry_after_refuses_non_finite_seconds():
    assert parse_retry_after({"retry-after": "inf"}) is None
    assert parse_retry_after({"retry-after": "nan"}) is None


def test_duration_model_ignores_models_without_an_estimate_and_learns_short_ones():
    model = DurationModel()
    model.observe("no-estimate", 0.0, 5.0)  # a zero base has no ratio: ignored, not a ZeroDivisionError
    assert model.correction("no-estimate") == 1.0
    model.observe("fast", 0.5, 0.25)  # sub-second estimates and observations are real data
    assert model.correction("fast") == pytest.approx(0.5)
