"""Active health probers (HTTP, gRPC health, synthetic TCP) for zen-lead's prober pool.

`PROBERS` maps each probe kind to the factory of its per-target checker; configuration
validation reads the allowed kinds from this one mapping. See `probes.types` for the contract.
This package is independent of the controller: it imports nothing from ``zenlead`` and it is
the only place that imports httpx and grpc.
"""

from __future__ import annotations

from probes import grpc, http, tcp
from probes._match import compile_bytes as compile_pattern
from probes.types import (
    Checker,
    FailureClass,
    GrpcSpec,
    HttpSpec,
    ProbeResult,
    ProberFactory,
    Spec,
    Target,
    TcpSpec,
)

__all__ = (
    "PROBERS",
    "Checker",
    "FailureClass",
    "GrpcSpec",
    "HttpSpec",
    "ProbeResult",
    "ProberFactory",
    "Spec",
    "Target",
    "TcpSpec",
    "compile_pattern",
)

PROBERS: dict[str, ProberFactory] = {
    "http": http.HttpChecker,
    "grpc": grpc.GrpcChecker,
    "tcp": tcp.TcpChecker,
}
"""Probe kind -> factory of a checker for one target."""
