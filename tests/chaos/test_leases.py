"""The Lease under attack: deleted every second, made unwritable, and renewed under load."""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
import time
from typing import TYPE_CHECKING

from kubernetes import client
from kubernetes.client import exceptions as kube_exceptions

from tests import helpers
from tests.chaos.conftest import LEASE, LEASE_RULES, NS, RENEW_DEADLINE, SETTLE, USER
from tests.chaos.test_outages import hold, start_two
from zenlead.testing import history, proxy

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.chaos.conftest import Cluster


def churn_leaders(
    cluster: Cluster, services: list[str], stop: threading.Event, every: float
) -> int:
    """Delete the leader of one Service after another (replacing the pod) until `stop`."""
    done = 0
    while not stop.wait(every):
        name = services[done % len(services)]
        leader = cluster.leader(name)
        if leader is not None:
            cluster.core.delete_namespaced_pod(leader, NS, grace_period_seconds=0)
            cluster.add_pod(name, f"{name}-r{done}")
            done += 1
    return done


def test_lease_deleted_every_second(cluster: Cluster) -> None:
    """With the Lease deleted every second for 15 s, one replica keeps leading and routing."""
    services = [f"s{i}" for i in range(4)]
    for name in services:
        cluster.add_service(name)
    start_two(cluster, services)
    coordination = client.CoordinationV1Api(cluster.api)
    stop = threading.Event()
    counts: list[int] = []
    churn = threading.Thread(
        target=lambda: counts.append(churn_leaders(cluster, services, stop, 2.0))
    )
    churn.start()
    deletions = 0
    start = time.monotonic()
    while time.monotonic() - start < 15:
        try:
            coordination.delete_namespaced_lease(LEASE, NS)
            deletions += 1
        except kube_exceptions.ApiException as exc:
            if exc.status != 404:  # Already gone (not yet re-created) is fine; nothing else.
                raise
        hold(1.0)
    stop.set()
    churn.join()
    took = cluster.wait_routed(services, timeout=SETTLE)
    recreated = [
        e
        for e in cluster.plane.audit_events()
        if e.resource == "leases" and e.verb == "create" and e.user == USER and e.succeeded
    ]
    assert len(recreated) >= 5, "the leader did not re-create its deleted Lease"
    holders = {v.holder for v in history.lease_holders(cluster.watcher.history(), name=LEASE)}
    holders.discard(None)
    holders.discard("")
    assert len(holders) == 1, f"leadership moved while the Lease kept being deleted: {holders}"
    cluster.check(
        services,
        name="Lease deleted every second",
        lease_deletions=deletions,
        lease_recreated=len(recreated),
        leader_deletions=counts[0],
        routed_after_seconds=round(took, 2),
    )


def test_lease_made_unwritable(cluster: Cluster) -> None:
    """Without RBAC on its Lease the leader stops writing at its deadline; routing then waits."""
    services = [f"s{i}" for i in range(3)]
    for name in services:
        cluster.add_service(name)
    start_two(cluster, services)
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    role = "zen-lead-leader-election"
    start = time.monotonic()
    read_only = [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get"]}]
    rbac.patch_namespaced_role(role, NS, {"rules": read_only})
    helpers.poll(
        lambda: (
            not any(_metric(r.scrape(), "zen_lead_controller_is_leader") for r in cluster.replicas)
        ),
        timeout=15,
        what="every replica to stop leading",
    )
    cluster.core.delete_namespaced_pod(cluster.leader("s0"), NS, grace_period_seconds=0)
    hold(4)  # The fault: nobody may write, however long it lasts.
    assert cluster.leader("s0") == "s0-0", "a write happened without a Lease"
    rbac.patch_namespaced_role(role, NS, {"rules": LEASE_RULES})
    cluster.fault(start, time.monotonic())
    took = cluster.wait_routed(services, timeout=SETTLE + 5)
    lost = sum(_metric(r.scrape(), "zen_lead_lease_lost_total") for r in cluster.replicas)
    assert lost >= 1
    cluster.check(
        services, name="Lease unwritable (RBAC) 8 s", routed_after_restore_seconds=round(took, 2)
    )


def test_lease_renews_at_max_concurrency_on_a_slow_api(cluster: Cluster) -> None:
    """1,000 reconcile workers busy on a slow API server do not starve the Lease renewals.

    300 Services' leaders are deleted at once while every chunk to and from the API server is
    held 0.1 s: hundreds of reconciles wait for the traffic and ordinary lanes together.
    """
    services = [f"s{i}" for i in range(300)]
    for name in services:
        cluster.add_service(name, pods_per=2)
    with proxy.Proxy("127.0.0.1", cluster.plane.port) as link:
        ctl = cluster.replica("--max-concurrent-reconciles=1000", server_url=link.url)
        ctl.wait_ready(timeout=60)
        cluster.wait_routed(services, timeout=120)
        cluster.mark_steady()
        leaders = [cluster.leader(s) for s in services]
        link.delay(0.1)
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(_delete(cluster), leaders))
        hold(15)  # The load: reconciles queue behind the slow API meanwhile.
        link.delay(0)
        cluster.fault(start, time.monotonic())
        renewals = [
            r
            for r in cluster.watcher.history()
            if isinstance(r, history.LeaseVersion) and r.name == LEASE and r.at >= start
        ]
        assert _metric(ctl.scrape(), "zen_lead_lease_lost_total") == 0, "leadership was lost"
        took = cluster.wait_routed(services, timeout=SETTLE + 60)
    gaps = [b.at - a.at for a, b in itertools.pairwise(renewals)]
    assert renewals
    assert max(gaps, default=0) < RENEW_DEADLINE, f"renewals stalled: {max(gaps):.2f}s"
    cluster.check(
        services,
        name="1,000 workers, 300 failovers, API +0.1 s per chunk",
        renewals=len(renewals),
        worst_renewal_gap_seconds=round(max(gaps), 2),
        routed_after_seconds=round(took, 2),
    )


def _delete(cluster: Cluster) -> Callable[[str], None]:
    def delete(pod: str) -> None:
        cluster.core.delete_namespaced_pod(pod, NS, grace_period_seconds=0)

    return delete


def _metric(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " "))
    )
