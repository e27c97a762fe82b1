"""Pure leader selection: which pod (if any) leads a Service now, and why.

Called by the reconciler (and by ``zen-lead explain``) with the pods the Service selects, the
current leader read back from the EndpointSlice, the Service's config and the time. It does no
I/O. Inputs that later features add (active probe results) join through `unhealthy`, a map of
pod UID to the reason that pod must not lead.

Rules:

- A pod *qualifies* when it is Running, Ready, not terminating, has an IP, can resolve every
  named targetPort, and is not marked unhealthy.
- Sticky (default): the current leader stays while it qualifies.
- Otherwise the oldest qualifying pod (creationTimestamp, then name) that has been Ready for
  ``min-ready-duration`` wins; the current leader is exempt from that wait.
- When a qualifying pod is held back only by ``min-ready-duration`` and could become leader,
  `Decision.requeue_after` says when to look again, so no event is needed to pick it up.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any

from zenlead import ports

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from collections.abc import Set as AbstractSet

    from zenlead import model, svcconfig

__all__ = ("Decision", "Verdict", "decide", "evaluate")

OK = "ok"
DELETED = "deleted"
PREEMPTED = "preempted"
PROBE_FAILED = "probe_failed"
PROBE_PENDING = "probe_pending"
WAITING = "waiting for the first probe of an older pod"


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """Whether one pod qualifies to lead; `code` is ``ok`` or a short reason code."""

    pod: model.Pod
    code: str
    detail: str
    slice_ports: tuple[ports.SlicePort, ...] = ()
    missing_port: str | None = None

    @property
    def qualified(self) -> bool:
        """True when the pod may lead."""
        return self.code == OK


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of `decide`.

    Attributes:
        leader: The pod that leads, or None (the slice gets no endpoints).
        verdicts: One per selected pod, in the order given.
        previous_uid: UID of the leader before this decision, if any.
        cause: Why the previous leader lost its place (a `Verdict` code, ``deleted`` or
            ``preempted``); None when it stays or there was none.
        why: One line explaining the choice, for Events and ``zen-lead explain``.
        requeue_after: Seconds until a held-back pod becomes eligible, when that matters.
        unresolved_ports: Named targetPorts that kept otherwise healthy pods from leading.

    """

    leader: model.Pod | None
    verdicts: tuple[Verdict, ...]
    previous_uid: str | None
    cause: str | None
    why: str
    requeue_after: float | None = None
    unresolved_ports: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """True when the leader is a different pod (or none) than before."""
        new = self.leader.uid if self.leader else None
        return new != self.previous_uid

    @property
    def slice_ports(self) -> tuple[ports.SlicePort, ...]:
        """Resolved EndpointSlice ports of the leader (empty without a leader)."""
        for verdict in self.verdicts:
            if self.leader is not None and verdict.pod.uid == self.leader.uid:
                return verdict.slice_ports
        return ()


def evaluate(
    pod: model.Pod,
    *,
    source_ports: list[dict[str, Any]],
    unhealthy: Mapping[str, str],
    probe_up: AbstractSet[str] | None = None,
) -> Verdict:
    """Return whether `pod` qualifies to lead, ignoring stickiness and min-ready-duration.

    `unhealthy` maps pod UIDs to why their probe says down; with `probe_up` given (the Service
    has a probe), a pod must also be in it: until its first passing probe it is pending.
    """
    checks = (
        (pod.deleting, "terminating", "pod is terminating"),
        (pod.phase != "Running", "notRunning", f"phase is {pod.phase}"),
        (not pod.ready, "notReady", "Ready condition is not True"),
        (pod.ip is None, "noIP", "pod has no IP"),
    )
    for failed, code, detail in checks:
        if failed:
            return Verdict(pod, code, detail)
    try:
        resolved = tuple(ports.resolve(source_ports, pod))
    except ports.UnresolvedPortError as exc:
        return Verdict(pod, "portUnresolved", str(exc), missing_port=exc.port_name)
    if pod.uid in unhealthy:
        return Verdict(pod, PROBE_FAILED, f"probe down: {unhealthy[pod.uid]}", resolved)
    if probe_up is not None and pod.uid not in probe_up:
        return Verdict(pod, PROBE_PENDING, "no passing probe yet", resolved)
    return Verdict(pod, OK, "qualifies", resolved)


def decide(
    pods: Sequence[model.Pod],
    *,
    current_uid: str | None,
    config: svcconfig.ServiceConfig,
    source_ports: list[dict[str, Any]],
    now: float,
    unhealthy: Mapping[str, str] | None = None,
    probe_up: AbstractSet[str] | None = None,
    panic: bool = False,
) -> Decision:
    """Choose the leader among `pods` (see the module docstring for the rules)."""
    verdicts = tuple(
        evaluate(p, source_ports=source_ports, unhealthy=unhealthy or {}, probe_up=probe_up)
        for p in pods
    )
    verdicts = tuple(_pending_leader_qualifies(v, current_uid) for v in verdicts)
    by_uid = {v.pod.uid: v for v in verdicts}
    current = by_uid.get(current_uid) if current_uid else None
    unresolved = tuple(sorted({v.missing_port for v in verdicts if v.missing_port}))
    make = functools.partial(
        Decision, verdicts=verdicts, previous_uid=current_uid, unresolved_ports=unresolved
    )
    if current is not None and current.qualified and config.sticky:
        return make(leader=current.pod, cause=None, why="current leader still qualifies")
    probe_failed = current is not None and current.code == PROBE_FAILED
    if probe_failed and panic:
        why = "panic: too many pods fail their probes at once; keeping the leader"
        return make(leader=current.pod, cause=None, why=why)  # type: ignore[union-attr]
    eligible, wait = _eligible(verdicts, current_uid=current_uid, config=config, now=now)
    leader = min(eligible, key=lambda p: (p.created, p.name)) if eligible else None
    if current is None and leader is not None and _older_pending(verdicts, leader):
        # A fresh election waits for older pods' first verdicts, or the first pod to answer
        # would win instead of the oldest. The pool enqueues the Service on each verdict.
        return make(leader=None, cause=_cause(current_uid, current, None), why=WAITING)
    if probe_failed and leader is None:
        why = "the leader fails its probe but no candidate passes; keeping it"
        return make(leader=current.pod, cause=None, why=why)  # type: ignore[union-attr]
    cause = _cause(current_uid, current, leader)
    if leader is None:
        why = "no pod qualifies" if wait is None else "no pod has been Ready long enough yet"
    elif current is not None and leader.uid == current.pod.uid:
        why = "current leader is the oldest qualifying pod"
    else:
        why = "oldest qualifying pod"
    requeue = wait if (leader is None or not config.sticky) else None
    return make(leader=leader, cause=cause, why=why, requeue_after=requeue)


def _older_pending(verdicts: Sequence[Verdict], leader: model.Pod) -> bool:
    rank = (leader.created, leader.name)
    return any(v.code == PROBE_PENDING and (v.pod.created, v.pod.name) < rank for v in verdicts)


def _pending_leader_qualifies(verdict: Verdict, current_uid: str | None) -> Verdict:
    """Let the current leader lead while its first probe is pending (no evidence against it)."""
    if verdict.code == PROBE_PENDING and verdict.pod.uid == current_uid:
        return dataclasses.replace(verdict, code=OK, detail="qualifies (first probe pending)")
    return verdict


def _eligible(
    verdicts: Sequence[Verdict],
    *,
    current_uid: str | None,
    config: svcconfig.ServiceConfig,
    now: float,
) -> tuple[list[model.Pod], float | None]:
    """Return qualifying pods past min-ready-duration, and the soonest wait for the others."""
    eligible, waits = [], []
    for verdict in verdicts:
        if not verdict.qualified:
            continue
        pod = verdict.pod
        if pod.ready_since is None:
            since = now - config.min_ready_seconds  # Unknown: do not hold the pod back.
        else:
            since = min(pod.ready_since, now)  # A future time is node clock skew.
        remaining = since + config.min_ready_seconds - now
        if pod.uid == current_uid or remaining <= 0:
            eligible.append(pod)
        else:
            waits.append(remaining)
    return eligible, (min(waits) if waits else None)


def _cause(
    current_uid: str | None, current: Verdict | None, leader: model.Pod | None
) -> str | None:
    if current_uid is None:
        return None
    if current is None:
        return DELETED
    if not current.qualified:
        return current.code
    if leader is None or leader.uid != current.pod.uid:
        return PREEMPTED
    return None
