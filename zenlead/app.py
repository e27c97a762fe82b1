"""The running controller: informers, work queue, workers, election and endpoints, wired.

`Controller.run` is the root of all concurrency (one anyio task group):

1. informers (one thread each, per resource and namespace scope) fill the cache and map
   changes to Service keys on the queue;
2. once every informer has listed (the cache is synced), ``/readyz`` turns 200;
3. when this replica holds the Lease (or election is off), every opted-in Service is queued
   and ``max_concurrent_reconciles`` workers reconcile keys until leadership is lost;
4. on cancellation (SIGTERM) the Lease is released, informers stopped and endpoints closed.
"""

from __future__ import annotations

import functools
import logging
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.lowlevel

from zenlead import (
    election,
    errors,
    mapping,
    metrics,
    model,
    probing,
    reconciler,
    recorder,
    server,
    tracing,
    workqueue,
)
from zenlead.kube import api, client, informers, store

if TYPE_CHECKING:
    from zenlead import settings as settings_mod

__all__ = ("Controller",)

log = logging.getLogger(__name__)

_STALL_SECONDS = 10.0
"""/healthz fails when the event loop has not run for this long (the kubelet then restarts us)."""


def _strip(raw: dict[str, Any]) -> dict[str, Any]:
    """Drop managedFields: large, unused, and the bulk of a Service's memory."""
    (raw.get("metadata") or {}).pop("managedFields", None)
    return raw


def _key(obj: Any) -> tuple[str, str]:
    if isinstance(obj, model.Pod):
        return obj.namespace, obj.name
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


class Controller:
    """One controller instance; build it with settings, then await `run`."""

    def __init__(self, settings: settings_mod.Settings, *, api_client: Any = None) -> None:
        """Prepare the instance; `api_client` overrides the one built from settings (tests)."""
        self.settings = settings
        self.metrics = metrics.Metrics()
        self._api_client = api_client
        self.identity = f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        lookup = self.metrics.cache_lookup
        self.cache = mapping.Cache(
            store.Store(_key, on_lookup=functools.partial(lookup, "services")),
            store.Store(_key, on_lookup=functools.partial(lookup, "pods")),
            store.Store(_key, on_lookup=functools.partial(lookup, "endpointslices")),
        )
        self.metrics.watch_store("services", self.cache.services)
        self.metrics.watch_store("pods", self.cache.pods)
        self.metrics.watch_store("endpointslices", self.cache.slices)
        self.metrics.cache_limit.set(settings.max_cache_size_per_namespace)
        self.failures = mapping.FailureClock()
        self.heartbeat = time.monotonic()
        self.triggers: dict[model.ServiceKey, tracing.Trigger] = {}
        self.informers: list[informers.Informer[Any]] = []
        self.elector: election.Elector | None = None
        self.metrics_port = 0
        self.health_port = 0

    def _leading(self) -> bool:
        return self.elector is None or self.elector.leading

    def synced(self) -> bool:
        """Return True once every informer has completed its first list."""
        return bool(self.informers) and all(i.synced.is_set() for i in self.informers)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled; `task_status.started()` fires once the endpoints are bound."""
        s = self.settings
        api_client = self._api_client or client.connect(
            s.kubeconfig, pool_size=s.max_concurrent_reconciles + 16
        )
        kube = api.Api(
            api_client,
            timeout_seconds=s.api_timeout_seconds,
            qps=s.qps,
            burst=s.burst,
            observer=self.metrics.observe_api_call,
        )
        work: workqueue.WorkQueue[model.ServiceKey] = workqueue.WorkQueue()
        token = anyio.lowlevel.current_token()

        def enqueue(key: model.ServiceKey, kind: str) -> None:
            # The first event that queues a key names the work (its correlation id and trace).
            # A standby never processes keys, so it keeps no triggers.
            if key not in self.triggers and self._leading():
                self.triggers[key] = tracing.trigger(kind, key=str(key))
            try:
                anyio.from_thread.run_sync(work.add, key, token=token)
            except RuntimeError:
                log.debug("event loop gone; dropping %s", key)

        mapper = mapping.Mapper(self.cache, self.failures, enqueue)
        self.informers = self._informers(kube, mapper)
        events = recorder.Recorder(kube, metrics_=self.metrics, instance=self.identity)
        pool = probing.Pool(
            on_change=functools.partial(self._probe_changed, work),
            metrics_=self.metrics,
            max_in_flight=s.max_probes_in_flight,
        )
        rec = reconciler.Reconciler(
            cache=self.cache,
            client=kube,
            events=events,
            metrics_=self.metrics,
            failures=self.failures,
            max_services_per_namespace=s.max_cache_size_per_namespace,
            pool=pool,
            may_write=self._leading,
        )
        endpoints = self._endpoints()
        try:
            async with anyio.create_task_group() as tg:
                for informer in self.informers:
                    tg.start_soon(self._run_informer, informer)
                tg.start_soon(work.run_timers)
                tg.start_soon(events.run)
                tg.start_soon(pool.run)
                tg.start_soon(self._beat)
                task_status.started()
                await self._wait_synced()
                log.info(
                    "cache synced: %d Services, %d Pods",
                    self.cache.services.count(),
                    self.cache.pods.count(),
                )
                await self._lead(tg, kube, work, rec)
        finally:
            with anyio.CancelScope(shield=True):
                if self.elector is not None:
                    await self.elector.release()
                for informer in self.informers:
                    informer.stop()
                for endpoint in endpoints:
                    endpoint.stop()
                api_client.close()

    # Parts -------------------------------------------------------------------------------------

    def _probe_changed(
        self,
        work: workqueue.WorkQueue[model.ServiceKey],
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
        work.add(key)

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
                ),
                informers.Informer(
                    kube,
                    api.PODS,
                    namespace=ns,
                    target=self.cache.pods,
                    transform=model.Pod.from_raw,
                    handler=mapper.on_pod,
                    before=mapper.before_pod,
                ),
                informers.Informer(
                    kube,
                    api.ENDPOINTSLICES,
                    namespace=ns,
                    target=self.cache.slices,
                    transform=_strip,
                    handler=mapper.on_slice,
                    label_selector=slice_selector,
                ),
            ]
        return made

    def _endpoints(self) -> list[server.Endpoints]:
        def metrics_route() -> tuple[int, str, bytes]:
            return 200, "text/plain; version=0.0.4", self.metrics.exposition()

        def ready() -> tuple[int, str, bytes]:
            if self.synced():
                return 200, "text/plain", b"ok\n"
            return 503, "text/plain", b"informers not synced\n"

        def healthy() -> tuple[int, str, bytes]:
            # Served from a thread: it must notice an event loop that stopped turning.
            stalled = time.monotonic() - self.heartbeat
            if stalled > _STALL_SECONDS:
                return 503, "text/plain", f"event loop stalled for {stalled:.0f}s\n".encode()
            return 200, "text/plain", b"ok\n"

        made = [
            server.Endpoints(self.settings.metrics_bind_address, {"/metrics": metrics_route}),
            server.Endpoints(
                self.settings.health_probe_bind_address, {"/healthz": healthy, "/readyz": ready}
            ),
        ]
        self.metrics_port, self.health_port = made[0].port, made[1].port
        for endpoint in made:
            endpoint.start()
        return made

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

    async def _lead(
        self,
        tg: anyio.abc.TaskGroup,
        kube: api.Api,
        work: workqueue.WorkQueue[model.ServiceKey],
        rec: reconciler.Reconciler,
    ) -> None:
        s = self.settings
        if s.leader_elect:
            self.elector = election.Elector(
                kube,
                namespace=s.lease_namespace(),
                name=s.leader_election_id,
                identity=self.identity,
                lease_seconds=s.lease_duration_seconds,
                renew_deadline_seconds=s.renew_deadline_seconds,
                retry_seconds=s.retry_period_seconds,
                on_change=lambda leading: self.metrics.is_leader.set(1 if leading else 0),
            )
            tg.start_soon(self.elector.run)
        while True:
            if self.elector is not None:
                self.triggers.clear()  # Standby: nothing queued here will be processed.
                await self.elector.wait_for(leading=True)
            else:
                self.metrics.is_leader.set(1)
            for svc in self.cache.services.values():
                if mapping.is_source(svc):
                    work.add(model.ServiceKey(*_key(svc)))
            async with anyio.create_task_group() as workers:
                for _ in range(s.max_concurrent_reconciles):
                    workers.start_soon(self._work, work, rec)
                if self.elector is None:
                    await anyio.sleep_forever()
                else:
                    await self.elector.wait_for(leading=False)
                workers.cancel_scope.cancel()
            rec.forget_all_probes()

    async def _work(
        self, work: workqueue.WorkQueue[model.ServiceKey], rec: reconciler.Reconciler
    ) -> None:
        while (key := await work.get()) is not None:
            await self._process(key, work, rec)

    async def _process(
        self,
        key: model.ServiceKey,
        work: workqueue.WorkQueue[model.ServiceKey],
        rec: reconciler.Reconciler,
    ) -> None:
        labels = (key.namespace, key.name)
        start = anyio.current_time()
        result = "success"
        trig = self.triggers.pop(key, None)
        try:
            with (
                tracing.bound(trig),
                tracing.span("reconcile", parent=trig.context if trig else None, key=str(key)),
            ):
                requeue = await rec.reconcile(key)
        except Exception as exc:
            result = "error"
            kind = type(exc).__name__ if isinstance(exc, errors.ZenleadError) else "internal"
            delay = work.add_rate_limited(key)
            self.metrics.retries.labels(key.namespace).inc()
            log.warning(
                "reconcile %s failed (%s), retrying in %.2fs",
                key,
                exc,
                delay,
                exc_info=not isinstance(exc, errors.KubeError),
            )
            self.metrics.reconcile_errors.labels(*labels, kind).inc()
            self.metrics.track(self.metrics.reconcile_errors, *labels, kind)
        else:
            work.forget(key)
            if requeue is not None:
                work.add_after(key, requeue)
        finally:
            work.done(key)
            self.metrics.queue_depth.set(len(work))
        svc = rec.cache.services.get(*labels)
        if svc is not None and mapping.is_source(svc):
            self.metrics.reconciles.labels(*labels, result).inc()
            self.metrics.reconcile_duration.labels(*labels, result).observe(
                anyio.current_time() - start
            )
            self.metrics.track(self.metrics.reconciles, *labels, result)
            self.metrics.track(self.metrics.reconcile_duration, *labels, result)
