"""Fixtures for tests against the real kube-apiserver and etcd (see zenlead.testing).

- ``control_plane``: one control plane for the whole session.
- ``api``: an admin API client for it.
- ``namespace``: a fresh namespace per test.
- ``make_pod``: creates a Pod and optionally makes it "run" through ``pods/status``.

If the binaries are missing the fixture fails (never skips) with the command that builds them.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client
from zenlead.kube import client as kube_client
from zenlead.testing import controlplane, pods

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
    """Return ``make_pod(name, ip=None, ready=True, labels=...)``: create and maybe run a Pod."""

    def make(
        name: str,
        *,
        ip: str | None = None,
        ready: bool = True,
        labels: dict[str, str] | None = None,
    ) -> Any:
        core.create_namespaced_pod(namespace, pods.pod_manifest(name, labels=labels or {}))
        if ip is None:
            return core.read_namespaced_pod(name, namespace)
        return pods.mark_running(api, namespace, name, ip=ip, ready=ready)

    return make
