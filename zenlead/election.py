"""Lease-based leader election (coordination.k8s.io/v1) among controller replicas.

Only the replica holding the Lease reconciles (and so writes). Like client-go's leaderelection,
expiry is judged by *when we last saw the Lease record change*, on our own monotonic clock, not
by trusting another replica's timestamps: a Lease held by someone else is taken only after its
record stayed unchanged for ``lease_duration_seconds``. A leader that cannot renew for
``renew_deadline_seconds`` stops leading. `release` hands the Lease over on graceful shutdown
(empty holder), so a standby takes over within one retry period instead of a lease duration.
"""

from __future__ import annotations

import datetime
import logging
import time
from typing import TYPE_CHECKING, Any

import anyio

from zenlead import errors
from zenlead.kube import api

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("Elector",)

log = logging.getLogger(__name__)


def _micro_time() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """Acquires and renews one Lease; `leading` tells whether this replica may write."""

    def __init__(
        self,
        client: api.Api,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: float = 15.0,
        renew_deadline_seconds: float = 10.0,
        retry_seconds: float = 2.0,
        on_change: Callable[[bool], None] = lambda _leading: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Compete for Lease `namespace/name` as `identity`."""
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_deadline = renew_deadline_seconds
        self.retry_seconds = retry_seconds
        self.on_change = on_change
        self.monotonic = monotonic
        self.leading = False
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._last_renew = 0.0
        self._changed = anyio.Event()

    async def run(self) -> None:
        """Try to acquire, then renew, every retry period; until cancelled."""
        while True:
            held = await self._attempt()
            now = self.monotonic()
            if held:
                self._last_renew = now
                self._set(leading=True)
            elif self.leading and now - self._last_renew > self.renew_deadline:
                log.error("lost the lease %s/%s: could not renew", self.namespace, self.name)
                self._set(leading=False)
            await anyio.sleep(self.retry_seconds)

    async def _attempt(self) -> bool:
        """Run one acquire/renew, but never past the renew deadline while leading.

        A Lease call that hangs (slow API server) must not keep us "leading" beyond the renew
        deadline, or a standby that took over could write at the same time as we do.
        """
        budget = self.lease_seconds
        if self.leading:
            budget = max(0.0, self.renew_deadline - (self.monotonic() - self._last_renew))
        with anyio.move_on_after(budget):
            try:
                return await anyio.to_thread.run_sync(
                    self.try_acquire_or_renew, abandon_on_cancel=True
                )
            except errors.KubeError as exc:
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
                return False
        log.warning("lease %s/%s: no answer within %.1fs", self.namespace, self.name, budget)
        return False

    async def wait_for(self, *, leading: bool) -> None:
        """Return once `leading` has the given value."""
        while self.leading != leading:
            await self._changed.wait()

    def try_acquire_or_renew(self) -> bool:
        """Take or renew the Lease once; return True if we hold it afterwards (blocking)."""
        try:
            lease = self.client.get(api.LEASES, self.namespace, self.name, urgent=True)
        except errors.NotFoundError:
            return self._create()
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        now = self.monotonic()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        if holder and holder != self.identity and now - self._observed_at < duration:
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        stamp = _micro_time()
        lease["spec"] = spec | {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": round(self.lease_seconds),
            "renewTime": stamp,
        }
        if holder != self.identity:
            lease["spec"] |= {"acquireTime": stamp, "leaseTransitions": transitions + 1}
        try:
            self.client.replace(api.LEASES, self.namespace, self.name, lease, urgent=True)
        except errors.ConflictError:
            return False
        return True

    async def release(self) -> None:
        """Give the Lease up if we hold it; errors are logged, not raised."""
        if not self.leading:
            return
        self._set(leading=False)
        await anyio.to_thread.run_sync(self._release)

    def _release(self) -> None:
        try:
            lease = self.client.get(api.LEASES, self.namespace, self.name, urgent=True)
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"] |= {
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "renewTime": _micro_time(),
            }
            self.client.replace(api.LEASES, self.namespace, self.name, lease, urgent=True)
            log.info("released the lease %s/%s", self.namespace, self.name)
        except errors.KubeError as exc:
            log.warning("could not release the lease %s/%s: %s", self.namespace, self.name, exc)

    def _create(self) -> bool:
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
            self.client.create(api.LEASES, self.namespace, body, urgent=True)
        except errors.AlreadyExistsError:
            return False
        return True

    def _set(self, *, leading: bool) -> None:
        if leading == self.leading:
            return
        self.leading = leading
        log.info(
            "%s leadership of %s/%s", "acquired" if leading else "lost", self.namespace, self.name
        )
        self.on_change(leading)
        self._changed.set()
        self._changed = anyio.Event()
