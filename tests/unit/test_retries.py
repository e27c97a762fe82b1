"""The reconcile error policy: what is an error, when to retry, the budget and the dead letters."""

from __future__ import annotations

import pytest

from tests import helpers
from zenlead import errors, retries

KEY = ("ns", "web")


def policy(clock: helpers.FakeClock, **kwargs: float) -> retries.Policy[tuple[str, str]]:
    """Return a policy on `clock`, keyed by (namespace, name)."""
    return retries.Policy(namespace_of=lambda key: key[0], clock=clock, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        pytest.param(errors.ThrottledError("429"), retries.Outcome.THROTTLED, id="429"),
        pytest.param(
            errors.CircuitOpenError("open", retry_after=2), retries.Outcome.DEFERRED, id="circuit"
        ),
        pytest.param(errors.StaleCacheError("behind"), retries.Outcome.DEFERRED, id="stale"),
        pytest.param(errors.NotLeadingError("lost"), retries.Outcome.NOT_LEADING, id="lease"),
        pytest.param(errors.ServerError("500", status=500), retries.Outcome.ERROR, id="5xx"),
        pytest.param(RecursionError("boom"), retries.Outcome.ERROR, id="internal"),
    ],
)
def test_classify(exc: Exception, outcome: retries.Outcome) -> None:
    """Throttling and deferrals are not errors; a lost Lease is not retried here."""
    assert retries.classify(exc) is outcome


def test_throttled_waits_for_retry_after() -> None:
    """A 429 is retried after its Retry-After even when the backoff is shorter."""
    plan = policy(helpers.FakeClock()).after_failure(
        KEY, errors.ThrottledError("429", retry_after=3.0), backoff=0.01
    )
    assert (plan.outcome, plan.delay, plan.failures) == (retries.Outcome.THROTTLED, 3.0, 0)


def test_not_leading_is_not_retried() -> None:
    """After losing the Lease the key is left for the next leader."""
    plan = policy(helpers.FakeClock()).after_failure(KEY, errors.NotLeadingError("x"), backoff=0.01)
    assert plan.delay is None


def test_budget_spreads_one_namespaces_retries() -> None:
    """Past its burst, a namespace's retries wait for budget; another namespace does not."""
    clock = helpers.FakeClock()
    budget = retries.Budget(rate=5.0, burst=25, clock=clock)
    made = retries.Policy(namespace_of=lambda key: key[0], budget=budget, clock=clock)
    plans = [
        made.after_failure(("broken", f"s{i}"), ValueError("x"), backoff=0.01) for i in range(35)
    ]
    assert all(p.budget_wait == 0 for p in plans[:25])
    assert plans[-1].delay == pytest.approx(2.0)
    assert plans[-1].budget_wait > 1.9
    other = made.after_failure(("healthy", "web"), ValueError("x"), backoff=0.01)
    assert other.delay == 0.01


def test_parks_after_failures_over_time_and_recovers() -> None:
    """Eight errors in a row over 30 s park the key (slow retries); a success unparks it."""
    clock = helpers.FakeClock()
    made = policy(clock)
    plans = []
    for _ in range(8):
        plans.append(made.after_failure(KEY, ValueError("x"), backoff=1.0))
        clock.advance(5.0)
    assert [p.parked for p in plans] == [False] * 7 + [True]
    assert plans[-1].delay == 300.0
    assert made.parked_per_namespace() == {"ns": 1}
    later = made.after_failure(KEY, ValueError("x"), backoff=1.0)
    assert (later.parked, later.delay) == (False, 300.0)
    assert made.after_success(KEY) is True
    assert made.parked_per_namespace() == {}
    assert made.after_success(KEY) is False


def test_many_quick_failures_alone_do_not_park() -> None:
    """A burst of failures within a few seconds (a blip) does not park the key."""
    clock = helpers.FakeClock()
    made = policy(clock)
    for _ in range(20):
        plan = made.after_failure(KEY, ValueError("x"), backoff=0.01)
        clock.advance(0.1)
    assert not plan.parked
    assert not made.parked(KEY)


def test_deferrals_do_not_count_toward_parking() -> None:
    """An open circuit for minutes does not park every Service."""
    clock = helpers.FakeClock()
    made = policy(clock)
    for _ in range(50):
        made.after_failure(KEY, errors.CircuitOpenError("open", retry_after=2.0), backoff=0)
        clock.advance(5.0)
    assert made.streak(KEY) is None


def test_parked_warnings_are_spaced() -> None:
    """A parked key is due one Warning on parking, then at most one per slow-retry interval."""
    clock = helpers.FakeClock()
    made = policy(clock)
    for _ in range(8):
        made.after_failure(KEY, ValueError("x"), backoff=1.0)
        clock.advance(5.0)
    assert made.warn_now(KEY)
    clock.advance(1.0)
    made.after_failure(KEY, ValueError("x"), backoff=1.0)  # An event retried it at once.
    assert not made.warn_now(KEY)
    clock.advance(300.0)
    assert made.warn_now(KEY)
    made.clear()
    assert made.parked_per_namespace() == {}
