"""What a client of ``<svc>-leader`` sees, through the real kube-proxy (nftables mode).

A client inside the pod network opens a new connection to the leader Service's ClusterIP every
20 ms. Whatever makes the leader lose its place (a hang, a 503, gRPC NOT_SERVING, deletion,
Ready=false), new connections reach the new leader, and once one has, none reaches the old
leader again: the fake pods record every connection they accept, so even a hung pod that never
answers is caught.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import pytest

from tests import helpers
from tests.integration import kubehelp
from zenlead.testing import dataplane, pods

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from kubernetes import client

    from probes import testing
    from zenlead.testing import controlplane, running

    Start = Callable[..., running.RunningController]

FAST_PROBES = {
    "zen-lead.io/probe-interval": "300ms",
    "zen-lead.io/probe-timeout": "150ms",
    "zen-lead.io/probe-fast-interval": "50ms",
    "zen-lead.io/probe-candidate-interval": "300ms",
}
PROBES = {
    "http": {"zen-lead.io/probe": "http", "zen-lead.io/probe-path": "/healthz"} | FAST_PROBES,
    "grpc": {"zen-lead.io/probe": "grpc", "zen-lead.io/probe-port": "9090"} | FAST_PROBES,
    "none": {},
}


@pytest.fixture(scope="session")
def kube_proxy(
    control_plane: controlplane.ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dataplane.KubeProxy]:
    """Run kube-proxy for the session's control plane, in this network namespace."""
    with dataplane.KubeProxy(control_plane, workdir=tmp_path_factory.mktemp("kube-proxy")) as kp:
        yield kp


def _break(
    how: str, *, api: Any, core: client.CoreV1Api, namespace: str, fake: Any, network: Any
) -> None:
    if how == "hang":
        fake.http_mode = "hang"
    elif how == "503":
        fake.http_mode = "error"
    elif how == "NOT_SERVING":
        network.set_serving(fake.ip, False)  # noqa: FBT003 - mirrors health.set
    elif how == "deleted":
        core.delete_namespaced_pod("web-0", namespace, grace_period_seconds=0)
    else:
        pods.mark_running(api, namespace, "web-0", ip=fake.ip, ready=False)


@pytest.mark.usefixtures("kube_proxy")
@pytest.mark.parametrize(
    ("how", "probe"),
    [
        pytest.param("hang", "http", id="hung"),
        pytest.param("503", "http", id="503"),
        pytest.param("NOT_SERVING", "grpc", id="grpc-not-serving"),
        pytest.param("deleted", "none", id="deleted"),
        pytest.param("notReady", "none", id="not-ready"),
    ],
)
def test_clients_follow_the_leader(
    core: client.CoreV1Api,
    api: Any,
    namespace: str,
    pods3: list[testing.FakePod],
    pod_network: testing.PodNetwork,
    start_controller: Start,
    how: str,
    probe: str,
) -> None:
    """New connections reach only the leader; after it fails, only the new one, never the old."""
    kubehelp.make_service(core, namespace, annotations=kubehelp.ENABLED | PROBES[probe])
    start_controller()
    kubehelp.wait_leader(api, namespace, "web-0")
    ip = core.read_namespaced_service("web-leader", namespace).spec.cluster_ip
    old, new = pods3[0], pods3[1]
    with dataplane.Client(ip, 80) as clients:
        helpers.poll(
            lambda: any(a.pod == old.ip for a in clients.attempts()),
            timeout=15,
            what="a client request answered by the leader through kube-proxy",
        )
        _break(how, api=api, core=core, namespace=namespace, fake=old, network=pod_network)
        first = helpers.poll(
            lambda: next((a for a in clients.attempts() if a.pod == new.ip), None),
            timeout=15,
            what="a client request answered by the new leader",
        )
        helpers.poll(
            lambda: sum(1 for a in clients.attempts() if a.at > first.at) >= 25,
            timeout=10,
            what="half a second more of client requests",
        )
    attempts = clients.attempts()
    later = [a for a in attempts if a.at > first.at + 0.001]
    before = [a for a in attempts if a.at < first.at]
    assert all(a.pod in (None, old.ip) for a in before), "a third pod answered"
    assert all(a.pod == new.ip for a in later if a.status), "an answer from the old leader"
    ports = {a.local_port for a in later if a.local_port}
    reached_old = [port for at, _, port in old.accepted if at > first.at and port in ports]
    assert reached_old == [], "a new connection reached the old leader after the switch"
    assert not [a for a in later if a.error], f"failed requests after the switch: {later[:3]}"


@pytest.mark.usefixtures("kube_proxy")
def test_headless_leader_publishes_only_the_leader(
    core: client.CoreV1Api,
    api: Any,
    namespace: str,
    pods3: list[testing.FakePod],
    start_controller: Start,
) -> None:
    """A headless leader Service's slice holds exactly the leader: what DNS would answer."""
    kubehelp.make_service(core, namespace, spec={"clusterIP": "None"})
    start_controller()
    for leader, fake in (("web-0", pods3[0]), ("web-1", pods3[1])):
        found = kubehelp.wait_leader(api, namespace, leader)
        ready = [
            address
            for endpoint in found.endpoints
            if endpoint.conditions.ready
            for address in endpoint.addresses
        ]
        assert ready == [fake.ip]
        if leader == "web-0":
            core.delete_namespaced_pod("web-0", namespace, grace_period_seconds=0)
    assert core.read_namespaced_service("web-leader", namespace).spec.cluster_ip == "None"


@pytest.mark.usefixtures("pods3")
def test_kube_proxy_measures_from_the_trigger_time(
    core: client.CoreV1Api,
    api: Any,
    namespace: str,
    start_controller: Start,
    kube_proxy: dataplane.KubeProxy,
) -> None:
    """kube-proxy's network-programming histogram counts zen-lead's slice writes (trigger time)."""
    before = _programming_count(kube_proxy)
    kubehelp.make_service(core, namespace)
    start_controller()
    kubehelp.wait_leader(api, namespace, "web-0")
    core.delete_namespaced_pod("web-0", namespace, grace_period_seconds=0)
    kubehelp.wait_leader(api, namespace, "web-1")
    helpers.poll(
        lambda: _programming_count(kube_proxy) > before,
        timeout=10,
        what="kube-proxy to observe the programming latency of our slice",
    )


def _programming_count(kube_proxy: dataplane.KubeProxy) -> float:
    name = "kubeproxy_network_programming_duration_seconds_count"
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in kube_proxy.metrics().splitlines()
        if line.startswith(name)
    )


@pytest.mark.usefixtures("kube_proxy")
def test_established_connections_stay_on_the_old_leader(
    core: client.CoreV1Api,
    api: Any,
    namespace: str,
    pods3: list[testing.FakePod],
    start_controller: Start,
) -> None:
    """kube-proxy never moves an open connection: a keep-alive client stays on the old leader.

    What clients must know: only new connections follow the leader, so a client should set a
    read timeout and reconnect (or cap keep-alive connection age) to follow a failover.
    """
    kubehelp.make_service(core, namespace)
    start_controller()
    kubehelp.wait_leader(api, namespace, "web-0")
    ip = core.read_namespaced_service("web-leader", namespace).spec.cluster_ip
    kept = helpers.poll(lambda: _connect(ip), timeout=15, what="a connection to the leader")
    try:
        assert _ask(kept) == pods3[0].ip
        pods.mark_running(api, namespace, "web-0", ip=pods3[0].ip, ready=False)
        kubehelp.wait_leader(api, namespace, "web-1")
        helpers.poll(
            lambda: _ask_once(ip) == pods3[1].ip,
            timeout=10,
            what="a new connection answered by web-1",
        )
        assert _ask(kept) == pods3[0].ip, "the established connection moved"
    finally:
        kept.close()


def _connect(ip: str) -> socket.socket | None:
    try:
        return socket.create_connection((ip, 80), timeout=2)
    except OSError:
        return None


def _ask_once(ip: str) -> str | None:
    """Ask on a new connection, then close it; return who answered."""
    sock = _connect(ip)
    if sock is None:
        return None
    with sock:
        return _ask(sock)


def _ask(sock: socket.socket) -> str | None:
    """Send one keep-alive request on `sock`; return the X-Pod of the answer."""
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: web\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        head += chunk
    body_len = 2
    rest = head.split(b"\r\n\r\n", 1)[1]
    while len(rest) < body_len:
        rest += sock.recv(4096)
    for line in head.decode("latin-1").split("\r\n"):
        if line.lower().startswith("x-pod:"):
            return line.split(":", 1)[1].strip()
    return None
