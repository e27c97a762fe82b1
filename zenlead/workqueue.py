"""A deduplicating, keyed work queue with delayed adds and per-key exponential backoff.

Semantics follow client-go's workqueue, which controller-runtime builds on:

- A key waiting in the queue is stored once however often it is added (dirty set).
- A key being processed is never handed to a second worker; adds during processing are
  remembered and the key is queued again when `done` is called.
- `add_after` schedules an add; `add_rate_limited` schedules one after the key's backoff
  (``base * 2**failures``, capped), and `forget` resets that backoff after a success.
- ``add(key, urgent=True)`` puts the key at the front (moving it there if it already waits;
  if it is being processed, its next run goes to the front). The controller uses it for
  Services whose leader is failing, so a failover never waits behind a burst of opt-ins.

It lives on the event loop (anyio); other threads add keys through
``anyio.from_thread.run_sync``. Time comes from an injectable clock so tests drive timers
without sleeping (`promote_due`).
"""

from __future__ import annotations

import collections
import heapq
import itertools
import time
from typing import TYPE_CHECKING, Generic, TypeVar

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

__all__ = ("WorkQueue",)

K = TypeVar("K", bound="Hashable")


class WorkQueue(Generic[K]):
    """Keys to reconcile; see the module docstring for the guarantees."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        base_delay_seconds: float = 0.01,
        max_delay_seconds: float = 120.0,
    ) -> None:
        """Create an empty queue; backoff goes from `base_delay_seconds` to the max."""
        self._clock = clock
        self._base = base_delay_seconds
        self._max = max_delay_seconds
        self._queue: collections.deque[K] = collections.deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._urgent: set[K] = set()  # Processing now; its next run goes to the front.
        self._failures: dict[K, int] = {}
        self._timers: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}  # Earliest pending add_after per key.
        self._seq = itertools.count()
        self._items = anyio.Semaphore(0)
        self._timer_changed = anyio.Event()
        self._closed = False

    def __len__(self) -> int:
        """Return the number of keys waiting (not processing, not delayed)."""
        return len(self._queue)

    @property
    def delayed(self) -> int:
        """Number of keys with a scheduled add not yet due."""
        return len(self._due)

    def add(self, key: K, *, urgent: bool = False) -> None:
        """Queue `key` unless it is already waiting; `urgent` puts it at the front."""
        if self._closed:
            return
        if urgent and key in self._processing:
            self._urgent.add(key)  # Its next run goes first.
        if key in self._dirty:
            if urgent and key not in self._processing:
                self._queue.remove(key)  # Rare, and the queue holds each key once.
                self._queue.appendleft(key)
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._push(key, front=urgent)

    def add_after(self, key: K, delay_seconds: float) -> None:
        """Queue `key` after `delay_seconds` (at once when not positive)."""
        if delay_seconds <= 0:
            self.add(key)
            return
        due = self._clock() + delay_seconds
        if self._due.get(key, float("inf")) <= due:
            return  # An earlier add of the same key is already scheduled.
        self._due[key] = due
        heapq.heappush(self._timers, (due, next(self._seq), key))
        self._timer_changed.set()

    def add_rate_limited(self, key: K) -> float:
        """Queue `key` after its backoff; return the delay used."""
        delay = self.backoff(key)
        self.add_after(key, delay)
        return delay

    def backoff(self, key: K) -> float:
        """Count one more failure of `key` and return its backoff (without queueing it)."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # Cap the exponent: 2.0**1024 overflows a float long after the delay hit its cap.
        delay: float = min(self._max, self._base * (2.0 ** min(failures, 64)))
        return delay

    def forget(self, key: K) -> None:
        """Reset the backoff of `key` (after a successful reconcile)."""
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        """Return how many times in a row `key` has failed."""
        return self._failures.get(key, 0)

    async def get(self) -> K | None:
        """Wait for a key and mark it processing; None once the queue is shut down."""
        await self._items.acquire()
        if not self._queue:
            return None  # Woken by shutdown.
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._urgent.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        """Mark `key` processed; queue it again if it was added meanwhile."""
        self._processing.discard(key)
        urgent = key in self._urgent
        self._urgent.discard(key)
        if key in self._dirty and not self._closed:
            self._push(key, front=urgent)

    def promote_due(self) -> float | None:
        """Add every scheduled key that is due; return seconds until the next one (or None)."""
        now = self._clock()
        while self._timers and self._timers[0][0] <= now:
            at, _, key = heapq.heappop(self._timers)
            if self._due.get(key) == at:
                del self._due[key]
                self.add(key)
        # Drop superseded entries at the head so the next wait is accurate.
        while self._timers and self._due.get(self._timers[0][2]) != self._timers[0][0]:
            heapq.heappop(self._timers)
        if not self._timers:
            return None
        due: float = self._timers[0][0]
        return due - now

    async def run_timers(self) -> None:
        """Promote scheduled keys as they come due, until cancelled."""
        while not self._closed:
            wait = self.promote_due()
            self._timer_changed = anyio.Event()
            with anyio.move_on_after(wait if wait is not None else 3600.0):
                await self._timer_changed.wait()

    def shutdown(self, workers: int) -> None:
        """Stop handing out keys; wake `workers` waiting `get` calls with None."""
        self._closed = True
        self._queue.clear()
        self._timer_changed.set()
        for _ in range(workers):
            self._items.release()

    def _push(self, key: K, *, front: bool = False) -> None:
        if front:
            self._queue.appendleft(key)
        else:
            self._queue.append(key)
        self._items.release()
