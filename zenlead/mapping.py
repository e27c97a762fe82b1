"""Turn informer notifications into Service keys to reconcile, and note leader failures.

Called from informer threads with (old, new, seen_at) for each change. It only computes which
source Services are affected (controller-runtime's "map to requests"; the EndpointSlice
controller's ``GetPodServiceMemberships``) and hands their keys to `enqueue`; the reconciler
reads the state itself. When a pod that currently leads a Service stops qualifying (deleted,
terminating, not Ready, no IP, not Running), the moment the watch event arrived is recorded in
`FailureClock`: that is where ``zen_lead_failover_latency_seconds`` starts.

Every lookup goes through the stores' indexes (`new_cache` declares them), never through a scan
of a namespace, so the work per event is proportional to what the event touches (the pod's
Services, the Service's pods), not to how many objects share the namespace: a pod event finds
the sources filed under one of the pod's label pairs (each source is filed under one pair of
its selector), then checks their whole selector;
a Service's pods are those that carry every pair of its selector.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING, Any

from zenlead import model, objects, svcconfig
from zenlead.kube import store

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = (
    "PROBE_FAILED",
    "Cache",
    "FailureClock",
    "Mapper",
    "is_source",
    "new_cache",
    "object_key",
    "selected_pods",
    "selects",
    "source_count",
    "sources_selecting",
)

PROBE_FAILED = "probe_failed"

# Index names (see `new_cache`).
SELECTOR = "selector"
"""Services: each source under one ``key=value`` pair of its selector (the least, sorted)."""
LEADER_NAME = "leader-name"
"""Services: each source under the name of the leader Service it wants."""
SOURCES = "sources"
"""Services: every source, under the empty value (a count per namespace)."""
SOURCE = "source"
"""Services and slices: objects labelled as made for a source, under that source's name."""
LABELS = "labels"
"""Pods: each pod under every ``key=value`` pair of its labels."""
LEADER = "leader"
"""Slices: each slice under the UID of the pod it points at."""


@dataclasses.dataclass(frozen=True)
class Cache:
    """The informers' stores: all Services and Pods in scope, and our EndpointSlices."""

    services: store.Store[dict[str, Any]]
    pods: store.Store[model.Pod]
    slices: store.Store[dict[str, Any]]


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """First observation of a leader failing: when (monotonic seconds), why, and which pod."""

    at: float
    reason: str
    pod_uid: str
    decided_at: float | None = None
    """When the failure became decisive (a probe verdict turning down), if later than `at`."""


class FailureClock:
    """Remembers, per Service, when its leader's failure was first observed (thread-safe)."""

    def __init__(self) -> None:
        """Start with no failures."""
        self._lock = threading.Lock()
        self._first: dict[model.ServiceKey, Failure] = {}

    def observe(
        self,
        key: model.ServiceKey,
        *,
        pod_uid: str,
        reason: str,
        at: float,
        decided_at: float | None = None,
    ) -> None:
        """Record a failure of leader `pod_uid` unless an earlier one is still open."""
        with self._lock:
            current = self._first.get(key)
            if current is None or current.pod_uid != pod_uid:
                self._first[key] = Failure(at, reason, pod_uid, decided_at)

    def recovered(self, key: model.ServiceKey, *, pod_uid: str, probe: bool) -> None:
        """Close `pod_uid`'s open failure: a probe one when `probe`, else a Ready-rule one."""
        with self._lock:
            current = self._first.get(key)
            if current is None or current.pod_uid != pod_uid:
                return
            if (current.reason == PROBE_FAILED) == probe:
                del self._first[key]

    def peek(self, key: model.ServiceKey) -> Failure | None:
        """Return the open failure of `key`, leaving it open."""
        with self._lock:
            return self._first.get(key)

    def pop(self, key: model.ServiceKey) -> Failure | None:
        """Return and clear the open failure of `key`."""
        with self._lock:
            return self._first.pop(key, None)


def object_key(obj: Any) -> tuple[str, str]:
    """Return (namespace, name) of a pod or a raw object."""
    if isinstance(obj, model.Pod):
        return obj.namespace, obj.name
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def new_cache(on_lookup: Callable[[str, bool], None] | None = None) -> Cache:
    """Return empty stores with the indexes the mapping and the reconciler use.

    `on_lookup(resource, hit)` (optional) hears about every `get`.
    """

    def lookup(resource: str) -> Callable[[bool], None] | None:
        return None if on_lookup is None else lambda hit: on_lookup(resource, hit)

    return Cache(
        store.Store(
            object_key,
            on_lookup=lookup("services"),
            indexers={
                SELECTOR: _selector_pairs,
                LEADER_NAME: _leader_names,
                SOURCES: _source_marks,
                SOURCE: _made_for,
            },
        ),
        store.Store(object_key, on_lookup=lookup("pods"), indexers={LABELS: _label_pairs}),
        store.Store(
            object_key,
            on_lookup=lookup("endpointslices"),
            indexers={SOURCE: _made_for, LEADER: _leader_uids},
        ),
    )


def _pairs(labels: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in labels.items()]


def _selector_pairs(svc: dict[str, Any]) -> Iterable[str]:
    # One pair is enough: a pod the selector matches carries every pair, this one included.
    # Filing under all of them would make a pair many selectors share (``tier=web``) bring
    # every such source back as a candidate for each pod event.
    pairs = _pairs((svc.get("spec") or {}).get("selector") or {}) if is_source(svc) else []
    return (min(pairs),) if pairs else ()


def _leader_names(svc: dict[str, Any]) -> Iterable[str]:
    return (_leader_name(svc),) if is_source(svc) else ()


def _source_marks(svc: dict[str, Any]) -> Iterable[str]:
    return ("",) if is_source(svc) else ()


def _made_for(obj: dict[str, Any]) -> Iterable[str]:
    source = ((obj.get("metadata") or {}).get("labels") or {}).get(model.LABEL_SOURCE)
    return (source,) if source else ()


def _label_pairs(pod: model.Pod) -> Iterable[str]:
    return _pairs(pod.labels)


def _leader_uids(slice_obj: dict[str, Any]) -> Iterable[str]:
    uid = objects.leader_uid_of(slice_obj)
    return (uid,) if uid else ()


def selected_pods(cache: Cache, source: Mapping[str, Any]) -> list[model.Pod]:
    """Return the pods `source`'s (non-empty) selector matches, through the label index."""
    selector = (source.get("spec") or {}).get("selector") or {}
    namespace = source["metadata"].get("namespace", "")
    candidates = cache.pods.find_all(LABELS, namespace, _pairs(selector)) if selector else []
    return [p for p in candidates if selects(source, p.labels)]


def sources_selecting(
    cache: Cache, namespace: str, labels: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Return the sources of `namespace` whose selector matches `labels`."""
    candidates = cache.services.find_any(SELECTOR, namespace, _pairs(labels))
    return [s for s in candidates if is_source(s) and selects(s, labels)]


def source_count(cache: Cache, namespace: str) -> int:
    """Return how many sources `namespace` holds."""
    return cache.services.index_count(SOURCES, namespace, "")


def is_source(svc: Mapping[str, Any]) -> bool:
    """Return True if `svc` opts in and is not itself a Service zen-lead made."""
    meta = svc.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(model.LABEL_MANAGED_BY) == model.MANAGER and model.LABEL_SOURCE in labels:
        return False
    return svcconfig.is_enabled(meta.get("annotations"))


def selects(svc: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Return True if the Service's (non-empty) selector matches `labels`."""
    selector = (svc.get("spec") or {}).get("selector") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _failure_reason(pod: model.Pod | None) -> str | None:
    if pod is None:
        return "deleted"
    for failed, code in (
        (pod.deleting, "terminating"),
        (pod.phase != "Running", "notRunning"),
        (not pod.ready, "notReady"),
        (pod.ip is None, "noIP"),
    ):
        if failed:
            return code
    return None


class Mapper:
    """Informer handlers: map each change to the source Services it may affect."""

    def __init__(
        self,
        cache: Cache,
        failures: FailureClock,
        enqueue: Callable[[model.ServiceKey, str], None],
    ) -> None:
        """Read `cache`, record into `failures`, and pass affected keys to `enqueue(key, kind)`."""
        self._cache = cache
        self._failures = failures
        self._enqueue = enqueue

    def on_service(
        self, old: dict[str, Any] | None, new: dict[str, Any] | None, _seen_at: float
    ) -> None:
        """Enqueue the Service if it is (or was) a source, and the sources related to it."""
        obj = new or old
        if obj is None:
            return
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        invalid = new is not None and svcconfig.enabled_problem(meta.get("annotations"))
        if invalid or any(o is not None and is_source(o) for o in (old, new)):
            self._enqueue(model.ServiceKey(namespace, name), "service")
        source = (meta.get("labels") or {}).get(model.LABEL_SOURCE)
        if source:
            self._enqueue(model.ServiceKey(namespace, source), "service")
        # A Service whose name a source wants for its leader: a conflict that may have cleared.
        for svc in self._cache.services.find_any(LEADER_NAME, namespace, (name,)):
            self._enqueue(model.ServiceKey(namespace, svc["metadata"]["name"]), "service")

    def before_pod(self, old: model.Pod | None, new: model.Pod | None, seen_at: float) -> None:
        """Note a leader failing or recovering, before the cache shows the change to anyone."""
        pod = new or old
        if pod is not None:
            self._note_leader_state(pod, _failure_reason(new), seen_at)

    def on_pod(self, old: model.Pod | None, new: model.Pod | None, _seen_at: float) -> None:
        """Enqueue every source that selects the pod (before or after the change)."""
        pod = new or old
        if pod is None:
            return
        names = {
            svc["metadata"]["name"]
            for p in (old, new)
            if p is not None
            for svc in sources_selecting(self._cache, pod.namespace, p.labels)
        }
        for name in sorted(names):
            self._enqueue(model.ServiceKey(pod.namespace, name), "pod")

    def on_slice(
        self, old: dict[str, Any] | None, new: dict[str, Any] | None, _seen_at: float
    ) -> None:
        """Enqueue the source of one of our EndpointSlices."""
        obj = new or old
        if obj is None:
            return
        meta = obj.get("metadata") or {}
        source = (meta.get("labels") or {}).get(model.LABEL_SOURCE)
        if source:
            self._enqueue(model.ServiceKey(meta.get("namespace", ""), source), "endpointslice")

    def _note_leader_state(self, pod: model.Pod, reason: str | None, seen_at: float) -> None:
        """Open (or, when `reason` is None, close) the failure of each Service `pod` leads."""
        for slice_obj in self._cache.slices.find_any(LEADER, pod.namespace, (pod.uid,)):
            source = (slice_obj["metadata"].get("labels") or {}).get(model.LABEL_SOURCE)
            if not source:
                continue
            key = model.ServiceKey(pod.namespace, source)
            if reason is None:
                self._failures.recovered(key, pod_uid=pod.uid, probe=False)
            else:
                self._failures.observe(key, pod_uid=pod.uid, reason=reason, at=seen_at)


def leads(cache: Cache, key: model.ServiceKey, pod_uid: str) -> bool:
    """Return True if our slice for Service `key` points at pod `pod_uid`."""
    for slice_obj in cache.slices.find_any(SOURCE, key.namespace, (key.name,)):
        return objects.leader_uid_of(slice_obj) == pod_uid
    return False


def _leader_name(svc: Mapping[str, Any]) -> str:
    meta = svc["metadata"]
    config, _ = svcconfig.parse(meta["name"], meta.get("annotations"))
    return config.leader_service_name
