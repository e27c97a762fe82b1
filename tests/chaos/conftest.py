"""Chaos scenarios on a real control plane: the cluster fixture and the checks they end with.

Each scenario gets its own etcd + kube-apiserver (with an audit log), a namespace, a `Watcher`
recording every version of every leader slice, pod and Lease that a client could have seen,
and controller replicas run as real processes (`Replica`) under a non-admin identity with the
chart's RBAC, so RBAC and API Priority and Fairness apply to them as in a cluster. After the
fault, `Cluster.check` asserts on the whole recorded history, not only on the end state:

- no version of any leader slice ever had more than one endpoint;
- every successful controller write to a Service or EndpointSlice was made by the replica that
  held the Lease at that revision (from the API server's audit log), and no replica wrote
  more than its renew deadline after its last successful Lease write;
- no Service was left unrouted, while a pod it selects qualified, for longer than the faults
  that overlap that interval plus 10 s.

The numbers each scenario measured are printed and, when ``ZEN_LEAD_CHAOS_REPORT`` names a
file, appended to it as JSON lines (for the closing note and docs/benchmarks.md).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import pathlib
import time
from typing import TYPE_CHECKING, Any

import pytest
import urllib3
from kubernetes import client
from kubernetes.client import exceptions as kube_exceptions

from tests import helpers
from zenlead.kube import client as kube_client
from zenlead.testing import controlplane, history, netns, pods, replica

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

NS = "chaos"
LEASE = "zen-lead-controller-leader-election"
USER = "zen-lead-chaos"
RENEW_DEADLINE = float(
    next(a for a in replica.FAST_ELECTION if a.startswith("--renew-deadline")).split("=")[1]
)
SETTLE = 10.0
"""Seconds after a fault within which every Service must be routed again."""
QUIET = 5.0
"""Longest a Service may stay unrouted outside any fault (a failover takes milliseconds)."""

RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": [""],
        "resources": ["services"],
        "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
    },
    {
        "apiGroups": ["discovery.k8s.io"],
        "resources": ["endpointslices"],
        "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
]
"""The chart's namespace Role (charts/zen-lead/templates/_helpers.tpl, watchRules)."""
LEASE_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "create", "update"],
    }
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test here as chaos (deselect with -m 'not chaos'), with a longer timeout."""
    for item in items:
        if "/chaos/" in str(item.path):
            item.add_marker(pytest.mark.chaos)
            item.add_marker(pytest.mark.timeout(600))


@dataclasses.dataclass
class Cluster:
    """One scenario's control plane, namespace, recorder and replicas."""

    plane: controlplane.ControlPlane
    api: Any
    watcher: history.Watcher
    workdir: pathlib.Path
    replicas: list[replica.Replica] = dataclasses.field(default_factory=list)
    faults: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    network: Any = None  # A probes.testing.PodNetwork: pods get live health servers.
    hard_kills: list[float] = dataclasses.field(default_factory=list)
    """Wall times the API server or etcd was SIGKILLed (writes in flight may go unlogged)."""
    steady_from: float = 0.0
    apps: dict[str, str] = dataclasses.field(default_factory=dict)
    """Service name -> the app label its selector matches (default: the Service's name)."""
    _next_ip: int = 0

    @property
    def core(self) -> client.CoreV1Api:
        """The admin CoreV1 API."""
        return client.CoreV1Api(self.api)

    def kubeconfig(self, *, server_url: str | None = None) -> pathlib.Path:
        """Return a kubeconfig for the controller's identity (optionally via a proxy)."""
        return self.plane.issue_user(USER, server_url=server_url)

    def replica(
        self, *args: str, server_url: str | None = None, election: bool = True
    ) -> replica.Replica:
        """Start a controller replica (not waiting for readiness) and keep it for cleanup."""
        flags = [
            f"--leader-election-namespace={NS}",
            *replica.FAST_ELECTION,
            "--log-format=json",
            *(() if election else ("--leader-elect=false",)),
            *args,
        ]
        made = replica.Replica(
            self.kubeconfig(server_url=server_url),
            namespaces=[NS],
            log_path=self.workdir / f"replica-{len(self.replicas)}.log",
            args=flags,
        )
        made.start()
        self.replicas.append(made)
        return made

    def pod_ip(self) -> str:
        """Return a fresh pod IP in 10.244.0.0/16."""
        self._next_ip += 1
        return f"10.244.{self._next_ip // 250}.{self._next_ip % 250 + 1}"

    def add_pod(self, service: str, name: str, *, ready: bool = True) -> str:
        """Create pod `name` selected by `service`, Running (and Ready) on a fresh IP."""
        self.core.create_namespaced_pod(
            NS, pods.pod_manifest(name, labels={"app": service}, ports={"http": 8080})
        )
        ip = self.pod_ip()
        if self.network is not None:
            self.network.add(ip)
        pods.mark_running(self.api, NS, name, ip=ip, ready=ready)
        return ip

    def add_service(
        self, name: str, *, pods_per: int = 3, annotations: dict[str, str] | None = None
    ) -> list[str]:
        """Create a headless opted-in Service `name` with `pods_per` running pods."""
        body = {
            "metadata": {
                "name": name,
                "annotations": {"zen-lead.io/enabled": "true"} | (annotations or {}),
            },
            "spec": {
                "clusterIP": "None",
                "selector": {"app": name},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        }
        made = [f"{name}-{i}" for i in range(pods_per)]
        for pod in made:
            self.add_pod(name, pod)
        self.core.create_namespaced_service(NS, body)
        return made

    def leader(self, service: str) -> str | None:
        """Return the pod the leader slice of `service` points at (None: empty or missing)."""
        try:
            found = client.DiscoveryV1Api(self.api).read_namespaced_endpoint_slice(
                f"{service}-leader", NS
            )
        except kube_exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        endpoints = found.endpoints or []
        return endpoints[0].target_ref.name if endpoints else None

    def wait_routed(self, services: Sequence[str], *, timeout: float = 30.0) -> float:
        """Wait until every Service's slice points at a qualifying pod; return seconds taken."""
        start = time.monotonic()

        def routed() -> bool:
            try:
                return check()
            except (urllib3.exceptions.ProtocolError, ConnectionError):
                return False  # A pooled connection the restarted API server closed: retry.

        def check() -> bool:
            qualifying: dict[str, set[str]] = {}
            for p in self.core.list_namespaced_pod(NS).items:
                ready = any(
                    c.type == "Ready" and c.status == "True" for c in p.status.conditions or ()
                )
                if p.status.phase == "Running" and not p.metadata.deletion_timestamp and ready:
                    app = (p.metadata.labels or {}).get("app", "")
                    qualifying.setdefault(app, set()).add(p.metadata.name)
            # Routed: the leader qualifies, or (validly empty) no pod of the Service does.
            return all(
                self.leader(s) in qualifying[app]
                if qualifying.get(app := self.apps.get(s, s))
                else self.leader(s) is None
                for s in services
            )

        what = f"{len(services)} Services routed"
        helpers.poll(routed, timeout=timeout, what=what, interval=0.2)
        return time.monotonic() - start

    def wait_serving(self, *, timeout: float = 60.0) -> None:
        """Wait until the API server accepts writes again (after a restart of it or of etcd)."""

        def writes() -> bool:
            try:
                self.core.patch_namespace(
                    NS, {"metadata": {"annotations": {"chaos": str(time.time())}}}
                )
            except (kube_exceptions.ApiException, urllib3.exceptions.HTTPError, OSError):
                return False
            return True

        helpers.poll(writes, timeout=timeout, what="the API server to accept writes", interval=0.1)

    def open_watches(self, resource: str) -> int:
        """Return how many namespace-scoped watches of `resource` the API server holds open."""
        metrics = self.api.rest_client.pool_manager.request("GET", f"{self.plane.url}/metrics")
        total = 0.0
        for line in metrics.data.decode().splitlines():
            if line.startswith("apiserver_longrunning_requests{") and all(
                f in line for f in (f'resource="{resource}"', 'scope="namespace"', 'verb="WATCH"')
            ):
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def mark_steady(self) -> None:
        """Note that start-up is over: gaps before now (the first election) are not checked."""
        self.steady_from = time.monotonic()

    def fault(self, start: float, end: float) -> None:
        """Record that a fault lasted from `start` to `end` (monotonic seconds)."""
        self.faults.append((start, end))

    def check(self, services: Sequence[str], *, name: str, **numbers: Any) -> dict[str, Any]:
        """Assert the invariants over everything recorded (see the module docstring)."""
        records = self.watcher.history()
        audit, unaudited = self._audit_covering(records)
        multi = history.multi_endpoint_versions(records)
        assert multi == [], f"slice versions with more than one endpoint: {multi[:3]}"
        ours = [e for e in audit if e.user == USER and e.succeeded]
        anonymous = [
            e
            for e in ours
            if e.resource in history.CHECKED_RESOURCES
            and (history.agent_identity(e.user_agent) is None or "zen-lead/" not in e.user_agent)
        ]
        assert anonymous == [], f"controller writes that name no replica: {anonymous[:3]}"
        # A deleted Lease leaves its last holder the only replica allowed to write until
        # someone creates it anew (see zenlead.election): deletions do not end a holder.
        kept = [e for e in audit if not (e.resource == "leases" and e.verb == "delete")]
        violations = history.single_writer_violations(kept, lease_name=LEASE, lease_namespace=NS)
        assert violations == [], f"writes by a replica not holding the Lease: {violations[:3]}"
        late = writes_after_validity(audit, renew_deadline=RENEW_DEADLINE)
        assert late == [], f"writes later than the renew deadline after a renewal: {late[:3]}"
        worst = self._check_routing(records, services)
        holders = history.lease_holders(records, name=LEASE)
        report = {
            "scenario": name,
            "slice_versions": len(
                {
                    (r.name, r.resource_version)
                    for r in records
                    if isinstance(r, history.SliceVersion)
                }
            ),
            "controller_writes": sum(1 for e in ours if e.resource in history.CHECKED_RESOURCES),
            "unaudited_slice_versions": unaudited,
            "lease_holder_changes": sum(
                1 for a, b in itertools.pairwise(holders) if a.holder != b.holder
            ),
            "worst_unrouted_seconds": round(worst, 2),
            **numbers,
        }
        _report(report)
        return report

    def _check_routing(self, records: Sequence[history.Record], services: Sequence[str]) -> float:
        """Assert no Service stayed unrouted too long; return the longest gap after start-up.

        Allowed: the faults overlapping the gap plus `SETTLE`, or `QUIET` outside any fault.
        """
        now = time.monotonic()
        worst = 0.0
        for service in services:
            selects = history.selected_by_labels({"app": self.apps.get(service, service)})
            for first, end in history.unrouted_intervals(
                records, service, selects=selects, until=now
            ):
                start = max(first, self.steady_from)
                if end <= start:
                    continue  # Before the first election: start-up, not a failover.
                overlap = self._fault_overlap(start, end)
                allowed = overlap + SETTLE if overlap > 0 else QUIET
                worst = max(worst, end - start)
                assert end - start <= allowed, (
                    f"{service} unrouted for {end - start:.1f}s (allowed {allowed:.1f}s) "
                    f"from t={start:.1f}"
                )
        return worst

    def _audit_covering(self, records: Sequence[history.Record]) -> tuple[list[Any], int]:
        """Return the audit events once they log a write for every slice version seen.

        The audit log is written during each request but may show up just after the client has
        its answer. A write in flight when the API server was SIGKILLed (or etcd under it) may
        be committed without its audit line: such a version is allowed, and counted, only if
        its revision lies between the last write logged 2 s before a hard kill (requests may
        be slow on a loaded machine) and the first logged after it.
        """
        seen = {
            (r.name, r.resource_version)
            for r in records
            if isinstance(r, history.SliceVersion) and not r.deleted and r.resource_version
        }

        def at_a_kill(audit: list[Any], revision: int) -> bool:
            for kill in self.hard_kills:
                before = [
                    e.resource_version
                    for e in audit
                    if e.resource_version and e.stage_timestamp.timestamp() < kill - 2.0
                ]
                after = [
                    e.resource_version
                    for e in audit
                    if e.resource_version and e.request_received.timestamp() > kill
                ]
                if max(before, default=0) < revision < min(after, default=revision + 1):
                    return True
            return False

        def covering() -> tuple[list[Any], int] | None:
            audit = self.plane.audit_events()
            logged = {
                (e.name, e.resource_version)
                for e in audit
                if e.resource == "endpointslices" and e.succeeded
            }
            missing = [rv for name, rv in seen - logged if rv is not None]
            if all(at_a_kill(audit, rv) for rv in missing):
                return audit, len(missing)
            return None

        try:
            found: tuple[list[Any], int] = helpers.poll(
                covering, timeout=10, what="the audit log to log every slice version seen"
            )
        except AssertionError:
            audit = self.plane.audit_events()
            logged = {(e.name, e.resource_version) for e in audit if e.resource == "endpointslices"}
            gaps = sorted(seen - logged)
            near = [
                (e.verb, e.name, e.code, e.resource_version, e.request_received.isoformat())
                for e in audit
                if e.resource == "endpointslices" and (e.name, e.resource_version) not in seen
            ][-10:]
            raise AssertionError(
                f"slice versions with no successful audited write: {gaps}; kills at "
                f"{self.hard_kills}; last other slice writes: {near}"
            ) from None
        return found

    def _fault_overlap(self, start: float, end: float) -> float:
        return sum(max(0.0, min(end, b) - max(start, a)) for a, b in self.faults)


def writes_after_validity(
    events: Sequence[controlplane.AuditEvent], *, renew_deadline: float, slack: float = 0.25
) -> list[controlplane.AuditEvent]:
    """Return controller writes received over `renew_deadline` after their validity began.

    A replica's validity starts before the Lease read that precedes each successful acquire or
    renew, so the API server receiving that read bounds it from above; a write sent within the
    validity reaches the server at most one network latency (`slack`) after it ended.
    """
    read: dict[str, float] = {}
    valid_from: dict[str, float] = {}
    late = []
    for event in sorted(events, key=lambda e: e.request_received):
        who = history.agent_identity(event.user_agent)
        if who is None or not event.user_agent.startswith("zen-lead/"):
            continue
        at = event.request_received.timestamp()
        if event.resource == "leases" and event.verb == "get":
            read[who] = at  # Found or not, each round starts with this read.
        elif event.resource == "leases" and event.succeeded and event.holder == who:
            valid_from[who] = read.get(who, at)
        elif event.resource in history.CHECKED_RESOURCES and event.succeeded:
            since = valid_from.get(who)
            if since is None or at - since > renew_deadline + slack:
                late.append(event)
    return late


def _report(numbers: dict[str, Any]) -> None:
    print(f"\nchaos: {json.dumps(numbers)}")
    target = os.environ.get("ZEN_LEAD_CHAOS_REPORT")
    if target:
        with pathlib.Path(target).open("a") as out:
            out.write(json.dumps(numbers) + "\n")


@pytest.fixture
def make_cluster(tmp_path: pathlib.Path) -> Iterator[Callable[..., Cluster]]:
    """Return ``make(**options)``: a fresh audited control plane, namespace, RBAC and watcher."""
    if not netns.active():
        pytest.fail(
            "10.244.0.0/16 is not local here: run the tests through `make pytest` or "
            "`.venv/bin/python -m zenlead.testing.netns .venv/bin/pytest ...`"
        )
    made: list[Cluster] = []
    stack: list[Callable[[], None]] = []

    def make(**options: Any) -> Cluster:
        plane = controlplane.ControlPlane(controlplane.Options(audit=True, **options))
        plane.start()
        stack.append(plane.stop)
        api = kube_client.connect(str(plane.kubeconfig))
        stack.append(api.close)
        _prepare_namespace(api)
        watcher = history.Watcher(plane.kubeconfig, NS)
        watcher.start()
        stack.append(watcher.stop)
        cluster = Cluster(plane=plane, api=api, watcher=watcher, workdir=tmp_path)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        for rep in cluster.replicas:
            rep.kill()
    for cleanup in reversed(stack):
        cleanup()


@pytest.fixture
def cluster(make_cluster: Callable[..., Cluster]) -> Cluster:
    """Return a cluster with the default control-plane options."""
    return make_cluster()


def _prepare_namespace(api: Any) -> None:
    """Create the namespace and give the controller's user the chart's RBAC in it."""
    client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
    rbac = client.RbacAuthorizationV1Api(api)
    for name, rules in (("zen-lead", RULES), ("zen-lead-leader-election", LEASE_RULES)):
        rbac.create_namespaced_role(NS, {"metadata": {"name": name}, "rules": rules})
        rbac.create_namespaced_role_binding(
            NS,
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}
                ],
            },
        )
