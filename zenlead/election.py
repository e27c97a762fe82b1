"""Lease-based leader election (coordination.k8s.io/v1) among controller replicas: one writer.

Only the replica holding the Lease reconciles, and every write it makes is fenced on
`Elector.valid_for` (see `kube.lanes`). The rules, which docs/architecture.md argues from:

- *Validity is stamped at send time.* A successful acquire or renew makes this replica valid
  until ``sent + renew_deadline``, where ``sent`` is taken before the Lease is even read, so a
  slow answer never extends it. `valid_for` is computed from the clock on every call: writes
  stop at the deadline even if this loop is stuck. The clock is CLOCK_BOOTTIME, which also
  counts time spent suspended.
- *Another holder ends leadership at once.* Reading a Lease held by someone else while leading
  stops writes immediately, not at the renew deadline.
- *Expiry is judged on our own clock*, like client-go: a Lease held by someone else is taken
  only after its record (holder, renewTime, transitions) stayed unchanged for its duration.
- *A missing Lease is not a free leadership.* A Lease that is absent must stay absent for a
  full lease duration, counted from when we first saw it missing, before we create it;
  meanwhile a live leader re-creates it on its next renewal. Consequence: the first replica of
  a fresh install waits one lease duration before leading.
- *A conflict while leading ends leadership.* If the Lease changed under our renewal (409) or
  someone created it before us, we stop writing at once and look again next round.
- *No leading on a stale cache.* While ``may_lead()`` gives a reason (an informer failed to
  relist for too long) this replica neither acquires nor keeps the Lease: it releases it.
- `release` hands the Lease over on shutdown (empty holder), so a standby takes over within
  one retry period instead of a lease duration.
"""

from __future__ import annotations

import datetime
import enum
import functools
import logging
import time
from typing import TYPE_CHECKING, Any

import anyio

from zenlead import errors
from zenlead.kube import api, lanes

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("Elector", "Outcome")

log = logging.getLogger(__name__)

_ABSENT = ("<absent>",)
"""The record of a Lease that does not exist."""


class Outcome(enum.Enum):
    """What one acquire/renew round found."""

    HELD = "held"
    """We hold the Lease now."""
    OTHER = "other"
    """Someone else holds it (or we must wait before taking a missing one)."""
    FAILED = "failed"
    """No answer, a conflict or an error: nothing learned."""


def _micro_time() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """Acquires and renews one Lease; `valid_for` tells how long this replica may still write."""

    def __init__(
        self,
        client: lanes.Lanes,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: float = 15.0,
        renew_deadline_seconds: float = 10.0,
        retry_seconds: float = 2.0,
        on_change: Callable[[bool, str], None] = lambda _leading, _why: None,
        may_lead: Callable[[], str | None] = lambda: None,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        """Compete for Lease `namespace/name` as `identity`.

        `on_change(leading, why)` hears every change; `may_lead()` returns why this replica
        must not lead now, or None.
        """
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_deadline = renew_deadline_seconds
        self.retry_seconds = retry_seconds
        self.on_change = on_change
        self.may_lead = may_lead
        self.monotonic = monotonic or _clock()
        self.leading = False
        self._valid_until = 0.0
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._timeout = renew_deadline_seconds
        self._changed = anyio.Event()

    def valid_for(self) -> float:
        """Return the seconds this replica may still write (0 when it does not lead)."""
        if not self.leading:
            return 0.0
        return max(0.0, self._valid_until - self.monotonic())

    async def run(self) -> None:
        """Acquire, then renew, every retry period; until cancelled (or a bug stops us)."""
        try:
            while True:
                await self.round()
                await anyio.sleep(self.retry_seconds)
        except anyio.get_cancelled_exc_class():
            raise  # Shutdown: `release` follows and hands the Lease over.
        except BaseException:
            # A bug ended the loop: nobody renews any more, so stop leading now rather than
            # at the deadline (writes are fenced on it anyway; this stops the workers).
            self._set(leading=False, why="renew_deadline")
            raise

    async def round(self) -> Outcome | None:
        """Run one acquire/renew round and update `leading`; None when not allowed to lead."""
        blocked = self.may_lead()
        if blocked is not None:
            if self.leading:
                log.error("stepping down from %s/%s: %s", self.namespace, self.name, blocked)
                await self.release(why="stale_cache")
            return None
        sent = self.monotonic()
        outcome = await self._attempt()
        if outcome is Outcome.HELD and sent + self.renew_deadline > self.monotonic():
            self._valid_until = sent + self.renew_deadline
            self._set(leading=True, why="acquired")
        elif outcome is Outcome.OTHER and self.leading:
            log.error("lost %s/%s: another replica holds it", self.namespace, self.name)
            self._set(leading=False, why="other_holder")
        elif self.leading and self.valid_for() <= 0:
            log.error("lost %s/%s: could not renew in time", self.namespace, self.name)
            self._set(leading=False, why="renew_deadline")
        return outcome

    async def wait_for(self, *, leading: bool) -> None:
        """Return once `leading` has the given value."""
        while self.leading != leading:
            await self._changed.wait()

    async def _attempt(self) -> Outcome:
        """Run one acquire/renew, but never past the validity while leading.

        A Lease call that hangs (slow API server) must not keep us "leading" beyond the renew
        deadline, or a standby that took over could write at the same time as we do.
        """
        # While leading, validity is what is left; otherwise an acquire that takes longer
        # than the renew deadline would be worthless anyway.
        budget = self.valid_for() if self.leading else self.renew_deadline
        with anyio.move_on_after(budget):
            try:
                return await self._try(budget)
            except errors.KubeError as exc:
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
                return self._blind()
            except Exception:  # A bug, or an answer we cannot read: nothing learned.
                log.exception("lease %s/%s: round failed", self.namespace, self.name)
                return self._blind()
        log.warning("lease %s/%s: no answer within %.1fs", self.namespace, self.name, budget)
        return self._blind()

    def _blind(self) -> Outcome:
        """Note a round that saw nothing: an absence seen before may not have lasted since."""
        if self._observed == _ABSENT:
            self._observed = None  # The Lease may have come back and gone again meanwhile.
        return Outcome.FAILED

    async def _try(self, budget: float) -> Outcome:
        self._timeout = budget  # Each Lease call ends by itself within the round's budget.
        try:
            lease = await self.client.get(
                api.LEASES, self.namespace, self.name, lane=lanes.Lane.LEASE, request_timeout=budget
            )
        except errors.NotFoundError:
            return await self._absent()
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        self._observe((holder, spec.get("renewTime"), spec.get("leaseTransitions")))
        if holder and holder != self.identity:
            self._valid_until = 0.0  # Someone else holds it: no claim of ours is left.
            if self.leading:
                return Outcome.OTHER  # Stop writing now; take it back only once it expires.
            duration = _duration(spec, self.lease_seconds)
            if self.monotonic() - self._observed_at < duration:
                return Outcome.OTHER
        return await self._take(lease, spec, holder)

    async def _take(self, lease: dict[str, Any], spec: dict[str, Any], holder: str) -> Outcome:
        stamp = _micro_time()
        lease["spec"] = spec | {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": round(self.lease_seconds),
            "renewTime": stamp,
        }
        if holder != self.identity:
            transitions = int(spec.get("leaseTransitions") or 0)
            lease["spec"] |= {"acquireTime": stamp, "leaseTransitions": transitions + 1}
        try:
            await self.client.replace(
                api.LEASES,
                self.namespace,
                self.name,
                lease,
                lane=lanes.Lane.LEASE,
                request_timeout=self._timeout,
            )
        except errors.ConflictError:
            # Someone wrote the Lease since we read it. While leading, stop at once (safety
            # first; if it was our own lost renewal, the next round takes it back).
            return Outcome.OTHER if self.leading else Outcome.FAILED
        return Outcome.HELD

    async def _absent(self) -> Outcome:
        """Create a missing Lease: at once while our validity lasts, else after a lease duration.

        While our last renewal is younger than the renew deadline nobody else can hold the
        Lease legitimately (they would need a lease duration), even if a conflict just made us
        stop writing; so re-creating it is safe and keeps a deleted Lease from stalling routing.
        Absence is a record of its own, observed when first seen: the full lease duration is
        counted from there, never from an older record (we may have missed its renewals).
        """
        if self.monotonic() >= self._valid_until:  # Not (or no longer) validly leading.
            self._observe(_ABSENT)
            if self.monotonic() - self._observed_at < self.lease_seconds:
                return Outcome.OTHER
        stamp = _micro_time()
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": round(self.lease_seconds),
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            },
        }
        try:
            await self.client.create(
                api.LEASES,
                self.namespace,
                body,
                lane=lanes.Lane.LEASE,
                request_timeout=self._timeout,
            )
        except errors.AlreadyExistsError:
            # Someone else created it first; while leading that means we must stop at once.
            self._valid_until = 0.0
            return Outcome.OTHER if self.leading else Outcome.FAILED
        return Outcome.HELD

    def _observe(self, record: tuple[Any, ...]) -> None:
        if record != self._observed:
            self._observed, self._observed_at = record, self.monotonic()

    async def release(self, *, why: str = "released") -> None:
        """Stop leading and give the Lease up if we hold it; errors are logged, not raised."""
        if not self.leading and self.monotonic() >= self._valid_until:
            return
        self._set(leading=False, why=why)
        self._valid_until = 0.0  # Handed over: a successor may lead at once.
        try:
            lease = await self.client.get(
                api.LEASES, self.namespace, self.name, lane=lanes.Lane.LEASE
            )
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"] |= {
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "renewTime": _micro_time(),
            }
            await self.client.replace(
                api.LEASES, self.namespace, self.name, lease, lane=lanes.Lane.LEASE
            )
            log.info("released the lease %s/%s", self.namespace, self.name)
        except errors.KubeError as exc:
            log.warning("could not release the lease %s/%s: %s", self.namespace, self.name, exc)

    def _set(self, *, leading: bool, why: str) -> None:
        if leading == self.leading:
            return
        self.leading = leading
        log.info(
            "%s leadership of %s/%s (%s)",
            "acquired" if leading else "lost",
            self.namespace,
            self.name,
            why,
        )
        self.on_change(leading, why)
        self._changed.set()
        self._changed = anyio.Event()


def _clock() -> Callable[[], float]:
    """Return the validity clock: CLOCK_BOOTTIME where there is one, else the monotonic clock.

    Unlike CLOCK_MONOTONIC, CLOCK_BOOTTIME keeps counting while the machine is suspended, so a
    replica that wakes up after a suspend finds its validity gone instead of writing on.
    """
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is None:
        return time.monotonic
    return functools.partial(time.clock_gettime, boottime)


def _duration(spec: dict[str, Any], default: float) -> float:
    """Return the holder's declared lease duration (seconds), or `default` if unusable."""
    raw = spec.get("leaseDurationSeconds")
    return float(raw) if isinstance(raw, int) and 0 < raw < 3600 else default  # noqa: PLR2004
