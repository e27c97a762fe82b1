"""Ports of the leader Service and its EndpointSlice, derived from the source Service.

The leader Service mirrors each source port (name, protocol, appProtocol, port, targetPort as
written) and never copies nodePorts. The EndpointSlice needs numbers: a numeric targetPort is
used as is (a missing one means "same as port"); a named one is looked up in the leader pod's
container ports (matching name and protocol). A pod that cannot resolve every named targetPort
cannot lead (fail closed: the slice never points at a port that does not exist).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zenlead import model

__all__ = ("SlicePort", "UnresolvedPortError", "named_target_ports", "resolve", "service_ports")


class UnresolvedPortError(ValueError):
    """A named targetPort is not declared by the pod; `port_name` says which."""

    def __init__(self, port_name: str, pod: str) -> None:
        """Record the `port_name` pod `pod` lacks."""
        super().__init__(f"named targetPort {port_name!r} is not a container port of pod {pod}")
        self.port_name = port_name


@dataclasses.dataclass(frozen=True, slots=True)
class SlicePort:
    """One port of the EndpointSlice."""

    name: str
    port: int
    protocol: str
    app_protocol: str | None

    def to_raw(self) -> dict[str, Any]:
        """Return the API JSON of this port."""
        raw: dict[str, Any] = {"name": self.name, "port": self.port, "protocol": self.protocol}
        if self.app_protocol:
            raw["appProtocol"] = self.app_protocol
        return raw


def service_ports(source_ports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the leader Service's ports: the source's, without nodePort."""
    keep = ("name", "protocol", "appProtocol", "port", "targetPort")
    return [{k: p[k] for k in keep if p.get(k) is not None} for p in source_ports]


def named_target_ports(source_ports: list[dict[str, Any]]) -> list[str]:
    """Return the named targetPorts of the source (empty when all are numeric)."""
    return [p["targetPort"] for p in source_ports if isinstance(p.get("targetPort"), str)]


def resolve(source_ports: list[dict[str, Any]], pod: model.Pod) -> list[SlicePort]:
    """Return the slice ports for `pod`; raise `UnresolvedPortError` on a missing name."""
    result = []
    for port in source_ports:
        protocol = port.get("protocol") or "TCP"
        target = port.get("targetPort", port["port"])
        if isinstance(target, str):
            match = next(
                (
                    c
                    for c in pod.ports
                    if c.name == target and c.protocol == protocol and c.port > 0
                ),
                None,
            )
            if match is None:
                raise UnresolvedPortError(target, pod.name)
            number = match.port
        else:
            number = int(target)
        result.append(
            SlicePort(
                name=port.get("name") or "",
                port=number,
                protocol=protocol,
                app_protocol=port.get("appProtocol"),
            )
        )
    return result
