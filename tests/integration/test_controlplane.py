"""The test control plane is a real kube-apiserver: it validates, authorizes, reports versions."""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client
from kubernetes.client import exceptions

from tests import helpers
from zenlead.kube import client as kube_client
from zenlead.testing import assets

if TYPE_CHECKING:
    from collections.abc import Callable

    from zenlead.testing import controlplane


def _slice(name: str, endpoints: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "web-leader"}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


class TestVersions:
    """Binaries are built with version ldflags, so they report the pinned release."""

    def test_server_version_through_python_client(self, api: Any) -> None:
        """/version, read through the kubernetes client, names the pinned Kubernetes release."""
        version = kube_client.server_version(api)
        pins = helpers.pinned_versions()
        assert version.git_version == pins["K8S_VERSION"]
        assert (version.major, version.minor) == (pins["K8S_MAJOR"], pins["K8S_MINOR"])

    def test_kubectl_client_and_server_versions(
        self, control_plane: controlplane.ControlPlane
    ) -> None:
        """Kubectl reports the pinned version for itself and for the server."""
        out = subprocess.run(
            [
                assets.find("kubectl"),
                "--kubeconfig",
                control_plane.kubeconfig,
                "version",
                "-o=json",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        report = json.loads(out)
        expected = helpers.pinned_versions()["K8S_VERSION"]
        assert report["clientVersion"]["gitVersion"] == expected
        assert report["serverVersion"]["gitVersion"] == expected

    def test_helm_version(self) -> None:
        """Helm reports the pinned release, not a development placeholder."""
        out = subprocess.run(
            [assets.find("helm"), "version", "--short"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        assert out.strip().split("+")[0] == helpers.pinned_versions()["HELM_VERSION"]


class TestObjects:
    """Namespaces, Services and Pods behave as on a real cluster without a kubelet."""

    def test_namespace_and_service(self, core: client.CoreV1Api, namespace: str) -> None:
        """A Service created in a fresh namespace gets a ClusterIP from the service range."""
        assert core.read_namespace(namespace).status.phase == "Active"
        body = {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        }
        core.create_namespaced_service(namespace, body)
        svc = core.read_namespaced_service("web", namespace)
        assert svc.spec.cluster_ip.startswith("10.0.0.")
        assert svc.spec.selector == {"app": "web"}

    def test_pod_made_ready_by_status_patch(
        self, core: client.CoreV1Api, namespace: str, make_pod: Callable[..., Any]
    ) -> None:
        """A new Pod is Pending; the status patch makes it Running and Ready with an IP."""
        pending = make_pod("web-0", labels={"app": "web"})
        assert pending.status.phase == "Pending"
        make_pod("web-1", labels={"app": "web"}, ip="10.244.0.11")
        pod = core.read_namespaced_pod("web-1", namespace)
        assert pod.status.phase == "Running"
        assert pod.status.pod_ip == "10.244.0.11"
        ready = next(c for c in pod.status.conditions if c.type == "Ready")
        assert ready.status == "True"
        assert ready.last_transition_time is not None

    def test_pod_not_ready(
        self, core: client.CoreV1Api, namespace: str, make_pod: Callable[..., Any]
    ) -> None:
        """The helper can report a running pod that is not Ready."""
        make_pod("web-2", labels={"app": "web"}, ip="10.244.0.12", ready=False)
        pod = core.read_namespaced_pod("web-2", namespace)
        assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "False"


class TestEndpointSliceValidation:
    """The API server's EndpointSlice validation is real (upstream zen-lead's §11-1 bug)."""

    def test_empty_endpoints_accepted(self, api: Any, namespace: str) -> None:
        """A slice with ``endpoints: []`` is valid: that is how 'no leader' is written."""
        discovery = client.DiscoveryV1Api(api)
        discovery.create_namespaced_endpoint_slice(namespace, _slice("web-leader", []))
        stored = discovery.read_namespaced_endpoint_slice("web-leader", namespace)
        assert stored.endpoints in (None, [])

    @pytest.mark.parametrize(
        ("endpoint", "message"),
        [
            pytest.param({"addresses": []}, "addresses", id="no-addresses"),
            pytest.param({"addresses": ["127.0.0.1"]}, "loopback", id="loopback"),
        ],
    )
    def test_invalid_endpoint_rejected(
        self, api: Any, namespace: str, endpoint: dict[str, Any], message: str
    ) -> None:
        """An endpoint without addresses, or with a loopback one, is refused with 422."""
        discovery = client.DiscoveryV1Api(api)
        with pytest.raises(exceptions.ApiException) as caught:
            discovery.create_namespaced_endpoint_slice(namespace, _slice("bad", [endpoint]))
        assert caught.value.status == 422
        assert message in caught.value.body


class TestAuthorization:
    """RBAC is enforced: an identity gets only what a binding grants it."""

    USER = "system:serviceaccount:default:no-rights"

    def _impersonating(self, control_plane: controlplane.ControlPlane) -> Any:
        api = kube_client.connect(str(control_plane.kubeconfig))
        api.set_default_header("Impersonate-User", self.USER)
        return api

    def test_identity_without_rbac_is_denied(
        self, control_plane: controlplane.ControlPlane, namespace: str
    ) -> None:
        """Listing pods as an identity with no bindings is forbidden (403)."""
        api = self._impersonating(control_plane)
        with pytest.raises(exceptions.ApiException) as caught:
            client.CoreV1Api(api).list_namespaced_pod(namespace)
        api.close()
        assert caught.value.status == 403
        assert self.USER in caught.value.body

    def test_binding_grants_exactly_its_rules(
        self, control_plane: controlplane.ControlPlane, api: Any, namespace: str
    ) -> None:
        """After a Role grants pod reads, the same identity lists pods but still cannot write."""
        rbac = client.RbacAuthorizationV1Api(api)
        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "read-pods"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "read-pods"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "read-pods",
                },
                "subjects": [
                    {"kind": "User", "name": self.USER, "apiGroup": "rbac.authorization.k8s.io"}
                ],
            },
        )
        impersonated = self._impersonating(control_plane)
        core = client.CoreV1Api(impersonated)
        # RBAC bindings take effect through the authorizer's informer; poll briefly.
        helpers.poll(
            lambda: _can_list(core, namespace), timeout=10, what="the RoleBinding to take effect"
        )
        with pytest.raises(exceptions.ApiException) as caught:
            core.create_namespaced_config_map(namespace, {"metadata": {"name": "x"}})
        impersonated.close()
        assert caught.value.status == 403


def _can_list(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.list_namespaced_pod(namespace)
    except exceptions.ApiException as exc:
        if exc.status != 403:
            raise
        return False
    return True
