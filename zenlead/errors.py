"""Exceptions raised by zen-lead, as one tree so callers can catch at the right depth.

::

    ZenleadError
    ├── ConfigError        a setting or annotation is invalid; the message names the key
    └── KubeError          the Kubernetes API refused or failed a call (raised by zenlead.kube)
"""

from __future__ import annotations

__all__ = ("ConfigError", "KubeError", "ZenleadError")


class ZenleadError(Exception):
    """Base of every exception zen-lead raises on purpose."""


class ConfigError(ZenleadError):
    """A setting, flag or annotation is invalid; the message names the key and the reason."""


class KubeError(ZenleadError):
    """A Kubernetes API call failed; `status` is the HTTP status, 0 when none was received."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        """Record `message` and the HTTP `status` of the failed call."""
        super().__init__(message)
        self.status = status
