"""The running controller: informers, work queue, workers, election and endpoints, wired.

`Controller.run` is the root of all concurrency (one anyio task group):

1. informers (one thread each, per resource and namespace scope) fill the cache and map
   changes to Service keys on the queue;
2. once every informer has listed (the cache is synced), ``/readyz`` turns 200;
3. when this replica holds the Lease (or election is off), every opted-in Service is queued
   and ``max_concurrent_reconciles`` workers reconcile keys until leadership is lost;
4. on cancellation (SIGTERM) the Lease is released, informers stopped and endpoints closed.

Containment: the long-lived tasks (prober pool, Event sender, timers, election, workers) run
under `_supervised`, which logs, counts (``zen_lead_task_restarts_total{task}``) and restarts
a task that ends or raises, with backoff; a failed reconcile is handled by `retries.Policy`.
So nothing raised while handling one Service ends the process. ``/healthz`` fails when the
event loop stalls or the prober pool is down; ``/readyz`` fails until the cache is synced and
while it is stale (an informer out of touch with the API server for longer than
``max_cache_staleness_seconds``), and a stale replica neither leads nor reconciles.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.lowlevel

import zenlead
from zenlead import (
    election,
    errors,
    mapping,
    metrics,
    model,
    probehost,
    probing,
    reconciler,
    recorder,
    retries,
    server,
    tracing,
    workqueue,
)
from zenlead.kube import api, client, informers, lanes

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from zenlead import settings as settings_mod

__all__ = ("Controller",)

log = logging.getLogger(__name__)

_STALL_SECONDS = 10.0
"""/healthz fails when the event loop has not run for this long (the kubelet then restarts us)."""
_LANES = {lanes.Lane.LEASE: 1, lanes.Lane.TRAFFIC: 8, lanes.Lane.ORDINARY: 8}
"""Threads per API lane (see `kube.lanes`); reconcile workers beyond them wait on the loop."""
_RESTART_MAX_SECONDS = 30.0

Work = workqueue.WorkQueue[model.ServiceKey]


def _strip(raw: dict[str, Any]) -> dict[str, Any]:
    """Drop managedFields: large, unused, and the bulk of a Service's memory."""
    (raw.get("metadata") or {}).pop("managedFields", None)
    return raw


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Controller:
    """One controller instance; build it with settings, then await `run`."""

    def __init__(self, settings: settings_mod.Settings, *, api_client: Any = None) -> None:
        """Prepare the instance; `api_client` overrides the one built from settings (tests)."""
        self.settings = settings
        self.metrics = metrics.Metrics()
        self._api_client = api_client
        self.identity = f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        self.cache = mapping.new_cache(self.metrics.cache_lookup)
        self.metrics.watch_store("services", self.cache.services)
        self.metrics.watch_store("pods", self.cache.pods)
        self.metrics.watch_store("endpointslices", self.cache.slices)
        self.metrics.cache_limit.set(settings.max_cache_size_per_namespace)
        self.failures = mapping.FailureClock()
        self.heartbeat = time.monotonic()
        self.triggers: dict[model.ServiceKey, tracing.Trigger] = {}
        self.informers: list[informers.Informer[Any]] = []
        self.elector: election.Elector | None = None
        self.pool: probing.Pool | probehost.RemotePool | None = None
        self.policy: retries.Policy[model.ServiceKey] = retries.Policy(
            namespace_of=lambda key: key.namespace,
            park_after_seconds=settings.dead_letter_after_seconds,
            parked_retry_seconds=settings.dead_letter_retry_seconds,
        )
        self._parked_namespaces: set[str] = set()
        self._pool_ran = False
        self.metrics_port = 0
        self.health_port = 0

    @property
    def user_agent(self) -> str:
        """The User-Agent of every API call: names this replica in the API server's audit log."""
        return f"zen-lead/{zenlead.__version__} ({self.identity})"

    def _leading(self) -> bool:
        return self.elector is None or self.elector.leading

    def _fence(self) -> float:
        """Seconds this replica may still write (the Lease's validity; unbounded without)."""
        return math.inf if self.elector is None else self.elector.valid_for()

    def synced(self) -> bool:
        """Return True once every informer has completed its first list."""
        return bool(self.informers) and all(i.synced.is_set() for i in self.informers)

    def stale_reason(self) -> str | None:
        """Say which informer has been out of touch for too long, or None if none has."""
        bound = self.settings.max_cache_staleness_seconds
        worst = max(self.informers, key=lambda i: i.staleness(), default=None)
        if worst is None or not worst.synced.is_set() or worst.staleness() <= bound:
            return None
        return f"cache stale: {worst.name} out of touch for {worst.staleness():.0f}s"

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled; `task_status.started()` fires once the endpoints are bound."""
        s = self.settings
        pool_size = sum(_LANES.values()) + 3 * max(1, len(s.namespaces)) + 4
        api_client = self._api_client or client.connect(s.kubeconfig, pool_size=pool_size)
        lease_client = self._api_client or client.connect(s.kubeconfig, pool_size=2)
        for made in {id(api_client): api_client, id(lease_client): lease_client}.values():
            made.user_agent = self.user_agent
        kube = self._api(api_client)
        calls = lanes.Lanes(
            kube,
            lease_client=self._api(lease_client),
            sizes=_LANES,
            fence=self._fence,
            breaker=lanes.Breaker(
                on_change=lambda state: self.metrics.circuit_open.set(state != "closed")
            ),
            on_throttle=lambda op, _wait: self.metrics.throttled.labels(op).inc(),
        )
        work: Work = workqueue.WorkQueue()
        self.informers = self._informers(kube, self._mapper(work))
        self.metrics.watch_informers(list(self.informers))
        events = recorder.Recorder(calls, metrics_=self.metrics, instance=self.identity)
        self.pool = self._prober(functools.partial(self._probe_changed, work))
        rec = reconciler.Reconciler(
            cache=self.cache,
            client=calls,
            events=events,
            metrics_=self.metrics,
            failures=self.failures,
            max_services_per_namespace=s.max_cache_size_per_namespace,
            pool=self.pool,
        )
        endpoints = self._endpoints()
        try:
            async with anyio.create_task_group() as tg:
                for informer in self.informers:
                    tg.start_soon(self._run_informer, informer)
                tg.start_soon(self._supervised, "timers", work.run_timers)
                tg.start_soon(self._supervised, "events", events.run)
                tg.start_soon(self._supervised, "prober", self._run_pool)
                tg.start_soon(self._beat)
                task_status.started()
                await self._wait_synced()
                log.info(
                    "cache synced: %d Services, %d Pods",
                    self.cache.services.count(),
                    self.cache.pods.count(),
                )
                await self._lead(tg, calls, work, rec)
        finally:
            with anyio.CancelScope(shield=True):
                if self.elector is not None:
                    with anyio.move_on_after(s.api_timeout_seconds):
                        await self.elector.release()
                for informer in self.informers:
                    informer.stop()
                for endpoint in endpoints:
                    endpoint.stop()
                events.close()
                api_client.close()
                if lease_client is not api_client:
                    lease_client.close()

    # Parts -------------------------------------------------------------------------------------

    def _api(self, api_client: Any) -> api.Api:
        s = self.settings
        return api.Api(
            api_client,
            timeout_seconds=s.api_timeout_seconds,
            qps=s.qps,
            burst=s.burst,
            observer=self.metrics.observe_api_call,
        )

    def _mapper(self, work: Work) -> mapping.Mapper:
        token = anyio.lowlevel.current_token()

        def enqueue(key: model.ServiceKey, kind: str) -> None:
            # The first event that queues a key names the work (its correlation id and trace).
            # A standby never processes keys, so it keeps no triggers.
            if key not in self.triggers and self._leading():
                self.triggers[key] = tracing.trigger(kind, key=str(key))
            # A Service whose leader is failing moves traffic: it goes before everything else.
            urgent = self.failures.peek(key) is not None
            try:
                anyio.from_thread.run_sync(
                    functools.partial(work.add, key, urgent=urgent), token=token
                )
            except RuntimeError:
                log.debug("event loop gone; dropping %s", key)

        return mapping.Mapper(self.cache, self.failures, enqueue)

    def _prober(self, on_change: probing.Observer) -> probing.Pool | probehost.RemotePool:
        s = self.settings
        if s.prober_process:
            return probehost.RemotePool(
                on_change=on_change,
                metrics_=self.metrics,
                max_in_flight=s.max_probes_in_flight,
                log_level=s.log_level,
                log_format=s.log_format,
            )
        return probing.Pool(
            on_change=on_change, metrics_=self.metrics, max_in_flight=s.max_probes_in_flight
        )

    async def _supervised(self, task: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run `run` for ever: when it ends or raises, log, count and restart it with backoff."""
        backoff = 0.1
        while True:
            started = time.monotonic()
            try:
                await run()
                log.error("task %s ended; restarting it", task)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:
                if _cancelling():
                    raise  # We are being cancelled (shutdown): not a crash.
                log.exception("task %s failed; restarting it", task)
            self.metrics.task_restarts.labels(task).inc()
            if time.monotonic() - started > 60:  # noqa: PLR2004 - it ran a while: start over.
                backoff = 0.1
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, _RESTART_MAX_SECONDS)

    async def _run_pool(self) -> None:
        assert self.pool is not None  # noqa: S101 - set in run() before this task starts.
        self.metrics.prober_up.set(1)
        self._pool_ran = True
        try:
            await self.pool.run()
        finally:
            self.metrics.prober_up.set(0)

    def _probe_changed(
        self,
        work: Work,
        key: model.ServiceKey,
        uid: str,
        old: probing.Health,
        new: probing.Health,
    ) -> None:
        """Note a leader's probe going down (latency starts) or up, then enqueue the Service."""
        del old
        if mapping.leads(self.cache, key, uid):
            if new.state == probing.DOWN and new.first_failure_at is not None:
                self.failures.observe(
                    key,
                    pod_uid=uid,
                    reason=mapping.PROBE_FAILED,
                    at=new.first_failure_at,
                    decided_at=time.monotonic(),
                )
            elif new.state == probing.UP:
                self.failures.recovered(key, pod_uid=uid, probe=True)
        if key not in self.triggers and self._leading():
            self.triggers[key] = tracing.trigger("probe", key=str(key), state=new.state)
        work.add(key, urgent=self.failures.peek(key) is not None)

    def _informers(self, kube: api.Api, mapper: mapping.Mapper) -> list[informers.Informer[Any]]:
        scopes: list[str | None] = list(self.settings.namespaces) or [None]
        made: list[informers.Informer[Any]] = []
        slice_selector = f"{model.LABEL_SLICE_MANAGED_BY}={model.MANAGER}"
        for ns in scopes:
            made += [
                informers.Informer(
                    kube,
                    api.SERVICES,
                    namespace=ns,
                    target=self.cache.services,
                    transform=_strip,
                    handler=mapper.on_service,
                    watch_seconds=self.settings.watch_timeout_seconds,
                ),
                informers.Informer(
                    kube,
                    api.PODS,
                    namespace=ns,
                    target=self.cache.pods,
                    transform=model.Pod.from_raw,
                    handler=mapper.on_pod,
                    before=mapper.before_pod,
                    watch_seconds=self.settings.watch_timeout_seconds,
                ),
                informers.Informer(
                    kube,
                    api.ENDPOINTSLICES,
                    namespace=ns,
                    target=self.cache.slices,
                    transform=_strip,
                    handler=mapper.on_slice,
                    label_selector=slice_selector,
                    watch_seconds=self.settings.watch_timeout_seconds,
                ),
            ]
        return made

    def _endpoints(self) -> list[server.Endpoints]:
        def metrics_route() -> tuple[int, str, bytes]:
            return 200, "text/plain; version=0.0.4", self.metrics.exposition()

        made = [
            server.Endpoints(self.settings.metrics_bind_address, {"/metrics": metrics_route}),
            server.Endpoints(
                self.settings.health_probe_bind_address,
                {"/healthz": self._healthz, "/readyz": self._readyz},
            ),
        ]
        self.metrics_port, self.health_port = made[0].port, made[1].port
        for endpoint in made:
            endpoint.start()
        return made

    def _readyz(self) -> tuple[int, str, bytes]:
        if not self.synced():
            return 503, "text/plain", b"informers not synced\n"
        stale = self.stale_reason()
        if stale is not None:
            return 503, "text/plain", f"{stale}\n".encode()
        return 200, "text/plain", b"ok\n"

    def _healthz(self) -> tuple[int, str, bytes]:
        # Served from a thread: it must notice an event loop that stopped turning.
        stalled = time.monotonic() - self.heartbeat
        if stalled > _STALL_SECONDS:
            return 503, "text/plain", f"event loop stalled for {stalled:.0f}s\n".encode()
        if self._pool_ran and self.pool is not None and not self.pool.running:
            return 503, "text/plain", b"prober pool is not running\n"
        return 200, "text/plain", b"ok\n"

    async def _beat(self) -> None:
        """Prove to /healthz, once a second, that the event loop still runs."""
        while True:
            self.heartbeat = time.monotonic()
            await anyio.sleep(1.0)

    async def _run_informer(self, informer: informers.Informer[Any]) -> None:
        limiter = anyio.CapacityLimiter(1)
        try:
            await anyio.to_thread.run_sync(informer.run, abandon_on_cancel=True, limiter=limiter)
        finally:
            informer.stop()

    async def _wait_synced(self) -> None:
        # The flags are set by informer threads; polling them at startup is simplest.
        while not self.synced():  # noqa: ASYNC110
            await anyio.sleep(0.05)

    # Leading -----------------------------------------------------------------------------------

    async def _lead(
        self,
        tg: anyio.abc.TaskGroup,
        calls: lanes.Lanes,
        work: Work,
        rec: reconciler.Reconciler,
    ) -> None:
        s = self.settings
        if s.leader_elect:
            self.elector = election.Elector(
                calls,
                namespace=s.lease_namespace(),
                name=s.leader_election_id,
                identity=self.identity,
                lease_seconds=s.lease_duration_seconds,
                renew_deadline_seconds=s.renew_deadline_seconds,
                retry_seconds=s.retry_period_seconds,
                on_change=self._leadership_changed,
                may_lead=self.stale_reason,
            )
            tg.start_soon(self._supervised, "election", self.elector.run)
        while True:
            if self.elector is not None:
                self.triggers.clear()  # Standby: nothing queued here will be processed.
                await self.elector.wait_for(leading=True)
            else:
                self.metrics.is_leader.set(1)
            for svc in self.cache.services.values():
                if mapping.is_source(svc):
                    work.add(model.ServiceKey(*mapping.object_key(svc)))
            async with anyio.create_task_group() as workers:
                for _ in range(s.max_concurrent_reconciles):
                    workers.start_soon(self._supervised, "workers", lambda: self._work(work, rec))
                if self.elector is None:
                    await anyio.sleep_forever()
                else:
                    await self.elector.wait_for(leading=False)
                workers.cancel_scope.cancel()
            rec.forget_all_probes()
            self.policy.clear()  # A standby parks nothing; the next leader judges afresh.
            self._report_parked()

    def _leadership_changed(self, leading: bool, why: str) -> None:  # noqa: FBT001 - callback.
        self.metrics.is_leader.set(1 if leading else 0)
        if not leading:
            self.metrics.lease_lost.labels(why).inc()

    async def _work(self, work: Work, rec: reconciler.Reconciler) -> None:
        while (key := await work.get()) is not None:
            await self._process(key, work, rec)

    async def _process(self, key: model.ServiceKey, work: Work, rec: reconciler.Reconciler) -> None:
        stale = self.stale_reason()
        if stale is not None:
            # Acting on a stale cache could move traffic to a pod that is gone; wait.
            work.add_after(key, 1.0)
            work.done(key)
            self._count(key, rec, retries.Outcome.DEFERRED, None)
            return
        start = anyio.current_time()
        outcome = retries.Outcome.SUCCESS
        trig = self.triggers.pop(key, None)
        try:
            with (
                tracing.bound(trig),
                tracing.span("reconcile", parent=trig.context if trig else None, key=str(key)),
            ):
                requeue = await rec.reconcile(key)
        except Exception as exc:  # noqa: BLE001 - every failure goes through the policy.
            outcome = self._failed(key, exc, work, rec)
        else:
            work.forget(key)
            if requeue is not None:
                work.add_after(key, requeue)
            if self.policy.after_success(key):
                self._recovered(key, rec)
        finally:
            work.done(key)
            self.metrics.queue_depth.set(len(work))
        self._count(key, rec, outcome, anyio.current_time() - start)

    def _failed(
        self, key: model.ServiceKey, exc: Exception, work: Work, rec: reconciler.Reconciler
    ) -> retries.Outcome:
        """Schedule the retry the policy asks for; log, count and park as needed."""
        outcome = retries.classify(exc)
        backoff = work.backoff(key) if outcome is retries.Outcome.ERROR else 0.0
        plan = self.policy.after_failure(key, exc, backoff=backoff)
        if plan.delay is not None:
            work.add_after(key, plan.delay)
        if plan.budget_wait > 0:
            self.metrics.retry_budget_exhausted.labels(key.namespace).inc()
        if outcome is not retries.Outcome.ERROR:
            log.info("reconcile %s %s (%s)", key, outcome, exc)
            return outcome
        kind = type(exc).__name__ if isinstance(exc, errors.ZenleadError) else "internal"
        log.warning(
            "reconcile %s failed (%s), retrying in %.2fs",
            key,
            exc,
            plan.delay or 0.0,
            exc_info=not isinstance(exc, errors.ZenleadError),
        )
        self.metrics.retries.labels(key.namespace).inc()
        self.metrics.reconcile_errors.labels(key.namespace, key.name, kind).inc()
        self.metrics.track(self.metrics.reconcile_errors, key.namespace, key.name, kind)
        if self.policy.warn_now(key):
            self._warn_failing(key, rec, exc, plan)
        return outcome

    def _warn_failing(
        self,
        key: model.ServiceKey,
        rec: reconciler.Reconciler,
        exc: Exception,
        plan: retries.Plan,
    ) -> None:
        source = rec.cache.services.get(key.namespace, key.name)
        streak = self.policy.streak(key)
        if source is not None and streak is not None:
            since = time.monotonic() - streak[1]
            rec.events.warning(
                source,
                "ReconcileFailing",
                f"reconcile failed {streak[0]} times in a row over {since:.0f}s ({exc}); "
                f"retrying every {plan.delay or 0:.0f}s, keeping the last routing",
            )
        self._report_parked()

    def _recovered(self, key: model.ServiceKey, rec: reconciler.Reconciler) -> None:
        source = rec.cache.services.get(key.namespace, key.name)
        if source is not None:
            rec.events.normal(source, "ReconcileRecovered", "reconcile succeeds again")
        self._report_parked()

    def _report_parked(self) -> None:
        counts = self.policy.parked_per_namespace()
        for namespace in self._parked_namespaces - set(counts):
            self.metrics.dead_letter.labels(namespace).set(0)
        for namespace, count in counts.items():
            self.metrics.dead_letter.labels(namespace).set(count)
        self._parked_namespaces = set(counts)

    def _count(
        self,
        key: model.ServiceKey,
        rec: reconciler.Reconciler,
        outcome: retries.Outcome,
        seconds: float | None,
    ) -> None:
        labels = (key.namespace, key.name)
        svc = rec.cache.services.get(*labels)
        if svc is None or not mapping.is_source(svc):
            return
        self.metrics.reconciles.labels(*labels, str(outcome)).inc()
        self.metrics.track(self.metrics.reconciles, *labels, str(outcome))
        if seconds is not None:
            self.metrics.reconcile_duration.labels(*labels, str(outcome)).observe(seconds)
            self.metrics.track(self.metrics.reconcile_duration, *labels, str(outcome))
