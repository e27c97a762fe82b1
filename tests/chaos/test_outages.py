"""The control plane fails under the controller: API server and etcd killed, a watch expired."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from tests import helpers
from tests.chaos.conftest import NS, SETTLE
from zenlead.testing import proxy, replica

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.chaos.conftest import Cluster


def hold(seconds: float) -> None:
    """Keep a fault in place for `seconds` (the fault's length, not a synchronisation)."""
    time.sleep(seconds)


def start_two(cluster: Cluster, services: list[str]) -> None:
    """Start two replicas and wait until every Service is routed."""
    for made in (cluster.replica(), cluster.replica()):
        made.wait_ready()
    cluster.wait_routed(services)
    cluster.mark_steady()


def test_apiserver_killed_for_20s_while_leaders_are_deleted(cluster: Cluster) -> None:
    """Leaders deleted just before and right after a 20 s API server outage are replaced."""
    services = [f"s{i}" for i in range(6)]
    for name in services:
        cluster.add_service(name)
    start_two(cluster, services)
    leaders = [cluster.leader(s) for s in services]
    for pod in leaders[:3]:
        cluster.core.delete_namespaced_pod(pod, NS, grace_period_seconds=0)
    start = time.monotonic()
    cluster.hard_kills.append(time.time())
    cluster.plane.kill_apiserver()
    hold(20)
    cluster.plane.start_apiserver()
    cluster.wait_serving()
    cluster.fault(start, time.monotonic())
    for pod in leaders[3:]:
        cluster.core.delete_namespaced_pod(pod, NS, grace_period_seconds=0)
    took = cluster.wait_routed(services, timeout=SETTLE + 20)
    cluster.check(
        services, name="apiserver killed 20 s", routed_after_restart_seconds=round(took, 2)
    )


def test_etcd_killed_and_restarted(cluster: Cluster) -> None:
    """With etcd gone for 10 s nothing routes wrongly; a leader deleted before is replaced."""
    services = [f"s{i}" for i in range(4)]
    for name in services:
        cluster.add_service(name)
    start_two(cluster, services)
    cluster.core.delete_namespaced_pod(cluster.leader("s0"), NS, grace_period_seconds=0)
    start = time.monotonic()
    cluster.hard_kills.append(time.time())
    cluster.plane.kill_etcd()
    hold(10)
    cluster.plane.start_etcd()
    cluster.wait_serving()  # The API server takes a few seconds to reconnect to etcd.
    cluster.fault(start, time.monotonic())
    cluster.core.delete_namespaced_pod(cluster.leader("s1"), NS, grace_period_seconds=0)
    took = cluster.wait_routed(services, timeout=SETTLE + 20)
    cluster.check(services, name="etcd killed 10 s", routed_after_restart_seconds=round(took, 2))


def test_watch_expiry_with_deletions_missed(make_cluster: Callable[..., Cluster]) -> None:
    """Deletions the controller missed, then compacted away, are found through a 410 relist.

    The controller reaches the API server through a proxy that is paused: its watches end
    server-side meanwhile (5 s watch timeout), leaders are deleted and etcd compacted. On
    resume it resumes each watch from its old resourceVersion; the pods' watch cache is off, so
    etcd answers with a real 410 Gone, and the controller must relist and route around them.
    """
    cluster = make_cluster(uncached_resources=("pods",))
    services = [f"s{i}" for i in range(4)]
    for name in services:
        cluster.add_service(name)
    with proxy.Proxy("127.0.0.1", cluster.plane.port) as link:
        ctl = cluster.replica("--watch-timeout-seconds=5", server_url=link.url)
        ctl.wait_ready()
        cluster.wait_routed(services)
        cluster.mark_steady()
        start = time.monotonic()
        link.pause()

        def ended() -> bool:  # The controller's watches end server-side, unseen (5 s timeout).
            own = 1  # The test's own Watcher keeps one pods watch.
            return cluster.open_watches("services") == 0 and cluster.open_watches("pods") <= own

        helpers.poll(ended, timeout=15, what="the controller's watches to end", interval=0.2)
        for name in services[:2]:
            cluster.core.delete_namespaced_pod(cluster.leader(name), NS, grace_period_seconds=0)
        cluster.add_pod("s3", "s3-extra")
        cluster.plane.compact_etcd()
        hold(1)
        link.resume()
        cluster.fault(start, time.monotonic())
        took = cluster.wait_routed(services, timeout=SETTLE + 10)
        assert "expired, relisting" in ctl.log_text(), "no watch met a 410"
    cluster.check(services, name="watch expired (410)", routed_after_heal_seconds=round(took, 2))


def test_controller_sigkilled_during_a_burst_of_20_leader_deletions(cluster: Cluster) -> None:
    """The leading replica dies a quarter into a burst; the standby takes every failover over."""
    services = [f"s{i}" for i in range(20)]
    for name in services:
        cluster.add_service(name, pods_per=2)
    a, b = cluster.replica(), cluster.replica()
    a.wait_ready()
    b.wait_ready()
    cluster.wait_routed(services)
    cluster.mark_steady()
    leaders = [cluster.leader(s) for s in services]
    active, standby = (a, b) if _leading(a) else (b, a)
    assert _leading(active), "no replica leads"

    def burst() -> None:
        for pod in leaders:  # 20 leader deletions over 2 s.
            cluster.core.delete_namespaced_pod(pod, NS, grace_period_seconds=0)
            time.sleep(0.1)  # Pacing the burst.

    deleter = threading.Thread(target=burst)
    deleter.start()
    hold(0.5)
    start = time.monotonic()
    active.kill()
    deleter.join()
    cluster.fault(start, start + 3.0)  # Until the dead replica's 3 s Lease runs out.
    took = cluster.wait_routed(services, timeout=SETTLE + 10)
    assert _leading(standby)
    cluster.check(
        services, name="leader SIGKILLed mid-burst", routed_after_kill_seconds=round(took, 2)
    )


def _leading(rep: replica.Replica) -> bool:
    return "zen_lead_controller_is_leader 1.0" in rep.scrape()
