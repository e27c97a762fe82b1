"""The error policy of reconciles: which failures are retried when, counted how, or parked.

The workers in `app` hand every failed reconcile to `Policy.after_failure`, which returns a
`Plan`. The policy, like controller-runtime's reconcile result but for our failure kinds:

- ``throttled`` (429): retried after the server's Retry-After; not an error.
- ``deferred``: the API circuit is open (retried when it lets a trial through) or the cache
  has not caught up with our own write (retried in 50 ms); not an error.
- ``not_leading``: the Lease is gone; never retried here (the next leader queues everything).
- ``error``: anything else, retried with the key's exponential backoff (the work queue's).

Retries of errors and throttling draw on a per-namespace *retry budget* (a token bucket), so a
namespace whose every Service fails cannot spend the API share of the others: its retries wait
for budget. A key that keeps failing (`park_after_failures` in a row over at least
`park_after_seconds`) is *parked*, the dead-letter queue: a Warning, the
``zen_lead_dead_letter_services`` gauge, retries only every `parked_retry_seconds` (events
still trigger a reconcile at once), and its routing left as it last was. It leaves the
dead-letter queue on its first success.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from typing import TYPE_CHECKING, Generic, TypeVar

from zenlead import errors

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

__all__ = ("Budget", "Outcome", "Plan", "Policy", "classify")

K = TypeVar("K", bound="Hashable")


class Outcome(enum.StrEnum):
    """How a reconcile ended, as counted in ``zen_lead_reconciliations_total{result}``."""

    SUCCESS = "success"
    ERROR = "error"
    THROTTLED = "throttled"
    DEFERRED = "deferred"
    NOT_LEADING = "not_leading"


def classify(exc: BaseException) -> Outcome:
    """Return the outcome a reconcile that raised `exc` counts as."""
    if isinstance(exc, errors.ThrottledError):
        return Outcome.THROTTLED
    if isinstance(exc, (errors.CircuitOpenError, errors.StaleCacheError)):
        return Outcome.DEFERRED
    if isinstance(exc, errors.NotLeadingError):
        return Outcome.NOT_LEADING
    return Outcome.ERROR


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What to do after a failed reconcile.

    Attributes:
        outcome: The kind of failure.
        delay: Seconds until the retry (None: do not retry).
        budget_wait: Part of `delay` spent waiting for the namespace's retry budget.
        parked: The key has just entered the dead-letter queue.
        failures: Errors in a row so far (0 unless the outcome is an error).

    """

    outcome: Outcome
    delay: float | None
    budget_wait: float = 0.0
    parked: bool = False
    failures: int = 0


class Budget:
    """Per-namespace token buckets of retries: `rate` per second, `burst` saved."""

    def __init__(
        self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Give every namespace `burst` retries, refilled at `rate` per second."""
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def reserve(self, namespace: str) -> float:
        """Take one retry of `namespace`; return the seconds until it is due (0: now)."""
        now = self._clock()
        tokens, stamp = self._buckets.get(namespace, (self._burst, now))
        tokens = min(self._burst, tokens + (now - stamp) * self._rate) - 1.0
        self._buckets[namespace] = (tokens, now)
        return -tokens / self._rate if tokens < 0 else 0.0


@dataclasses.dataclass
class _Streak:
    failures: int
    since: float
    parked: bool = False
    warned_at: float | None = None


class Policy(Generic[K]):
    """Turns failures into plans; remembers error streaks and the parked keys."""

    def __init__(
        self,
        *,
        namespace_of: Callable[[K], str],
        budget: Budget | None = None,
        park_after_failures: int = 8,
        park_after_seconds: float = 30.0,
        parked_retry_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create a policy; `namespace_of(key)` names the budget a key's retries draw on."""
        self._namespace_of = namespace_of
        self._budget = budget or Budget(rate=5.0, burst=25, clock=clock)
        self._park_failures = park_after_failures
        self._park_seconds = park_after_seconds
        self._parked_retry = parked_retry_seconds
        self._clock = clock
        self._streaks: dict[K, _Streak] = {}

    def after_failure(self, key: K, exc: BaseException, *, backoff: float) -> Plan:
        """Return the plan for `key` after it raised `exc`; `backoff` is its queue backoff."""
        outcome = classify(exc)
        if outcome is Outcome.NOT_LEADING:
            return Plan(outcome, None)
        if outcome is Outcome.DEFERRED:
            return Plan(outcome, getattr(exc, "retry_after", 0.05))
        if outcome is Outcome.THROTTLED:
            backoff = max(backoff, getattr(exc, "retry_after", 1.0))
            return self._budgeted(key, outcome, backoff, parked=False, failures=0)
        now = self._clock()
        streak = self._streaks.setdefault(key, _Streak(0, now))
        streak.failures += 1
        newly = (
            not streak.parked
            and streak.failures >= self._park_failures
            and now - streak.since >= self._park_seconds
        )
        streak.parked = streak.parked or newly
        if streak.parked:
            backoff = max(backoff, self._parked_retry)
        return self._budgeted(key, outcome, backoff, parked=newly, failures=streak.failures)

    def _budgeted(
        self, key: K, outcome: Outcome, backoff: float, *, parked: bool, failures: int
    ) -> Plan:
        wait = self._budget.reserve(self._namespace_of(key))
        return Plan(outcome, max(backoff, wait), max(0.0, wait - backoff), parked, failures)

    def after_success(self, key: K) -> bool:
        """Forget `key`'s error streak; return True if it was parked (it has recovered)."""
        streak = self._streaks.pop(key, None)
        return streak is not None and streak.parked

    def warn_now(self, key: K) -> bool:
        """Tell whether a parked `key` is due a ReconcileFailing Warning (once per slow retry).

        Its own events retry a parked Service at once, and each failure must not become a
        Warning: at most one per `parked_retry_seconds`.
        """
        streak = self._streaks.get(key)
        if streak is None or not streak.parked:
            return False
        now = self._clock()
        if streak.warned_at is not None and now - streak.warned_at < self._parked_retry:
            return False
        streak.warned_at = now
        return True

    def clear(self) -> None:
        """Forget every streak (this replica stopped leading; the next leader starts afresh)."""
        self._streaks.clear()

    def parked(self, key: K) -> bool:
        """Tell whether `key` is in the dead-letter queue."""
        streak = self._streaks.get(key)
        return streak is not None and streak.parked

    def parked_per_namespace(self) -> dict[str, int]:
        """Return how many keys are parked, per namespace."""
        counts: dict[str, int] = {}
        for key, streak in self._streaks.items():
            if streak.parked:
                namespace = self._namespace_of(key)
                counts[namespace] = counts.get(namespace, 0) + 1
        return counts

    def streak(self, key: K) -> tuple[int, float] | None:
        """Return (errors in a row, since when) for `key`, or None."""
        streak = self._streaks.get(key)
        return None if streak is None else (streak.failures, streak.since)
