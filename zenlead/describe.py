"""``zen-lead status`` and ``zen-lead explain``: what zen-lead is doing, read from the cluster.

Both read the API directly (a few list calls, bounded by ``limit``) and use the same pure code
as the controller (`svcconfig.parse`, `leader.decide`, `objects`), so ``explain`` shows the
decision the controller would make now and the reason for every pod. They need only read
access to Services, EndpointSlices, Pods and Events (``status`` shows a Service whose
reconcile keeps failing as ``Failing``, from the controller's dead-letter Events).
"""

from __future__ import annotations

import datetime
import json
import time
from typing import TYPE_CHECKING, Any

from zenlead import errors, leader, mapping, model, objects, svcconfig
from zenlead.kube import api

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ("explain", "status")

_LIMIT = 500


def status(client: api.Api, namespace: str | None) -> str:
    """Return a table of every opted-in Service in `namespace` (all namespaces when None)."""
    services = client.list(api.SERVICES, namespace, limit=_LIMIT).get("items") or []
    slices = (
        client.list(
            api.ENDPOINTSLICES,
            namespace,
            label_selector=f"{model.LABEL_SLICE_MANAGED_BY}={model.MANAGER}",
            limit=_LIMIT,
        ).get("items")
        or []
    )
    by_name = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in services}
    slice_by_name = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in slices}
    failing = _failing(client, namespace)
    rows: list[tuple[str, ...]] = [
        ("NAMESPACE", "SERVICE", "LEADER", "SINCE", "LAST FAILOVER", "LATENCY", "PROBES", "STATE")
    ]
    for svc in sorted(services, key=lambda s: (s["metadata"]["namespace"], s["metadata"]["name"])):
        if not mapping.is_source(svc):
            continue
        meta = svc["metadata"]
        config, _ = svcconfig.parse(meta["name"], meta.get("annotations"))
        key = (meta["namespace"], config.leader_service_name)
        row = _status_row(svc, by_name.get(key), slice_by_name.get(key))
        if (meta["namespace"], meta["name"]) in failing:
            row = (*row[:-1], "Failing")
        rows.append(row)
    return _table(rows)


def _failing(client: api.Api, namespace: str | None) -> set[tuple[str, str]]:
    """Return the Services whose latest dead-letter Event says their reconcile keeps failing.

    The controller emits ``ReconcileFailing`` when it parks a Service and again on each slow
    retry that fails, and ``ReconcileRecovered`` when it succeeds again; the later one (by
    resourceVersion, which orders writes) tells the state.
    """
    latest: dict[tuple[str, str], tuple[int, str]] = {}
    for reason in ("ReconcileFailing", "ReconcileRecovered"):
        page = client.list(api.EVENTS, namespace, field_selector=f"reason={reason}", limit=_LIMIT)
        for event in page.get("items") or ():
            involved = event.get("involvedObject") or {}
            key = (involved.get("namespace", ""), involved.get("name", ""))
            version = str((event.get("metadata") or {}).get("resourceVersion") or "0")
            order = int(version) if version.isascii() and version.isdigit() else 0
            if order >= latest.get(key, (-1, ""))[0]:
                latest[key] = (order, reason)
    return {key for key, (_, reason) in latest.items() if reason == "ReconcileFailing"}


def _status_row(
    source: Mapping[str, Any], leader_svc: Mapping[str, Any] | None, slice_obj: Any
) -> tuple[str, ...]:
    meta = source["metadata"]
    spec = source.get("spec") or {}
    base = (meta["namespace"], meta["name"])
    if spec.get("type") == "ExternalName" or not spec.get("selector"):
        return (*base, "-", "-", "-", "-", "-", "Unsupported")
    if leader_svc is None:
        return (*base, "-", "-", "-", "-", "-", "Pending")
    if not objects.owns_service(leader_svc, source_name=meta["name"], source_uid=None):
        return (*base, "-", "-", "-", "-", "-", "Conflict")
    notes = leader_svc["metadata"].get("annotations") or {}
    pod = notes.get(objects.ANN_LEADER_NAME, "-")
    routing = slice_obj is not None and objects.leader_uid_of(slice_obj) is not None
    latency = notes.get(objects.ANN_LAST_FAILOVER_LATENCY) or ""
    last = notes.get(objects.ANN_LAST_FAILOVER)
    reason = notes.get(objects.ANN_LAST_FAILOVER_REASON, "")
    return (
        *base,
        pod if routing else "-",
        _age(notes.get(objects.ANN_LAST_SWITCH)) if routing else "-",
        f"{_age(last)} ago ({reason})" if last else "never",
        f"{float(latency) * 1000:.0f}ms" if latency else "-",
        _probe_summary(notes),
        "Routing" if routing else "NoLeader",
    )


def _probe_states(leader_svc: Mapping[str, Any] | None) -> dict[str, str] | None:
    """Return pod name -> probe state as the controller last recorded it (None: no probe)."""
    notes = ((leader_svc or {}).get("metadata") or {}).get("annotations") or {}
    raw = notes.get(objects.ANN_PROBE_STATE)
    if raw is None:
        return None
    try:
        states = json.loads(raw)
    except ValueError:
        return None
    return {str(k): str(v) for k, v in states.items()} if isinstance(states, dict) else None


def _probe_summary(notes: Mapping[str, str]) -> str:
    states = _probe_states({"metadata": {"annotations": notes}})
    if states is None:
        return "-"
    up = sum(1 for s in states.values() if s == "up")
    return f"{up}/{len(states)} up"


def explain(client: api.Api, namespace: str, name: str) -> str:
    """Return why the leader of Service `namespace/name` is who it is, pod by pod."""
    try:
        source = client.get(api.SERVICES, namespace, name)
    except errors.NotFoundError:
        return f"Service {namespace}/{name} not found"
    meta = source["metadata"]
    lines = [f"Service {namespace}/{name}"]
    if not mapping.is_source(source):
        lines.append(f'  not opted in: set {svcconfig.ENABLED}: "true"')
        return "\n".join(lines)
    config, problems = svcconfig.parse(name, meta.get("annotations"))
    lines.append(
        f"  leader Service {config.leader_service_name}; sticky={str(config.sticky).lower()}; "
        f"min-ready-duration={config.min_ready_seconds:g}s"
    )
    lines += [f"  annotation problem: {p}" for p in problems]
    selector = (source.get("spec") or {}).get("selector") or {}
    if not selector:
        lines.append("  no selector: zen-lead has no pods to choose from")
        return "\n".join(lines)
    selected = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    raw_pods = client.list(api.PODS, namespace, label_selector=selected, limit=_LIMIT)
    pods = [model.Pod.from_raw(p) for p in raw_pods.get("items") or []]
    current = _current_leader(client, namespace, config.leader_service_name)
    states = _probe_states(_get(client, namespace, config.leader_service_name))
    by_name = {p.name: p.uid for p in pods}
    decision = leader.decide(
        pods,
        current_uid=current,
        config=config,
        source_ports=(source.get("spec") or {}).get("ports") or [],
        now=time.time(),
        unhealthy=_uids(states, by_name, "down"),
        probe_up=set(_uids(states, by_name, "up")) if states is not None else None,
    )
    if states is not None:
        lines.append("  probes: the controller's last verdict per pod (zen-lead.io/probe-state)")
    lines.append(f"  current leader (from the EndpointSlice): {_name_of(pods, current)}")
    chosen = decision.leader.name if decision.leader else "no pod"
    lines.append(f"  decision now: {chosen} ({decision.why})")
    lines.append("")
    lines.append(_pod_table(decision.verdicts, decision, states or {}))
    return "\n".join(lines)


def _get(client: api.Api, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return client.get(api.SERVICES, namespace, name)
    except errors.NotFoundError:
        return None


def _uids(
    states: Mapping[str, str] | None, by_name: Mapping[str, str], want: str
) -> dict[str, str]:
    if states is None:
        return {}
    return {by_name[n]: f"probe {s}" for n, s in states.items() if s == want and n in by_name}


def _current_leader(client: api.Api, namespace: str, name: str) -> str | None:
    try:
        return objects.leader_uid_of(client.get(api.ENDPOINTSLICES, namespace, name))
    except errors.NotFoundError:
        return None


def _name_of(pods: Sequence[model.Pod], uid: str | None) -> str:
    if uid is None:
        return "none"
    return next((p.name for p in pods if p.uid == uid), f"a pod that no longer exists ({uid})")


def _pod_table(
    verdicts: Sequence[leader.Verdict], decision: leader.Decision, states: Mapping[str, str]
) -> str:
    rows: list[tuple[str, ...]] = [("POD", "PHASE", "READY", "IP", "AGE", "PROBE", "VERDICT")]
    ordered = sorted(verdicts, key=lambda v: (v.pod.created, v.pod.name))
    for verdict in ordered:
        pod = verdict.pod
        if decision.leader is not None and pod.uid == decision.leader.uid:
            why = "LEADER"
        elif verdict.qualified:
            why = "candidate (qualifies; the leader is kept or older)"
        else:
            why = f"{verdict.code}: {verdict.detail}"
        created = datetime.datetime.fromtimestamp(pod.created, datetime.UTC).isoformat()
        probe = states.get(pod.name, "-")
        rows.append((pod.name, pod.phase, str(pod.ready), pod.ip or "-", _age(created), probe, why))
    return _table(rows)


def _age(stamp: str | None) -> str:
    seconds = model.parse_time(stamp)
    if seconds is None:
        return "-"
    delta = max(0, int(time.time() - seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{delta // size}{unit}"
    return f"{delta}s"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
