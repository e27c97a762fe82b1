"""``zen-lead status`` and ``zen-lead explain`` against a real cluster and a running controller."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests import helpers
from tests.integration import kubehelp
from tests.integration.kubehelp import APP
from zenlead import cli
from zenlead.testing import pods

if TYPE_CHECKING:
    from collections.abc import Callable

    import pytest
    from kubernetes import client

    from zenlead.testing import controlplane, running


def test_status_and_explain_after_failover(
    control_plane: controlplane.ControlPlane,
    core: client.CoreV1Api,
    api: Any,
    namespace: str,
    make_pod: Callable[..., Any],
    start_controller: Callable[..., running.RunningController],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Status shows the new leader, the failover reason and latency; explain gives each verdict."""
    for i in range(3):
        make_pod(f"web-{i}", ip=f"10.244.0.{10 + i}", labels=APP)
    kubehelp.make_service(core, namespace)
    kubehelp.make_service(core, namespace, "orphan", selector={"app": "none"})
    start_controller()
    kubehelp.wait_leader(api, namespace, "web-0")
    pods.mark_running(api, namespace, "web-0", ip="10.244.0.10", ready=False)
    kubehelp.wait_leader(api, namespace, "web-1")
    kubehelp.wait_leader(api, namespace, None, name="orphan-leader")
    target = ["--kubeconfig", str(control_plane.kubeconfig), "-n", namespace]

    def latency_recorded() -> bool:
        svc = core.read_namespaced_service("web-leader", namespace)
        return bool(svc.metadata.annotations.get("zen-lead.io/last-failover-latency-seconds"))

    helpers.poll(latency_recorded, timeout=15, what="the failover to be recorded")
    assert cli.main(["status", *target]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "NAMESPACE",
        "SERVICE",
        "LEADER",
        "SINCE",
        "LAST",
        "FAILOVER",
        "LATENCY",
        "PROBES",
        "STATE",
    ]
    web = next(line.split() for line in out if " web " in f" {line} ")
    assert web[2] == "web-1"
    assert "(notReady)" in web
    assert web[-3].endswith("ms")
    assert web[-2] == "-"  # No probe configured.
    assert web[-1] == "Routing"
    orphan = next(line.split() for line in out if "orphan" in line)
    assert orphan[-1] == "NoLeader"

    assert cli.main(["explain", "web", *target]) == 0
    text = capsys.readouterr().out
    assert "current leader (from the EndpointSlice): web-1" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith("web-")}
    assert "LEADER" in rows["web-1"]
    assert "notReady" in rows["web-0"]
    assert "candidate" in rows["web-2"]
