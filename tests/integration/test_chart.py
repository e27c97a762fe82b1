"""The Helm chart against the real API server: lint, render, dry-run create, and its RBAC.

- `helm lint` and `helm template` pass for the default values and each charts/zen-lead/ci file.
- Every rendered object (and the kustomize overlay) is accepted by the API server with a
  server-side dry-run create and strict field validation. ServiceMonitor and PrometheusRule are
  prometheus-operator CRDs the test server lacks: minimal CRDs (preserve-unknown-fields) are
  created first, so those objects are checked for apiVersion/kind/metadata, not their spec.
- With exactly the chart's RBAC (the controller impersonates the chart's ServiceAccount) a full
  failover works, and that identity is refused a pod patch and a secret read.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import exceptions
from urllib3 import HTTPHeaderDict

from tests import helpers
from tests.integration import kubehelp
from tests.integration.kubehelp import APP
from zenlead import settings
from zenlead.kube import client as kube_client
from zenlead.testing import assets, pods, running

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Callable, Iterator

    from zenlead.testing import controlplane

CHART = helpers.ROOT / "charts" / "zen-lead"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KUBE_VERSION = helpers.pinned_versions()["K8S_VERSION"]
VALUES = [pytest.param(None, id="defaults")] + [pytest.param(p, id=p.stem) for p in CI_VALUES]
# Namespaces the ci values files name in watchNamespaces; they must exist for the dry run.
CI_NAMESPACES = ("zen-lead-ci-a", "zen-lead-ci-b")
KUSTOMIZE_OVERLAY = helpers.ROOT / "deploy" / "kustomize" / "overlays" / "example"
LEASE = settings.Settings().leader_election_id
CRD_KINDS = (("servicemonitors", "ServiceMonitor"), ("prometheusrules", "PrometheusRule"))


def run(
    args: list[str], *, stdin: str | None = None, kubeconfig: pathlib.Path | None = None
) -> str:
    """Run a command; return stdout, or fail the test with its stderr."""
    env = os.environ | ({"KUBECONFIG": str(kubeconfig)} if kubeconfig else {})
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stderr}{done.stdout}"
    return done.stdout


def helm_template(namespace: str, *extra: str, values: pathlib.Path | None = None) -> str:
    """Return `helm template zen-lead charts/zen-lead -n namespace` output."""
    args = [str(assets.find("helm")), "template", "zen-lead", str(CHART), "-n", namespace]
    args += ["--kube-version", KUBE_VERSION, *extra]
    if values is not None:
        args += ["-f", str(values)]
    return run(args)


def kubectl(plane: controlplane.ControlPlane, *args: str, stdin: str | None = None) -> str:
    """Run kubectl as the admin of the test control plane."""
    return run([str(assets.find("kubectl")), *args], stdin=stdin, kubeconfig=plane.kubeconfig)


@pytest.fixture(scope="module")
def prepared(control_plane: controlplane.ControlPlane) -> controlplane.ControlPlane:
    """Create the prometheus-operator CRDs (minimal) and the ci files' namespaces once."""
    for plural, kind in CRD_KINDS:
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.monitoring.coreos.com"},
            "spec": {
                "group": "monitoring.coreos.com",
                "scope": "Namespaced",
                "names": {"plural": plural, "kind": kind},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
        kubectl(control_plane, "apply", "-f", "-", stdin=yaml.safe_dump(crd))
        kubectl(
            control_plane,
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            f"crd/{plural}.monitoring.coreos.com",
        )
    for name in CI_NAMESPACES:
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        kubectl(control_plane, "apply", "-f", "-", stdin=yaml.safe_dump(ns))
    return control_plane


@pytest.mark.parametrize("values", VALUES)
def test_helm_lint(values: pathlib.Path | None) -> None:
    """`helm lint --strict` passes."""
    args = [str(assets.find("helm")), "lint", "--strict", str(CHART)]
    args += ["--kube-version", KUBE_VERSION]
    out = run(args + (["-f", str(values)] if values else []))
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("values", VALUES)
def test_rendered_objects_accepted_by_api_server(
    prepared: controlplane.ControlPlane, namespace: str, values: pathlib.Path | None
) -> None:
    """`helm template` renders; the API server accepts every object (dry-run, strict fields)."""
    rendered = helm_template(namespace, values=values)
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ServiceAccount", "ConfigMap", "Service"} <= kinds
    out = kubectl(
        prepared, "apply", "--dry-run=server", "--validate=strict", "-f", "-", stdin=rendered
    )
    assert out.count("(server dry run)") == len(docs), out


def test_kustomize_overlay_accepted_by_api_server(prepared: controlplane.ControlPlane) -> None:
    """The kustomize example overlay builds, and the API server accepts every object."""
    rendered = kubectl(prepared, "kustomize", str(KUSTOMIZE_OVERLAY))
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    namespaces = [d for d in docs if d["kind"] == "Namespace"]
    # The namespace must exist for a dry run of the objects in it (a dry-run create of a
    # Namespace persists nothing).
    for ns in namespaces:
        kubectl(prepared, "apply", "-f", "-", stdin=yaml.safe_dump(ns))
    out = kubectl(
        prepared, "apply", "--dry-run=server", "--validate=strict", "-f", "-", stdin=rendered
    )
    assert out.count("(server dry run)") + out.count("unchanged") >= len(docs), out


# RBAC ------------------------------------------------------------------------------------------

RBAC_KINDS = frozenset(
    {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
)


class _ImpersonatingPool:
    """Wrap a urllib3 PoolManager to send both Impersonate-Group headers on every request.

    The kubernetes client keeps default headers in a dict (one value per name), but the API
    server reads one group per Impersonate-Group header, so the two groups are added here.
    """

    def __init__(self, pool: Any, groups: tuple[str, ...]) -> None:
        self._pool = pool
        self._groups = groups

    def request(self, method: str, url: str, *args: Any, headers: Any = None, **kw: Any) -> Any:
        merged = HTTPHeaderDict(headers or {})
        for group in self._groups:
            merged.add("Impersonate-Group", group)
        return self._pool.request(method, url, *args, headers=merged, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def impersonating_client(kubeconfig: pathlib.Path, namespace: str, account: str) -> Any:
    """Return an API client that acts as ServiceAccount `namespace/account` (admin impersonates)."""
    api_client = kube_client.connect(str(kubeconfig))
    api_client.set_default_header(
        "Impersonate-User", f"system:serviceaccount:{namespace}:{account}"
    )
    groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")
    api_client.rest_client.pool_manager = _ImpersonatingPool(
        api_client.rest_client.pool_manager, groups
    )
    return api_client


@pytest.fixture
def chart_rbac(control_plane: controlplane.ControlPlane, namespace: str) -> str:
    """Install the chart's RBAC (release and watched namespace = `namespace`); return the SA."""
    rendered = helm_template(namespace, "--set", f"watchNamespaces={{{namespace}}}")
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in RBAC_KINDS]
    assert {d["kind"] for d in docs} == {"ServiceAccount", "Role", "RoleBinding"}
    kubectl(control_plane, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    (account,) = [d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"]
    return str(account)


@pytest.fixture
def as_chart_sa(
    control_plane: controlplane.ControlPlane, namespace: str, chart_rbac: str
) -> Iterator[Callable[[], Any]]:
    """Return a factory of API clients impersonating the chart's ServiceAccount."""
    made: list[Any] = []

    def make() -> Any:
        made.append(impersonating_client(control_plane.kubeconfig, namespace, chart_rbac))
        return made[-1]

    yield make
    for api_client in made:
        with contextlib.suppress(Exception):
            api_client.close()


def test_chart_rbac_is_enough_for_a_failover(
    control_plane: controlplane.ControlPlane,
    api: Any,
    core: client.CoreV1Api,
    namespace: str,
    as_chart_sa: Callable[[], Any],
) -> None:
    """As the chart's ServiceAccount the controller elects web-0, then fails over to web-1."""
    who = client.AuthenticationV1Api(as_chart_sa()).create_self_subject_review({})
    assert who.status.user_info.username.startswith(f"system:serviceaccount:{namespace}:")
    assert f"system:serviceaccounts:{namespace}" in who.status.user_info.groups
    for i in range(3):
        core.create_namespaced_pod(
            namespace, pods.pod_manifest(f"web-{i}", labels=APP, ports={"http": 8080})
        )
        pods.mark_running(api, namespace, f"web-{i}", ip=f"10.244.0.{10 + i}")
    kubehelp.make_service(core, namespace)
    config = settings.Settings(
        kubeconfig=str(control_plane.kubeconfig),
        namespaces=(namespace,),
        metrics_bind_address="127.0.0.1:0",
        health_probe_bind_address="127.0.0.1:0",
        leader_election_namespace=namespace,
        lease_duration_seconds=3.0,
        renew_deadline_seconds=2.0,
        retry_period_seconds=0.2,
    )
    with running.RunningController(config, api_client=as_chart_sa()) as ctl:
        ctl.wait_synced()
        kubehelp.wait_leader(api, namespace, "web-0")
        pods.mark_running(api, namespace, "web-0", ip="10.244.0.10", ready=False)
        kubehelp.wait_leader(api, namespace, "web-1")
        kubehelp.wait_event(core, namespace, reason="LeaderElected")
        lease = client.CoordinationV1Api(api).read_namespaced_lease(
            config.leader_election_id, namespace
        )
        assert lease.spec.holder_identity == ctl.controller.identity


def test_chart_rbac_is_not_more(
    namespace: str, core: client.CoreV1Api, as_chart_sa: Callable[[], Any]
) -> None:
    """The chart's ServiceAccount may not patch a pod or read a secret (403)."""
    core.create_namespaced_pod(namespace, pods.pod_manifest("web-0", labels=APP))
    core.create_namespaced_secret(namespace, {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    sa_core = client.CoreV1Api(as_chart_sa())
    sa_leases = client.CoordinationV1Api(sa_core.api_client)
    sa_core.read_namespaced_pod("web-0", namespace)  # reading pods is allowed
    attempts = {
        "patch pod": lambda: sa_core.patch_namespaced_pod(
            "web-0", namespace, {"metadata": {"labels": {"x": "y"}}}
        ),
        "read secret": lambda: sa_core.read_namespaced_secret("s", namespace),
        "list secrets": lambda: sa_core.list_namespaced_secret(namespace),
        "delete pod": lambda: sa_core.delete_namespaced_pod("web-0", namespace),
        "delete lease": lambda: sa_leases.delete_namespaced_lease(LEASE, namespace),
    }
    for what, attempt in attempts.items():
        with pytest.raises(exceptions.ApiException) as caught:
            attempt()
        assert caught.value.status == 403, what
