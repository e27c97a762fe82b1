"""The wanted leader Service and EndpointSlice, the ownership rule and the no-op comparisons."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import pytest

from zenlead import leader, model, objects, ports
from zenlead.svcconfig import ServiceConfig

if TYPE_CHECKING:
    from collections.abc import Callable

CONFIG = ServiceConfig(leader_service_name="web-leader")
SOURCE_UID = "src-uid"
LEADER_SVC_UID = "leader-svc-uid"


def make_pod(
    name: str = "web-0", *, ip: str | None = "10.0.0.7", node: str | None = "node-1"
) -> model.Pod:
    """Return a qualifying pod."""
    return model.Pod(
        namespace="ns",
        name=name,
        uid=f"uid-{name}",
        labels={"app": "web"},
        created=100.0,
        deleting=False,
        node_name=node,
        phase="Running",
        ip=ip,
        ready=True,
        ready_since=100.0,
        ports=(model.ContainerPort("http", 8080, "TCP"),),
    )


def decision_for(
    pod: model.Pod | None, *, slice_ports: tuple[ports.SlicePort, ...] = ()
) -> leader.Decision:
    """Return a Decision choosing `pod` (or nobody) with `slice_ports`."""
    verdicts = () if pod is None else (leader.Verdict(pod, "ok", "qualifies", slice_ports),)
    return leader.Decision(leader=pod, verdicts=verdicts, previous_uid=None, cause=None, why="test")


def source_service(**spec: Any) -> dict[str, Any]:
    """Return a source Service as the API server returns it, with `spec` overrides."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "uid": SOURCE_UID,
            "resourceVersion": "42",
            "labels": {
                "app": "web",
                "team": "a",
                "app.kubernetes.io/managed-by": "Helm",
                "app.kubernetes.io/instance": "web-release",
                "app.kubernetes.io/part-of": "shop",
                "app.kubernetes.io/version": "1.2.3",
                "argocd.argoproj.io/instance": "web-app",
                "fluxcd.io/part-of": "x",
                "kustomize.toolkit.fluxcd.io/name": "web",
                "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
                "kustomize.toolkit.fluxcd.io/revision": "main@sha1:abc",
            },
            "annotations": {
                "example.com/contact": "team-a@example.com",
                "zen-lead.io/enabled": "true",
                "zen-lead.io/sticky": "false",
                "zen-lead.io/leader-pod-name": "stale",
                "argocd.argoproj.io/sync-wave": "1",
                "argocd.argoproj.io/sync-options": "Prune=false",
                "fluxcd.io/sync-checksum": "abc",
                "kustomize.toolkit.fluxcd.io/checksum": "def",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
            },
        },
        "spec": {
            "type": "NodePort",
            "selector": {"app": "web"},
            "clusterIP": "10.96.0.10",
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080},
                {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
            ],
        }
        | spec,
    }


def created_service(want: dict[str, Any]) -> dict[str, Any]:
    """Return `want` as the API server stores it: server fields and Service defaults added."""
    have = copy.deepcopy(want)
    have["metadata"] |= {
        "uid": LEADER_SVC_UID,
        "resourceVersion": "7",
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "managedFields": [{"manager": "zen-lead"}],
    }
    spec = have["spec"]
    spec.setdefault("clusterIP", "10.96.0.99")
    spec |= {
        "clusterIPs": [spec["clusterIP"]],
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "sessionAffinity": "None",
        "internalTrafficPolicy": "Cluster",
    }
    for port in spec["ports"]:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port["port"])
    return have


def created_slice(want: dict[str, Any]) -> dict[str, Any]:
    """Return `want` as the API server stores it: server fields and EndpointSlice defaults."""
    have = copy.deepcopy(want)
    have["metadata"] |= {
        "uid": "slice-uid",
        "resourceVersion": "8",
        "generation": 1,
        "creationTimestamp": "2026-01-01T00:00:00Z",
    }
    for port in have["ports"]:
        port.setdefault("name", "")
        port.setdefault("protocol", "TCP")
    return have


def leader_svc(**metadata: Any) -> dict[str, Any]:
    """Return an existing leader Service for `endpoint_slice`, with `metadata` overrides."""
    want = objects.leader_service(
        source_service(), config=CONFIG, decision=decision_for(None), history={}
    )
    have = created_service(want)
    have["metadata"] |= metadata
    return have


HTTP_SLICE_PORT = ports.SlicePort("http", 8080, "TCP", None)


# leader_service ------------------------------------------------------------------------------


def test_leader_service_metadata() -> None:
    """The leader Service keeps the source's own labels and annotations but no GitOps ones."""
    want = objects.leader_service(
        source_service(), config=CONFIG, decision=decision_for(None), history={}
    )
    meta = want["metadata"]
    assert meta["name"] == "web-leader"
    assert meta["namespace"] == "ns"
    assert meta["labels"] == {
        "app": "web",
        "team": "a",
        model.LABEL_MANAGED_BY: "zen-lead",
        model.LABEL_SOURCE: "web",
    }
    assert meta["annotations"] == {"example.com/contact": "team-a@example.com"}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "name": "web",
            "uid": SOURCE_UID,
            "controller": True,
        }
    ]
    assert "uid" not in meta
    assert "resourceVersion" not in meta


def test_leader_service_does_not_modify_source() -> None:
    """Building the leader Service leaves the source object unchanged."""
    source = source_service()
    before = copy.deepcopy(source)
    objects.leader_service(
        source,
        config=CONFIG,
        decision=decision_for(make_pod()),
        history={objects.ANN_LAST_SWITCH: "t"},
    )
    assert source == before


SWITCH = {objects.ANN_LAST_SWITCH: "2026-01-02T00:00:00Z"}
FAILOVER = {
    objects.ANN_LAST_FAILOVER: "2026-01-03T00:00:00Z",
    objects.ANN_LAST_FAILOVER_REASON: "notReady",
    objects.ANN_LAST_FAILOVER_LATENCY: "0.125",
}


@pytest.mark.parametrize(
    ("pod", "history", "expected"),
    [
        pytest.param(None, {}, {}, id="no-leader-no-history"),
        pytest.param(None, SWITCH, SWITCH, id="no-leader-keeps-history"),
        pytest.param(
            make_pod("web-1"),
            SWITCH | FAILOVER,
            {
                objects.ANN_LEADER_NAME: "web-1",
                objects.ANN_LEADER_UID: "uid-web-1",
                objects.ANN_CURRENT_LEADER: "web-1",
            }
            | SWITCH
            | FAILOVER,
            id="leader-with-history",
        ),
        pytest.param(
            None,
            {"zen-lead.io/sticky": "false", "example.com/x": "y", objects.ANN_LEADER_NAME: "old"}
            | SWITCH,
            SWITCH,
            id="only-history-keys-are-taken",
        ),
    ],
)
def test_leader_service_leader_annotations(
    pod: model.Pod | None, history: dict[str, str], expected: dict[str, str]
) -> None:
    """Besides the source's own annotations only the leader and HISTORY annotations appear."""
    want = objects.leader_service(
        source_service(ports=[]), config=CONFIG, decision=decision_for(pod), history=history
    )
    assert {
        k: v for k, v in want["metadata"]["annotations"].items() if k != "example.com/contact"
    } == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            {},
            {
                "type": "ClusterIP",
                "ports": [
                    {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                ],
            },
            id="nodeport-becomes-clusterip",
        ),
        pytest.param(
            {"type": "LoadBalancer", "ports": [{"port": 443, "appProtocol": "https"}]},
            {
                "type": "ClusterIP",
                "ports": [
                    {"port": 443, "appProtocol": "https", "protocol": "TCP", "targetPort": 443}
                ],
            },
            id="loadbalancer-becomes-clusterip",
        ),
        pytest.param(
            {"type": "ClusterIP", "clusterIP": "None", "ports": [{"port": 5432}]},
            {
                "type": "ClusterIP",
                "clusterIP": "None",
                "ports": [{"port": 5432, "protocol": "TCP", "targetPort": 5432}],
            },
            id="headless-stays-headless",
        ),
        pytest.param({"ports": []}, {"type": "ClusterIP", "ports": []}, id="no-ports"),
    ],
)
def test_leader_service_spec(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    """The spec is type ClusterIP with defaulted ports: never a selector, nodePort or clusterIP."""
    want = objects.leader_service(
        source_service(**spec), config=CONFIG, decision=decision_for(None), history={}
    )
    assert want["spec"] == expected


# endpoint_slice ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "address_type"),
    [
        pytest.param("10.0.0.7", "IPv4", id="ipv4"),
        pytest.param("fd00::7", "IPv6", id="ipv6"),
    ],
)
def test_endpoint_slice_for_leader(ip: str, address_type: str) -> None:
    """With a leader the slice has one ready endpoint with its IP, targetRef and nodeName."""
    pod = make_pod(ip=ip)
    want = objects.endpoint_slice(
        leader_svc(),
        source_name="web",
        decision=decision_for(pod, slice_ports=(HTTP_SLICE_PORT,)),
        existing_address_type=None,
    )
    assert want["apiVersion"] == "discovery.k8s.io/v1"
    assert want["kind"] == "EndpointSlice"
    assert want["addressType"] == address_type
    assert want["endpoints"] == [
        {
            "addresses": [ip],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "targetRef": {"kind": "Pod", "namespace": "ns", "name": "web-0", "uid": "uid-web-0"},
            "nodeName": "node-1",
        }
    ]
    assert want["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert want["metadata"] == {
        "name": "web-leader",
        "namespace": "ns",
        "labels": {
            model.LABEL_SERVICE_NAME: "web-leader",
            model.LABEL_SLICE_MANAGED_BY: "zen-lead",
            model.LABEL_MANAGED_BY: "zen-lead",
            model.LABEL_SOURCE: "web",
        },
        "ownerReferences": [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "name": "web-leader",
                "uid": LEADER_SVC_UID,
                "controller": True,
            }
        ],
    }


def test_endpoint_slice_without_node_name() -> None:
    """A leader without spec.nodeName gives an endpoint without nodeName."""
    want = objects.endpoint_slice(
        leader_svc(),
        source_name="web",
        decision=decision_for(make_pod(node=None)),
        existing_address_type=None,
    )
    assert "nodeName" not in want["endpoints"][0]


def test_endpoint_slice_carries_the_trigger_time() -> None:
    """The trigger time becomes the annotation kube-proxy measures programming latency from."""
    stamp = "2026-12-02T10:00:00.123456Z"
    want = objects.endpoint_slice(
        leader_svc(),
        source_name="web",
        decision=decision_for(make_pod()),
        existing_address_type=None,
        trigger_time=stamp,
    )
    assert want["metadata"]["annotations"] == {objects.ANN_TRIGGER_TIME: stamp}
    assert not objects.slice_needs_update(
        want, want | {"metadata": {**want["metadata"], "annotations": {}}}
    )


@pytest.mark.parametrize(
    ("existing", "address_type"),
    [
        pytest.param(None, "IPv4", id="new-slice-defaults-to-ipv4"),
        pytest.param("IPv6", "IPv6", id="keeps-existing-family"),
    ],
)
def test_endpoint_slice_without_leader(existing: str | None, address_type: str) -> None:
    """Without a leader the slice has no endpoints and no ports, and keeps its address family."""
    want = objects.endpoint_slice(
        leader_svc(), source_name="web", decision=decision_for(None), existing_address_type=existing
    )
    assert want["endpoints"] == []
    assert want["ports"] == []
    assert want["addressType"] == address_type


def test_endpoint_slice_leader_ip_wins_over_existing_family() -> None:
    """The leader's IP family decides addressType even if the existing slice has another."""
    want = objects.endpoint_slice(
        leader_svc(),
        source_name="web",
        decision=decision_for(make_pod(ip="fd00::1")),
        existing_address_type="IPv4",
    )
    assert want["addressType"] == "IPv6"
    assert objects.slice_needs_recreate(want, {"addressType": "IPv4"})
    assert not objects.slice_needs_recreate(want, {"addressType": "IPv6"})


# ownership -----------------------------------------------------------------------------------


def _owned(
    *, labels: dict[str, str] | None = None, refs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Return object metadata with zen-lead labels for source "web" unless overridden."""
    default_labels = {
        model.LABEL_MANAGED_BY: "zen-lead",
        model.LABEL_SOURCE: "web",
        model.LABEL_SLICE_MANAGED_BY: "zen-lead",
    }
    default_refs = [{"kind": "Service", "name": "web", "uid": SOURCE_UID}]
    return {
        "metadata": {
            "labels": default_labels if labels is None else labels,
            "ownerReferences": default_refs if refs is None else refs,
        }
    }


@pytest.mark.parametrize(
    ("obj", "source_uid", "owned"),
    [
        pytest.param(_owned(), SOURCE_UID, True, id="labels-and-uid"),
        pytest.param(_owned(), None, True, id="source-gone-matches-by-name"),
        pytest.param(_owned(), "other-uid", False, id="other-source-uid"),
        pytest.param(
            _owned(refs=[{"kind": "Service", "name": "other", "uid": "x"}]),
            None,
            False,
            id="source-gone-other-name",
        ),
        pytest.param(
            _owned(refs=[{"kind": "Deployment", "name": "web", "uid": SOURCE_UID}]),
            SOURCE_UID,
            False,
            id="owner-not-a-service",
        ),
        pytest.param(_owned(refs=[]), SOURCE_UID, False, id="no-owner-reference"),
        pytest.param(
            _owned(labels={model.LABEL_SOURCE: "web"}), SOURCE_UID, False, id="no-managed-by"
        ),
        pytest.param(
            _owned(labels={model.LABEL_MANAGED_BY: "Helm", model.LABEL_SOURCE: "web"}),
            SOURCE_UID,
            False,
            id="managed-by-someone-else",
        ),
        pytest.param(
            _owned(labels={model.LABEL_MANAGED_BY: "zen-lead", model.LABEL_SOURCE: "api"}),
            SOURCE_UID,
            False,
            id="other-source-label",
        ),
        pytest.param({}, SOURCE_UID, False, id="no-metadata"),
    ],
)
def test_owns_service(obj: dict[str, Any], source_uid: str | None, *, owned: bool) -> None:
    """A Service is ours only with our labels and an ownerReference to the source Service."""
    assert objects.owns_service(obj, source_name="web", source_uid=source_uid) is owned


@pytest.mark.parametrize(
    ("obj", "leader_uid", "owned"),
    [
        pytest.param(
            {
                "metadata": _owned(refs=[{"kind": "Service", "name": "web-leader"}])["metadata"]
                | {"name": "web-leader"}
            },
            None,
            True,
            id="labels-and-owner-named-like-the-slice",
        ),
        pytest.param(_owned(), None, False, id="labels-but-owner-is-not-the-leader-service"),
        pytest.param(_owned(), SOURCE_UID, True, id="labels-and-owner-uid"),
        pytest.param(_owned(), "other-uid", False, id="other-owner-uid"),
        pytest.param(_owned(refs=[]), "other-uid", False, id="no-owner-with-uid"),
        pytest.param(
            _owned(labels={model.LABEL_MANAGED_BY: "zen-lead", model.LABEL_SOURCE: "web"}),
            None,
            False,
            id="slice-managed-by-missing",
        ),
        pytest.param(
            _owned(
                labels={
                    model.LABEL_MANAGED_BY: "zen-lead",
                    model.LABEL_SOURCE: "web",
                    model.LABEL_SLICE_MANAGED_BY: "endpointslice-controller.k8s.io",
                }
            ),
            None,
            False,
            id="slice-of-the-endpointslice-controller",
        ),
        pytest.param(
            _owned(
                labels={
                    model.LABEL_MANAGED_BY: "zen-lead",
                    model.LABEL_SOURCE: "api",
                    model.LABEL_SLICE_MANAGED_BY: "zen-lead",
                }
            ),
            None,
            False,
            id="other-source",
        ),
        pytest.param({}, None, False, id="no-metadata"),
    ],
)
def test_owns_slice(obj: dict[str, Any], leader_uid: str | None, *, owned: bool) -> None:
    """A slice is ours only with all three labels and, if given, an owner with that UID."""
    assert objects.owns_slice(obj, source_name="web", leader_uid=leader_uid) is owned


# comparisons ---------------------------------------------------------------------------------


def _want_service(**spec: Any) -> dict[str, Any]:
    """Return the wanted leader Service for a source with `spec` overrides, led by web-0."""
    return objects.leader_service(
        source_service(**spec),
        config=CONFIG,
        decision=decision_for(make_pod()),
        history={objects.ANN_LAST_SWITCH: "2026-01-01T00:00:00Z"},
    )


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({}, id="named-and-udp-ports"),
        pytest.param({"ports": [{"port": 80}]}, id="protocol-and-targetPort-defaulted"),
        pytest.param({"clusterIP": "None", "ports": [{"port": 80}]}, id="headless"),
        pytest.param({"ports": []}, id="no-ports"),
    ],
)
def test_service_unchanged_after_defaulting(spec: dict[str, Any]) -> None:
    """The wanted Service as stored by the API server needs no update."""
    want = _want_service(**spec)
    have = created_service(want)
    assert not objects.service_needs_update(want, have)
    assert not objects.service_needs_recreate(want, have)


def test_service_unchanged_when_stored_ports_lack_defaults() -> None:
    """Stored ports without protocol or targetPort compare equal to their defaulted form."""
    want = _want_service(ports=[{"name": "web", "port": 80}])
    have = created_service(want)
    have["spec"]["ports"] = [{"name": "web", "port": 80}]
    assert not objects.service_needs_update(want, have)


def _set(path: tuple[str | int, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    """Return a function that sets `value` at `path` inside an object."""

    def change(obj: dict[str, Any]) -> None:
        target: Any = obj
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_set(("metadata", "labels", "team"), "b"), id="label-value"),
        pytest.param(_set(("metadata", "labels", "extra"), "x"), id="label-added"),
        pytest.param(_set(("metadata", "annotations", objects.ANN_LEADER_NAME), "x"), id="ann"),
        pytest.param(_set(("metadata", "annotations"), {}), id="annotations-removed"),
        pytest.param(
            _set(("metadata", "ownerReferences"), [{"kind": "Service", "name": "web", "uid": "x"}]),
            id="owner-uid",
        ),
        pytest.param(_set(("metadata", "ownerReferences"), []), id="owner-removed"),
        pytest.param(_set(("spec", "type"), "NodePort"), id="type"),
        pytest.param(_set(("spec", "selector"), {"app": "web"}), id="selector-added"),
        pytest.param(_set(("spec", "ports"), []), id="ports-removed"),
        pytest.param(_set(("spec", "ports", 0, "port"), 81), id="port-number"),
        pytest.param(_set(("spec", "ports", 0, "targetPort"), 9090), id="targetPort"),
        pytest.param(_set(("spec", "ports", 1, "protocol"), "TCP"), id="protocol"),
        pytest.param(_set(("spec", "ports", 0, "appProtocol"), "http"), id="appProtocol"),
        pytest.param(_set(("spec", "ports", 0, "name"), "web"), id="port-name"),
    ],
)
def test_service_needs_update_after_change(change: Any) -> None:
    """Any difference in managed labels, annotations, owner, type, selector or ports is seen."""
    want = _want_service()
    have = created_service(want)
    change(have)
    assert objects.service_needs_update(want, have)


def test_service_ignores_unmanaged_fields() -> None:
    """Server-owned fields (clusterIP, sessionAffinity, managedFields) never trigger updates."""
    want = _want_service()
    have = created_service(want)
    have["spec"] |= {"clusterIP": "10.96.7.7", "sessionAffinity": "ClientIP"}
    have["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] = True
    assert not objects.service_needs_update(want, have)


@pytest.mark.parametrize(
    ("want_spec", "have_ip", "recreate"),
    [
        pytest.param({"clusterIP": "None"}, "None", False, id="headless-both"),
        pytest.param({}, "10.96.0.1", False, id="clusterip-both"),
        pytest.param({"clusterIP": "None"}, "10.96.0.1", True, id="became-headless"),
        pytest.param({}, "None", True, id="stopped-being-headless"),
    ],
)
def test_service_needs_recreate(want_spec: dict[str, Any], have_ip: str, *, recreate: bool) -> None:
    """Only a change of headless-ness (an immutable clusterIP) forces a re-create."""
    want = _want_service(**want_spec)
    have = created_service(want)
    have["spec"]["clusterIP"] = have_ip
    assert objects.service_needs_recreate(want, have) is recreate


def _want_slice(pod: model.Pod | None = None) -> dict[str, Any]:
    """Return the wanted slice for `pod` (or no leader) with a TCP and a UDP port."""
    return objects.endpoint_slice(
        leader_svc(),
        source_name="web",
        decision=decision_for(
            pod, slice_ports=(HTTP_SLICE_PORT, ports.SlicePort("", 53, "UDP", "dns"))
        ),
        existing_address_type=None,
    )


@pytest.mark.parametrize(
    "pod",
    [
        pytest.param(make_pod(), id="leader"),
        pytest.param(make_pod(ip="fd00::9", node=None), id="ipv6-no-node"),
        pytest.param(None, id="no-leader"),
    ],
)
def test_slice_unchanged_after_defaulting(pod: model.Pod | None) -> None:
    """The wanted slice as stored by the API server needs no update."""
    want = _want_slice(pod)
    have = created_slice(want)
    assert not objects.slice_needs_update(want, have)
    assert not objects.slice_needs_recreate(want, have)


def test_slice_ignores_unmanaged_endpoint_fields() -> None:
    """Extra endpoint fields (zone, hints, targetRef resourceVersion) do not trigger updates."""
    want = _want_slice(make_pod())
    have = created_slice(want)
    have["endpoints"][0] |= {"zone": "z1", "hints": {"forZones": [{"name": "z1"}]}}
    have["endpoints"][0]["targetRef"]["resourceVersion"] = "99"
    have["ports"][1]["name"] = None
    have["ports"][0]["protocol"] = None
    assert not objects.slice_needs_update(want, have)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_set(("endpoints",), []), id="endpoints-removed"),
        pytest.param(_set(("endpoints", 0, "addresses"), ["10.0.0.8"]), id="address"),
        pytest.param(
            _set(
                ("endpoints", 0, "conditions"),
                {"ready": False, "serving": True, "terminating": False},
            ),
            id="conditions",
        ),
        pytest.param(_set(("endpoints", 0, "targetRef", "uid"), "uid-other"), id="targetRef-uid"),
        pytest.param(_set(("endpoints", 0, "nodeName"), "node-2"), id="nodeName"),
        pytest.param(_set(("ports",), []), id="ports-removed"),
        pytest.param(_set(("ports", 0, "port"), 8081), id="port-number"),
        pytest.param(_set(("ports", 1, "appProtocol"), "grpc"), id="appProtocol"),
        pytest.param(_set(("metadata", "labels", model.LABEL_SOURCE), "api"), id="label"),
        pytest.param(
            _set(("metadata", "ownerReferences"), [{"kind": "Service", "name": "x", "uid": "y"}]),
            id="owner",
        ),
    ],
)
def test_slice_needs_update_after_change(change: Any) -> None:
    """A different endpoint, port, label or owner is seen as needing an update."""
    want = _want_slice(make_pod())
    have = created_slice(want)
    change(have)
    assert objects.slice_needs_update(want, have)


def test_slice_needs_update_when_leader_changes() -> None:
    """A slice written for one leader needs an update when another pod leads."""
    have = created_slice(_want_slice(make_pod("web-0")))
    want = _want_slice(make_pod("web-1"))
    assert objects.slice_needs_update(want, have)


# leader_uid_of -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slice_obj", "uid"),
    [
        pytest.param(None, None, id="no-slice"),
        pytest.param({}, None, id="empty-object"),
        pytest.param({"endpoints": []}, None, id="no-endpoints"),
        pytest.param({"endpoints": None}, None, id="null-endpoints"),
        pytest.param({"endpoints": [{"addresses": ["10.0.0.1"]}]}, None, id="no-targetRef"),
        pytest.param(
            {"endpoints": [{"targetRef": {"kind": "Node", "uid": "n"}}]}, None, id="not-a-pod"
        ),
        pytest.param({"endpoints": [{"targetRef": {"kind": "Pod"}}]}, None, id="pod-without-uid"),
        pytest.param(
            {"endpoints": [{"targetRef": {"kind": "Pod", "uid": "uid-a"}}]}, "uid-a", id="pod"
        ),
        pytest.param(
            {
                "endpoints": [
                    {"targetRef": {"kind": "Node", "uid": "n"}},
                    {"targetRef": {"kind": "Pod", "uid": "uid-b"}},
                ]
            },
            "uid-b",
            id="first-pod-endpoint",
        ),
    ],
)
def test_leader_uid_of(slice_obj: dict[str, Any] | None, uid: str | None) -> None:
    """The leader's UID is read back from the first Pod targetRef of our slice."""
    assert objects.leader_uid_of(slice_obj) == uid


def test_leader_uid_round_trip() -> None:
    """A slice built for a leader reads back that leader's UID."""
    pod = make_pod("web-3")
    assert objects.leader_uid_of(_want_slice(pod)) == "uid-web-3"
    assert objects.leader_uid_of(_want_slice(None)) is None
