"""Pure glue between the prober pool and the leader decision.

`targets` picks what the pool must probe for one Service: the current leader and every pod that
qualifies under the Ready rules, each at its own pod IP (never any other address) and its
resolved probe port. `view` turns the pool's verdicts into the decision's inputs: which pods are
down (and why), which are up, and whether the Service is in panic.

Panic: when at least two pods, and at least ``panic_threshold`` of the probed pods, became
unreachable within one window (`ProbeConfig.panic_window_seconds`: long enough for every pod to
be probed and judged once), the failures are correlated and the likelier culprit is the
prober's own network, so the leader is kept. Unreachable means network errors or timeouts: an
explicit bad answer (a status, NOT_SERVING, an expect mismatch) proves the path to the pod
works, so it never counts, and pods that are down by design (Redis replicas behind a
``master`` expect) never cause panic. Pods that failed earlier, one at a time, do not count.
Panic has hysteresis: once entered it lasts while at least two pods, and at least the
threshold share of the probed pods, are unreachable, however long ago they started failing; it
clears when enough pods answer again (a partial heal below the threshold clears it), never by
the passing of time alone.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from zenlead import ports, probing

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from zenlead import model, probeconfig

__all__ = ("ProbeView", "probe_port", "targets", "view")

_STATES = frozenset({probing.UP, probing.DOWN})


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeView:
    """Probe verdicts as the decision needs them.

    Attributes:
        unhealthy: Pod UID -> why its probe is down.
        up: UIDs of pods whose probe passes (while the leader fails: passed since it began
            failing, so a failover never trusts a verdict older than the failure).
        stale: Pods that passed, but not since the leader began failing: probe them again.
        panic: Too many pods are down at once; keep the leader.
        states: Pod name -> ``up``, ``down`` or ``unknown``, for the leader Service annotation.
        down_count: Pods down.
        probed_count: Pods with a verdict (up or down).

    """

    unhealthy: dict[str, str]
    up: set[str]
    panic: bool
    stale: set[str]
    states: dict[str, str]
    down_count: int
    probed_count: int

    def state_annotation(self, published: str | None = None) -> str:
        """Return the per-pod states as compact, stable JSON.

        `published` is the annotation as last written: a pod not probed yet keeps the state
        it had there (its last known), so a restarted controller, whose verdicts all start
        unknown, rewrites no annotation before it has evidence of a change.
        """
        known = _states(published)
        states = {
            name: known.get(name, state) if state == "unknown" else state
            for name, state in self.states.items()
        }
        return json.dumps(states, sort_keys=True, separators=(",", ":"))


def _states(published: str | None) -> dict[str, str]:
    """Return the states of a published annotation ({} when absent or not ours)."""
    try:
        parsed = json.loads(published or "{}")
    except (ValueError, RecursionError):  # Anyone may edit it: garbage, or nesting too deep.
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {k: v for k, v in parsed.items() if isinstance(k, str) and v in _STATES}


def probe_port(
    pod: model.Pod, config: probeconfig.ProbeConfig, source_ports: list[dict[str, Any]]
) -> int | None:
    """Return the port to probe on `pod`: the configured number or name, or the first targetPort."""
    if isinstance(config.port, int):
        return config.port
    if isinstance(config.port, str):
        return next((p.port for p in pod.ports if p.name == config.port and p.port > 0), None)
    if not source_ports:
        return None
    try:
        return ports.resolve(source_ports[:1], pod)[0].port
    except ports.UnresolvedPortError:
        return None


def _serves(pod: model.Pod) -> bool:
    return pod.phase == "Running" and pod.ready and not pod.deleting and pod.ip is not None


def targets(
    pods: Sequence[model.Pod],
    *,
    config: probeconfig.ProbeConfig,
    source_ports: list[dict[str, Any]],
    leader_uid: str | None,
) -> dict[str, probing.ProbeTarget | str]:
    """Return what to probe: the leader and the Ready candidates, by pod UID.

    A pod whose probe port cannot be resolved maps to the reason instead of a target: it cannot
    pass a probe, so it is treated as down rather than waited for.
    """
    found: dict[str, probing.ProbeTarget | str] = {}
    for pod in pods:
        if pod.ip is None or (pod.uid != leader_uid and not _serves(pod)):
            continue
        port = probe_port(pod, config, source_ports)
        if port is None:
            found[pod.uid] = (
                f"config: probe port {config.port or 'of the first targetPort'} unknown"
            )
        else:
            found[pod.uid] = probing.ProbeTarget(pod.ip, port, leader=pod.uid == leader_uid)
    return found


def probed(wanted: Mapping[str, probing.ProbeTarget | str]) -> dict[str, probing.ProbeTarget]:
    """Return the entries of `targets` that the pool can probe."""
    return {uid: t for uid, t in wanted.items() if isinstance(t, probing.ProbeTarget)}


def view(
    pods: Sequence[model.Pod],
    health: Mapping[str, probing.Health],
    wanted: Mapping[str, probing.ProbeTarget | str],
    config: probeconfig.ProbeConfig,
    *,
    now: float,
    was_panic: bool = False,
) -> ProbeView:
    """Summarise the verdicts of the pods in `wanted` for the decision (`now`: monotonic).

    `was_panic`: the Service was in panic at the last look (see the module docstring).
    """
    current = {uid: h for uid, h in health.items() if uid in wanted}
    down = {uid: h.detail for uid, h in current.items() if h.state == probing.DOWN}
    down |= {uid: why for uid, why in wanted.items() if isinstance(why, str)}
    up = {uid for uid, h in current.items() if h.state == probing.UP}
    probed = len(down) + len(up)
    failing_since = _leader_failing_since(current, wanted)
    stale = set()
    if failing_since is not None:
        stale = {uid for uid in up if (current[uid].last_ok_at or 0.0) < failing_since}
        up -= stale
    panic = _panic(current, probed, config, now=now, was_panic=was_panic)
    names = {p.uid: p.name for p in pods}
    states = {
        names[uid]: probing.DOWN if uid in down else getattr(current.get(uid), "state", "unknown")
        for uid in wanted
        if uid in names
    }
    return ProbeView(down, up, panic, stale, states, len(down), probed)


def _panic(
    current: Mapping[str, probing.Health],
    probed: int,
    config: probeconfig.ProbeConfig,
    *,
    now: float,
    was_panic: bool,
) -> bool:
    """Tell whether too many pods are unreachable at once (see the module docstring)."""
    unreachable = [h for h in current.values() if h.unreachable]
    since = now - config.panic_window_seconds
    together = sum(
        1 for h in unreachable if h.first_failure_at is not None and h.first_failure_at >= since
    )
    share = config.panic_threshold * probed
    started = together >= 2 and together >= share  # noqa: PLR2004 - "at least two pods"
    lasting = was_panic and len(unreachable) >= 2 and len(unreachable) >= share  # noqa: PLR2004
    return started or lasting


def _leader_failing_since(
    current: Mapping[str, probing.Health], wanted: Mapping[str, probing.ProbeTarget | str]
) -> float | None:
    """Return when the leader's current failure streak began, if it is failing."""
    for uid, health in current.items():
        target = wanted.get(uid)
        if isinstance(target, probing.ProbeTarget) and target.leader and health.failures:
            return health.first_failure_at
    return None
