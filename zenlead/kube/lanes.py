"""The controller's asynchronous API seam: bounded thread lanes, pacing, fencing and breaking.

Everything on the event loop that calls the API server (the reconciler, the Event recorder,
the Lease elector) goes through `Lanes`; only informers, which own their threads, call
`api.Api` directly. Each call names a lane, and each lane has its own `anyio.CapacityLimiter`,
so the kinds of work cannot starve each other of threads:

- ``LEASE``: acquiring and renewing the Lease (one thread, its own connection pool);
- ``TRAFFIC``: writes that move traffic (the leader EndpointSlice and its leader annotations);
- ``ORDINARY``: everything else (metadata syncs, creates, deletes, Events).

A call first takes its rate token (`api.TokenBucket.reserve`) and waits for it *on the event
loop*, then waits for a thread of its lane; no thread is ever held while waiting. A call whose
caller is cancelled (leadership lost, a Lease round out of time) gives up its lane slot at
once while its thread finishes the request, so a lane may briefly run more threads than its
size; each such request still ends within its own timeout (the Lease's is capped at the
round's budget). Ordinary
calls also wait while the server's last 429 asks us to (``Retry-After``), and fail fast with
`errors.CircuitOpenError` while the `Breaker` is open (the API keeps failing: we keep the
last-good routing instead of piling on). Writes are *fenced*: inside the worker thread, right
before the request is sent, `fence()` must grant time (the seconds left of this replica's Lease
validity); the request timeout is capped at that time, so no write is sent, nor waited for,
after leadership ends.
"""

from __future__ import annotations

import enum
import functools
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from zenlead import errors

if TYPE_CHECKING:
    from collections.abc import Callable

    from zenlead.kube import api

__all__ = ("Breaker", "Lane", "Lanes")

log = logging.getLogger(__name__)


class Lane(enum.Enum):
    """Which thread lane a call runs in (see the module docstring)."""

    LEASE = "lease"
    TRAFFIC = "traffic"
    ORDINARY = "ordinary"


_OUTAGE = (errors.UnavailableError, errors.ServerError)
"""Failures that say the API server is unwell (not an answer about one object)."""


class Breaker:
    """A circuit breaker over API outcomes (thread-safe).

    After `threshold` outage failures in a row (no answer, 5xx) it *opens* for `cooldown`
    seconds (doubling on every failed trial, up to `max_cooldown`); ordinary calls are refused
    meanwhile. Then one trial call is let through (*half-open*): success closes it, failure
    opens it again. Urgent lanes are never refused: moving traffic is worth a try, and their
    outcomes count like any other.
    """

    CLOSED, HALF_OPEN, OPEN = "closed", "half-open", "open"

    def __init__(
        self,
        *,
        threshold: int = 5,
        cooldown: float = 2.0,
        max_cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str], None] = lambda _state: None,
    ) -> None:
        """Create a closed breaker; `on_change(state)` hears every transition."""
        self._threshold = threshold
        self._base = cooldown
        self._max = max_cooldown
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._failures = 0
        self._cooldown = cooldown
        self._opened_at = 0.0
        self._trial_at = 0.0
        self.state = self.CLOSED

    def admit(self) -> float:
        """Return 0 if an ordinary call may go now, else the seconds until a trial may."""
        with self._lock:
            if self.state == self.CLOSED:
                return 0.0
            now = self._clock()
            # A trial that never reported back (cancelled) must not hold the circuit forever.
            since = self._trial_at if self.state == self.HALF_OPEN else self._opened_at
            left = since + self._cooldown - now
            if left > 0:
                return max(left, 0.1)
            self._trial_at = now
            self._set(self.HALF_OPEN)
            return 0.0

    def record(self, error: BaseException | None) -> None:
        """Count one finished call: None for success, else the exception it raised."""
        with self._lock:
            if not isinstance(error, _OUTAGE):
                if error is None or isinstance(error, errors.KubeError):
                    self._failures, self._cooldown = 0, self._base
                    self._set(self.CLOSED)
                return
            self._failures += 1
            if self.state == self.HALF_OPEN:
                self._cooldown = min(self._max, self._cooldown * 2)
            if self.state == self.HALF_OPEN or self._failures >= self._threshold:
                self._opened_at = self._clock()
                self._set(self.OPEN)

    def _set(self, state: str) -> None:
        if state != self.state:
            self.state = state
            level = logging.WARNING if state == self.OPEN else logging.INFO
            log.log(level, "API circuit %s", state)
            self._on_change(state)


class Lanes:
    """Asynchronous API calls in bounded thread lanes (see the module docstring)."""

    def __init__(
        self,
        client: api.Api,
        *,
        lease_client: api.Api | None = None,
        sizes: dict[Lane, int] | None = None,
        fence: Callable[[], float] = lambda: math.inf,
        breaker: Breaker | None = None,
        on_throttle: Callable[[str, float], None] = lambda _op, _wait: None,
    ) -> None:
        """Call through `client` (the Lease through `lease_client`, default `client`).

        `sizes` gives each lane's thread count (default LEASE 1, TRAFFIC 8, ORDINARY 8);
        `fence()` returns the seconds this replica may still write (<= 0: refuse);
        `on_throttle(operation, retry_after)` hears every 429.
        """
        self.client = client
        self._lease_client = lease_client or client
        wanted = {Lane.LEASE: 1, Lane.TRAFFIC: 8, Lane.ORDINARY: 8} | (sizes or {})
        self._limiters = {lane: anyio.CapacityLimiter(n) for lane, n in wanted.items()}
        self.fence = fence
        self.breaker = breaker or Breaker()
        self._on_throttle = on_throttle
        self._paused_until = 0.0

    async def get(
        self,
        res: api.Resource,
        namespace: str,
        name: str,
        *,
        lane: Lane,
        request_timeout: float | None = None,
    ) -> Any:
        """GET one object (`request_timeout` caps the HTTP timeout)."""
        return await self._run(lane, "get", res, namespace, name, write=False, cap=request_timeout)

    async def create(
        self,
        res: api.Resource,
        namespace: str,
        body: dict[str, Any],
        *,
        lane: Lane,
        request_timeout: float | None = None,
    ) -> Any:
        """Create `body`; fenced unless it is an Event or the Lease."""
        return await self._run(
            lane, "create", res, namespace, body, write=_fenced(res), cap=request_timeout
        )

    async def patch(
        self, res: api.Resource, namespace: str, name: str, body: dict[str, Any], *, lane: Lane
    ) -> Any:
        """Merge-patch an object (fenced)."""
        return await self._run(lane, "patch", res, namespace, name, body, write=_fenced(res))

    async def replace(
        self,
        res: api.Resource,
        namespace: str,
        name: str,
        body: dict[str, Any],
        *,
        lane: Lane,
        request_timeout: float | None = None,
    ) -> Any:
        """Replace an object (fenced unless it is the Lease)."""
        return await self._run(
            lane, "replace", res, namespace, name, body, write=_fenced(res), cap=request_timeout
        )

    async def delete(
        self, res: api.Resource, namespace: str, name: str, *, uid: str | None, lane: Lane
    ) -> None:
        """Delete an object, with a UID precondition (fenced)."""
        await self._run(lane, "delete", res, namespace, name, uid=uid, write=_fenced(res))

    async def _run(
        self,
        lane: Lane,
        operation: str,
        *args: Any,
        write: bool,
        cap: float | None = None,
        **kwargs: Any,
    ) -> Any:
        client = self._lease_client if lane is Lane.LEASE else self.client
        if lane is Lane.ORDINARY:
            await self._admit(operation)
        await anyio.sleep(client.bucket.reserve(urgent=lane is not Lane.ORDINARY))
        method = getattr(client, operation)
        call = functools.partial(self._send, client, method, *args, write=write, cap=cap, **kwargs)
        try:
            result = await anyio.to_thread.run_sync(
                call, limiter=self._limiters[lane], abandon_on_cancel=True
            )
        except errors.ThrottledError as exc:
            self._throttled(operation, exc.retry_after)
            raise
        except errors.KubeError as exc:
            self.breaker.record(exc)
            raise
        self.breaker.record(None)
        return result

    def _send(
        self,
        client: api.Api,
        method: Any,
        *args: Any,
        write: bool,
        cap: float | None,
        **kwargs: Any,
    ) -> Any:
        """In the worker thread: check the fence last, then send with a capped timeout."""
        timeout = client.timeout_seconds if cap is None else min(client.timeout_seconds, cap)
        timeout = max(timeout, 0.05)
        if write:
            left = self.fence()
            if left <= 0:
                raise errors.NotLeadingError("this replica does not hold the Lease; not writing")
            timeout = min(timeout, left)
        return method(*args, paced=False, timeout_seconds=timeout, **kwargs)

    async def _admit(self, operation: str) -> None:
        """Wait out a server-requested pause; refuse at once while the circuit is open."""
        pause = self._paused_until - time.monotonic()
        if pause > 0:
            await anyio.sleep(pause)
        wait = self.breaker.admit()
        if wait > 0:
            raise errors.CircuitOpenError(
                f"{operation}: the API server keeps failing; not calling for {wait:.1f}s",
                retry_after=wait,
            )

    def _throttled(self, operation: str, retry_after: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + retry_after)
        self._on_throttle(operation, retry_after)


def _fenced(res: api.Resource) -> bool:
    """Tell whether writes of `res` are fenced: all but Events (advisory) and the Lease."""
    return res.plural not in {"events", "leases"}
