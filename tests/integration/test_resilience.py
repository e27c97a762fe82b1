"""Bad input and persistent failures on a running controller: named Warnings, parking, routing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client

from tests import helpers
from tests.integration import kubehelp
from tests.integration.kubehelp import APP
from zenlead import describe
from zenlead.kube import api as kube_api
from zenlead.kube import client as kube_client

if TYPE_CHECKING:
    from collections.abc import Callable

    from zenlead.testing import controlplane, running

    Start = Callable[..., running.RunningController]


@pytest.fixture
def three_pods(make_pod: Callable[..., Any]) -> None:
    """Create web-0..2, Running and Ready on 10.244.0.10..12 (web-0 is the oldest by name)."""
    for i in range(3):
        make_pod(f"web-{i}", ip=f"10.244.0.{10 + i}", labels=APP, ports={"http": 8080})


@pytest.mark.usefixtures("three_pods")
@pytest.mark.parametrize(
    ("annotations", "key"),
    [
        pytest.param(
            {"zen-lead.io/probe": "http", "zen-lead.io/probe-fall": "\u00b2"},
            "zen-lead.io/probe-fall",
            id="unicode-digit",
        ),
        pytest.param(
            {"zen-lead.io/probe": "http", "zen-lead.io/probe-port": "0"},
            "zen-lead.io/probe-port",
            id="port-zero",
        ),
        pytest.param(
            {"zen-lead.io/probe": "http", "zen-lead.io/probe-host": "evil /path"},
            "zen-lead.io/probe-host",
            id="host-with-space",
        ),
        pytest.param(
            {"zen-lead.io/probe": "tcp", "zen-lead.io/probe-tcp-expect": "(?:x{65535}){65535}"},
            "zen-lead.io/probe-tcp-expect",
            id="regex-bomb",
        ),
        pytest.param(
            {"zen-lead.io/probe": "http", "zen-lead.io/probe-port": "nope"},
            "zen-lead.io/probe-port",
            id="port-name-no-pod-has",
        ),
        pytest.param(
            {"zen-lead.io/min-ready-duration": "\u0661s"},
            "zen-lead.io/min-ready-duration",
            id="arabic-indic-duration",
        ),
    ],
)
def test_invalid_value_is_named_and_routing_continues(
    core: client.CoreV1Api,
    api: Any,
    namespace: str,
    start_controller: Start,
    annotations: dict[str, str],
    key: str,
) -> None:
    """The Warning names the key that was wrong; the Service is routed on the Ready rules."""
    kubehelp.make_service(core, namespace, annotations=kubehelp.ENABLED | annotations)
    ctl = start_controller()
    kubehelp.wait_leader(api, namespace, "web-0")
    event = kubehelp.wait_event(core, namespace, reason="InvalidAnnotation")
    assert event.message.startswith(f"{key}: ")
    assert ctl.get("/healthz") == 200
    assert kubehelp.metric(ctl.scrape(), "zen_lead_reconciliation_errors_total") is None


def test_enabled_typo_is_reported(
    core: client.CoreV1Api, api: Any, namespace: str, start_controller: Start
) -> None:
    """zen-lead.io/enabled: "True" is not "true": a Warning says so, nothing is created."""
    kubehelp.make_service(core, namespace, annotations={"zen-lead.io/enabled": "True"})
    start_controller()
    event = kubehelp.wait_event(core, namespace, reason="InvalidAnnotation")
    assert event.message.startswith("zen-lead.io/enabled: 'True' is not true")
    assert kubehelp.read_slice(api, namespace, "web-leader") is None


@pytest.mark.usefixtures("three_pods")
def test_failing_service_is_parked_then_recovers(
    control_plane: controlplane.ControlPlane,
    core: client.CoreV1Api,
    api: Any,
    namespace: str,
    start_controller: Start,
) -> None:
    """A Service that keeps failing is parked (Warning, gauge, status Failing); then it heals.

    The failure is real: a foreign EndpointSlice holds the leader slice's name, so every
    create fails with AlreadyExists. Another Service in the namespace is routed meanwhile.
    """
    foreign = {
        "metadata": {"name": "web-leader", "labels": {"kubernetes.io/service-name": "other"}},
        "addressType": "IPv4",
        "endpoints": [],
    }
    discovery = client.DiscoveryV1Api(api)
    discovery.create_namespaced_endpoint_slice(namespace, foreign)
    kubehelp.make_service(core, namespace)
    kubehelp.make_service(core, namespace, "db")
    ctl = start_controller(dead_letter_after_seconds=2.0, dead_letter_retry_seconds=2.0)
    kubehelp.wait_leader(api, namespace, "web-0", name="db-leader")
    kubehelp.wait_event(core, namespace, reason="EndpointSliceConflict")
    event = kubehelp.wait_event(core, namespace, reason="ReconcileFailing")
    assert "keeping the last routing" in event.message
    kubehelp.wait_metric(ctl.scrape, "zen_lead_dead_letter_services", namespace=namespace)
    status = _status(control_plane, namespace)
    assert _state(status, "web") == "Failing"
    assert _state(status, "db") == "Routing"
    discovery.delete_namespaced_endpoint_slice("web-leader", namespace)
    kubehelp.wait_leader(api, namespace, "web-0")
    kubehelp.wait_event(core, namespace, reason="ReconcileRecovered")
    helpers.poll(
        lambda: (
            kubehelp.metric(ctl.scrape(), "zen_lead_dead_letter_services", namespace=namespace) == 0
        ),
        timeout=10,
        what="the dead-letter gauge back at 0",
    )
    status = _status(control_plane, namespace)
    assert _state(status, "web") == "Routing"


def _status(plane: controlplane.ControlPlane, namespace: str) -> str:
    """Return `zen-lead status -n namespace` as the CLI prints it."""
    reader = kube_api.Api(kube_client.connect(str(plane.kubeconfig)))
    try:
        return describe.status(reader, namespace)
    finally:
        reader.api_client.close()


def _state(table: str, service: str) -> str:
    for line in table.splitlines()[1:]:
        cells = line.split()
        if cells[1] == service:
            return cells[-1]
    raise AssertionError(f"{service} not in status:\n{table}")
