"""Load and correlated failure: pod churn at 20/s, API throttling, every pod hung at once."""

from __future__ import annotations

import concurrent.futures
import random
import statistics
import threading
import time
from typing import TYPE_CHECKING, Any

from kubernetes import client
from kubernetes.client import exceptions as kube_exceptions

from probes import testing as fakes
from tests import helpers
from tests.chaos.conftest import NS, SETTLE, USER
from tests.chaos.test_outages import hold
from zenlead.testing import history, pods

if TYPE_CHECKING:
    from tests.chaos.conftest import Cluster


class Churn:
    """Pod churn at a fixed rate: deletions (leaders among them) with replacements, Ready flips."""

    def __init__(self, cluster: Cluster, services: list[str], *, seed: int = 7) -> None:
        """Churn the pods of `services` (each keeps at least one pod)."""
        self.cluster = cluster
        self.services = services
        self.random = random.Random(seed)  # noqa: S311 - a reproducible schedule, not security.
        self.lock = threading.Lock()
        self.members = {s: [f"{s}-{i}" for i in range(3)] for s in services}
        self.serial = 0
        self.ops: dict[str, int] = {"delete": 0, "leader": 0, "unready": 0, "ready": 0}
        self.errors = 0

    def run(self, *, rate: float, seconds: float) -> None:
        """Issue `rate` operations a second for `seconds`, from a small pool of threads."""
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
            n = 0
            while (due := start + n / rate) < start + seconds:
                time.sleep(max(0.0, due - time.monotonic()))  # Pacing the schedule.
                pool.submit(self._one)
                n += 1

    def _one(self) -> None:
        try:
            self._op()
        except kube_exceptions.ApiException:
            with self.lock:
                self.errors += 1  # A pod already gone or changed: the churn raced itself.

    def _op(self) -> None:
        with self.lock:
            service = self.random.choice(self.services)
            kind = self.random.choice(["delete", "leader", "unready", "ready"])
            members = self.members[service]
            victim = self.random.choice(members)
            if kind in {"delete", "leader"}:
                self.serial += 1
                fresh = f"{service}-c{self.serial}"
                members.append(fresh)
        cluster = self.cluster
        if kind == "leader":
            victim = cluster.leader(service) or victim
        if kind in {"delete", "leader"}:
            cluster.add_pod(service, fresh)
            cluster.core.delete_namespaced_pod(victim, NS, grace_period_seconds=0)
            with self.lock:
                if victim in members:
                    members.remove(victim)
        else:
            ip = cluster.core.read_namespaced_pod(victim, NS).status.pod_ip
            pods.mark_running(cluster.api, NS, victim, ip=ip, ready=kind == "ready")
        with self.lock:
            self.ops[kind] += 1


def unrouted_seconds(cluster: Cluster, services: list[str]) -> list[float]:
    """Return the length of every unrouted interval after start-up, over all Services."""
    records = cluster.watcher.history()
    found = []
    for service in services:
        for start, end in history.unrouted_intervals(
            records, service, selects=history.selected_by_labels({"app": service})
        ):
            if end > cluster.steady_from:
                found.append(end - max(start, cluster.steady_from))
    return found


def test_pod_churn_20_per_second_for_60s(cluster: Cluster) -> None:
    """1,200 pod changes in a minute: every slice stays valid and follows within seconds."""
    services = [f"s{i}" for i in range(10)]
    for name in services:
        cluster.add_service(name)
    for made in (cluster.replica(), cluster.replica()):
        made.wait_ready()
    cluster.wait_routed(services)
    cluster.mark_steady()
    churn = Churn(cluster, services)
    churn.run(rate=20, seconds=60)
    took = cluster.wait_routed(services, timeout=SETTLE)
    gaps = sorted(unrouted_seconds(cluster, services))
    report = cluster.check(
        services,
        name="pod churn 20/s for 60 s",
        operations=sum(churn.ops.values()),
        churn_errors=churn.errors,
        unrouted_intervals=len(gaps),
        unrouted_p50_seconds=round(statistics.median(gaps), 3) if gaps else 0,
        unrouted_max_seconds=round(gaps[-1], 3) if gaps else 0,
        routed_after_seconds=round(took, 2),
    )
    assert report["operations"] >= 1100


FLOW = {
    "metadata": {"name": "zen-lead-chaos"},
    "spec": {
        "priorityLevelConfiguration": {"name": "zen-lead-chaos"},
        "matchingPrecedence": 100,
        "distinguisherMethod": {"type": "ByUser"},
        "rules": [
            {
                "subjects": [{"kind": "User", "user": {"name": USER}}],
                "resourceRules": [
                    {
                        "verbs": ["create", "update", "patch", "delete", "get"],
                        "apiGroups": ["", "discovery.k8s.io"],
                        "resources": ["services", "endpointslices", "events"],
                        "namespaces": ["*"],
                    }
                ],
            }
        ],
    },
}
LEVEL = {
    "metadata": {"name": "zen-lead-chaos"},
    "spec": {
        "type": "Limited",
        "limited": {
            "nominalConcurrencyShares": 1,
            "lendablePercent": 0,
            "borrowingLimitPercent": 0,
            "limitResponse": {"type": "Reject"},
        },
    },
}
"""API Priority and Fairness: the controller's writes get one seat and are rejected (429)."""


def test_api_throttling_under_churn(make_cluster: Any) -> None:
    """Real 429s from API Priority and Fairness: retried after Retry-After, never errors."""
    cluster = make_cluster(
        extra_apiserver_args=("--max-requests-inflight=20", "--max-mutating-requests-inflight=10")
    )
    services = [f"s{i}" for i in range(10)]
    for name in services:
        cluster.add_service(name)
    flow = client.FlowcontrolApiserverV1Api(cluster.api)
    flow.create_priority_level_configuration(LEVEL)
    flow.create_flow_schema(FLOW)
    ctl = cluster.replica("--max-concurrent-reconciles=50")
    ctl.wait_ready()
    cluster.wait_routed(services, timeout=60)
    cluster.mark_steady()
    churn = Churn(cluster, services, seed=11)
    start = time.monotonic()
    churn.run(rate=10, seconds=30)
    cluster.fault(start, time.monotonic())
    took = cluster.wait_routed(services, timeout=SETTLE + 20)
    text = ctl.scrape()
    throttled = _sum(text, "zen_lead_api_throttled_total")
    assert throttled > 0, "no 429 was ever seen: the scenario did not throttle"
    assert _sum(text, "zen_lead_reconciliations_total", result="throttled") > 0
    assert "ThrottledError" not in text, "a 429 was counted as a reconcile error"
    cluster.check(
        services,
        name="APF throttling under churn",
        throttled_calls=throttled,
        throttled_reconciles=_sum(text, "zen_lead_reconciliations_total", result="throttled"),
        reconcile_errors=_sum(text, "zen_lead_reconciliation_errors_total"),
        routed_after_seconds=round(took, 2),
    )


FAST_HTTP = {
    "zen-lead.io/probe": "http",
    "zen-lead.io/probe-path": "/healthz",
    "zen-lead.io/probe-interval": "300ms",
    "zen-lead.io/probe-timeout": "150ms",
    "zen-lead.io/probe-fast-interval": "50ms",
    "zen-lead.io/probe-candidate-interval": "300ms",
}


def test_every_pod_hung_at_once(make_cluster: Any) -> None:
    """Every pod hangs (a partition): panic holds the leader until the failing share drops.

    Panic lasts the whole 20 s and through a partial heal (2 of 3 still failing); a heal below
    the threshold clears it, and only then does the hung leader lose its traffic. Routing never
    empties meanwhile.
    """
    with fakes.PodNetwork() as network:
        cluster = make_cluster()
        cluster.network = network
        made = cluster.add_service("web", annotations=FAST_HTTP)
        ctl = cluster.replica()
        ctl.wait_ready()
        cluster.wait_routed(["web"])
        leader = cluster.leader("web")
        cluster.mark_steady()
        fake = {name: network.pods[_ip(cluster, name)] for name in made}
        start = time.monotonic()
        for pod in fake.values():
            pod.http_mode = "hang"
        helpers.poll(lambda: _events(cluster, "ProbePanic"), timeout=10, what="ProbePanic")
        hold(20)
        assert not _events(cluster, "ProbePanicCleared"), "panic cleared while every pod hangs"
        assert cluster.leader("web") == leader
        healed = [n for n in made if n != leader][:1]
        fake[healed[0]].http_mode = "ok"
        hold(3)
        assert not _events(cluster, "ProbePanicCleared"), "2 of 3 still fail: panic must last"
        fake[[n for n in made if n != leader][1]].http_mode = "ok"
        helpers.poll(lambda: _events(cluster, "ProbePanicCleared"), timeout=10, what="cleared")
        cluster.fault(start, time.monotonic())
        helpers.poll(lambda: cluster.leader("web") != leader, timeout=10, what="failover")
        versions = [
            r
            for r in cluster.watcher.history()
            if isinstance(r, history.SliceVersion) and r.at >= start
        ]
        assert all(v.endpoints for v in versions), "routing emptied during the partition"
        cluster.check(
            ["web"],
            name="every pod hung (partition) 20 s",
            slice_changes_during_panic=sum(1 for v in versions if v.at < start + 20),
            panic_seconds=round(time.monotonic() - start, 1),
        )


def _ip(cluster: Cluster, name: str) -> str:
    return cluster.core.read_namespaced_pod(name, NS).status.pod_ip


def _events(cluster: Cluster, reason: str) -> list[Any]:
    return [
        e
        for e in cluster.core.list_namespaced_event(NS, field_selector=f"reason={reason}").items
        if e.involved_object.name == "web"
    ]


def _sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith((name + "{", name + " ")):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
