"""Read a source Service's ``zen-lead.io/*`` annotations into a validated `ServiceConfig`.

Called by the reconciler for every opted-in Service. Parsing never raises: each bad value
becomes a `Problem` naming the key and the reason (the reconciler turns it into a Warning
Event) and that setting falls back to its default, so bad input never stops routing.

Keys (same as upstream zen-lead):

- ``zen-lead.io/enabled``: only the exact string ``"true"`` opts a Service in.
- ``zen-lead.io/leader-service-name``: name of the leader Service; a DNS-1035 label of at
  most 63 characters, different from the source's name. Default ``<svc>-leader``.
- ``zen-lead.io/sticky``: ``"true"`` (default) or ``"false"``.
- ``zen-lead.io/min-ready-duration``: how long a new candidate must have been Ready, as a
  Go-style duration (``30s``, ``1m30s``, ``500ms``) from 0 to 24h. Default 0.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

from zenlead import naming

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = (
    "ENABLED",
    "LEADER_SERVICE_NAME",
    "MIN_READY_DURATION",
    "STICKY",
    "Problem",
    "ServiceConfig",
    "is_enabled",
    "parse",
    "parse_duration",
)

ENABLED = "zen-lead.io/enabled"
LEADER_SERVICE_NAME = "zen-lead.io/leader-service-name"
STICKY = "zen-lead.io/sticky"
MIN_READY_DURATION = "zen-lead.io/min-ready-duration"

_MAX_MIN_READY_SECONDS = 24 * 3600.0
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """A rejected annotation: which key, and why (goes into a Warning Event verbatim)."""

    key: str
    reason: str

    def __str__(self) -> str:
        """Render as ``key: reason``."""
        return f"{self.key}: {self.reason}"


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Validated per-Service settings.

    Attributes:
        leader_service_name: Name of the leader Service (and of its EndpointSlice).
        sticky: Keep the current leader while it qualifies. Default True.
        min_ready_seconds: A new candidate must have been Ready this long. Default 0.

    """

    leader_service_name: str
    sticky: bool = True
    min_ready_seconds: float = 0.0


def is_enabled(annotations: Mapping[str, str] | None) -> bool:
    """Return True only for the exact value ``"true"`` (upstream semantics)."""
    return (annotations or {}).get(ENABLED) == "true"


def parse(name: str, annotations: Mapping[str, str] | None) -> tuple[ServiceConfig, list[Problem]]:
    """Return the config of Service `name` and the problems found; defaults replace bad values."""
    values = annotations or {}
    problems: list[Problem] = []
    leader_name = naming.default_leader_name(name)
    custom = values.get(LEADER_SERVICE_NAME)
    if custom is not None:
        why = naming.invalid_leader_name(custom, source=name)
        if why:
            problems.append(Problem(LEADER_SERVICE_NAME, f"{why}; using {leader_name!r}"))
        else:
            leader_name = custom
    sticky = True
    raw_sticky = values.get(STICKY)
    if raw_sticky is not None:
        if raw_sticky.strip().lower() in {"true", "false"}:
            sticky = raw_sticky.strip().lower() == "true"
        else:
            problems.append(Problem(STICKY, f"{raw_sticky!r} is not true or false; using true"))
    min_ready = 0.0
    raw_min = values.get(MIN_READY_DURATION)
    if raw_min is not None and raw_min.strip():
        try:
            min_ready = parse_duration(raw_min)
        except ValueError as exc:
            problems.append(Problem(MIN_READY_DURATION, f"{exc}; using 0s"))
        else:
            if min_ready > _MAX_MIN_READY_SECONDS:
                problems.append(Problem(MIN_READY_DURATION, f"{raw_min!r} exceeds 24h; using 0s"))
                min_ready = 0.0
    config = ServiceConfig(
        leader_service_name=leader_name, sticky=sticky, min_ready_seconds=min_ready
    )
    return config, problems


def parse_duration(text: str) -> float:
    """Parse a Go-style duration (``1m30s``, ``250ms``, ``0``) into seconds; raise ValueError."""
    value = text.strip()
    if value == "0":
        return 0.0
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"{text!r} is not a duration like 30s, 1m30s or 500ms")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
