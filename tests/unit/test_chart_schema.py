"""The Helm chart without an API server: schema, settings, RBAC shape and generated copies.

- values.schema.json rejects bad values (wrong types, negative durations and counts, unknown
  keys) and accepts good ones (`helm template` fails or succeeds).
- The ConfigMap holds every setting of `zenlead.settings.FIELDS`, and `settings.load` accepts it.
- The pod is "restricted"; the RBAC never touches secrets and never writes pods.
- charts/zen-lead/files/rules.yaml is deploy/prometheus/rules.yaml, the kustomize base is the
  chart's rendering, and appVersion is the package version.

helm comes from tests/controlplane/build.sh (`make controlplane`).
"""

from __future__ import annotations

import importlib.util
import subprocess
import tomllib
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests import helpers
from zenlead import settings
from zenlead.testing import assets

if TYPE_CHECKING:
    import pathlib

CHART = helpers.ROOT / "charts" / "zen-lead"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
VALUES = [pytest.param(None, id="defaults")] + [pytest.param(p, id=p.stem) for p in CI_VALUES]
# Settings the chart derives from the install instead of taking from controller.*.
DERIVED = {"kubeconfig", "namespaces", "leader_election_namespace"}
SCHEMA_ERROR = "values don't meet the specifications of the schema"


def template(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `helm template zen-lead charts/zen-lead -n zen-lead-system ARGS`."""
    cmd = [str(assets.find("helm")), "template", "zen-lead", str(CHART), "-n", "zen-lead-system"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, check=False)


def render(*args: str) -> list[dict[str, Any]]:
    """Return the rendered objects (the render must succeed)."""
    done = template(*args)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """Return the only object of `kind`."""
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


BAD = {
    "string count": ["--set", "controller.max_concurrent_reconciles=ten"],
    "string boolean": ["--set-string", "controller.leader_elect=yes"],
    "negative qps": ["--set", "controller.qps=-1"],
    "zero reconciles": ["--set", "controller.max_concurrent_reconciles=0"],
    "negative lease duration": ["--set", "controller.lease_duration_seconds=-15"],
    "negative renew deadline": ["--set", "controller.renew_deadline_seconds=-1"],
    "negative retry period": ["--set", "controller.retry_period_seconds=-2"],
    "negative api timeout": ["--set", "controller.api_timeout_seconds=-1"],
    "ratio above 1": ["--set", "controller.trace_sample_ratio=1.5"],
    "bad log level": ["--set", "controller.log_level=verbose"],
    "bad bind address": ["--set", "controller.metrics_bind_address=8080"],
    "unknown controller key": ["--set", "controller.max_reconciles=5"],
    "unknown top-level key": ["--set", "replicas=3"],
    "unknown rbac key": ["--set", "rbac.clusterWide=true"],
    "unknown image key": ["--set", "image.version=1"],
    "negative replicas": ["--set", "replicaCount=-1"],
    "string replicas": ["--set-string", "replicaCount=two"],
    "negative probe period": ["--set", "readinessProbe.periodSeconds=-5"],
    "negative grace period": ["--set", "terminationGracePeriodSeconds=-1"],
    "negative scrape interval": ["--set", "serviceMonitor.interval=-30s"],
    "bad duration unit": ["--set", "serviceMonitor.interval=30 seconds"],
    "bad namespace name": ["--set", "watchNamespaces={Not_A_Namespace}"],
    "namespaces not a list": ["--set", "watchNamespaces=team-a"],
    "port out of range": ["--set", "service.port=70000"],
    "HA without election": ["--set", "controller.leader_elect=false"],
    "bad pull policy": ["--set", "image.pullPolicy=Sometimes"],
}


@pytest.mark.parametrize("args", BAD.values(), ids=BAD.keys())
def test_schema_rejects(args: list[str]) -> None:
    """A bad value fails the render with a schema error."""
    done = template(*args)
    assert done.returncode != 0
    assert SCHEMA_ERROR in done.stderr, done.stderr


GOOD = {
    "single replica without election": [
        "--set",
        "replicaCount=1,controller.leader_elect=false",
    ],
    "tuned settings": [
        "--set",
        "controller.qps=0,controller.max_concurrent_reconciles=1000,controller.log_level=debug",
    ],
    # `--set` passes fractions as strings (a Helm limitation); --set-json or -f keep numbers.
    "fractional timings": [
        "--set-json",
        "controller.retry_period_seconds=0.5",
        "--set-json",
        "controller.api_timeout_seconds=0.1",
    ],
    "otlp endpoint": ["--set", "controller.otlp_endpoint=http://otel:4318/v1/traces"],
    "watch namespaces": ["--set", "watchNamespaces={team-a,team-b}"],
    "ipv6 bind": ["--set", "controller.metrics_bind_address=[::]:9090"],
    "percent PDB": ["--set", "podDisruptionBudget.minAvailable=50%"],
}


@pytest.mark.parametrize("args", GOOD.values(), ids=GOOD.keys())
def test_schema_accepts(args: list[str]) -> None:
    """Good values render."""
    render(*args)


def test_lease_timings_are_checked() -> None:
    """The render fails unless lease > renew deadline > retry period (what the controller needs)."""
    done = template("--set", "controller.renew_deadline_seconds=20")
    assert done.returncode != 0
    assert "lease_duration_seconds > renew_deadline_seconds" in done.stderr


def test_values_cover_every_setting() -> None:
    """values.yaml's controller.* is every setting the chart does not derive itself."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    names = {f.name for f in settings.FIELDS}
    assert set(values["controller"]) == names - DERIVED
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    assert set(schema["properties"]["controller"]["properties"]) == names - DERIVED
    assert schema["properties"]["controller"]["additionalProperties"] is False


@pytest.mark.parametrize("values", VALUES)
def test_configmap_is_a_valid_config_file(values: pathlib.Path | None, tmp_path: Any) -> None:
    """config.yaml names every setting and `settings.load` accepts it."""
    docs = render(*(["-f", str(values)] if values else []))
    text = one(docs, "ConfigMap")["data"]["config.yaml"]
    assert set(yaml.safe_load(text)) == {f.name for f in settings.FIELDS}
    path = tmp_path / "config.yaml"
    path.write_text(text)
    loaded = settings.load({}, {}, config_path=str(path))
    assert loaded.leader_elect
    assert loaded.kubeconfig is None
    assert loaded.leader_election_namespace == "zen-lead-system"
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "run",
        "--config",
        "/etc/zen-lead/config.yaml",
    ]


def test_namespaces_follow_rbac_scope() -> None:
    """Namespace-scoped: the release namespace; cluster-wide: every namespace."""

    def watched(*args: str) -> tuple[str, ...]:
        config = one(render(*args), "ConfigMap")["data"]["config.yaml"]
        return tuple(yaml.safe_load(config)["namespaces"])

    assert watched() == ("zen-lead-system",)
    assert watched("--set", "rbac.clusterScoped=true") == ()
    assert watched("--set", "watchNamespaces={a,b}") == ("a", "b")


def test_pod_is_restricted() -> None:
    """The pod meets Pod Security "restricted" and has probes, resources and the downward API."""
    docs = render()
    spec = one(docs, "Deployment")["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["replicas"] == 2
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    assert container["resources"]["limits"]
    assert container["resources"]["requests"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    policy = one(docs, "NetworkPolicy")["spec"]
    assert [p["port"] for p in policy["ingress"][0]["ports"]] == [8080, 8081]
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


@pytest.mark.parametrize("scope", ["namespaced", "cluster"])
def test_rbac_least_privilege(scope: str) -> None:
    """No rule grants secrets, pod writes, wildcards, or Lease deletion."""
    docs = render(*(["--set", "rbac.clusterScoped=true"] if scope == "cluster" else []))
    roles = [d for d in docs if d["kind"] in {"Role", "ClusterRole"}]
    kinds = {d["kind"] for d in roles}
    assert kinds == ({"Role", "ClusterRole"} if scope == "cluster" else {"Role"})
    for role in roles:
        for rule in role["rules"]:
            assert "*" not in rule["verbs"]
            assert "*" not in rule["resources"]
            assert "secrets" not in rule["resources"]
            if "pods" in rule["resources"]:
                assert set(rule["verbs"]) == {"get", "list", "watch"}
            if "leases" in rule["resources"]:
                assert set(rule["verbs"]) == {"get", "create", "update"}
                assert role["kind"] == "Role"
                assert role["metadata"]["namespace"] == "zen-lead-system"


def test_monitoring_objects() -> None:
    """ServiceMonitor keeps the metrics' labels with job zen-lead; PrometheusRule has the rules."""
    docs = render("--set", "serviceMonitor.enabled=true,prometheusRule.enabled=true")
    (endpoint,) = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True
    assert {"targetLabel": "job", "replacement": "zen-lead", "action": "replace"} in endpoint[
        "relabelings"
    ]
    rules = yaml.safe_load((helpers.ROOT / "deploy" / "prometheus" / "rules.yaml").read_text())
    assert one(docs, "PrometheusRule")["spec"]["groups"] == rules["groups"]
    assert not [d for d in render() if d["kind"] in {"ServiceMonitor", "PrometheusRule"}]


def test_rules_copy_is_identical() -> None:
    """charts/zen-lead/files/rules.yaml is byte-for-byte deploy/prometheus/rules.yaml."""
    source = (helpers.ROOT / "deploy" / "prometheus" / "rules.yaml").read_bytes()
    assert (CHART / "files" / "rules.yaml").read_bytes() == source, (
        "copy it: cp deploy/prometheus/rules.yaml charts/zen-lead/files/rules.yaml"
    )


def test_app_version_is_package_version() -> None:
    """Chart appVersion is pyproject's version; the chart version is SemVer."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((helpers.ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"]
    assert chart["version"] == "0.1.0"


def test_kustomize_base_is_the_chart_rendering() -> None:
    """deploy/kustomize/base is what render_base.py writes from the chart today."""
    path = helpers.ROOT / "deploy" / "kustomize" / "render_base.py"
    spec = importlib.util.spec_from_file_location("render_base", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.render(str(assets.find("helm")))
    base = helpers.ROOT / "deploy" / "kustomize" / "base"
    actual = {p.name: p.read_text() for p in base.glob("*.yaml")}
    assert actual == expected, "regenerate: .venv/bin/python deploy/kustomize/render_base.py"
