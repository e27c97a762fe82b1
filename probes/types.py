"""The probe interface shared by every prober and by zen-lead's prober pool.

A *checker* is a long-lived object for one target (one pod IP and port) created by the prober
registered for its kind (`probes.PROBERS[kind](target, spec)`). It keeps a persistent connection
between checks and exposes:

- ``await checker.check(deadline=...)``: one probe, bounded by the absolute deadline the caller
  passes (``anyio.current_time()`` scale). It never raises for a target failure: every outcome is
  a `ProbeResult`.
- ``await checker.watch(callback)``: for checkers that learn about changes without polling (gRPC
  ``Watch``), runs until cancelled and calls `callback(result)` on every pushed status; the
  caller runs it in its own task group (no task is ever started behind the caller's back).
  Polling-only checkers return at once.
- ``await checker.aclose()``: drop connections and background tasks.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = (
    "Checker",
    "FailureClass",
    "GrpcSpec",
    "HttpSpec",
    "ProbeResult",
    "ProberFactory",
    "Spec",
    "Target",
    "TcpSpec",
)


class FailureClass(enum.StrEnum):
    """Why a probe failed; decides how the pool counts it."""

    NETWORK = "network"
    """Connection refused, reset or closed early: counts toward ``fall``."""
    TIMEOUT = "timeout"
    """The deadline passed (a hung target): counts toward ``fall``."""
    NEGATIVE = "negative"
    """An explicit bad answer (HTTP status, NOT_SERVING, TCP expect mismatch): down at once."""
    CONFIG = "config"
    """The probe cannot work as configured (unknown gRPC service, bad TLS name): down at once."""


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """Where to probe: a pod IP (never a name) and a port number."""

    ip: str
    port: int


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe's outcome.

    Attributes:
        ok: The target is healthy.
        failure: Why not, when not ok.
        detail: Short human text (status line, gRPC status, error), bounded in length.
        phases: (phase, seconds) pairs, e.g. connect, tls, request, transfer.

    """

    ok: bool
    failure: FailureClass | None = None
    detail: str = ""
    phases: tuple[tuple[str, float], ...] = ()

    @classmethod
    def success(cls, detail: str = "", phases: tuple[tuple[str, float], ...] = ()) -> ProbeResult:
        """Return a passing result."""
        return cls(ok=True, detail=detail[:200], phases=phases)

    @classmethod
    def fail(
        cls, failure: FailureClass, detail: str, phases: tuple[tuple[str, float], ...] = ()
    ) -> ProbeResult:
        """Return a failing result of class `failure`."""
        return cls(ok=False, failure=failure, detail=detail[:200], phases=phases)


@dataclasses.dataclass(frozen=True, slots=True)
class HttpSpec:
    """An HTTP(S) check.

    Attributes:
        path: Request path (with query), default ``/``.
        method: ``GET`` or ``HEAD``.
        scheme: ``http`` or ``https``.
        host: Host header; default ``<ip>:<port>``.
        expected: Inclusive status ranges that pass, default 200-399.
        body_regex: If set, the (capped) body must match it.
        server_name: TLS SNI and verification name; default: `host` without port, else none.
        verify_tls: Verify the server certificate (against `server_name`). Default True.
        max_body_bytes: Body bytes read at most; more closes the connection. Default 65536.

    """

    path: str = "/"
    method: str = "GET"
    scheme: str = "http"
    host: str | None = None
    expected: tuple[tuple[int, int], ...] = ((200, 399),)
    body_regex: str | None = None
    server_name: str | None = None
    verify_tls: bool = True
    max_body_bytes: int = 65536


@dataclasses.dataclass(frozen=True, slots=True)
class GrpcSpec:
    """A grpc.health.v1 check.

    Attributes:
        service: Service name; empty means the server's overall health.
        tls: Use TLS.
        server_name: TLS name / authority override.
        watch: Use the ``Watch`` stream (push) with ``Check`` as backstop; ``Check`` alone
            when False or when the server answers UNIMPLEMENTED to ``Watch``.

    """

    service: str = ""
    tls: bool = False
    server_name: str | None = None
    watch: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class TcpSpec:
    """A synthetic TCP check: connect, optionally send bytes and expect a regex in the reply.

    Attributes:
        send: Bytes to send after connecting (empty: connect only).
        expect: Regex (bytes) the reply must match before the deadline.
        max_read_bytes: Reply bytes read at most. Default 4096.

    """

    send: bytes = b""
    expect: bytes | None = None
    max_read_bytes: int = 4096


Spec = HttpSpec | GrpcSpec | TcpSpec


class Checker(Protocol):
    """A probe of one target that may keep state (connections, streams) between checks."""

    async def check(self, *, deadline: float) -> ProbeResult:
        """Probe once before `deadline` (anyio clock); never raise for target failures."""

    async def watch(self, callback: Callable[[ProbeResult], None]) -> None:
        """Push results to `callback` until cancelled (gRPC Watch); return at once otherwise."""

    async def aclose(self) -> None:
        """Release connections and background work."""


class ProberFactory(Protocol):
    """Creates the checker for one target (what `probes.PROBERS` maps each kind to)."""

    def __call__(self, target: Target, spec: Any) -> Checker:
        """Return a checker of `target` configured by `spec` (the Spec type of its kind)."""
