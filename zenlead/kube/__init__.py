"""The adapter to the Kubernetes API: the only controller package that imports ``kubernetes``.

- `client`: builds API clients (kubeconfig or in-cluster) and wraps calls.
"""

from __future__ import annotations

__all__: tuple[str, ...] = ()
