"""The director on a real API server: routing, failover, stickiness, ownership and cleanup."""

from __future__ import annotations

import datetime
import time
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from kubernetes import client

from tests import helpers
from tests.integration import kubehelp
from tests.integration.kubehelp import APP
from zenlead import settings
from zenlead.testing import pods, running

if TYPE_CHECKING:
    from collections.abc import Callable

    Start = Callable[..., running.RunningController]


@pytest.fixture
def three_pods(make_pod: Callable[..., Any]) -> list[str]:
    """Create web-0..2, Running and Ready on 10.244.0.10..12 (web-0 is the oldest by name)."""
    names = [f"web-{i}" for i in range(3)]
    for i, name in enumerate(names):
        make_pod(name, ip=f"10.244.0.{10 + i}", labels=APP, ports={"http": 8080})
    return names


class TestRouting:
    """An opted-in Service gets a selector-less leader Service and one slice for one pod."""

    def test_leader_service_and_slice(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        three_pods: list[str],
        start_controller: Start,
    ) -> None:
        """The slice points at the oldest Ready pod with full conditions and a targetRef."""
        kubehelp.make_service(core, namespace)
        start_controller()
        slice_obj = kubehelp.wait_leader(api, namespace, "web-0")
        svc = core.read_namespaced_service("web-leader", namespace)
        assert svc.spec.selector is None
        assert svc.spec.type == "ClusterIP"
        assert [(p.name, p.port) for p in svc.spec.ports] == [("http", 80)]
        assert svc.metadata.labels["app.kubernetes.io/managed-by"] == "zen-lead"
        assert svc.metadata.labels["zen-lead.io/source-service"] == "web"
        assert svc.metadata.annotations["zen-lead.io/leader-pod-name"] == "web-0"
        assert svc.metadata.annotations["zen-lead.io/current-leader"] == "web-0"
        web0_uid = core.read_namespaced_pod("web-0", namespace).metadata.uid
        assert svc.metadata.annotations["zen-lead.io/leader-pod-uid"] == web0_uid
        assert "zen-lead.io/enabled" not in svc.metadata.annotations
        assert "zen-lead.io/leader-last-switch-time" in svc.metadata.annotations
        assert svc.metadata.owner_references[0].name == "web"
        assert slice_obj.address_type == "IPv4"
        assert slice_obj.metadata.labels["kubernetes.io/service-name"] == "web-leader"
        assert slice_obj.metadata.labels["endpointslice.kubernetes.io/managed-by"] == "zen-lead"
        endpoint = slice_obj.endpoints[0]
        assert endpoint.addresses == ["10.244.0.10"]
        conditions = endpoint.conditions
        assert (conditions.ready, conditions.serving, conditions.terminating) == (True, True, False)
        assert endpoint.node_name == "node-a"
        assert endpoint.target_ref.uid == core.read_namespaced_pod("web-0", namespace).metadata.uid
        assert [(p.name, p.port) for p in slice_obj.ports] == [("http", 8080)]
        kubehelp.wait_event(core, namespace, reason="LeaderElected")

    def test_idempotent(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        three_pods: list[str],
        start_controller: Start,
    ) -> None:
        """A restart with nothing changed writes nothing (resourceVersions stay)."""
        kubehelp.make_service(core, namespace)
        first = start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        first.stop()
        before = kubehelp.read_slice(api, namespace, "web-leader").metadata.resource_version
        svc_before = core.read_namespaced_service("web-leader", namespace).metadata.resource_version
        second = start_controller()
        kubehelp.wait_metric(second.scrape, "zen_lead_reconciliations_total", service="web")
        assert kubehelp.read_slice(api, namespace, "web-leader").metadata.resource_version == before
        svc_after = core.read_namespaced_service("web-leader", namespace).metadata.resource_version
        assert svc_after == svc_before


class TestFailover:
    """The leader is replaced the moment it stops qualifying."""

    @pytest.mark.parametrize(
        ("how", "reason"),
        [
            # The API server marks even a force-deleted scheduled pod terminating first, and
            # that is the first failure the controller sees.
            pytest.param("deleted", "terminating", id="deleted"),
            pytest.param("terminating", "terminating", id="terminating"),
            pytest.param("notReady", "notReady", id="notReady"),
        ],
    )
    def test_failover(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        three_pods: list[str],
        start_controller: Start,
        how: str,
        reason: str,
    ) -> None:
        """Deletion, termination or Ready=false of the leader moves the slice to web-1."""
        kubehelp.make_service(core, namespace)
        ctl = start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        before = datetime.datetime.now(datetime.UTC)
        if how == "deleted":
            core.delete_namespaced_pod("web-0", namespace, grace_period_seconds=0)
        elif how == "terminating":
            core.delete_namespaced_pod("web-0", namespace, grace_period_seconds=30)
            assert core.read_namespaced_pod("web-0", namespace).metadata.deletion_timestamp
        else:
            pods.mark_running(api, namespace, "web-0", ip="10.244.0.10", ready=False)
        switched = kubehelp.wait_leader(api, namespace, "web-1")
        after = datetime.datetime.now(datetime.UTC)
        trigger = datetime.datetime.fromisoformat(
            switched.metadata.annotations["endpoints.kubernetes.io/last-change-trigger-time"]
        )
        assert before <= trigger <= after, "the trigger time is when the failure was observed"
        labels = {"namespace": namespace, "service": "web", "reason": reason}
        assert kubehelp.wait_metric(ctl.scrape, "zen_lead_failover_count_total", **labels) == 1
        count = kubehelp.wait_metric(
            ctl.scrape, "zen_lead_failover_latency_seconds_count", **labels
        )
        assert count == 1
        latency = kubehelp.metric(ctl.scrape(), "zen_lead_failover_latency_seconds_sum", **labels)
        assert latency is not None
        assert 0 < latency < 5
        event = kubehelp.wait_event(core, namespace, reason="LeaderChanged")
        assert "from web-0 to web-1" in event.message
        # The reconciler reads only its cache: the only GETs are the Lease's.
        gets = [
            line
            for line in ctl.scrape().splitlines()
            if line.startswith("zen_lead_api_call_duration_seconds_count")
            and 'operation="get_' in line
        ]
        assert gets
        assert all('operation="get_leases"' in line for line in gets)

    def test_first_election_is_not_a_failover(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        three_pods: list[str],
        start_controller: Start,
    ) -> None:
        """Electing the first leader counts no failover."""
        kubehelp.make_service(core, namespace)
        ctl = start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        kubehelp.wait_metric(ctl.scrape, "zen_lead_reconciliations_total", service="web")
        assert kubehelp.metric(ctl.scrape(), "zen_lead_failover_count_total") is None

    def test_no_fail_back_and_restart_keeps_leader(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        three_pods: list[str],
        start_controller: Start,
    ) -> None:
        """A recovered old leader does not take over, not even after a controller restart."""
        kubehelp.make_service(core, namespace)
        first = start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        pods.mark_running(api, namespace, "web-0", ip="10.244.0.10", ready=False)
        kubehelp.wait_leader(api, namespace, "web-1")
        pods.mark_running(api, namespace, "web-0", ip="10.244.0.10", ready=True)
        kubehelp.wait_metric(first.scrape, "zen_lead_pods_available", at_least=3, service="web")
        assert kubehelp.leader_of(kubehelp.read_slice(api, namespace, "web-leader")) == "web-1"
        first.stop()
        second = start_controller()
        kubehelp.wait_metric(second.scrape, "zen_lead_pods_available", at_least=3, service="web")
        assert kubehelp.leader_of(kubehelp.read_slice(api, namespace, "web-leader")) == "web-1"

    def test_not_sticky_returns_to_oldest(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        three_pods: list[str],
        start_controller: Start,
    ) -> None:
        """With sticky "false" the oldest qualifying pod always leads."""
        kubehelp.make_service(
            core, namespace, annotations=kubehelp.ENABLED | {"zen-lead.io/sticky": "false"}
        )
        start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        pods.mark_running(api, namespace, "web-0", ip="10.244.0.10", ready=False)
        kubehelp.wait_leader(api, namespace, "web-1")
        pods.mark_running(api, namespace, "web-0", ip="10.244.0.10", ready=True)
        kubehelp.wait_leader(api, namespace, "web-0")


class TestObservability:
    """API-call and cache metrics move during a real failover."""

    def test_api_and_cache_metrics_during_failover(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        three_pods: list[str],
        start_controller: Start,
    ) -> None:
        """A failover adds an EndpointSlice patch, cache hits, and shrinks the pod store."""
        kubehelp.make_service(core, namespace)
        ctl = start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        patch = {"operation": "patch_endpointslices", "result": "success"}
        text = ctl.scrape()
        patches = kubehelp.metric(text, "zen_lead_api_call_duration_seconds_count", **patch) or 0
        hits = kubehelp.metric(
            text, "zen_lead_cache_lookups_total", resource="services", result="hit"
        )
        pods_before = kubehelp.metric(
            text, "zen_lead_store_objects", resource="pods", namespace=namespace
        )
        assert pods_before == 3
        assert kubehelp.metric(text, "zen_lead_cache_limit") == 1000
        core.delete_namespaced_pod("web-0", namespace, grace_period_seconds=0)
        kubehelp.wait_leader(api, namespace, "web-1")
        kubehelp.wait_metric(
            ctl.scrape, "zen_lead_api_call_duration_seconds_count", at_least=patches + 1, **patch
        )
        after = ctl.scrape()
        hits_after = kubehelp.metric(
            after, "zen_lead_cache_lookups_total", resource="services", result="hit"
        )
        assert hits is not None
        assert hits_after is not None
        assert hits_after > hits
        assert kubehelp.metric(after, "zen_lead_cache_hit_ratio", resource="services") > 0
        helpers.poll(
            lambda: (
                kubehelp.metric(
                    ctl.scrape(), "zen_lead_store_objects", resource="pods", namespace=namespace
                )
                == 2
            ),
            timeout=15,
            what="the pod store to drop the deleted pod",
        )
        assert kubehelp.metric(after, "process_start_time_seconds") is not None


class TestNoLeader:
    """Without a qualifying pod the slice is valid and empty, with a Warning."""

    def test_zero_pods(
        self, core: client.CoreV1Api, api: Any, namespace: str, start_controller: Start
    ) -> None:
        """No pods: empty slice, NoPodsFound, without-endpoints gauge 1."""
        kubehelp.make_service(core, namespace)
        ctl = start_controller()
        slice_obj = kubehelp.wait_leader(api, namespace, None)
        assert slice_obj.endpoints in (None, [])
        kubehelp.wait_event(core, namespace, reason="NoPodsFound")
        gauge = kubehelp.wait_metric(
            ctl.scrape, "zen_lead_leader_service_without_endpoints", service="web"
        )
        assert gauge == 1

    def test_zero_ready_pods(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        make_pod: Callable[..., Any],
        start_controller: Start,
    ) -> None:
        """Pods exist but none is Ready: empty slice and NoReadyPods; Ready later: routed."""
        make_pod("web-0", ip="10.244.0.10", labels=APP, ready=False)
        kubehelp.make_service(core, namespace)
        start_controller()
        kubehelp.wait_leader(api, namespace, None)
        kubehelp.wait_event(core, namespace, reason="NoReadyPods")
        pods.mark_running(api, namespace, "web-0", ip="10.244.0.10", ready=True)
        kubehelp.wait_leader(api, namespace, "web-0")

    def test_leader_lost_without_replacement(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        make_pod: Callable[..., Any],
        start_controller: Start,
    ) -> None:
        """The only pod failing empties the slice (fail closed), never keeps it."""
        make_pod("web-0", ip="10.244.0.10", labels=APP)
        kubehelp.make_service(core, namespace)
        start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        pods.mark_running(api, namespace, "web-0", ip="10.244.0.10", ready=False)
        kubehelp.wait_leader(api, namespace, None)


class TestMinReadyDuration:
    """min-ready-duration holds new pods back, and a timed requeue picks them up."""

    def test_pod_picked_up_without_another_event(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        make_pod: Callable[..., Any],
        start_controller: Start,
    ) -> None:
        """A pod Ready for less than 3 s waits; it leads once old enough, with no new event."""
        make_pod("web-0", ip="10.244.0.10", labels=APP)
        kubehelp.make_service(
            core, namespace, annotations=kubehelp.ENABLED | {"zen-lead.io/min-ready-duration": "3s"}
        )
        start_controller()
        kubehelp.wait_leader(api, namespace, None)
        slice_obj = kubehelp.wait_leader(api, namespace, "web-0", timeout=10)
        ready = core.read_namespaced_pod("web-0", namespace).status.conditions
        since = next(c for c in ready if c.type == "Ready").last_transition_time
        written = slice_obj.metadata.creation_timestamp
        assert written is not None
        assert datetime.datetime.now(datetime.UTC) - since >= datetime.timedelta(seconds=3)


class TestPorts:
    """Named targetPorts resolve against the leader; unresolvable ones fail closed."""

    def test_named_port_resolved(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        make_pod: Callable[..., Any],
        start_controller: Start,
    ) -> None:
        """TargetPort "web" resolves to the pod's container port 9090."""
        make_pod("web-0", ip="10.244.0.10", labels=APP, ports={"web": 9090})
        kubehelp.make_service(
            core, namespace, ports=[{"name": "http", "port": 80, "targetPort": "web"}]
        )
        start_controller()
        slice_obj = kubehelp.wait_leader(api, namespace, "web-0")
        assert [(p.name, p.port) for p in slice_obj.ports] == [("http", 9090)]

    def test_unresolvable_port_fails_closed(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        make_pod: Callable[..., Any],
        start_controller: Start,
    ) -> None:
        """No pod declares the named port: empty slice, Warning and counter naming the port."""
        make_pod("web-0", ip="10.244.0.10", labels=APP, ports={"other": 9090})
        kubehelp.make_service(
            core, namespace, ports=[{"name": "http", "port": 80, "targetPort": "web"}]
        )
        ctl = start_controller()
        kubehelp.wait_leader(api, namespace, None)
        event = kubehelp.wait_event(core, namespace, reason="PortResolutionFailed")
        assert "web" in event.message
        kubehelp.wait_metric(
            ctl.scrape, "zen_lead_port_resolution_failures_total", service="web", port_name="web"
        )

    def test_pod_without_port_is_skipped(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        make_pod: Callable[..., Any],
        start_controller: Start,
    ) -> None:
        """The oldest pod lacks the named port, so the next one that has it leads."""
        make_pod("web-0", ip="10.244.0.10", labels=APP, ports={"other": 1})
        make_pod("web-1", ip="10.244.0.11", labels=APP, ports={"web": 9090})
        kubehelp.make_service(
            core, namespace, ports=[{"name": "http", "port": 80, "targetPort": "web"}]
        )
        start_controller()
        kubehelp.wait_leader(api, namespace, "web-1")


class TestServiceTypes:
    """Headless, NodePort, LoadBalancer, ExternalName sources and long names."""

    def test_headless_stays_headless(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        three_pods: list[str],
        start_controller: Start,
    ) -> None:
        """A headless source gets a headless leader Service (DNS answers the leader's IP)."""
        kubehelp.make_service(core, namespace, spec={"clusterIP": "None"})
        start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        assert core.read_namespaced_service("web-leader", namespace).spec.cluster_ip == "None"

    @pytest.mark.parametrize("kind", ["NodePort", "LoadBalancer"])
    def test_external_types_become_cluster_ip(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        three_pods: list[str],
        start_controller: Start,
        kind: str,
    ) -> None:
        """NodePort and LoadBalancer sources get a ClusterIP leader: no second node port or LB."""
        kubehelp.make_service(core, namespace, spec={"type": kind})
        start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        svc = core.read_namespaced_service("web-leader", namespace)
        assert svc.spec.type == "ClusterIP"
        assert all(p.node_port is None for p in svc.spec.ports)

    def test_external_name_is_refused(
        self, core: client.CoreV1Api, api: Any, namespace: str, start_controller: Start
    ) -> None:
        """An ExternalName source gets a Warning and nothing is created."""
        kubehelp.make_service(
            core,
            namespace,
            selector={},
            spec={"type": "ExternalName", "externalName": "db.example"},
        )
        start_controller()
        kubehelp.wait_event(core, namespace, reason="UnsupportedServiceType")
        assert kubehelp.read_slice(api, namespace, "web-leader") is None

    def test_no_selector_is_refused(
        self, core: client.CoreV1Api, api: Any, namespace: str, start_controller: Start
    ) -> None:
        """A selector-less source gets InvalidService and nothing is created."""
        kubehelp.make_service(core, namespace, selector={})
        start_controller()
        kubehelp.wait_event(core, namespace, reason="InvalidService")
        assert kubehelp.read_slice(api, namespace, "web-leader") is None

    def test_long_name(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        make_pod: Callable[..., Any],
        start_controller: Start,
    ) -> None:
        """A 63-character source name still gets a valid, hashed leader name."""
        name = "a" * 63
        make_pod("web-0", ip="10.244.0.10", labels=APP)
        kubehelp.make_service(core, namespace, name)
        start_controller()
        leaders = helpers.poll(
            lambda: (
                core.list_namespaced_service(
                    namespace, label_selector=f"zen-lead.io/source-service={name}"
                ).items
            ),
            timeout=15,
            what="the leader Service of the long name",
        )
        leader_name = leaders[0].metadata.name
        assert len(leader_name) <= 63
        assert leader_name.endswith("-leader")
        kubehelp.wait_leader(api, namespace, "web-0", name=leader_name)


class TestOwnership:
    """zen-lead touches only what it created, and removes it when no longer wanted."""

    def test_collision_with_foreign_service(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        three_pods: list[str],
        start_controller: Start,
    ) -> None:
        """A foreign web-leader Service gets a Warning and is left exactly as it was."""
        foreign = core.create_namespaced_service(
            namespace, {"metadata": {"name": "web-leader"}, "spec": {"ports": [{"port": 1}]}}
        )
        kubehelp.make_service(core, namespace)
        start_controller()
        event = kubehelp.wait_event(core, namespace, reason="LeaderServiceConflict")
        assert "zen-lead.io/leader-service-name" in event.message
        after = core.read_namespaced_service("web-leader", namespace)
        assert after.metadata.resource_version == foreign.metadata.resource_version
        assert kubehelp.read_slice(api, namespace, "web-leader") is None

    def test_annotation_removed(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        three_pods: list[str],
        start_controller: Start,
    ) -> None:
        """Removing the opt-in deletes the leader Service and slice, and their metric series."""
        kubehelp.make_service(core, namespace)
        ctl = start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        core.patch_namespaced_service(
            "web", namespace, {"metadata": {"annotations": {"zen-lead.io/enabled": None}}}
        )
        helpers.poll(
            lambda: (
                kubehelp.read_slice(api, namespace, "web-leader") is None
                and not _exists(core, namespace, "web-leader")
            ),
            timeout=15,
            what="cleanup",
        )
        helpers.poll(
            lambda: kubehelp.metric(ctl.scrape(), "zen_lead_pods_available", service="web") is None,
            timeout=15,
            what="the metric series to disappear",
        )

    def test_rename(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        three_pods: list[str],
        start_controller: Start,
    ) -> None:
        """Changing leader-service-name moves routing to the new name and removes the old."""
        kubehelp.make_service(core, namespace)
        start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        core.patch_namespaced_service(
            "web",
            namespace,
            {"metadata": {"annotations": {"zen-lead.io/leader-service-name": "primary"}}},
        )
        kubehelp.wait_leader(api, namespace, "web-0", name="primary")
        helpers.poll(
            lambda: not _exists(core, namespace, "web-leader"), timeout=15, what="old leader gone"
        )
        assert kubehelp.read_slice(api, namespace, "web-leader") is None

    def test_source_deleted(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        three_pods: list[str],
        start_controller: Start,
    ) -> None:
        """Deleting the source removes what zen-lead made, without a garbage collector."""
        kubehelp.make_service(core, namespace)
        start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        core.delete_namespaced_service("web", namespace)
        helpers.poll(
            lambda: (
                not _exists(core, namespace, "web-leader")
                and kubehelp.read_slice(api, namespace, "web-leader") is None
            ),
            timeout=15,
            what="cleanup after source deletion",
        )

    def test_invalid_annotation_warns_and_routes(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        three_pods: list[str],
        start_controller: Start,
    ) -> None:
        """A malformed min-ready-duration gets a Warning naming the key; routing continues."""
        kubehelp.make_service(
            core,
            namespace,
            annotations=kubehelp.ENABLED | {"zen-lead.io/min-ready-duration": "soon"},
        )
        start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        event = kubehelp.wait_event(core, namespace, reason="InvalidAnnotation")
        assert "zen-lead.io/min-ready-duration" in event.message
        assert event.type == "Warning"


class TestHighAvailability:
    """Two controller instances: exactly one writes; the other takes over on shutdown."""

    def test_two_instances(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        three_pods: list[str],
        start_controller: Start,
    ) -> None:
        """Only the Lease holder reconciles; after it stops, the standby fails over the leader."""
        kubehelp.make_service(core, namespace)
        a = start_controller()
        b = start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        holder = helpers.poll(
            lambda: (
                client.CoordinationV1Api(api)
                .read_namespaced_lease("zen-lead-controller-leader-election", namespace)
                .spec.holder_identity
            ),
            timeout=15,
            what="a Lease holder",
        )
        active, standby = (a, b) if holder == a.controller.identity else (b, a)
        assert holder == active.controller.identity
        assert kubehelp.metric(active.scrape(), "zen_lead_controller_is_leader") == 1
        assert kubehelp.metric(standby.scrape(), "zen_lead_controller_is_leader") == 0
        assert kubehelp.metric(standby.scrape(), "zen_lead_reconciliations_total") is None
        active.stop()
        lease = client.CoordinationV1Api(api).read_namespaced_lease(
            "zen-lead-controller-leader-election", namespace
        )
        assert lease.spec.holder_identity in (None, "", standby.controller.identity)
        core.delete_namespaced_pod("web-0", namespace, grace_period_seconds=0)
        kubehelp.wait_leader(api, namespace, "web-1")
        assert kubehelp.metric(standby.scrape(), "zen_lead_controller_is_leader") == 1


class TestEndpoints:
    """The health and metrics endpoints."""

    def test_health_and_ready(self, namespace: str, start_controller: Start) -> None:
        """/healthz and /readyz answer 200 once synced; /metrics names the build."""
        ctl = start_controller()
        assert ctl.get("/healthz") == 200
        assert ctl.get("/readyz") == 200
        assert ctl.get("/nope") == 404
        assert kubehelp.metric(ctl.scrape(), "zen_lead_build_info") == 1


def _exists(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_service(name, namespace)
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


class TestReadiness:
    """/readyz reflects the cache: not ready until every informer has listed."""

    def test_unreachable_api_is_not_ready(
        self, control_plane: Any, tmp_path: Any, start_controller: Start
    ) -> None:
        """With the API server unreachable, /healthz is 200 but /readyz stays 503."""
        config = yaml.safe_load(control_plane.kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
        broken = tmp_path / "broken.yaml"
        broken.write_text(yaml.safe_dump(config))
        handle = running.RunningController(
            settings.Settings(
                kubeconfig=str(broken),
                namespaces=("default",),
                metrics_bind_address="127.0.0.1:0",
                health_probe_bind_address="127.0.0.1:0",
                api_timeout_seconds=1.0,
            )
        )
        with handle:
            assert handle.get("/healthz") == 200
            assert handle.get("/readyz") == 503
            assert not handle.controller.synced()


class TestCacheLimit:
    """max-cache-size-per-namespace bounds how many Services one namespace can make us manage."""

    def test_newest_beyond_limit_is_not_managed(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        three_pods: list[str],
        start_controller: Start,
    ) -> None:
        """With a limit of 1, the older Service is routed; the newer gets a Warning and nothing.

        "alpha" is created first and also sorts first by name, so it is the older one whether
        or not both land in the same second (creationTimestamp's resolution).
        """
        kubehelp.make_service(core, namespace, "alpha")
        kubehelp.make_service(core, namespace, "beta")
        ctl = start_controller(max_cache_size_per_namespace=1)
        kubehelp.wait_leader(api, namespace, "web-0", name="alpha-leader")
        kubehelp.wait_event(core, namespace, reason="CacheLimitExceeded", name="beta")
        assert not _exists(core, namespace, "beta-leader")
        assert kubehelp.metric(ctl.scrape(), "zen_lead_cache_size", namespace=namespace) == 1


class TestBurst:
    """A burst of opt-ins is written at the client rate, and never delays a failover."""

    def test_failover_goes_before_a_burst_of_opt_ins(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        three_pods: list[str],
        make_pod: Callable[..., Any],
        start_controller: Start,
    ) -> None:
        """At 5 writes/s, 30 new Services take seconds; web-0's deletion moves at once."""
        kubehelp.make_service(core, namespace)
        start_controller(qps=5.0, burst=5)
        kubehelp.wait_leader(api, namespace, "web-0")
        names = [f"burst-{i}" for i in range(30)]
        for i, name in enumerate(names):
            make_pod(f"{name}-0", ip=f"10.244.1.{10 + i}", labels={"app": name})
            kubehelp.make_service(core, namespace, name, selector={"app": name})
        start = time.monotonic()
        core.delete_namespaced_pod("web-0", namespace, grace_period_seconds=0)
        kubehelp.wait_leader(api, namespace, "web-1", timeout=10)
        took = time.monotonic() - start
        written = sum(
            1 for name in names if kubehelp.read_slice(api, namespace, f"{name}-leader") is not None
        )
        # 30 Services need 60 writes: 12 s at 5/s. The failover did not wait for them.
        assert written < len(names), "the burst was over before the failover: no contest"
        assert took < 2.0, took
        for name in names:
            kubehelp.wait_leader(api, namespace, f"{name}-0", name=f"{name}-leader", timeout=60)
