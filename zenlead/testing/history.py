"""What clients of the API server could observe during a chaos test, and checks over it.

`Watcher` list+watches one namespace in three threads (zen-lead's EndpointSlices, Pods,
Leases) and records every version it sees as a frozen record stamped with `time.monotonic()`
and wall time: `SliceVersion`, `PodVersion`, `LeaseVersion`. When a watch breaks (410 Gone, an
error, the API server going away) it relists and records a `Gap` first, so an assertion knows
the watch was interrupted between `Gap.since` and `Gap.at`; objects that vanished meanwhile
are recorded as deleted at the relist.

The checks are pure functions over recorded history (a sequence of records, in any order) and
over `controlplane.AuditEvent` lists, so they are unit-tested on synthetic data:

- `multi_endpoint_versions`: slice versions with more than one endpoint (never allowed);
- `unrouted_intervals`: when a selected pod qualified but the Service's slice did not route to
  a qualifying pod;
- `lease_holders`: the Lease holder timeline;
- `single_writer_violations`: from the audit log alone, controller writes made by a replica
  that did not hold the Lease at that etcd revision.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import re
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeAlias

import urllib3
from kubernetes import client
from kubernetes.client import exceptions as kube_exceptions

from zenlead.kube import client as kube_client

if TYPE_CHECKING:
    import pathlib
    import types
    from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence

    from zenlead.testing import controlplane

__all__ = (
    "CHECKED_RESOURCES",
    "MANAGED_BY_SELECTOR",
    "SOURCE_LABEL",
    "Endpoint",
    "Gap",
    "LeaseVersion",
    "PodPredicate",
    "PodVersion",
    "Record",
    "SliceVersion",
    "Violation",
    "Watcher",
    "agent_identity",
    "lease_holders",
    "multi_endpoint_versions",
    "pod_qualifies",
    "selected_by_labels",
    "selected_by_names",
    "single_writer_violations",
    "unrouted_intervals",
)

MANAGED_BY_SELECTOR = "endpointslice.kubernetes.io/managed-by=zen-lead"
"""Label selector of the EndpointSlices zen-lead writes (the only slices recorded)."""

SOURCE_LABEL = "zen-lead.io/source-service"
"""Label naming the Service a leader slice routes for."""


# Records -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Endpoint:
    """One address of a slice: where it sends traffic and which pod it claims that is."""

    ip: str
    pod_name: str | None
    pod_uid: str | None
    ready: bool | None
    """conditions.ready; None (unset) means ready, as for kube-proxy."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class SliceVersion:
    """A version of a zen-lead EndpointSlice as seen at `at` (monotonic) and `wall`."""

    at: float
    wall: datetime.datetime
    name: str
    source: str | None
    resource_version: int | None
    endpoints: tuple[Endpoint, ...]
    deleted: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class PodVersion:
    """A version of a Pod: what decides whether it may receive traffic."""

    at: float
    wall: datetime.datetime
    name: str
    uid: str
    ip: str | None
    phase: str
    ready: bool
    deleting: bool
    """metadata.deletionTimestamp is set (terminating)."""
    deleted: bool = False
    labels: tuple[tuple[str, str], ...] = ()
    resource_version: int | None = None

    def label(self, key: str) -> str | None:
        """Return the value of label `key`, or None."""
        return dict(self.labels).get(key)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LeaseVersion:
    """A version of a Lease."""

    at: float
    wall: datetime.datetime
    name: str
    holder: str | None
    renew_time: datetime.datetime | None
    transitions: int | None
    resource_version: int | None = None
    deleted: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class Gap:
    """The watch of `resource` broke at `since` and a relist completed at `at`.

    Versions between the two may have been missed; the relist's versions follow this record.
    """

    at: float
    wall: datetime.datetime
    resource: str
    since: float
    reason: str


Record: TypeAlias = SliceVersion | PodVersion | LeaseVersion | Gap


# Watcher -------------------------------------------------------------------------------------


def _now() -> tuple[float, datetime.datetime]:
    return time.monotonic(), datetime.datetime.now(datetime.UTC)


def _rv(raw: Mapping[str, Any]) -> int | None:
    value = (raw.get("metadata") or {}).get("resourceVersion")
    return int(value) if value else None


def _to_slice(raw: dict[str, Any], *, at: float, wall: datetime.datetime, deleted: bool) -> Record:
    meta = raw.get("metadata") or {}
    endpoints = []
    for endpoint in raw.get("endpoints") or ():
        ref = endpoint.get("targetRef") or {}
        pod = ref.get("kind") == "Pod"
        ready = (endpoint.get("conditions") or {}).get("ready")
        endpoints += [
            Endpoint(
                ip=address,
                pod_name=ref.get("name") if pod else None,
                pod_uid=ref.get("uid") if pod else None,
                ready=ready,
            )
            for address in endpoint.get("addresses") or ()
        ]
    return SliceVersion(
        at=at,
        wall=wall,
        name=meta.get("name", ""),
        source=(meta.get("labels") or {}).get(SOURCE_LABEL),
        resource_version=_rv(raw),
        endpoints=tuple(endpoints),
        deleted=deleted,
    )


def _to_pod(raw: dict[str, Any], *, at: float, wall: datetime.datetime, deleted: bool) -> Record:
    meta = raw.get("metadata") or {}
    status = raw.get("status") or {}
    conditions = status.get("conditions") or ()
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return PodVersion(
        at=at,
        wall=wall,
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        ip=status.get("podIP") or None,
        phase=status.get("phase", ""),
        ready=ready,
        deleting=meta.get("deletionTimestamp") is not None,
        deleted=deleted,
        labels=tuple(sorted((meta.get("labels") or {}).items())),
        resource_version=_rv(raw),
    )


def _to_lease(raw: dict[str, Any], *, at: float, wall: datetime.datetime, deleted: bool) -> Record:
    spec = raw.get("spec") or {}
    renew = spec.get("renewTime")
    return LeaseVersion(
        at=at,
        wall=wall,
        name=(raw.get("metadata") or {}).get("name", ""),
        holder=spec.get("holderIdentity") or None,
        renew_time=datetime.datetime.fromisoformat(renew) if renew else None,
        transitions=spec.get("leaseTransitions"),
        resource_version=_rv(raw),
        deleted=deleted,
    )


class _Convert(Protocol):
    def __call__(
        self, raw: dict[str, Any], *, at: float, wall: datetime.datetime, deleted: bool
    ) -> Record: ...


class _Gone(Exception):  # noqa: N818 - named for the HTTP status, like errors.GoneError.
    """The watch's resourceVersion is too old (410)."""


_BROKEN = (kube_exceptions.ApiException, urllib3.exceptions.HTTPError, OSError, ValueError)


class _Stream:
    """List+watch of one resource in one namespace; appends records to the shared sink."""

    def __init__(
        self,
        method: Callable[..., Any],
        *,
        resource: str,
        namespace: str,
        convert: _Convert,
        sink: Callable[[Sequence[Record]], None],
        label_selector: str | None = None,
    ) -> None:
        self.method = method
        self.resource = resource
        self.namespace = namespace
        self.convert = convert
        self.sink = sink
        self.label_selector = label_selector
        self.synced = threading.Event()
        self.stopping = threading.Event()
        self.known: dict[str, dict[str, Any]] = {}  # name -> last raw object seen
        self._response: Any = None

    def stop(self) -> None:
        self.stopping.set()
        response = self._response
        if response is not None:
            response.shutdown()  # Unblocks the read in `run`'s thread at once.

    def run(self) -> None:
        rv: str | None = None
        broken: tuple[float, str] | None = None
        while not self.stopping.is_set():
            try:
                if rv is None:
                    rv = self._relist(broken)
                    broken = None
                    self.synced.set()
                rv = self._watch(rv)
            except (_Gone, *_BROKEN) as exc:
                if self.stopping.is_set():
                    return
                broken = broken or (time.monotonic(), f"{type(exc).__name__}: {exc}"[:300])
                rv = None
                self.stopping.wait(0.2)  # Then relist; the API server may still be away.

    def _kwargs(self, **extra: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"_preload_content": False, **extra}
        if self.label_selector:
            kwargs["label_selector"] = self.label_selector
        return kwargs

    def _relist(self, broken: tuple[float, str] | None) -> str:
        response = self.method(self.namespace, **self._kwargs(_request_timeout=10))
        try:
            page = json.loads(response.data)
        finally:
            response.release_conn()
        at, wall = _now()
        records: list[Record] = []
        if broken is not None:
            since, reason = broken
            gap = Gap(at=at, wall=wall, resource=self.resource, since=since, reason=reason)
            records.append(gap)
        seen = {}
        for raw in page.get("items") or ():
            name = raw["metadata"]["name"]
            seen[name] = raw
            if _rv(self.known.get(name, {})) != _rv(raw):
                records.append(self.convert(raw, at=at, wall=wall, deleted=False))
        records += [
            self.convert(raw, at=at, wall=wall, deleted=True)
            for name, raw in self.known.items()
            if name not in seen
        ]
        self.known = seen
        self.sink(records)
        return str(page["metadata"]["resourceVersion"])

    def _watch(self, rv: str) -> str:
        """Record events from `rv` until the server ends the stream; return the last rv."""
        response = self.method(
            self.namespace,
            **self._kwargs(
                watch=True,
                resource_version=rv,
                allow_watch_bookmarks=True,
                timeout_seconds=60,
                _request_timeout=(10, 70),
            ),
        )
        self._response = response
        try:
            if self.stopping.is_set():
                return rv  # `stop` ran before the response existed, so it could not close it.
            for event in _lines(response):
                if self.stopping.is_set():
                    break
                rv = self._apply(event) or rv
        finally:
            self._response = None
            response.release_conn()
        return rv

    def _apply(self, event: dict[str, Any]) -> str | None:
        kind, raw = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if raw.get("code") == 410:  # noqa: PLR2004 - HTTP Gone
                raise _Gone(raw.get("message", "resourceVersion too old"))
            raise ValueError(f"watch error: {raw}")
        rv = (raw.get("metadata") or {}).get("resourceVersion")
        if kind != "BOOKMARK":
            at, wall = _now()
            name = raw["metadata"]["name"]
            deleted = kind == "DELETED"
            if deleted:
                self.known.pop(name, None)
            else:
                self.known[name] = raw
            self.sink([self.convert(raw, at=at, wall=wall, deleted=deleted)])
        return str(rv) if rv else None


def _lines(response: Any) -> Iterator[dict[str, Any]]:
    buffer = b""
    for chunk in response.stream(64 * 1024, decode_content=True):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)


class Watcher:
    """Records every version of zen-lead's slices, Pods and Leases in `namespace`.

    Use as a context manager (or `start` / `stop`); `start` returns once each resource has
    been listed. `history` returns what was recorded so far.
    """

    def __init__(self, kubeconfig: pathlib.Path | str, namespace: str) -> None:
        """Prepare to watch `namespace` with the identity of `kubeconfig` (admin, usually)."""
        self.namespace = namespace
        self._api = kube_client.connect(str(kubeconfig), pool_size=4)
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._threads: list[threading.Thread] = []
        self._streams = [
            _Stream(
                client.DiscoveryV1Api(self._api).list_namespaced_endpoint_slice,
                resource="endpointslices",
                namespace=namespace,
                convert=_to_slice,
                sink=self._add,
                label_selector=MANAGED_BY_SELECTOR,
            ),
            _Stream(
                client.CoreV1Api(self._api).list_namespaced_pod,
                resource="pods",
                namespace=namespace,
                convert=_to_pod,
                sink=self._add,
            ),
            _Stream(
                client.CoordinationV1Api(self._api).list_namespaced_lease,
                resource="leases",
                namespace=namespace,
                convert=_to_lease,
                sink=self._add,
            ),
        ]

    def __enter__(self) -> Self:
        """Start and return self."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        """Stop the threads."""
        self.stop()

    def start(self, *, timeout: float = 30.0) -> None:
        """Start one thread per resource; return once each has listed (or raise TimeoutError)."""
        for stream in self._streams:
            thread = threading.Thread(
                target=stream.run, name=f"watch-{stream.resource}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        deadline = time.monotonic() + timeout
        for stream in self._streams:
            if not stream.synced.wait(max(0.0, deadline - time.monotonic())):
                self.stop()
                raise TimeoutError(f"watcher could not list {stream.resource} in {timeout}s")

    def stop(self) -> None:
        """Stop watching and wait for the threads. Idempotent."""
        for stream in self._streams:
            stream.stop()
        for thread in self._threads:
            thread.join(timeout=15)
        self._threads.clear()
        self._api.close()

    def history(self) -> tuple[Record, ...]:
        """Return every record so far, in the order they were observed."""
        with self._lock:
            return tuple(self._records)

    def wait_for(
        self, check: Callable[[Sequence[Record]], bool], *, timeout: float, what: str
    ) -> tuple[Record, ...]:
        """Return the history once `check(history)` is true; raise TimeoutError naming `what`."""
        deadline = time.monotonic() + timeout
        while not check(history := self.history()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.02)  # Polling the recording threads' output.
        return history

    def _add(self, records: Sequence[Record]) -> None:
        with self._lock:
            self._records.extend(records)


# Checks over recorded history ----------------------------------------------------------------


def multi_endpoint_versions(history: Iterable[Record]) -> list[SliceVersion]:
    """Return every slice version with more than one endpoint address."""
    return [r for r in history if isinstance(r, SliceVersion) and len(r.endpoints) > 1]


def lease_holders(history: Iterable[Record], *, name: str | None = None) -> list[LeaseVersion]:
    """Return the Lease versions at which the holder changed (the first version included).

    With `name`, only that Lease; a deleted Lease counts as holder None.
    """
    changes: list[LeaseVersion] = []
    last: dict[str, str | None] = {}
    for record in _in_time_order(history):
        if not isinstance(record, LeaseVersion) or name not in (None, record.name):
            continue
        holder = None if record.deleted else record.holder
        if record.name not in last or last[record.name] != holder:
            changes.append(record)
        last[record.name] = holder
    return changes


class PodPredicate(Protocol):
    """Says whether a pod version is selected by a Service (or qualifies for traffic)."""

    def __call__(self, pod: PodVersion, /) -> bool:
        """Return True if `pod` is in."""


def selected_by_labels(match: Mapping[str, str]) -> PodPredicate:
    """Return a predicate true for pods whose labels include all of `match` (a selector)."""
    wanted = set(match.items())

    def selects(pod: PodVersion, /) -> bool:
        return wanted <= set(pod.labels)

    return selects


def selected_by_names(names: Iterable[str]) -> PodPredicate:
    """Return a predicate true for pods named in `names`."""
    chosen = frozenset(names)

    def selects(pod: PodVersion, /) -> bool:
        return pod.name in chosen

    return selects


def pod_qualifies(pod: PodVersion, /) -> bool:
    """Return True if `pod` may receive traffic: Running, Ready, not deleting, has an IP."""
    return (
        not pod.deleted
        and not pod.deleting
        and pod.phase == "Running"
        and pod.ready
        and pod.ip is not None
    )


def unrouted_intervals(
    history: Iterable[Record],
    service: str,
    *,
    selects: PodPredicate,
    qualifies: PodPredicate = pod_qualifies,
    until: float | None = None,
) -> list[tuple[float, float]]:
    """Return the (start, end) monotonic intervals in which `service` was not routed.

    Not routed: some pod that `selects` picks out `qualifies`, yet no slice labelled as the
    Service's (`SOURCE_LABEL`) has a ready endpoint at the IP of a selected pod that qualifies
    at that moment (matched by pod name, and by UID when the endpoint names one). Records are
    replayed in time order; records with the same time are applied together. An interval still
    open at the end closes at `until` (default: the last record's time). Intervals overlapping a
    `Gap` rest on what the relist showed afterwards.
    """
    pods: dict[str, PodVersion] = {}
    slices: dict[str, SliceVersion] = {}
    intervals: list[tuple[float, float]] = []
    start: float | None = None
    at = 0.0
    for at, group in itertools.groupby(_in_time_order(history), key=lambda r: r.at):
        for record in group:
            if isinstance(record, PodVersion):
                pods[record.name] = record
            elif isinstance(record, SliceVersion) and record.source == service:
                slices[record.name] = record
        bad = _unrouted(pods, slices, selects=selects, qualifies=qualifies)
        if bad and start is None:
            start = at
        elif not bad and start is not None:
            intervals.append((start, at))
            start = None
    if start is not None:
        intervals.append((start, at if until is None else until))
    return intervals


def _unrouted(
    pods: Mapping[str, PodVersion],
    slices: Mapping[str, SliceVersion],
    *,
    selects: PodPredicate,
    qualifies: PodPredicate,
) -> bool:
    def good(pod: PodVersion | None) -> bool:
        return pod is not None and selects(pod) and qualifies(pod)

    if not any(good(pod) for pod in pods.values()):
        return False
    for version in slices.values():
        for endpoint in () if version.deleted else version.endpoints:
            pod = pods.get(endpoint.pod_name or "")
            if (
                good(pod)
                and pod is not None
                and endpoint.ready is not False
                and endpoint.ip == pod.ip
                and endpoint.pod_uid in (None, pod.uid)
            ):
                return False
    return True


def _in_time_order(history: Iterable[Record]) -> list[Record]:
    return sorted(history, key=lambda r: r.at)  # Stable: same-time records keep their order.


# Checks over the audit log -------------------------------------------------------------------


_AGENT = re.compile(r"^[^/\s]+/\S+ \((?P<identity>[^()]*)\)")

CHECKED_RESOURCES = frozenset({"endpointslices", "services"})
_WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})
"""Resources whose writes must come from the Lease holder."""


def agent_identity(user_agent: str) -> str | None:
    """Return the replica identity in a ``zen-lead/<version> (<identity>)`` User-Agent."""
    match = _AGENT.match(user_agent)
    return match.group("identity") if match else None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Violation:
    """A controller write that a single-writer controller must not have made.

    Attributes:
        event: the audited write.
        writer: identity in its User-Agent (None if there is none).
        holder: Lease holder at the write's revision (None: no holder).
        reason: ``not the holder``, ``no holder`` or ``no resourceVersion`` (cannot be ordered).

    """

    event: controlplane.AuditEvent
    writer: str | None
    holder: str | None
    reason: str


def single_writer_violations(
    events: Iterable[controlplane.AuditEvent],
    *,
    lease_name: str,
    lease_namespace: str | None = None,
    controller_agents: Collection[str] = ("zen-lead/",),
) -> list[Violation]:
    """Return every successful controller write to a Service or slice not made by the holder.

    Successful writes are ordered by the resourceVersion of their response (an etcd revision:
    a total order over every resource). The holder is tracked from successful writes of Lease
    `lease_name` (in `lease_namespace`, any if None). A write counts as the controller's when
    its User-Agent starts with one of `controller_agents`; others (the test's) are ignored.
    Lease writes themselves are not checked.
    """
    holder: str | None = None
    violations: list[Violation] = []
    for event in _ordered_writes(events, controller_agents=controller_agents):
        if event.resource == "leases":
            if event.name == lease_name and lease_namespace in (None, event.namespace):
                holder = None if event.verb == "delete" else event.holder
            continue
        writer = agent_identity(event.user_agent)
        if event.resource_version is None:
            reason = "no resourceVersion"
        elif holder is None:
            reason = "no holder"
        elif writer != holder:
            reason = "not the holder"
        else:
            continue
        violations.append(Violation(event=event, writer=writer, holder=holder, reason=reason))
    return violations


def _ordered_writes(
    events: Iterable[controlplane.AuditEvent], *, controller_agents: Collection[str]
) -> list[controlplane.AuditEvent]:
    """Successful Lease writes and controller writes to checked resources, by revision."""
    kept = [
        e
        for e in events
        if e.succeeded
        and e.verb in _WRITE_VERBS
        and (
            e.resource == "leases"
            or (
                e.resource in CHECKED_RESOURCES
                and any(e.user_agent.startswith(agent) for agent in controller_agents)
            )
        )
    ]
    # Writes without a revision cannot be placed; they sort first and are reported.
    return sorted(kept, key=lambda e: e.resource_version or 0)
