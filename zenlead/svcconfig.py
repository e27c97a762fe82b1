"""Read a source Service's ``zen-lead.io/*`` annotations into a validated `ServiceConfig`.

Called by the reconciler for every opted-in Service. Parsing never raises: each bad value
becomes a `values.Problem` naming the key, the reason and the default used instead (the
reconciler turns it into an ``InvalidAnnotation`` Warning Event), so bad input never stops
routing. Values are read through `values.Reader`: ASCII digits only, exact enumerations.

Keys (same as upstream zen-lead):

- ``zen-lead.io/enabled``: only the exact string ``"true"`` opts a Service in; any value other
  than ``"true"`` or ``"false"`` is reported by `enabled_problem`.
- ``zen-lead.io/leader-service-name``: name of the leader Service; a DNS-1035 label of at
  most 63 characters, different from the source's name. Default ``<svc>-leader``.
- ``zen-lead.io/sticky``: ``"true"`` (default) or ``"false"``.
- ``zen-lead.io/min-ready-duration``: how long a new candidate must have been Ready, as a
  Go-style duration (``30s``, ``1m30s``, ``500ms``) from 0 to 24h. Default 0.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from zenlead import naming, values

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = (
    "ENABLED",
    "LEADER_SERVICE_NAME",
    "MIN_READY_DURATION",
    "STICKY",
    "Problem",
    "ServiceConfig",
    "enabled_problem",
    "is_enabled",
    "parse",
    "parse_duration",
)

ENABLED = "zen-lead.io/enabled"
LEADER_SERVICE_NAME = "zen-lead.io/leader-service-name"
STICKY = "zen-lead.io/sticky"
MIN_READY_DURATION = "zen-lead.io/min-ready-duration"

_MAX_MIN_READY_SECONDS = 24 * 3600.0

Problem = values.Problem
"""A rejected annotation (kept here for callers that predate `values`)."""


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


def enabled_problem(annotations: Mapping[str, str] | None) -> Problem | None:
    """Return a problem when ``zen-lead.io/enabled`` is set to neither "true" nor "false"."""
    raw = (annotations or {}).get(ENABLED)
    if raw is None or raw in {"true", "false"}:
        return None
    return Problem(ENABLED, f"{values.show(raw)} is not true; this Service is not managed")


def parse(name: str, annotations: Mapping[str, str] | None) -> tuple[ServiceConfig, list[Problem]]:
    """Return the config of Service `name` and the problems found; defaults replace bad values."""
    reader = values.Reader(annotations)
    default_name = naming.default_leader_name(name)

    def leader_name(raw: str) -> str:
        why = naming.invalid_leader_name(raw, source=name)
        if why:
            raise values.InvalidValueError(why)
        return raw

    config = ServiceConfig(
        leader_service_name=reader.read(LEADER_SERVICE_NAME, leader_name, default_name),
        sticky=reader.read(STICKY, values.boolean, default=True, fallback="using true"),
        min_ready_seconds=reader.read(MIN_READY_DURATION, parse_duration, 0.0, fallback="using 0s"),
    )
    return config, reader.problems


def parse_duration(text: str) -> float:
    """Parse a Go-style duration from 0 to 24h into seconds; raise ValueError otherwise."""
    return values.duration(text, low=0.0, high=_MAX_MIN_READY_SECONDS)
