"""Plain values the controller passes between its stages; no I/O, no Kubernetes client types.

The informers turn raw API objects into these (`Pod.from_raw`); the pure stages
(`annotations`, `leader`, `objects`) compute on them; the reconciler turns results into writes.
Times are float seconds: wall-clock epoch seconds where they come from the API server
(creation, Ready transition), `time.monotonic` seconds for latency measurements.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, NamedTuple

__all__ = (
    "ANNOTATION_PREFIX",
    "LABEL_MANAGED_BY",
    "LABEL_SERVICE_NAME",
    "LABEL_SLICE_MANAGED_BY",
    "LABEL_SOURCE",
    "MANAGER",
    "ContainerPort",
    "Pod",
    "ServiceKey",
    "parse_time",
)

MANAGER = "zen-lead"
"""Value of the managed-by labels on everything zen-lead creates (the upstream value)."""

ANNOTATION_PREFIX = "zen-lead.io/"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_SOURCE = "zen-lead.io/source-service"
LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_SLICE_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"


class ServiceKey(NamedTuple):
    """Identity of a source Service: what the work queue carries (never object state)."""

    namespace: str
    name: str

    def __str__(self) -> str:
        """Render as ``namespace/name``."""
        return f"{self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True, slots=True)
class ContainerPort:
    """A declared container port, for resolving named targetPorts."""

    name: str
    port: int
    protocol: str


@dataclasses.dataclass(frozen=True, slots=True)
class Pod:
    """The part of a Pod that leader selection and routing need; read-only.

    Attributes:
        namespace: Pod namespace.
        name: Pod name.
        uid: Pod UID; the leader's identity (a re-created pod with the same name is another pod).
        labels: Pod labels, matched against Service selectors.
        created: creationTimestamp, epoch seconds.
        deleting: deletionTimestamp is set (the pod is terminating).
        node_name: spec.nodeName, or None before scheduling.
        phase: status.phase (Pending, Running, Succeeded, Failed, Unknown).
        ip: status.podIP, or None.
        ready: the Ready condition is True.
        ready_since: lastTransitionTime of the Ready condition, epoch seconds, or None.
        ports: declared container ports (regular containers only).

    """

    namespace: str
    name: str
    uid: str
    labels: dict[str, str]
    created: float
    deleting: bool
    node_name: str | None
    phase: str
    ip: str | None
    ready: bool
    ready_since: float | None
    ports: tuple[ContainerPort, ...]

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> Pod:
        """Project a raw Pod (API JSON) onto the fields zen-lead uses."""
        meta = raw.get("metadata") or {}
        spec = raw.get("spec") or {}
        status = raw.get("status") or {}
        ready: dict[str, Any] = next(
            (c for c in status.get("conditions") or () if c.get("type") == "Ready"),
            {},
        )
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            labels=dict(meta.get("labels") or {}),
            created=parse_time(meta.get("creationTimestamp")) or 0.0,
            deleting=bool(meta.get("deletionTimestamp")),
            node_name=spec.get("nodeName") or None,
            phase=status.get("phase") or "Unknown",
            ip=status.get("podIP") or None,
            ready=ready.get("status") == "True",
            ready_since=parse_time(ready.get("lastTransitionTime")),
            ports=tuple(
                ContainerPort(
                    name=p.get("name", ""),
                    port=int(p.get("containerPort", 0)),
                    protocol=p.get("protocol") or "TCP",
                )
                for c in spec.get("containers") or ()
                for p in c.get("ports") or ()
            ),
        )


def parse_time(value: str | None) -> float | None:
    """Parse an RFC 3339 timestamp from the API server into epoch seconds (None stays None)."""
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None
