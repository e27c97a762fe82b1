"""Build the wanted leader Service and EndpointSlice, and tell ours from anyone else's.

Pure functions called by the reconciler: `leader_service` and `endpoint_slice` return the full
wanted object as API JSON; `service_needs_update` / `slice_needs_update` compare it with what
exists, field by field, after applying the API server's defaults, so an unchanged state causes
no write. `owns_service` / `owns_slice` implement the ownership rule: zen-lead modifies or
deletes an object only if it carries our managed-by and source labels *and* an ownerReference
to the expected owner's UID.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from zenlead import model, ports

if TYPE_CHECKING:
    from collections.abc import Mapping

    from zenlead import leader, svcconfig

__all__ = (
    "ANN_CURRENT_LEADER",
    "ANN_LAST_SWITCH",
    "ANN_LEADER_NAME",
    "ANN_LEADER_UID",
    "endpoint_slice",
    "leader_service",
    "owns_service",
    "owns_slice",
    "service_needs_update",
    "slice_needs_update",
)

ANN_LEADER_NAME = "zen-lead.io/leader-pod-name"
ANN_LEADER_UID = "zen-lead.io/leader-pod-uid"
ANN_CURRENT_LEADER = "zen-lead.io/current-leader"
ANN_LAST_SWITCH = "zen-lead.io/leader-last-switch-time"
ANN_LAST_FAILOVER = "zen-lead.io/last-failover-time"
ANN_LAST_FAILOVER_REASON = "zen-lead.io/last-failover-reason"
ANN_LAST_FAILOVER_LATENCY = "zen-lead.io/last-failover-latency-seconds"
ANN_TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
"""When the change a slice write carries was first observed (kube-proxy's network programming
latency, ``kubeproxy_network_programming_duration_seconds``, is measured from it)."""
ANN_PROBE_STATE = "zen-lead.io/probe-state"
"""Per-pod probe verdicts (JSON), for ``zen-lead status`` and ``explain``; absent without probes."""
HISTORY = (ANN_LAST_SWITCH, ANN_LAST_FAILOVER, ANN_LAST_FAILOVER_REASON, ANN_LAST_FAILOVER_LATENCY)
"""Annotations on the leader Service that carry history from one reconcile to the next."""
_LEADER_ANNOTATIONS = (ANN_LEADER_NAME, ANN_LEADER_UID, ANN_CURRENT_LEADER)

# GitOps bookkeeping that must not make a tool think it owns the leader Service (upstream list).
_DROP_LABELS = frozenset(
    {
        "app.kubernetes.io/instance",
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/part-of",
        "app.kubernetes.io/version",
        "argocd.argoproj.io/instance",
        "fluxcd.io/part-of",
        "kustomize.toolkit.fluxcd.io/name",
        "kustomize.toolkit.fluxcd.io/namespace",
        "kustomize.toolkit.fluxcd.io/revision",
    }
)
_DROP_ANNOTATIONS = frozenset(
    {
        "argocd.argoproj.io/sync-wave",
        "argocd.argoproj.io/sync-options",
        "fluxcd.io/sync-checksum",
        "kustomize.toolkit.fluxcd.io/checksum",
        "kubectl.kubernetes.io/last-applied-configuration",
    }
)


def leader_service(
    source: Mapping[str, Any],
    *,
    config: svcconfig.ServiceConfig,
    decision: leader.Decision,
    history: Mapping[str, str],
    extra: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Return the wanted leader Service for `source` (API JSON).

    `history` (see `HISTORY`) is carried between reconciles; `extra` holds annotations computed
    afresh each time (the probe state), so a key missing from it disappears.
    """
    meta = source["metadata"]
    spec = source.get("spec") or {}
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in _DROP_LABELS}
    labels |= {model.LABEL_MANAGED_BY: model.MANAGER, model.LABEL_SOURCE: meta["name"]}
    notes = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k not in _DROP_ANNOTATIONS and not k.startswith(model.ANNOTATION_PREFIX)
    }
    if decision.leader is not None:
        notes |= {
            ANN_LEADER_NAME: decision.leader.name,
            ANN_LEADER_UID: decision.leader.uid,
            ANN_CURRENT_LEADER: decision.leader.name,
        }
    notes |= {k: v for k, v in history.items() if k in HISTORY}
    notes |= dict(extra or {})
    wanted_spec: dict[str, Any] = {
        "type": "ClusterIP",
        "ports": _defaulted_ports(ports.service_ports(spec.get("ports") or [])),
    }
    if spec.get("clusterIP") == "None":
        wanted_spec["clusterIP"] = "None"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": config.leader_service_name,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": notes,
            "ownerReferences": [_owner_ref(meta)],
        },
        "spec": wanted_spec,
    }


def endpoint_slice(
    leader_svc: Mapping[str, Any],
    *,
    source_name: str,
    decision: leader.Decision,
    existing_address_type: str | None,
    trigger_time: str | None = None,
) -> dict[str, Any]:
    """Return the wanted EndpointSlice of the leader Service (no endpoints without a leader).

    `trigger_time` (RFC 3339) becomes `ANN_TRIGGER_TIME`, as the EndpointSlice controller sets it.
    """
    meta = leader_svc["metadata"]
    pod = decision.leader
    endpoints: list[dict[str, Any]] = []
    address_type = existing_address_type or "IPv4"
    if pod is not None and pod.ip is not None:
        address_type = f"IPv{ipaddress.ip_address(pod.ip).version}"
        endpoint: dict[str, Any] = {
            "addresses": [pod.ip],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "targetRef": {
                "kind": "Pod",
                "namespace": pod.namespace,
                "name": pod.name,
                "uid": pod.uid,
            },
        }
        if pod.node_name:
            endpoint["nodeName"] = pod.node_name
        endpoints.append(endpoint)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": {
                model.LABEL_SERVICE_NAME: meta["name"],
                model.LABEL_SLICE_MANAGED_BY: model.MANAGER,
                model.LABEL_MANAGED_BY: model.MANAGER,
                model.LABEL_SOURCE: source_name,
            },
            "ownerReferences": [_owner_ref(meta)],
            **({"annotations": {ANN_TRIGGER_TIME: trigger_time}} if trigger_time else {}),
        },
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": [p.to_raw() for p in decision.slice_ports],
    }


def owns_service(obj: Mapping[str, Any], *, source_name: str, source_uid: str | None) -> bool:
    """Return True if `obj` is a leader Service zen-lead made for `source_name`.

    With `source_uid` None (the source is gone) the ownerReference must name the source by
    kind and name instead of UID.
    """
    meta = obj.get("metadata") or {}
    if not _labelled(meta, source_name):
        return False
    for ref in meta.get("ownerReferences") or ():
        if ref.get("kind") != "Service":
            continue
        if ref.get("uid") == source_uid or (source_uid is None and ref.get("name") == source_name):
            return True
    return False


def owns_slice(obj: Mapping[str, Any], *, source_name: str, leader_uid: str | None) -> bool:
    """Return True if `obj` is an EndpointSlice zen-lead made for `source_name`'s leader."""
    meta = obj.get("metadata") or {}
    if not _labelled(meta, source_name):
        return False
    if (meta.get("labels") or {}).get(model.LABEL_SLICE_MANAGED_BY) != model.MANAGER:
        return False
    refs = [r for r in meta.get("ownerReferences") or () if r.get("kind") == "Service"]
    if leader_uid is not None:
        return any(r.get("uid") == leader_uid for r in refs)
    # Without the leader Service's UID, the owner must at least be a Service of the slice's name.
    return any(r.get("name") == meta.get("name") for r in refs)


def service_needs_update(want: Mapping[str, Any], have: Mapping[str, Any]) -> bool:
    """Return True when `have` differs from `want` in anything zen-lead manages."""
    wm, hm = want["metadata"], have.get("metadata") or {}
    hs = have.get("spec") or {}
    return (
        wm["labels"] != (hm.get("labels") or {})
        or wm["annotations"] != (hm.get("annotations") or {})
        or _refs(wm) != _refs(hm)
        or want["spec"]["type"] != hs.get("type")
        or want["spec"]["ports"] != _defaulted_ports(hs.get("ports") or [])
        or bool(hs.get("selector"))
    )


def service_needs_recreate(want: Mapping[str, Any], have: Mapping[str, Any]) -> bool:
    """Return True when headless-ness changed (clusterIP is immutable, so update is impossible)."""
    want_headless: bool = want["spec"].get("clusterIP") == "None"
    return want_headless != ((have.get("spec") or {}).get("clusterIP") == "None")


def slice_needs_update(want: Mapping[str, Any], have: Mapping[str, Any]) -> bool:
    """Return True when `have` differs from `want` in endpoints, ports, labels or owner."""
    wm, hm = want["metadata"], have.get("metadata") or {}
    return (
        want["endpoints"] != [_endpoint(e) for e in have.get("endpoints") or ()]
        or want["ports"] != [_slice_port(p) for p in have.get("ports") or ()]
        or wm["labels"] != (hm.get("labels") or {})
        or _refs(wm) != _refs(hm)
    )


def slice_needs_recreate(want: Mapping[str, Any], have: Mapping[str, Any]) -> bool:
    """Return True when the address family changed (addressType is immutable)."""
    return str(want["addressType"]) != have.get("addressType")


def leader_uid_of(slice_obj: Mapping[str, Any] | None) -> str | None:
    """Return the UID of the pod our slice points at (how the leader survives restarts)."""
    for endpoint in (slice_obj or {}).get("endpoints") or ():
        ref = endpoint.get("targetRef") or {}
        if ref.get("kind") == "Pod" and ref.get("uid"):
            return str(ref["uid"])
    return None


def _labelled(meta: Mapping[str, Any], source_name: str) -> bool:
    labels = meta.get("labels") or {}
    return bool(
        labels.get(model.LABEL_MANAGED_BY) == model.MANAGER
        and labels.get(model.LABEL_SOURCE) == source_name
    )


def _owner_ref(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }


def _refs(meta: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    return sorted(
        (r.get("kind", ""), r.get("name", ""), r.get("uid", ""))
        for r in meta.get("ownerReferences") or ()
    )


def _defaulted_ports(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply the API server's Service port defaults, keeping only the fields we manage."""
    result = []
    for port in raw:
        item = {k: v for k, v in port.items() if k in {"name", "appProtocol", "port"}}
        item["protocol"] = port.get("protocol") or "TCP"
        item["targetPort"] = port.get("targetPort", port["port"])
        result.append(item)
    return result


def _endpoint(raw: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("addresses", "conditions", "targetRef", "nodeName")
    result = {k: raw[k] for k in keep if raw.get(k) is not None}
    if "targetRef" in result:
        ref = result["targetRef"]
        result["targetRef"] = {k: ref[k] for k in ("kind", "namespace", "name", "uid") if k in ref}
    return result


def _slice_port(raw: Mapping[str, Any]) -> dict[str, Any]:
    result = {
        "name": raw.get("name") or "",
        "port": raw.get("port"),
        "protocol": raw.get("protocol") or "TCP",
    }
    if raw.get("appProtocol"):
        result["appProtocol"] = raw["appProtocol"]
    return result
