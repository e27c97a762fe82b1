"""Active probing end to end: real API server, real controller, real health servers on pod IPs."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests import helpers
from tests.integration import kubehelp
from zenlead import cli, probeconfig

if TYPE_CHECKING:
    from collections.abc import Callable

    from kubernetes import client

    from probes import testing
    from zenlead.testing import running

    Start = Callable[..., running.RunningController]

FAST = {  # Quick timings so tests stay short; the defaults are tested by the benchmark.
    "zen-lead.io/probe-interval": "300ms",
    "zen-lead.io/probe-timeout": "150ms",
    "zen-lead.io/probe-fast-interval": "50ms",
    "zen-lead.io/probe-candidate-interval": "300ms",
}
HTTP = {"zen-lead.io/probe": "http", "zen-lead.io/probe-path": "/healthz"} | FAST


def _annotations(extra: dict[str, str]) -> dict[str, str]:
    return kubehelp.ENABLED | extra


def _probe_states(core: client.CoreV1Api, namespace: str) -> dict[str, str]:
    svc = core.read_namespaced_service("web-leader", namespace)
    return json.loads((svc.metadata.annotations or {}).get("zen-lead.io/probe-state", "{}"))


def _wait_all_up(core: client.CoreV1Api, namespace: str, count: int = 3) -> None:
    helpers.poll(
        lambda: list(_probe_states(core, namespace).values()).count("up") == count,
        timeout=15,
        what=f"{count} pods probed up",
    )


def _wait_down_alone(
    core: client.CoreV1Api, namespace: str, pod: str, annotations: dict[str, str]
) -> None:
    """Wait until `pod` is probed down and its failure is older than the panic window.

    A second failure inside that window would count as correlated (panic: keep the leader);
    these tests want two independent failures.
    """
    helpers.poll(
        lambda: _probe_states(core, namespace).get(pod) == "down",
        timeout=10,
        what=f"{pod} probed down",
    )
    config, _ = probeconfig.parse(annotations)
    assert config is not None
    seen_down = time.monotonic()
    helpers.poll(
        lambda: time.monotonic() - seen_down > config.panic_window_seconds,
        timeout=config.panic_window_seconds + 5,
        what="the panic window to pass",
    )


def _bound(annotations: dict[str, str], kind: str) -> float:
    config, problems = probeconfig.parse(annotations)
    assert config is not None, problems
    return config.detection_bounds()[kind]


class TestFailover:
    """A leader that fails its probe loses its traffic within the configured bound."""

    @pytest.mark.parametrize(
        ("mode", "bound_kind"),
        [pytest.param("hang", "hung", id="hung"), pytest.param("error", "negative", id="503")],
    )
    def test_http_failure(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        pods3: list[testing.FakePod],
        start_controller: Start,
        mode: str,
        bound_kind: str,
    ) -> None:
        """A hung leader (TCP accepted, no answer) or an HTTP 503 moves the slice to web-1."""
        kubehelp.make_service(core, namespace, annotations=_annotations(HTTP))
        ctl = start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        _wait_all_up(core, namespace)
        start = time.monotonic()
        pods3[0].http_mode = mode
        kubehelp.wait_leader(api, namespace, "web-1", timeout=10)
        elapsed = time.monotonic() - start
        # The bound covers detection; the slice write adds milliseconds.
        assert elapsed <= _bound(HTTP, bound_kind) + 0.5, elapsed
        labels = {"service": "web", "reason": "probe_failed"}
        assert kubehelp.wait_metric(ctl.scrape, "zen_lead_failover_count_total", **labels) == 1
        kubehelp.wait_metric(ctl.scrape, "zen_lead_failover_latency_seconds_count", **labels)
        assert kubehelp.metric(ctl.scrape(), "zen_lead_probes_total", kind="http") is not None

    def test_phi_detector_fails_over_on_an_improbable_silence(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        pods3: list[testing.FakePod],
        start_controller: Start,
    ) -> None:
        """With probe-detector phi, a hung leader with a fast history is down on its silence."""
        phi = HTTP | {
            "zen-lead.io/probe-detector": "phi",
            "zen-lead.io/probe-phi-acceptable-pause": "100ms",
        }
        kubehelp.make_service(core, namespace, annotations=_annotations(phi))
        ctl = start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        _wait_all_up(core, namespace)
        # Three pods every 300 ms: 75 passes give the leader the 20 answers phi needs.
        helpers.poll(
            lambda: (
                (kubehelp.metric(ctl.scrape(), "zen_lead_probes_total", result="success") or 0)
                >= 75
            ),
            timeout=30,
            what="a latency history",
        )
        pods3[0].http_mode = "hang"
        kubehelp.wait_leader(api, namespace, "web-1", timeout=10)
        confirmed = {"kind": "http", "outcome": "confirmed"}
        assert kubehelp.wait_metric(ctl.scrape, "zen_lead_probe_suspicions_total", **confirmed) == 1
        labels = {"service": "web", "reason": "probe_failed"}
        assert kubehelp.wait_metric(ctl.scrape, "zen_lead_failover_count_total", **labels) == 1

    def test_grpc_not_serving_is_pushed(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        pods3: list[testing.FakePod],
        pod_network: testing.PodNetwork,
        start_controller: Start,
    ) -> None:
        """With polls 10 s apart, NOT_SERVING still fails over in about a second (Watch)."""
        slow = {
            "zen-lead.io/probe": "grpc",
            "zen-lead.io/probe-port": "grpc",
            "zen-lead.io/probe-interval": "10s",
            "zen-lead.io/probe-timeout": "1s",
            "zen-lead.io/probe-candidate-interval": "10s",
        }
        kubehelp.make_service(core, namespace, annotations=_annotations(slow))
        start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        _wait_all_up(core, namespace)
        start = time.monotonic()
        pod_network.set_serving(pods3[0].ip, serving=False)
        kubehelp.wait_leader(api, namespace, "web-1", timeout=8)
        assert time.monotonic() - start < 3.0

    def test_tcp_expect(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        pods3: list[testing.FakePod],
        start_controller: Start,
    ) -> None:
        """A synthetic ROLE check routes only to a pod answering master."""
        pods3[1].tcp_role = "slave"
        tcp = {
            "zen-lead.io/probe": "tcp",
            "zen-lead.io/probe-port": "6379",
            "zen-lead.io/probe-tcp-send": "ROLE\\r\\n",
            "zen-lead.io/probe-tcp-expect": "master",
        } | FAST
        kubehelp.make_service(core, namespace, annotations=_annotations(tcp))
        start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        _wait_down_alone(core, namespace, "web-1", tcp)
        pods3[0].tcp_role = "slave"
        kubehelp.wait_leader(api, namespace, "web-2", timeout=10)


class TestDecisions:
    """Candidates must pass; all failing is panic; no fail-back."""

    def test_failing_candidate_is_never_chosen(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        pods3: list[testing.FakePod],
        start_controller: Start,
    ) -> None:
        """web-1 fails its probe, so a failing web-0 hands over to web-2."""
        kubehelp.make_service(core, namespace, annotations=_annotations(HTTP))
        start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        _wait_all_up(core, namespace)
        pods3[1].http_mode = "error"
        _wait_down_alone(core, namespace, "web-1", HTTP)
        pods3[0].http_mode = "error"
        kubehelp.wait_leader(api, namespace, "web-2", timeout=10)

    def test_all_failing_is_panic(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        pods3: list[testing.FakePod],
        start_controller: Start,
    ) -> None:
        """Every pod unreachable at once keeps the leader, with a panic Warning and metric."""
        kubehelp.make_service(core, namespace, annotations=_annotations(HTTP))
        ctl = start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        _wait_all_up(core, namespace)
        for fake in pods3:
            fake.http_mode = "hang"
        kubehelp.wait_event(core, namespace, reason="ProbePanic")
        assert kubehelp.wait_metric(ctl.scrape, "zen_lead_probe_panic", service="web") == 1
        assert kubehelp.leader_of(kubehelp.read_slice(api, namespace, "web-leader")) == "web-0"
        assert kubehelp.metric(ctl.scrape(), "zen_lead_failover_count_total") is None
        for fake in pods3:
            fake.http_mode = "ok"
        helpers.poll(
            lambda: kubehelp.metric(ctl.scrape(), "zen_lead_probe_panic", service="web") == 0,
            timeout=15,
            what="panic to clear",
        )
        kubehelp.wait_event(core, namespace, reason="ProbePanicCleared")

    def test_every_pod_answering_503_is_no_panic(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        pods3: list[testing.FakePod],
        start_controller: Start,
    ) -> None:
        """Answers prove the network works: no panic; with no candidate up, the leader stays."""
        kubehelp.make_service(core, namespace, annotations=_annotations(HTTP))
        ctl = start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        _wait_all_up(core, namespace)
        for fake in pods3:
            fake.http_mode = "error"
        helpers.poll(
            lambda: list(_probe_states(core, namespace).values()).count("down") == 3,
            timeout=15,
            what="every pod probed down",
        )
        assert kubehelp.metric(ctl.scrape(), "zen_lead_probe_panic", service="web") == 0
        assert not kubehelp.events(core, namespace, reason="ProbePanic")
        assert kubehelp.leader_of(kubehelp.read_slice(api, namespace, "web-leader")) == "web-0"

    def test_recovered_leader_does_not_take_back(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        pods3: list[testing.FakePod],
        start_controller: Start,
    ) -> None:
        """After web-0 recovers and probes up again, web-1 keeps leading."""
        kubehelp.make_service(core, namespace, annotations=_annotations(HTTP))
        start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        _wait_all_up(core, namespace)
        pods3[0].http_mode = "error"
        kubehelp.wait_leader(api, namespace, "web-1", timeout=10)
        pods3[0].http_mode = "ok"
        _wait_all_up(core, namespace)
        assert kubehelp.leader_of(kubehelp.read_slice(api, namespace, "web-leader")) == "web-1"


class TestBadInput:
    """Invalid annotations and hostile pods are handled safely."""

    def test_invalid_annotation_falls_back_to_ready(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        pods3: list[testing.FakePod],
        start_controller: Start,
    ) -> None:
        """Timeout >= interval gives a Warning naming the key; routing follows Ready only."""
        bad = HTTP | {"zen-lead.io/probe-timeout": "2s", "zen-lead.io/probe-interval": "1s"}
        kubehelp.make_service(core, namespace, annotations=_annotations(bad))
        start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        event = kubehelp.wait_event(
            core, namespace, reason="InvalidAnnotation", contains="zen-lead.io/probe-timeout"
        )
        assert "Ready-only" in event.message
        pods3[0].http_mode = "error"  # Not probed: this must not move the leader.
        assert _probe_states(core, namespace) == {}
        assert kubehelp.leader_of(kubehelp.read_slice(api, namespace, "web-leader")) == "web-0"

    def test_endless_body_and_redirect(
        self,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        pods3: list[testing.FakePod],
        start_controller: Start,
    ) -> None:
        """An endless body is read only up to the cap; a redirect elsewhere is not followed.

        With expected statuses 200-299, the 302 is a failure of web-0 (nobody contacts the
        other host); the endless 200 of web-1 passes on its status alone and web-1 leads.
        """
        strict = HTTP | {"zen-lead.io/probe-expected-status": "200-299"}
        kubehelp.make_service(core, namespace, annotations=_annotations(strict))
        ctl = start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        _wait_all_up(core, namespace)
        pods3[1].http_mode = "endless"
        pods3[2].http_mode = "error"
        _wait_down_alone(core, namespace, "web-2", strict)
        pods3[0].http_mode = "redirect"
        kubehelp.wait_leader(api, namespace, "web-1", timeout=10)
        assert _probe_states(core, namespace)["web-1"] == "up"
        assert ctl.get("/healthz") == 200


class TestCli:
    """Status and explain show each pod's probe state."""

    def test_status_and_explain_show_probes(
        self,
        control_plane: Any,
        core: client.CoreV1Api,
        api: Any,
        namespace: str,
        pods3: list[testing.FakePod],
        start_controller: Start,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """After web-0 fails its probe, status shows 2/3 up and explain marks web-0 down."""
        kubehelp.make_service(core, namespace, annotations=_annotations(HTTP))
        start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        _wait_all_up(core, namespace)
        pods3[0].http_mode = "error"
        kubehelp.wait_leader(api, namespace, "web-1", timeout=10)
        _wait_all_up(core, namespace, count=2)
        target = ["--kubeconfig", str(control_plane.kubeconfig), "-n", namespace]
        assert cli.main(["status", *target]) == 0
        row = next(line for line in capsys.readouterr().out.splitlines() if " web " in f" {line} ")
        assert "2/3 up" in row
        assert "(probe_failed)" in row
        assert cli.main(["explain", "web", *target]) == 0
        rows = {
            line.split()[0]: line.split()
            for line in capsys.readouterr().out.splitlines()
            if line.startswith("web-")
        }
        assert rows["web-0"][5] == "down"
        assert rows["web-1"][5] == "up"
        assert "LEADER" in rows["web-1"]
