"""zen-lead: keep exactly one healthy pod behind a Service's ``<svc>-leader`` twin.

A Service annotated ``zen-lead.io/enabled: "true"`` gets a selector-less ``<svc>-leader``
Service whose single EndpointSlice points at one pod, the leader. The controller's pipeline
(built up issue by issue) reads in this order::

    informers -> events -> queue -> reconciler:
        desired (Service + Pods) -> probing (active health) -> leader.decide -> slices.plan/apply

Layers, enforced by import-linter (see ``.importlinter``): ``cli`` on top, then the run-time
harnesses in ``testing``, then the controller; only ``zenlead.kube`` (and the test harness)
import the ``kubernetes`` client, and only ``probes`` imports httpx and grpc.
"""

from __future__ import annotations

from importlib import metadata

__all__ = ("__version__",)

try:
    __version__ = metadata.version("zen-lead")
except metadata.PackageNotFoundError:  # Running from a source tree that was never installed.
    __version__ = "0.0.0+unknown"
