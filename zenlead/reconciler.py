"""Reconcile one source Service: read the cache, decide the leader, write only differences.

Called by the workers in `app` with a `model.ServiceKey`. Level-triggered and idempotent: it
recomputes the wanted leader Service and EndpointSlice from the cached source Service, its
pods and the current leader (read back from our slice), compares with what exists and writes
only when they differ, so running it twice does nothing the second time. It reads only the
informers' cache (one GET, after an AlreadyExists, tells our own not-yet-seen object from a
foreign one). Writes go through `kube.lanes` (traffic moves on their own lane; every write is
fenced on the Lease) and are pinned in the cache, so an older relist cannot take them back.
Errors propagate to the worker, whose `retries.Policy` decides. Returns seconds after which to
look again (min-ready-duration, panic), or None.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import time
from typing import TYPE_CHECKING, Any

from zenlead import (
    errors,
    leader,
    mapping,
    model,
    objects,
    probeconfig,
    probeview,
    svcconfig,
    tracing,
)
from zenlead.kube import api, lanes

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from zenlead import metrics, probing, recorder
    from zenlead.kube import store

__all__ = ("Reconciler",)

_TRAFFIC = lanes.Lane.TRAFFIC
_ORDINARY = lanes.Lane.ORDINARY

log = logging.getLogger(__name__)


def _now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    """Holds the dependencies of `reconcile` (cache, API, Events, metrics, clocks)."""

    def __init__(
        self,
        *,
        cache: mapping.Cache,
        client: lanes.Lanes,
        events: recorder.Recorder,
        metrics_: metrics.Metrics,
        failures: mapping.FailureClock,
        max_services_per_namespace: int = 1000,
        pool: probing.Prober | None = None,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Store the dependencies; see the module docstring for the contract."""
        self.cache = cache
        self.client = client
        self.events = events
        self.metrics = metrics_
        self.failures = failures
        self.max_services = max_services_per_namespace
        self.pool = pool
        self.probe_configs: dict[model.ServiceKey, probeconfig.ProbeConfig] = {}
        self.panicking: set[model.ServiceKey] = set()
        self.wall_clock = wall_clock
        self.monotonic = monotonic

    async def reconcile(self, key: model.ServiceKey) -> float | None:
        """Bring the leader Service and slice of `key` to the wanted state."""
        source = self.cache.services.get(key.namespace, key.name)
        if source is None or not mapping.is_source(source):
            if source is not None:
                self._warn_enabled(source)
            await self._cleanup(key, source)
            return None
        if not self._supported(source):
            await self._cleanup(key, source)
            return None
        if not self._within_limit(source):
            self._forget_probes(key)
            return None
        config, problems = svcconfig.parse(key.name, source["metadata"].get("annotations"))
        for problem in problems:
            self.events.warning(source, "InvalidAnnotation", str(problem))
        return await self._route(key, source, config)

    def _warn_enabled(self, source: Mapping[str, Any]) -> None:
        """Tell the owner of a Service whose opt-in value is neither "true" nor "false"."""
        problem = svcconfig.enabled_problem(source["metadata"].get("annotations"))
        if problem is not None:
            self.events.warning(source, "InvalidAnnotation", str(problem))

    # Routing ---------------------------------------------------------------------------------

    async def _route(
        self, key: model.ServiceKey, source: dict[str, Any], config: svcconfig.ServiceConfig
    ) -> float | None:
        existing = self.cache.services.get(key.namespace, config.leader_service_name)
        if existing is not None and not objects.owns_service(
            existing, source_name=key.name, source_uid=None
        ):
            self.events.warning(
                source,
                "LeaderServiceConflict",
                f"Service {config.leader_service_name!r} exists and was not created by zen-lead "
                f"for {key.name!r}; not touching it (set {svcconfig.LEADER_SERVICE_NAME})",
            )
            self._forget_probes(key)
            return None
        await self._remove_stale(key, keep=config.leader_service_name)
        with tracing.span("cache.read", namespace=key.namespace):
            pods = mapping.selected_pods(self.cache, source)
            slice_obj = self._our_slice(key, config.leader_service_name)
        current_uid = objects.leader_uid_of(slice_obj)
        probe = self._probe_view(key, source, pods, current_uid)
        with tracing.span("leader.decide") as span:
            decision = leader.decide(
                pods,
                current_uid=current_uid,
                config=config,
                source_ports=source["spec"].get("ports") or [],
                now=self.wall_clock(),
                unhealthy=probe.unhealthy if probe else None,
                probe_up=probe.up if probe else None,
                panic=probe.panic if probe else False,
            )
            if span is not None:
                span.set_attribute(
                    "zenlead.leader", decision.leader.name if decision.leader else ""
                )
                span.set_attribute("zenlead.changed", decision.changed)
                span.set_attribute("zenlead.cause", decision.cause or "")
        extra = self._after_probe(key, source, pods, decision, probe, existing=existing)
        if existing is None:
            history = {objects.ANN_LAST_SWITCH: _now_rfc3339()} if decision.leader else {}
            svc = await self._ensure_service(source, config, decision, existing, history, extra)
            await self._ensure_slice(key, source, svc, decision, slice_obj)
            self._after_write(key, source, decision, self.monotonic(), pods_seen=len(pods))
        else:
            # Traffic first: move the slice, then record the change on the leader Service.
            await self._ensure_slice(key, source, existing, decision, slice_obj)
            history = self._after_write(
                key, source, decision, self.monotonic(), pods_seen=len(pods)
            )
            await self._ensure_service(source, config, decision, existing, history, extra)
        if probe is not None and probe.panic and key in self.probe_configs:
            # Panic holds the leader; look again when the window has passed, even if no pod,
            # Service or probe verdict changes meanwhile.
            window = self.probe_configs[key].panic_window_seconds
            return min(window, decision.requeue_after or window)
        return decision.requeue_after

    # Probing ---------------------------------------------------------------------------------

    def _probe_view(
        self,
        key: model.ServiceKey,
        source: Mapping[str, Any],
        pods: list[model.Pod],
        current_uid: str | None,
    ) -> probeview.ProbeView | None:
        """Start/stop probes for `key` and return their verdicts (None: Ready-only routing)."""
        cfg, problems = probeconfig.parse(source["metadata"].get("annotations"))
        for problem in problems:
            self.events.warning(source, "InvalidAnnotation", str(problem))
        if cfg is None or self.pool is None:
            self._forget_probes(key)
            return None
        wanted = probeview.targets(
            pods, config=cfg, source_ports=source["spec"].get("ports") or [], leader_uid=current_uid
        )
        if wanted and not probeview.probed(wanted):
            # No candidate declares the probe port: a typo, not evidence against every pod.
            port = repr(cfg.port) if cfg.port is not None else "the first targetPort"
            self.events.warning(
                source,
                "InvalidAnnotation",
                f"{probeconfig.KEYS['port']}: {port} is a port of none of the selected pods; "
                "probing is off for this Service (Ready-only routing)",
            )
            self._forget_probes(key)
            return None
        self.probe_configs[key] = cfg
        self.pool.ensure(key, cfg, probeview.probed(wanted))
        view = probeview.view(
            pods,
            self.pool.health(key),
            wanted,
            cfg,
            now=self.monotonic(),
            was_panic=key in self.panicking,
        )
        if view.stale:
            self.pool.refresh(key, view.stale)
        return view

    def _after_probe(
        self,
        key: model.ServiceKey,
        source: Mapping[str, Any],
        pods: list[model.Pod],
        decision: leader.Decision,
        probe: probeview.ProbeView | None,
        *,
        existing: Mapping[str, Any] | None,
    ) -> dict[str, str]:
        """Point the pool's leader role at the decision; report panic; return annotations."""
        cfg = self.probe_configs.get(key)
        if probe is None or cfg is None or self.pool is None:
            return {}
        leader_uid = decision.leader.uid if decision.leader else None
        wanted = probeview.targets(
            pods, config=cfg, source_ports=source["spec"].get("ports") or [], leader_uid=leader_uid
        )
        self.pool.ensure(key, cfg, probeview.probed(wanted))
        labels = (key.namespace, key.name)
        self.metrics.probe_panic.labels(*labels).set(1 if probe.panic else 0)
        self.metrics.track(self.metrics.probe_panic, *labels)
        was_panic = key in self.panicking
        if probe.panic and not was_panic:
            self.panicking.add(key)
            self.events.warning(
                source,
                "ProbePanic",
                f"{probe.down_count} of {probe.probed_count} probed pods fail at once "
                f"(threshold {cfg.panic_threshold:g}); suspecting the prober's network, "
                "keeping the current leader",
            )
        elif was_panic and not probe.panic:
            self.panicking.discard(key)
            self.events.normal(source, "ProbePanicCleared", "probe failures back below threshold")
        published = ((existing or {}).get("metadata") or {}).get("annotations") or {}
        return {
            objects.ANN_PROBE_STATE: probe.state_annotation(published.get(objects.ANN_PROBE_STATE))
        }

    def forget_all_probes(self) -> None:
        """Stop all probing and forget its state (leadership lost)."""
        for key in list(self.probe_configs):
            self._forget_probes(key)
        if self.pool is not None:
            self.pool.forget_all()

    def _forget_probes(self, key: model.ServiceKey) -> None:
        if self.pool is not None:
            self.pool.forget(key)
        self.probe_configs.pop(key, None)
        self.panicking.discard(key)
        with contextlib.suppress(KeyError):  # No probe, no panic series: it must not linger.
            self.metrics.probe_panic.remove(key.namespace, key.name)

    def _supported(self, source: Mapping[str, Any]) -> bool:
        spec = source.get("spec") or {}
        if spec.get("type") == "ExternalName":
            self.events.warning(
                source,
                "UnsupportedServiceType",
                "ExternalName Services have no pods to choose a leader from",
            )
            return False
        if not spec.get("selector"):
            self.events.warning(
                source,
                "InvalidService",
                "Service must have a selector: zen-lead picks the leader among selected pods",
            )
            return False
        return True

    def _within_limit(self, source: Mapping[str, Any]) -> bool:
        meta = source["metadata"]
        count = mapping.source_count(self.cache, meta["namespace"])
        self._report_managed(meta["namespace"], count)
        if count <= self.max_services:
            return True
        sources = sorted(
            (s["metadata"].get("creationTimestamp", ""), s["metadata"]["name"])
            for s in self.cache.services.find_any(mapping.SOURCES, meta["namespace"], ("",))
        )
        rank = sources.index((meta.get("creationTimestamp", ""), meta["name"]))
        if rank < self.max_services:
            return True
        self.events.warning(
            source,
            "CacheLimitExceeded",
            f"namespace has more than {self.max_services} opted-in Services "
            "(--max-cache-size-per-namespace); this one, among the newest, is not managed",
        )
        return False

    def _report_managed(self, namespace: str, sources: int) -> None:
        """Set the per-namespace gauges of managed Services (opted in, within the limit)."""
        managed = min(sources, self.max_services)
        self.metrics.cache_size.labels(namespace).set(managed)
        self.metrics.managed_services.labels(namespace).set(managed)

    def _our_slice(self, key: model.ServiceKey, name: str) -> dict[str, Any] | None:
        obj = self.cache.slices.get(key.namespace, name)
        if obj is None or not objects.owns_slice(obj, source_name=key.name, leader_uid=None):
            return None
        return obj

    # Writes ------------------------------------------------------------------------------------

    async def _ensure_service(  # noqa: PLR0917 - private; called in two places.
        self,
        source: dict[str, Any],
        config: svcconfig.ServiceConfig,
        decision: leader.Decision,
        existing: dict[str, Any] | None,
        history: Mapping[str, str],
        extra: Mapping[str, str],
    ) -> dict[str, Any]:
        have_notes = ((existing or {}).get("metadata") or {}).get("annotations") or {}
        carried = {k: v for k, v in have_notes.items() if k in objects.HISTORY}
        want = objects.leader_service(
            source, config=config, decision=decision, history=carried | dict(history), extra=extra
        )
        if existing is not None and objects.service_needs_recreate(want, existing):
            await self._delete(api.SERVICES, existing)
            existing = None
        if existing is None:
            created = await self._create(source, api.SERVICES, want, lane=_ORDINARY)
            self.events.normal(
                source,
                "LeaderServiceCreated",
                f"created leader Service {config.leader_service_name}",
            )
            return created
        if not objects.service_needs_update(want, existing):
            return existing
        patch = _merge_patch(want, existing, body={"spec": want["spec"] | {"selector": None}})
        # The leader annotations are part of a failover; a mere metadata sync can wait.
        lane = _TRAFFIC if decision.changed else _ORDINARY
        name = existing["metadata"]["name"]
        return await self._patch(source, api.SERVICES, name, patch, lane=lane)

    async def _ensure_slice(
        self,
        key: model.ServiceKey,
        source: dict[str, Any],
        svc: dict[str, Any],
        decision: leader.Decision,
        existing: dict[str, Any] | None,
    ) -> None:
        want = objects.endpoint_slice(
            svc,
            source_name=key.name,
            decision=decision,
            existing_address_type=(existing or {}).get("addressType"),
            trigger_time=self._trigger_time(key),
        )
        if existing is not None and objects.slice_needs_recreate(want, existing):
            await self._delete(api.ENDPOINTSLICES, existing)
            existing = None
        if existing is None:
            await self._create(source, api.ENDPOINTSLICES, want, lane=_TRAFFIC)
            return
        if not objects.slice_needs_update(want, existing):
            return
        patch = _merge_patch(
            want, existing, body={"endpoints": want["endpoints"], "ports": want["ports"]}
        )
        name = existing["metadata"]["name"]
        await self._patch(source, api.ENDPOINTSLICES, name, patch, lane=_TRAFFIC)

    def _trigger_time(self, key: model.ServiceKey) -> str:
        """Return when the change being written was first observed (RFC 3339, microseconds).

        The leader's failure, if one is open (the watch event, or the first failed probe),
        else now: kube-proxy measures network programming latency from this moment.
        """
        failure = self.failures.peek(key)
        wall = self.wall_clock()
        if failure is not None:
            wall -= max(0.0, self.monotonic() - failure.at)
        moment = datetime.datetime.fromtimestamp(wall, datetime.UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    async def _create(
        self,
        source: Mapping[str, Any],
        res: api.Resource,
        body: dict[str, Any],
        *,
        lane: lanes.Lane,
    ) -> dict[str, Any]:
        """Create `body`; on AlreadyExists, adopt what is ours or warn about what is not."""
        namespace = body["metadata"]["namespace"]
        try:
            created: dict[str, Any] = await self._counted(
                source, self.client.create(res, namespace, body, lane=lane)
            )
        except errors.AlreadyExistsError:
            await self._already_exists(source, res, body)
            raise
        self._store(res).pin(created)
        return created

    async def _already_exists(
        self, source: Mapping[str, Any], res: api.Resource, body: dict[str, Any]
    ) -> None:
        """Tell our own object that the cache has not seen yet from someone else's.

        Ours (a write whose answer was lost, or a relist older than our create): pin it into
        the cache and retry shortly (`StaleCacheError`). Not ours: warn, and leave it alone.
        """
        meta = body["metadata"]
        found = await self.client.get(res, meta["namespace"], meta["name"], lane=_ORDINARY)
        source_name = source["metadata"]["name"]
        if res is api.SERVICES:
            ours = objects.owns_service(found, source_name=source_name, source_uid=None)
        else:
            ours = objects.owns_slice(found, source_name=source_name, leader_uid=None)
        if ours:
            self._store(res).pin(found)
            raise errors.StaleCacheError(f"{res.singular} {meta['name']} exists: cache behind")
        if res is api.ENDPOINTSLICES:
            self.events.warning(
                source,
                "EndpointSliceConflict",
                f"an EndpointSlice named {meta['name']!r} exists and was not "
                "created by zen-lead; not touching it",
            )

    async def _patch(
        self,
        source: Mapping[str, Any],
        res: api.Resource,
        name: str,
        patch: dict[str, Any],
        *,
        lane: lanes.Lane,
    ) -> dict[str, Any]:
        namespace = source["metadata"]["namespace"]
        patched: dict[str, Any] = await self._counted(
            source, self.client.patch(res, namespace, name, patch, lane=lane)
        )
        self._store(res).pin(patched)
        return patched

    async def _counted(self, source: Mapping[str, Any], call: Awaitable[Any]) -> Any:
        """Await a write; count it in ``zen_lead_endpoint_write_errors_total`` if it fails."""
        try:
            return await call
        except errors.KubeError:
            meta = source["metadata"]
            self.metrics.write_errors.labels(meta["namespace"], meta["name"]).inc()
            self.metrics.track(self.metrics.write_errors, meta["namespace"], meta["name"])
            raise

    async def _delete(self, res: api.Resource, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        with contextlib.suppress(errors.NotFoundError):
            await self.client.delete(
                res, meta["namespace"], meta["name"], uid=meta["uid"], lane=_ORDINARY
            )
        self._store(res).pin_deleted(meta["namespace"], meta["name"], meta["uid"])

    def _store(self, res: api.Resource) -> store.Store[dict[str, Any]]:
        return self.cache.services if res is api.SERVICES else self.cache.slices

    # Cleanup -----------------------------------------------------------------------------------

    async def _cleanup(self, key: model.ServiceKey, source: Mapping[str, Any] | None) -> None:
        """Delete every leader Service and slice zen-lead made for `key`; clear its state."""
        removed = await self._remove_stale(key, keep=None)
        self._forget_probes(key)
        self.metrics.forget_service(key)
        remaining = mapping.source_count(self.cache, key.namespace)
        self._report_managed(key.namespace, remaining)
        self.failures.pop(key)
        if source is None:
            self.events.forget(key.namespace, key.name)
        elif removed:
            self.events.normal(
                source,
                "LeaderServiceDeleted",
                f"removed {', '.join(removed)}: not managed any more",
            )

    async def _remove_stale(self, key: model.ServiceKey, *, keep: str | None) -> list[str]:
        removed = []
        for svc in self.cache.services.find_any(mapping.SOURCE, key.namespace, (key.name,)):
            name = svc["metadata"]["name"]
            if name == keep or not objects.owns_service(svc, source_name=key.name, source_uid=None):
                continue
            await self._delete(api.SERVICES, svc)
            removed.append(name)
        for slice_obj in self.cache.slices.find_any(mapping.SOURCE, key.namespace, (key.name,)):
            name = slice_obj["metadata"]["name"]
            if name == keep or not objects.owns_slice(
                slice_obj, source_name=key.name, leader_uid=None
            ):
                continue
            await self._delete(api.ENDPOINTSLICES, slice_obj)
        return removed

    # Bookkeeping after a successful write ------------------------------------------------------

    def _after_write(
        self,
        key: model.ServiceKey,
        source: dict[str, Any],
        decision: leader.Decision,
        acked: float,
        *,
        pods_seen: int,
    ) -> dict[str, str]:
        """Update metrics and Events; return leader-Service history annotations to write."""
        labels = (key.namespace, key.name)
        qualified = sum(1 for v in decision.verdicts if v.qualified)
        self.metrics.pods_available.labels(*labels).set(qualified)
        self.metrics.without_endpoints.labels(*labels).set(0 if decision.leader else 1)
        for metric in (self.metrics.pods_available, self.metrics.without_endpoints):
            self.metrics.track(metric, *labels)
        for port_name in decision.unresolved_ports:
            self.metrics.port_failures.labels(*labels, port_name).inc()
            self.metrics.track(self.metrics.port_failures, *labels, port_name)
        history = self._record_change(key, source, decision, acked) if decision.changed else {}
        if decision.leader is None:
            self._warn_no_leader(source, decision, pods_seen=pods_seen)
        return history

    def _record_change(
        self,
        key: model.ServiceKey,
        source: dict[str, Any],
        decision: leader.Decision,
        acked: float,
    ) -> dict[str, str]:
        labels = (key.namespace, key.name)
        failure = self.failures.pop(key)
        if failure is not None and failure.pod_uid != decision.previous_uid:
            failure = None  # Not the failure of the leader we just replaced.
        new = decision.leader
        now = _now_rfc3339()
        history = {objects.ANN_LAST_SWITCH: now} if new is not None else {}
        self.metrics.set_leader(key, new, since=self.wall_clock())
        if decision.previous_uid is None:
            if new is not None:
                self.events.normal(source, "LeaderElected", f"{new.name} leads ({decision.why})")
            return history
        cause = decision.cause or "unknown"
        self.metrics.failovers.labels(*labels, cause).inc()
        self.metrics.track(self.metrics.failovers, *labels, cause)
        history |= {objects.ANN_LAST_FAILOVER: now, objects.ANN_LAST_FAILOVER_REASON: cause}
        history[objects.ANN_LAST_FAILOVER_LATENCY] = ""
        if failure is not None:
            latency = acked - failure.at
            self.metrics.failover_latency.labels(*labels, cause).observe(latency)
            self.metrics.track(self.metrics.failover_latency, *labels, cause)
            decided = failure.decided_at if failure.decided_at is not None else failure.at
            self.metrics.decision_latency.labels(cause).observe(acked - decided)
            history[objects.ANN_LAST_FAILOVER_LATENCY] = f"{latency:.4f}"
        old = _pod_name(decision, decision.previous_uid)
        target = new.name if new is not None else "no pod"
        self.events.normal(
            source, "LeaderChanged", f"from {old} to {target}: previous leader {cause}"
        )
        return history

    def _warn_no_leader(
        self, source: Mapping[str, Any], decision: leader.Decision, *, pods_seen: int
    ) -> None:
        if decision.unresolved_ports:
            names = ", ".join(decision.unresolved_ports)
            self.events.warning(
                source,
                "PortResolutionFailed",
                f"no qualifying pod declares the named targetPort(s) {names}; "
                "routing nothing (fail closed)",
            )
        elif pods_seen == 0:
            self.events.warning(
                source, "NoPodsFound", "no pod matches the selector; the leader has no endpoints"
            )
        else:
            self.events.warning(
                source, "NoReadyPods", f"{decision.why}; the leader has no endpoints"
            )


def _pod_name(decision: leader.Decision, uid: str | None) -> str:
    for verdict in decision.verdicts:
        if verdict.pod.uid == uid:
            return verdict.pod.name
    return f"pod {uid}"


def _merge_patch(
    want: Mapping[str, Any], have: Mapping[str, Any], *, body: dict[str, Any]
) -> dict[str, Any]:
    """Return a JSON merge patch that makes `have` match `want`, locked to its version."""
    wm, hm = want["metadata"], have["metadata"]
    meta: dict[str, Any] = {
        "resourceVersion": hm.get("resourceVersion"),
        "ownerReferences": wm["ownerReferences"],
    }
    for field in ("labels", "annotations"):
        if field in wm:
            gone = {k: None for k in hm.get(field) or {} if k not in wm[field]}
            meta[field] = gone | wm[field]
    return {"metadata": meta, **body}
