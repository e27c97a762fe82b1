"""Read the ``zen-lead.io/probe*`` annotations of a Service into a validated `ProbeConfig`.

Called by the reconciler next to `svcconfig.parse`. Without ``zen-lead.io/probe`` the Service
uses Ready-only routing. If any probe annotation is invalid, every problem is returned (each
names its key and the reason; they become Warning Events) and the result is None: the Service
falls back to Ready-only routing, never to no routing.

Defaults follow probing-anchors §8, tightened so that a hung leader loses its traffic within 2 s:
interval 500 ms, timeout 250 ms, fall 3, rise 2, fast interval 100 ms after a first failure,
candidates every 2 s, panic threshold 0.5. `ProbeConfig.detection_bounds` gives the worst-case
detection time each setting implies.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

import probes
from probes import http as http_probe
from zenlead import svcconfig

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ("KEYS", "ProbeConfig", "parse")

P = "zen-lead.io/probe"
KEYS = {
    "kind": P,
    "port": f"{P}-port",
    "path": f"{P}-path",
    "method": f"{P}-method",
    "scheme": f"{P}-scheme",
    "host": f"{P}-host",
    "expected_status": f"{P}-expected-status",
    "body_regex": f"{P}-body-regex",
    "server_name": f"{P}-server-name",
    "tls_verify": f"{P}-tls-verify",
    "grpc_service": f"{P}-grpc-service",
    "grpc_tls": f"{P}-grpc-tls",
    "tcp_send": f"{P}-tcp-send",
    "tcp_expect": f"{P}-tcp-expect",
    "interval": f"{P}-interval",
    "timeout": f"{P}-timeout",
    "fall": f"{P}-fall",
    "rise": f"{P}-rise",
    "fast_interval": f"{P}-fast-interval",
    "candidate_interval": f"{P}-candidate-interval",
    "panic_threshold": f"{P}-panic-threshold",
}
"""Every probe annotation key, by setting name."""


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeConfig:
    """How to probe the pods of one Service.

    Attributes:
        kind: A key of `probes.PROBERS` (http, grpc, tcp).
        port: Container port number, or a container port name resolved on each pod; None
            means the Service's first targetPort.
        spec: The prober's spec (`probes.HttpSpec`, `GrpcSpec` or `TcpSpec`).
        interval_seconds: Leader probe interval. Default 0.5.
        timeout_seconds: Per-probe deadline; less than the interval. Default 0.25.
        fall: Consecutive network/timeout failures that make a pod down. Default 3.
        rise: Consecutive successes that bring a down pod back up. Default 2.
        fast_interval_seconds: Interval after a first failure, until up or down. Default 0.1.
        candidate_interval_seconds: Interval for pods that do not lead. Default 2.0.
        panic_threshold: Share of probed pods down at once that is treated as our own
            network failing (keep the leader). Default 0.5.

    """

    kind: str
    port: int | str | None
    spec: probes.Spec
    interval_seconds: float = 0.5
    timeout_seconds: float = 0.25
    fall: int = 3
    rise: int = 2
    fast_interval_seconds: float = 0.1
    candidate_interval_seconds: float = 2.0
    panic_threshold: float = 0.5

    @property
    def panic_window_seconds(self) -> float:
        """Failures starting within this long of each other count as one correlated event.

        Long enough for every pod to be probed once and judged: a candidate interval plus a
        full failure streak at the fast interval.
        """
        streak = self.fall * (self.fast_interval_seconds + self.timeout_seconds)
        return self.candidate_interval_seconds + self.timeout_seconds + streak

    def detection_bounds(self) -> dict[str, float]:
        """Return the worst-case seconds from a leader failing to it being marked down.

        ``hung``: interval + timeout + (fall - 1) * (fast interval + timeout), plus 10 %
        interval jitter. ``refused``: the same with no timeouts waited. ``negative``: one
        interval (an explicit bad answer is down at once); gRPC Watch pushes it at once.
        """
        jitter = 0.1 * self.interval_seconds
        hung = self.interval_seconds + self.timeout_seconds
        hung += (self.fall - 1) * (self.fast_interval_seconds + self.timeout_seconds)
        refused = self.interval_seconds + (self.fall - 1) * self.fast_interval_seconds
        return {
            "hung": hung + jitter,
            "refused": refused + jitter,
            "negative": self.interval_seconds + jitter,
        }


def parse(
    annotations: Mapping[str, str] | None,
) -> tuple[ProbeConfig | None, list[svcconfig.Problem]]:
    """Return the probe config (None: Ready-only routing) and the problems found."""
    values = annotations or {}
    kind = values.get(KEYS["kind"])
    if kind is None:
        stray = sorted(k for k in values if k.startswith(P + "-"))
        if stray:
            return None, [svcconfig.Problem(stray[0], f"has no effect without {P}")]
        return None, []
    reader = _Reader(values)
    if kind not in probes.PROBERS:
        reader.problem("kind", f"{kind!r} is not one of {', '.join(sorted(probes.PROBERS))}")
        return None, reader.problems
    config = _build(kind, reader)
    return (None if reader.problems else config), reader.problems


def _build(kind: str, r: _Reader) -> ProbeConfig:
    interval = r.duration("interval", 0.5, low=0.1, high=60.0)
    timeout = r.duration("timeout", 0.25, low=0.01, high=60.0)
    if timeout >= interval:
        r.problem("timeout", f"must be less than {KEYS['interval']} ({interval:g}s)")
    fast = r.duration("fast_interval", 0.1, low=0.01, high=60.0)
    if fast > interval:
        r.problem("fast_interval", f"must not exceed {KEYS['interval']} ({interval:g}s)")
    candidate = r.duration("candidate_interval", max(2.0, interval), low=interval, high=300.0)
    return ProbeConfig(
        kind=kind,
        port=r.port(),
        spec=_SPECS[kind](r),
        interval_seconds=interval,
        timeout_seconds=timeout,
        fall=r.integer("fall", 3, low=1, high=10),
        rise=r.integer("rise", 2, low=1, high=10),
        fast_interval_seconds=fast,
        candidate_interval_seconds=candidate,
        panic_threshold=r.number("panic_threshold", 0.5, low=0.01, high=1.0),
    )


def _http(r: _Reader) -> probes.HttpSpec:
    path = r.text("path", "/")
    if not path.startswith("/"):
        r.problem("path", f"{path!r} must start with /")
    host = r.text("host", "") or None
    spec = probes.HttpSpec(
        path=path,
        method=r.choice("method", "GET", ("GET", "HEAD")),
        scheme=r.choice("scheme", "http", ("http", "https")),
        host=host,
        expected=r.status_ranges(),
        body_regex=r.regex("body_regex"),
        server_name=r.text("server_name", "") or None,
        verify_tls=r.flag("tls_verify", default=True),
    )
    why = http_probe.problem(spec)
    if why:
        # Caught here, not at probe time: a spec no pod could pass would empty the routing.
        field = next((f for f in ("path", "host", "method") if f in why), "kind")
        r.problem(field, why)
    return spec


def _grpc(r: _Reader) -> probes.GrpcSpec:
    return probes.GrpcSpec(
        service=r.text("grpc_service", ""),
        tls=r.flag("grpc_tls", default=False),
        server_name=r.text("server_name", "") or None,
    )


def _tcp(r: _Reader) -> probes.TcpSpec:
    send = r.text("tcp_send", "")
    expect = r.regex("tcp_expect")
    return probes.TcpSpec(
        send=_unescape(send).encode(),
        expect=expect.encode() if expect is not None else None,
    )


_SPECS: dict[str, Callable[[_Reader], probes.Spec]] = {"http": _http, "grpc": _grpc, "tcp": _tcp}


def _unescape(text: str) -> str:
    r"""Turn the escapes \r, \n, \t and \\ into their characters (for kubectl annotate)."""
    return re.sub(
        r"\\([rnt\\])", lambda m: {"r": "\r", "n": "\n", "t": "\t", "\\": "\\"}[m[1]], text
    )


class _Reader:
    """Typed access to probe annotations that records a `svcconfig.Problem` per bad value."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.problems: list[svcconfig.Problem] = []

    def problem(self, name: str, reason: str) -> None:
        self.problems.append(svcconfig.Problem(KEYS[name], reason))

    def text(self, name: str, default: str) -> str:
        return self.values.get(KEYS[name], default)

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value not in allowed:
            self.problem(name, f"{value!r} is not one of {', '.join(allowed)}")
            return default
        return value

    def flag(self, name: str, *, default: bool) -> bool:
        raw = self.values.get(KEYS[name])
        if raw is None:
            return default
        if raw.strip().lower() not in {"true", "false"}:
            self.problem(name, f"{raw!r} is not true or false")
            return default
        return raw.strip().lower() == "true"

    def duration(self, name: str, default: float, *, low: float, high: float) -> float:
        raw = self.values.get(KEYS[name])
        if raw is None:
            return default
        try:
            value = svcconfig.parse_duration(raw)
        except ValueError as exc:
            self.problem(name, str(exc))
            return default
        if not low <= value <= high:
            self.problem(name, f"{raw!r} must be between {low:g}s and {high:g}s")
            return default
        return value

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.values.get(KEYS[name])
        if raw is None:
            return default
        if not raw.strip().isdigit() or not low <= int(raw) <= high:
            self.problem(name, f"{raw!r} must be a whole number from {low} to {high}")
            return default
        return int(raw)

    def number(self, name: str, default: float, *, low: float, high: float) -> float:
        raw = self.values.get(KEYS[name])
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not low <= value <= high:
            self.problem(name, f"{raw!r} must be a number from {low:g} to {high:g}")
            return default
        return value

    def regex(self, name: str) -> str | None:
        raw = self.values.get(KEYS[name])
        if raw is None:
            return None
        try:
            re.compile(raw)
        except re.error as exc:
            self.problem(name, f"{raw!r} is not a valid regular expression: {exc}")
            return None
        return raw

    def port(self) -> int | str | None:
        raw = self.values.get(KEYS["port"])
        if raw is None:
            return None
        if raw.isdigit() and 1 <= int(raw) <= 65535:  # noqa: PLR2004 - port range
            return int(raw)
        if re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", raw) and len(raw) <= 15:  # noqa: PLR2004
            return raw
        self.problem("port", f"{raw!r} is neither a port number nor a container port name")
        return None

    def status_ranges(self) -> tuple[tuple[int, int], ...]:
        raw = self.values.get(KEYS["expected_status"])
        if raw is None:
            return ((200, 399),)
        ranges = []
        for part in raw.split(","):
            match = re.fullmatch(r"\s*(\d{3})(?:\s*-\s*(\d{3}))?\s*", part)
            if match is None or int(match[2] or match[1]) < int(match[1]):
                self.problem("expected_status", f"{raw!r} is not like 200-299,304")
                return ((200, 399),)
            ranges.append((int(match[1]), int(match[2] or match[1])))
        return tuple(ranges)
