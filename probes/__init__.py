"""Active health probers (HTTP, gRPC health, synthetic TCP) for zen-lead's prober pool.

This package is independent of the controller: it imports neither ``zenlead`` nor the
``kubernetes`` client, and it is the only place that imports httpx and grpc. The probers and
their registry arrive with the active-probing work; until then the package only reserves the
import name so the layering contracts can already be enforced.
"""

from __future__ import annotations

__all__: tuple[str, ...] = ()
