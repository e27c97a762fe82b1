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
import functools
import re
from typing import TYPE_CHECKING, TypeVar

import probes
from zenlead import values

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ("KEYS", "ProbeConfig", "parse")

T = TypeVar("T")

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
    "detector": f"{P}-detector",
    "phi_threshold": f"{P}-phi-threshold",
    "phi_pause": f"{P}-phi-acceptable-pause",
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
        detector: ``fixed`` (a pod is down after `fall` unanswered probes) or ``phi`` (also
            down once its silence is improbable given its own response times; see
            `zenlead.phi`). Default fixed.
        phi_threshold: Phi at which a silence is improbable enough (8: once in 10^8 probes
            of a healthy pod). Default 8.
        phi_pause_seconds: Shortest silence the phi detector calls down, whatever the
            history says (a GC or scheduling pause the pod may take). Default 0.3.

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
    detector: str = "fixed"
    phi_threshold: float = 8.0
    phi_pause_seconds: float = 0.3

    @property
    def fixed_silence_seconds(self) -> float:
        """Return the silence after which the fixed detector calls a hung pod down.

        From sending the first unanswered probe: its timeout, then ``fall - 1`` more probes at
        the fast interval, each waited out.
        """
        return self.timeout_seconds + (self.fall - 1) * (
            self.fast_interval_seconds + self.timeout_seconds
        )

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
        With the phi detector, ``hung_phi``: interval + the acceptable pause + jitter, the
        fastest it can be for a pod with a tight latency history (a noisier pod waits longer,
        never longer than ``hung``).
        """
        jitter = 0.1 * self.interval_seconds
        hung = self.interval_seconds + self.fixed_silence_seconds
        refused = self.interval_seconds + (self.fall - 1) * self.fast_interval_seconds
        return {
            "hung": hung + jitter,
            "refused": refused + jitter,
            "negative": self.interval_seconds + jitter,
        } | (
            {"hung_phi": min(hung, self.interval_seconds + self.phi_pause_seconds) + jitter}
            if self.detector == "phi"
            else {}
        )


def parse(
    annotations: Mapping[str, str] | None,
) -> tuple[ProbeConfig | None, list[values.Problem]]:
    """Return the probe config (None: Ready-only routing) and the problems found.

    Every key is checked on its own, so each problem names the key it is about; one problem
    turns probing off for the Service (Ready-only routing), never routing itself.
    """
    given = annotations or {}
    kind = given.get(KEYS["kind"])
    if kind is None:
        stray = sorted(k for k in given if k.startswith(P + "-") and k in _ALL_KEYS)
        return None, [values.Problem(k, f"has no effect without {P}") for k in stray]
    r = _Reader(given)
    kind = r.read(
        "kind", lambda raw: values.choice(raw, tuple(sorted(probes.PROBERS))), None, shown="none"
    )
    config = _build(kind, r)
    return (None if r.problems or config is None else config), r.problems


_ALL_KEYS = frozenset(KEYS.values())


def _build(kind: str | None, r: _Reader) -> ProbeConfig | None:
    interval = r.duration("interval", 0.5, low=0.1, high=60.0)
    timeout = r.duration("timeout", 0.25, low=0.01, high=60.0)
    if timeout >= interval:
        # Name the key the user set: a lone short interval clashes with the default timeout.
        if KEYS["timeout"] in r.values:
            why = f"must be less than {KEYS['interval']} ({values.human(interval)})"
            r.reject("timeout", f"{why}; {_fallback('250ms')}")
        else:
            why = f"must be more than the timeout ({values.human(timeout)})"
            r.reject("interval", f"{why}; {_fallback('500ms')}")
    fast = r.duration("fast_interval", 0.1, low=0.01, high=60.0)
    if fast > interval:
        why = f"must not exceed {KEYS['interval']} ({values.human(interval)})"
        r.reject("fast_interval", f"{why}; {_fallback('100ms')}")
    candidate = r.duration("candidate_interval", max(2.0, interval), low=interval, high=300.0)
    port = r.read("port", values.port, None, shown="the first targetPort")
    fall = r.read("fall", lambda raw: values.integer(raw, low=1, high=10), 3)
    rise = r.read("rise", lambda raw: values.integer(raw, low=1, high=10), 2)
    threshold = r.read("panic_threshold", lambda raw: values.number(raw, low=0.01, high=1.0), 0.5)
    detector, phi_threshold, phi_pause = _detector(r)
    specs = {name: build(r) for name, build in _SPECS.items() if kind in {name, None}}
    if kind is None:
        return None
    return ProbeConfig(
        kind=kind,
        port=port,
        spec=specs[kind],
        interval_seconds=interval,
        timeout_seconds=timeout,
        fall=fall,
        rise=rise,
        fast_interval_seconds=fast,
        candidate_interval_seconds=candidate,
        panic_threshold=threshold,
        detector=detector,
        phi_threshold=phi_threshold,
        phi_pause_seconds=phi_pause,
    )


def _detector(r: _Reader) -> tuple[str, float, float]:
    """Read the detector and its phi settings; phi settings need the phi detector."""
    detector = r.read("detector", lambda raw: values.choice(raw, ("fixed", "phi")), "fixed")
    phi_threshold = r.read("phi_threshold", lambda raw: values.number(raw, low=1.0, high=16.0), 8.0)
    phi_pause = r.duration("phi_pause", 0.3, low=0.05, high=60.0)
    if detector != "phi":
        for name in ("phi_threshold", "phi_pause"):
            if KEYS[name] in r.values:
                why = f"has no effect unless {KEYS['detector']} is phi"
                r.reject(name, f"{why}; probing is off for this Service (Ready-only routing)")
    return detector, phi_threshold, phi_pause


def _http(r: _Reader) -> probes.HttpSpec:
    return probes.HttpSpec(
        path=r.read("path", values.path, "/"),
        method=r.read("method", lambda raw: values.choice(raw, ("GET", "HEAD")), "GET"),
        scheme=r.read("scheme", lambda raw: values.choice(raw, ("http", "https")), "http"),
        host=r.read("host", values.host, None, shown="<pod IP>:<port>"),
        expected=r.read("expected_status", _status_ranges, ((200, 399),), shown="200-399"),
        body_regex=r.read("body_regex", _pattern, None, shown="none"),
        server_name=r.read("server_name", values.server_name, None, shown="the Host"),
        verify_tls=r.read("tls_verify", values.boolean, default=True),
    )


def _grpc(r: _Reader) -> probes.GrpcSpec:
    return probes.GrpcSpec(
        service=r.read("grpc_service", _grpc_service, "", shown="overall health"),
        tls=r.read("grpc_tls", values.boolean, default=False),
        server_name=r.read("server_name", values.server_name, None, shown="none"),
    )


def _tcp(r: _Reader) -> probes.TcpSpec:
    send = r.read("tcp_send", _tcp_send, b"", shown="connect only")
    expect = r.read("tcp_expect", _pattern, None, shown="none")
    return probes.TcpSpec(send=send, expect=expect.encode() if expect is not None else None)


_SPECS: dict[str, Callable[[_Reader], probes.Spec]] = {"http": _http, "grpc": _grpc, "tcp": _tcp}

_MAX_STATUS_RANGES = 20
_MAX_TCP_SEND_BYTES = 1024
_STATUS_RANGE = re.compile(r"([1-5][0-9]{2})(?:-([1-5][0-9]{2}))?", re.ASCII)


def _status_ranges(raw: str) -> tuple[tuple[int, int], ...]:
    """Parse ``200-299,304``: up to 20 ranges of HTTP statuses (100-599), low before high."""
    parts = values.text(raw, limit=200).split(",")
    ranges = []
    for part in parts[: _MAX_STATUS_RANGES + 1]:
        match = _STATUS_RANGE.fullmatch(part.strip(" "))
        if match is None or len(parts) > _MAX_STATUS_RANGES:
            raise values.InvalidValueError(f"{values.show(raw)} is not like 200-299,304")
        low, high = int(match[1]), int(match[2] or match[1])
        if high < low:
            raise values.InvalidValueError(f"{values.show(raw)}: {low}-{high} is backwards")
        ranges.append((low, high))
    return tuple(ranges)


def _pattern(raw: str) -> str:
    """Accept a regular expression only if it is bounded to compile and compiles."""
    try:
        probes.compile_pattern(raw)
    except ValueError as exc:
        raise values.InvalidValueError(f"{values.show(raw)} is refused as a regex: {exc}") from exc
    return raw


def _grpc_service(raw: str) -> str:
    """Parse a gRPC health service name (``grpc.health.v1.Health``, ``pkg.Svc``, or empty)."""
    return values.text(raw, limit=256, allowed=r"[A-Za-z0-9_.\-/]*")


def _tcp_send(raw: str) -> bytes:
    """Parse the bytes to send: escapes expanded, UTF-8, at most 1 KiB."""
    data = _unescape(values.text(raw, limit=4 * _MAX_TCP_SEND_BYTES)).encode()
    if len(data) > _MAX_TCP_SEND_BYTES:
        raise values.InvalidValueError(f"{values.show(raw)} is over {_MAX_TCP_SEND_BYTES} bytes")
    return data


def _unescape(text: str) -> str:
    r"""Turn the escapes \r, \n, \t and \\ into their characters (for kubectl annotate)."""
    return re.sub(
        r"\\([rnt\\])", lambda m: {"r": "\r", "n": "\n", "t": "\t", "\\": "\\"}[m[1]], text
    )


class _Reader(values.Reader):
    """`values.Reader` by setting name, with the Ready-only fallback in every message."""

    def read(  # type: ignore[override]
        self,
        name: str,
        parse: Callable[[str], T],
        default: T,
        *,
        shown: str | None = None,
    ) -> T:
        """Read setting `name`; a rejection names its key and default, and turns probing off."""
        what = shown if shown is not None else _shown(default)
        return super().read(KEYS[name], parse, default, fallback=_fallback(what))

    def reject(self, key: str, reason: str) -> None:
        """Record a problem with setting (or key) `key`."""
        super().reject(KEYS.get(key, key), reason)

    def duration(self, name: str, default: float, *, low: float, high: float) -> float:
        """Read a duration setting within bounds."""
        parse = functools.partial(values.duration, low=low, high=high)
        return self.read(name, parse, default, shown=values.human(default))


def _shown(default: object) -> str:
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


def _fallback(default: str) -> str:
    return f"default {default}; probing is off for this Service (Ready-only routing)"
