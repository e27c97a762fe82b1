"""Every Prometheus metric zen-lead exports, on a registry per controller instance.

Names and label names follow upstream zen-lead (``zen_lead_*``; labels ``namespace`` and
``service``) so dashboards and alerts keep working, with honest semantics:

- ``zen_lead_failover_count_total{reason}`` counts leader changes caused by the old leader
  failing (deleted, terminating, notReady, noIP, notRunning, portUnresolved) or being preempted
  (``sticky: "false"``); the first election is not a failover.
- ``zen_lead_failover_latency_seconds{reason}`` runs from the moment the controller first
  observed the failure (the watch event) to the API server acknowledging the EndpointSlice
  write that took traffic off the failed pod.
- ``zen_lead_leader_duration_seconds`` is how long the current pod has led (not its age,
  which is ``zen_lead_leader_pod_age_seconds``).

Every series labelled with a Service is removed when that Service stops being managed
(`forget_service`), so alerts clear for deleted Services.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any, Protocol

import prometheus_client
from prometheus_client import core as prom_core

import zenlead

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from zenlead import model

__all__ = ("Metrics",)

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SVC = ("namespace", "service")


@dataclasses.dataclass
class _Leadership:
    since: float  # wall clock, when this pod became leader (as far as we know)
    pod_created: float


class _LeaderClock:
    """Computes leader duration and pod age at scrape time, from remembered timestamps."""

    def __init__(self) -> None:
        self.leaders: dict[tuple[str, str], _Leadership] = {}

    def describe(self) -> list[prom_core.Metric]:
        return []

    def collect(self) -> Iterator[prom_core.Metric]:
        now = time.time()
        duration = prom_core.GaugeMetricFamily(
            "zen_lead_leader_duration_seconds",
            "Seconds the current leader pod has been leader.",
            labels=list(_SVC),
        )
        age = prom_core.GaugeMetricFamily(
            "zen_lead_leader_pod_age_seconds",
            "Age of the current leader pod in seconds.",
            labels=list(_SVC),
        )
        for (namespace, service), lead in list(self.leaders.items()):
            duration.add_metric([namespace, service], max(0.0, now - lead.since))
            age.add_metric([namespace, service], max(0.0, now - lead.pod_created))
        yield duration
        yield age


class SizedStore(Protocol):
    """What the cache collector needs of a store (`zenlead.kube.store.Store` has it)."""

    def namespaces(self) -> list[str]:
        """Return the namespaces holding objects."""

    def count(self, namespace: str | None = None) -> int:
        """Return how many objects `namespace` holds."""


class _CacheCollector:
    """Store sizes per namespace and hit ratios, computed at scrape time."""

    def __init__(self, lookups: prometheus_client.Counter) -> None:
        self.stores: dict[str, SizedStore] = {}
        self.lookups = lookups
        self.hits: dict[str, list[int]] = {}

    def describe(self) -> list[prom_core.Metric]:
        return []

    def collect(self) -> Iterator[prom_core.Metric]:
        sizes = prom_core.GaugeMetricFamily(
            "zen_lead_store_objects",
            "Objects held in the informer cache, per resource and namespace.",
            labels=["resource", "namespace"],
        )
        for resource, store in self.stores.items():
            for namespace in store.namespaces():
                sizes.add_metric([resource, namespace], store.count(namespace))
        yield sizes
        ratio = prom_core.GaugeMetricFamily(
            "zen_lead_cache_hit_ratio",
            "Share of cache lookups that found the object, since start.",
            labels=["resource"],
        )
        for resource, (hit, miss) in list(self.hits.items()):
            if hit + miss:
                ratio.add_metric([resource], hit / (hit + miss))
        yield ratio


class WatchedInformer(Protocol):
    """What the informer collector reads (`zenlead.kube.informers.Informer` has it)."""

    resource_name: str
    scope: str
    relists: int
    failures: int
    handler_errors: int

    def staleness(self) -> float:
        """Return seconds out of touch with the API server (0 while in touch)."""


class _InformerCollector:
    """Per-informer health, read at scrape time: staleness, relists, failures, handler errors."""

    def __init__(self) -> None:
        self.informers: list[WatchedInformer] = []

    def describe(self) -> list[prom_core.Metric]:
        return []

    def collect(self) -> Iterator[prom_core.Metric]:
        labels = ["resource", "scope"]
        stale = prom_core.GaugeMetricFamily(
            "zen_lead_informer_stale_seconds",
            "Seconds the informer has been out of touch with the API server (0 while watching).",
            labels=labels,
        )
        relists = prom_core.CounterMetricFamily(
            "zen_lead_informer_relists", "Full lists taken by the informer.", labels=labels
        )
        failures = prom_core.CounterMetricFamily(
            "zen_lead_informer_failures",
            "List or watch failures of the informer (each followed by a backoff).",
            labels=labels,
        )
        handler = prom_core.CounterMetricFamily(
            "zen_lead_informer_handler_errors",
            "Objects the informer could not hand on (a handler or transform raised).",
            labels=labels,
        )
        for informer in list(self.informers):
            values = [informer.resource_name, informer.scope]
            stale.add_metric(values, informer.staleness())
            relists.add_metric(values, informer.relists)
            failures.add_metric(values, informer.failures)
            handler.add_metric(values, informer.handler_errors)
        yield from (stale, relists, failures, handler)


PROBER_METRICS = (
    "probes",
    "probe_duration",
    "probe_targets",
    "probe_suspicions",
    "probe_loop_restarts",
)
"""The `Metrics` attributes the prober pool writes (another process's, when it runs apart)."""


class _ProberCollector:
    """Serves the probe metric families reported by the prober process."""

    def __init__(self, families: Callable[[], list[Any] | None], local: list[Any]) -> None:
        self.families = families
        self.local = local

    def collect(self) -> Iterator[Any]:
        reported = self.families()
        if reported is None:  # Not reported yet: this process's own (zero) series.
            for metric in self.local:
                yield from metric.collect()
        else:
            yield from reported


class Metrics:
    """The collectors, plus helpers that keep per-Service series consistent."""

    def __init__(self) -> None:
        """Create every collector on a fresh registry and initialise label-free series."""
        self.registry = prometheus_client.CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.failovers = prometheus_client.Counter(
            "zen_lead_failover_count",
            "Leader changes caused by the previous leader failing or being preempted.",
            [*_SVC, "reason"],
            registry=reg,
        )
        self.failover_latency = prometheus_client.Histogram(
            "zen_lead_failover_latency_seconds",
            "From first observing the leader's failure to the EndpointSlice write acknowledged.",
            [*_SVC, "reason"],
            buckets=_BUCKETS,
            registry=reg,
        )
        self.decision_latency = prometheus_client.Histogram(
            "zen_lead_failover_decision_latency_seconds",
            "From the evidence that decided a failover (the watch event, or the probe verdict "
            "turning down) to the EndpointSlice write acknowledged.",
            ["reason"],
            buckets=_BUCKETS,
            registry=reg,
        )
        self.reconcile_duration = prometheus_client.Histogram(
            "zen_lead_reconciliation_duration_seconds",
            "Duration of one reconcile of a Service.",
            [*_SVC, "result"],
            buckets=_BUCKETS,
            registry=reg,
        )
        self.reconciles = prometheus_client.Counter(
            "zen_lead_reconciliations",
            "Reconciles by outcome (success, error).",
            [*_SVC, "result"],
            registry=reg,
        )
        self.reconcile_errors = prometheus_client.Counter(
            "zen_lead_reconciliation_errors",
            "Failed reconciles by error type.",
            [*_SVC, "error_type"],
            registry=reg,
        )
        self.pods_available = prometheus_client.Gauge(
            "zen_lead_pods_available",
            "Pods of the Service that qualify to lead.",
            list(_SVC),
            registry=reg,
        )
        self.without_endpoints = prometheus_client.Gauge(
            "zen_lead_leader_service_without_endpoints",
            "1 when the leader Service's EndpointSlice has no endpoint.",
            list(_SVC),
            registry=reg,
        )
        self.port_failures = prometheus_client.Counter(
            "zen_lead_port_resolution_failures",
            "Reconciles in which a named targetPort kept pods from leading.",
            [*_SVC, "port_name"],
            registry=reg,
        )
        self.write_errors = prometheus_client.Counter(
            "zen_lead_endpoint_write_errors",
            "Failed writes of the leader Service or its EndpointSlice.",
            list(_SVC),
            registry=reg,
        )
        self.managed_services = prometheus_client.Gauge(
            "zen_lead_leader_services_total",
            "Leader Services zen-lead manages, per namespace.",
            ["namespace"],
            registry=reg,
        )
        self.cache_size = prometheus_client.Gauge(
            "zen_lead_cache_size",
            "Opted-in Services tracked per namespace (bounded by --max-cache-size-per-namespace).",
            ["namespace"],
            registry=reg,
        )
        self.events_dropped = prometheus_client.Counter(
            "zen_lead_events_dropped",
            "Kubernetes Events not sent because of the per-Service rate limit.",
            ["reason"],
            registry=reg,
        )
        self.is_leader = prometheus_client.Gauge(
            "zen_lead_controller_is_leader",
            "1 while this controller instance holds the leader-election Lease.",
            registry=reg,
        )
        self.api_calls = prometheus_client.Histogram(
            "zen_lead_api_call_duration_seconds",
            "Kubernetes API calls by operation (verb_resource) and result, one per attempt.",
            ["operation", "result"],
            buckets=_BUCKETS,
            registry=reg,
        )
        self.probes = prometheus_client.Counter(
            "zen_lead_probes",
            "Active health probes by kind and result "
            "(success, network, timeout, negative, config).",
            ["kind", "result"],
            registry=reg,
        )
        self.probe_duration = prometheus_client.Histogram(
            "zen_lead_probe_duration_seconds",
            "Duration of active health probes by kind and result.",
            ["kind", "result"],
            buckets=_BUCKETS,
            registry=reg,
        )
        self.probe_targets = prometheus_client.Gauge(
            "zen_lead_probe_targets", "Pods being probed.", registry=reg
        )
        self.probe_panic = prometheus_client.Gauge(
            "zen_lead_probe_panic",
            "1 while too many of the Service's pods fail their probes at once (leader kept).",
            list(_SVC),
            registry=reg,
        )
        self.queue_depth = prometheus_client.Gauge(
            "zen_lead_workqueue_depth", "Keys waiting in the work queue.", registry=reg
        )
        build = prometheus_client.Gauge(
            "zen_lead_build_info", "Build information.", ["version"], registry=reg
        )
        build.labels(zenlead.__version__).set(1)
        self.cache_limit = prometheus_client.Gauge(
            "zen_lead_cache_limit",
            "Configured --max-cache-size-per-namespace (opted-in Services per namespace).",
            registry=reg,
        )
        self.cache_lookups = prometheus_client.Counter(
            "zen_lead_cache_lookups",
            "Informer-cache lookups by resource and result (hit, miss).",
            ["resource", "result"],
            registry=reg,
        )
        self.retries = prometheus_client.Counter(
            "zen_lead_reconcile_retries",
            "Reconciles scheduled again after a failure (one per retry, never per attempt).",
            ["namespace"],
            registry=reg,
        )
        self.probe_suspicions = prometheus_client.Counter(
            "zen_lead_probe_suspicions",
            "Phi-detector suspicions (a pod silent past its usual response times), by probe "
            "kind and how they ended: cleared (it answered) or confirmed (it was found down).",
            ["kind", "outcome"],
            registry=reg,
        )
        self.probe_loop_restarts = prometheus_client.Counter(
            "zen_lead_probe_loop_restarts",
            "Probe loops of single targets that crashed and were restarted, by probe kind.",
            ["kind"],
            registry=reg,
        )
        self.task_restarts = prometheus_client.Counter(
            "zen_lead_task_restarts",
            "Controller tasks that ended unexpectedly and were restarted "
            "(prober, events, timers, election, workers).",
            ["task"],
            registry=reg,
        )
        for task in ("prober", "events", "timers", "election", "workers"):
            self.task_restarts.labels(task)
        self.prober_up = prometheus_client.Gauge(
            "zen_lead_prober_up",
            "1 while the prober pool runs (/healthz fails while it does not).",
            registry=reg,
        )
        self.dead_letter = prometheus_client.Gauge(
            "zen_lead_dead_letter_services",
            "Services whose reconcile keeps failing: parked, retried slowly, last routing kept.",
            ["namespace"],
            registry=reg,
        )
        self.throttled = prometheus_client.Counter(
            "zen_lead_api_throttled",
            "API calls answered 429 (throttled); retried after Retry-After, not counted as errors.",
            ["operation"],
            registry=reg,
        )
        self.circuit_open = prometheus_client.Gauge(
            "zen_lead_api_circuit_open",
            "1 while the API circuit breaker is open or half-open (ordinary calls refused).",
            registry=reg,
        )
        self.retry_budget_exhausted = prometheus_client.Counter(
            "zen_lead_retry_budget_exhausted",
            "Retries delayed because their namespace used up its retry budget.",
            ["namespace"],
            registry=reg,
        )
        self.lease_lost = prometheus_client.Counter(
            "zen_lead_lease_lost",
            "Times this replica stopped leading, by reason (other_holder, renew_deadline, "
            "stale_cache, released).",
            ["reason"],
            registry=reg,
        )
        for reason in ("other_holder", "renew_deadline", "stale_cache", "released"):
            self.lease_lost.labels(reason)
        self._cache = _CacheCollector(self.cache_lookups)
        reg.register(self._cache)
        prometheus_client.ProcessCollector(registry=reg)
        prometheus_client.PlatformCollector(registry=reg)
        self._leaders = _LeaderClock()
        reg.register(self._leaders)
        self._informers = _InformerCollector()
        reg.register(self._informers)
        self._seen: dict[tuple[str, str], set[tuple[object, tuple[str, ...]]]] = {}

    def observe_api_call(
        self, *, operation: str, resource: str, result: str, seconds: float
    ) -> None:
        """Record one API call (the `kube.api.CallObserver` protocol)."""
        self.api_calls.labels(f"{operation}_{resource}", result).observe(seconds)

    def serve_prober_families(self, families: Callable[[], list[Any] | None]) -> None:
        """Serve the `PROBER_METRICS` from `families()` (a prober process's latest report)."""
        local = [getattr(self, name) for name in PROBER_METRICS]
        for metric in local:
            self.registry.unregister(metric)
        self.registry.register(_ProberCollector(families, local))

    def watch_informers(self, informers: list[WatchedInformer]) -> None:
        """Report the health of `informers` (staleness, relists, failures)."""
        self._informers.informers = informers

    def watch_store(self, resource: str, store: SizedStore) -> None:
        """Report `store`'s size per namespace as ``zen_lead_store_objects``."""
        self._cache.stores[resource] = store

    def cache_lookup(self, resource: str, hit: bool) -> None:  # noqa: FBT001 - a callback.
        """Count one cache lookup of `resource`."""
        self.cache_lookups.labels(resource, "hit" if hit else "miss").inc()
        counts = self._cache.hits.setdefault(resource, [0, 0])
        counts[0 if hit else 1] += 1

    def track(self, metric: object, *labels: str) -> None:
        """Remember that a per-Service series exists, so `forget_service` can remove it."""
        self._seen.setdefault((labels[0], labels[1]), set()).add((metric, labels))

    def set_leader(self, key: model.ServiceKey, pod: model.Pod | None, *, since: float) -> None:
        """Record the current leader (or none) for the duration and age gauges."""
        if pod is None:
            self._leaders.leaders.pop(tuple(key), None)  # type: ignore[arg-type]
        else:
            self._leaders.leaders[tuple(key)] = _Leadership(since, pod.created)  # type: ignore[index]

    def forget_service(self, key: model.ServiceKey) -> None:
        """Remove every series labelled with `key` (the Service is no longer managed)."""
        self._leaders.leaders.pop(tuple(key), None)  # type: ignore[arg-type]
        for metric, labels in self._seen.pop(tuple(key), set()):  # type: ignore[arg-type]
            try:
                metric.remove(*labels)  # type: ignore[attr-defined]
            except KeyError:
                continue

    def exposition(self) -> bytes:
        """Return the text exposition of every metric."""
        return prometheus_client.generate_latest(self.registry)
