"""Leader Service ports mirror the source without nodePorts; slice ports resolve to numbers."""

from __future__ import annotations

from typing import Any

import pytest

from zenlead import model, ports


def _pod(*container_ports: model.ContainerPort) -> model.Pod:
    """Return a running pod declaring `container_ports`."""
    return model.Pod(
        namespace="ns",
        name="pod-a",
        uid="uid-a",
        labels={},
        created=0.0,
        deleting=False,
        node_name="node-1",
        phase="Running",
        ip="10.0.0.1",
        ready=True,
        ready_since=0.0,
        ports=container_ports,
    )


HTTP = model.ContainerPort(name="http", port=8080, protocol="TCP")
DNS_UDP = model.ContainerPort(name="dns", port=5353, protocol="UDP")
METRICS = model.ContainerPort(name="metrics", port=9090, protocol="TCP")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param([], [], id="no-ports"),
        pytest.param(
            [
                {
                    "name": "http",
                    "protocol": "TCP",
                    "port": 80,
                    "targetPort": 8080,
                    "nodePort": 30080,
                }
            ],
            [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
            id="drops-nodePort",
        ),
        pytest.param(
            [{"port": 80, "targetPort": "http", "appProtocol": "http"}],
            [{"port": 80, "targetPort": "http", "appProtocol": "http"}],
            id="keeps-named-targetPort-and-appProtocol",
        ),
        pytest.param(
            [{"name": None, "port": 53, "protocol": "UDP", "appProtocol": None}],
            [{"port": 53, "protocol": "UDP"}],
            id="drops-null-fields",
        ),
        pytest.param(
            [{"port": 80, "nodePort": 30080, "extra": "x"}, {"port": 443, "nodePort": 30443}],
            [{"port": 80}, {"port": 443}],
            id="drops-unknown-fields-of-each-port",
        ),
    ],
)
def test_service_ports(source: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """The leader Service copies name, protocol, appProtocol, port and targetPort only."""
    assert ports.service_ports(source) == expected


def test_service_ports_leaves_input_alone() -> None:
    """service_ports does not modify the source Service's ports."""
    source = [{"port": 80, "nodePort": 30080}]
    ports.service_ports(source)
    assert source == [{"port": 80, "nodePort": 30080}]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param([], [], id="no-ports"),
        pytest.param([{"port": 80, "targetPort": 8080}], [], id="numeric"),
        pytest.param(
            [{"port": 80, "targetPort": "http"}, {"port": 81}, {"port": 9, "targetPort": "m"}],
            ["http", "m"],
            id="mixed",
        ),
    ],
)
def test_named_target_ports(source: list[dict[str, Any]], expected: list[str]) -> None:
    """Only string targetPorts are reported as named."""
    assert ports.named_target_ports(source) == expected


@pytest.mark.parametrize(
    ("source", "pod", "expected"),
    [
        pytest.param(
            [{"name": "web", "port": 80, "targetPort": 8081, "protocol": "TCP"}],
            _pod(),
            [ports.SlicePort("web", 8081, "TCP", None)],
            id="numeric-target",
        ),
        pytest.param(
            [{"name": "web", "port": 80}],
            _pod(),
            [ports.SlicePort("web", 80, "TCP", None)],
            id="missing-target-means-port",
        ),
        pytest.param(
            [{"port": 80}],
            _pod(),
            [ports.SlicePort("", 80, "TCP", None)],
            id="missing-name-and-protocol",
        ),
        pytest.param(
            [{"name": "web", "port": 80, "targetPort": "http", "appProtocol": "http"}],
            _pod(METRICS, HTTP),
            [ports.SlicePort("web", 8080, "TCP", "http")],
            id="named-found",
        ),
        pytest.param(
            [{"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}],
            _pod(DNS_UDP),
            [ports.SlicePort("dns", 5353, "UDP", None)],
            id="named-udp",
        ),
        pytest.param(
            [
                {"name": "web", "port": 80, "targetPort": "http"},
                {"name": "prom", "port": 9000, "targetPort": "metrics"},
                {"name": "raw", "port": 7000, "targetPort": 7001},
            ],
            _pod(HTTP, METRICS),
            [
                ports.SlicePort("web", 8080, "TCP", None),
                ports.SlicePort("prom", 9090, "TCP", None),
                ports.SlicePort("raw", 7001, "TCP", None),
            ],
            id="several-in-order",
        ),
    ],
)
def test_resolve(
    source: list[dict[str, Any]], pod: model.Pod, expected: list[ports.SlicePort]
) -> None:
    """Numeric targetPorts are used as is and named ones come from the pod's container ports."""
    assert ports.resolve(source, pod) == expected


@pytest.mark.parametrize(
    ("source", "pod", "missing"),
    [
        pytest.param(
            [{"port": 80, "targetPort": "http"}],
            _pod(METRICS),
            "http",
            id="name-missing",
        ),
        pytest.param(
            [{"port": 80, "targetPort": "http"}],
            _pod(),
            "http",
            id="pod-without-ports",
        ),
        pytest.param(
            [{"port": 53, "targetPort": "dns"}],
            _pod(DNS_UDP),
            "dns",
            id="protocol-mismatch-tcp-vs-udp",
        ),
        pytest.param(
            [{"port": 80, "targetPort": "http", "protocol": "UDP"}],
            _pod(HTTP),
            "http",
            id="protocol-mismatch-udp-vs-tcp",
        ),
        pytest.param(
            [{"port": 80, "targetPort": "http"}],
            _pod(model.ContainerPort(name="http", port=0, protocol="TCP")),
            "http",
            id="container-port-zero",
        ),
        pytest.param(
            [{"port": 80, "targetPort": "http"}, {"port": 90, "targetPort": "admin"}],
            _pod(HTTP),
            "admin",
            id="second-of-two-missing",
        ),
    ],
)
def test_resolve_unresolved(source: list[dict[str, Any]], pod: model.Pod, missing: str) -> None:
    """A named targetPort the pod does not declare (with that protocol) raises and names it."""
    with pytest.raises(ports.UnresolvedPortError) as caught:
        ports.resolve(source, pod)
    assert caught.value.port_name == missing
    assert repr(missing) in str(caught.value)
    assert pod.name in str(caught.value)


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        pytest.param(
            ports.SlicePort("web", 80, "TCP", None),
            {"name": "web", "port": 80, "protocol": "TCP"},
            id="no-app-protocol",
        ),
        pytest.param(
            ports.SlicePort("", 443, "TCP", "https"),
            {"name": "", "port": 443, "protocol": "TCP", "appProtocol": "https"},
            id="with-app-protocol",
        ),
    ],
)
def test_slice_port_to_raw(port: ports.SlicePort, expected: dict[str, Any]) -> None:
    """A slice port renders as EndpointSlice JSON, with appProtocol only when set."""
    assert port.to_raw() == expected
