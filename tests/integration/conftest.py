"""Fixtures for tests against the real kube-apiserver and etcd (see zenlead.testing).

- ``control_plane``: one control plane for the whole session.
- ``api``: an admin API client for it.
- ``namespace``: a fresh namespace per test.
- ``make_pod``: creates a Pod and optionally makes it "run" through ``pods/status``.

If the binaries are missing the fixture fails (never skips) with the command that builds them.
"""

from __future__ import annotations

import itertools
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client

from probes import testing
from tests.integration import kubehelp
from zenlead import settings
from zenlead.kube import client as kube_client
from zenlead.testing import controlplane, netns, pods, running

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this folder as an integration test."""
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[controlplane.ControlPlane]:
    """Start one etcd + kube-apiserver for the session and stop it afterwards."""
    with controlplane.ControlPlane() as plane:
        yield plane


@pytest.fixture(scope="session")
def api(control_plane: controlplane.ControlPlane) -> Iterator[Any]:
    """Return an API client authenticated as the admin (group system:masters)."""
    api_client = kube_client.connect(str(control_plane.kubeconfig))
    yield api_client
    api_client.close()


@pytest.fixture
def core(api: Any) -> client.CoreV1Api:
    """Return the CoreV1 API of the admin client."""
    return client.CoreV1Api(api)


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    """Create a namespace for one test; delete it afterwards (it stays Terminating: no GC)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture
def make_pod(core: client.CoreV1Api, api: Any, namespace: str) -> Callable[..., Any]:
    """Return ``make_pod(name, ip=None, ready=True, labels=..., ports=...)``: create, maybe run."""

    def make(
        name: str,
        *,
        ip: str | None = None,
        ready: bool = True,
        labels: dict[str, str] | None = None,
        ports: dict[str, int] | None = None,
    ) -> Any:
        manifest = pods.pod_manifest(name, labels=labels or {}, ports=ports)
        core.create_namespaced_pod(namespace, manifest)
        if ip is None:
            return core.read_namespaced_pod(name, namespace)
        return pods.mark_running(api, namespace, name, ip=ip, ready=ready)

    return make


@pytest.fixture
def start_controller(
    control_plane: controlplane.ControlPlane, api: Any, namespace: str
) -> Iterator[Callable[..., running.RunningController]]:
    """Return ``start(**settings)``: run a controller watching the test namespace (stopped after).

    Election is on with short timings (lease 3 s, renew deadline 2 s, retry 0.2 s) and the
    Lease lives in the test namespace, so tests never share a Lease. The Lease starts out
    released (no holder), so the first controller leads at once instead of first watching a
    missing Lease for a lease duration.
    """
    started: list[running.RunningController] = []
    lease = settings.Settings().leader_election_id
    running.released_lease(api, namespace=namespace, name=lease)

    def start(**overrides: Any) -> running.RunningController:
        values: dict[str, Any] = {
            "kubeconfig": str(control_plane.kubeconfig),
            "namespaces": (namespace,),
            "metrics_bind_address": "127.0.0.1:0",
            "health_probe_bind_address": "127.0.0.1:0",
            "leader_election_namespace": namespace,
            "lease_duration_seconds": 3.0,
            "renew_deadline_seconds": 2.0,
            "retry_period_seconds": 0.2,
        }
        handle = running.RunningController(settings.Settings(**(values | overrides)))
        handle.__enter__()
        started.append(handle)
        handle.wait_synced()
        return handle

    yield start
    for handle in started:
        handle.stop()


_SUBNETS = itertools.count(1)


@pytest.fixture
def pod_network() -> Iterator[testing.PodNetwork]:
    """Serve fake pods' HTTP/gRPC/TCP health endpoints on their pod IPs (10.244.0.0/16).

    Needs the private network namespace that ``make pytest`` enters; run elsewhere, it fails
    with the command to use instead of skipping.
    """
    if not netns.active():
        pytest.fail(
            "10.244.0.0/16 is not local here: run the tests through `make pytest` or "
            "`.venv/bin/python -m zenlead.testing.netns .venv/bin/pytest ...`"
        )
    with testing.PodNetwork() as network:
        yield network


@pytest.fixture
def subnet() -> int:
    """Return a third octet no other test in this session uses (fresh pod IPs per test)."""
    return next(_SUBNETS) % 250 + 1


@pytest.fixture
def pods3(
    make_pod: Callable[..., Any], pod_network: testing.PodNetwork, subnet: int
) -> list[testing.FakePod]:
    """Three running, Ready pods web-0..2 with live fake servers on their IPs (web-0 oldest)."""
    fakes = []
    for i in range(3):
        ip = f"10.244.{subnet}.{10 + i}"
        fakes.append(pod_network.add(ip))
        make_pod(f"web-{i}", ip=ip, labels=kubehelp.APP, ports={"http": 8080, "grpc": 9090})
    return fakes
