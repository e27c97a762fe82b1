"""Leader selection: oldest qualifying pod, stickiness, min-ready wait and failure causes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from zenlead import leader, model, ports
from zenlead.svcconfig import ServiceConfig

NOW = 1_000_000.0
HTTP = model.ContainerPort(name="http", port=8080, protocol="TCP")
NUMERIC_PORTS: list[dict[str, Any]] = [{"name": "web", "port": 80, "targetPort": 8080}]
NAMED_PORTS: list[dict[str, Any]] = [{"name": "web", "port": 80, "targetPort": "http"}]
STICKY = ServiceConfig(leader_service_name="web-leader")
NOT_STICKY = ServiceConfig(leader_service_name="web-leader", sticky=False)


def pod(name: str, *, created: float = 100.0, **changes: Any) -> model.Pod:
    """Return a pod that qualifies to lead (Ready for an hour), with `changes` applied."""
    base = model.Pod(
        namespace="ns",
        name=name,
        uid=f"uid-{name}",
        labels={"app": "web"},
        created=created,
        deleting=False,
        node_name="node-1",
        phase="Running",
        ip="10.0.0.1",
        ready=True,
        ready_since=NOW - 3600.0,
        ports=(HTTP,),
    )
    return dataclasses.replace(base, **changes)


def decide(
    pods: list[model.Pod],
    *,
    current: str | None = None,
    config: ServiceConfig = STICKY,
    source_ports: list[dict[str, Any]] | None = None,
    unhealthy: dict[str, str] | None = None,
    probe_up: set[str] | None = None,
    panic: bool = False,
) -> leader.Decision:
    """Call leader.decide at NOW with the current leader given by pod name."""
    return leader.decide(
        pods,
        current_uid=f"uid-{current}" if current else None,
        config=config,
        source_ports=NUMERIC_PORTS if source_ports is None else source_ports,
        now=NOW,
        unhealthy=unhealthy,
        probe_up=probe_up,
        panic=panic,
    )


def leader_name(decision: leader.Decision) -> str | None:
    """Return the name of the chosen leader, or None."""
    return decision.leader.name if decision.leader else None


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        pytest.param([pod("a", created=100.0)], "a", id="single"),
        pytest.param(
            [pod("young", created=300.0), pod("old", created=100.0), pod("mid", created=200.0)],
            "old",
            id="oldest-wins",
        ),
        pytest.param(
            [pod("b", created=100.0), pod("c", created=100.0), pod("a", created=100.0)],
            "a",
            id="tie-broken-by-name",
        ),
        pytest.param(
            [pod("old", created=100.0, ready=False), pod("young", created=200.0)],
            "young",
            id="oldest-not-ready-skipped",
        ),
    ],
)
def test_first_election(pods: list[model.Pod], expected: str) -> None:
    """Without a current leader the oldest qualifying pod (then by name) leads."""
    decision = decide(pods)
    assert leader_name(decision) == expected
    assert decision.cause is None
    assert decision.previous_uid is None
    assert decision.changed
    assert decision.why == "oldest qualifying pod"
    assert decision.requeue_after is None


def test_no_pods_no_leader() -> None:
    """Without pods there is no leader, no cause and nothing to wait for."""
    decision = decide([])
    assert decision.leader is None
    assert decision.verdicts == ()
    assert decision.cause is None
    assert decision.why == "no pod qualifies"
    assert decision.requeue_after is None
    assert decision.slice_ports == ()
    assert not decision.changed


def test_no_pods_with_current_leader_is_deleted() -> None:
    """When every pod is gone the old leader's cause is "deleted" and nobody leads."""
    decision = decide([], current="a")
    assert decision.leader is None
    assert decision.cause == "deleted"
    assert decision.previous_uid == "uid-a"
    assert decision.changed


def test_sticky_keeps_a_qualifying_leader() -> None:
    """Sticky (default) keeps the current leader even when an older pod qualifies."""
    pods = [pod("old", created=100.0), pod("current", created=200.0)]
    decision = decide(pods, current="current")
    assert leader_name(decision) == "current"
    assert decision.cause is None
    assert not decision.changed
    assert decision.why == "current leader still qualifies"


def test_not_sticky_returns_to_oldest() -> None:
    """With sticky=false the oldest qualifying pod takes over and the cause is "preempted"."""
    pods = [pod("old", created=100.0), pod("current", created=200.0)]
    decision = decide(pods, current="current", config=NOT_STICKY)
    assert leader_name(decision) == "old"
    assert decision.cause == "preempted"
    assert decision.previous_uid == "uid-current"
    assert decision.changed


def test_not_sticky_keeps_oldest_current_leader() -> None:
    """With sticky=false a current leader that is also the oldest stays, without a cause."""
    pods = [pod("current", created=100.0), pod("young", created=200.0)]
    decision = decide(pods, current="current", config=NOT_STICKY)
    assert leader_name(decision) == "current"
    assert decision.cause is None
    assert not decision.changed
    assert decision.why == "current leader is the oldest qualifying pod"


def test_leader_deleted() -> None:
    """A current leader missing from the pods is replaced, with cause "deleted"."""
    pods = [pod("b", created=200.0), pod("c", created=300.0)]
    decision = decide(pods, current="a")
    assert leader_name(decision) == "b"
    assert decision.cause == "deleted"
    assert decision.changed


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        pytest.param({"deleting": True}, "terminating", id="terminating"),
        pytest.param({"ready": False}, "notReady", id="not-ready"),
        pytest.param({"ip": None}, "noIP", id="no-ip"),
        pytest.param({"phase": "Pending"}, "notRunning", id="pending"),
        pytest.param({"phase": "Failed"}, "notRunning", id="failed"),
        pytest.param({"phase": "Succeeded", "ready": False}, "notRunning", id="succeeded"),
        pytest.param({"deleting": True, "ready": False}, "terminating", id="terminating-first"),
    ],
)
@pytest.mark.parametrize(
    "config", [pytest.param(STICKY, id="sticky"), pytest.param(NOT_STICKY, id="not-sticky")]
)
def test_failed_leader_is_replaced(
    changes: dict[str, Any], code: str, config: ServiceConfig
) -> None:
    """A leader that stops qualifying loses to the next pod and its verdict code is the cause."""
    pods = [pod("a", created=100.0, **changes), pod("b", created=200.0)]
    decision = decide(pods, current="a", config=config)
    assert leader_name(decision) == "b"
    assert decision.cause == code
    assert decision.verdicts[0].code == code
    assert not decision.verdicts[0].qualified
    assert decision.verdicts[1].qualified


@pytest.mark.parametrize(
    ("changes", "code", "detail"),
    [
        pytest.param({}, "ok", "qualifies", id="ok"),
        pytest.param({"deleting": True}, "terminating", "pod is terminating", id="terminating"),
        pytest.param({"phase": "Pending"}, "notRunning", "phase is Pending", id="pending"),
        pytest.param({"ready": False}, "notReady", "Ready condition is not True", id="not-ready"),
        pytest.param({"ip": None}, "noIP", "pod has no IP", id="no-ip"),
    ],
)
def test_evaluate(changes: dict[str, Any], code: str, detail: str) -> None:
    """Each pod gets one verdict: the first failed check, or "ok" with its resolved ports."""
    verdict = leader.evaluate(pod("a", **changes), source_ports=NUMERIC_PORTS, unhealthy={})
    assert (verdict.code, verdict.detail) == (code, detail)
    assert verdict.qualified is (code == "ok")
    expected = (ports.SlicePort("web", 8080, "TCP", None),) if code == "ok" else ()
    assert verdict.slice_ports == expected


def test_unhealthy_pod_is_excluded() -> None:
    """A pod whose probe is down does not lead; its verdict is "probe_failed" with the reason."""
    pods = [pod("old", created=100.0), pod("young", created=200.0)]
    decision = decide(pods, unhealthy={"uid-old": "network: connection refused"})
    assert leader_name(decision) == "young"
    old = decision.verdicts[0]
    assert old.code == "probe_failed"
    assert old.detail == "probe down: network: connection refused"


def test_unhealthy_leader_is_replaced() -> None:
    """A sticky leader whose probe is down is replaced and the cause is "probe_failed"."""
    pods = [pod("a", created=100.0), pod("b", created=200.0)]
    decision = decide(pods, current="a", unhealthy={"uid-a": "timeout"})
    assert leader_name(decision) == "b"
    assert decision.cause == "probe_failed"


def test_all_unhealthy_keeps_the_leader() -> None:
    """When every pod fails its probe the leader stays: probes never empty the routing."""
    pods = [pod("a"), pod("b")]
    decision = decide(pods, current="a", unhealthy={"uid-a": "x", "uid-b": "y"})
    assert leader_name(decision) == "a"
    assert decision.cause is None
    assert not decision.changed
    assert "no candidate passes" in decision.why
    assert decision.slice_ports


def test_panic_keeps_the_leader_despite_a_healthy_candidate() -> None:
    """In panic (our own network suspected) a failing leader is kept even if one pod passes."""
    pods = [pod("a", created=1.0), pod("b", created=2.0), pod("c", created=3.0)]
    decision = decide(
        pods,
        current="a",
        unhealthy={"uid-a": "timeout", "uid-b": "timeout"},
        probe_up={"uid-c"},
        panic=True,
    )
    assert leader_name(decision) == "a"
    assert "panic" in decision.why


@pytest.mark.parametrize(
    ("current", "up", "expected"),
    [
        pytest.param(None, set(), None, id="new-service-waits-for-first-probe"),
        pytest.param(None, {"uid-b"}, None, id="fresh-election-waits-for-older-pending-pod"),
        pytest.param(None, {"uid-a", "uid-b"}, "a", id="fresh-election-oldest-up"),
        pytest.param("a", set(), "a", id="pending-leader-keeps-leading"),
        pytest.param("a", {"uid-b"}, "a", id="sticky-pending-leader-not-replaced"),
    ],
)
def test_probe_pending(current: str | None, up: set[str], expected: str | None) -> None:
    """Candidates must have passed a probe; the current leader may lead while it is pending."""
    pods = [pod("a", created=1.0), pod("b", created=2.0)]
    decision = decide(pods, current=current, probe_up=up)
    assert leader_name(decision) == expected


def test_fresh_election_skips_a_down_older_pod() -> None:
    """An older pod that probed down does not hold up a fresh election."""
    pods = [pod("a", created=1.0), pod("b", created=2.0)]
    decision = decide(pods, probe_up={"uid-b"}, unhealthy={"uid-a": "timeout"})
    assert leader_name(decision) == "b"


@pytest.mark.parametrize(
    ("ready_for", "expected_leader", "requeue"),
    [
        pytest.param(10.0, None, 20.0, id="held-back-20s-left"),
        pytest.param(29.5, None, 0.5, id="held-back-half-second-left"),
        pytest.param(30.0, "a", None, id="exactly-min-ready"),
        pytest.param(45.0, "a", None, id="past-min-ready"),
    ],
)
def test_min_ready_holds_back_new_pods(
    ready_for: float, expected_leader: str | None, requeue: float | None
) -> None:
    """A pod Ready for less than min-ready-duration cannot lead yet; requeue_after is the rest."""
    config = ServiceConfig(leader_service_name="web-leader", min_ready_seconds=30.0)
    decision = decide([pod("a", ready_since=NOW - ready_for)], config=config)
    assert leader_name(decision) == expected_leader
    assert decision.requeue_after == pytest.approx(requeue)
    if expected_leader is None:
        assert decision.why == "no pod has been Ready long enough yet"


def test_min_ready_requeue_is_the_soonest_wait() -> None:
    """With several held-back pods requeue_after is the shortest remaining wait."""
    config = ServiceConfig(leader_service_name="web-leader", min_ready_seconds=60.0)
    pods = [
        pod("a", created=100.0, ready_since=NOW - 10.0),
        pod("b", created=200.0, ready_since=NOW - 45.0),
    ]
    decision = decide(pods, config=config)
    assert decision.leader is None
    assert decision.requeue_after == pytest.approx(15.0)


def test_min_ready_prefers_an_eligible_younger_pod() -> None:
    """An older pod still inside min-ready loses to a younger pod that has waited long enough."""
    config = ServiceConfig(leader_service_name="web-leader", min_ready_seconds=60.0)
    pods = [
        pod("old", created=100.0, ready_since=NOW - 10.0),
        pod("young", created=200.0, ready_since=NOW - 120.0),
    ]
    decision = decide(pods, config=config)
    assert leader_name(decision) == "young"
    assert decision.requeue_after is None


def test_min_ready_not_sticky_requeues_for_older_pod() -> None:
    """With sticky=false a held-back older pod sets requeue_after so it can take over later."""
    config = ServiceConfig(leader_service_name="web-leader", sticky=False, min_ready_seconds=60.0)
    pods = [
        pod("old", created=100.0, ready_since=NOW - 10.0),
        pod("current", created=200.0, ready_since=NOW - 120.0),
    ]
    decision = decide(pods, current="current", config=config)
    assert leader_name(decision) == "current"
    assert decision.requeue_after == pytest.approx(50.0)


@pytest.mark.parametrize(
    "skew",
    [pytest.param(0.5, id="half-second"), pytest.param(5.0, id="five-seconds")],
)
def test_zero_min_ready_ignores_ready_time_in_the_future(skew: float) -> None:
    """With min-ready-duration 0 a Ready pod leads even if its Ready time is ahead of our clock."""
    decision = decide([pod("a", ready_since=NOW + skew)])
    assert leader_name(decision) == "a"
    assert decision.requeue_after is None


def test_min_ready_missing_ready_time_counts_as_ready_long_enough() -> None:
    """A Ready pod without a Ready transition time is not held back."""
    config = ServiceConfig(leader_service_name="web-leader", min_ready_seconds=60.0)
    decision = decide([pod("a", ready_since=None)], config=config)
    assert leader_name(decision) == "a"
    assert decision.requeue_after is None


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(
            ServiceConfig(leader_service_name="web-leader", min_ready_seconds=60.0), id="sticky"
        ),
        pytest.param(
            ServiceConfig(leader_service_name="web-leader", sticky=False, min_ready_seconds=60.0),
            id="not-sticky",
        ),
    ],
)
def test_current_leader_is_exempt_from_min_ready(config: ServiceConfig) -> None:
    """The current leader keeps leading even if it became Ready less than min-ready ago."""
    pods = [pod("current", created=100.0, ready_since=NOW - 5.0)]
    decision = decide(pods, current="current", config=config)
    assert leader_name(decision) == "current"
    assert decision.cause is None
    assert not decision.changed


def test_unresolved_named_port_is_reported() -> None:
    """Pods lacking a named targetPort cannot lead and the port name is reported."""
    pods = [pod("a", created=100.0, ports=()), pod("b", created=200.0)]
    decision = decide(pods, source_ports=NAMED_PORTS)
    assert leader_name(decision) == "b"
    assert decision.unresolved_ports == ("http",)
    assert decision.verdicts[0].code == "portUnresolved"
    assert decision.verdicts[0].missing_port == "http"
    assert decision.slice_ports == (ports.SlicePort("web", 8080, "TCP", None),)


def test_unresolved_ports_sorted_and_unique() -> None:
    """Each missing port name is reported once, sorted, across all pods."""
    source = [
        {"name": "web", "port": 80, "targetPort": "http"},
        {"name": "adm", "port": 81, "targetPort": "admin"},
    ]
    pods = [pod("a", ports=()), pod("b", ports=()), pod("c", ports=(HTTP,))]
    decision = decide(pods, source_ports=source)
    assert decision.leader is None
    assert decision.unresolved_ports == ("admin", "http")


def test_unresolved_ports_ignore_pods_failing_earlier_checks() -> None:
    """A pod that is not Ready is not counted as a port-resolution failure."""
    pods = [pod("a", ready=False, ports=())]
    decision = decide(pods, source_ports=NAMED_PORTS)
    assert decision.unresolved_ports == ()
    assert decision.verdicts[0].code == "notReady"


def test_current_leader_losing_its_port_is_replaced() -> None:
    """A sticky leader whose named targetPort disappears loses with cause "portUnresolved"."""
    pods = [pod("a", created=100.0, ports=()), pod("b", created=200.0)]
    decision = decide(pods, current="a", source_ports=NAMED_PORTS)
    assert leader_name(decision) == "b"
    assert decision.cause == "portUnresolved"


def test_verdicts_follow_input_order() -> None:
    """There is one verdict per pod, in the order the pods were given."""
    pods = [pod("c", created=300.0), pod("a", created=100.0, ready=False), pod("b")]
    decision = decide(pods)
    assert [v.pod.name for v in decision.verdicts] == ["c", "a", "b"]
    assert [v.code for v in decision.verdicts] == ["ok", "notReady", "ok"]
